// SQLite connections, statements, transactions, migrations and online backups.
#include "audsync/store/database.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#include "access.hpp"
#include "audsync/common/crypto.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"

namespace audsync::store {
namespace {

[[noreturn]] void Fail(sqlite3* db, const std::string& what) {
    throw SqliteError(what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

// Creates the database file mode 0600 before SQLite opens it, so that no moment exists
// when others may read it (SQLite creates -wal and -shm with the file's mode). An
// existing file keeps its mode; one readable by others gets a warning.
void PrepareFile(const std::string& path, bool create) {
    if (path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0) return;
    if (create) {
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            ::close(fd);
            return;
        }
        // EEXIST: someone created it first; anything else: SQLite reports it below.
    }
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        // Once per path and process: readers open a connection per request.
        static std::mutex mu;
        static std::set<std::string> warned;
        {
            std::lock_guard<std::mutex> lock(mu);
            if (!warned.insert(path).second) return;
        }
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        log::Warn("database " + path + " is readable by other users (mode " + mode +
                  "); chmod 600 it and its -wal and -shm files");
    }
}

// audsync_dedupe_key(destination, message_id) in SQL (the schema-5 migration uses it).
void DedupeKeyFunction(sqlite3_context* ctx, int, sqlite3_value** argv) {
    auto text = [](sqlite3_value* v) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
        return std::string_view(p == nullptr ? "" : p, static_cast<size_t>(sqlite3_value_bytes(v)));
    };
    sqlite3_result_int64(ctx, DedupeKey(text(argv[0]), text(argv[1])));
}

}  // namespace

int64_t DedupeKey(std::string_view destination, std::string_view message_id) {
    std::string data;
    data.reserve(destination.size() + 1 + message_id.size());
    data.append(destination).append(1, '\0').append(message_id);
    return crypto::Hash64(data);
}

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                           &stmt_, nullptr) != SQLITE_OK) {
        Fail(db, "prepare");
    }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Bind(int index, int64_t value) {
    if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) Fail(db_, "bind");
    return *this;
}

Statement& Statement::Bind(int index, std::string_view value) {
    if (sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT,
                            SQLITE_UTF8) != SQLITE_OK) {
        Fail(db_, "bind");
    }
    return *this;
}

Statement& Statement::BindNull(int index) {
    if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) Fail(db_, "bind");
    return *this;
}

bool Statement::Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_reset(stmt_);
    throw SqliteError("step: " + msg);
}

void Statement::Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

void Statement::Run() {
    try {
        while (Step()) {
        }
    } catch (...) {
        Reset();
        throw;
    }
    Reset();
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::Text(int column) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    int n = sqlite3_column_bytes(stmt_, column);
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(n));
}

bool Statement::IsNull(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

Database::Database(const std::string& path, bool create) {
    PrepareFile(path, create);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
        std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw SqliteError("cannot open database " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    sqlite3_extended_result_codes(db_, 1);
    Exec("PRAGMA journal_mode = WAL");
    // FULL: an acknowledged event survives power loss too, not only a process crash.
    Exec("PRAGMA synchronous = FULL");
    Exec("PRAGMA foreign_keys = ON");
    // Measured by scripts/bench (docs/performance.md): a 16 MiB page cache and fewer,
    // larger checkpoints cut the page reads and rewrites of random-key upserts.
    Exec("PRAGMA cache_size = -16000");
    Exec("PRAGMA wal_autocheckpoint = 10000");
    // A WAL grown by a burst is cut back once checkpointed.
    Exec("PRAGMA journal_size_limit = 67108864");
    if (sqlite3_create_function_v2(db_, "audsync_dedupe_key", 2,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr,
                                   DedupeKeyFunction, nullptr, nullptr, nullptr) != SQLITE_OK) {
        Fail(db_, "register audsync_dedupe_key");
    }
}

void Database::LeaveCheckpointsToOthers() { Exec("PRAGMA wal_autocheckpoint = 0"); }

void Database::SetCacheKiB(int kib) { Exec("PRAGMA cache_size = -" + std::to_string(kib)); }

Database::CheckpointResult Database::Checkpoint(CheckpointMode mode) {
    CheckpointResult out;
    const int rc = sqlite3_wal_checkpoint_v2(
        db_, nullptr,
        mode == CheckpointMode::kPassive ? SQLITE_CHECKPOINT_PASSIVE : SQLITE_CHECKPOINT_TRUNCATE,
        &out.wal_frames, &out.checkpointed_frames);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        out.busy = true;
        return out;
    }
    if (rc != SQLITE_OK) Fail(db_, "checkpoint");
    return out;
}

namespace {

int64_t CacheWrites(sqlite3* db, bool reset) {
    int current = 0;
    int high = 0;
    if (sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_WRITE, &current, &high, reset ? 1 : 0) !=
        SQLITE_OK) {
        return 0;
    }
    return current;
}

}  // namespace

