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
    // touches are written once per batch, so larger batches cost less per event; with a
    // backlog over `large_backlog` events, up to `large_batch`.
    int batch = 40000;
    int large_batch = 80000;
    int64_t large_backlog = 200000;
    // A transaction's pages go to the WAL whole: it cannot be checkpointed before its
    // commit. The batch is sized from the pages the last folds wrote per event so that one
    // transaction writes at most this many bytes (a quarter of limits.max_wal_bytes), on
    // a large workspace where each event dirties pages of its own.
    int64_t max_transaction_wal_bytes = 64LL * 1024 * 1024;
    int min_batch = 500;
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
    // The batch the next step reads at most (writer thread; for tests and the bench).
    int NextBatch(int64_t backlog) const;

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
    // Smoothed over the last folds; until one is measured, what a fold at a large
    // workspace writes (a page of each table per event), so that the first transaction
    // cannot overshoot the bound.
    double pages_per_event_ = 4;
    int64_t last_fold_rows_ = 0;  // rows of the step whose pages the next step reads
    int last_batch_ = 0;
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

// The same, on connections kept open (for a caller that reads it often). Not
// thread-safe. Throws SqliteError.
class BacklogReader {
  public:
    BacklogReader(const std::string& database, const std::string& inbox_path);
    Backlog Read();

  private:
    Database db_;
    Database inbox_;
    Statement applied_;
    InboxReader reader_;
};

// The size of each file of a database: the database, the inbox, their WAL and shared
// memory files, named "database", "database-wal", "database-shm", "inbox", "inbox-wal",
// "inbox-shm" (0 for a file that does not exist).
struct StorageFile {
    std::string file;
    int64_t bytes = 0;
};
std::vector<StorageFile> StorageSizes(const std::string& database);

// Keeps every WAL file small, off the writers' commit path: every `interval_ms` a
// PASSIVE checkpoint of each file (copies what no reader still needs, blocks nobody);
// then, when the WAL file is over `truncate_bytes`, or everything is copied and the
// file is not empty, a TRUNCATE checkpoint: it takes the file's write lock (the
// database's writer and the inbox's appender wait for it, at most `busy_ms`), waits up
// to `busy_ms` for the readers of older snapshots to end, and truncates the WAL to zero.
// Without it a WAL under continuous writes never restarts and grows without bound (a
// PASSIVE checkpoint never catches up with a writer that always has a transaction
// open after the last one). Logs a warning when a WAL passes `max_bytes`, and an info
// line when it is back under it.
// Thread-safety: its own thread; Stop() from any thread.
struct CheckpointOptions {
    int64_t interval_ms = 250;
    int64_t max_bytes = 256LL * 1024 * 1024;
    int64_t truncate_bytes = 32LL * 1024 * 1024;  // default max_bytes / 8
    int busy_ms = 100;  // short: the writer waits behind a TRUNCATE that waits for readers
};

// What one checkpoint round did to one file (for tests and logs).
struct CheckpointCounters {
    std::atomic<uint64_t> rounds{0};
    std::atomic<uint64_t> truncates{0};       // TRUNCATE checkpoints that completed
    std::atomic<uint64_t> truncates_busy{0};  // TRUNCATE checkpoints that timed out
    std::atomic<uint64_t> over_bound{0};      // rounds that found a WAL over max_bytes
};

class Checkpointer {
  public:
    Checkpointer(std::vector<std::string> paths, CheckpointOptions options);
    ~Checkpointer();
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;
    void Stop();
    const CheckpointCounters& counters() const { return counters_; }

  private:
    void Loop();
    void Round(Database& db, size_t i, bool& warned);
    std::vector<std::string> paths_;
    CheckpointOptions options_;
    CheckpointCounters counters_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace audsync::store
