#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/sync/policy.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::sync {

using TargetFactory = std::function<std::unique_ptr<targets::Target>(const config::Destination&)>;

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
};

// The reconciler: pushes every member whose desired state differs from the
// acknowledged one, one segment (audience + context kind) per request, at most
// max_batch members, and records each outcome through the Writer. Pending work and
// backoff live in SQLite, so a restart resumes. No transaction is held across a push.
//
// Threads: one scheduler thread (reads with its own connection) and `sync_workers`
// push workers (one Target each per destination). Wake() is thread-safe and cheap; it is
// the Writer's after-commit hook.
class Engine {
  public:
    Engine(const config::Config& config, const std::string& db_path, store::Writer& writer,
           TargetFactory factory);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    void Start();
    // Lets pushes in flight finish, then stops. Idempotent.
    void Stop();
    // A commit may have made members due: scan after the linger.
    void Wake();

    const SyncCounters& counters() const { return counters_; }

  private:
    struct Task {
        store::DueSegment segment;
        std::vector<store::DirtyMember> members;
        const config::Destination* destination;
    };

    void Schedule();
    void Work();
    void Execute(Task& task, std::map<std::string, std::unique_ptr<targets::Target>>& targets,
                 std::mt19937_64& rng);
    void Finish(const Task& task, int64_t pause_until);

    const config::Config& config_;
    std::string db_path_;
    store::Writer& writer_;
    TargetFactory factory_;
    SyncCounters counters_;

    std::mutex mu_;
    std::condition_variable scheduler_cv_;
    std::condition_variable worker_cv_;
    bool stopping_ = false;
    bool woken_ = false;      // by a commit: linger first
    bool immediate_ = false;  // by a finished push: rescan now
    std::deque<Task> tasks_;
    std::set<int64_t> in_flight_segments_;
    std::map<std::string, int> in_flight_per_destination_;
    std::map<std::string, int64_t> paused_until_;
    std::thread scheduler_;
    std::vector<std::thread> workers_;
};

}  // namespace audsync::sync
