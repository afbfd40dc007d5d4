// Admission control: ingest refuses (503 overloaded, Retry-After) before the inbox's
// backlog outgrows its bounds, instead of acknowledging what cannot be applied in time.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "audsync/common/result.hpp"

namespace audsync::ingest {

// The bounds (limits.max_backlog_events, limits.max_backlog_seconds).
struct BacklogLimits {
    int64_t max_events = 1000000;
    int64_t max_seconds = 120;
};

// The backlog as last seen: events stored and not applied, the age of the oldest, and
// how fast the applier has been folding (events/s; 0 when unknown).
struct BacklogView {
    int64_t events = 0;
    int64_t age_ms = 0;
    double applied_per_second = 0;
};

enum class LimitHit { kNone, kEvents, kSeconds };
std::string_view ToString(LimitHit limit);

struct AdmissionDecision {
    bool admit = true;
    LimitHit limit = LimitHit::kNone;  // the bound that refused (kNone when admitted)
    int retry_after_s = 0;             // when refused: 1-60
};

// Resuming after a refusal needs the backlog back under this share of each bound, so
// that a backlog hovering at its bound does not flip between refusals and admissions.
inline constexpr double kResumeShare = 0.9;

// The age bound is kept ahead of time, not only once it has passed (the events already
// acknowledged cannot be made younger): once the oldest event waiting is older than
// kProjectionAfter of max_backlog_seconds, the applier has been behind for that long and
// its recent rate is what it can fold; a request whose events it would reach, at that
// rate, only after kProjectionShare of the bound is refused as past max_backlog_seconds.
// The share leaves room for an applier that slows down to half its rate.
inline constexpr double kProjectionAfter = 0.25;
inline constexpr double kProjectionShare = 0.5;

// The decision, pure. `incoming`: the events of the request. `refusing`: whether the
// last decision refused (then the resume bounds apply). An empty backlog admits any
// request, so that one larger than the bound is not refused for ever. Retry-After is the
// time the applier needs, at its recent rate, to bring the backlog back under the resume
// bounds (10 s when the rate is unknown), between 1 and 60 s.
AdmissionDecision Decide(const BacklogView& backlog, size_t incoming, const BacklogLimits& limits,
                         bool refusing);

// Counters since start, for /metrics.
struct AdmissionCounters {
    std::atomic<uint64_t> refused_events_limit{0};   // requests refused by max_backlog_events
    std::atomic<uint64_t> refused_seconds_limit{0};  // requests refused by max_backlog_seconds
    std::atomic<uint64_t> refused_events{0};         // events those requests carried
    std::atomic<uint64_t> waits{0};                  // times a replay waited for room
};

// The gate in front of the inbox. `read` gives the backlog as the files hold it (events
// appended by any process and not applied, and when the oldest was received); it is
// called at most every `refresh_ms` (it reads the database). Between two reads the
// events admitted since the last read are added to it, and so are the events of
// requests admitted and not yet committed, so that concurrent requests cannot together
// pass the bound (an overestimate: events applied since the read are not subtracted).
// Logs one warning when a spell of refusals begins and one info line when it ends.
// Thread-safe.
class Admission {
  public:
    struct Source {
        int64_t events = 0;
        std::optional<int64_t> oldest_received_ms;
        uint64_t applied_total = 0;  // events folded since start (for the drain rate)
    };
    using Reader = std::function<Source()>;
    using Clock = std::function<int64_t()>;  // milliseconds

    Admission(Reader read, Clock now, int64_t refresh_ms = 100);

    // A request of `events` events: admitted (the events are counted as in flight until
    // Done) or the 503 overloaded error to answer with (retry_after_s set). Errors from
    // `read` (the database unreadable) admit: the append then reports its own failure.
    [[nodiscard]] Status Admit(size_t events, const BacklogLimits& limits);
    // After an admitted request's append: `stored` of its events were committed.
    void Done(size_t admitted, size_t stored);

    // The current view and whether a request would be admitted now (for the API and
    // metrics; moves the spell state like a request would, so a recovery is logged
    // without a request).
    struct State {
        BacklogView backlog;
        bool admitting = true;
    };
    State Current(const BacklogLimits& limits);

    // A replay that found no room and waits for it.
    void CountWait() { counters_.waits.fetch_add(1, std::memory_order_relaxed); }

    const AdmissionCounters& counters() const { return counters_; }

  private:
    BacklogView ViewLocked(int64_t now);  // refreshes when due; mu_ held
    void Transition(const AdmissionDecision& d, const BacklogView& v, const BacklogLimits& limits);

    Reader read_;
    Clock now_;
    int64_t refresh_ms_;
    AdmissionCounters counters_;
    std::mutex mu_;
    // Protected by mu_:
    Source last_;                  // the last read
    int64_t last_read_ms_ = -1;    // when it was taken (-1: never)
    int64_t committed_since_ = 0;  // events committed since the last read
    int64_t in_flight_ = 0;        // admitted, not yet committed or failed
    bool refusing_ = false;        // the spell state
    // applied_total sampled at most once a second over the last kRateWindowMs, oldest
    // first: the applier folds in parts and its total moves in steps, so its rate is
    // read over a window, not from one second to the next.
    std::deque<std::pair<int64_t, uint64_t>> rate_samples_;
    double rate_ = 0;  // applied events/s over the samples (0: unknown)
};

}  // namespace audsync::ingest
