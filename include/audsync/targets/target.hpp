// The Target interface every flag platform implements, and its HTTP results.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audsync/config/config.hpp"

namespace audsync::targets {

// One member of a push: the context key and whether it is included.
struct PushMember {
    std::string context_key;
    bool value = false;
};

// One request to a flag platform: one audience, one context kind (semantics rule 10).
// For a delta platform `members` are the changes (included or not); for a full-list
// platform they are the whole list: every included member of the segment, value true.
struct PushRequest {
    std::string audience_id;   // cohortId
    std::string audience_key;  // names the platform's segment or trait
    std::string context_kind;
    std::vector<PushMember> members;
};

// What the platform answered. status 0 means no HTTP answer (connection refused,
// dropped, timed out); `transport_error` then says what happened.
// Rate-limit answers are normalised by each target: `retry_after` holds a Retry-After
// value (delta-seconds or an HTTP-date), `ratelimit_reset` an epoch time in ms.
struct HttpResult {
    int status = 0;
    std::string body;                            // at most a few KiB, for dead letters and errors
    std::optional<std::string> retry_after;      // Retry-After
    std::optional<std::string> ratelimit_reset;  // epoch ms when the window resets
    // Set by a target whose platform counts requests in windows of a documented length
    // but sends no header saying when one ends (Statsig: 10 s): a 429 without a usable
    // Retry-After or ratelimit_reset then waits at least this long, longer as the
    // backoff grows.
    std::optional<int64_t> rate_limit_window_ms;
    std::string transport_error;
    // Set when the target refused the push itself, without a request, because the
    // platform's limits forbid it (a list over the platform's item or size limit). The
    // text names the limit. Nothing was sent, nothing was truncated.
    std::optional<std::string> over_limit;
    // Set by a target whose platform refuses what its credentials name with another
    // status than 401/403 (Flagsmith's Edge API: 404 "Environment not found"): the
    // target pauses as for refused credentials instead of dead-lettering members.
    bool credentials_refused = false;
};

// The verdict of a credential check, one line per part.
struct CheckResult {
    bool ok = false;
    std::vector<std::string> lines;
};

// How a platform takes membership.
enum class PushShape {
    kDeltas,    // only the changed members, at most max_batch per request
    kFullList,  // the whole list of included members of an audience, replacing the last
};

// A flag platform. One instance is used by one thread at a time (it may hold a
// connection and, for full-list platforms, the ids of the segments it created); the
// engine creates one per worker.
class Target {
  public:
    virtual ~Target() = default;
    virtual PushShape shape() const = 0;
    virtual HttpResult Push(const PushRequest& request) = 0;
    virtual CheckResult Check() = 0;
};

// The target for `target.platform`. Throws std::runtime_error when libcurl cannot start.
std::unique_ptr<Target> MakeTarget(const config::Target& target);

}  // namespace audsync::targets
