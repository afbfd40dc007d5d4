// The group-commit writer thread, and WriteDirect for writes beside a running server.
#include "audsync/store/writer.hpp"

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

Writer::Writer(const std::string& path, WriterOptions options)
    : options_(options), db_(path, false), store_(db_) {
    thread_ = std::thread([this] { Loop(); });
}

Writer::~Writer() { Stop(); }

Status Writer::Run(Job job, size_t weight) {
    auto pending = std::make_unique<Pending>();
    pending->job = std::move(job);
    pending->weight = weight;
    std::future<Status> done = pending->done.get_future();
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

void Writer::SetAfterCommit(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(mu_);
    after_commit_ = std::move(hook);
}

void Writer::Stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

uint64_t Writer::commits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return commits_;
}

size_t Writer::queued_weight() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queued_weight_;
}

void Writer::Loop() {
    int64_t next_prune = 0;  // prune once at start-up, then on the interval
    for (;;) {
        std::deque<std::unique_ptr<Pending>> group;
        {
            std::unique_lock<std::mutex> lock(mu_);
            auto wait_ms = std::max<int64_t>(0, next_prune - text::NowMs());
            cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                         [this] { return stopping_ || !queue_.empty(); });
            size_t weight = 0;
            while (!queue_.empty() && (group.empty() || weight + queue_.front()->weight <=
                                                            options_.max_group_weight)) {
                weight += queue_.front()->weight;
                group.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            queued_weight_ -= weight;
            if (group.empty() && stopping_) return;
        }
        if (!group.empty()) RunGroup(group);
        if (text::NowMs() >= next_prune) {
            Prune();
            next_prune = text::NowMs() + options_.prune_interval_ms;
        }
    }
}

void Writer::RunGroup(std::deque<std::unique_ptr<Pending>>& group) {
    std::vector<std::optional<Error>> job_errors(group.size());
    std::optional<Transaction> tx;
    try {
        tx.emplace(db_);
    } catch (const SqliteError& e) {
        log::Error(std::string("writer: cannot begin a transaction: ") + e.what());
        for (auto& p : group) p->done.set_value(Unavailable("the database is not writable"));
        return;
    }
    for (size_t i = 0; i < group.size(); ++i) {
        try {
            detail::Access::Exec(db_, "SAVEPOINT job");
            group[i]->job(store_);
            detail::Access::Exec(db_, "RELEASE job");
        } catch (const std::exception& e) {
            log::Error(std::string("writer: a job failed and was rolled back: ") + e.what());
            job_errors[i] = Unavailable("the event could not be stored");
            try {
                detail::Access::Exec(db_, "ROLLBACK TO job");
                detail::Access::Exec(db_, "RELEASE job");
            } catch (const SqliteError&) {
            }
            store_.ForgetCache();
        }
    }
    try {
        tx->Commit();
    } catch (const SqliteError& e) {
        log::Error(std::string("writer: commit failed: ") + e.what());
        tx.reset();  // rolls back
        store_.ForgetCache();
        for (auto& p : group) p->done.set_value(Unavailable("the database could not commit"));
        return;
    }
    std::function<void()> hook;
    {
        std::lock_guard<std::mutex> lock(mu_);
        ++commits_;
        hook = after_commit_;
    }
    for (size_t i = 0; i < group.size(); ++i) {
        if (job_errors[i]) {
            group[i]->done.set_value(*job_errors[i]);
        } else {
            group[i]->done.set_value(Ok());
        }
    }
    if (hook) hook();
}

void Writer::Prune() {
    try {
        Transaction tx(db_);
        int64_t n = store_.PruneEvents(text::NowMs() - options_.dedupe_window_ms);
        tx.Commit();
        if (n > 0)
            log::Info("pruned " + std::to_string(n) + " events past the de-duplication window");
    } catch (const SqliteError& e) {
        log::Error(std::string("writer: pruning failed: ") + e.what());
    }
}

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
