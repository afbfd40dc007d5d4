// Admission control: the pure decision and the gate that feeds it.
#include "audsync/ingest/admission.hpp"

#include <algorithm>
#include <cmath>
#include <exception>

#include "audsync/common/log.hpp"

namespace audsync::ingest {
namespace {

// The applier's rate is read over this much time (admission's projection waits for a
// backlog a quarter of max_backlog_seconds old, which at the default 120 s is this).
constexpr int64_t kRateWindowMs = 30000;

}  // namespace

std::string_view ToString(LimitHit limit) {
    switch (limit) {
        case LimitHit::kNone:
            return "none";
        case LimitHit::kEvents:
            return "events";
        case LimitHit::kSeconds:
            return "seconds";
    }
    return "none";
}

AdmissionDecision Decide(const BacklogView& backlog, size_t incoming, const BacklogLimits& limits,
                         bool refusing) {
    AdmissionDecision d;
    if (backlog.events <= 0) return d;  // nothing waits: even a request above the bound
    const double share = refusing ? kResumeShare : 1.0;
    const double max_events = static_cast<double>(limits.max_events) * share;
    const double max_age_ms = static_cast<double>(limits.max_seconds) * 1000.0 * share;
    const double after = static_cast<double>(backlog.events) + static_cast<double>(incoming);
    const double rate = backlog.applied_per_second;
    const bool aged = static_cast<double>(backlog.age_ms) > max_age_ms;
    // Reached only past kProjectionShare of the bound at the applier's rate (see there).
    const bool projected =
        rate > 0 &&
        static_cast<double>(backlog.age_ms) >=
            static_cast<double>(limits.max_seconds) * 1000.0 * kProjectionAfter &&
        after / rate * 1000.0 > max_age_ms * kProjectionShare;
    if (aged || projected) {
        d.limit = LimitHit::kSeconds;
    } else if (after > max_events) {
        d.limit = LimitHit::kEvents;
    } else {
        return d;
    }
    d.admit = false;
    // Events the applier must fold before this request would be admitted again.
    double to_fold = 0;
    const double resume_events = static_cast<double>(limits.max_events) * kResumeShare;
    const double resume_age = static_cast<double>(limits.max_seconds) * 1000.0 * kResumeShare;
    if (d.limit == LimitHit::kEvents) {
        to_fold = after - resume_events;
    } else if (!aged) {
        // Until the projection is back under its resume share.
        to_fold = after - rate * resume_age / 1000.0 * kProjectionShare;
    } else {
        // The age falls as the oldest events are folded; at a steady arrival the share
        // of the backlog older than the resume age has to go.
        to_fold = static_cast<double>(backlog.events) *
                  (1.0 - resume_age / static_cast<double>(std::max<int64_t>(1, backlog.age_ms)));
    }
    double seconds = rate > 0 ? to_fold / rate : 10.0;
    d.retry_after_s = static_cast<int>(std::clamp(std::ceil(seconds), 1.0, 60.0));
    return d;
}

Admission::Admission(Reader read, Clock now, int64_t refresh_ms)
    : read_(std::move(read)), now_(std::move(now)), refresh_ms_(refresh_ms) {}

BacklogView Admission::ViewLocked(int64_t now) {
    if (last_read_ms_ < 0 || now - last_read_ms_ >= refresh_ms_) {
        // Reset before the read: a commit between the two is counted twice (a safe
        // overestimate) rather than not at all.
        const int64_t committed = committed_since_;
        committed_since_ = 0;
        try {
            Source s = read_();
            // A total that went back (a restart of the counter) starts the window over.
            if (!rate_samples_.empty() && s.applied_total < rate_samples_.back().second) {
                rate_samples_.clear();
                rate_ = 0;
            }
            if (rate_samples_.empty() || now - rate_samples_.back().first >= 1000) {
                rate_samples_.emplace_back(now, s.applied_total);
            }
            while (rate_samples_.size() > 2 && now - rate_samples_[1].first >= kRateWindowMs) {
                rate_samples_.pop_front();
            }
            if (rate_samples_.size() >= 2) {
                const auto& [from_ms, from] = rate_samples_.front();
                const auto& [to_ms, to] = rate_samples_.back();
                rate_ = static_cast<double>(to - from) * 1000.0 /
                        static_cast<double>(std::max<int64_t>(1, to_ms - from_ms));
            }
            last_ = s;
            last_read_ms_ = now;
        } catch (const std::exception& e) {
            committed_since_ = committed;  // the old read stands, and so does what came after
            last_read_ms_ = now;           // tried again after refresh_ms, not per request
            log::Debug(std::string("admission: cannot read the backlog: ") + e.what());
        }
    }
    BacklogView v;
    v.events = last_.events + committed_since_ + in_flight_;
    v.age_ms = last_.oldest_received_ms ? std::max<int64_t>(0, now - *last_.oldest_received_ms) : 0;
    v.applied_per_second = rate_;
    return v;
}

void Admission::Transition(const AdmissionDecision& d, const BacklogView& v,
                           const BacklogLimits& limits) {
    if (!d.admit && !refusing_) {
        refusing_ = true;
        log::Warn("ingest refuses new events (503 overloaded, Retry-After " +
                  std::to_string(d.retry_after_s) +
                  " s) until the applier catches up: " + std::to_string(v.events) +
                  " events wait to be applied, the oldest " + std::to_string(v.age_ms / 1000) +
                  " s old (limits.max_backlog_events " + std::to_string(limits.max_events) +
                  ", limits.max_backlog_seconds " + std::to_string(limits.max_seconds) +
                  "); `audsync segments list` shows the backlog");
    } else if (d.admit && refusing_) {
        refusing_ = false;
        log::Info("ingest admits events again: " + std::to_string(v.events) +
                  " events wait to be applied, the oldest " + std::to_string(v.age_ms / 1000) +
                  " s old");
    }
}

Status Admission::Admit(size_t events, const BacklogLimits& limits) {
    AdmissionDecision d;
    {
        std::lock_guard<std::mutex> lock(mu_);
        const BacklogView v = ViewLocked(now_());
        d = Decide(v, events, limits, refusing_);
        Transition(d, v, limits);
        if (d.admit) {
            in_flight_ += static_cast<int64_t>(events);
            return Ok();
        }
    }
    (d.limit == LimitHit::kEvents ? counters_.refused_events_limit
                                  : counters_.refused_seconds_limit)
        .fetch_add(1, std::memory_order_relaxed);
    counters_.refused_events.fetch_add(events, std::memory_order_relaxed);
    Error e =
        MakeError(ErrorCode::kUnavailable, "overloaded",
                  d.limit == LimitHit::kEvents
                      ? "more events are waiting to be applied than limits.max_backlog_events "
                        "allows; nothing of this request was stored, retry after " +
                            std::to_string(d.retry_after_s) + " s"
                      : "the oldest event waiting to be applied is older than "
                        "limits.max_backlog_seconds allows; nothing of this request was "
                        "stored, retry after " +
                            std::to_string(d.retry_after_s) + " s");
    e.retry_after_s = d.retry_after_s;
    return e;
}

void Admission::Done(size_t admitted, size_t stored) {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ -= static_cast<int64_t>(admitted);
    committed_since_ += static_cast<int64_t>(stored);
}

Admission::State Admission::Current(const BacklogLimits& limits) {
    std::lock_guard<std::mutex> lock(mu_);
    State s;
    s.backlog = ViewLocked(now_());
    const AdmissionDecision d = Decide(s.backlog, 0, limits, refusing_);
    Transition(d, s.backlog, limits);
    s.admitting = d.admit;
    return s;
}

}  // namespace audsync::ingest
