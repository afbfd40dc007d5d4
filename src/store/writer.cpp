// The group-commit writer thread, and WriteDirect for writes beside a running server.
#include "audsync/store/writer.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "access.hpp"

#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

namespace audsync::store {
namespace {

Error Unavailable(const std::string& message) {
    return MakeError(ErrorCode::kUnavailable, "storage_unavailable", message);
}

}  // namespace

template <class Store>
GroupWriter<Store>::GroupWriter(const std::string& path, WriterOptions options,
                                const std::function<void(Database&)>& prepare)
    : options_(options), wal_path_(path + "-wal"), db_(path, false) {
    db_.LeaveCheckpointsToOthers();
    db_.SetCacheKiB(options_.cache_kib);
    if (prepare) prepare(db_);
    store_ = std::make_unique<Store>(db_);
    thread_ = std::thread([this] { Loop(); });
}

template <class Store>
GroupWriter<Store>::~GroupWriter() {
    Stop();
}

template <class Store>
Status GroupWriter<Store>::Run(Job job, size_t weight) {
    auto pending = std::make_unique<Pending>();
    pending->job = std::move(job);
    pending->weight = weight;
    pending->done.emplace();
    std::future<Status> done = pending->done->get_future();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return Unavailable("audsync is shutting down");
        if (queued_weight_ > 0 && queued_weight_ + weight > options_.max_pending_weight) {
            return Unavailable("too many events are waiting to be stored; retry shortly");
        }
        queued_weight_ += weight;
        queue_.push_back(std::move(pending));
    }
    cv_.notify_one();
    return done.get();
}

template <class Store>
bool GroupWriter<Store>::Post(Job job) {
    auto pending = std::make_unique<Pending>();
    pending->job = std::move(job);
    pending->weight = 0;  // never counted against the events ingest may queue
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return false;
        queue_.push_back(std::move(pending));
    }
    cv_.notify_one();
    return true;
}

template <class Store>
void GroupWriter<Store>::SetBackground(Background step, int64_t poll_ms,
                                       std::function<void()> rolled_back) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        background_ = std::move(step);
        background_rolled_back_ = std::move(rolled_back);
        poll_ms_ = poll_ms;
        notified_ = true;
    }
    cv_.notify_one();
}

template <class Store>
void GroupWriter<Store>::Notify() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        notified_ = true;
    }
    cv_.notify_one();
}

template <class Store>
void GroupWriter<Store>::SetAfterCommit(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(mu_);
    after_commit_ = std::move(hook);
}

template <class Store>
void GroupWriter<Store>::Stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

template <class Store>
uint64_t GroupWriter<Store>::commits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return commits_;
}

template <class Store>
size_t GroupWriter<Store>::queued_weight() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queued_weight_;
}

template <class Store>
void GroupWriter<Store>::Loop() {
    // Linux: a thread's nice value is its own (setpriority on the thread id).
    if (options_.nice != 0 &&
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), options_.nice) != 0) {
        log::Warn("writer: cannot lower its priority; folding competes with ingest for the CPU");
    }
    int64_t next_poll = 0;
    for (;;) {
        std::deque<std::unique_ptr<Pending>> group;
        bool background = false;
        {
            std::unique_lock<std::mutex> lock(mu_);
            auto ready = [this] { return stopping_ || !queue_.empty() || notified_; };
            if (background_) {
                auto wait_ms = std::max<int64_t>(0, next_poll - text::NowMs());
                cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), ready);
            } else {
                cv_.wait(lock, ready);
            }
            size_t weight = 0;
            while (!queue_.empty() && (group.empty() || weight + queue_.front()->weight <=
                                                            options_.max_group_weight)) {
                weight += queue_.front()->weight;
                group.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            queued_weight_ -= weight;
            if (group.empty() && stopping_) return;
            // Polled work (another process may append) runs on the interval; a stop
            // leaves the rest for the next start.
            background = background_ && !stopping_ && (notified_ || text::NowMs() >= next_poll);
            notified_ = false;
        }
        if (background) next_poll = text::NowMs() + poll_ms_;
        if (group.empty() && !background) continue;
        RunGroup(group, background);
    }
}

