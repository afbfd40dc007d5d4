// Operator reads: segment summaries, member pages, dead letters, destinations, gauges.
#include "audsync/store/queries.hpp"

#include <algorithm>

#include "access.hpp"

namespace audsync::store {
namespace {

constexpr const char* kSegmentSelect =
    "SELECT s.id, s.destination, s.audience_id, s.audience_key, s.context_kind, "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.desired = 1), "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.desired = 0) "
    "FROM segments s ";

// Per active target of the segment's destination: health, segment state, counts.
constexpr const char* kSegmentTargets =
    "SELECT t.id, t.platform, t.status, coalesce(st.status, 'ok'), st.error, st.limit_name, "
    "(SELECT count(*) FROM deliveries d WHERE d.segment_id = ?1 AND d.target = t.id "
    " AND d.pending = 1 AND d.dead = 0) + "
    // A replay's members not pushed yet count as pending.
    "(SELECT count(*) FROM replays r JOIN deliveries d ON d.segment_id = r.segment_id "
    " AND d.context_key > r.after_key AND d.target = r.target WHERE r.segment_id = ?1 "
    " AND r.target = t.id AND d.pending = 0 AND d.dead = 0), "
    "(SELECT count(*) FROM deliveries d WHERE d.segment_id = ?1 AND d.target = t.id "
    " AND d.pending = 1 AND d.dead = 0 AND d.attempts > 0), "
    "(SELECT count(*) FROM deliveries d WHERE d.segment_id = ?1 AND d.target = t.id "
    " AND d.dead = 1), "
    "(SELECT max(d.last_push_ms) FROM deliveries d WHERE d.segment_id = ?1 AND d.target = t.id "
    " AND d.last_status BETWEEN 200 AND 299), "
    "(SELECT d.last_error FROM deliveries d WHERE d.segment_id = ?1 AND d.target = t.id "
    " AND d.last_error IS NOT NULL AND (d.dead = 1 OR d.pending = 1) "
    " ORDER BY d.last_push_ms DESC LIMIT 1), "
    "(SELECT min(d.next_attempt_ms) FROM deliveries d WHERE d.segment_id = ?1 "
    " AND d.target = t.id AND d.pending = 1 AND d.dead = 0 AND d.attempts > 0) "
    "FROM targets t LEFT JOIN segment_targets st ON st.segment_id = ?1 AND st.target = t.id "
    "WHERE t.destination = ?2 AND t.active = 1 ORDER BY t.id";

template <typename T>
void Newest(std::optional<T>& into, const std::optional<T>& v, bool max) {
    if (!v) return;
    if (!into || (max ? *v > *into : *v < *into)) into = v;
}

SegmentSummary ReadSegment(Database& db, Statement& s) {
    SegmentSummary r;
    r.id = s.Int(0);
    r.destination = s.Text(1);
    r.audience_id = s.Text(2);
    r.audience_key = s.Text(3);
    r.context_kind = s.Text(4);
    r.included = s.Int(5);
    r.excluded = s.Int(6);
    r.destination_status = "ok";
    Statement t(detail::Access::Handle(db), kSegmentTargets);
    t.Bind(1, r.id).Bind(2, r.destination);
    while (t.Step()) {
        SegmentTargetSummary x;
        x.target = t.Text(0);
        x.platform = t.Text(1);
        x.target_status = t.Text(2);
        x.segment_status = t.Text(3);
        if (!t.IsNull(4)) x.segment_error = t.Text(4);
        if (!t.IsNull(5)) x.limit_name = t.Text(5);
        x.pending = t.Int(6);
        x.retrying = t.Int(7);
        x.dead = t.Int(8);
        if (!t.IsNull(9)) x.last_synced_ms = t.Int(9);
        if (!t.IsNull(10)) x.last_error = t.Text(10);
        if (!t.IsNull(11)) x.next_retry_ms = t.Int(11);
        r.pending += x.pending;
        r.retrying += x.retrying;
        r.dead += x.dead;
        Newest(r.last_synced_ms, x.last_synced_ms, true);
        Newest(r.next_retry_ms, x.next_retry_ms, false);
        if (!r.last_error) r.last_error = x.segment_error ? x.segment_error : x.last_error;
        if (r.destination_status == "ok" && x.target_status != "ok") {
            r.destination_status = x.target_status;
        }
        r.targets.push_back(std::move(x));
    }
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
    while (s.Step()) out.push_back(ReadSegment(db, s));
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

constexpr const char* kTargetSelect =
    "SELECT t.destination, t.id, t.platform, t.active, t.status, t.last_success_ms, "
    "t.last_error, t.paused_until_ms, "
    "(SELECT count(*) FROM deliveries d INDEXED BY deliveries_due WHERE d.target = t.id "
    " AND d.pending = 1 AND d.dead = 0 AND d.segment_id IN "
    " (SELECT id FROM segments WHERE destination = t.destination)) + "
    // A replay's members not pushed yet count as pending.
    "(SELECT count(*) FROM replays r JOIN deliveries d ON d.segment_id = r.segment_id "
    " AND d.context_key > r.after_key AND d.target = r.target WHERE r.target = t.id "
    " AND d.pending = 0 AND d.dead = 0 AND r.segment_id IN "
    " (SELECT id FROM segments WHERE destination = t.destination)), "
    "(SELECT count(*) FROM deliveries d WHERE d.target = t.id AND d.dead = 1 AND d.segment_id IN "
    " (SELECT id FROM segments WHERE destination = t.destination)), "
    "(SELECT count(*) FROM segment_targets st WHERE st.target = t.id "
    " AND st.status = 'over_limit' AND st.segment_id IN "
    " (SELECT id FROM segments WHERE destination = t.destination)), "
    "(SELECT count(*) FROM deliveries d INDEXED BY deliveries_due WHERE d.target = t.id "
    " AND d.pending = 1 AND d.dead = 0 AND d.attempts > 0 AND d.segment_id IN "
    " (SELECT id FROM segments WHERE destination = t.destination)) "
    "FROM targets t WHERE t.active = 1 ORDER BY t.destination, t.id";

std::vector<TargetRow> ReadTargets(Database& db) {
    Statement s(detail::Access::Handle(db), kTargetSelect);
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
        r.pending = s.Int(8);
        r.dead = s.Int(9);
        r.over_limit_segments = s.Int(10);
        r.retrying = s.Int(11);
        out.push_back(std::move(r));
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
    for (auto& t : ReadTargets(db)) {
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
                "SELECT count(*) FROM segments s JOIN targets t ON t.destination = s.destination "
                "AND t.active = 1 JOIN deliveries d INDEXED BY deliveries_due "
                "ON d.target = t.id AND d.segment_id = s.id WHERE s.id = ?1 "
                "AND d.pending = 1 AND d.dead = 0");
    s.Bind(1, segment_id);
    s.Step();
    const int64_t pending = s.Int(0);
    // And the members a replay has still to push.
    Statement replay(detail::Access::Handle(db),
                     "SELECT count(*) FROM replays r JOIN targets t ON t.id = r.target "
                     "AND t.active = 1 JOIN segments s ON s.id = r.segment_id "
                     "AND s.destination = t.destination JOIN deliveries d "
                     "ON d.segment_id = r.segment_id AND d.context_key > r.after_key "
                     "AND d.target = r.target WHERE r.segment_id = ?1 AND d.pending = 0 "
                     "AND d.dead = 0");
    replay.Bind(1, segment_id);
    replay.Step();
    return pending + replay.Int(0);
}

SyncGauges ReadSyncGauges(Database& db) {
    SyncGauges g;
    g.targets = ReadTargets(db);
    for (const auto& t : g.targets) {
        g.pending += t.pending;
        g.dead += t.dead;
    }
    Statement s(detail::Access::Handle(db),
                "SELECT min(m.received_ms) FROM deliveries d INDEXED BY deliveries_next "
                "JOIN memberships m ON m.segment_id = d.segment_id AND "
                "m.context_key = d.context_key WHERE d.pending = 1 AND d.dead = 0");
    if (s.Step() && !s.IsNull(0)) g.oldest_pending_received_ms = s.Int(0);
    return g;
}

}  // namespace audsync::store
