// The Unleash target: one segment per audience and context kind, its one IN constraint
// replaced whole on every push through Unleash's Admin API (docs/platforms/unleash.md).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "audsync/config/config.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::targets {

// Unleash's limits that are not server settings (the constraint schema of
// src/lib/schema/feature-schema.ts: each value a string of 1 to 100 characters, counted as
// JavaScript counts them: UTF-16 code units).
inline constexpr size_t kUnleashMaxValueLength = 100;

// The only value of a segment with no member. Unleash refuses an IN constraint without
// values ("value" must contain at least 1 items), so an empty audience is this one value
// instead: it matches only a context whose field is exactly this string.
inline constexpr const char* kUnleashEmptyListValue = "audsync:no-members";

// The segment's name: the audience key for the context kind "user", else
// "<audience_key>:<context_kind>".
std::string UnleashSegmentName(std::string_view audience_key, std::string_view context_kind);

// The body of both the create (POST) and the update (PUT) request, byte for byte:
// {"name","description","project":null or the project,"constraints":[{"contextName",
//  "operator":"IN","values":[...],"inverted":false,"caseInsensitive":false}]}.
// The values are the included members' keys in request order, a repeated key kept once,
// members with value false left out; [kUnleashEmptyListValue] when none is included.
std::string UnleashSegmentBody(const PushRequest& request, std::string_view context_name,
                               std::string_view project);

// Why Unleash cannot hold this list, or nullopt when it can: more included members than
// `max_list_items` (Unleash's segmentValuesLimit), or a key that is empty or over 100
// characters. The text names the limit and the numbers.
std::optional<std::string> UnleashLimitViolation(const PushRequest& request, int max_list_items);

// Unleash's error answers are {"name","message","details":[{"message"}]}, and a failed
// validation says only "Refer to the `details` list" in `message`. Returns the body as
// {"name","message"} with the details' text in the message, so that what audsync shows
// says what Unleash refused; any other body unchanged.
std::string UnleashErrorBody(std::string_view body);

// Reads `resourceLimits.segmentValues` from a GET /api/admin/ui-config answer; nullopt
// when absent (older servers) or not a positive integer.
std::optional<long long> UnleashSegmentValuesLimit(std::string_view ui_config_body);

class CurlClient;

// Unleash's segments over libcurl, with a kept-alive connection. A push finds the
// segment's id (cached by name in this instance; on a miss it lists the segments, and
// creates the segment when none has the name) and replaces the whole segment with PUT.
// A PUT answered 404 (the segment was deleted in Unleash) forgets the id and creates the
// segment again within the same push; a create answered 409 (made meanwhile, by another
// worker or a person) lists again and replaces it.
// Not thread-safe: one instance per thread.
class UnleashTarget : public Target {
  public:
    explicit UnleashTarget(const config::Target& target);
    ~UnleashTarget() override;
    UnleashTarget(const UnleashTarget&) = delete;
    UnleashTarget& operator=(const UnleashTarget&) = delete;

    PushShape shape() const override { return PushShape::kFullList; }
    // The answer of the last request made; over_limit set (status 0) when the list
    // breaks an Unleash limit, and then nothing is sent.
    HttpResult Push(const PushRequest& request) override;
    // GET /api/admin/ui-config: the token, and Unleash's segment values limit against
    // max_list_items.
    CheckResult Check() override;

    // The segment id cached for a segment name, if any (for tests and diagnostics).
    std::optional<std::string> CachedSegmentId(const std::string& name) const;

  private:
    HttpResult Send(const std::string& method, const std::string& path, const std::string& body);
    // Lists the segments and sets `id` to the one named `name`, if any.
    HttpResult FindSegment(const std::string& name, std::optional<std::string>& id);
    // Creates the segment and sets `id` to its id.
    HttpResult CreateSegment(const std::string& body, std::optional<std::string>& id);

    const config::Target target_;
    const std::string authorization_;  // "Authorization: <token>"; never logged
    std::unique_ptr<CurlClient> client_;
    std::map<std::string, std::string> segment_ids_;  // segment name -> id
};

std::unique_ptr<Target> MakeUnleashTarget(const config::Target& target);

}  // namespace audsync::targets
