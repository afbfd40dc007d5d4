// The sync engine's threads and I/O: scans, pushes, records, logs.
#include "audsync/sync/engine.hpp"

#include <algorithm>
#include <chrono>

#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

namespace audsync::sync {
namespace {

// A scan happens at least this often, whatever the timers say.
constexpr int64_t kMaxIdleMs = 5000;
constexpr size_t kMaxLogDetailBytes = 300;

// "HTTP 409: <the platform's message>" or "no answer: <why>", clipped, with the
// destination's token removed should the platform ever echo it.
std::string Detail(const Decision& d, const config::Destination& dest) {
    std::string out = d.status == 0 ? "no answer" : "HTTP " + std::to_string(d.status);
    if (!d.message.empty()) out += ": " + d.message;
    if (dest.service_token.size() >= 4) {
        for (size_t at = out.find(dest.service_token); at != std::string::npos;
             at = out.find(dest.service_token, at)) {
            out.replace(at, dest.service_token.size(), "[redacted]");
        }
    }
    return log::Clip(out, kMaxLogDetailBytes);
}

std::string Seconds(int64_t ms) { return std::to_string((ms + 999) / 1000) + " s"; }

std::string SegmentName(const store::DueSegment& s) {
    return "segment " + s.audience_id + " (" + s.context_kind + ") of destination " + s.destination;
}

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

Engine::Engine(std::shared_ptr<const config::Config> config, const std::string& db_path,
               store::Writer& writer, TargetFactory factory)
    : writer_(writer),
      db_path_(db_path),
      factory_(std::move(factory)),
      config_(std::move(config)) {}

Engine::~Engine() { Stop(); }

void Engine::Start() {
    int workers = 0;
    {
        std::lock_guard<std::mutex> lock(mu_);
        workers = std::max(1, config_->sync_workers);
    }
    scheduler_ = std::thread([this] { Schedule(); });
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
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

Status Engine::Resume(const std::string& destination_id) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (config_->FindDestination(destination_id) == nullptr) {
            return MakeError(ErrorCode::kNotFound, "unknown_destination",
                             "no destination with this id is configured");
        }
    }
    const int64_t now = text::NowMs();
    Status stored =
        writer_.Run([&](store::WriteStore& w) { w.ResumeDestination(destination_id, now); }, 1);
    if (!stored) return stored;
    {
        std::lock_guard<std::mutex> lock(mu_);
        // The status stays until a push answers: then "accepts pushes again" or, for a
        // refusal, a new warning (a pause of 0 marks the resume).
        state_.destinations[destination_id].paused_until_ms = 0;
        immediate_ = true;
    }
    log::Info("sync: destination " + destination_id + " resumed by an operator");
    scheduler_cv_.notify_one();
    return Ok();
}

void Engine::Reload(std::shared_ptr<const config::Config> config) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (config->sync_workers != config_->sync_workers) {
            log::Info("sync: sync.workers changes at the next start");
        }
        config_ = std::move(config);
        immediate_ = true;  // newly configured destinations may have work
    }
    scheduler_cv_.notify_one();
}

void Engine::Schedule() {
    std::unique_ptr<store::Database> db;
    std::unique_ptr<store::SyncReader> reader;
    int64_t next_wake = 0;
    for (;;) {
        std::shared_ptr<const config::Config> config;
        {
            std::unique_lock<std::mutex> lock(mu_);
            auto until =
                std::chrono::system_clock::time_point(std::chrono::milliseconds(next_wake));
            scheduler_cv_.wait_until(lock, until,
                                     [this] { return stopping_ || woken_ || immediate_; });
            if (stopping_) return;
            if (woken_ && !immediate_ && config_->sync_linger_ms > 0) {
                // Let a burst of commits land so that it shares one push per segment.
                scheduler_cv_.wait_for(lock, std::chrono::milliseconds(config_->sync_linger_ms),
                                       [this] { return stopping_ || immediate_; });
                if (stopping_) return;
            }
            woken_ = false;
            immediate_ = false;
            config = config_;
        }
        const int64_t now = text::NowMs();
        next_wake = now + kMaxIdleMs;
        std::vector<Task> ready;  // admitted, not yet queued
        try {
            if (!db) {
                db = std::make_unique<store::Database>(db_path_, false);
                reader = std::make_unique<store::SyncReader>(*db);
            }
            // A tiny table: re-read each scan so that a resume by another process counts.
            std::map<std::string, int64_t> pauses = reader->DestinationPauses();
            std::vector<store::DueSegment> due = reader->DueSegments(now);
            std::vector<std::string> resumed;
            {
                std::lock_guard<std::mutex> lock(mu_);
                Adoption adopted = AdoptStoredPauses(std::move(state_), pauses);
                resumed = std::move(adopted.resumed);
                Admission admission = Admit(std::move(adopted.state), due, *config, now);
                state_ = std::move(admission.state);
                if (admission.wake_at_ms > 0) next_wake = std::min(next_wake, admission.wake_at_ms);
                for (size_t i : admission.start) {
                    const config::Destination* dest = config->FindDestination(due[i].destination);
                    ready.push_back(Task{std::move(due[i]), {}, config, dest});
                }
            }
            for (const auto& id : resumed) {
                log::Info("sync: destination " + id + " resumed (its pause was cleared)");
            }
            for (auto& task : ready) {
                task.members = reader->Dirty(task.segment.id, now, task.destination->max_batch);
            }
            if (auto next = reader->NextAttemptAfter(now)) next_wake = std::min(next_wake, *next);
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (auto& task : ready) {
                    if (task.members.empty()) {
                        state_ = Release(std::move(state_), task.segment.id, task.destination->id);
                        continue;
                    }
                    tasks_.push_back(std::move(task));
                }
                ready.clear();
            }
            worker_cv_.notify_all();
        } catch (const store::SqliteError& e) {
            log::Error(std::string("sync: cannot read pending members: ") + e.what());
            {
                // Whatever was admitted goes back: it is still pending in the database.
                std::lock_guard<std::mutex> lock(mu_);
                for (const auto& task : ready) {
                    state_ = Release(std::move(state_), task.segment.id, task.destination->id);
                }
            }
            reader.reset();
            db.reset();
            next_wake = now + 1000;
        }
    }
}

