// The single writer of the database (group commit), and direct writes beside it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "audsync/common/result.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"

namespace audsync::store {

struct WriterOptions {
    size_t max_pending_weight = 100000;  // queued events before Run answers unavailable
    size_t max_group_weight = 20000;     // events committed in one transaction at most
    int64_t dedupe_window_ms = 7LL * 24 * 3600 * 1000;
    int64_t prune_interval_ms = 10 * 60 * 1000;
};

// The single writer of the database (group commit). Handler threads hand it jobs with
// Run(); the writer thread runs every queued job in one transaction, each inside its
// own savepoint, commits once, and only then releases the callers. A job whose SQL
// fails is rolled back alone; a failed commit fails every job of the group.
//
// Thread-safety: Run() and Stop() may be called from any thread; jobs run on the
// writer thread only and must not block on anything but the database.
class Writer {
  public:
    using Job = std::function<void(WriteStore&)>;

    // Opens its own connection to an already migrated database. Throws SqliteError.
    Writer(const std::string& path, WriterOptions options);
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // Runs `job` in the next group transaction and returns once it is committed
    // (durable) or has failed. `weight` counts the events it carries, for the queue
    // bound. Errors: kUnavailable (queue full, stopped, or SQLite failed).
    [[nodiscard]] Status Run(Job job, size_t weight);

    // Called on the writer thread after every successful commit (wakes the sync engine).
    void SetAfterCommit(std::function<void()> hook);

    // Finishes the queued jobs, then stops the thread. Idempotent.
    void Stop();

    // Transactions committed so far, and events waiting (for tests and metrics).
    uint64_t commits() const;
    size_t queued_weight() const;

  private:
    struct Pending {
        Job job;
        size_t weight;
        std::promise<Status> done;
    };

    void Loop();
    void RunGroup(std::deque<std::unique_ptr<Pending>>& group);
    void Prune();

    WriterOptions options_;
    Database db_;
    WriteStore store_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Pending>> queue_;
    size_t queued_weight_ = 0;
    bool stopping_ = false;
    uint64_t commits_ = 0;
    std::function<void()> after_commit_;
    std::thread thread_;
};

// Runs `f` in a transaction of its own on a connection of its own, then commits: for a
// write (the CLI's) while a server may be running; SQLite serialises it with the
// server's Writer (busy timeout 10 s). Errors: kUnavailable "storage_unavailable" when
// SQLite fails (nothing is written). Exceptions other than SqliteError propagate, after
// the rollback.
[[nodiscard]] Status WriteDirect(const std::string& path,
                                 const std::function<void(WriteStore&)>& f);

}  // namespace audsync::store
