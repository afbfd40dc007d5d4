// Test-only access to store internals (raw SQL, the handle) and test-only reads.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "audsync/store/applier.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/store.hpp"

namespace audsync::store {

// Declared a friend of Database; production code never includes this header.
struct TestAccess {
    static sqlite3* Handle(const Database& db) { return db.handle(); }
    static void Exec(Database& db, std::string_view sql) { db.Exec(sql); }

    // The first column of the first row of `sql` as a number (0 without a row).
    static int64_t Int(Database& db, std::string_view sql) {
        Statement s(db.handle(), sql);
        return s.Step() ? s.Int(0) : 0;
    }

    // De-duplication entries (one per applied messageId; the table keeps no destination).
    static int64_t CountDedupe(Database& db) {
        Statement s(db.handle(), "SELECT count(*) FROM dedupe");
        s.Step();
        return s.Int(0);
    }

    static std::optional<Audience> FindAudience(Database& db, const std::string& destination,
                                                const std::string& external_id) {
        Statement s(db.handle(),
                    "SELECT destination, external_id, name, extras, context_kind FROM audiences "
                    "WHERE destination = ?1 AND external_id = ?2");
        s.Bind(1, destination).Bind(2, external_id);
        if (!s.Step()) return std::nullopt;
        Audience a;
        a.destination = s.Text(0);
        a.external_id = s.Text(1);
        a.name = s.Text(2);
        a.extras = s.Text(3);
        if (!s.IsNull(4)) a.context_kind = s.Text(4);
        return a;
    }

    // Polls (any process's applier) until every event stored in the inbox of `db_path`
    // is applied; false when `timeout_ms` passes first.
    static bool WaitApplied(const std::string& db_path, int64_t timeout_ms = 30000) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            try {
                Database db(db_path, false);
                if (ReadBacklog(db, InboxPath(db_path)).events == 0) return true;
            } catch (const SqliteError&) {
                // busy or not there yet: poll again
            }
            if (std::chrono::steady_clock::now() > deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
};

}  // namespace audsync::store
