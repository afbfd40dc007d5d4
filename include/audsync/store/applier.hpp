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
    // Inbox rows read and folded together at most: the pages of the tables a batch
    // touches are written once per batch, so larger batches cost less per event; with a
    // backlog over `large_backlog` events, up to `large_batch` (read `batch` at a time
    // into the plan's compact rows, about 130 bytes each: some 40 MB at 320,000).
    int batch = 40000;
    int large_batch = 320000;
    int64_t large_backlog = 200000;
    // A transaction's pages go to the WAL whole: it cannot be checkpointed before its
    // commit. A batch that would write more than this (a quarter of limits.max_wal_bytes)
    // is folded in parts, each a transaction sized from the pages the last parts wrote
    // per event: its window checks in hash order, then its members in key order.
    int64_t max_transaction_wal_bytes = 64LL * 1024 * 1024;
    // The main database's WAL file and its bound (limits.max_wal_bytes; 0: none): a part
    // is also sized to a quarter of the room that WAL has left.
    std::string wal_path;
    int64_t max_wal_bytes = 0;
    int min_batch = 500;  // the smallest part
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
// reads the applied position and the fold in progress inside the writer's transaction,
// and folds the next rows after it, or the next part of the fold in progress; the last
// part moves the position. A crash at any point resumes where the last commit left off
// and nothing is applied twice (another process's applier may share the work: what it
// committed is read back at the next step, never assumed).
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
    // what the committed step applied. Returns whether it applied any event.
    // `pages_written` (Writer::committed_pages): what the commit wrote to the WAL, from
    // which the step learns the pages its parts write per event.
    bool Committed(int64_t pages_written);
    // To be called when a step's work was rolled back (Writer::SetBackground): forgets
    // what it staged.
    void RolledBack();

    // The inbox position applied and committed.
    int64_t applied_seq() const;
    // Waits until every row up to `seq` is applied, or `timeout_ms` passes.
    bool WaitApplied(int64_t seq, int64_t timeout_ms) const;
    const ApplierCounters& counters() const { return counters_; }
    // The batch the next fold reads at most (writer thread; for tests and the bench).
    int NextBatch(int64_t backlog) const;
    // The rows (or window checks) one part takes at `pages_per_event`: what fits
    // max_transaction_wal_bytes (and the last step's quarter of the WAL's room), at least
    // min_batch and at most batch.
    int PartSize(double pages_per_event) const;

  private:
    enum class Phase { kNone, kWhole, kChecks, kMembers };
    void PruneInbox(int64_t applied, int64_t now_ms);
    // The plan of the fold that `progress` says is in progress or, with none, of the
    // next batch; false when there is nothing to fold.
    bool Plan(WriteStore& w, const FoldProgress& progress);
    void Learn(int64_t pages);

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
    // The batch being folded (writer thread only): the plan of its rows, after
    // plan_cursor_ up to plan_end_. The database says how far it is (FoldProgress): the
    // plan is trusted only while the position it was made at holds.
    std::optional<FoldPlan> plan_;
    int64_t plan_cursor_ = -1;
    int64_t plan_end_ = 0;
    size_t plan_checked_ = 0;  // committed
    size_t plan_folded_ = 0;   // committed
    bool plan_full_ = false;   // read as many rows as it asked for: more may wait
    // What the step's transaction moved, taken into the plan by Committed.
    size_t staged_checked_ = 0;
    size_t staged_folded_ = 0;
    bool staged_plan_ = false;
    // Pages written per window check and per member row, smoothed over the last parts;
    // until one is measured, what a fold at a large workspace writes (a page of each
    // table per event), so that the first transaction cannot overshoot the bound.
    double check_pages_ = 1;
    double member_pages_ = 3;
    // The pages the step being staged may write (-1 before the first step).
    double budget_pages_ = -1;
    Phase last_phase_ = Phase::kNone;  // of the step staged, learnt from at its commit
    int64_t last_units_ = 0;
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