template <class Store>
void GroupWriter<Store>::RunGroup(std::deque<std::unique_ptr<Pending>>& group, bool background) {
    // The queued jobs and the background step commit apart: the pages a step's commit
    // writes are then its own, the only measure the applier has to size its next part
    // under the WAL bound (jobs, the sync engine's acknowledgements, can write as many).
    if (!group.empty()) RunJobs(group);
    if (background) RunBackground();
}

template <class Store>
void GroupWriter<Store>::RunJobs(std::deque<std::unique_ptr<Pending>>& group) {
    auto answer = [](Pending& p, Status s) {
        if (p.done) p.done->set_value(std::move(s));
    };
    std::vector<std::optional<Error>> job_errors(group.size());
    std::optional<Transaction> tx;
    try {
        tx.emplace(db_);
    } catch (const SqliteError& e) {
        log::Error(std::string("writer: cannot begin a transaction: ") + e.what());
        for (auto& p : group) answer(*p, Unavailable("the database is not writable"));
        return;
    }
    for (size_t i = 0; i < group.size(); ++i) {
        try {
            detail::Access::Exec(db_, "SAVEPOINT job");
            group[i]->job(*store_);
            detail::Access::Exec(db_, "RELEASE job");
        } catch (const std::exception& e) {
            log::Error(std::string("writer: a job failed and was rolled back: ") + e.what());
            job_errors[i] = Unavailable("the event could not be stored");
            try {
                detail::Access::Exec(db_, "ROLLBACK TO job");
                detail::Access::Exec(db_, "RELEASE job");
            } catch (const SqliteError&) {
            }
            store_->ForgetCache();
        }
    }
    if (!Commit(tx, group.size(), false)) {
        for (auto& p : group) answer(*p, Unavailable("the database could not commit"));
        return;
    }
    for (size_t i = 0; i < group.size(); ++i) {
        if (job_errors[i]) {
            answer(*group[i], *job_errors[i]);
        } else {
            answer(*group[i], Ok());
        }
    }
    AfterCommit();
}

template <class Store>
void GroupWriter<Store>::RunBackground() {
    Background step;
    std::function<void()> rolled_back;
    {
        std::lock_guard<std::mutex> lock(mu_);
        step = background_;
        rolled_back = background_rolled_back_;
    }
    // What the step's transaction spills is counted from here (Store::PagesSpilled).
    (void)db_.TakePagesWritten();
    std::optional<Transaction> tx;
    try {
        tx.emplace(db_);
    } catch (const SqliteError& e) {
        log::Error(std::string("writer: cannot begin a transaction: ") + e.what());
        Notify();  // try again
        return;
    }
    bool more = false;
    try {
        more = step(*store_);
    } catch (const std::exception& e) {
        log::Error(std::string("writer: background work failed and was rolled back: ") + e.what());
        tx.reset();  // rolls back
        store_->ForgetCache();
        if (rolled_back) rolled_back();
        return;
    }
    if (!Commit(tx, 0, more)) {
        if (rolled_back) rolled_back();
        return;
    }
    AfterCommit();
}

