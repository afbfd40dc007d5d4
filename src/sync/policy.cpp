// The push policy as pure functions: answer -> action, backoff, rate-limit waits, bisection.
#include "audsync/sync/policy.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <array>
#include <limits>

#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"

namespace audsync::sync {
namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
constexpr size_t kMaxErrorBodyBytes = 512;
constexpr size_t kMaxMessageBytes = 200;

std::string Describe(const targets::HttpResult& r) {
    if (r.status == 0) return "no answer: " + r.transport_error;
    std::string out = "HTTP " + std::to_string(r.status);
    if (!r.body.empty()) out += ": " + log::Clip(r.body, kMaxErrorBodyBytes);
    return out;
}

int64_t SaturatingMul(int64_t a, int64_t b) {
    if (a != 0 && b > kMaxInt64 / a) return kMaxInt64;
    return a * b;
}

// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
int64_t DaysFromCivil(int64_t y, int m, int d) {
    y -= m <= 2 ? 1 : 0;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t mp = (m + 9) % 12;  // March = 0
    const int64_t doy = (153 * mp + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool Digits(std::string_view s, size_t pos, size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
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

std::optional<int64_t> ParseDecimal(std::string_view text) {
    if (text.empty()) return std::nullopt;
    int64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        const int digit = c - '0';
        v = v > (kMaxInt64 - digit) / 10 ? kMaxInt64 : v * 10 + digit;
    }
    return v;
}

std::optional<int64_t> ParseHttpDate(std::string_view s) {
    // "Sun, 06 Nov 1994 08:49:37 GMT": fixed positions, 29 characters.
    static constexpr std::array<const char*, 7> kDays = {"Mon", "Tue", "Wed", "Thu",
                                                         "Fri", "Sat", "Sun"};
    static constexpr std::array<const char*, 12> kMonths = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || s.substr(25) != " GMT") {
        return std::nullopt;
    }
    if (std::none_of(kDays.begin(), kDays.end(),
                     [&](const char* d) { return s.substr(0, 3) == d; }))
        return std::nullopt;
    int month = 0;
    while (month < 12 && s.substr(8, 3) != kMonths[static_cast<size_t>(month)]) ++month;
    int day = 0, year = 0, hour = 0, minute = 0, second = 0;
    if (month == 12 || !Digits(s, 5, 2, day) || !Digits(s, 12, 4, year) ||
        !Digits(s, 17, 2, hour) || !Digits(s, 20, 2, minute) || !Digits(s, 23, 2, second)) {
        return std::nullopt;
    }
    if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
    const int64_t days = DaysFromCivil(year, month + 1, day);
    return ((days * 24 + hour) * 60 + minute) * 60000 + int64_t{second} * 1000;
}

std::optional<int64_t> RetryAfterMs(std::string_view value, int64_t now_ms) {
    if (auto secs = ParseDecimal(value)) return SaturatingMul(*secs, 1000);
    if (auto when = ParseHttpDate(value)) return std::max<int64_t>(0, *when - now_ms);
    return std::nullopt;
}

std::optional<int64_t> RateLimitWait(const targets::HttpResult& result, int64_t now_ms,
                                     int64_t max_ms) {
    max_ms = std::max<int64_t>(0, max_ms);
    if (result.retry_after) {
        if (auto wait = RetryAfterMs(*result.retry_after, now_ms)) return std::min(*wait, max_ms);
    }
    if (result.ratelimit_reset) {
        if (auto reset = ParseDecimal(*result.ratelimit_reset)) {
            // Both are non-negative, so the difference cannot overflow.
            return std::clamp<int64_t>(*reset - std::max<int64_t>(0, now_ms), 0, max_ms);
        }
    }
    return std::nullopt;
}

std::string PlatformMessage(std::string_view body) {
    rapidjson::Document doc;
    if (json::Parse(body, doc, 8).ok() && doc.IsObject()) {
        if (auto m = json::FindString(doc, "message")) return log::Clip(*m, kMaxMessageBytes);
    }
    return log::Clip(body, kMaxMessageBytes);
}

Decision Decide(const targets::HttpResult& result, int attempts, size_t batch_size, int64_t now_ms,
                const RetrySchedule& schedule, double jitter) {
    jitter = std::clamp(jitter, 0.0, 0.999999);
    const int s = result.status;
    Decision d;
    d.status = s;
    d.error = Describe(result);
    d.message = s == 0 ? result.transport_error : PlatformMessage(result.body);
    if (result.over_limit) {
        // Refused by the target itself: about the whole request, so no bisection; the
        // same request would be refused again.
        d.action = Action::kDeadLetter;
        d.error = "not sent: " + *result.over_limit;
        d.message = *result.over_limit;
        return d;
    }
    if (s >= 200 && s < 300) {
        d.action = Action::kAcknowledge;
        d.error.clear();
        d.message.clear();
        return d;
    }
    if (s == 429) {
        d.action = Action::kRateLimited;
        const int64_t cap = std::max(schedule.max_ms, kRateLimitFloorMs);
        auto wait = RateLimitWait(result, now_ms, cap);
        if (!wait) {
            d.delay_ms = Backoff(attempts, schedule, jitter);
            if (result.rate_limit_window_ms) {
                // No header, but a known window: retrying within it is refused again.
                const int64_t window = std::max<int64_t>(0, *result.rate_limit_window_ms);
                d.delay_ms = std::max(
                    d.delay_ms,
                    window + static_cast<int64_t>(jitter * static_cast<double>(window / 10 + 100)));
            }
        } else {
            // Jitter spreads the retries of several workers over a tenth of the wait.
            d.delay_ms =
                *wait + static_cast<int64_t>(jitter * static_cast<double>(*wait / 10 + 100));
        }
        d.delay_ms = std::clamp(d.delay_ms, kRateLimitFloorMs, cap);
        return d;
    }
    if (s == 401 || s == 403 || result.credentials_refused) {
        d.action = Action::kAuthFailed;
        d.delay_ms = schedule.auth_ms +
                     static_cast<int64_t>(jitter * static_cast<double>(schedule.auth_ms / 10));
        return d;
    }
    if (s == 0 || s >= 500 || s == 408) {
        // Transient: retried without end, on the capped schedule.
        d.action = Action::kRetry;
        d.delay_ms = Backoff(attempts, schedule, jitter);
        return d;
    }
    if (s == 409 || s < 200 || (s >= 300 && s < 400)) {
        // The same answer is expected again: a few tries, then a dead letter.
        if (attempts + 1 >= kMaxRefusedAttempts) {
            d.action = Action::kDeadLetter;
            return d;
        }
        d.action = Action::kRetry;
        d.delay_ms = std::min(Backoff(attempts, schedule, jitter), kRefusedRetryMaxMs);
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
