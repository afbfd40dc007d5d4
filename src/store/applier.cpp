// The applier's fold steps and pruning, the backlog, and the checkpointer.
#include "audsync/store/applier.hpp"

#include <sys/stat.h>

#include <chrono>
#include <limits>

#include "access.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

namespace audsync::store {
namespace {

// The de-duplication table is pruned a slice of its key space per step: a whole pass
// takes kDedupeSlices steps, each a short range scan on the primary key.
constexpr int kDedupeSlices = 1024;
// Inbox rows deleted per job on the inbox writer (it shares a commit with appends).
constexpr int64_t kInboxPruneRows = 2000;
// With a raw retention, applied rows are looked at this often.
constexpr int64_t kInboxPruneIntervalMs = 10000;

}  // namespace

Applier::Applier(const std::string& inbox_path, ApplierOptions options, InboxWriter& inbox_writer)
    : options_(options),
      inbox_db_(inbox_path, false),
      reader_((inbox_db_.SetCacheKiB(512), inbox_db_)),  // reads the inbox's tail once
      inbox_writer_(inbox_writer) {}

Applier::~Applier() = default;

bool Applier::Step(WriteStore& w) {
    // Staged and not published: the transaction of that step did not commit.
    RolledBack();
    // The pages the previous transaction wrote (its jobs' too: an overestimate).
    const int64_t pages = w.TakePagesWritten();
    if (last_fold_rows_ > 0) {
        const double sample = static_cast<double>(pages) / static_cast<double>(last_fold_rows_);
        // Up at once, down slowly: a fold that wrote more pages per event than the
        // estimate (a colder cache, a larger database) must not be followed by a batch
        // sized on the lower figure.
        pages_per_event_ =
            sample > pages_per_event_ ? sample : 0.5 * pages_per_event_ + 0.5 * sample;
    }
    last_fold_rows_ = 0;
    const int64_t cursor = w.AppliedSeq();
    const int batch = NextBatch(std::max<int64_t>(0, reader_.LastSeq() - cursor));
    last_batch_ = batch;
    std::vector<InboxEntry> rows = reader_.After(cursor, batch);
    const int64_t now = text::NowMs();
    w.PruneDedupe(now - options_.dedupe_window_ms, prune_slice_, kDedupeSlices);
    prune_slice_ = (prune_slice_ + 1) % kDedupeSlices;
    staged_seq_ = cursor;
    if (rows.empty()) return false;
    FoldCounts c = w.Fold(rows);
    w.SetAppliedSeq(rows.back().seq);
    staged_.accepted += c.accepted;
    staged_.duplicates += c.duplicates;
    staged_.stale += c.stale;
    staged_rows_ += static_cast<int64_t>(rows.size());
    staged_seq_ = rows.back().seq;
    last_fold_rows_ = static_cast<int64_t>(rows.size());
    return rows.size() == static_cast<size_t>(batch);
}

int Applier::NextBatch(int64_t backlog) const {
    int batch = backlog > options_.large_backlog ? options_.large_batch : options_.batch;
    if (pages_per_event_ > 0) {
        const double pages = static_cast<double>(options_.max_transaction_wal_bytes) / 4096.0;
        const double fit = pages / pages_per_event_;
        if (fit < batch) batch = static_cast<int>(std::max<double>(options_.min_batch, fit));
    }
    return batch;
}

bool Applier::Committed() {
    if (staged_seq_ < 0) return false;  // a commit of jobs only
    counters_.applied += static_cast<uint64_t>(staged_rows_);
    counters_.accepted += static_cast<uint64_t>(staged_.accepted);
    counters_.duplicates += static_cast<uint64_t>(staged_.duplicates);
    counters_.stale += static_cast<uint64_t>(staged_.stale);
    const int64_t applied = staged_seq_;
    const bool moved = staged_rows_ > 0;
    staged_ = FoldCounts{};
    staged_rows_ = 0;
    staged_seq_ = -1;
    {
        std::lock_guard<std::mutex> lock(mu_);
        applied_seq_ = std::max(applied_seq_, applied);
    }
    cv_.notify_all();
    const int64_t now = text::NowMs();
    if (options_.raw_retention_ms == 0 ? moved : now >= next_inbox_prune_ms_) {
        next_inbox_prune_ms_ = now + kInboxPruneIntervalMs;
        PruneInbox(applied, now);
    }
    return moved;
}

void Applier::PruneInbox(int64_t applied, int64_t now_ms) {
    // One chain of prune jobs at a time; each job posts the next while it fills a job.
    if (inbox_prune_running_.exchange(true)) return;
    const int64_t before = options_.raw_retention_ms == 0 ? std::numeric_limits<int64_t>::max()
                                                          : now_ms - options_.raw_retention_ms;
    struct Chain {
        static void Post(Applier* self, int64_t applied, int64_t before) {
            const bool queued = self->inbox_writer_.Post([self, applied, before](InboxStore& s) {
                int64_t n = 0;
                try {
                    n = s.Prune(applied, before, kInboxPruneRows);
                } catch (...) {
                    self->inbox_prune_running_ = false;
                    throw;
                }
                if (n == kInboxPruneRows) {
                    Post(self, applied, before);
                } else {
                    self->inbox_prune_running_ = false;
                }
            });
            if (!queued) self->inbox_prune_running_ = false;
        }
    };
    Chain::Post(this, applied, before);
}

void Applier::RolledBack() {
    staged_ = FoldCounts{};
    staged_rows_ = 0;
    staged_seq_ = -1;
}

int64_t Applier::applied_seq() const {
    std::lock_guard<std::mutex> lock(mu_);
    return applied_seq_;
}

bool Applier::WaitApplied(int64_t seq, int64_t timeout_ms) const {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                        [&] { return applied_seq_ >= seq; });
}

