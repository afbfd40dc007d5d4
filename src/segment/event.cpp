// Reading one Segment event (identify or track) from its JSON.
#include "audsync/segment/event.hpp"

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"

namespace audsync::segment {
namespace {

// Reads an optional string member; a present, non-null, non-string value is an error
// that names the field.
bool ReadString(const rapidjson::Value& obj, const char* name, const char* path,
                std::optional<std::string>* out, ItemError* error) {
    bool bad = false;
    *out = json::FindString(obj, name, &bad);
    if (bad) {
        *error = ItemError{"invalid_field", std::string(path) + " must be a string"};
        return false;
    }
    return true;
}

BoolValue ReadBool(const rapidjson::Value* container, const std::string& key) {
    if (container == nullptr) return BoolValue::kAbsent;
    const rapidjson::Value* v = json::Find(*container, key);
    if (v == nullptr || v->IsNull()) return BoolValue::kAbsent;
    if (!v->IsBool()) return BoolValue::kNotBool;
    return v->GetBool() ? BoolValue::kTrue : BoolValue::kFalse;
}

}  // namespace

bool IsKnownType(std::string_view type) {
    return type == "identify" || type == "track" || type == "page" || type == "screen" ||
           type == "group" || type == "alias";
}

ReadResult ReadEvent(const rapidjson::Value& item, std::string raw, const config::Limits& limits) {
    if (!item.IsObject()) return ItemError{"not_an_object", "an event must be a JSON object"};
    if (raw.size() > limits.max_event_bytes) {
        return ItemError{"event_too_large", "event is " + std::to_string(raw.size()) +
                                                " bytes, over the limit of " +
                                                std::to_string(limits.max_event_bytes)};
    }
    Event e;
    ItemError error;
    std::optional<std::string> type;
    if (!ReadString(item, "type", "type", &type, &error)) return error;
    if (!type || type->empty()) return ItemError{"missing_type", "the event has no type"};
    if (!IsKnownType(*type)) {
        return ItemError{"invalid_type",
                         "type must be identify, track, page, screen, group "
                         "or alias"};
    }
    e.type = *type;

    std::optional<std::string> message_id;
    if (!ReadString(item, "messageId", "messageId", &message_id, &error)) return error;
    if (message_id && message_id->size() > limits.max_id_bytes) {
        return ItemError{"invalid_field", "messageId is longer than " +
                                              std::to_string(limits.max_id_bytes) + " bytes"};
    }
    if (!ReadString(item, "userId", "userId", &e.user_id, &error) ||
        !ReadString(item, "anonymousId", "anonymousId", &e.anonymous_id, &error) ||
        !ReadString(item, "event", "event", &e.event_name, &error) ||
        !ReadString(item, "timestamp", "timestamp", &e.timestamp, &error) ||
        !ReadString(item, "originalTimestamp", "originalTimestamp", &e.original_timestamp,
                    &error) ||
        !ReadString(item, "sentAt", "sentAt", &e.sent_at, &error) ||
        !ReadString(item, "contextKind", "contextKind", &e.context_kind, &error)) {
        return error;
    }

    const rapidjson::Value* traits = json::FindObject(item, "traits");
    const rapidjson::Value* properties = json::FindObject(item, "properties");
    const rapidjson::Value* context = json::FindObject(item, "context");
    if (traits != nullptr && !ReadString(*traits, "email", "traits.email", &e.email, &error)) {
        return error;
    }
    if ((!e.email || e.email->empty()) && context != nullptr) {
        if (const rapidjson::Value* ctraits = json::FindObject(*context, "traits")) {
            if (!ReadString(*ctraits, "email", "context.traits.email", &e.email, &error)) {
                return error;
            }
        }
    }
    const rapidjson::Value* personas =
        context != nullptr ? json::FindObject(*context, "personas") : nullptr;
    if (personas != nullptr) {
        if (!ReadString(*personas, "computation_class", "context.personas.computation_class",
                        &e.computation_class, &error) ||
            !ReadString(*personas, "computation_id", "context.personas.computation_id",
                        &e.computation_id, &error) ||
            !ReadString(*personas, "computation_key", "context.personas.computation_key",
                        &e.computation_key, &error) ||
            !ReadString(*personas, "external_audience_id", "context.personas.external_audience_id",
                        &e.external_audience_id, &error)) {
            return error;
        }
        if (const rapidjson::Value* settings = json::FindObject(*personas, "audience_settings")) {
            if (!ReadString(*settings, "contextKind",
                            "context.personas.audience_settings.contextKind",
                            &e.settings_context_kind, &error)) {
                return error;
            }
        }
    }
    if (e.computation_key && !e.computation_key->empty()) {
        if (e.type == "identify") {
            e.value = ReadBool(traits, *e.computation_key);
        } else if (e.type == "track") {
            e.value = ReadBool(properties, *e.computation_key);
        }
    }
    if (message_id && !message_id->empty()) {
        e.message_id = std::move(*message_id);
    } else {
        // Without a messageId, identical re-sends still de-duplicate: the id is derived
        // from the event's own bytes.
        e.message_id = "audsync-sha1-" + crypto::Sha1Hex(raw);
        e.message_id_synthesized = true;
    }
    e.raw = std::move(raw);
    return e;
}

}  // namespace audsync::segment
