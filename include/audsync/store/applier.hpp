// The applier: folds the inbox into memberships in large batches on the database's
// writer thread, and prunes what the inbox and the de-duplication window no longer need.
// The checkpointer: WAL checkpoints off the writers' commit path.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"

namespace audsync::store {

struct ApplierOptions {
    // Inbox rows folded in one transaction at most: the pages of the tables a batch
    // touches are written once per batch, so larger batches cost less per event.
    int batch = 40000;
    int64_t dedupe_window_ms = 7LL * 24 * 3600 * 1000;
    int64_t raw_retention_ms = 24LL * 3600 * 1000;  // 0: a row goes once it is applied
    int64_t poll_ms = 200;  // how often the inbox is looked at without a notification
};

// Since start, as committed.
struct ApplierCounters {
    std::atomic<uint64_t> applied{0};
    std::atomic<uint64_t> accepted{0};
    std::atomic<uint64_t> duplicates{0};
    std::atomic<uint64_t> stale{0};
};

// The background step of the database's writer (see GroupWriter): each step
// reads the applied position inside the writer's transaction, folds the next rows after
// it and moves the position, so that a crash at any point resumes where the last commit
// left off and nothing is applied twice (another process's applier may share the work).
// Prunes the inbox through `inbox_writer` and the de-duplication table a slice per step.
// Thread-safety: applied_seq(), WaitApplied() and counters() from any thread; the rest
// runs on the writer thread.
class Applier {
  public:
    // Opens its own read connection to the inbox. Throws SqliteError.
    Applier(const std::string& inbox_path, ApplierOptions options, InboxWriter& inbox_writer);
    ~Applier();
    Applier(const Applier&) = delete;
    Applier& operator=(const Applier&) = delete;

    // The writer's background step (Writer::SetBackground): folds the next rows.
    // Returns whether more are waiting.
    bool Step(WriteStore& w);
    // To be called after every commit of the writer (Writer::SetAfterCommit): publishes
    // what the committed steps applied. Returns whether they applied any event.
    bool Committed();
    // To be called when a step's work was rolled back (Writer::SetBackground): forgets
    // what it staged.
    void RolledBack();

    // The inbox position applied and committed.
    int64_t applied_seq() const;
    // Waits until every row up to `seq` is applied, or `timeout_ms` passes.
    bool WaitApplied(int64_t seq, int64_t timeout_ms) const;
    const ApplierCounters& counters() const { return counters_; }

  private:
    void PruneInbox(int64_t applied, int64_t now_ms);

    ApplierOptions options_;
    Database inbox_db_;
    InboxReader reader_;
    InboxWriter& inbox_writer_;
    ApplierCounters counters_;
    // Staged by Step, published by Committed (writer thread only).
    FoldCounts staged_;
    int64_t staged_rows_ = 0;
    int64_t staged_seq_ = -1;
    int prune_slice_ = 0;
    int64_t next_inbox_prune_ms_ = 0;
    std::atomic<bool> inbox_prune_running_{false};
    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    int64_t applied_seq_ = 0;  // guarded by mu_
};

// How far ingest is ahead of the applier: events appended and not yet applied, and
// when the oldest of them was received.
struct Backlog {
    int64_t events = 0;
    std::optional<int64_t> oldest_received_ms;
};
// Reads it from the files (any process). An inbox that does not exist yet has none.
// Throws SqliteError.
Backlog ReadBacklog(Database& db, const std::string& inbox_path);

// Runs PASSIVE WAL checkpoints of the given files every `interval_ms` on connections of
// its own, so that no writer's commit pays for one.
class Checkpointer {
  public:
    Checkpointer(std::vector<std::string> paths, int64_t interval_ms);
    ~Checkpointer();
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;
    void Stop();

  private:
    void Loop();
    std::vector<std::string> paths_;
    int64_t interval_ms_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace audsync::store
