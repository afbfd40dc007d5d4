// The inbox file: its table, appends, pruning and reads.
#include "audsync/store/inbox.hpp"

#include <algorithm>

#include "access.hpp"

namespace audsync::store {

std::string InboxPath(const std::string& database) { return database + "-inbox"; }

void PrepareInbox(Database& db) {
    // Rows are deleted from the front as they age: free pages go back to the file
    // system in steps (InboxStore::Prune) instead of keeping the file at its peak. The
    // connection is already in WAL mode, where the setting takes effect only through a
    // VACUUM (cheap: the file has no table yet).
    Statement has_table(detail::Access::Handle(db),
                        "SELECT count(*) FROM sqlite_master WHERE name = 'inbox'");
    const bool fresh = has_table.Step() && has_table.Int(0) == 0;
    has_table.Reset();
    if (fresh) {
        detail::Access::Exec(db, "PRAGMA auto_vacuum = INCREMENTAL");
        detail::Access::Exec(db, "VACUUM");
    }
    // AUTOINCREMENT: a seq is never handed out twice, even after every row is deleted.
    detail::Access::Exec(db,
                         "CREATE TABLE IF NOT EXISTS inbox ("
                         "seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "destination TEXT NOT NULL, message_id TEXT NOT NULL, "
                         "received_ms INTEGER NOT NULL, audience_id TEXT NOT NULL, "
                         "audience_key TEXT NOT NULL, context_kind TEXT NOT NULL, "
                         "context_key TEXT NOT NULL, included INTEGER NOT NULL, "
                         "event_ms INTEGER NOT NULL, raw TEXT NOT NULL) STRICT");
}

InboxStore::InboxStore(Database& db)
    : db_(db),
      append_(detail::Access::Handle(db),
              "INSERT INTO inbox (destination, message_id, received_ms, audience_id, "
              "audience_key, context_kind, context_key, included, event_ms, raw) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
      // The oldest `limit` applied rows on the rowid (never a scan of everything kept),
      // those of them old enough: seq order is arrival order, so a row still retained
      // means the rest are too (a few out of order wait for the next round).
      prune_(detail::Access::Handle(db),
             "DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox WHERE seq <= ?1 "
             "ORDER BY seq LIMIT ?3) AND received_ms < ?2") {}

int64_t InboxStore::Append(const InboxEntry& e) {
    append_.Bind(1, e.destination)
        .Bind(2, e.message_id)
        .Bind(3, e.received_ms)
        .Bind(4, e.audience_id)
        .Bind(5, e.audience_key)
        .Bind(6, e.context_kind)
        .Bind(7, e.context_key)
        .Bind(8, int64_t{e.included ? 1 : 0})
        .Bind(9, e.event_ms)
        .Bind(10, e.raw);
    append_.Run();
    return db_.LastInsertRowid();
}

int64_t InboxStore::Prune(int64_t applied_seq, int64_t before_ms, int64_t limit) {
    prune_.Bind(1, applied_seq).Bind(2, before_ms).Bind(3, limit);
    prune_.Run();
    const int64_t deleted = db_.Changes();
    if (deleted > 0) {
        // 16 MiB of free pages at most stay in the file for the next appends.
        Statement free_pages(detail::Access::Handle(db_), "PRAGMA freelist_count");
        if (free_pages.Step() && free_pages.Int(0) > 4096) {
            free_pages.Reset();
            detail::Access::Exec(db_, "PRAGMA incremental_vacuum");
        }
    }
    return deleted;
}

void InboxStore::ReserveAbove(int64_t seq) {
    Statement update(detail::Access::Handle(db_),
                     "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'inbox'");
    update.Bind(1, seq);
    update.Run();
    if (db_.Changes() > 0 || seq <= 0) return;
    Statement insert(detail::Access::Handle(db_),
                     "INSERT INTO sqlite_sequence (name, seq) VALUES ('inbox', ?1)");
    insert.Bind(1, seq);
    insert.Run();
}

InboxReader::InboxReader(Database& db)
    : after_(detail::Access::Handle(db),
             "SELECT seq, destination, message_id, received_ms, audience_id, audience_key, "
             "context_kind, context_key, included, event_ms FROM inbox WHERE seq > ?1 "
             "ORDER BY seq LIMIT ?2"),
      last_(detail::Access::Handle(db),
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'inbox'), 0)"),
      received_(detail::Access::Handle(db),
                "SELECT received_ms FROM inbox WHERE seq > ?1 ORDER BY seq LIMIT 1"),
      raw_(detail::Access::Handle(db),
           "SELECT raw FROM inbox WHERE seq = ?1 AND destination = ?2 AND message_id = ?3") {}

std::vector<InboxEntry> InboxReader::After(int64_t seq, int limit) {
    std::vector<InboxEntry> out;
    // Sized once: grown by doubling, a batch of 40,000 held 65,536 slots, and the copy
    // from 32,768 held both arrays at once (25 MB, the largest block in the server).
    // Untouched slots of a short read cost no memory.
    out.reserve(static_cast<size_t>(std::max(0, limit)));
    after_.Bind(1, seq).Bind(2, int64_t{limit});
    try {
        while (after_.Step()) {
            InboxEntry e;
            e.seq = after_.Int(0);
            e.destination = after_.Text(1);
            e.message_id = after_.Text(2);
            e.received_ms = after_.Int(3);
            e.audience_id = after_.Text(4);
            e.audience_key = after_.Text(5);
            e.context_kind = after_.Text(6);
            e.context_key = after_.Text(7);
            e.included = after_.Int(8) != 0;
            e.event_ms = after_.Int(9);
            out.push_back(std::move(e));
        }
    } catch (...) {
        after_.Reset();
        throw;
    }
    after_.Reset();
    return out;
}

int64_t InboxReader::LastSeq() {
    int64_t n = last_.Step() ? last_.Int(0) : 0;
    last_.Reset();
    return n;
}

std::optional<int64_t> InboxReader::ReceivedAfter(int64_t seq) {
    received_.Bind(1, seq);
    std::optional<int64_t> out;
    if (received_.Step()) out = received_.Int(0);
    received_.Reset();
    return out;
}

std::optional<std::string> InboxReader::Raw(int64_t seq, const std::string& destination,
                                            const std::string& message_id) {
    raw_.Bind(1, seq).Bind(2, destination).Bind(3, message_id);
    std::optional<std::string> out;
    if (raw_.Step()) out = raw_.Text(0);
    raw_.Reset();
    return out;
}

}  // namespace audsync::store
