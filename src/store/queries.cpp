// Operator reads: segment summaries, member pages, dead letters, destinations, gauges.
#include "audsync/store/queries.hpp"

#include <algorithm>

#include "access.hpp"
#include "slices.hpp"

namespace audsync::store {
namespace {

constexpr const char* kSegmentSelect =
    "SELECT s.id, s.destination, s.audience_id, s.audience_key, s.context_kind FROM segments s ";

// One walk over a segment's deliveries (primary key order: key, then target) from
// `after` (exclusive; from the first key without it), every row handed to `row`.
template <typename Row>
void WalkDeliveries(Database& db, int64_t segment_id, const std::optional<std::string>& after,
                    const std::string& columns, Row&& row) {
    std::string key;
    std::string target;
    const std::string select =
        "SELECT context_key, target, " + columns + " FROM deliveries WHERE segment_id = ?1 ";
    const std::string order = " ORDER BY context_key, target LIMIT ?4";
    detail::WalkSlices(
        db, select + (after ? "AND context_key > ?2" : "") + order,
        select + "AND (context_key, target) > (?2, ?3)" + order, 4,
        [&](Statement& s) {
            s.Bind(1, segment_id);
            if (after) s.Bind(2, *after);
        },
        [&](Statement& s) { s.Bind(2, key).Bind(3, target); },
        [&](Statement& s) {
            key = s.Text(0);
            target = s.Text(1);
            row(s, key, target);
        });
}

// The replays of a segment that have members still to push: target -> after_key.
std::vector<std::pair<std::string, std::string>> SegmentReplays(Database& db, int64_t segment_id) {
    Statement s(detail::Access::Handle(db),
                "SELECT target, after_key FROM replays WHERE segment_id = ?1 ORDER BY target");
    s.Bind(1, segment_id);
    std::vector<std::pair<std::string, std::string>> out;
    while (s.Step()) out.emplace_back(s.Text(0), s.Text(1));
    return out;
}

// The members a replay of the segment at `target` whose cursor is `after` has still to
// push: those after it that the target holds (a pending one is counted as pending
// already).
int64_t ReplayLeftAfter(Database& db, const std::string& target, int64_t segment_id,
                        const std::string& after) {
    int64_t left = 0;
    WalkDeliveries(db, segment_id, after, "pending, dead",
                   [&](Statement& s, const std::string&, const std::string& t) {
                       if (t == target && s.Int(2) == 0 && s.Int(3) == 0) ++left;
                   });
    return left;
}

// The same for the segment's replay at `target`, if one runs.
int64_t CountReplayLeft(Database& db, const std::string& target, int64_t segment_id) {
    int64_t left = 0;
    for (const auto& [replay_target, after] : SegmentReplays(db, segment_id)) {
        if (replay_target == target) left += ReplayLeftAfter(db, target, segment_id, after);
    }
    return left;
}

template <typename T>
void Newest(std::optional<T>& into, const std::optional<T>& v, bool max) {
    if (!v) return;
    if (!into || (max ? *v > *into : *v < *into)) into = v;
}

// Per active target of the segment's destination: health and segment state, then its
// counts.
void ReadSegmentTargets(Database& db, SegmentSummary& r) {
    Statement t(detail::Access::Handle(db),
                "SELECT t.id, t.platform, t.status, coalesce(st.status, 'ok'), st.error, "
                "st.limit_name FROM targets t LEFT JOIN segment_targets st "
                "ON st.segment_id = ?1 AND st.target = t.id "
                "WHERE t.destination = ?2 AND t.active = 1 ORDER BY t.id");
    t.Bind(1, r.id).Bind(2, r.destination);
    while (t.Step()) {
        SegmentTargetSummary x;
        x.target = t.Text(0);
        x.platform = t.Text(1);
        x.target_status = t.Text(2);
        x.segment_status = t.Text(3);
        if (!t.IsNull(4)) x.segment_error = t.Text(4);
        if (!t.IsNull(5)) x.limit_name = t.Text(5);
        r.targets.push_back(std::move(x));
    }
    t.Reset();
    if (r.targets.empty()) return;
    // The counts schemas 9 and 10 keep: one row per target, however large the segment.
    Statement c(detail::Access::Handle(db),
                "SELECT pending, retrying, dead, last_synced_ms, retry_error_ms, retry_error, "
                "dead_error_ms, dead_error FROM delivery_counts "
                "WHERE segment_id = ?1 AND target = ?2");
    // The earliest retry among the retrying members: the first deferred entry of the
    // pending-members index that is a failed attempt (found at once unless many members
    // are deferred without one: held over a list limit, or made due by a resume).
    Statement retry(detail::Access::Handle(db),
                    "SELECT next_attempt_ms FROM deliveries INDEXED BY deliveries_due "
                    "WHERE target = ?2 AND segment_id = ?1 AND pending = 1 AND dead = 0 "
                    "AND next_attempt_ms > 0 AND attempts > 0 ORDER BY next_attempt_ms LIMIT 1");
    for (SegmentTargetSummary& x : r.targets) {
        c.Bind(1, r.id).Bind(2, x.target);
        if (c.Step()) {
            x.pending = c.Int(0);
            x.retrying = c.Int(1);
            x.dead = c.Int(2);
            if (!c.IsNull(3)) x.last_synced_ms = c.Int(3);
            // The newer of the errors that still apply: of a retry while members are
            // retrying, of a dead letter while some are left.
            std::optional<int64_t> at;
            if (x.retrying > 0 && !c.IsNull(5)) {
                at = c.IsNull(4) ? 0 : c.Int(4);
                x.last_error = c.Text(5);
            }
            if (x.dead > 0 && !c.IsNull(7) && (!at || (!c.IsNull(6) && c.Int(6) > *at))) {
                x.last_error = c.Text(7);
            }
        }
        c.Reset();
        if (x.retrying > 0) {
            retry.Bind(1, r.id).Bind(2, x.target);
            if (retry.Step()) x.next_retry_ms = retry.Int(0);
            retry.Reset();
        }
    }
    // A replay's members not pushed yet (after its cursor, held at the target) count as
    // pending.
    for (const auto& [target, after] : SegmentReplays(db, r.id)) {
        for (SegmentTargetSummary& x : r.targets) {
            if (x.target == target) x.pending += ReplayLeftAfter(db, target, r.id, after);
        }
    }
    for (const auto& x : r.targets) {
        r.pending += x.pending;
        r.retrying += x.retrying;
        r.dead += x.dead;
        Newest(r.last_synced_ms, x.last_synced_ms, true);
        Newest(r.next_retry_ms, x.next_retry_ms, false);
        if (!r.last_error) r.last_error = x.segment_error ? x.segment_error : x.last_error;
        if (r.destination_status == "ok" && x.target_status != "ok") {
            r.destination_status = x.target_status;
        }
    }
}

// The segment row's columns; the counts are read afterwards, in slices.
SegmentSummary ReadSegment(Statement& s) {
    SegmentSummary r;
    r.id = s.Int(0);
    r.destination = s.Text(1);
    r.audience_id = s.Text(2);
    r.audience_key = s.Text(3);
    r.context_kind = s.Text(4);
    r.destination_status = "ok";
    return r;
}

constexpr const char* kMemberColumns =
    "m.segment_id, m.context_key, m.desired, m.version, m.message_id, m.event_ms, "
    "m.received_ms, m.inbox_seq, m.ignored_message_id, m.ignored_outcome, m.ignored_ms";

// The member's row, then its deliveries at the active targets, folded.
MemberRow ReadMember(Database& db, Statement& s, const std::optional<std::string>& only_target) {
    MemberRow r;
    r.segment_id = s.Int(0);
    r.context_key = s.Text(1);
    r.desired = s.Int(2) != 0;
    r.version = s.Int(3);
    r.message_id = s.Text(4);
    r.event_ms = s.Int(5);
    r.received_ms = s.Int(6);
    if (!s.IsNull(7)) r.inbox_seq = s.Int(7);
    if (!s.IsNull(8)) r.ignored_message_id = s.Text(8);
    if (!s.IsNull(9)) r.ignored_outcome = s.Text(9);
    if (!s.IsNull(10)) r.ignored_ms = s.Int(10);
    Statement d(detail::Access::Handle(db),
                "SELECT d.target, d.acked, d.pending, d.dead, d.attempts, d.next_attempt_ms, "
                "d.last_status, d.last_push_ms, d.last_error FROM deliveries d "
                "JOIN segments s ON s.id = d.segment_id JOIN targets t ON t.id = d.target "
                "AND t.destination = s.destination AND t.active = 1 "
                "WHERE d.segment_id = ?1 AND d.context_key = ?2 AND (?3 IS NULL OR d.target = ?3) "
                "ORDER BY d.target");
    d.Bind(1, r.segment_id).Bind(2, r.context_key);
    only_target ? d.Bind(3, *only_target) : d.BindNull(3);
    bool first = true;
    bool same = true;
    std::optional<int64_t> next;
    while (d.Step()) {
        DeliveryRow x;
        x.target = d.Text(0);
        if (!d.IsNull(1)) x.acked = d.Int(1) != 0;
        x.dead = d.Int(3) != 0;
        x.pending = d.Int(2) != 0 && !x.dead;
        x.attempts = d.Int(4);
        x.next_attempt_ms = d.Int(5);
        if (!d.IsNull(6)) x.last_status = d.Int(6);
        if (!d.IsNull(7)) x.last_push_ms = d.Int(7);
        if (!d.IsNull(8)) x.last_error = d.Text(8);
        if (first) {
            r.acked = x.acked;
            first = false;
        } else if (x.acked != r.acked) {
            same = false;
        }
        r.dead = r.dead || x.dead;
        r.any_pending = r.any_pending || x.pending;
        r.attempts = std::max(r.attempts, x.attempts);
        if (x.pending && x.next_attempt_ms > 0)
            Newest(next, std::optional(x.next_attempt_ms), false);
        if (x.last_push_ms && (!r.last_push_ms || *x.last_push_ms > *r.last_push_ms)) {
            r.last_push_ms = x.last_push_ms;
            r.last_status = x.last_status;
            r.last_error = x.last_error;
        }
        r.deliveries.push_back(std::move(x));
    }
    if (!same) r.acked = std::nullopt;
    r.next_attempt_ms = next.value_or(0);
    return r;
}

const char* StateClause(MemberState state) {
    switch (state) {
        case MemberState::kAll:
            return "";
        case MemberState::kIncluded:
            return " AND m.desired = 1";
        case MemberState::kExcluded:
            return " AND m.desired = 0";
        case MemberState::kPending:
            return " AND EXISTS (SELECT 1 FROM deliveries d JOIN segments s ON s.id = "
                   "d.segment_id JOIN targets t ON t.id = d.target AND t.destination = "
                   "s.destination AND t.active = 1 WHERE d.segment_id = m.segment_id AND "
                   "d.context_key = m.context_key AND d.pending = 1 AND d.dead = 0)";
        case MemberState::kDead:
            return " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.segment_id = m.segment_id "
                   "AND d.context_key = m.context_key AND d.dead = 1)";
    }
    return "";
}

}  // namespace

std::vector<SegmentSummary> ListSegments(Database& db, const SegmentFilter& f) {
    Statement s(detail::Access::Handle(db),
                std::string(kSegmentSelect) +
                    "WHERE (?1 IS NULL OR s.destination = ?1) "
                    "AND (?2 IS NULL OR s.audience_key = ?2) "
                    "AND (?3 IS NULL OR s.id = ?3) "
                    "AND (?4 IS NULL OR s.audience_id = ?4) "
                    "AND (?5 IS NULL OR s.id > ?5) ORDER BY s.id LIMIT coalesce(?6, -1)");
    f.destination ? s.Bind(1, *f.destination) : s.BindNull(1);
    f.audience_key ? s.Bind(2, *f.audience_key) : s.BindNull(2);
    f.id ? s.Bind(3, *f.id) : s.BindNull(3);
    f.audience_id ? s.Bind(4, *f.audience_id) : s.BindNull(4);
    f.after_id ? s.Bind(5, *f.after_id) : s.BindNull(5);
    f.limit ? s.Bind(6, *f.limit) : s.BindNull(6);
    std::vector<SegmentSummary> out;
    while (s.Step()) out.push_back(ReadSegment(s));
    s.Reset();  // the list's snapshot ends before the counts start
    for (auto& r : out) {
        Statement members(detail::Access::Handle(db),
                          "SELECT included, excluded FROM segment_counts WHERE segment_id = ?1");
        members.Bind(1, r.id);
        if (members.Step()) {
            r.included = members.Int(0);
            r.excluded = members.Int(1);
        }
        members.Reset();
        ReadSegmentTargets(db, r);
    }
    return out;
}

std::optional<std::string> PrefixEnd(std::string_view prefix) {
    std::string end(prefix);
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
    if (end.empty()) return std::nullopt;
    end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
    return end;
}

std::vector<MemberRow> ListMembers(Database& db, int64_t segment_id, MemberState state,
                                   const std::optional<std::string>& after_key, int limit,
                                   const std::optional<std::string>& prefix) {
    // Each clause is a fixed string and every value is bound. The key bounds are range
    // constraints on the primary key (segment_id, context_key), so a page starts at its
    // cursor or prefix instead of scanning the segment from its first key. A prefix is
    // the range [prefix, PrefixEnd(prefix)), compared bytewise as keys are stored.
    const std::optional<std::string> end = prefix ? PrefixEnd(*prefix) : std::nullopt;
    std::string sql =
        std::string("SELECT ") + kMemberColumns + " FROM memberships m WHERE m.segment_id = ?1";
    if (after_key) sql += " AND m.context_key > ?2";
    if (prefix) sql += " AND m.context_key >= ?4";
    if (end) sql += " AND m.context_key < ?5";
    sql += StateClause(state);
    sql += " ORDER BY m.context_key LIMIT ?3";
    Statement s(detail::Access::Handle(db), sql);
    s.Bind(1, segment_id);
    if (after_key) s.Bind(2, *after_key);
    s.Bind(3, int64_t{limit});
    if (prefix) s.Bind(4, *prefix);
    if (end) s.Bind(5, *end);
    std::vector<MemberRow> out;
    while (s.Step()) out.push_back(ReadMember(db, s, std::nullopt));
    return out;
}

std::optional<MemberRow> GetMember(Database& db, int64_t segment_id, const std::string& key) {
    Statement s(detail::Access::Handle(db),
                std::string("SELECT ") + kMemberColumns +
                    " FROM memberships m WHERE m.segment_id = ?1 AND m.context_key = ?2");
    s.Bind(1, segment_id).Bind(2, key);
    if (!s.Step()) return std::nullopt;
    return ReadMember(db, s, std::nullopt);
}

std::vector<std::pair<SegmentSummary, MemberRow>> ContextMemberships(
    Database& db, const std::string& key, std::optional<int64_t> after_segment,
    std::optional<int64_t> limit) {
    Statement ids(detail::Access::Handle(db),
                  "SELECT segment_id FROM memberships WHERE context_key = ?1 AND desired = 1 "
                  "AND (?2 IS NULL OR segment_id > ?2) ORDER BY segment_id LIMIT coalesce(?3, -1)");
    ids.Bind(1, key);
    after_segment ? ids.Bind(2, *after_segment) : ids.BindNull(2);
    limit ? ids.Bind(3, *limit) : ids.BindNull(3);
    std::vector<int64_t> segment_ids;
    while (ids.Step()) segment_ids.push_back(ids.Int(0));
    std::vector<std::pair<SegmentSummary, MemberRow>> out;
    for (int64_t id : segment_ids) {
        SegmentFilter f;
        f.id = id;
        auto segs = ListSegments(db, f);
        auto member = GetMember(db, id, key);
        if (!segs.empty() && member) out.emplace_back(segs[0], *member);
    }
    return out;
}

std::vector<MemberRow> ListDeadLetters(Database& db, std::optional<int64_t> segment_id,
                                       std::optional<std::pair<int64_t, std::string>> after,
                                       int limit) {
    // Members with a dead letter at any target, on the dead-letter index.
    Statement s(detail::Access::Handle(db),
                std::string("SELECT ") + kMemberColumns +
                    " FROM memberships m WHERE (m.segment_id, m.context_key) IN "
                    "(SELECT DISTINCT segment_id, context_key FROM deliveries "
                    "INDEXED BY deliveries_dead WHERE dead = 1"
                    " AND (?1 IS NULL OR segment_id = ?1)"
                    " AND (?2 IS NULL OR segment_id > ?2 OR"
                    " (segment_id = ?2 AND context_key > ?3))"
                    " ORDER BY segment_id, context_key LIMIT ?4)"
                    " ORDER BY m.segment_id, m.context_key");
    segment_id ? s.Bind(1, *segment_id) : s.BindNull(1);
    if (after) {
        s.Bind(2, after->first).Bind(3, after->second);
    } else {
        s.BindNull(2).BindNull(3);
    }
    s.Bind(4, int64_t{limit});
    std::vector<MemberRow> out;
    while (s.Step()) out.push_back(ReadMember(db, s, std::nullopt));
    return out;
}

namespace {

// A target's deliveries in one segment as schema 9's triggers count them: one row,
// however large the segment.
struct DeliveryCount {
    int64_t pending = 0;   // pending, not dead
    int64_t retrying = 0;  // of those, after a failed attempt
    int64_t dead = 0;
};
DeliveryCount ReadCount(Statement& s) {
    DeliveryCount c;
    c.pending = s.Int(0);
    c.retrying = s.Int(1);
    c.dead = s.Int(2);
    return c;
}
DeliveryCount CountDeliveriesAt(Database& db, const std::string& target, int64_t segment_id) {
    Statement s(detail::Access::Handle(db),
                "SELECT pending, retrying, dead FROM delivery_counts "
                "WHERE segment_id = ?1 AND target = ?2");
    s.Bind(1, segment_id).Bind(2, target);
    return s.Step() ? ReadCount(s) : DeliveryCount{};
}

// Pending changes read from each end of a lane for the earliest received time.
constexpr int64_t kOldestSampleRows = 4096;

// The earliest received time of the deciding events of the target's `pending` changes in
// the segment, folded into `oldest`. Exact up to 2 x kOldestSampleRows pending changes;
// beyond, the earliest of the first and the last kOldestSampleRows in push order (the
// next due, and the longest deferred: retries wait at the end), so that a scrape costs
// the same at a million pending changes as at ten thousand. Each end is one short
// statement (its own read transaction).
void OldestPendingAt(Database& db, const std::string& target, int64_t segment_id, int64_t pending,
                     std::optional<int64_t>& oldest) {
    if (pending <= 0) return;
    const bool whole = pending <= 2 * kOldestSampleRows;
    const std::vector<std::string> ends =
        whole ? std::vector<std::string>{"ASC"} : std::vector<std::string>{"ASC", "DESC"};
    for (const std::string& dir : ends) {
        Statement s(detail::Access::Handle(db),
                    "SELECT min(m.received_ms) FROM (SELECT d.segment_id, d.context_key "
                    "FROM deliveries d INDEXED BY deliveries_due WHERE d.target = ?1 "
                    "AND d.segment_id = ?2 AND d.pending = 1 AND d.dead = 0 "
                    "ORDER BY d.next_attempt_ms " +
                        dir + ", d.context_key " + dir +
                        " LIMIT ?3) AS p JOIN memberships m ON m.segment_id = p.segment_id "
                        "AND m.context_key = p.context_key");
        s.Bind(1, target).Bind(2, segment_id).Bind(3, whole ? int64_t{-1} : kOldestSampleRows);
        if (s.Step() && !s.IsNull(0)) Newest(oldest, std::optional<int64_t>(s.Int(0)), false);
    }
}

// The active targets with their counts (schema 9's, and a replay's members still to
// push); with `oldest`, the earliest received time of a pending change too.
std::vector<TargetRow> ReadTargets(Database& db, std::optional<int64_t>* oldest) {
    Statement s(detail::Access::Handle(db),
                "SELECT t.destination, t.id, t.platform, t.active, t.status, t.last_success_ms, "
                "t.last_error, t.paused_until_ms, "
                "(SELECT count(*) FROM segment_targets st WHERE st.target = t.id "
                " AND st.status = 'over_limit' AND st.segment_id IN "
                " (SELECT id FROM segments WHERE destination = t.destination)) "
                "FROM targets t WHERE t.active = 1 ORDER BY t.destination, t.id");
    std::vector<TargetRow> out;
    while (s.Step()) {
        TargetRow r;
        r.destination = s.Text(0);
        r.id = s.Text(1);
        r.platform = s.Text(2);
        r.active = s.Int(3) != 0;
        r.status = s.Text(4);
        if (!s.IsNull(5)) r.last_success_ms = s.Int(5);
        if (!s.IsNull(6)) r.last_error = s.Text(6);
        r.paused_until_ms = s.Int(7);
        r.over_limit_segments = s.Int(8);
        out.push_back(std::move(r));
    }
    s.Reset();
    for (auto& r : out) {
        // The counts of every segment of the destination in one statement; a segment's
        // pending changes and replays are looked at only where there are some.
        std::vector<std::pair<int64_t, DeliveryCount>> counts;
        {
            Statement c(detail::Access::Handle(db),
                        "SELECT pending, retrying, dead, segment_id FROM delivery_counts "
                        "WHERE target = ?1 AND segment_id IN "
                        "(SELECT id FROM segments WHERE destination = ?2) ORDER BY segment_id");
            c.Bind(1, r.id).Bind(2, r.destination);
            while (c.Step()) counts.emplace_back(c.Int(3), ReadCount(c));
        }
        for (const auto& [segment_id, c] : counts) {
            r.pending += c.pending;
            r.retrying += c.retrying;
            r.dead += c.dead;
            if (oldest) OldestPendingAt(db, r.id, segment_id, c.pending, *oldest);
        }
        std::vector<int64_t> replayed;
        {
            Statement p(detail::Access::Handle(db),
                        "SELECT DISTINCT segment_id FROM replays WHERE target = ?1 AND "
                        "segment_id IN (SELECT id FROM segments WHERE destination = ?2) "
                        "ORDER BY segment_id");
            p.Bind(1, r.id).Bind(2, r.destination);
            while (p.Step()) replayed.push_back(p.Int(0));
        }
        for (int64_t segment_id : replayed) r.pending += CountReplayLeft(db, r.id, segment_id);
    }
    return out;
}

}  // namespace

std::vector<OverLimitCount> CountOverLimit(Database& db) {
    Statement s(detail::Access::Handle(db),
                "SELECT g.destination, t.id, t.platform, coalesce(st.limit_name, ''), count(*) "
                "FROM segment_targets st JOIN segments g ON g.id = st.segment_id "
                "JOIN targets t ON t.destination = g.destination AND t.id = st.target "
                "WHERE st.status = 'over_limit' AND t.active = 1 "
                "GROUP BY g.destination, t.id, t.platform, st.limit_name ORDER BY 1, 2, 4");
    std::vector<OverLimitCount> out;
    while (s.Step()) out.push_back({s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4)});
    return out;
}