Backlog ReadBacklog(Database& db, const std::string& inbox_path) {
    Backlog out;
    struct stat st {};
    if (::stat(inbox_path.c_str(), &st) != 0) return out;
    Statement applied(detail::Access::Handle(db), "SELECT applied_seq FROM applier WHERE id = 1");
    const int64_t seq = applied.Step() ? applied.Int(0) : 0;
    Database inbox(inbox_path, false);
    InboxReader reader(inbox);
    out.events = std::max<int64_t>(0, reader.LastSeq() - seq);
    if (out.events > 0) out.oldest_received_ms = reader.ReceivedAfter(seq);
    return out;
}

BacklogReader::BacklogReader(const std::string& database, const std::string& inbox_path)
    : db_(database, false),
      inbox_((db_.SetCacheKiB(256), inbox_path), false),
      applied_(detail::Access::Handle(db_), "SELECT applied_seq FROM applier WHERE id = 1"),
      reader_((inbox_.SetCacheKiB(256), inbox_)) {}

Backlog BacklogReader::Read() {
    Backlog out;
    int64_t seq = 0;
    try {
        seq = applied_.Step() ? applied_.Int(0) : 0;
    } catch (...) {
        applied_.Reset();
        throw;
    }
    applied_.Reset();
    out.events = std::max<int64_t>(0, reader_.LastSeq() - seq);
    if (out.events > 0) out.oldest_received_ms = reader_.ReceivedAfter(seq);
    return out;
}

std::vector<StorageFile> StorageSizes(const std::string& database) {
    const std::string inbox = InboxPath(database);
    const std::pair<const char*, std::string> files[] = {{"database", database},
                                                         {"database-wal", database + "-wal"},
                                                         {"database-shm", database + "-shm"},
                                                         {"inbox", inbox},
                                                         {"inbox-wal", inbox + "-wal"},
                                                         {"inbox-shm", inbox + "-shm"}};
    std::vector<StorageFile> out;
    for (const auto& [name, path] : files) {
        struct stat st {};
        out.push_back(
            {name, ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0});
    }
    return out;
}

namespace {

int64_t FileBytes(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

std::string Megabytes(int64_t bytes) { return std::to_string(bytes / (1024 * 1024)) + " MB"; }

}  // namespace

Checkpointer::Checkpointer(std::vector<std::string> paths, CheckpointOptions options)
    : paths_(std::move(paths)), options_(options) {
    thread_ = std::thread([this] { Loop(); });
}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Checkpointer::Round(Database& db, size_t i, bool& warned) {
    const std::string wal = paths_[i] + "-wal";
    // Past the trigger only a TRUNCATE helps: a PASSIVE copy of a large WAL runs long, and
    // while it runs the writer's own truncation (GroupWriter::HoldWalBound) is kept out.
    const bool large = FileBytes(wal) > options_.truncate_bytes;
    const Database::CheckpointResult passive =
        large ? Database::CheckpointResult{} : db.Checkpoint(Database::CheckpointMode::kPassive);
    const int64_t bytes = FileBytes(wal);
    if (bytes > options_.max_bytes) {
        counters_.over_bound.fetch_add(1, std::memory_order_relaxed);
        if (!warned) {
            warned = true;
            log::Warn("the write-ahead log " + wal + " is " + Megabytes(bytes) +
                      ", over limits.max_wal_bytes (" + Megabytes(options_.max_bytes) +
                      "): a reader holds an old snapshot, or the disk is slower than the writes; "
                      "it is truncated once its readers let go");
        }
    }
    // Everything copied and a file left over (a burst that ended), or a WAL past the
    // trigger: truncate it. The file only grows again from zero.
    const bool all_copied = !passive.busy && passive.wal_frames > 0 &&
                            passive.checkpointed_frames == passive.wal_frames;
    if (bytes > options_.truncate_bytes || (bytes > 0 && all_copied)) {
        const Database::CheckpointResult t = db.Checkpoint(Database::CheckpointMode::kTruncate);
        if (t.busy) {
            counters_.truncates_busy.fetch_add(1, std::memory_order_relaxed);
        } else {
            counters_.truncates.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (warned && FileBytes(wal) <= options_.max_bytes) {
        warned = false;
        log::Info("the write-ahead log " + wal + " is back under limits.max_wal_bytes");
    }
}

void Checkpointer::Loop() {
    std::vector<std::unique_ptr<Database>> dbs;
    std::vector<char> warned(paths_.size(), 0);
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            if (cv_.wait_for(lock, std::chrono::milliseconds(options_.interval_ms),
                             [this] { return stopping_; })) {
                return;
            }
        }
        try {
            if (dbs.empty()) {
                for (const auto& p : paths_) {
                    dbs.push_back(std::make_unique<Database>(p, false));
                    dbs.back()->SetCacheKiB(1024);
                    dbs.back()->SetBusyTimeoutMs(options_.busy_ms);
                }
            }
            for (size_t i = 0; i < dbs.size(); ++i) {
                bool w = warned[i] != 0;
                Round(*dbs[i], i, w);
                warned[i] = w ? 1 : 0;
            }
            counters_.rounds.fetch_add(1, std::memory_order_relaxed);
        } catch (const SqliteError& e) {
            log::Warn(std::string("checkpoint failed (tried again shortly): ") + e.what());
            dbs.clear();
        }
    }
}

}  // namespace audsync::store
