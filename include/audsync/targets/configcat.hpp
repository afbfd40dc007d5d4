// The ConfigCat target: one segment per audience and context kind, replaced whole on every
// push through ConfigCat's Public Management API (docs/platforms/configcat.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "audsync/config/config.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::targets {

// ConfigCat's limits that do not depend on the plan (subscription-plan-limits,
// CreateSegmentModel in the Public Management API's OpenAPI document). Lengths are
// counted as ConfigCat (a .NET service) counts string lengths: UTF-16 code units.
inline constexpr size_t kConfigCatMaxComparisonValue = 65535;  // the whole comma-joined list
inline constexpr size_t kConfigCatMaxItemLength = 255;         // one item of the list
inline constexpr size_t kConfigCatMaxSegmentName = 255;
inline constexpr size_t kConfigCatMaxDescription = 1000;

// The comparison value of a segment with no member. ConfigCat refuses an empty comparison
// value (CreateSegmentModel: comparisonValue minLength 1), so an empty audience is this
// one item instead: it matches only a user whose Identifier is exactly this string.
inline constexpr const char* kConfigCatEmptyListValue = "audsync:no-members";

// The segment's name: the audience key for the context kind "user", else
// "<audience_key>:<context_kind>".
std::string ConfigCatSegmentName(std::string_view audience_key, std::string_view context_kind);

// The included members' keys joined with ',' in request order, a repeated key kept once,
// members with value false left out; kConfigCatEmptyListValue when none is included.
std::string ConfigCatComparisonValue(const PushRequest& request);

// The body of both the create (POST) and the update (PUT) request, byte for byte:
// {"name","description","comparisonAttribute":"Identifier","comparator":"sensitiveIsOneOf",
//  "comparisonValue"}.
std::string ConfigCatSegmentBody(const PushRequest& request);

// Why ConfigCat cannot hold this list, or nullopt when it can: a segment name over 255
// characters, more included members than `max_list_items`, a key that is empty, over 255
// characters, holds ',' or starts or ends with white space (ConfigCat splits the list at
// ',' and trims each item), or a comparison value over 65,535 characters. The text names
// the limit and the numbers.
std::optional<std::string> ConfigCatLimitViolation(const PushRequest& request, int max_list_items);

// Length in UTF-16 code units of UTF-8 text (what ConfigCat's length limits count).
size_t Utf16Length(std::string_view utf8);

// An X-Rate-Limit-Reset value as epoch milliseconds. ConfigCat documents it as "the time
// when the current rate limit period resets" without a format: an ISO 8601 date-time is
// read as such; digits are read as epoch milliseconds (>= 10^12), epoch seconds
// (>= 10^9) or else seconds from `now_ms`. nullopt for anything else.
std::optional<int64_t> ParseConfigCatRateLimitReset(std::string_view value, int64_t now_ms);

// Fills `result.ratelimit_reset` (epoch ms) of a 429 answer without Retry-After from its
// X-Rate-Limit-Reset header (`headers`: lower-cased names); clears it otherwise.
void NormaliseConfigCatRateLimit(HttpResult& result,
                                 const std::map<std::string, std::string>& headers, int64_t now_ms);

class CurlClient;

// ConfigCat's segments over libcurl, with a kept-alive connection. A push finds the
// segment's id (cached by name in this instance; on a miss it lists the product's
// segments, and creates the segment when none has the name) and replaces its whole
// condition with PUT. A PUT answered 404 (the segment was deleted in ConfigCat) forgets
// the id and creates the segment again within the same push.
// Not thread-safe: one instance per thread.
class ConfigCatTarget : public Target {
  public:
    explicit ConfigCatTarget(const config::Target& target);
    ~ConfigCatTarget() override;
    ConfigCatTarget(const ConfigCatTarget&) = delete;
    ConfigCatTarget& operator=(const ConfigCatTarget&) = delete;

    PushShape shape() const override { return PushShape::kFullList; }
    // The answer of the last request made; over_limit set (status 0) when the list
    // breaks a ConfigCat limit, and then nothing is sent.
    HttpResult Push(const PushRequest& request) override;
    // GET /v1/me (the credentials), then GET /v1/products/{productId}/segments (the product).
    CheckResult Check() override;

    // The segment id cached for a segment name, if any (for tests and diagnostics).
    std::optional<std::string> CachedSegmentId(const std::string& name) const;

  private:
    HttpResult Send(const std::string& method, const std::string& path, const std::string& body);
    // Lists the product's segments and sets `id` to the one named `name`, if any.
    HttpResult FindSegment(const std::string& name, std::optional<std::string>& id);
    // Creates the segment and sets `id` to its segmentId.
    HttpResult CreateSegment(const std::string& body, std::optional<std::string>& id);

    const config::Target target_;
    const std::string authorization_;  // "Authorization: Basic ..."; never logged
    std::unique_ptr<CurlClient> client_;
    std::map<std::string, std::string> segment_ids_;  // segment name -> segmentId
};

std::unique_ptr<Target> MakeConfigCatTarget(const config::Target& target);

}  // namespace audsync::targets
