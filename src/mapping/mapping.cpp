// Semantics rules 1-4 (and 6's bounds): a Segment event to a membership change, not applicable, or
// a rejection.
#include "audsync/mapping/mapping.hpp"

#include "audsync/common/text.hpp"

namespace audsync::mapping {
namespace {

const std::optional<std::string>& NonEmpty(const std::optional<std::string>& s) {
    static const std::optional<std::string> kNone;
    return s && !s->empty() ? s : kNone;
}

}  // namespace

Rules RulesFor(const config::Destination& destination, const config::Limits& limits) {
    Rules rules;
    rules.key_choice = destination.context_key;
    rules.default_kind = destination.context_kind;
    rules.kind_overrides = &destination.audience_context_kinds;
    rules.max_key_bytes = limits.max_key_bytes;
    rules.max_id_bytes = limits.max_id_bytes;
    rules.max_future_skew_ms = limits.max_future_skew_seconds * 1000;
    return rules;
}

std::optional<std::string> ResolveContextKey(const segment::Event& event,
                                             config::ContextKeyChoice choice) {
    using config::ContextKeyChoice;
    const auto& user = NonEmpty(event.user_id);
    const auto& email = NonEmpty(event.email);
    const auto& anon = NonEmpty(event.anonymous_id);
    switch (choice) {
        case ContextKeyChoice::kUserIdOnly:
            return user;
        case ContextKeyChoice::kUserIdThenEmail:
            return user ? user : email;
        case ContextKeyChoice::kUserIdThenAnonymousId:
            return user ? user : anon;
        case ContextKeyChoice::kUserIdThenEmailThenAnonymousId:
            return user ? user : (email ? email : anon);
        case ContextKeyChoice::kEmailOnly:
            return email;
    }
    return std::nullopt;
}

std::optional<bool> ResolveValue(const segment::Event& event) {
    switch (event.value) {
        case segment::BoolValue::kTrue:
            return true;
        case segment::BoolValue::kFalse:
            return false;
        case segment::BoolValue::kAbsent:
        case segment::BoolValue::kNotBool:
            break;
    }
    if (event.type == "track" && event.event_name) {
        if (*event.event_name == "Audience Entered") return true;
        if (*event.event_name == "Audience Exited") return false;
    }
    if (event.computation_class && *event.computation_class == "journey_step") {
        return true;  // legacy journey steps are add-only
    }
    return std::nullopt;  // never read a missing value as a removal
}

std::optional<int64_t> ResolveEventTime(const segment::Event& event, int64_t received_ms) {
    for (const auto* field : {&event.timestamp, &event.original_timestamp, &event.sent_at}) {
        if (NonEmpty(*field)) return text::ParseIso8601(**field);
    }
    return received_ms;
}

Outcome Resolve(const segment::Event& event, const Rules& rules, int64_t received_ms,
                const AudienceKindLookup& audience_kind) {
    // Rule 1: only identify/track with an audience or journey_step computation count.
    const auto& cls = event.computation_class;
    if (event.type != "identify" && event.type != "track") {
        return NotApplicable{"not_identify_or_track"};
    }
    if (!NonEmpty(cls)) return NotApplicable{"not_engage"};
    if (*cls != "audience" && *cls != "journey_step") return NotApplicable{"not_membership_class"};
    if (!NonEmpty(event.computation_id) || !NonEmpty(event.computation_key)) {
        return NotApplicable{"no_audience_id"};
    }
    if (event.computation_id->size() > rules.max_id_bytes ||
        event.computation_key->size() > rules.max_id_bytes) {
        return Rejection{"invalid_audience",
                         "computation_id and computation_key must be at "
                         "most " +
                             std::to_string(rules.max_id_bytes) + " bytes"};
    }
    auto value = ResolveValue(event);
    if (!value) {
        return Rejection{"no_membership_value",
                         "no boolean at the audience key and no Audience Entered/Exited event"};
    }
    auto key = ResolveContextKey(event, rules.key_choice);
    if (!key) {
        return Rejection{"no_context_key", std::string("no context key for priority ") +
                                               std::string(config::ToString(rules.key_choice))};
    }
    if (key->size() > rules.max_key_bytes) {
        return Rejection{
            "context_key_too_long",
            "context key is longer than " + std::to_string(rules.max_key_bytes) + " bytes"};
    }
    auto time = ResolveEventTime(event, received_ms);
    if (!time) return Rejection{"invalid_timestamp", "timestamp is not an ISO-8601 date-time"};
    if (*time > received_ms && *time - received_ms > rules.max_future_skew_ms) {
        return Rejection{"invalid_timestamp", "timestamp is more than " +
                                                  std::to_string(rules.max_future_skew_ms / 1000) +
                                                  " seconds after the event was received"};
    }

    // Rule 4: override, then the event's own kind, then the destination default.
    std::string kind = rules.default_kind;
    bool chosen = false;
    if (rules.kind_overrides != nullptr) {
        for (const std::string* id : {&*event.computation_id, &*event.computation_key}) {
            auto it = rules.kind_overrides->find(*id);
            if (it != rules.kind_overrides->end()) {
                kind = it->second;
                chosen = true;
                break;
            }
        }
    }
    if (!chosen) {
        if (NonEmpty(event.context_kind)) {
            kind = *event.context_kind;
        } else if (NonEmpty(event.settings_context_kind)) {
            kind = *event.settings_context_kind;
        } else if (NonEmpty(event.external_audience_id) && audience_kind) {
            if (auto k = audience_kind(*event.external_audience_id)) kind = *k;
        }
    }
    if (!config::IsValidContextKind(kind)) {
        return Rejection{"invalid_context_kind",
                         "context kind must be 1-256 characters of A-Z a-z 0-9 . _ - and not "
                         "kind or multi"};
    }
    MembershipChange change;
    change.audience_id = *event.computation_id;
    change.audience_key = *event.computation_key;
    change.context_kind = std::move(kind);
    change.context_key = std::move(*key);
    change.included = *value;
    change.event_time_ms = *time;
    return change;
}

}  // namespace audsync::mapping