void Engine::Work() {
    std::map<std::string, WorkerTarget> targets;
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

void Engine::Execute(Task& task, std::map<std::string, WorkerTarget>& targets,
                     std::mt19937_64& rng) {
    const config::Destination& dest = *task.destination;
    WorkerTarget& built = targets[dest.id];
    if (!built.target ||
        (built.config != task.config && !SameTargetSettings(*built.destination, dest))) {
        built.target = factory_(dest);
    }
    built.config = task.config;
    built.destination = task.destination;
    targets::Target& target = *built.target;
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
        targets::HttpResult r = target.Push(request);
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
        if (d.action != Action::kAcknowledge) {
            log::Debug("sync: " + SegmentName(task.segment) + ": " + Detail(d, dest));
        }
        return d;
    };
    std::vector<Decision> decisions = PushWithBisection(members, push, decide);

    const int64_t now = text::NowMs();
    Fold fold;
    {
        // Decided and applied under the lock, so that of two workers meeting the same
        // refusal only one reports the transition.
        std::lock_guard<std::mutex> lock(mu_);
        const bool retrying = state_.retrying_segments.count(task.segment.id) > 0;
        fold = FoldOutcome(state_.destinations[dest.id], retrying, decisions, now);
        DestinationState& d = state_.destinations[dest.id];
        d.status = fold.destination.status;
        d.paused_until_ms = fold.destination.paused_until_ms;
        if (fold.segment_retrying) {
            state_.retrying_segments.insert(task.segment.id);
        } else {
            state_.retrying_segments.erase(task.segment.id);
        }
    }
    Status stored = writer_.Run(
        [&](store::WriteStore& w) {
            for (size_t i = 0; i < decisions.size(); ++i) {
                const auto& m = task.members[i];
                const auto& d = decisions[i];
                switch (d.action) {
                    case Action::kAcknowledge:
                        w.RecordAck(task.segment.id, m.context_key, m.desired, m.version, d.status,
                                    now);
                        break;
                    case Action::kDeadLetter:
                    case Action::kSplit:
                        w.RecordDead(task.segment.id, m.context_key, m.version, d.status, d.error,
                                     now);
                        break;
                    default:
                        w.RecordRetry(task.segment.id, m.context_key, now + d.delay_ms, d.status,
                                      d.error, now);
                }
            }
            if (fold.write) {
                const DestinationWrite& dw = *fold.write;
                if (dw.status == DestinationStatus::kOk) {
                    w.SetDestinationState(dest.id, std::string(ToString(dw.status)),
                                          dw.paused_until_ms, std::nullopt, dw.success_ms);
                } else {
                    w.SetDestinationState(dest.id, std::string(ToString(dw.status)),
                                          dw.paused_until_ms, dw.error, std::nullopt);
                }
            }
        },
        decisions.size());
    if (!stored) {
        // Nothing recorded: the members stay due and go out again.
        log::Error("sync: cannot record push outcome: " + stored.error().message);
    } else {
        counters_.members_acknowledged += fold.acknowledged;
        counters_.members_dead += fold.dead_letters;
        Report(task, fold);
    }
    Finish(task);
}

void Engine::Report(const Task& task, const Fold& fold) {
    const config::Destination& dest = *task.destination;
    for (Note note : fold.notes) {
        switch (note) {
            case Note::kDestinationPaused:
                if (fold.pause->action == Action::kAuthFailed) {
                    log::Warn(
                        "sync: destination " + dest.id + " refused the service token (" +
                        Detail(*fold.pause, dest) + "); its members stay pending, next try in " +
                        Seconds(fold.pause->delay_ms) + " (or at once after `audsync resume`)");
                } else {
                    log::Warn("sync: destination " + dest.id + " is rate limited (" +
                              Detail(*fold.pause, dest) + "); pushes wait " +
                              Seconds(fold.pause->delay_ms));
                }
                break;
            case Note::kDestinationRecovered:
                log::Info("sync: destination " + dest.id + " accepts pushes again");
                break;
            case Note::kSegmentRetrying:
                log::Warn("sync: " + SegmentName(task.segment) + " is retrying (" +
                          Detail(*fold.retry, dest) + "); next try in " +
                          Seconds(fold.retry->delay_ms));
                break;
            case Note::kSegmentRecovered:
                log::Info("sync: " + SegmentName(task.segment) + " is accepted again");
                break;
            case Note::kDeadLetters:
                log::Warn("sync: " + SegmentName(task.segment) + ": " +
                          std::to_string(fold.dead_letters) + " member" +
                          (fold.dead_letters == 1 ? "" : "s") + " refused, now dead letters (" +
                          Detail(*fold.dead, dest) + ")");
                break;
        }
    }
}

void Engine::Finish(const Task& task) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        state_ = Release(std::move(state_), task.segment.id, task.destination->id);
        immediate_ = true;
    }
    scheduler_cv_.notify_one();
}

}  // namespace audsync::sync
