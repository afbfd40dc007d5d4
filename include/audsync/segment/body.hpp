// The three body shapes Segment sends, their signatures and write keys.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/segment/event.hpp"

namespace audsync::segment {

// One item of a request body, in body order: either a readable event or why not.
struct Item {
    std::optional<Event> event;
    ItemError error;         // set when !event
    std::string message_id;  // as sent, for reporting a rejected item
};

struct ParsedBody {
    std::vector<Item> items;
    std::optional<std::string> write_key;  // Tracking API "writeKey" in the body
    bool single = false;                   // the body was one event, not a batch
};

// A Webhook / Webhook Audiences body: one event object or a JSON array of them.
// Errors: malformed_json/invalid_utf8/too_deep (400), invalid_body (400),
// too_many_events and event_too_large for a single event (413).
Result<ParsedBody> ParseWebhookBody(std::string_view body, const config::Limits& limits);

// An HTTP Tracking API body. `forced_type` is the route's type for /v1/identify and
// /v1/track (the body is one event), empty for /v1/batch and /v1/import (the body is
// {"batch": [...]}). Batch-level context and integrations are merged into every item
// (the item's own members win); every item needs userId or anonymousId.
Result<ParsedBody> ParseTrackingBody(std::string_view body, std::string_view forced_type,
                                     const config::Limits& limits);

// One value of a captured stream (audsync replay events): a Tracking API object with a
// "batch" array is read as a batch, anything else as a Webhook body (one event or an
// array of events). The value is parsed once.
Result<ParsedBody> ParseReplayValue(std::string_view value, const config::Limits& limits);

// Byte range [first, second) of the first element of a top-level JSON array, or nullopt
// when `body` is not an array with at least one element. Assumes nothing about the
// validity of what follows the element.
std::optional<std::pair<size_t, size_t>> FirstElementSpan(std::string_view body);

// Segment's X-Signature rule: hex HMAC-SHA1 keyed by `secret` of the body, or, for an
// array, of the raw bytes of its first element. Compared in constant time.
bool VerifySignature(std::string_view body, std::string_view secret, std::string_view signature);

// The user name of an "Authorization: Basic ..." header (Segment's write key), or
// nullopt when the header is not Basic or not decodable.
std::optional<std::string> BasicAuthUser(std::string_view authorization);

}  // namespace audsync::segment
