// The applier's fold steps and pruning, the backlog, and the checkpointer.
#include "audsync/store/applier.hpp"

#include <sys/stat.h>

#include <algorithm>
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
constexpr auto kPageBytes = static_cast<double>(Database::kPageBytes);

int64_t FileBytes(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

}  // namespace

Applier::Applier(const std::string& inbox_path, ApplierOptions options, InboxWriter& inbox_writer)
    : options_(options),
      inbox_db_(inbox_path, false),
      reader_((inbox_db_.SetCacheKiB(512), inbox_db_)),  // reads the inbox's tail once
      inbox_writer_(inbox_writer) {}

Applier::~Applier() = default;

namespace {

// Up at once, down slowly: a part that wrote more pages per event than the estimate (a
// colder cache, a larger database) must not be followed by one sized on the lower figure.
double Smooth(double estimate, double sample) {
    return sample > estimate ? sample : 0.5 * estimate + 0.5 * sample;
}

}  // namespace

void Applier::Learn(int64_t pages) {
    // The pages the step's own commit wrote (the writer commits queued jobs apart).
    if (last_units_ > 0) {
        const double sample = static_cast<double>(pages) / static_cast<double>(last_units_);
        switch (last_phase_) {
            case Phase::kChecks:
                check_pages_ = Smooth(check_pages_, sample);
                break;
            case Phase::kMembers:
                member_pages_ = Smooth(member_pages_, sample);
                break;
            case Phase::kWhole: {
                // Both kinds of work per row: the sample moves both estimates alike.
                const double both = check_pages_ + member_pages_;
                const double scale = Smooth(both, sample) / both;
                check_pages_ *= scale;
                member_pages_ *= scale;
                break;
            }
            case Phase::kNone:
                break;
        }
    }
    last_phase_ = Phase::kNone;
    last_units_ = 0;
}

bool Applier::Plan(WriteStore& w, const FoldProgress& progress) {
    const int64_t cursor = progress.applied_seq;
    if (progress.fold_end > cursor) {
        // A fold in parts is in progress: this applier's, one cut short by a crash, or
        // another process's. Its rows are read again when this plan is not of them.
        if (!plan_ || plan_cursor_ != cursor || plan_end_ != progress.fold_end) {
            plan_.reset();
            FoldPlan plan;
            int64_t last = cursor;
            for (int64_t at = cursor; at < progress.fold_end;) {
                std::vector<InboxEntry> more = reader_.After(at, options_.batch);
                if (more.empty()) break;
                at = more.back().seq;
                while (!more.empty() && more.back().seq > progress.fold_end) more.pop_back();
                if (!more.empty()) last = more.back().seq;
                plan.Add(more);
            }
            if (plan.size() == 0 || last != progress.fold_end) {
                // Only an inbox replaced or restored apart from its database loses rows
                // past the applied position. What the fold committed stays; the rest
                // of its rows cannot be read, and the next events come after them.
                log::Warn("the inbox no longer holds the events at positions " +
                          std::to_string(cursor + 1) + "-" + std::to_string(progress.fold_end) +
                          " that were being applied (an inbox file replaced or restored apart "
                          "from its database): " +
                          std::to_string(progress.folded) +
                          " of them were applied, the rest are lost; applying continues after " +
                          std::to_string(progress.fold_end));
                w.SetAppliedSeq(progress.fold_end);
                staged_seq_ = progress.fold_end;
                return false;
            }
            plan.Finish();
            plan_.emplace(std::move(plan));
            plan_cursor_ = cursor;
            plan_end_ = progress.fold_end;
            plan_checked_ = 0;  // checking again finds each row's own window entry
            plan_folded_ = static_cast<size_t>(progress.folded);
            plan_full_ = true;
        }
        plan_->checked = plan_checked_;
        plan_->folded = static_cast<size_t>(progress.folded);
        return true;
    }
    if (plan_ && plan_cursor_ == cursor && plan_folded_ == 0) {
        // Its window checks in progress (committed as far as plan_checked_).
        plan_->checked = plan_checked_;
        plan_->folded = 0;
        return true;
    }
    plan_.reset();
    // Read in slices of `batch`: the plan's compact rows stay, each slice's InboxEntry
    // rows go before the next is read.
    const int batch = NextBatch(std::max<int64_t>(0, reader_.LastSeq() - cursor));
    FoldPlan plan;
    int64_t end = cursor;
    while (plan.size() < static_cast<size_t>(batch)) {
        const int64_t want =
            std::min<int64_t>(options_.batch, batch - static_cast<int64_t>(plan.size()));
        std::vector<InboxEntry> more = reader_.After(end, static_cast<int>(want));
        if (more.empty()) break;
        end = more.back().seq;
        plan.Add(more);
        if (static_cast<int64_t>(more.size()) < want) break;
    }
    if (plan.size() == 0) return false;
    plan_full_ = plan.size() == static_cast<size_t>(batch);
    plan.Finish();
    plan_.emplace(std::move(plan));
    plan_cursor_ = cursor;
    plan_end_ = end;
    plan_checked_ = 0;
    plan_folded_ = 0;
    return true;
}

