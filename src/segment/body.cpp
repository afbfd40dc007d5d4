// The three body shapes Segment sends, their signatures and write keys.
#include "audsync/segment/body.hpp"

#include <rapidjson/document.h>

#include <cctype>
#include <vector>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

namespace audsync::segment {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

Error TooLarge(const std::string& name, const std::string& message) {
    return MakeError(ErrorCode::kPayloadTooLarge, name, message);
}

Error BadShape(const std::string& message) {
    return MakeError(ErrorCode::kInvalidBody, "invalid_body", message);
}

// Erases every member named writeKey, at any depth, keeping the order of the rest.
// Iterative: the depth is bounded by the parser, the stack by the document's size.
void RemoveWriteKeys(rapidjson::Value& root) {
    std::vector<rapidjson::Value*> stack{&root};
    while (!stack.empty()) {
        rapidjson::Value* v = stack.back();
        stack.pop_back();
        if (v->IsObject()) {
            // Erase first: erasing moves later members, so pointers are taken after.
            for (auto it = v->MemberBegin(); it != v->MemberEnd();) {
                if (json::View(it->name) == "writeKey") {
                    it = v->EraseMember(it);
                } else {
                    ++it;
                }
            }
            for (auto it = v->MemberBegin(); it != v->MemberEnd(); ++it) {
                if (it->value.IsObject() || it->value.IsArray()) stack.push_back(&it->value);
            }
        } else if (v->IsArray()) {
            for (auto& e : v->GetArray()) {
                if (e.IsObject() || e.IsArray()) stack.push_back(&e);
            }
        }
    }
}

Item ReadItem(rapidjson::Value& value, const config::Limits& limits) {
    Item item;
    if (value.IsObject()) {
        // A write key is a secret: it never reaches the stored log, wherever it sits
        // (a client may copy it into context or properties).
        RemoveWriteKeys(value);
        if (auto id = json::FindString(value, "messageId")) item.message_id = *id;
    }
    std::string raw = value.IsObject() ? json::Serialize(value) : std::string();
    ReadResult r = ReadEvent(value, std::move(raw), limits);
    if (auto* e = std::get_if<Event>(&r)) {
        item.event = std::move(*e);
    } else {
        item.error = std::get<ItemError>(r);
    }
    return item;
}

// Adds to `target` (an object member `name` of an item) each member of `batch_level`
// that the item does not set itself.
void MergeInto(rapidjson::Value& item, const char* name, const rapidjson::Value& batch_level,
               rapidjson::Document::AllocatorType& alloc) {
    rapidjson::Value key(name, alloc);
    auto it = item.FindMember(key);
    if (it == item.MemberEnd() || it->value.IsNull()) {
        if (it != item.MemberEnd()) item.RemoveMember(it);
        item.AddMember(key, rapidjson::Value(batch_level, alloc), alloc);
        return;
    }
    if (!it->value.IsObject()) return;  // the item's own value wins
    for (auto m = batch_level.MemberBegin(); m != batch_level.MemberEnd(); ++m) {
        if (it->value.FindMember(m->name) == it->value.MemberEnd()) {
            it->value.AddMember(rapidjson::Value(m->name, alloc), rapidjson::Value(m->value, alloc),
                                alloc);
        }
    }
}

// The two body shapes, from a parsed document (the parsers below share them).
Result<ParsedBody> FromWebhookDocument(rapidjson::Document& doc, const config::Limits& limits);
Result<ParsedBody> FromTrackingDocument(rapidjson::Document& doc, std::string_view forced_type,
                                        const config::Limits& limits);

}  // namespace

Result<ParsedBody> ParseWebhookBody(std::string_view body, const config::Limits& limits) {
    if (body.size() > limits.webhook_max_request_bytes) {
        return TooLarge("payload_too_large", "body is " + std::to_string(body.size()) +
                                                 " bytes, over the limit of " +
                                                 std::to_string(limits.webhook_max_request_bytes));
    }
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(body, doc, limits.max_json_depth));
    return FromWebhookDocument(doc, limits);
}

namespace {

Result<ParsedBody> FromWebhookDocument(rapidjson::Document& doc, const config::Limits& limits) {
    ParsedBody out;
    if (doc.IsObject()) {
        out.single = true;
        Item item = ReadItem(doc, limits);
        if (!item.event && item.error.reason == "event_too_large") {
            return TooLarge("event_too_large", item.error.detail);
        }
        out.items.push_back(std::move(item));
        return out;
    }
    if (!doc.IsArray()) return BadShape("body must be an event object or an array of events");
    if (doc.Size() > limits.webhook_max_events) {
        return TooLarge("too_many_events", "body has " + std::to_string(doc.Size()) +
                                               " events, over the limit of " +
                                               std::to_string(limits.webhook_max_events));
    }
    out.items.reserve(doc.Size());
    for (auto& v : doc.GetArray()) out.items.push_back(ReadItem(v, limits));
    return out;
}

}  // namespace

Result<ParsedBody> ParseTrackingBody(std::string_view body, std::string_view forced_type,
                                     const config::Limits& limits) {
    if (body.size() > limits.tracking_max_request_bytes) {
        return TooLarge("payload_too_large", "body is " + std::to_string(body.size()) +
                                                 " bytes, over the limit of " +
                                                 std::to_string(limits.tracking_max_request_bytes));
    }
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(body, doc, limits.max_json_depth));
    return FromTrackingDocument(doc, forced_type, limits);
}

