// The Segment event model: what audsync reads of one identify or track call.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "audsync/config/config.hpp"

namespace audsync::segment {

// What the event carries at `traits[key]` (identify) or `properties[key]` (track).
enum class BoolValue { kAbsent, kTrue, kFalse, kNotBool };

// The fields of one Segment event that audsync reads. Strings are verbatim (they may
// hold any Unicode, including U+0000); empty strings are kept and treated as absent by
// the mapping rules.
struct Event {
    std::string type;  // identify, track, page, screen, group, alias
    std::string message_id;
    bool message_id_synthesized = false;  // the event had none; derived from its bytes
    std::optional<std::string> user_id;
    std::optional<std::string> anonymous_id;
    std::optional<std::string> email;       // traits.email, else context.traits.email
    std::optional<std::string> event_name;  // track only
    std::optional<std::string> timestamp;
    std::optional<std::string> original_timestamp;
    std::optional<std::string> sent_at;
    // context.personas
    std::optional<std::string> computation_class;
    std::optional<std::string> computation_id;
    std::optional<std::string> computation_key;
    std::optional<std::string> external_audience_id;
    std::optional<std::string> settings_context_kind;  // audience_settings.contextKind
    std::optional<std::string> context_kind;           // top-level contextKind (extras)
    BoolValue value = BoolValue::kAbsent;
    std::string raw;  // the event as compact JSON, as stored in the events log
};

// Why one item of a body could not be read; `reason` is a stable code.
struct ItemError {
    std::string reason;
    std::string detail;
};

using ReadResult = std::variant<Event, ItemError>;

// Reads one event object. `raw` is its compact serialisation (used for the size limit,
// the stored log and, when it has no messageId, a derived one).
ReadResult ReadEvent(const rapidjson::Value& item, std::string raw, const config::Limits& limits);

bool IsKnownType(std::string_view type);

}  // namespace audsync::segment
