// The sync engine's threads and I/O: scans, pushes, records, logs.
#include "audsync/sync/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <iterator>
#include <limits>

#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

namespace audsync::sync {
namespace {

// A scan happens at least this often, whatever the timers say.
constexpr int64_t kMaxIdleMs = 5000;
constexpr size_t kMaxLogDetailBytes = 300;

// "HTTP 409: <the platform's message>" or "no answer: <why>", clipped, with the
// target's secrets removed should the platform ever echo them.
std::string Detail(const Decision& d, const config::Target& target) {
    std::string out = d.status == 0 ? "no answer" : "HTTP " + std::to_string(d.status);
    if (!d.message.empty()) out += ": " + d.message;
    for (const std::string* secret : {&target.service_token, &target.environment_key,
                                      &target.api_password, &target.api_token}) {
        if (secret->size() < 4) continue;
        for (size_t at = out.find(*secret); at != std::string::npos; at = out.find(*secret, at)) {
            out.replace(at, secret->size(), "[redacted]");
        }
    }
    return log::Clip(out, kMaxLogDetailBytes);
}

// The report to Segment of a change the task's target acknowledged.
store::ReportRow ReportOf(const store::DueSegment& segment, const config::Target& target,
                          const store::DirtyMember& m, int64_t now) {
    store::ReportRow r;
    r.destination = segment.destination;
    r.message_id =
        store::ReportMessageId(segment.destination, segment.audience_id, segment.context_kind,
                               m.context_key, target.id, m.version, m.message_id);
    r.user_id = m.context_key;
    r.audience_id = segment.audience_id;
    r.audience_key = segment.audience_key;
    r.context_kind = segment.context_kind;
    r.target = target.id;
    r.platform = target.platform;
    r.included = m.desired;
    if (!m.message_id.empty()) r.deciding_message_id = m.message_id;
    r.synced_ms = now;
    return r;
}

// A list over the platform's limit is checked again this often (a change of the
// membership makes it due at once).
constexpr int64_t kOverLimitRecheckMs = 60000;
// Pending members read for one full-list push; more are acknowledged by later pushes.
constexpr int kMaxListPending = 100000;
// A replay's range is this many batches per lane, pushed one after another by each lane:
// fewer rounds (a read, a wake, a commit each) for the same members.
constexpr int kReplayBatchesPerLane = 4;

std::string Seconds(int64_t ms) { return std::to_string((ms + 999) / 1000) + " s"; }

std::string SegmentName(const store::DueSegment& s) {
    return "segment " + s.audience_id + " (" + s.context_kind + ") at target " + s.target +
           " of destination " + s.destination;
}

std::string TargetName(const store::DueSegment& s) {
    return "target " + s.target + " of destination " + s.destination;
}

std::string OutcomeName(Action action) {
    switch (action) {
        case Action::kAcknowledge:
            return "accepted";
        case Action::kRetry:
            return "retry";
        case Action::kRateLimited:
            return "rate_limited";
        case Action::kAuthFailed:
            return "auth_failed";
        case Action::kSplit:
        case Action::kDeadLetter:
            break;
    }
    return "refused";
}

// The record of one request of `task`'s segment to its target.
PushRecord RecordOf(const store::DueSegment& segment, const config::Target& target,
                    const std::vector<targets::PushMember>& sent, int64_t duration_ms) {
    PushRecord r;
    r.at_ms = text::NowMs();
    r.destination = segment.destination;
    r.target = target.id;
    r.platform = target.platform;
    r.segment_id = segment.id;
    r.audience_key = segment.audience_key;
    r.context_kind = segment.context_kind;
    for (const auto& m : sent) ++(m.value ? r.adds : r.removes);
    r.duration_ms = duration_ms;
    return r;
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

void PushLog::Add(PushRecord record) {
    std::lock_guard<std::mutex> lock(mu_);
    if (records_.size() >= kCapacity) records_.pop_front();
    records_.push_back(std::move(record));
}

std::vector<PushRecord> PushLog::Recent(const Filter& filter, size_t limit) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<PushRecord> out;
    for (auto it = records_.rbegin(); it != records_.rend() && out.size() < limit; ++it) {
        if (filter.destination && it->destination != *filter.destination) continue;
        if (filter.target && it->target != *filter.target) continue;
        if (filter.segment_id && it->segment_id != *filter.segment_id) continue;
        out.push_back(*it);
    }
    return out;
}

size_t PushLog::size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return records_.size();
}

std::map<std::string, SyncCounters::PerTarget> SyncCounters::ByTarget() const {
    std::lock_guard<std::mutex> lock(mu_);
    return by_target_;
}

void SyncCounters::Add(const std::string& target_key, const PerTarget& delta) {
    std::lock_guard<std::mutex> lock(mu_);
    PerTarget& t = by_target_[target_key];
    t.pushes_ok += delta.pushes_ok;
    t.pushes_failed += delta.pushes_failed;
    t.members_acknowledged += delta.members_acknowledged;
    t.members_dead += delta.members_dead;
    t.lists_over_limit += delta.lists_over_limit;
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

Status Engine::Resume(const std::string& destination_id, const std::optional<std::string>& target) {
    std::vector<std::string> keys;
    {
        std::lock_guard<std::mutex> lock(mu_);
        const config::Destination* dest = config_->FindDestination(destination_id);
        if (dest == nullptr) {
            return MakeError(ErrorCode::kNotFound, "unknown_destination",
                             "no destination with this id is configured");
        }
        if (target && dest->FindTarget(*target) == nullptr) {
            return MakeError(ErrorCode::kNotFound, "unknown_target",
                             "destination " + destination_id + " has no target " + *target);
        }
        for (const auto& t : dest->targets) {
            if (!target || *target == t.id) keys.push_back(store::TargetKey(dest->id, t.id));
        }
    }
    const int64_t now = text::NowMs();
    Status stored = writer_.Run(
        [&](store::WriteStore& w) { w.ResumeDestination(destination_id, now, target); }, 1);
    if (!stored) return stored;
    {
        std::lock_guard<std::mutex> lock(mu_);
        // The status stays until a push answers: then "accepts pushes again" or, for a
        // refusal, a new warning (a pause of 0 marks the resume).
        for (const auto& key : keys) state_.destinations[key].paused_until_ms = 0;
        immediate_ = true;
    }
    log::Info("sync: " + (target ? "target " + *target + " of destination " : "destination ") +
              destination_id + " resumed by an operator");
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
                // Index probes and one batch of members at a time: a modest cache.
                db->SetCacheKiB(8000);
                reader = std::make_unique<store::SyncReader>(*db);
            }
            // A tiny table: re-read each scan so that a resume by another process counts.
            std::map<std::string, int64_t> pauses = reader->TargetPauses();
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
                    Task task;
                    task.config = config;
                    task.destination = config->FindDestination(due[i].destination);
                    task.target = task.destination->FindTarget(due[i].target);
                    task.key = store::TargetKey(due[i].destination, due[i].target);
                    task.lanes =
                        LanesToRead(state_.destinations[task.key], task.target->max_in_flight);
                    task.segment = std::move(due[i]);
                    ready.push_back(std::move(task));
                }
            }
            for (const auto& key : resumed) {
                log::Info("sync: target " + key + " resumed (its pause was cleared)");
            }
            for (auto& task : ready) Prepare(task, *reader, now);
            if (auto next = reader->NextAttemptAfter(now)) next_wake = std::min(next_wake, *next);
            {
                std::lock_guard<std::mutex> lock(mu_);
                for (auto& task : ready) {
                    if (task.members.empty()) {
                        state_ = Release(std::move(state_), task.segment.id, task.key);
                        continue;
                    }
                    std::vector<Task> lanes = SplitLanes(task, text::NowMs());
                    StartReplayRound(task, lanes);
                    tasks_.push_back(std::move(task));
                    for (auto& lane : lanes) tasks_.push_back(std::move(lane));
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
                    state_ = Release(std::move(state_), task.segment.id, task.key);
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

void Engine::Prepare(Task& task, store::SyncReader& reader, int64_t now) {
    const config::Target& t = *task.target;
    task.full_list = store::IsFullListPlatform(t.platform);
    if (!task.full_list) {
        // Distinct members: the batches SplitLanes cuts from them are disjoint.
        const int limit = std::max(1, t.max_batch) * task.lanes;
        task.members = reader.Dirty(task.segment.id, t.id, now, limit);
        const int room = limit * kReplayBatchesPerLane - static_cast<int>(task.members.size());
        if (room <= 0) return;
        // Then a replay's next range, if one runs: pending members never appear in it.
        auto range = reader.Replay(task.segment.id, t.id, now, room);
        if (!range) return;
        if (range->members.empty()) {
            // Nothing is left to replay (what is not held is pending): it ends here.
            Status ended = writer_.Run(
                [&](store::WriteStore& w) {
                    w.AdvanceReplay(task.segment.id, t.id, range->generation, "", true, 0);
                },
                1);
            if (!ended) log::Error("sync: cannot end a replay: " + ended.error().message);
            return;
        }
        auto round = std::make_shared<ReplayRound>();
        round->generation = range->generation;
        round->start_key = range->after;
        round->read = range->members.size();
        round->last = range->last;
        for (auto& m : range->members) task.members.push_back(std::move(m));
        task.replay = std::move(round);
        return;
    }
    // The pending members first, then the list: a member changed in between is then
    // acknowledged at its older version and pushed again, never the reverse.
    // Every pending member, due or not: the list carries them all.
    task.members =
        reader.Dirty(task.segment.id, t.id, std::numeric_limits<int64_t>::max(), kMaxListPending);
    if (task.members.empty()) return;
    const int64_t count = reader.CountIncluded(task.segment.id);
    if (count > t.max_list_items) {
        task.over_limit =
            "audience has " + std::to_string(count) + " members; " + t.platform + " target " +
            t.id + " takes at most " + std::to_string(t.max_list_items) +
            " in one list (max_list_items, " +
            (t.platform == "unleash" ? "the server's segmentValuesLimit" : "the plan's limit") +
            "); nothing was sent";
        return;
    }
    task.included = reader.Included(task.segment.id, t.max_list_items);
}

std::vector<Engine::Task> Engine::SplitLanes(Task& task, int64_t now) {
    std::vector<Task> lanes;
    // A lane's share: one batch, or several in a replay (pushed in turn: PushDeltas).
    const size_t batch = static_cast<size_t>(std::max(1, task.target->max_batch)) *
                         (task.replay ? kReplayBatchesPerLane : 1);
    if (task.full_list || task.members.size() <= batch) return lanes;
    const size_t wanted = (task.members.size() - 1) / batch;  // batches after the first
    LaneAdmission admitted = AdmitLanes(std::move(state_), {task.segment.id, task.key},
                                        task.target->max_in_flight, wanted, now);
    state_ = std::move(admitted.state);
    std::vector<store::DirtyMember> members = std::move(task.members);
    task.members.clear();
    for (size_t i = 1; i <= admitted.started; ++i) {
        Task lane = task;
        auto begin = members.begin() + static_cast<std::ptrdiff_t>(i * batch);
        auto end = members.begin() +
                   static_cast<std::ptrdiff_t>(std::min(members.size(), (i + 1) * batch));
        lane.members.assign(std::make_move_iterator(begin), std::make_move_iterator(end));
        lanes.push_back(std::move(lane));
    }
    // Batches without a free slot are dropped here: they stay pending in the database,
    // and a later scan reads them again once every lane of the segment has ended.
    members.resize(batch);
    task.members = std::move(members);
    return lanes;
}

void Engine::StartReplayRound(Task& task, std::vector<Task>& lanes) {
    if (!task.replay) return;
    size_t sent = 0;
    std::string end;
    auto scan = [&](const Task& x) {
        for (const auto& m : x.members) {
            if (!m.replay) continue;
            ++sent;
            end = m.context_key;  // key order: the last is the greatest
        }
    };
    scan(task);
    for (const auto& lane : lanes) scan(lane);
    if (sent == 0) {
        // Every replayed member was in a batch without a free lane: read again later.
        task.replay.reset();
        for (auto& lane : lanes) lane.replay.reset();
        return;
    }
    ReplayRound& round = *task.replay;
    round.last = round.last && sent == round.read;
    round.end_key = std::move(end);
    round.lanes = static_cast<int>(1 + lanes.size());
}

void Engine::RecordReplayLane(const Task& task, store::WriteStore& w, int64_t retry_at_ms) {
    // Lanes' transactions run one after another on the writer: the last of them to run
    // records the range as done, with every other lane's outcomes committed before it or
    // in the same transaction (a failed one rewinds: RewindReplay).
    ReplayRound& round = *task.replay;
    int64_t seen = round.retry_at_ms.load();
    while (retry_at_ms > seen && !round.retry_at_ms.compare_exchange_weak(seen, retry_at_ms)) {
    }
    if (round.lanes.fetch_sub(1) != 1 || round.failed) return;
    w.AdvanceReplay(task.segment.id, task.target->id, round.generation, round.end_key, round.last,
                    round.retry_at_ms.load());
}

void Engine::RewindReplay(const Task& task) {
    ReplayRound& round = *task.replay;
    round.failed = true;
    // The cursor may have moved in another lane's transaction: back to where the range
    // started, so that the members whose outcome was lost are pushed again.
    Status rewound = writer_.Run(
        [&](store::WriteStore& w) {
            w.AdvanceReplay(task.segment.id, task.target->id, round.generation, round.start_key,
                            false, 0);
        },
        1);
    if (!rewound) log::Error("sync: cannot rewind a replay: " + rewound.error().message);
}

void Engine::RecordAnswer(PushRecord record, int status, const Decision& d, const Task& task) {
    record.status = status;
    record.outcome = OutcomeName(d.action);
    if (d.action != Action::kAcknowledge) {
        record.message = Detail(d, *task.target);
        log::Debug("sync: " + SegmentName(task.segment) + ": " + record.message);
    }
    counters_.pushes.Add(std::move(record));
}

std::vector<Decision> Engine::PushDeltas(Task& task, targets::Target& target,
                                         std::mt19937_64& rng) {
    const config::Target& t = *task.target;
    RetrySchedule schedule{t.retry_base_ms, t.retry_max_ms, t.auth_retry_ms};
    int attempts = 0;
    for (const auto& m : task.members) attempts = std::max(attempts, m.attempts);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<targets::PushMember> members;
    members.reserve(task.members.size());
    for (const auto& m : task.members) members.push_back({m.context_key, m.desired});
    PushRecord record;  // of the request `push` sent last, completed by `decide`
    auto push = [&](const std::vector<targets::PushMember>& part) {
        targets::PushRequest request{task.segment.audience_id, task.segment.audience_key,
                                     task.segment.context_kind, part};
        auto started = std::chrono::steady_clock::now();
        targets::HttpResult r = target.Push(request);
        const auto took = std::chrono::steady_clock::now() - started;
        counters_.push_seconds.Observe(std::chrono::duration<double>(took).count());
        record = RecordOf(task.segment, t, part,
                          std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
        return r;
    };
    auto decide = [&](const targets::HttpResult& r, size_t size) {
        Decision d = Decide(r, attempts, size, text::NowMs(), schedule, uniform(rng));
        RecordAnswer(std::move(record), r.status, d, task);
        return d;
    };
    // One request per max_batch members, in turn. A retry or a pause answered for one
    // holds for the rest: they are not sent, and are retried with it.
    const size_t chunk = static_cast<size_t>(std::max(1, t.max_batch));
    if (members.size() <= chunk) return PushWithBisection(members, push, decide);
    std::vector<Decision> out;
    out.reserve(members.size());
    for (size_t at = 0; at < members.size(); at += chunk) {
        const auto begin = members.begin() + static_cast<std::ptrdiff_t>(at);
        const auto end =
            members.begin() + static_cast<std::ptrdiff_t>(std::min(members.size(), at + chunk));
        std::vector<Decision> part = PushWithBisection({begin, end}, push, decide);
        out.insert(out.end(), part.begin(), part.end());
        auto held = std::find_if(part.begin(), part.end(), [](const Decision& d) {
            return d.action == Action::kRetry || d.action == Action::kRateLimited ||
                   d.action == Action::kAuthFailed;
        });
        if (held != part.end()) {
            out.resize(members.size(), *held);
            break;
        }
    }
    return out;
}

std::vector<Decision> Engine::PushList(Task& task, targets::Target& target, std::mt19937_64& rng) {
    const config::Target& t = *task.target;
    RetrySchedule schedule{t.retry_base_ms, t.retry_max_ms, t.auth_retry_ms};
    int attempts = 0;
    for (const auto& m : task.members) attempts = std::max(attempts, m.attempts);
    if (!task.over_limit) {
        targets::PushRequest request{
            task.segment.audience_id, task.segment.audience_key, task.segment.context_kind, {}};
        request.members.reserve(task.included.size());
        for (auto& key : task.included) request.members.push_back({std::move(key), true});
        task.included.clear();
        auto started = std::chrono::steady_clock::now();
        targets::HttpResult r = target.Push(request);
        const auto took = std::chrono::steady_clock::now() - started;
        counters_.push_seconds.Observe(std::chrono::duration<double>(took).count());
        if (!r.over_limit) {
            PushRecord record =
                RecordOf(task.segment, t, request.members,
                         std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
            std::uniform_real_distribution<double> uniform(0.0, 1.0);
            // One list, one answer: a refusal cannot be narrowed down by bisection.
            Decision d = Decide(r, attempts, 1, text::NowMs(), schedule, uniform(rng));
            RecordAnswer(std::move(record), r.status, d, task);
            return std::vector<Decision>(task.members.size(), d);
        }
        task.over_limit = *r.over_limit;
    }
    // Nothing was sent: the record says why.
    PushRecord record = RecordOf(task.segment, t, {}, 0);
    record.outcome = "over_limit";
    record.message = log::Clip(*task.over_limit, kMaxLogDetailBytes);
    counters_.pushes.Add(std::move(record));
    // Held, not dead: the list is sent once it fits (a change makes it due at once).
    Decision held;
    held.action = Action::kRetry;
    held.delay_ms = kOverLimitRecheckMs;
    held.error = *task.over_limit;
    held.message = *task.over_limit;
    return std::vector<Decision>(task.members.size(), held);
}

void Engine::Execute(Task& task, std::map<std::string, WorkerTarget>& targets,
                     std::mt19937_64& rng) {
    const config::Target& t = *task.target;
    WorkerTarget& built = targets[task.key];
    if (!built.built || (built.config != task.config && !SameTargetSettings(*built.target, t))) {
        built.built = factory_(t);
    }
    built.config = task.config;
    built.target = task.target;
    std::vector<Decision> decisions =
        task.full_list ? PushList(task, *built.built, rng) : PushDeltas(task, *built.built, rng);
    SyncCounters::PerTarget delta;
    const bool over_limit = task.over_limit.has_value();
    if (over_limit) {
        ++counters_.lists_over_limit;
        delta.lists_over_limit = 1;
    } else if (!decisions.empty()) {
        // Counted once per request for a list; per decision group for deltas.
        for (const auto& d : decisions) {
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
            (d.action == Action::kAcknowledge ? delta.pushes_ok : delta.pushes_failed) += 1;
            if (task.full_list) break;
        }
    }

    const int64_t now = text::NowMs();
    Fold fold;
    bool over_limit_changed = false;
    {
        // Decided and applied under the lock, so that of two workers meeting the same
        // refusal (two targets' segments, or two lanes of one segment) only one reports
        // the transition.
        std::lock_guard<std::mutex> lock(mu_);
        const SegmentAtTarget at{task.segment.id, task.key};
        const bool retrying = state_.retrying_segments.count(at) > 0;
        auto lanes = state_.in_flight_segments.find(at);
        const int other_lanes = lanes == state_.in_flight_segments.end() ? 0 : lanes->second - 1;
        if (over_limit) {
            fold.destination = state_.destinations[task.key];
            fold.segment_retrying = retrying;
            over_limit_changed = state_.over_limit_segments.insert(at).second;
        } else {
            // Retrying stays per segment and target: see FoldLaneOutcome for what a lane
            // succeeding while another of the segment runs does to it.
            fold = FoldLaneOutcome(state_.destinations[task.key], retrying, other_lanes, decisions,
                                   now);
            over_limit_changed = state_.over_limit_segments.erase(at) > 0;
        }
        DestinationState& d = state_.destinations[task.key];
        d.status = fold.destination.status;
        d.paused_until_ms = fold.destination.paused_until_ms;
        if (fold.segment_retrying) {
            state_.retrying_segments.insert(at);
        } else {
            state_.retrying_segments.erase(at);
        }
    }
    const bool list_refused =
        task.full_list && !over_limit && !decisions.empty() &&
        (decisions[0].action == Action::kDeadLetter || decisions[0].action == Action::kSplit);
    const bool report = task.destination->report.enabled;
    int64_t replay_retry_at = 0;
    Status stored = writer_.Run(
        [&](store::WriteStore& w) {
            replay_retry_at = 0;
            for (size_t i = 0; i < decisions.size(); ++i) {
                const auto& m = task.members[i];
                const auto& d = decisions[i];
                if (m.replay) {
                    // Held at the target already: an acknowledgement changes nothing to
                    // record. A failure makes it pending, then is recorded as usual.
                    if (d.action == Action::kAcknowledge) continue;
                    w.ReplayMissed(task.segment.id, m.context_key, t.id);
                    if (d.action != Action::kDeadLetter && d.action != Action::kSplit) {
                        replay_retry_at = std::max(replay_retry_at, now + d.delay_ms);
                    }
                }
                switch (d.action) {
                    case Action::kAcknowledge:
                        if (w.RecordAck(task.segment.id, m.context_key, t.id, m.desired, m.version,
                                        d.status, now) &&
                            report) {
                            w.QueueReport(ReportOf(task.segment, t, m, now));
                        }
                        break;
                    case Action::kDeadLetter:
                    case Action::kSplit:
                        w.RecordDead(task.segment.id, m.context_key, t.id, m.version, d.status,
                                     d.error, now);
                        break;
                    default:
                        if (over_limit) {
                            w.RecordHeld(task.segment.id, m.context_key, t.id, now + d.delay_ms,
                                         d.error, now);
                        } else {
                            w.RecordRetry(task.segment.id, m.context_key, t.id, now + d.delay_ms,
                                          d.status, d.error, now);
                        }
                }
            }
            if (task.full_list) {
                if (over_limit) {
                    w.SetSegmentTargetState(task.segment.id, t.id, "over_limit", *task.over_limit,
                                            "max_list_items", now);
                } else if (list_refused) {
                    w.SetSegmentTargetState(task.segment.id, t.id, "refused", decisions[0].error,
                                            std::nullopt, now);
                } else if (!decisions.empty() && decisions[0].action == Action::kAcknowledge) {
                    w.SetSegmentTargetState(task.segment.id, t.id, "ok", std::nullopt, std::nullopt,
                                            now);
                }
            }
            if (task.replay) RecordReplayLane(task, w, replay_retry_at);
            if (fold.write) {
                const DestinationWrite& dw = *fold.write;
                w.SetTargetState(task.segment.destination, t.id, std::string(ToString(dw.status)),
                                 dw.paused_until_ms,
                                 dw.status == DestinationStatus::kOk ? std::nullopt : dw.error,
                                 dw.success_ms);
            }
        },
        decisions.size());
    if (!stored) {
        // Nothing recorded: the members stay due and go out again.
        log::Error("sync: cannot record push outcome: " + stored.error().message);
    } else {
        counters_.members_acknowledged += fold.acknowledged;
        counters_.members_dead += fold.dead_letters;
        delta.members_acknowledged = fold.acknowledged;
        delta.members_dead = fold.dead_letters;
        counters_.Add(task.key, delta);
        if (over_limit_changed && over_limit) {
            log::Warn("sync: " + SegmentName(task.segment) + " is over the platform's limit: " +
                      *task.over_limit + "; its members stay pending (see `audsync segments show " +
                      std::to_string(task.segment.id) + "`)");
        } else if (over_limit_changed) {
            log::Info("sync: " + SegmentName(task.segment) + " fits the platform's limit again");
        }
        Report(task, fold);
    }
    if (task.replay && (!stored || decisions.size() != task.members.size())) RewindReplay(task);
    Finish(task);
}

void Engine::Report(const Task& task, const Fold& fold) {
    const config::Target& dest = *task.target;
    for (Note note : fold.notes) {
        switch (note) {
            case Note::kDestinationPaused:
                if (fold.pause->action == Action::kAuthFailed) {
                    log::Warn("sync: " + TargetName(task.segment) + " refused its credentials (" +
                              Detail(*fold.pause, dest) +
                              "); its members stay pending, next try in " +
                              Seconds(fold.pause->delay_ms) +
                              " (or at once after `audsync destinations resume " +
                              task.segment.destination + " --target " + dest.id + "`)");
                } else {
                    log::Warn("sync: " + TargetName(task.segment) + " is rate limited (" +
                              Detail(*fold.pause, dest) + "); pushes wait " +
                              Seconds(fold.pause->delay_ms));
                }
                break;
            case Note::kDestinationRecovered:
                log::Info("sync: " + TargetName(task.segment) + " accepts pushes again");
                break;
            case Note::kTargetRetrying:
                log::Warn("sync: " + TargetName(task.segment) + " is failing (" +
                          Detail(*fold.retry, dest) +
                          "); its members are retried with backoff, see `audsync destinations "
                          "show " +
                          task.segment.destination + "`");
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
        state_ = Release(std::move(state_), task.segment.id, task.key);
        immediate_ = true;
    }
    scheduler_cv_.notify_one();
}

}  // namespace audsync::sync