bool Applier::Step(WriteStore& w) {
    // Staged and not published: the transaction of that step did not commit.
    RolledBack();
    const FoldProgress progress = w.ReadFoldProgress();
    const int64_t now = text::NowMs();
    w.PruneDedupe(now - options_.dedupe_window_ms, prune_slice_, kDedupeSlices);
    prune_slice_ = (prune_slice_ + 1) % kDedupeSlices;
    staged_seq_ = progress.applied_seq;
    if (!Plan(w, progress)) return false;
    FoldPlan& p = *plan_;
    const size_t checked = p.checked;
    const size_t folded = p.folded;
    const double checks_left = static_cast<double>(p.checks.size() - checked);
    const double rows_left = static_cast<double>(p.order.size() - folded);
    budget_pages_ = static_cast<double>(options_.max_transaction_wal_bytes) / kPageBytes;
    if (options_.max_wal_bytes > 0 && !options_.wal_path.empty()) {
        // A quarter of the room the WAL has left (the writer truncates it between
        // commits when it can; readers may keep it from doing so): a part written at up
        // to four times its estimate still leaves the WAL under its bound.
        const double room = static_cast<double>(
            std::max<int64_t>(0, options_.max_wal_bytes - FileBytes(options_.wal_path)));
        budget_pages_ = std::min(budget_pages_, room / 4 / kPageBytes);
    }
    const double budget = budget_pages_;
    FoldCounts c;
    // Each phase of the step runs in chunks of a 32nd of its part; once the pages the
    // transaction has spilled to the WAL (dirty pages past the cache, written before the
    // commit) reach half the share, the step commits what it did: an estimate far below
    // what the pages now cost (a database grown since it was learnt) cannot take one
    // transaction past the WAL's bound.
    const double spill_stop = budget / 2;
    auto over = [&] { return static_cast<double>(w.PagesSpilled()) >= spill_stop; };
    auto check = [&](size_t want) {
        want = std::min(want, p.checks.size());
        const size_t chunk = std::max<size_t>(1, (want - p.checked + 31) / 32);
        while (p.checked < want) {
            w.Dedupe(p, std::min(want, p.checked + chunk));
            if (over()) return false;
        }
        return true;
    };
    auto fold = [&](size_t want) {
        want = std::min(want, p.order.size());
        const size_t chunk = std::max<size_t>(1, (want - p.folded + 31) / 32);
        while (p.folded < want) {
            const FoldCounts more = w.FoldMembers(p, std::min(want, p.folded + chunk));
            c.accepted += more.accepted;
            c.duplicates += more.duplicates;
            c.stale += more.stale;
            if (over()) return;
        }
    };
    // A part is never more than `batch` rows, whatever the estimates say: they were
    // learned on earlier folds (a smaller database, smaller batches) and can be far
    // below what a large plan writes; one part sized on them would hold the WAL and the
    // applied figures for the whole plan.
    if (folded == 0 && p.order.size() <= static_cast<size_t>(options_.batch) &&
        checks_left * check_pages_ + rows_left * member_pages_ <= budget) {
        // The whole batch fits one transaction (unless its pages say otherwise).
        if (check(p.checks.size())) {
            fold(p.order.size());
            last_phase_ = Phase::kWhole;
            last_units_ = static_cast<int64_t>(p.folded);
        } else {
            last_phase_ = Phase::kChecks;
            last_units_ = static_cast<int64_t>(p.checked - checked);
        }
    } else if (checked < p.checks.size()) {
        // A part of its window checks, a range of the hash space.
        check(checked + static_cast<size_t>(PartSize(check_pages_)));
        last_phase_ = Phase::kChecks;
        last_units_ = static_cast<int64_t>(p.checked - checked);
    } else {
        // A part of its members, a range of the key space.
        fold(folded + static_cast<size_t>(PartSize(member_pages_)));
        last_phase_ = Phase::kMembers;
        last_units_ = static_cast<int64_t>(p.folded - folded);
    }
    const bool done = p.folded == p.order.size();
    if (done) {
        w.SetAppliedSeq(plan_end_);
        staged_seq_ = plan_end_;
    } else if (p.folded > folded) {
        w.SetFoldProgress(plan_end_, static_cast<int64_t>(p.folded));
    }
    staged_.accepted += c.accepted;
    staged_.duplicates += c.duplicates;
    staged_.stale += c.stale;
    staged_rows_ += static_cast<int64_t>(p.folded - folded);
    staged_checked_ = p.checked;
    staged_folded_ = p.folded;
    staged_plan_ = true;
    return !done || plan_full_;
}

int Applier::NextBatch(int64_t backlog) const {
    return backlog > options_.large_backlog ? options_.large_batch : options_.batch;
}

int Applier::PartSize(double pages_per_event) const {
    const double pages = budget_pages_ >= 0
                             ? budget_pages_
                             : static_cast<double>(options_.max_transaction_wal_bytes) / kPageBytes;
    const double fit = pages_per_event > 0 ? pages / pages_per_event : pages;
    return static_cast<int>(
        std::clamp<double>(fit, options_.min_batch, std::max(options_.min_batch, options_.batch)));
}

bool Applier::Committed(int64_t pages_written) {
    if (staged_seq_ < 0) return false;  // a commit of jobs only
    Learn(pages_written);
    counters_.applied += static_cast<uint64_t>(staged_rows_);
    counters_.accepted += static_cast<uint64_t>(staged_.accepted);
    counters_.duplicates += static_cast<uint64_t>(staged_.duplicates);
    counters_.stale += static_cast<uint64_t>(staged_.stale);
    const int64_t applied = staged_seq_;
    const bool moved = staged_rows_ > 0;
    if (staged_plan_) {
        plan_checked_ = staged_checked_;
        plan_folded_ = staged_folded_;
    }
    if (plan_ && applied >= plan_end_) {
        // Folded whole: its memory goes back (a large batch holds tens of megabytes).
        plan_.reset();
    }
    staged_ = FoldCounts{};
    staged_rows_ = 0;
    staged_seq_ = -1;
    staged_plan_ = false;
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
    last_phase_ = Phase::kNone;
    last_units_ = 0;
    staged_ = FoldCounts{};
    staged_rows_ = 0;
    staged_seq_ = -1;
    staged_plan_ = false;
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
