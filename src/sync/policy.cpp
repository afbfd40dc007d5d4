#include "audsync/sync/policy.hpp"

#include <algorithm>
#include <cstdlib>

namespace audsync::sync {
namespace {

constexpr int64_t kMaxRateLimitWaitMs = 3600 * 1000;

std::string Describe(const targets::HttpResult& r) {
    if (r.status == 0) return "no answer: " + r.transport_error;
    std::string out = "HTTP " + std::to_string(r.status);
    if (!r.body.empty()) out += ": " + r.body.substr(0, 512);
    return out;
}

void Bisect(const std::vector<targets::PushMember>& members, size_t lo, size_t hi,
            const PushFn& push, const DecideFn& decide, std::vector<Decision>& out,
            std::optional<Decision>& stop) {
    if (lo >= hi) return;
    if (stop) {
        std::fill(out.begin() + static_cast<std::ptrdiff_t>(lo),
                  out.begin() + static_cast<std::ptrdiff_t>(hi), *stop);
        return;
    }
    std::vector<targets::PushMember> part(members.begin() + static_cast<std::ptrdiff_t>(lo),
                                          members.begin() + static_cast<std::ptrdiff_t>(hi));
    Decision d = decide(push(part), part.size());
    if (d.action == Action::kSplit && hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        Bisect(members, lo, mid, push, decide, out, stop);
        Bisect(members, mid, hi, push, decide, out, stop);
        return;
    }
    if (d.action == Action::kSplit) d.action = Action::kDeadLetter;
    if (d.action == Action::kRateLimited || d.action == Action::kAuthFailed) stop = d;
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(lo),
              out.begin() + static_cast<std::ptrdiff_t>(hi), d);
}

}  // namespace

int64_t Backoff(int attempts, const RetrySchedule& schedule, double jitter) {
    int64_t d = schedule.base_ms;
    for (int i = 0; i < attempts && d < schedule.max_ms; ++i) d *= 2;
    d = std::min(d, schedule.max_ms);
    jitter = std::clamp(jitter, 0.0, 0.999999);
    return d / 2 + static_cast<int64_t>(jitter * static_cast<double>(d - d / 2));
}

std::optional<int64_t> RateLimitWait(const targets::HttpResult& result, int64_t now_ms) {
    if (result.retry_after) {
        char* end = nullptr;
        long long secs = std::strtoll(result.retry_after->c_str(), &end, 10);
        if (end != result.retry_after->c_str() && *end == '\0' && secs >= 0) {
            return std::min<int64_t>(secs * 1000, kMaxRateLimitWaitMs);
        }
    }
    if (result.ratelimit_reset) {
        char* end = nullptr;
        long long reset = std::strtoll(result.ratelimit_reset->c_str(), &end, 10);
        if (end != result.ratelimit_reset->c_str() && *end == '\0') {
            return std::clamp<int64_t>(reset - now_ms, 0, kMaxRateLimitWaitMs);
        }
    }
    return std::nullopt;
}

Decision Decide(const targets::HttpResult& result, int attempts, size_t batch_size, int64_t now_ms,
                const RetrySchedule& schedule, double jitter) {
    jitter = std::clamp(jitter, 0.0, 0.999999);
    const int s = result.status;
    Decision d;
    d.status = s;
    d.error = Describe(result);
    if (s >= 200 && s < 300) {
        d.action = Action::kAcknowledge;
        d.error.clear();
        return d;
    }
    if (s == 429) {
        d.action = Action::kRateLimited;
        auto wait = RateLimitWait(result, now_ms);
        if (!wait) {
            d.delay_ms = Backoff(attempts, schedule, jitter);
        } else {
            // Jitter spreads the retries of several workers over a tenth of the wait.
            d.delay_ms =
                *wait + static_cast<int64_t>(jitter * static_cast<double>(*wait / 10 + 100));
        }
        return d;
    }
    if (s == 401 || s == 403) {
        d.action = Action::kAuthFailed;
        d.delay_ms = schedule.auth_ms +
                     static_cast<int64_t>(jitter * static_cast<double>(schedule.auth_ms / 10));
        return d;
    }
    if (s == 0 || s >= 500 || s == 409 || s == 408 || s < 200 || (s >= 300 && s < 400)) {
        d.action = Action::kRetry;
        d.delay_ms = Backoff(attempts, schedule, jitter);
        return d;
    }
    // 400 and the other 4xx: the platform refuses something in this batch.
    d.action = batch_size > 1 ? Action::kSplit : Action::kDeadLetter;
    return d;
}

std::vector<Decision> PushWithBisection(const std::vector<targets::PushMember>& members,
                                        const PushFn& push, const DecideFn& decide) {
    std::vector<Decision> out(members.size());
    std::optional<Decision> stop;
    Bisect(members, 0, members.size(), push, decide, out, stop);
    return out;
}

}  // namespace audsync::sync
