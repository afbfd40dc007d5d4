#include "audsync/store/database.hpp"

#include <sqlite3.h>

#include "audsync/common/text.hpp"

namespace audsync::store {
namespace {

[[noreturn]] void Fail(sqlite3* db, const std::string& what) {
    throw SqliteError(what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

}  // namespace

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
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
        std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw SqliteError("cannot open database " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 10000);
    sqlite3_extended_result_codes(db_, 1);
    Exec("PRAGMA journal_mode = WAL");
    // FULL: an acknowledged event survives power loss too, not only a process crash.
    Exec("PRAGMA synchronous = FULL");
    Exec("PRAGMA foreign_keys = ON");
    // Measured by scripts/bench (docs/performance.md): a 16 MiB page cache and fewer,
    // larger checkpoints cut the page reads and rewrites of random-key upserts.
    Exec("PRAGMA cache_size = -16000");
    Exec("PRAGMA wal_autocheckpoint = 10000");
}

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
        db.Exec(
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
            db.Exec("BEGIN IMMEDIATE");
            try {
                db.Exec(m.sql);
                Statement record(db.handle(),
                                 "INSERT INTO schema_migrations (version, name, applied_ms) "
                                 "VALUES (?, ?, ?)");
                record.Bind(1, static_cast<int64_t>(m.version))
                    .Bind(2, m.name)
                    .Bind(3, text::NowMs());
                record.Run();
                db.Exec("COMMIT");
            } catch (...) {
                db.Exec("ROLLBACK");
                throw;
            }
            applied.push_back(m.version);
        }
    } catch (const SqliteError& e) {
        return MakeError(ErrorCode::kUnavailable, "migration_failed",
                         std::string("database migration failed: ") + e.what());
    }
    return applied;
}

}  // namespace audsync::store
