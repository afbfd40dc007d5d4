// The sync engine: threads and I/O around the pure decisions of sync/state and sync/policy.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/sync/policy.hpp"
#include "audsync/sync/push_log.hpp"
#include "audsync/sync/state.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::sync {

using TargetFactory = std::function<std::unique_ptr<targets::Target>(const config::Target&)>;

// A latency histogram with fixed buckets (seconds), lock-free.
class Histogram {
  public:
    static constexpr double kBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static constexpr size_t kBuckets = sizeof(kBounds) / sizeof(kBounds[0]);
    void Observe(double seconds);
    // Cumulative counts per bound, then the total count; and the sum in seconds.
    std::vector<uint64_t> Cumulative() const;
    double Sum() const;

  private:
    std::atomic<uint64_t> counts_[kBuckets + 1] = {};
    std::atomic<uint64_t> sum_micros_{0};
};

// Counters since start (exported as metrics).
struct SyncCounters {
    Histogram push_seconds;
    std::atomic<uint64_t> pushes_ok{0};
    std::atomic<uint64_t> pushes_retry{0};
    std::atomic<uint64_t> pushes_rate_limited{0};
    std::atomic<uint64_t> pushes_auth_failed{0};
    std::atomic<uint64_t> pushes_refused{0};  // 4xx answers that led to a split or dead letter
    std::atomic<uint64_t> members_acknowledged{0};
    std::atomic<uint64_t> members_dead{0};
    std::atomic<uint64_t> lists_over_limit{0};  // full-list pushes refused before sending
    PushLog pushes;                             // the recent requests themselves

    // The same, per target ("<destination>/<target>"), for metrics labelled by target.
    struct PerTarget {
        uint64_t pushes_ok = 0;
        uint64_t pushes_failed = 0;  // retry, rate limited, auth failed, refused
        uint64_t members_acknowledged = 0;
        uint64_t members_dead = 0;
        uint64_t lists_over_limit = 0;
    };
    std::map<std::string, PerTarget> ByTarget() const;
    void Add(const std::string& target_key, const PerTarget& delta);

  private:
    mutable std::mutex mu_;
    std::map<std::string, PerTarget> by_target_;
};

// The reconciler: for each target of each destination, pushes every member whose
// desired state the target does not hold: to a delta platform one segment (audience +
// context kind) per request, at most max_batch members, and a segment with more pending
// members than one batch in several requests at once ("lanes": disjoint batches read
// together, as many as the target's free max_in_flight slots); to a full-list platform the
// segment's whole list of included members, coalescing every pending change of the
// segment into one replacement (a list over the platform's limit is not sent: the
// segment is marked over_limit at that target and rechecked). Each outcome is recorded
// through the Writer, per target: one target failing never holds another back. Pending work and
// backoff live in SQLite, so a restart resumes. No transaction is held across a push.
// Which segments start (Admit) and what an outcome does to the destination
// (FoldOutcome) are decided by the pure functions of sync/state.hpp.
//
// Threads: one scheduler thread (reads with its own connection; re-reads the
// destinations' pauses each scan, so a pause cleared by another process counts within
// one scan) and `sync_workers` push workers (one Target each per destination, rebuilt
// when a reload changes its settings). Wake(), Resume() and Reload() are thread-safe.
class Engine {
  public:
    Engine(std::shared_ptr<const config::Config> config, const std::string& db_path,
           store::Writer& writer, TargetFactory factory);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    void Start();
    // Lets pushes in flight finish, then stops. Idempotent.
    void Stop();
    // A commit may have made members due: scan after the linger.
    void Wake();

    // An operator's resume: clears the auth and rate-limit pause of the destination's
    // targets (or of one) here and in the database, and pushes what they have pending at
    // once. Errors: kNotFound for a destination or target not in the current config,
    // kUnavailable when the write fails.
    [[nodiscard]] Status Resume(const std::string& destination_id,
                                const std::optional<std::string>& target = std::nullopt);

