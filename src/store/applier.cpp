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
    const int64_t cursor = w.AppliedSeq();
    std::vector<InboxEntry> rows = reader_.After(cursor, options_.batch);
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
    return rows.size() == static_cast<size_t>(options_.batch);
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

Checkpointer::Checkpointer(std::vector<std::string> paths, int64_t interval_ms)
    : paths_(std::move(paths)), interval_ms_(interval_ms) {
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

void Checkpointer::Loop() {
    std::vector<std::unique_ptr<Database>> dbs;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            if (cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_),
                             [this] { return stopping_; })) {
                return;
            }
        }
        try {
            if (dbs.empty()) {
                for (const auto& p : paths_) {
                    dbs.push_back(std::make_unique<Database>(p, false));
                    dbs.back()->SetCacheKiB(1024);
                }
            }
            for (auto& db : dbs) db->Checkpoint();
        } catch (const SqliteError& e) {
            log::Warn(std::string("checkpoint failed (tried again shortly): ") + e.what());
            dbs.clear();
        }
    }
}

}  // namespace audsync::store
