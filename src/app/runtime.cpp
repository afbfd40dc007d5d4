// The one place that assembles config -> database -> writer -> engine -> HTTP server.
#include "audsync/app/runtime.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

#include "audsync/http/server.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::app {
namespace {

Error Unavailable(const std::string& message) {
    return MakeError(ErrorCode::kUnavailable, "storage_unavailable", message);
}

bool SameLimits(const config::Limits& a, const config::Limits& b) {
    auto tie = [](const config::Limits& l) {
        return std::tie(l.tracking_max_request_bytes, l.tracking_max_events,
                        l.webhook_max_request_bytes, l.webhook_max_events, l.max_event_bytes,
                        l.max_json_depth, l.max_id_bytes, l.max_key_bytes, l.max_pending_events,
                        l.max_buffered_body_bytes, l.max_connections, l.max_future_skew_seconds,
                        l.max_backlog_events, l.max_backlog_seconds, l.max_wal_bytes);
    };
    return tie(a) == tie(b);
}

}  // namespace

Status RequireDatabase(const std::string& database, const std::string& config_path) {
    struct stat st {};
    if (stat(database.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return Ok();
    std::string message = "no database at " + database;
    if (!config_path.empty()) message += " (config " + config_path + ")";
    message += "; `audsync serve` or `audsync migrate` creates it";
    return MakeError(ErrorCode::kNotFound, "no_database", message);
}

Result<std::unique_ptr<DatabaseLock>> DatabaseLock::Acquire(const std::string& database) {
    const std::string path = database + ".lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        const int err = errno;
        std::string message = "cannot open the lock file " + path + ": " + std::strerror(err);
        if (err == ENOENT) {
            const size_t slash = database.rfind('/');
            const std::string folder = slash == std::string::npos ? "." : database.substr(0, slash);
            message += "; the folder " + folder + " does not exist: create it (mkdir -p " + folder +
                       ") or set database in the config to a file in an existing folder";
        } else if (err == EACCES) {
            message += "; the user running audsync needs write access to the database's folder";
        }
        return Unavailable(message);
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        return MakeError(ErrorCode::kUnavailable, "database_locked",
                         "another audsync (pid " + pid + ") is serving the database " + database +
                             "; stop it first, or use the CLI's read commands beside it");
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        // The lock holds without the pid; only the message of a second server suffers.
    }
    return std::unique_ptr<DatabaseLock>(new DatabaseLock(fd));
}

DatabaseLock::~DatabaseLock() {
    if (fd_ >= 0) ::close(fd_);
}

namespace {

std::vector<store::TargetRef> TargetRefs(const config::Destination& d) {
    std::vector<store::TargetRef> out;
    for (const auto& t : d.targets) out.push_back({t.id, t.platform});
    return out;
}

// Makes the configured targets the destinations' active ones; a new target receives the
// current membership. Logs what it did.
Status EnsureTargets(store::Writer& writer, const config::Config& c) {
    for (const auto& d : c.destinations) {
        int64_t made_pending = 0;
        Status s = writer.Run(
            [&](store::WriteStore& w) {
                made_pending = w.EnsureTargets(d.id, TargetRefs(d), text::NowMs());
            },
            1);
        if (!s) return s;
        if (made_pending > 0) {
            log::Info("destination " + d.id + ": " + std::to_string(made_pending) +
                      " member states are due at a target new to the database");
        }
    }
    return Ok();
}

// An inbox behind the database (replaced, restored from an older backup, or deleted)
// would hand out positions the applier has passed: its next positions are moved past
// the applied one, and what it lost is named.
Status CheckInbox(store::InboxWriter& inbox, store::Writer& writer, const std::string& path) {
    int64_t applied = 0;
    // A fold in parts in progress holds the positions up to its end.
    AUDSYNC_TRY(writer.Run(
        [&](store::WriteStore& w) {
            const store::FoldProgress p = w.ReadFoldProgress();
            applied = std::max(p.applied_seq, p.fold_end);
        },
        1));
    int64_t last = 0;
    {
        store::Database db(path, false);
        last = store::InboxReader(db).LastSeq();
    }
    if (last >= applied) return Ok();
    log::Warn("the inbox " + path + " ends at position " + std::to_string(last) +
              " but the database has applied up to " + std::to_string(applied) +
              " (an inbox file replaced or restored apart from its database); new events "
              "continue after " +
              std::to_string(applied));
    return inbox.Run([&](store::InboxStore& s) { s.ReserveAbove(applied); }, 1);
}

}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::Start(std::shared_ptr<const config::Config> config,
                                                RuntimeOptions options) {
    std::unique_ptr<Runtime> rt(new Runtime());
    rt->config_ = std::move(config);
    Status opened = rt->Open(options);
    if (!opened) {
        rt->Stop();
        return opened.error();
    }
    return rt;
}

Status Runtime::Open(const RuntimeOptions& options) {
    const config::Config& c = *config_;
    if (!c.secrets_resolved && (options.sync || options.http)) {
        return MakeError(ErrorCode::kInternal, "secrets_unresolved",
                         "a config loaded without its secrets cannot serve or push");
    }
    if (!options.create_database) AUDSYNC_TRY(RequireDatabase(c.database, options.config_path));
    if (options.exclusive) {
        auto lock = DatabaseLock::Acquire(c.database);
        if (!lock) return lock.error();
        lock_ = std::move(lock).value();
    }
    try {
        reader_ = std::make_unique<store::Database>(c.database, options.create_database);
        auto migrated = store::Migrate(*reader_, store::EmbeddedMigrations());
        if (!migrated) return migrated.error();
        if (options.http) {
            for (const auto& w : config::StartupWarnings(c)) log::Warn(w);
            const int64_t skew_ms = c.limits.max_future_skew_seconds * 1000;
            if (int64_t n = store::CountFutureDated(*reader_, skew_ms); n > 0) {
                log::Warn(std::to_string(n) +
                          " members were decided by events dated more than "
                          "limits.max_future_skew_seconds after their receipt; they win over "
                          "every genuine event: `audsync repair future-times` reorders them");
            }
        }
        for (const auto& a : store::LoadAudiences(*reader_)) {
            audiences_.Put(a.destination, a.external_id, a.context_kind);
        }
        store::WriterOptions wopts;
        wopts.max_pending_weight = c.limits.max_pending_events;
        // Each WAL's hard bound: past a quarter of limits.max_wal_bytes a writer truncates
        // its WAL itself, and past half of it waits for the truncation however long readers
        // hold it; one transaction more (sized to a quarter by the applier, with room for
        // its estimate to be short by as much again) stays under the limit. The
        // Checkpointer keeps it near an eighth in the usual case.
        wopts.wal_stop_bytes = static_cast<int64_t>(c.limits.max_wal_bytes) / 4;
        // Near the limit the writer waits for readers instead of going on (the hard bound).
        wopts.wal_max_bytes = static_cast<int64_t>(c.limits.max_wal_bytes);
        const std::string inbox_path = store::InboxPath(c.database);
        {
            // Made beside a database that has none yet (new, or from before the inbox).
            store::Database inbox(inbox_path, true);
            store::PrepareInbox(inbox);
        }
        // Appends touch the last pages only: a small cache keeps the process small.
        store::WriterOptions inbox_options = wopts;
        inbox_options.cache_kib = 512;
        inbox_writer_ = std::make_unique<store::InboxWriter>(inbox_path, inbox_options);
        // Folds touch pages all over the tables: a larger cache holds a batch's pages.
        store::WriterOptions db_options = wopts;
        db_options.nice = 5;
        db_options.cache_kib = 16000;
        writer_ = std::make_unique<store::Writer>(c.database, db_options);
        AUDSYNC_TRY(CheckInbox(*inbox_writer_, *writer_, inbox_path));
        store::ApplierOptions aopts;
        aopts.dedupe_window_ms = int64_t{c.dedupe_window_hours} * 3600 * 1000;
        aopts.raw_retention_ms = int64_t{c.raw_retention_hours} * 3600 * 1000;
        aopts.max_transaction_wal_bytes = static_cast<int64_t>(c.limits.max_wal_bytes) / 4;
        aopts.wal_path = c.database + "-wal";
        aopts.max_wal_bytes = static_cast<int64_t>(c.limits.max_wal_bytes);
        applier_ = std::make_unique<store::Applier>(inbox_path, aopts, *inbox_writer_);
        store::CheckpointOptions copts;
        copts.max_bytes = static_cast<int64_t>(c.limits.max_wal_bytes);
        copts.truncate_bytes = copts.max_bytes / 8;
        checkpointer_ = std::make_unique<store::Checkpointer>(
            std::vector<std::string>{c.database, inbox_path}, copts);
        backlog_reader_ = std::make_unique<store::BacklogReader>(c.database, inbox_path);
        store::BacklogReader* backlog = backlog_reader_.get();
        store::Applier* counted = applier_.get();
        // Called under the gate's lock only, so the reader's connections have one user.
        admission_ = std::make_unique<ingest::Admission>(
            [backlog, counted] {
                store::Backlog b = backlog->Read();
                return ingest::Admission::Source{b.events, b.oldest_received_ms,
                                                 counted->counters().applied.load()};
            },
            [] { return text::NowMs(); });
    } catch (const store::SqliteError& e) {
        return Unavailable(std::string("cannot open the database ") + c.database + ": " + e.what());
    }
    AUDSYNC_TRY(EnsureTargets(*writer_, c));
    ingest_ = std::make_unique<ingest::Service>(config_, *writer_, *inbox_writer_, audiences_,
                                                admission_.get());
    if (options.sync) {
        engine_ = std::make_unique<sync::Engine>(config_, c.database, *writer_,
                                                 options.target_factory
                                                     ? options.target_factory
                                                     : sync::TargetFactory(targets::MakeTarget));
        // The server reports synced changes to Segment; a CLI push leaves them queued
        // for it.
        if (options.http)
            reporter_ = std::make_unique<sync::Reporter>(config_, c.database, *writer_);
    }
    // The applier folds on the writer's thread; its commits (and the engine's own
    // records) wake the engine. Ingest commits only wake the applier.
    // An idle poll of the applier commits nothing worth a scan.
    writer_->SetAfterCommit([this] {
        const bool applied = applier_->Committed(writer_->committed_pages());
        const bool jobs = writer_->committed_jobs() > 0;
        if (engine_ && (applied || jobs)) engine_->Wake();
        if (reporter_ && jobs) reporter_->Wake();
    });
    store::Applier* applier = applier_.get();
    writer_->SetBackground([applier](store::WriteStore& w) { return applier->Step(w); },
                           store::ApplierOptions{}.poll_ms, [applier] { applier->RolledBack(); });
    store::Writer* writer = writer_.get();
    inbox_writer_->SetAfterCommit([writer] { writer->Notify(); });
    if (engine_) engine_->Start();
    if (reporter_) reporter_->Start();
    admin_ = std::make_unique<admin::Service>(
        config_, c.database,
        [this](const std::function<void(store::WriteStore&)>& f) {
            return writer_->Run([&](store::WriteStore& w) { f(w); }, 1);
        },
        &ingest_->counters(), engine_ ? &engine_->counters() : nullptr, &applier_->counters());
    admin_->SetAdmission(admission_.get());
    rest_ = std::make_unique<admin::Rest>(*admin_);
    if (options.http) {
        const int newest = store::EmbeddedMigrations().back().version;
        const int64_t max_backlog_ms = int64_t{c.ready_max_backlog_seconds} * 1000;
        const std::string inbox_path = store::InboxPath(c.database);
        server_ = std::make_unique<http::Server>(
            config_, *ingest_, *rest_,
            [this, newest, max_backlog_ms, inbox_path]() -> std::optional<std::string> {
                std::lock_guard<std::mutex> lock(reader_mu_);
                try {
                    if (reader_->SchemaVersion() != newest) {
                        return "the database is not migrated";
                    }
                    store::Backlog b = store::ReadBacklog(*reader_, inbox_path);
                    const int64_t age =
                        b.oldest_received_ms ? text::NowMs() - *b.oldest_received_ms : 0;
                    if (age > max_backlog_ms) {
                        return std::to_string(b.events) +
                               " stored events are not applied yet; the oldest is " +
                               std::to_string(age / 1000) +
                               " s old (ready_max_backlog_seconds is " +
                               std::to_string(max_backlog_ms / 1000) + ")";
                    }
                    return std::nullopt;
                } catch (const store::SqliteError&) {
                    return "the database is not open";
                }
            });
        try {
            server_->Start();
        } catch (const std::exception& e) {
            return MakeError(ErrorCode::kUnavailable, "cannot_listen",
                             "cannot listen on " + c.listen_host + ":" +
                                 std::to_string(c.listen_port) + ": " + e.what());
        }
    }
    return Ok();
}

std::vector<std::string> Runtime::Reload(std::shared_ptr<const config::Config> next) {
    const config::Config& now = *config_;
    auto effective = std::make_shared<config::Config>(*next);
    std::vector<std::string> warnings;
    auto keep = [&](const char* name, auto& field, const auto& running) {
        if (field != running) {
            warnings.push_back(std::string(name) + " cannot change without a restart; it stays " +
                               "as it is until audsync restarts");
            field = running;
        }
    };
    keep("listen", effective->listen_host, now.listen_host);
    keep("listen", effective->listen_port, now.listen_port);
    keep("admin_listen", effective->admin_listen, now.admin_listen);
    keep("database", effective->database, now.database);
    keep("http_threads", effective->http_threads, now.http_threads);
    keep("keepalive_timeout_ms", effective->keepalive_timeout_ms, now.keepalive_timeout_ms);
    keep("header_timeout_ms", effective->header_timeout_ms, now.header_timeout_ms);
    keep("body_timeout_ms", effective->body_timeout_ms, now.body_timeout_ms);
    keep("dedupe_window_hours", effective->dedupe_window_hours, now.dedupe_window_hours);
    keep("raw_retention_hours", effective->raw_retention_hours, now.raw_retention_hours);
    keep("ready_max_backlog_seconds", effective->ready_max_backlog_seconds,
         now.ready_max_backlog_seconds);
    keep("sync.workers", effective->sync_workers, now.sync_workers);
    if (!SameLimits(effective->limits, now.limits)) {
        warnings.push_back("limits cannot change without a restart; they stay as they are");
        effective->limits = now.limits;
    }
    std::shared_ptr<const config::Config> applied = effective;
    if (Status s = EnsureTargets(*writer_, *applied); !s) {
        warnings.push_back("targets: " + s.error().message);
    }
    log::SetLevel(applied->log_level);
    log::SetFormat(applied->log_format);
    ingest_->SetConfig(applied);
    admin_->SetConfig(applied);
    if (engine_) engine_->Reload(applied);
    if (reporter_) reporter_->Reload(applied);
    if (server_) server_->SetConfig(applied);
    config_ = applied;
    return warnings;
}

uint16_t Runtime::port() const { return server_ ? server_->port() : 0; }

uint16_t Runtime::admin_port() const { return server_ ? server_->admin_port() : 0; }

void Runtime::Stop() {
    if (stopped_) return;
    stopped_ = true;
    if (server_) server_->Stop();
    if (writer_) {
        writer_->SetAfterCommit([this] { applier_->Committed(writer_->committed_pages()); });
    }
    if (reporter_) reporter_->Stop();
    if (engine_) engine_->Stop();
    if (writer_) writer_->Stop();
    if (inbox_writer_) inbox_writer_->Stop();
    if (checkpointer_) checkpointer_->Stop();
}

Runtime::~Runtime() { Stop(); }

}  // namespace audsync::app