namespace {

Result<ParsedBody> FromTrackingDocument(rapidjson::Document& doc, std::string_view forced_type,
                                        const config::Limits& limits) {
    if (!doc.IsObject()) return BadShape("body must be a JSON object");
    ParsedBody out;
    bool bad_key = false;
    out.write_key = json::FindString(doc, "writeKey", &bad_key);
    if (bad_key) return BadShape("writeKey must be a string");
    auto& alloc = doc.GetAllocator();

    auto finish = [&](Item item) {
        if (item.event && !item.event->user_id && !item.event->anonymous_id) {
            item.error = ItemError{"missing_identity",
                                   "the event has neither userId nor "
                                   "anonymousId"};
            item.event.reset();
        }
        out.items.push_back(std::move(item));
    };

    if (!forced_type.empty()) {
        out.single = true;
        doc.RemoveMember("type");
        doc.AddMember("type",
                      rapidjson::Value(forced_type.data(),
                                       static_cast<rapidjson::SizeType>(forced_type.size()), alloc),
                      alloc);
        Item item = ReadItem(doc, limits);
        if (!item.event && item.error.reason == "event_too_large") {
            return TooLarge("event_too_large", item.error.detail);
        }
        finish(std::move(item));
        return out;
    }

    auto batch_it = doc.FindMember("batch");
    if (batch_it == doc.MemberEnd() || !batch_it->value.IsArray()) {
        return BadShape("body must have a \"batch\" array");
    }
    rapidjson::Value& batch = batch_it->value;
    if (batch.Size() > limits.tracking_max_events) {
        return TooLarge("too_many_events", "batch has " + std::to_string(batch.Size()) +
                                               " events, over the limit of " +
                                               std::to_string(limits.tracking_max_events));
    }
    const rapidjson::Value* context = json::Find(doc, "context");
    const rapidjson::Value* integrations = json::Find(doc, "integrations");
    if (context != nullptr && !context->IsNull() && !context->IsObject()) {
        return BadShape("context must be an object");
    }
    if (integrations != nullptr && !integrations->IsNull() && !integrations->IsObject()) {
        return BadShape("integrations must be an object");
    }
    out.items.reserve(batch.Size());
    for (auto& v : batch.GetArray()) {
        if (v.IsObject()) {
            if (context != nullptr && context->IsObject()) MergeInto(v, "context", *context, alloc);
            if (integrations != nullptr && integrations->IsObject()) {
                MergeInto(v, "integrations", *integrations, alloc);
            }
        }
        finish(ReadItem(v, limits));
    }
    return out;
}

}  // namespace

Result<ParsedBody> ParseReplayValue(std::string_view value, const config::Limits& limits) {
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(value, doc, limits.max_json_depth));
    const rapidjson::Value* batch = doc.IsObject() ? json::Find(doc, "batch") : nullptr;
    if (batch != nullptr && batch->IsArray()) return FromTrackingDocument(doc, "", limits);
    return FromWebhookDocument(doc, limits);
}

std::optional<std::pair<size_t, size_t>> FirstElementSpan(std::string_view body) {
    size_t i = 0;
    while (i < body.size() && IsSpace(body[i])) ++i;
    if (i >= body.size() || body[i] != '[') return std::nullopt;
    ++i;
    while (i < body.size() && IsSpace(body[i])) ++i;
    if (i >= body.size() || body[i] == ']') return std::nullopt;
    const size_t start = i;
    char first = body[i];
    if (first == '{' || first == '[' || first == '"') {
        int depth = 0;
        bool in_string = false;
        for (; i < body.size(); ++i) {
            char c = body[i];
            if (in_string) {
                if (c == '\\') {
                    ++i;
                } else if (c == '"') {
                    in_string = false;
                    if (depth == 0) return std::make_pair(start, i + 1);
                }
                continue;
            }
            if (c == '"') {
                in_string = true;
            } else if (c == '{' || c == '[') {
                ++depth;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return std::make_pair(start, i + 1);
            }
        }
        return std::nullopt;
    }
    while (i < body.size() && body[i] != ',' && body[i] != ']' && !IsSpace(body[i])) ++i;
    return std::make_pair(start, i);
}

bool VerifySignature(std::string_view body, std::string_view secret, std::string_view signature) {
    std::string_view signed_bytes = body;
    size_t i = 0;
    while (i < body.size() && IsSpace(body[i])) ++i;
    if (i < body.size() && body[i] == '[') {
        auto span = FirstElementSpan(body);
        if (!span) return false;
        signed_bytes = body.substr(span->first, span->second - span->first);
    }
    std::string expected = crypto::HmacSha1Hex(secret, signed_bytes);
    std::string given(signature);
    for (char& c : given) {
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    }
    return crypto::SecretEquals(expected, given);
}

std::optional<std::string> BasicAuthUser(std::string_view authorization) {
    while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
    if (authorization.size() < 6) return std::nullopt;
    std::string scheme(authorization.substr(0, 6));
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme != "basic ") return std::nullopt;
    std::string_view encoded = authorization.substr(6);
    while (!encoded.empty() && encoded.front() == ' ') encoded.remove_prefix(1);
    while (!encoded.empty() && encoded.back() == ' ') encoded.remove_suffix(1);
    auto decoded = text::Base64Decode(encoded);
    if (!decoded) return std::nullopt;
    size_t colon = decoded->find(':');
    return colon == std::string::npos ? *decoded : decoded->substr(0, colon);
}

}  // namespace audsync::segment
