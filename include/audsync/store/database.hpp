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

// One SQLite connection in WAL mode with foreign keys on. Not thread-safe: one
// connection per thread (the writer has its own; readers open theirs).
class Database {
  public:
    // Opens (creating when `create`) and sets the pragmas. Throws SqliteError.
    Database(const std::string& path, bool create);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    void Exec(std::string_view sql);
    sqlite3* handle() const { return db_; }
    int64_t Changes() const;
    int64_t LastInsertRowid() const;

    // The highest applied migration version (0 for an empty database).
    int SchemaVersion();

  private:
    sqlite3* db_ = nullptr;
};

// Applies the pending migrations of `migrations` in order, one transaction each.
// Refuses a database whose schema is newer than the newest migration known.
// Returns the versions applied.
Result<std::vector<int>> Migrate(Database& db, const std::vector<Migration>& migrations);

}  // namespace audsync::store
