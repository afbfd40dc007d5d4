// Test-only access to store internals (raw SQL, the handle) and test-only reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "audsync/store/database.hpp"
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

    static int64_t CountEvents(Database& db, const std::string& destination) {
        Statement s(db.handle(), "SELECT count(*) FROM events WHERE destination = ?1");
        s.Bind(1, destination);
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
};

}  // namespace audsync::store
