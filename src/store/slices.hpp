// Reads over millions of rows, in slices. Each slice is a statement of its own, run to its
// end and reset, so in autocommit mode each is a read transaction of its own: no read
// holds a snapshot for longer than one slice takes. A reader of an old snapshot keeps
// every TRUNCATE checkpoint from resetting the WAL, which then grows for as long as such
// reads follow one another (a scrape of /metrics, a status page). Between two slices the
// checkpointer finds its moment (issue #24).
//
// What is summed over slices is a sum over consecutive snapshots, not over one: each row
// is read once (the cursor is the walk's own key order), and a row changed meanwhile is
// counted as it was when its slice read it. That is a gauge's precision; never use it
// for a decision that must see one snapshot.
#pragma once

#include <cstdint>
#include <string>

#include "access.hpp"

namespace audsync::store::detail {

// Rows per slice: a few milliseconds of reading.
inline constexpr int64_t kSliceRows = 2048;

// Runs `first` (the walk's start, no cursor), then `next` (after the cursor) while a slice
// returns kSliceRows rows. Both end in "LIMIT ?<limit_param>". `bind` binds the fixed
// parameters of both; `bind_cursor` the cursor of `next`; `row` reads a row and keeps
// the cursor.
template <typename Bind, typename BindCursor, typename Row>
void WalkSlices(Database& db, const std::string& first, const std::string& next, int limit_param,
                Bind&& bind, BindCursor&& bind_cursor, Row&& row) {
    Statement start(Access::Handle(db), first);
    Statement after(Access::Handle(db), next);
    for (bool started = false;; started = true) {
        Statement& s = started ? after : start;
        bind(s);
        if (started) bind_cursor(s);
        s.Bind(limit_param, kSliceRows);
        int64_t n = 0;
        try {
            while (s.Step()) {
                row(s);
                ++n;
            }
        } catch (...) {
            s.Reset();
            throw;
        }
        s.Reset();  // ends this slice's read transaction
        if (n < kSliceRows) return;
    }
}

}  // namespace audsync::store::detail
