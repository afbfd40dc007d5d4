// The push policy: platform answer -> action, backoff, rate-limit waits, bisection.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/targets/target.hpp"

namespace audsync::sync {

// What to do with the members of one push, given the platform's answer (rule 12).
enum class Action {
    kAcknowledge,  // 2xx: record the pushed state
    kRetry,        // 5xx, 408, no answer (without end); 409 and 1xx/3xx (kMaxRefusedAttempts)
    kRateLimited,  // 429: wait for the platform's window, pause the destination
    kAuthFailed,   // 401/403: destination auth_failed, slow retries, members pending
    kSplit,        // 400 / other 4xx on several members: bisect to find the refused
    kDeadLetter,   // 400 / other 4xx on one member, or a 409 on the last allowed attempt
};

// An answer that retrying will not change (409, 1xx, 3xx) is tried at most this many
// times (attempts of the member, counted since its last acknowledgement), then the
// member becomes a dead letter.
constexpr int kMaxRefusedAttempts = 3;
// The wait between those attempts is capped so that they all end within two minutes,
// whatever retry_max_ms says.
constexpr int64_t kRefusedRetryMaxMs = 30000;
// A 429 never makes the destination retry sooner than this.
constexpr int64_t kRateLimitFloorMs = 1000;

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
    std::string message;   // the platform's own message (its JSON "message", else the body)
};

// Exponential backoff after `attempts` failures: in [d/2, d) with d = min(max,
// base * 2^attempts), placed by `jitter` in [0, 1).
int64_t Backoff(int attempts, const RetrySchedule& schedule, double jitter);

// A non-negative decimal integer, saturating at INT64_MAX; nullopt for anything else
// (sign, spaces, empty, other characters).
std::optional<int64_t> ParseDecimal(std::string_view text);

// An HTTP-date in the IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT") to Unix
// milliseconds; nullopt when it is not one.
std::optional<int64_t> ParseHttpDate(std::string_view text);

// The wait a Retry-After value asks for, in ms: delta-seconds (saturating) or an
// HTTP-date minus now (0 when past); nullopt when it is neither.
std::optional<int64_t> RetryAfterMs(std::string_view value, int64_t now_ms);

// The wait a 429 asks for: Retry-After, else X-Ratelimit-Reset (epoch ms) minus now,
// within [0, max_ms]; nullopt when neither header is usable.
std::optional<int64_t> RateLimitWait(const targets::HttpResult& result, int64_t now_ms,
                                     int64_t max_ms);

// The platform's message in an answer body: LaunchDarkly's JSON "message" when there is
// one, else the body, cut at a UTF-8 character boundary.
std::string PlatformMessage(std::string_view body);

// The pure outcome -> action function. `jitter` in [0, 1) is drawn by the caller. A 429
// waits what its headers ask (plus up to a tenth for jitter); without a usable header, the
// backoff, but at least the result's rate_limit_window_ms when the target sets one; always
// within [kRateLimitFloorMs, max(retry_max_ms, kRateLimitFloorMs)].
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
