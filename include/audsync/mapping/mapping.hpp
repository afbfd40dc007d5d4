// Semantics rules 1-4 (and 6's bounds): a Segment event to a membership change, not applicable, or
// a rejection.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>

#include "audsync/config/config.hpp"
#include "audsync/segment/event.hpp"

namespace audsync::mapping {

// A membership decision resolved from one event (semantics rules 1-4).
struct MembershipChange {
    std::string audience_id;   // computation_id
    std::string audience_key;  // computation_key
    std::string context_kind;
    std::string context_key;
    bool included = false;
    int64_t event_time_ms = 0;  // rule 6: timestamp, originalTimestamp, sentAt, received
};

// An event that is not a membership event (rule 1), with why, as a stable code:
// not_identify_or_track (page, screen, group, alias), not_engage (no Engage
// computation_class: not sent by an Audience or Journey), not_membership_class (a
// computation that is not an audience or journey step, e.g. a computed trait),
// no_audience_id (computation_id or computation_key missing or empty).
struct NotApplicable {
    std::string reason;
};

struct Rejection {
    std::string reason;  // stable code, e.g. no_context_key
    std::string detail;
};

using Outcome = std::variant<MembershipChange, NotApplicable, Rejection>;

// The destination settings the rules need.
struct Rules {
    config::ContextKeyChoice key_choice = config::ContextKeyChoice::kUserIdOnly;
    std::string default_kind = "user";
    // Operator overrides by audience id or audience key (rule 4, first choice).
    const std::map<std::string, std::string>* kind_overrides = nullptr;
    size_t max_key_bytes = 1024;
    size_t max_id_bytes = 256;
    // Rule 6 bound: an event time later than received + this is invalid_timestamp.
    int64_t max_future_skew_ms = 86400 * 1000;
};

// The rules of one destination under the config's limits.
Rules RulesFor(const config::Destination& destination, const config::Limits& limits);

// The context kind recorded for a Webhook Audiences audience, by its externalId.
using AudienceKindLookup = std::function<std::optional<std::string>(const std::string&)>;

// Rule 3: the context key chosen by `choice`, empty strings counting as absent.
std::optional<std::string> ResolveContextKey(const segment::Event& event,
                                             config::ContextKeyChoice choice);

// Rule 2: the membership value, or nullopt when the event carries none that counts.
std::optional<bool> ResolveValue(const segment::Event& event);

// Rule 6: the event time in Unix ms; nullopt when a present timestamp is not ISO-8601.
std::optional<int64_t> ResolveEventTime(const segment::Event& event, int64_t received_ms);

// Rules 1-4 and 6 for one event. Pure: no I/O beyond `audience_kind`. An event time
// more than rules.max_future_skew_ms after `received_ms` is rejected invalid_timestamp:
// it would otherwise win against every genuine event until that date.
Outcome Resolve(const segment::Event& event, const Rules& rules, int64_t received_ms,
                const AudienceKindLookup& audience_kind = {});

}  // namespace audsync::mapping
