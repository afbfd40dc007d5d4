// SQLite at the store boundary: statements, connections, transactions, migrations, backups.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/common/result.hpp"
#include "audsync/store/migrations.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace audsync::store {

// Thrown by the SQLite wrappers below; callers at the module edge turn it into an
// Error (kUnavailable). Its message names the SQLite error, never data.
class SqliteError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// One prepared statement. Not thread-safe; owned by one connection's user.
class Statement {
  public:
    Statement(sqlite3* db, std::string_view sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& Bind(int index, int64_t value);
    Statement& Bind(int index, std::string_view value);
    Statement& BindNull(int index);
    // Steps once: true when a row is available.
    bool Step();
    void Reset();
    // Runs to completion and resets.
    void Run();

    int64_t Int(int column) const;
    std::string Text(int column) const;
    bool IsNull(int column) const;

  private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

// The de-duplication key of a (destination, messageId): the first 64 bits of SHA-1 of
// both, NUL-separated. Also registered on every connection as SQL
// audsync_dedupe_key(destination, message_id).
int64_t DedupeKey(std::string_view destination, std::string_view message_id);

class Database;
struct TestAccess;  // raw access for tests and the bench: tests/support/store_access.hpp

namespace detail {
struct Access;  // the store's own access to the handle: src/store/access.hpp
}

// One SQLite connection in WAL mode with foreign keys on. Not thread-safe: one
// connection per thread (the writer has its own; readers open theirs).
//
// Creating a database creates its file mode 0600 (SQLite gives the -wal and -shm files
// the database file's mode); opening an existing one readable by others logs a warning.
// Raw SQL and the SQLite handle stay inside the store: writes go through WriteStore,
// reads through the functions of store.hpp and queries.hpp.
class Database {
  public:
    // Opens (creating when `create`) and sets the pragmas. Throws SqliteError.
    Database(const std::string& path, bool create);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    int64_t Changes() const;
    int64_t LastInsertRowid() const;

    // A writer on the ingest path: its commits never run a WAL checkpoint (a
    // Checkpointer does it on a connection of its own).
    void LeaveCheckpointsToOthers();
    // The page cache of this connection (default 16 MiB): small for connections that
    // only append or read one row at a time, so that the process stays small.
    void SetCacheKiB(int kib);
    // PASSIVE: copies what the WAL holds into the database as far as readers allow,
    // without blocking writers. TRUNCATE: takes the write lock, copies everything, waits
    // for the readers of older snapshots, and truncates the WAL file to zero bytes (the
    // busy timeout bounds both waits; `busy` then says it did not finish).
    enum class CheckpointMode { kPassive, kTruncate };
    struct CheckpointResult {
        bool busy = false;
        int wal_frames = 0;           // frames in the WAL (-1: not in WAL mode)
        int checkpointed_frames = 0;  // of them, copied into the database
    };
    CheckpointResult Checkpoint(CheckpointMode mode = CheckpointMode::kPassive);
    // Pages this connection wrote to the WAL since the last call (dirty pages of its
    // transactions, spills included).
    int64_t TakePagesWritten();
    // The same without starting the count again: inside a transaction, the pages it has
    // spilled to the WAL so far (dirty pages past the cache, written before the commit).
    int64_t PagesWritten();
    // How long a statement waits for a lock before failing SQLITE_BUSY (default
    // kBusyTimeoutMs).
    static constexpr int kBusyTimeoutMs = 10000;
    // SQLite's page size in audsync's files (the default; no file sets another).
    static constexpr int64_t kPageBytes = 4096;
    void SetBusyTimeoutMs(int ms);

    // The highest applied migration version (0 for an empty database).
    int SchemaVersion();

  private:
    friend struct detail::Access;
    friend struct TestAccess;

    void Exec(std::string_view sql);
    sqlite3* handle() const { return db_; }

    sqlite3* db_ = nullptr;
};

// A write transaction (BEGIN IMMEDIATE) on one connection, rolled back on destruction
// unless Commit() succeeded. Not thread-safe; one at a time per connection.
// The constructor and Commit() throw SqliteError; the destructor never throws.
class Transaction {
  public:
    explicit Transaction(Database& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    void Commit();

  private:
    Database& db_;
    bool done_ = false;
};

// Applies the pending migrations of `migrations` in order, one transaction each.
// Refuses a database whose schema is newer than the newest migration known.
// Returns the versions applied.
Result<std::vector<int>> Migrate(Database& db, const std::vector<Migration>& migrations);

// Copies the database at `db_path` to a new file `dest_path` (mode 0600) with SQLite's
// online backup API: a consistent snapshot, safe while a server writes (WAL). Refuses
// an existing destination (kInvalidBody "backup_exists") and leaves no file behind
// when the copy fails (kUnavailable "storage_unavailable").
[[nodiscard]] Status Backup(const std::string& db_path, const std::string& dest_path);

}  // namespace audsync::store
