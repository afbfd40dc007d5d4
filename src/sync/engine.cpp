#include "audsync/sync/engine.hpp"

#include <algorithm>
#include <chrono>

#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

namespace audsync::sync {
namespace {

// A scan happens at least this often, whatever the timers say.
constexpr int64_t kMaxIdleMs = 5000;

}  // namespace

void Histogram::Observe(double seconds) {
    size_t i = 0;
    while (i < kBuckets && seconds > kBounds[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_micros_.fetch_add(static_cast<uint64_t>(std::max(0.0, seconds) * 1e6),
                          std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::Cumulative() const {
    std::vector<uint64_t> out;
    uint64_t total = 0;
    for (size_t i = 0; i <= kBuckets; ++i) {
        total += counts_[i].load(std::memory_order_relaxed);
        out.push_back(total);
    }
    return out;
}

double Histogram::Sum() const {
    return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
}

Engine::Engine(const config::Config& config, const std::string& db_path, store::Writer& writer,
               TargetFactory factory)
    : config_(config), db_path_(db_path), writer_(writer), factory_(std::move(factory)) {}

Engine::~Engine() { Stop(); }

void Engine::Start() {
    scheduler_ = std::thread([this] { Schedule(); });
    for (int i = 0; i < config_.sync_workers; ++i) workers_.emplace_back([this] { Work(); });
}

void Engine::Stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
        tasks_.clear();  // not started: the members stay pending in the database
    }
    scheduler_cv_.notify_all();
    worker_cv_.notify_all();
    if (scheduler_.joinable()) scheduler_.join();
    for (auto& w : workers_) {
        if (w.joinable()) w.join();
    }
    workers_.clear();
}

void Engine::Wake() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        woken_ = true;
    }
    scheduler_cv_.notify_one();
}

void Engine::Schedule() {
    std::unique_ptr<store::Database> db;
    std::unique_ptr<store::SyncReader> reader;
    int64_t next_wake = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            auto until =
                std::chrono::system_clock::time_point(std::chrono::milliseconds(next_wake));
            scheduler_cv_.wait_until(lock, until,
                                     [this] { return stopping_ || woken_ || immediate_; });
            if (stopping_) return;
            if (woken_ && !immediate_ && config_.sync_linger_ms > 0) {
                // Let a burst of commits land so that it shares one push per segment.
                scheduler_cv_.wait_for(lock, std::chrono::milliseconds(config_.sync_linger_ms),
                                       [this] { return stopping_; });
                if (stopping_) return;
            }
            woken_ = false;
            immediate_ = false;
        }
        const int64_t now = text::NowMs();
        next_wake = now + kMaxIdleMs;
        try {
            if (!db) {
                db = std::make_unique<store::Database>(db_path_, false);
                reader = std::make_unique<store::SyncReader>(*db);
                std::lock_guard<std::mutex> lock(mu_);
                for (const auto& [id, until] : reader->DestinationPauses())
                    paused_until_[id] = until;
            }
            std::vector<store::DueSegment> due = reader->DueSegments(now);
            std::vector<Task> ready;
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (auto& seg : due) {
                    if (in_flight_segments_.count(seg.id) > 0) continue;
                    const config::Destination* dest = config_.FindDestination(seg.destination);
                    if (dest == nullptr) continue;  // no longer configured: stays pending
                    int64_t paused = paused_until_[dest->id];
                    if (paused > now) {
                        next_wake = std::min(next_wake, paused);
                        continue;
                    }
                    int& flying = in_flight_per_destination_[dest->id];
                    if (flying >= dest->max_in_flight) continue;  // a finish wakes us
                    ++flying;
                    in_flight_segments_.insert(seg.id);
                    ready.push_back(Task{std::move(seg), {}, dest});
                }
            }
            for (auto& task : ready) {
                task.members = reader->Dirty(task.segment.id, now, task.destination->max_batch);
            }
            if (auto next = reader->NextAttemptAfter(now)) next_wake = std::min(next_wake, *next);
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (auto& task : ready) {
                    if (task.members.empty()) {
                        in_flight_segments_.erase(task.segment.id);
                        --in_flight_per_destination_[task.destination->id];
                        continue;
                    }
                    tasks_.push_back(std::move(task));
                }
            }
            worker_cv_.notify_all();
        } catch (const store::SqliteError& e) {
            log::Error(std::string("sync: cannot read pending members: ") + e.what());
            reader.reset();
            db.reset();
            next_wake = now + 1000;
        }
    }
}

