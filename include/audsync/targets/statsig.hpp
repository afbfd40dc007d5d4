// The Statsig target: one ID-list segment per audience and context kind, kept in step with
// Statsig's Console API by adding and removing IDs (docs/platforms/statsig.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::targets {

// Paths under the target's api_base.
inline constexpr const char* kStatsigSegmentsPath = "/console/v1/segments";
// The Console API version audsync is written against (sent as STATSIG-API-VERSION).
inline constexpr const char* kStatsigApiVersion = "20240601";
// Create Segment: `id` and `name` are 3-100 characters ([A-Za-z0-9_-] for the id, the
// same and spaces for the name); `description` at most 1,000.
inline constexpr size_t kStatsigMinSegmentId = 3;
inline constexpr size_t kStatsigMaxSegmentId = 100;
inline constexpr size_t kStatsigMaxDescription = 1000;
// Add / Remove IDs: at most this many IDs in one call.
inline constexpr size_t kStatsigMaxIdsPerCall = 100000;
// Console API mutations are counted in windows of 10 seconds; Statsig sends no header
// that says when a window ends, so a 429 waits at least this long.
inline constexpr int64_t kStatsigRateWindowMs = 10000;

// The Statsig segment id of an audience and context kind. The audience key as it is when
// the kind is "user", else "<audience key>--<kind>", as long as the key and the kind use
// only A-Z a-z 0-9 _ (Segment's audience keys are snake_case) and the id has 3-100
// characters. Anything else (another character, too short, too long) becomes
// "<prefix>-<8 hex>": the prefix is the key (and "_<kind>") with every other character
// replaced by '_', cut so that the id has at most 100 characters, and the 8 hex digits
// are the start of SHA-1 of "<audience key>" or "<audience key>:<kind>". A plain id holds
// no '-' or exactly one "--", a hashed id exactly one single '-': two audiences never
// share an id unless their SHA-1 prefixes collide.
std::string StatsigSegmentId(std::string_view audience_key, std::string_view context_kind);

// The segment's description: who manages it and which audience it mirrors, at most
// 1,000 bytes.
std::string StatsigSegmentDescription(const PushRequest& request);

// The Create Segment body, byte for byte:
// {"name":ID,"id":ID,"type":"id_list","idType":ID_TYPE,"description":...}
std::string StatsigCreateBody(const PushRequest& request, std::string_view id_type);

// {"ids":[...]}: the keys of the members whose value is `included`, in request order,
// each once.
std::string StatsigIdsBody(const PushRequest& request, bool included);

// The keys of the members whose value is `included`, in request order, each once.
std::vector<std::string> StatsigIds(const PushRequest& request, bool included);

// Why Statsig cannot take this push, or nullopt: more than 100,000 IDs to add or to
// remove in one call. The text names the limit and the numbers.
std::optional<std::string> StatsigLimitViolation(const PushRequest& request);

// `body` with Statsig keys blanked: the configured key anywhere, and any token that
// starts with "console-", "secret-" or "client-" (Statsig's 401 answer quotes the key it
// was sent).
std::string RedactStatsigKeys(std::string_view body, std::string_view key);

// Whether a 400 says the segment is not an ID list ("Segment must be of type 'id_list'
// to be modified on this endpoint"): a segment of that id was made by hand in Statsig.
bool IsStatsigWrongSegmentType(const HttpResult& result);

// Fits an answer to what the engine expects of a Statsig answer: keys redacted from the
// body; a 429 keeps Retry-After if it has one, never a ratelimit_reset (Statsig documents
// no header), and waits at least kStatsigRateWindowMs; a 400 about the segment's type
// pauses the target (credentials_refused) instead of dead-lettering every member.
void NormaliseStatsigAnswer(HttpResult& result, std::string_view key);

// The credential check's line for the answer to GET /console/v1/segments?limit=1:
// "console API key: ok", "console API key: refused (HTTP 401)", "console API key: not
// verified (...)". It never holds the key.
std::string StatsigKeyCheckLine(const HttpResult& list_answer);

class CurlClient;

// Statsig's Console API over libcurl, with a kept-alive connection. A push removes the
// members that left (DELETE /console/v1/segments/{id}/id_list) and then adds the members
// that joined (PATCH, same path), each call only when it has IDs; it stops at the first
// call that fails and returns that answer, so that the engine retries (both calls are
// idempotent) or bisects the whole batch. Removing first means that a member who left
// loses the flag no later than one who joined gains it. A call answered 404 creates the
// segment (POST /console/v1/segments) and is made once more; a segment that can neither be
// found nor created (a refused create, other than 401, 403, 429, 5xx or no answer) pauses
// the target like refused credentials, as does a segment of that id that is not an ID
// list. Not thread-safe: one instance per thread.
class StatsigTarget : public Target {
  public:
    explicit StatsigTarget(const config::Target& target);
    ~StatsigTarget() override;
    StatsigTarget(const StatsigTarget&) = delete;
    StatsigTarget& operator=(const StatsigTarget&) = delete;

    PushShape shape() const override { return PushShape::kDeltas; }
    // The answer of the last request made; over_limit set (status 0) when a call would
    // carry more than 100,000 IDs, and then nothing is sent. A push without members sends
    // nothing and answers 204.
    HttpResult Push(const PushRequest& request) override;
    // GET /console/v1/segments?limit=1 with the console key.
    CheckResult Check() override;

  private:
    HttpResult Send(const std::string& method, const std::string& path, const std::string& body);
    // DELETE or PATCH of the segment's ID list; on 404 the segment is created and the call
    // made once more.
    HttpResult ChangeIds(const std::string& method, const std::string& segment_id,
                         const PushRequest& request, const std::string& body);

    const config::Target target_;
    std::unique_ptr<CurlClient> client_;
};

std::unique_ptr<Target> MakeStatsigTarget(const config::Target& target);

}  // namespace audsync::targets
