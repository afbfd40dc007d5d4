// The durable inbox: an append-only SQLite file of its own beside the database. Ingest
// acknowledges a request once its events are appended here and committed; the applier
// (store/applier.hpp) folds them into memberships later, in large batches.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "audsync/store/database.hpp"

namespace audsync::store {

// Where the inbox of `database` lives: the same path with "-inbox" appended (and its
// own -wal and -shm files beside it).
std::string InboxPath(const std::string& database);

// One accepted event as ingest resolved it, with its raw JSON.
struct InboxEntry {
    int64_t seq = 0;  // assigned by Append; ascending in commit order
    std::string destination;
    std::string message_id;
    int64_t received_ms = 0;
    std::string audience_id;
    std::string audience_key;
    std::string context_kind;
    std::string context_key;
    bool included = false;
    int64_t event_ms = 0;
    std::string raw;  // empty when read for the applier
};

// Creates the inbox table of a connection opened on InboxPath() if it has none.
// Throws SqliteError.
void PrepareInbox(Database& db);

// The inbox's writes, prepared once on the ingest writer's connection. Not
// thread-safe. Methods throw SqliteError.
class InboxStore {
  public:
    explicit InboxStore(Database& db);
    InboxStore(const InboxStore&) = delete;
    InboxStore& operator=(const InboxStore&) = delete;

    // Appends one event; returns its seq.
    int64_t Append(const InboxEntry& entry);
    // Deletes at most `limit` of the oldest rows that are applied (seq <= applied_seq)
    // and were received before `before_ms`; returns how many. Gives freed pages back to
    // the file system once many are free.
    int64_t Prune(int64_t applied_seq, int64_t before_ms, int64_t limit);
    // Makes every later Append get a seq above `seq` (an inbox file replaced or emptied
    // must not hand out positions the applier has passed).
    void ReserveAbove(int64_t seq);
    void ForgetCache() {}

  private:
    Database& db_;
    Statement append_;
    Statement prune_;
};

// Reads of the inbox on a connection of the caller's own. Throws SqliteError.
class InboxReader {
  public:
    explicit InboxReader(Database& db);
    // Up to `limit` rows after `seq`, in seq order, without their raw JSON.
    std::vector<InboxEntry> After(int64_t seq, int limit);
    // The highest seq ever appended (0 for a new inbox).
    int64_t LastSeq();
    // When the first row after `seq` was received, if there is one.
    std::optional<int64_t> ReceivedAfter(int64_t seq);
    // The raw JSON of row `seq`, if it is still retained and is that event.
    std::optional<std::string> Raw(int64_t seq, const std::string& destination,
                                   const std::string& message_id);

  private:
    Statement after_;
    Statement last_;
    Statement received_;
    Statement raw_;
};

}  // namespace audsync::store
