// The store's own access to a connection's SQLite handle and raw SQL (never public).
#pragma once

#include <string_view>

#include "audsync/store/database.hpp"

namespace audsync::store::detail {

struct Access {
    static sqlite3* Handle(const Database& db) { return db.handle(); }
    static void Exec(Database& db, std::string_view sql) { db.Exec(sql); }
};

}  // namespace audsync::store::detail