std::vector<DestinationRow> ListDestinations(Database& db) {
    Statement s(detail::Access::Handle(db), "SELECT id FROM destinations ORDER BY id");
    std::vector<DestinationRow> out;
    while (s.Step()) {
        DestinationRow r;
        r.id = s.Text(0);
        r.status = "ok";
        out.push_back(std::move(r));
    }
    for (auto& t : ReadTargets(db, nullptr)) {
        for (auto& d : out) {
            if (d.id != t.destination) continue;
            if (d.status == "ok" && t.status != "ok") {
                d.status = t.status;
                d.last_error = t.last_error;
            }
            Newest(d.last_success_ms, t.last_success_ms, true);
            d.paused_until_ms = std::max(d.paused_until_ms, t.paused_until_ms);
            d.targets.push_back(t);
        }
    }
    return out;
}

int64_t CountPending(Database& db, int64_t segment_id) {
    Statement s(detail::Access::Handle(db),
                "SELECT t.id FROM segments s JOIN targets t ON t.destination = s.destination "
                "AND t.active = 1 WHERE s.id = ?1 ORDER BY t.id");
    s.Bind(1, segment_id);
    std::vector<std::string> targets;
    while (s.Step()) targets.push_back(s.Text(0));
    s.Reset();
    int64_t pending = 0;
    for (const auto& target : targets) {
        pending += CountDeliveriesAt(db, target, segment_id).pending +
                   CountReplayLeft(db, target, segment_id);
    }
    return pending;
}

SyncGauges ReadSyncGauges(Database& db) {
    SyncGauges g;
    g.targets = ReadTargets(db, &g.oldest_pending_received_ms);
    for (const auto& t : g.targets) {
        g.pending += t.pending;
        g.dead += t.dead;
    }
    return g;
}

}  // namespace audsync::store