void Engine::Work() {
    std::map<std::string, std::unique_ptr<targets::Target>> targets;
    std::mt19937_64 rng(std::random_device{}());
    for (;;) {
        Task task;
        {
            std::unique_lock<std::mutex> lock(mu_);
            worker_cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
            if (stopping_) return;
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        Execute(task, targets, rng);
    }
}

void Engine::Execute(Task& task, std::map<std::string, std::unique_ptr<targets::Target>>& targets,
                     std::mt19937_64& rng) {
    const config::Destination& dest = *task.destination;
    auto& target = targets[dest.id];
    if (!target) target = factory_(dest);
    RetrySchedule schedule{dest.retry_base_ms, dest.retry_max_ms, dest.auth_retry_ms};
    int attempts = 0;
    for (const auto& m : task.members) attempts = std::max(attempts, m.attempts);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);

    std::vector<targets::PushMember> members;
    members.reserve(task.members.size());
    for (const auto& m : task.members) members.push_back({m.context_key, m.desired});
    auto push = [&](const std::vector<targets::PushMember>& part) {
        targets::PushRequest request{task.segment.audience_id, task.segment.audience_key,
                                     task.segment.context_kind, part};
        auto started = std::chrono::steady_clock::now();
        targets::HttpResult r = target->Push(request);
        counters_.push_seconds.Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        return r;
    };
    auto decide = [&](const targets::HttpResult& r, size_t size) {
        Decision d = Decide(r, attempts, size, text::NowMs(), schedule, uniform(rng));
        switch (d.action) {
            case Action::kAcknowledge:
                ++counters_.pushes_ok;
                break;
            case Action::kRetry:
                ++counters_.pushes_retry;
                break;
            case Action::kRateLimited:
                ++counters_.pushes_rate_limited;
                break;
            case Action::kAuthFailed:
                ++counters_.pushes_auth_failed;
                break;
            case Action::kSplit:
            case Action::kDeadLetter:
                ++counters_.pushes_refused;
                break;
        }
        return d;
    };
    std::vector<Decision> decisions = PushWithBisection(members, push, decide);

    const int64_t now = text::NowMs();
    int64_t pause_until = 0;
    bool any_ack = false;
    std::optional<Decision> failure;
    for (const auto& d : decisions) {
        if (d.action == Action::kAcknowledge) any_ack = true;
        if (d.action == Action::kRateLimited || d.action == Action::kAuthFailed) {
            pause_until = std::max(pause_until, now + d.delay_ms);
            failure = d;
        }
    }
    size_t acked = 0, dead = 0;
    Status stored = writer_.Run(
        [&](store::WriteStore& w) {
            for (size_t i = 0; i < decisions.size(); ++i) {
                const auto& m = task.members[i];
                const auto& d = decisions[i];
                switch (d.action) {
                    case Action::kAcknowledge:
                        w.RecordAck(task.segment.id, m.context_key, m.desired, m.version, d.status,
                                    now);
                        ++acked;
                        break;
                    case Action::kDeadLetter:
                        w.RecordDead(task.segment.id, m.context_key, m.version, d.status, d.error,
                                     now);
                        ++dead;
                        break;
                    default:
                        w.RecordRetry(task.segment.id, m.context_key, now + d.delay_ms, d.status,
                                      d.error, now);
                }
            }
            if (failure && failure->action == Action::kAuthFailed) {
                w.SetDestinationState(dest.id, "auth_failed", pause_until, failure->error,
                                      std::nullopt);
            } else if (failure) {
                w.SetDestinationState(dest.id, "ok", pause_until, std::nullopt, std::nullopt);
            } else if (any_ack) {
                w.SetDestinationState(dest.id, "ok", 0, std::nullopt, now);
            }
        },
        decisions.size());
    if (!stored) {
        // Nothing recorded: the members stay due and go out again.
        log::Error("sync: cannot record push outcome: " + stored.error().message);
    } else {
        counters_.members_acknowledged += acked;
        counters_.members_dead += dead;
        if (failure && failure->action == Action::kAuthFailed) {
            log::Warn("sync: destination " + dest.id + " refused the service token (" +
                      failure->error.substr(0, 40) + "); retrying in " +
                      std::to_string(failure->delay_ms / 1000) + " s");
        }
    }
    Finish(task, failure ? pause_until : 0);
}

void Engine::Finish(const Task& task, int64_t pause_until) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        in_flight_segments_.erase(task.segment.id);
        --in_flight_per_destination_[task.destination->id];
        if (pause_until > 0) {
            auto& p = paused_until_[task.destination->id];
            p = std::max(p, pause_until);
        } else {
            paused_until_[task.destination->id] = 0;
        }
        immediate_ = true;
    }
    scheduler_cv_.notify_one();
}

}  // namespace audsync::sync