    // A new config (SIGHUP). Pushes already scheduled keep the snapshot they were
    // scheduled with; targets are rebuilt for destinations whose settings changed; the
    // members of a destination no longer configured stay pending. sync_workers takes
    // effect at the next start.
    void Reload(std::shared_ptr<const config::Config> config);

    const SyncCounters& counters() const { return counters_; }

  private:
    // One range of a segment's replay, shared by the lanes that push it: the last lane
    // to record its outcomes moves the cursor past it in the same transaction
    // (WriteStore::AdvanceReplay), so that a range is never skipped, only pushed again
    // after a failure or a crash.
    struct ReplayRound {
        int64_t generation = 0;
        std::string start_key;  // the cursor the range was read from
        size_t read = 0;        // replayed members read; those sent may be fewer
        bool last = false;      // nothing was left after them
        std::string end_key;    // the last replayed member sent
        std::atomic<int> lanes{0};
        std::atomic<bool> failed{false};      // a lane's outcomes were not recorded
        std::atomic<int64_t> retry_at_ms{0};  // a replayed member failed: wait until then
    };
    struct Task {
        store::DueSegment segment;
        std::vector<store::DirtyMember> members;
        std::shared_ptr<const config::Config> config;      // the snapshot it was scheduled with
        const config::Destination* destination = nullptr;  // inside `config`
        const config::Target* target = nullptr;            // inside `config`
        std::string key;                                   // "<destination>/<target>"
        // Delta platforms: how many batches Prepare reads, one per lane that may start.
        int lanes = 1;
        // Full-list platforms: the whole list, or why it is not sent.
        bool full_list = false;
        std::vector<std::string> included;
        std::optional<std::string> over_limit;
        // Delta platforms: the replay range among `members`, if any.
        std::shared_ptr<ReplayRound> replay;
    };
    struct WorkerTarget {
        std::shared_ptr<const config::Config> config;  // keeps `target` alive
        const config::Target* target = nullptr;
        std::unique_ptr<targets::Target> built;
    };

    void Schedule();
    void Work();
    void Execute(Task& task, std::map<std::string, WorkerTarget>& targets, std::mt19937_64& rng);
    void Prepare(Task& task, store::SyncReader& reader, int64_t now);
    std::vector<Task> SplitLanes(Task& task, int64_t now);  // by mu_
    // After SplitLanes: what of the replay range was sent, and by how many lanes.
    static void StartReplayRound(Task& task, std::vector<Task>& lanes);
    // In a lane's transaction, after its outcomes: the last lane moves the cursor.
    static void RecordReplayLane(const Task& task, store::WriteStore& w, int64_t retry_at_ms);
    // After a lane's transaction failed: the range goes out again.
    void RewindReplay(const Task& task);
    std::vector<Decision> PushDeltas(Task& task, targets::Target& target, std::mt19937_64& rng);
    std::vector<Decision> PushList(Task& task, targets::Target& target, std::mt19937_64& rng);
    // Completes the record of one request with the platform's answer and its decision,
    // logs a refusal (debug) and keeps the record in counters_.pushes.
    void RecordAnswer(PushRecord record, int status, const Decision& d, const Task& task);
    void Report(const Task& task, const Fold& fold);
    void Finish(const Task& task);

    store::Writer& writer_;
    const std::string db_path_;
    const TargetFactory factory_;
    SyncCounters counters_;

    std::mutex mu_;
    std::condition_variable scheduler_cv_;
    std::condition_variable worker_cv_;
    std::shared_ptr<const config::Config> config_;  // by mu_
    SchedulerState state_;                          // by mu_
    bool stopping_ = false;                         // by mu_
    bool woken_ = false;                            // by mu_; by a commit: linger first
    bool immediate_ = false;  // by mu_; by a finished push or a resume: rescan now
    std::deque<Task> tasks_;  // by mu_
    std::thread scheduler_;
    std::vector<std::thread> workers_;
};

}  // namespace audsync::sync