int64_t Database::TakePagesWritten() { return CacheWrites(db_, true); }

int64_t Database::PagesWritten() { return CacheWrites(db_, false); }

void Database::SetBusyTimeoutMs(int ms) { sqlite3_busy_timeout(db_, ms); }

Database::~Database() { sqlite3_close_v2(db_); }

void Database::Exec(std::string_view sql) {
    std::string s(sql);
    char* err = nullptr;
    if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err != nullptr ? err : sqlite3_errmsg(db_);
        sqlite3_free(err);
        throw SqliteError(msg);
    }
}

int64_t Database::Changes() const { return sqlite3_changes64(db_); }

int64_t Database::LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

Transaction::Transaction(Database& db) : db_(db) { detail::Access::Exec(db_, "BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
    if (done_) return;
    // A failed COMMIT may leave the transaction open; without one this is a no-op error.
    sqlite3_exec(detail::Access::Handle(db_), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::Commit() {
    detail::Access::Exec(db_, "COMMIT");
    done_ = true;
}

int Database::SchemaVersion() {
    Statement exists(db_,
                     "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                     "'schema_migrations'");
    exists.Step();
    if (exists.Int(0) == 0) return 0;
    Statement max(db_, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    max.Step();
    return static_cast<int>(max.Int(0));
}

Result<std::vector<int>> Migrate(Database& db, const std::vector<Migration>& migrations) {
    std::vector<int> applied;
    try {
        detail::Access::Exec(
            db,
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT");
        int current = db.SchemaVersion();
        int newest = migrations.empty() ? 0 : migrations.back().version;
        if (current > newest) {
            return MakeError(ErrorCode::kUnavailable, "schema_too_new",
                             "the database has schema version " + std::to_string(current) +
                                 " but this audsync knows versions up to " +
                                 std::to_string(newest) +
                                 "; run a newer audsync or restore an older database");
        }
        for (const auto& m : migrations) {
            if (m.version <= current) continue;
            Transaction tx(db);
            detail::Access::Exec(db, m.sql);
            Statement record(detail::Access::Handle(db),
                             "INSERT INTO schema_migrations (version, name, applied_ms) "
                             "VALUES (?, ?, ?)");
            record.Bind(1, static_cast<int64_t>(m.version)).Bind(2, m.name).Bind(3, text::NowMs());
            record.Run();
            tx.Commit();
            applied.push_back(m.version);
        }
    } catch (const SqliteError& e) {
        return MakeError(ErrorCode::kUnavailable, "migration_failed",
                         std::string("database migration failed: ") + e.what());
    }
    return applied;
}

Status Backup(const std::string& db_path, const std::string& dest_path) {
    // O_EXCL: never overwrite, and no window in which the copy is readable by others.
    int fd = ::open(dest_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        if (err == EEXIST) {
            return MakeError(ErrorCode::kInvalidBody, "backup_exists",
                             "backup destination " + dest_path +
                                 " already exists; choose a new path or remove it first");
        }
        return MakeError(ErrorCode::kUnavailable, "storage_unavailable",
                         "cannot create backup " + dest_path + ": " + std::strerror(err));
    }
    ::close(fd);
    std::string failure;
    try {
        Database source(db_path, false);
        sqlite3* dest = nullptr;
        int rc = sqlite3_open_v2(dest_path.c_str(), &dest, SQLITE_OPEN_READWRITE, nullptr);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout(dest, 10000);
            sqlite3_backup* backup =
                sqlite3_backup_init(dest, "main", detail::Access::Handle(source), "main");
            if (backup == nullptr) {
                failure = sqlite3_errmsg(dest);
            } else {
                // One step copies every page under one read transaction: a consistent
                // snapshot, while WAL lets the writer go on committing.
                rc = sqlite3_backup_step(backup, -1);
                int finish = sqlite3_backup_finish(backup);
                if (rc != SQLITE_DONE) {
                    failure = sqlite3_errstr(rc);
                } else if (finish != SQLITE_OK) {
                    failure = sqlite3_errmsg(dest);
                }
            }
        } else {
            failure = dest != nullptr ? sqlite3_errmsg(dest) : "out of memory";
        }
        sqlite3_close_v2(dest);
    } catch (const SqliteError& e) {
        failure = e.what();
    }
    if (!failure.empty()) {
        ::unlink(dest_path.c_str());
        ::unlink((dest_path + "-journal").c_str());
        return MakeError(ErrorCode::kUnavailable, "storage_unavailable",
                         "backup to " + dest_path + " failed: " + failure);
    }
    return Ok();
}

}  // namespace audsync::store