template <class Store>
bool GroupWriter<Store>::Commit(std::optional<Transaction>& tx, size_t jobs, bool more) {
    try {
        tx->Commit();
    } catch (const SqliteError& e) {
        log::Error(std::string("writer: commit failed: ") + e.what());
        tx.reset();  // rolls back
        store_->ForgetCache();
        // Pages a rolled-back transaction spilled are no commit's.
        (void)db_.TakePagesWritten();
        return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++commits_;
    if (more) notified_ = true;
    committed_jobs_ = jobs;
    committed_pages_ = db_.TakePagesWritten();
    return true;
}

template <class Store>
void GroupWriter<Store>::AfterCommit() {
    std::function<void()> hook;
    {
        std::lock_guard<std::mutex> lock(mu_);
        hook = after_commit_;
    }
    if (hook) hook();
    HoldWalBound();
}

template <class Store>
void GroupWriter<Store>::HoldWalBound() {
    if (options_.wal_stop_bytes <= 0) return;
    struct stat st {};
    if (::stat(wal_path_.c_str(), &st) != 0) return;
    const int64_t size = static_cast<int64_t>(st.st_size);
    if (next_stop_bytes_ < options_.wal_stop_bytes) next_stop_bytes_ = options_.wal_stop_bytes;
    // What one more commit may add: twice the stop size (the applier sizes its parts to
    // half of it), or more when a recent commit wrote more (an estimate that was low, a
    // large group of acknowledgements); the figure decays by a sixteenth per commit.
    const int64_t commit_bytes = committed_pages_ * Database::kPageBytes;
    recent_commit_bytes_ = std::max(commit_bytes, recent_commit_bytes_ - recent_commit_bytes_ / 16);
    const int64_t headroom =
        std::max(options_.wal_stop_bytes * 2, recent_commit_bytes_ + recent_commit_bytes_ / 4);
    // Past `at_limit` one more transaction could take the WAL over wal_max_bytes: the
    // writer then waits for as long as the readers hold it (each of audsync's own reads
    // is a short statement; an outside one is named by the log line). That holds whatever
    // a truncation that failed earlier put off (next_stop_bytes_).
    const bool at_limit = options_.wal_max_bytes > 0 && size > options_.wal_stop_bytes &&
                          size + headroom >= options_.wal_max_bytes;
    if (size <= next_stop_bytes_ && !at_limit) {
        if (size <= options_.wal_stop_bytes) next_stop_bytes_ = options_.wal_stop_bytes;
        return;
    }
    // The callers of this group are answered; the next group waits for the truncation.
    // The busy timeout covers the wait for the write lock and for older readers; a
    // checkpoint running on another connection (the Checkpointer's PASSIVE copy) makes
    // this one fail at once instead, so that case is tried again until the same deadline.
    db_.SetBusyTimeoutMs(options_.wal_stop_busy_ms);
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + std::chrono::milliseconds(options_.wal_stop_busy_ms);
    bool waited = false;
    bool warned = false;  // a wait of a second or more is the operator's to know
    auto stopping = [this] {
        std::lock_guard<std::mutex> lock(mu_);
        return stopping_;
    };
    try {
        for (;;) {
            const Database::CheckpointResult r =
                db_.Checkpoint(Database::CheckpointMode::kTruncate);
            if (!r.busy) {
                wal_stops_.fetch_add(1, std::memory_order_relaxed);
                next_stop_bytes_ = options_.wal_stop_bytes;
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                if (!at_limit || stopping()) {
                    wal_stops_busy_.fetch_add(1, std::memory_order_relaxed);
                    next_stop_bytes_ = size + options_.wal_stop_bytes;
                    break;
                }
                if (!waited) {
                    waited = true;
                    wal_waits_.fetch_add(1, std::memory_order_relaxed);
                }
                if (!warned &&
                    std::chrono::steady_clock::now() - started >= std::chrono::seconds(1)) {
                    warned = true;
                    log::Warn("the write-ahead log " + wal_path_ + " is " +
                              std::to_string(size / (1024 * 1024)) +
                              " MB and one more transaction could take it past "
                              "limits.max_wal_bytes: writing waits until the readers of "
                              "older snapshots let go (a long backup, a members stream, "
                              "another process's open transaction)");
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    } catch (const SqliteError& e) {
        log::Warn(std::string("writer: checkpoint failed: ") + e.what());
    }
    if (warned) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - started)
                            .count();
        log::Info("the write-ahead log " + wal_path_ + " was let go: writing goes on after " +
                  std::to_string(ms) + " ms");
    }
    db_.SetBusyTimeoutMs(Database::kBusyTimeoutMs);
}

template class GroupWriter<WriteStore>;
template class GroupWriter<InboxStore>;

Status WriteDirect(const std::string& path, const std::function<void(WriteStore&)>& f) {
    try {
        Database db(path, false);
        Transaction tx(db);
        {
            WriteStore store(db);
            f(store);
        }
        tx.Commit();
    } catch (const SqliteError& e) {
        return Unavailable(e.what());
    }
    return Ok();
}

}  // namespace audsync::store
