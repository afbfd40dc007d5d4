// The single writers of the database and of the inbox (group commit), and direct writes
// beside a running server.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "audsync/common/result.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/store.hpp"

namespace audsync::store {

struct WriterOptions {
    size_t max_pending_weight = 100000;  // queued events before Run answers unavailable
    size_t max_group_weight = 20000;     // events committed in one transaction at most
    // The writer thread's nice value (0: as the process). The database's writer runs
    // the applier at a lower priority than ingest's appends, so that under a burst the
    // acknowledgements get the CPU and the folding catches up after.
    int nice = 0;
    // Its connection's page cache.
    int cache_kib = 16000;
    // The hard bound of the file's WAL (0: none). After a commit that leaves the WAL file
    // larger than this, the writer truncates it itself (a TRUNCATE checkpoint, waiting at
    // most `wal_stop_busy_ms` for older readers) before it takes its next job: it slows
    // down rather than let the WAL grow past the bound when the Checkpointer, which keeps
    // the file far smaller in the usual case, falls behind. When readers keep it from
    // completing, it tries again only once the WAL has grown by another wal_stop_bytes,
    // so that a reader holding an old snapshot does not slow every commit.
    int64_t wal_stop_bytes = 0;
    int wal_stop_busy_ms = 100;
    // The WAL's limit (0: none). Once one more transaction (allowed twice wal_stop_bytes:
    // a transaction whose pages spill from the cache writes some of them twice) could take
    // the WAL past it, the writer keeps trying the truncation for as long as readers keep
    // it from completing (a warning once a wait passes a second), rather than give up
    // after wal_stop_busy_ms: the limit holds, and the backlog that builds meanwhile is
    // shed by admission. A stop ends the wait (the last jobs may pass it).
    int64_t wal_max_bytes = 0;
};

// A single writer of one SQLite file (group commit). Handler threads hand it jobs with
// Run(); the writer thread runs every queued job in one transaction, each inside its
// own savepoint, then its background step (if any), commits once, and only then
// releases the callers. A job whose SQL fails is rolled back alone; a failed commit
// fails every job of the group. `Store` holds the statements prepared on the writer's
// connection (WriteStore for the database, InboxStore for the inbox).
//
// Its connection never runs a WAL checkpoint on commit (see Checkpointer).
//
// Thread-safety: Run(), Post(), Notify() and Stop() may be called from any thread; jobs
// and the background step run on the writer thread only and must not block on anything
// but the database.
template <class Store>
class GroupWriter {
  public:
    using Job = std::function<void(Store&)>;
    // Work done in every group transaction after the jobs: returns true when more is
    // waiting (the writer then goes on at once instead of waiting).
    using Background = std::function<bool(Store&)>;

    // Opens its own connection to the file (`prepare` runs on it first, e.g. to create
    // the inbox table). Throws SqliteError.
    GroupWriter(const std::string& path, WriterOptions options,
                const std::function<void(Database&)>& prepare = nullptr);
    ~GroupWriter();
    GroupWriter(const GroupWriter&) = delete;
    GroupWriter& operator=(const GroupWriter&) = delete;

    // Runs `job` in the next group transaction and returns once it is committed
    // (durable) or has failed. `weight` counts the events it carries, for the queue
    // bound. Errors: kUnavailable (queue full, stopped, or SQLite failed).
    [[nodiscard]] Status Run(Job job, size_t weight);
    // Queues `job` without waiting for it (housekeeping, outside the queue bound).
    // Returns false, dropping it, once the writer is stopping.
    bool Post(Job job);

    // Sets the background step; it runs when Notify() was called, and at least every
    // `poll_ms` (work may come from another process). `rolled_back` is called when a
    // step threw and its work was rolled back (the group's jobs still commit). Call
    // before the first Notify.
    void SetBackground(Background step, int64_t poll_ms,
                       std::function<void()> rolled_back = nullptr);
    void Notify();

    // Called on the writer thread after every successful commit.
    void SetAfterCommit(std::function<void()> hook);
    // Inside the after-commit hook: how many queued jobs the commit carried (0: the
    // background step's work; a step never shares a commit with jobs).
    size_t committed_jobs() const { return committed_jobs_; }
    // Inside the after-commit hook: the pages that commit wrote to the WAL (with those
    // its transaction spilled before it).
    int64_t committed_pages() const { return committed_pages_; }

    // Finishes the queued jobs, then stops the thread. Idempotent.
    void Stop();

    // Transactions committed so far, and events waiting (for tests and metrics).
    uint64_t commits() const;
    size_t queued_weight() const;
    // TRUNCATE checkpoints the writer ran itself past wal_stop_bytes, and those readers
    // kept from completing.
    uint64_t wal_stops() const { return wal_stops_.load(std::memory_order_relaxed); }
    uint64_t wal_stops_busy() const { return wal_stops_busy_.load(std::memory_order_relaxed); }
    // Times the writer waited at wal_max_bytes past wal_stop_busy_ms for readers.
    uint64_t wal_waits() const { return wal_waits_.load(std::memory_order_relaxed); }

  private:
    struct Pending {
        Job job;
        size_t weight;
        std::optional<std::promise<Status>> done;  // none for Post()
    };

    void Loop();
    void RunGroup(std::deque<std::unique_ptr<Pending>>& group, bool background);
    void RunJobs(std::deque<std::unique_ptr<Pending>>& group);
    void RunBackground();
    // Commits `tx`; false (rolled back, logged) when SQLite refuses.
    bool Commit(std::optional<Transaction>& tx, size_t jobs, bool more);
    void AfterCommit();

    WriterOptions options_;
    std::string wal_path_;
    Database db_;
    std::unique_ptr<Store> store_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Pending>> queue_;
    size_t queued_weight_ = 0;
    bool stopping_ = false;
    bool notified_ = false;
    uint64_t commits_ = 0;
    size_t committed_jobs_ = 0;    // writer thread only
    int64_t committed_pages_ = 0;  // writer thread only
    // The largest recent commit, decaying (HoldWalBound, writer thread only).
    int64_t recent_commit_bytes_ = 0;
    std::function<void()> after_commit_;
    Background background_;
    std::function<void()> background_rolled_back_;
    int64_t poll_ms_ = 0;
    std::atomic<uint64_t> wal_stops_{0};
    std::atomic<uint64_t> wal_stops_busy_{0};
    std::atomic<uint64_t> wal_waits_{0};
    void HoldWalBound();
    int64_t next_stop_bytes_ = 0;  // writer thread only: the size that triggers the next try
    std::thread thread_;
};

// The database's writer: ingest's audience registrations, the applier's folds, the
// sync engine's outcomes, operator writes.
using Writer = GroupWriter<WriteStore>;
// The inbox's writer: ingest's appends (the acknowledgement waits for its commit).
using InboxWriter = GroupWriter<InboxStore>;

// Runs `f` in a transaction of its own on a connection of its own, then commits: for a
// write (the CLI's) while a server may be running; SQLite serialises it with the
// server's Writer (busy timeout 10 s). Errors: kUnavailable "storage_unavailable" when
// SQLite fails (nothing is written). Exceptions other than SqliteError propagate, after
// the rollback.
[[nodiscard]] Status WriteDirect(const std::string& path,
                                 const std::function<void(WriteStore&)>& f);

}  // namespace audsync::store
