// Operator reads: segment summaries, member pages, dead letters, destinations, gauges.
#include "audsync/store/queries.hpp"

#include "access.hpp"

namespace audsync::store {
namespace {

constexpr const char* kSegmentSelect =
    "SELECT s.id, s.destination, s.audience_id, s.audience_key, s.context_kind, "
    "coalesce(d.status, 'ok'), "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.desired = 1), "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.desired = 0), "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.acked IS NOT m.desired "
    " AND m.dead = 0), "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.acked IS NOT m.desired "
    " AND m.dead = 0 AND m.attempts > 0), "
    "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND m.dead = 1), "
    "(SELECT max(m.last_push_ms) FROM memberships m WHERE m.segment_id = s.id "
    " AND m.last_status BETWEEN 200 AND 299), "
    "(SELECT m.last_error FROM memberships m WHERE m.segment_id = s.id "
    " AND m.last_error IS NOT NULL AND (m.dead = 1 OR m.acked IS NOT m.desired) "
    " ORDER BY m.last_push_ms DESC LIMIT 1), "
    "(SELECT min(m.next_attempt_ms) FROM memberships m WHERE m.segment_id = s.id "
    " AND m.acked IS NOT m.desired AND m.dead = 0 AND m.attempts > 0) "
    "FROM segments s LEFT JOIN destinations d ON d.id = s.destination ";

SegmentSummary ReadSegment(Statement& s, int base = 0) {
    SegmentSummary r;
    r.id = s.Int(base + 0);
    r.destination = s.Text(base + 1);
    r.audience_id = s.Text(base + 2);
    r.audience_key = s.Text(base + 3);
    r.context_kind = s.Text(base + 4);
    r.destination_status = s.Text(base + 5);
    r.included = s.Int(base + 6);
    r.excluded = s.Int(base + 7);
    r.pending = s.Int(base + 8);
    r.retrying = s.Int(base + 9);
    r.dead = s.Int(base + 10);
    if (!s.IsNull(base + 11)) r.last_synced_ms = s.Int(base + 11);
    if (!s.IsNull(base + 12)) r.last_error = s.Text(base + 12);
    if (!s.IsNull(base + 13)) r.next_retry_ms = s.Int(base + 13);
    return r;
}

constexpr const char* kMemberColumns =
    "m.segment_id, m.context_key, m.desired, m.acked, m.dead, m.version, m.message_id, "
    "m.event_ms, m.received_ms, m.attempts, m.next_attempt_ms, m.last_status, m.last_push_ms, "
    "m.last_error";

MemberRow ReadMember(Statement& s, int base = 0) {
    MemberRow r;
    r.segment_id = s.Int(base + 0);
    r.context_key = s.Text(base + 1);
    r.desired = s.Int(base + 2) != 0;
    if (!s.IsNull(base + 3)) r.acked = s.Int(base + 3) != 0;
    r.dead = s.Int(base + 4) != 0;
    r.version = s.Int(base + 5);
    r.message_id = s.Text(base + 6);
    r.event_ms = s.Int(base + 7);
    r.received_ms = s.Int(base + 8);
    r.attempts = s.Int(base + 9);
    r.next_attempt_ms = s.Int(base + 10);
    if (!s.IsNull(base + 11)) r.last_status = s.Int(base + 11);
    if (!s.IsNull(base + 12)) r.last_push_ms = s.Int(base + 12);
    if (!s.IsNull(base + 13)) r.last_error = s.Text(base + 13);
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
            return " AND m.acked IS NOT m.desired AND m.dead = 0";
        case MemberState::kDead:
            return " AND m.dead = 1";
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
    return out;
}

std::vector<MemberRow> ListMembers(Database& db, int64_t segment_id, MemberState state,
                                   const std::optional<std::string>& after_key, int limit) {
    // The state clause is one of five fixed strings; every value is bound.
    Statement s(detail::Access::Handle(db), std::string("SELECT ") + kMemberColumns +
                                                " FROM memberships m WHERE m.segment_id = ?1"
                                                " AND (?2 IS NULL OR m.context_key > ?2)" +
                                                StateClause(state) +
                                                " ORDER BY m.context_key LIMIT ?3");
    s.Bind(1, segment_id);
    after_key ? s.Bind(2, *after_key) : s.BindNull(2);
    s.Bind(3, int64_t{limit});
    std::vector<MemberRow> out;
    while (s.Step()) out.push_back(ReadMember(s));
    return out;
}

std::optional<MemberRow> GetMember(Database& db, int64_t segment_id, const std::string& key) {
    Statement s(detail::Access::Handle(db),
                std::string("SELECT ") + kMemberColumns +
                    " FROM memberships m WHERE m.segment_id = ?1 AND m.context_key = ?2");
    s.Bind(1, segment_id).Bind(2, key);
    if (!s.Step()) return std::nullopt;
    return ReadMember(s);
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
    Statement s(detail::Access::Handle(db), std::string("SELECT ") + kMemberColumns +
                                                " FROM memberships m WHERE m.dead = 1"
                                                " AND (?1 IS NULL OR m.segment_id = ?1)"
                                                " AND (?2 IS NULL OR m.segment_id > ?2 OR"
                                                " (m.segment_id = ?2 AND m.context_key > ?3))"
                                                " ORDER BY m.segment_id, m.context_key LIMIT ?4");
    segment_id ? s.Bind(1, *segment_id) : s.BindNull(1);
    if (after) {
        s.Bind(2, after->first).Bind(3, after->second);
    } else {
        s.BindNull(2).BindNull(3);
    }
    s.Bind(4, int64_t{limit});
    std::vector<MemberRow> out;
    while (s.Step()) out.push_back(ReadMember(s));
    return out;
}

std::vector<DestinationRow> ListDestinations(Database& db) {
    Statement s(detail::Access::Handle(db),
                "SELECT id, status, last_success_ms, last_error, paused_until_ms FROM destinations "
                "ORDER BY id");
    std::vector<DestinationRow> out;
    while (s.Step()) {
        DestinationRow r;
        r.id = s.Text(0);
        r.status = s.Text(1);
        if (!s.IsNull(2)) r.last_success_ms = s.Int(2);
        if (!s.IsNull(3)) r.last_error = s.Text(3);
        r.paused_until_ms = s.Int(4);
        out.push_back(std::move(r));
    }
    return out;
}

int64_t CountPending(Database& db, int64_t segment_id) {
    Statement s(detail::Access::Handle(db),
                "SELECT count(*) FROM memberships WHERE segment_id = ?1 AND acked IS NOT desired "
                "AND dead = 0");
    s.Bind(1, segment_id);
    s.Step();
    return s.Int(0);
}

SyncGauges ReadSyncGauges(Database& db) {
    Statement s(
        detail::Access::Handle(db),
        "SELECT (SELECT count(*) FROM memberships WHERE acked IS NOT desired AND dead = 0), "
        "(SELECT count(*) FROM memberships WHERE dead = 1), "
        "(SELECT min(received_ms) FROM memberships WHERE acked IS NOT desired AND dead = 0)");
    SyncGauges g;
    if (s.Step()) {
        g.pending = s.Int(0);
        g.dead = s.Int(1);
        if (!s.IsNull(2)) g.oldest_pending_received_ms = s.Int(2);
    }
    return g;
}

}  // namespace audsync::store
