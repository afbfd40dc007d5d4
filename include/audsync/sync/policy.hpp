#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "audsync/targets/target.hpp"

namespace audsync::sync {

// What to do with the members of one push, given the platform's answer (rule 12).
enum class Action {
    kAcknowledge,  // 2xx: record the pushed state
    kRetry,        // 5xx, 409, no answer: back off exponentially
    kRateLimited,  // 429: wait for the platform's window, pause the destination
    kAuthFailed,   // 401/403: destination auth_failed, slow retries, members pending
    kSplit,        // 400 / other 4xx on several members: bisect to find the refused
    kDeadLetter,   // 400 / other 4xx on one member: the platform refuses it
};

struct RetrySchedule {
    int64_t base_ms = 500;
    int64_t max_ms = 300000;
    int64_t auth_ms = 120000;
};

struct Decision {
    Action action = Action::kRetry;
    int64_t delay_ms = 0;  // until the next attempt (kRetry, kRateLimited, kAuthFailed)
    int status = 0;        // the HTTP status behind it (0: no answer)
    std::string error;     // for last_error and dead letters; never holds a secret
};

// Exponential backoff after `attempts` failures: in [d/2, d) with d = min(max,
// base * 2^attempts), placed by `jitter` in [0, 1).
int64_t Backoff(int attempts, const RetrySchedule& schedule, double jitter);

// The wait a 429 asks for: Retry-After (seconds), else X-Ratelimit-Reset (epoch ms)
// minus now; nullopt when neither header is usable.
std::optional<int64_t> RateLimitWait(const targets::HttpResult& result, int64_t now_ms);

// The pure outcome -> action function. `jitter` in [0, 1) is drawn by the caller.
Decision Decide(const targets::HttpResult& result, int attempts, size_t batch_size, int64_t now_ms,
                const RetrySchedule& schedule, double jitter);

// Pushes `members` and, when a push is refused as a whole (kSplit), bisects it until
// every refused member stands alone, so that the rest go through. Returns one decision
// per member, in order. A rate limit or refused credentials stop the bisection: the
// members not yet pushed share that decision.
using PushFn = std::function<targets::HttpResult(const std::vector<targets::PushMember>&)>;
using DecideFn = std::function<Decision(const targets::HttpResult&, size_t batch_size)>;
std::vector<Decision> PushWithBisection(const std::vector<targets::PushMember>& members,
                                        const PushFn& push, const DecideFn& decide);

}  // namespace audsync::sync
