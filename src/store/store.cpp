// WriteStore's prepared writes, the sync engine's reads and the read helpers.
#include "audsync/store/store.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include "access.hpp"
#include "slices.hpp"

#include "audsync/common/crypto.hpp"
#include "audsync/common/text.hpp"

namespace audsync::store {

WriteStore::WriteStore(Database& db)
    : db_(db),
      ensure_destination_(detail::Access::Handle(db),
                          "INSERT INTO destinations (id, created_ms) VALUES (?1, ?2) "
                          "ON CONFLICT (id) DO NOTHING"),
      insert_dedupe_(detail::Access::Handle(db),
                     "INSERT INTO dedupe (hash, received_ms, seq) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT (hash) DO NOTHING"),
      upsert_segment_(detail::Access::Handle(db),
                      "INSERT INTO segments (destination, audience_id, audience_key, "
                      "context_kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
                      "ON CONFLICT (destination, audience_id, context_kind) "
                      "DO UPDATE SET audience_key = excluded.audience_key RETURNING id"),
      get_membership_(detail::Access::Handle(db),
                      "SELECT desired, version, event_ms, message_id, received_ms, inbox_seq "
                      "FROM memberships WHERE segment_id = ?1 AND context_key = ?2"),
      // The fold decided everything in memory; this writes its result.
      put_membership_(detail::Access::Handle(db),
                      "INSERT INTO memberships (segment_id, context_key, desired, version, "
                      "message_id, event_ms, received_ms, inbox_seq, ignored_message_id, "
                      "ignored_outcome, ignored_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                      "?10, ?11) ON CONFLICT (segment_id, context_key) DO UPDATE SET "
                      "desired = excluded.desired, version = excluded.version, "
                      "message_id = excluded.message_id, event_ms = excluded.event_ms, "
                      "received_ms = excluded.received_ms, inbox_seq = excluded.inbox_seq, "
                      "ignored_message_id = excluded.ignored_message_id, "
                      "ignored_outcome = excluded.ignored_outcome, "
                      "ignored_ms = excluded.ignored_ms"),
      put_ignored_(detail::Access::Handle(db),
                   "UPDATE memberships SET ignored_message_id = ?3, ignored_outcome = ?4, "
                   "ignored_ms = ?5 WHERE segment_id = ?1 AND context_key = ?2"),
      dedupe_owner_(detail::Access::Handle(db),
                    "SELECT seq, received_ms FROM dedupe WHERE hash = ?1"),
      applied_seq_(detail::Access::Handle(db), "SELECT applied_seq FROM applier WHERE id = 1"),
      set_applied_seq_(detail::Access::Handle(db),
                       "UPDATE applier SET applied_seq = ?1, fold_end_seq = NULL, "
                       "fold_folded = 0 WHERE id = 1"),
      fold_progress_(detail::Access::Handle(db),
                     "SELECT applied_seq, coalesce(fold_end_seq, 0), fold_folded FROM applier "
                     "WHERE id = 1"),
      set_fold_progress_(detail::Access::Handle(db),
                         "UPDATE applier SET fold_end_seq = ?1, fold_folded = ?2 WHERE id = 1"),
      // The target holds the new state already, or it is due; a dead letter is about
      // one refused version: a new version is pushed again.
      upsert_delivery_(detail::Access::Handle(db),
                       "INSERT INTO deliveries (segment_id, context_key, target, pending) "
                       "VALUES (?1, ?2, ?3, 1) ON CONFLICT (segment_id, context_key, target) "
                       "DO UPDATE SET pending = (acked IS NOT ?4), "
                       "dead = CASE WHEN dead_version IS ?5 THEN dead ELSE 0 END, "
                       // Held without a failed attempt (a list over the platform's
                       // limit): a change may make it fit, so it is due at once.
                       "next_attempt_ms = CASE WHEN attempts = 0 THEN 0 ELSE next_attempt_ms END"),
      active_targets_(detail::Access::Handle(db),
                      "SELECT id FROM targets WHERE destination = ?1 AND active = 1 ORDER BY id"),
      find_audience_by_name_(detail::Access::Handle(db),
                             "SELECT external_id FROM audiences WHERE destination = ?1 AND "
                             "name = ?2"),
      update_audience_(detail::Access::Handle(db),
                       "UPDATE audiences SET extras = ?3, context_kind = ?4 "
                       "WHERE destination = ?1 AND external_id = ?2"),
      insert_audience_(detail::Access::Handle(db),
                       "INSERT INTO audiences (destination, external_id, name, extras, "
                       "context_kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
      prune_dedupe_(detail::Access::Handle(db),
                    "DELETE FROM dedupe WHERE hash BETWEEN ?1 AND ?2 AND received_ms < ?3"),
      record_ack_(detail::Access::Handle(db),
                  "UPDATE deliveries AS d SET acked = ?4, acked_version = ?5, last_status = ?6, "
                  "last_push_ms = ?7, last_error = NULL, pending = (m.desired IS NOT ?4), "
                  "attempts = CASE WHEN m.version = ?5 THEN 0 ELSE d.attempts END, "
                  "next_attempt_ms = CASE WHEN m.version = ?5 THEN 0 ELSE d.next_attempt_ms END "
                  "FROM memberships AS m WHERE m.segment_id = d.segment_id "
                  "AND m.context_key = d.context_key AND d.segment_id = ?1 "
                  "AND d.context_key = ?2 AND d.target = ?3 "
                  "AND (d.acked_version IS NULL OR d.acked_version <= ?5)"),
      queue_report_(detail::Access::Handle(db),
                    "INSERT INTO reports (destination, message_id, user_id, audience_id, "
                    "audience_key, context_kind, target, platform, included, "
                    "deciding_message_id, synced_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                    "?10, ?11) ON CONFLICT (destination, message_id) DO NOTHING"),
      report_sent_(detail::Access::Handle(db),
                   "UPDATE reports SET state = 1, done_ms = ?2, last_status = ?3, "
                   "last_error = NULL WHERE id = ?1 AND state = 0"),
      record_retry_(detail::Access::Handle(db),
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_ms = ?4, "
                    "last_status = ?5, last_error = ?6, last_push_ms = ?7 "
                    "WHERE segment_id = ?1 AND context_key = ?2 AND target = ?3"),
      record_dead_(detail::Access::Handle(db),
                   "UPDATE deliveries AS d SET dead = (m.version = ?4), dead_version = ?4, "
                   "attempts = d.attempts + 1, last_status = ?5, last_error = ?6, "
                   "last_push_ms = ?7 FROM memberships AS m WHERE m.segment_id = d.segment_id "
                   "AND m.context_key = d.context_key AND d.segment_id = ?1 "
                   "AND d.context_key = ?2 AND d.target = ?3"),
      target_ok_(detail::Access::Handle(db),
                 "UPDATE targets SET status = 'ok', paused_until_ms = ?3, last_error = NULL, "
                 "last_success_ms = coalesce(?4, last_success_ms) "
                 "WHERE destination = ?1 AND id = ?2"),
      target_failed_(detail::Access::Handle(db),
                     "UPDATE targets SET status = ?3, paused_until_ms = ?4, last_error = ?5, "
                     "last_success_ms = coalesce(?6, last_success_ms) "
                     "WHERE destination = ?1 AND id = ?2"),
      segment_target_(detail::Access::Handle(db),
                      "INSERT INTO segment_targets (segment_id, target, status, error, "
                      "limit_name, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                      "ON CONFLICT (segment_id, target) DO UPDATE SET status = excluded.status, "
                      "error = excluded.error, limit_name = excluded.limit_name, "
                      "updated_ms = excluded.updated_ms"),
      // Operator writes, on the dead-letter index: one member or a whole segment, at
      // one target or all.
      // One member by primary key, or a segment on the dead-letter index.
      retry_dead_key_(detail::Access::Handle(db),
                      "UPDATE deliveries SET dead = 0, attempts = 0, next_attempt_ms = 0 "
                      "WHERE segment_id = ?1 AND context_key = ?2 "
                      "AND (?3 IS NULL OR target = ?3) AND dead = 1"),
      retry_dead_segment_(detail::Access::Handle(db),
                          "UPDATE deliveries INDEXED BY deliveries_dead SET dead = 0, "
                          "attempts = 0, next_attempt_ms = 0 WHERE segment_id = ?1 "
                          "AND (?3 IS NULL OR target = ?3) AND dead = 1"),
      discard_dead_key_(detail::Access::Handle(db),
                        "UPDATE deliveries AS d SET dead = 0, acked = m.desired, "
                        "acked_version = m.version, pending = 0, attempts = 0, "
                        "next_attempt_ms = 0, last_error = 'discarded by an operator: ' || "
                        "coalesce(d.last_error, '') FROM memberships AS m "
                        "WHERE m.segment_id = d.segment_id AND m.context_key = d.context_key "
                        "AND d.segment_id = ?1 AND d.context_key = ?2 "
                        "AND (?3 IS NULL OR d.target = ?3) AND d.dead = 1"),
      discard_dead_segment_(detail::Access::Handle(db),
                            "UPDATE deliveries AS d SET dead = 0, acked = m.desired, "
                            "acked_version = m.version, pending = 0, attempts = 0, "
                            "next_attempt_ms = 0, last_error = 'discarded by an operator: ' || "
                            "coalesce(d.last_error, '') FROM memberships AS m "
                            "WHERE m.segment_id = d.segment_id AND m.context_key = d.context_key "
                            "AND d.segment_id = ?1 AND (?3 IS NULL OR d.target = ?3) "
                            "AND d.dead = 1"),
      mark_resync_(detail::Access::Handle(db),
                   "UPDATE deliveries SET acked = NULL, acked_version = NULL, attempts = 0, "
                   "next_attempt_ms = 0, dead = 0, pending = 1 "
                   "WHERE segment_id = ?1 AND target = ?2"),
      // Replays (schema 7): a cursor per segment and target; only the members that are
      // not held at the target (pending, dead) are written when one starts.
      replay_targets_(detail::Access::Handle(db),
                      "SELECT t.id, t.platform FROM segments s JOIN targets t "
                      "ON t.destination = s.destination WHERE s.id = ?1 AND t.active = 1 "
                      "AND (?2 IS NULL OR t.id = ?2) ORDER BY t.id"),
      replay_due_pending_(detail::Access::Handle(db),
                          "UPDATE deliveries INDEXED BY deliveries_due SET attempts = 0, "
                          "next_attempt_ms = 0 WHERE target = ?2 AND segment_id = ?1 "
                          "AND pending = 1 AND dead = 0 AND next_attempt_ms > 0"),
      replay_revive_dead_(detail::Access::Handle(db),
                          "UPDATE deliveries INDEXED BY deliveries_dead SET dead = 0, "
                          "acked = NULL, acked_version = NULL, pending = 1, attempts = 0, "
                          "next_attempt_ms = 0 WHERE segment_id = ?1 AND dead = 1 "
                          "AND target = ?2"),
      replay_start_(detail::Access::Handle(db),
                    "INSERT INTO replays (segment_id, target, after_key, generation, "
                    "started_ms, next_attempt_ms) VALUES (?1, ?2, '', 1, ?3, 0) "
                    "ON CONFLICT (segment_id, target) DO UPDATE SET after_key = '', "
                    "generation = replays.generation + 1, started_ms = excluded.started_ms, "
                    "next_attempt_ms = 0"),
      replay_count_(detail::Access::Handle(db),
                    "SELECT count(*) FROM deliveries WHERE segment_id = ?1 AND target = ?2"),
      replay_advance_(detail::Access::Handle(db),
                      "UPDATE replays SET after_key = ?4, next_attempt_ms = ?5 "
                      "WHERE segment_id = ?1 AND target = ?2 AND generation = ?3"),
      replay_end_(detail::Access::Handle(db),
                  "DELETE FROM replays WHERE segment_id = ?1 AND target = ?2 "
                  "AND generation = ?3"),
      replay_missed_(detail::Access::Handle(db),
                     "UPDATE deliveries SET acked = NULL, acked_version = NULL, pending = 1 "
                     "WHERE segment_id = ?1 AND context_key = ?2 AND target = ?3") {}

void WriteStore::EnsureDestination(const std::string& id, int64_t now_ms) {
    ensure_destination_.Bind(1, id).Bind(2, now_ms);
    ensure_destination_.Run();
}

int64_t WriteStore::EnsureTargets(const std::string& destination,
                                  const std::vector<TargetRef>& targets, int64_t now_ms) {
    // Rare (start and reload): prepared here.
    EnsureDestination(destination, now_ms);
    Statement upsert(detail::Access::Handle(db_),
                     "INSERT INTO targets (destination, id, platform, created_ms) "
                     "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (destination, id) DO UPDATE SET "
                     "active = 1, platform = excluded.platform "
                     "WHERE targets.active = 0 OR targets.platform IS NOT excluded.platform");
    // A new target holds nothing: its included members are due. One configured again
    // missed the changes made meanwhile: each row's pending is computed anew.
    Statement backfill(detail::Access::Handle(db_),
                       "INSERT INTO deliveries (segment_id, context_key, target, pending) "
                       "SELECT m.segment_id, m.context_key, ?2, m.desired FROM memberships m "
                       "JOIN segments s ON s.id = m.segment_id WHERE s.destination = ?1 "
                       "ON CONFLICT (segment_id, context_key, target) DO UPDATE SET "
                       "pending = (deliveries.acked IS NOT (SELECT desired FROM memberships "
                       "WHERE segment_id = deliveries.segment_id AND "
                       "context_key = deliveries.context_key))");
    // A replay left from before (the target was retired, or its platform changed) ends:
    // the backfill above decides what is pending, and a full-list platform has no cursor.
    Statement end_replays(detail::Access::Handle(db_),
                          "DELETE FROM replays WHERE target = ?2 AND segment_id IN "
                          "(SELECT id FROM segments WHERE destination = ?1)");
    int64_t made_pending = 0;
    std::string keep;
    for (const auto& t : targets) {
        upsert.Bind(1, destination).Bind(2, t.id).Bind(3, t.platform).Bind(4, now_ms);
        upsert.Run();
        if (db_.Changes() > 0) {
            backfill.Bind(1, destination).Bind(2, t.id);
            backfill.Run();
            made_pending += db_.Changes();
            end_replays.Bind(1, destination).Bind(2, t.id);
            end_replays.Run();
        }
    }
    Statement active(detail::Access::Handle(db_),
                     "SELECT id FROM targets WHERE destination = ?1 AND active = 1");
    Statement retire(detail::Access::Handle(db_),
                     "UPDATE targets SET active = 0 WHERE destination = ?1 AND id = ?2");
    active.Bind(1, destination);
    std::vector<std::string> retired;
    while (active.Step()) {
        std::string id = active.Text(0);
        bool listed = false;
        for (const auto& t : targets) listed = listed || t.id == id;
        if (!listed) retired.push_back(id);
    }
    active.Reset();
    for (const auto& id : retired) {
        retire.Bind(1, destination).Bind(2, id);
        retire.Run();
    }
    targets_.erase(destination);
    return made_pending;
}

const std::vector<std::string>& WriteStore::ActiveTargets(const std::string& destination) {
    auto it = targets_.find(destination);
    if (it != targets_.end()) return it->second;
    std::vector<std::string> ids;
    active_targets_.Bind(1, destination);
    try {
        while (active_targets_.Step()) ids.push_back(active_targets_.Text(0));
    } catch (...) {
        active_targets_.Reset();
        throw;
    }
    active_targets_.Reset();
    return targets_.emplace(destination, std::move(ids)).first->second;
}

int64_t WriteStore::SegmentId(const FoldPlan::Segment& segment, int64_t now_ms) {
    auto key = std::make_tuple(segment.destination, segment.audience_id, segment.context_kind);
    auto it = segment_ids_.find(key);
    if (it != segment_ids_.end()) return it->second;
    if (destinations_.insert(segment.destination).second) {
        EnsureDestination(segment.destination, now_ms);
    }
    upsert_segment_.Bind(1, segment.destination)
        .Bind(2, segment.audience_id)
        .Bind(3, segment.audience_key)
        .Bind(4, segment.context_kind)
        .Bind(5, now_ms);
    if (!upsert_segment_.Step()) {
        upsert_segment_.Reset();
        throw SqliteError("segment upsert returned no id");
    }
    int64_t id = upsert_segment_.Int(0);
    upsert_segment_.Reset();
    segment_ids_.emplace(std::move(key), id);
    return id;
}

namespace {

// Schema 10's member counts: the store's writes of memberships keep them (Fold,
// ExcludeAllMembers, DeleteSegment), in their own transaction. Not a trigger: a trigger
// makes every membership insert a multi-row statement, which SQLite then journals page
// by page (measured: a fold of new members took twice as long).
void AddMemberCounts(Database& db, int64_t segment_id, int64_t included, int64_t excluded) {
    if (included == 0 && excluded == 0) return;
    Statement s(detail::Access::Handle(db),
                "INSERT INTO segment_counts (segment_id, included, excluded) VALUES (?1, ?2, ?3) "
                "ON CONFLICT (segment_id) DO UPDATE SET included = included + excluded.included, "
                "excluded = excluded + excluded.excluded");
    s.Bind(1, segment_id).Bind(2, included).Bind(3, excluded);
    s.Run();
}

}  // namespace

void FoldPlan::Add(const std::vector<InboxEntry>& in) {
    rows.reserve(rows.size() + in.size());
    for (const InboxEntry& e : in) {
        if (e.message_id.size() > UINT32_MAX || e.context_key.size() > UINT32_MAX ||
            rows.size() >= UINT32_MAX) {
            throw SqliteError("a fold's batch is too large to plan");
        }
        auto name = std::make_tuple(e.destination, e.audience_id, e.audience_key, e.context_kind);
        auto [it, added] =
            index_.try_emplace(std::move(name), static_cast<uint32_t>(segments.size()));
        if (added)
            segments.push_back({e.destination, e.audience_id, e.audience_key, e.context_kind});
        Row r;
        r.seq = e.seq;
        r.received_ms = e.received_ms;
        r.event_ms = e.event_ms;
        r.hash = DedupeKey(e.destination, e.message_id);
        r.text = text.size();
        r.id_size = static_cast<uint32_t>(e.message_id.size());
        r.key_size = static_cast<uint32_t>(e.context_key.size());
        r.segment = it->second;
        r.included = e.included;
        text += e.message_id;
        text += e.context_key;
        rows.push_back(r);
    }
}

void FoldPlan::Finish() {
    index_.clear();
    // Equal (destination, audience_id, context_kind), equal rank: one store segment.
    std::vector<uint32_t> by_name(segments.size());
    for (uint32_t i = 0; i < by_name.size(); ++i) by_name[i] = i;
    auto name = [&](uint32_t i) {
        const Segment& s = segments[i];
        return std::tie(s.destination, s.audience_id, s.context_kind);
    };
    std::sort(by_name.begin(), by_name.end(),
              [&](uint32_t a, uint32_t b) { return name(a) < name(b); });
    rank_.assign(segments.size(), 0);
    for (size_t k = 1; k < by_name.size(); ++k) {
        rank_[by_name[k]] =
            rank_[by_name[k - 1]] + (name(by_name[k - 1]) < name(by_name[k]) ? 1 : 0);
    }
    // De-duplication within the batch: of the rows with one key, the first arrival (rows
    // are in seq order) counts and the others are duplicates. The rows that count are
    // checked against the window in hash order (each page of the table once). Sorted
    // rather than hashed into a set: no memory beyond the plan's own.
    duplicate.assign(rows.size(), 0);
    checks.resize(rows.size());
    for (uint32_t i = 0; i < checks.size(); ++i) checks[i] = i;
    std::sort(checks.begin(), checks.end(), [&](uint32_t a, uint32_t b) {
        return rows[a].hash < rows[b].hash || (rows[a].hash == rows[b].hash && a < b);
    });
    size_t kept = 0;
    for (size_t k = 0; k < checks.size(); ++k) {
        if (kept > 0 && rows[checks[kept - 1]].hash == rows[checks[k]].hash) {
            duplicate[checks[k]] = 1;
        } else {
            checks[kept++] = checks[k];
        }
    }
    checks.resize(kept);
    checks.shrink_to_fit();
    // Members in key order (a segment's rows are one range of the tables), each member's
    // events in arrival order. The order depends on the rows only, so that a fold
    // resumed after a crash finds the same order (FoldProgress::folded).
    order.resize(rows.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        const Row& x = rows[a];
        const Row& y = rows[b];
        if (rank_[x.segment] != rank_[y.segment]) return rank_[x.segment] < rank_[y.segment];
        if (int c = Key(x).compare(Key(y)); c != 0) return c < 0;
        return x.seq < y.seq || (x.seq == y.seq && a < b);
    });
    checked = 0;
    folded = 0;
}

size_t FoldPlan::MemberEnd(size_t at) const {
    const Row& first = rows[order[at]];
    size_t end = at + 1;
    while (end < order.size()) {
        const Row& r = rows[order[end]];
        if (rank_[r.segment] != rank_[first.segment] || Key(r) != Key(first)) break;
        ++end;
    }
    return end;
}

FoldPlan WriteStore::PlanFold(const std::vector<InboxEntry>& rows) {
    FoldPlan p;
    p.Add(rows);
    p.Finish();
    return p;
}

void WriteStore::Dedupe(FoldPlan& p, size_t end) {
    end = std::min(end, p.checks.size());
    for (; p.checked < end; ++p.checked) {
        const uint32_t i = p.checks[p.checked];
        const FoldPlan::Row& e = p.rows[i];
        insert_dedupe_.Bind(1, e.hash).Bind(2, e.received_ms);
        e.seq > 0 ? insert_dedupe_.Bind(3, e.seq) : insert_dedupe_.BindNull(3);
        insert_dedupe_.Run();
        if (db_.Changes() != 0) {
            p.duplicate[i] = 0;
            continue;
        }
        // The entry is there: another message's, or this inbox row's own, written by a
        // part of this fold that committed before a crash (or by another applier).
        bool own = false;
        if (e.seq > 0) {
            dedupe_owner_.Bind(1, e.hash);
            if (dedupe_owner_.Step()) {
                own = !dedupe_owner_.IsNull(0) && dedupe_owner_.Int(0) == e.seq &&
                      dedupe_owner_.Int(1) == e.received_ms;
            }
            dedupe_owner_.Reset();
        }
        p.duplicate[i] = own ? 0 : 1;
    }
}

FoldCounts WriteStore::FoldMembers(FoldPlan& p, size_t end) {
    if (p.checked < p.checks.size()) throw SqliteError("a fold's members before its checks");
    FoldCounts counts;
    end = std::min(end, p.order.size());
    // Member counts moved by this part, per segment: (included, excluded).
    std::map<int64_t, std::pair<int64_t, int64_t>> moved;
    while (p.folded < end) {
        const size_t g = p.folded;
        const size_t member_end = p.MemberEnd(g);
        p.folded = member_end;
        const FoldPlan::Row& first = p.rows[p.order[g]];
        const FoldPlan::Segment& segment = p.segments[first.segment];
        const int64_t segment_id = SegmentId(segment, first.received_ms);
        const std::string_view key = p.Key(first);
        struct State {
            bool exists = false;
            bool desired = false;
            int64_t version = 0;
            int64_t event_ms = 0;
            std::string message_id;
            int64_t received_ms = 0;
            std::optional<int64_t> inbox_seq;
        } now;
        get_membership_.Bind(1, segment_id).Bind(2, key);
        if (get_membership_.Step()) {
            now.exists = true;
            now.desired = get_membership_.Int(0) != 0;
            now.version = get_membership_.Int(1);
            now.event_ms = get_membership_.Int(2);
            now.message_id = get_membership_.Text(3);
            now.received_ms = get_membership_.Int(4);
            if (!get_membership_.IsNull(5)) now.inbox_seq = get_membership_.Int(5);
        }
        get_membership_.Reset();
        const bool existed = now.exists;
        const bool stored_desired = now.desired;
        const int64_t stored_version = now.version;
        bool accepted = false;
        const FoldPlan::Row* ignored = nullptr;
        const char* ignored_outcome = nullptr;
        for (size_t k = g; k < member_end; ++k) {
            const uint32_t i = p.order[k];
            const FoldPlan::Row& e = p.rows[i];
            if (p.duplicate[i] != 0) {
                ++counts.duplicates;
                ignored = &e;
                ignored_outcome = "duplicate";
                continue;
            }
            if (now.exists && e.event_ms < now.event_ms) {
                ++counts.stale;
                ignored = &e;
                ignored_outcome = "stale";
                continue;
            }
            ++counts.accepted;
            if (!now.exists) {
                now.version = 1;
            } else if (now.desired != e.included) {
                ++now.version;
            }
            now.exists = true;
            now.desired = e.included;
            now.event_ms = e.event_ms;
            now.message_id = p.MessageId(e);
            now.received_ms = e.received_ms;
            now.inbox_seq = e.seq > 0 ? std::optional<int64_t>(e.seq) : std::nullopt;
            accepted = true;
            ignored = nullptr;  // what follows the new deciding event
            ignored_outcome = nullptr;
        }
        if (accepted) {
            put_membership_.Bind(1, segment_id)
                .Bind(2, key)
                .Bind(3, int64_t{now.desired ? 1 : 0})
                .Bind(4, now.version)
                .Bind(5, now.message_id)
                .Bind(6, now.event_ms)
                .Bind(7, now.received_ms);
            now.inbox_seq ? put_membership_.Bind(8, *now.inbox_seq) : put_membership_.BindNull(8);
            if (ignored != nullptr) {
                put_membership_.Bind(9, p.MessageId(*ignored))
                    .Bind(10, ignored_outcome)
                    .Bind(11, ignored->received_ms);
            } else {
                put_membership_.BindNull(9).BindNull(10).BindNull(11);
            }
            put_membership_.Run();
            if (!existed || stored_desired != now.desired) {
                auto& [in, ex] = moved[segment_id];
                (now.desired ? in : ex) += 1;
                if (existed) (stored_desired ? in : ex) -= 1;
            }
        } else if (ignored != nullptr && existed) {
            put_ignored_.Bind(1, segment_id)
                .Bind(2, key)
                .Bind(3, p.MessageId(*ignored))
                .Bind(4, ignored_outcome)
                .Bind(5, ignored->received_ms);
            put_ignored_.Run();
        }
        if (!accepted || (existed && now.version == stored_version)) continue;
        for (const auto& target : ActiveTargets(segment.destination)) {
            upsert_delivery_.Bind(1, segment_id)
                .Bind(2, key)
                .Bind(3, target)
                .Bind(4, int64_t{now.desired ? 1 : 0})
                .Bind(5, now.version);
            upsert_delivery_.Run();
        }
    }
    for (const auto& [segment_id, d] : moved) AddMemberCounts(db_, segment_id, d.first, d.second);
    return counts;
}

FoldCounts WriteStore::Fold(const std::vector<InboxEntry>& rows) {
    FoldPlan p = PlanFold(rows);
    Dedupe(p, p.checks.size());
    return FoldMembers(p, p.order.size());
}

ApplyOutcome WriteStore::Apply(const std::string& destination, const std::string& message_id,
                               const mapping::MembershipChange& change, int64_t received_ms) {
    std::vector<InboxEntry> rows(1);
    InboxEntry& e = rows[0];
    e.destination = destination;
    e.message_id = message_id;
    e.received_ms = received_ms;
    e.audience_id = change.audience_id;
    e.audience_key = change.audience_key;
    e.context_kind = change.context_kind;
    e.context_key = change.context_key;
    e.included = change.included;
    e.event_ms = change.event_time_ms;
    FoldCounts c = Fold(rows);
    if (c.duplicates > 0) return ApplyOutcome::kDuplicate;
    return c.stale > 0 ? ApplyOutcome::kStale : ApplyOutcome::kAccepted;
}

int64_t WriteStore::AppliedSeq() {
    int64_t seq = applied_seq_.Step() ? applied_seq_.Int(0) : 0;
    applied_seq_.Reset();
    return seq;
}

void WriteStore::SetAppliedSeq(int64_t seq) {
    set_applied_seq_.Bind(1, seq);
    set_applied_seq_.Run();
}

FoldProgress WriteStore::ReadFoldProgress() {
    FoldProgress out;
    if (fold_progress_.Step()) {
        out.applied_seq = fold_progress_.Int(0);
        out.fold_end = fold_progress_.Int(1);
        out.folded = fold_progress_.Int(2);
    }
    fold_progress_.Reset();
    return out;
}

void WriteStore::SetFoldProgress(int64_t fold_end, int64_t folded) {
    set_fold_progress_.Bind(1, fold_end).Bind(2, folded);
    set_fold_progress_.Run();
}

std::string WriteStore::UpsertAudience(const std::string& destination, const std::string& name,
                                       const std::string& extras,
                                       const std::optional<std::string>& context_kind,
                                       int64_t now_ms) {
    find_audience_by_name_.Bind(1, destination).Bind(2, name);
    std::optional<std::string> existing;
    if (find_audience_by_name_.Step()) existing = find_audience_by_name_.Text(0);
    find_audience_by_name_.Reset();
    if (existing) {
        update_audience_.Bind(1, destination).Bind(2, *existing).Bind(3, extras);
        context_kind ? update_audience_.Bind(4, *context_kind) : update_audience_.BindNull(4);
        update_audience_.Run();
        return *existing;
    }
    std::string external_id = "audsync-" + crypto::RandomHex(12);
    insert_audience_.Bind(1, destination).Bind(2, external_id).Bind(3, name).Bind(4, extras);
    context_kind ? insert_audience_.Bind(5, *context_kind) : insert_audience_.BindNull(5);
    insert_audience_.Bind(6, now_ms);
    insert_audience_.Run();
    return external_id;
}

int64_t WriteStore::PruneDedupe(int64_t before_ms, int slice, int slices) {
    // Slice bounds over the signed 64-bit range, computed unsigned to avoid overflow.
    const uint64_t width = UINT64_MAX / static_cast<uint64_t>(slices);
    const uint64_t lo = width * static_cast<uint64_t>(slice);
    const uint64_t hi = slice == slices - 1 ? UINT64_MAX : lo + width - 1;
    auto to_signed = [](uint64_t v) { return static_cast<int64_t>(v ^ (uint64_t{1} << 63)); };
    prune_dedupe_.Bind(1, to_signed(lo)).Bind(2, to_signed(hi)).Bind(3, before_ms);
    prune_dedupe_.Run();
    return db_.Changes();
}

bool WriteStore::RecordAck(int64_t segment_id, const std::string& key, const std::string& target,
                           bool pushed, int64_t version, int status, int64_t now_ms) {
    record_ack_.Bind(1, segment_id)
        .Bind(2, key)
        .Bind(3, target)
        .Bind(4, int64_t{pushed ? 1 : 0})
        .Bind(5, version)
        .Bind(6, int64_t{status})
        .Bind(7, now_ms);
    record_ack_.Run();
    return db_.Changes() > 0;
}

void WriteStore::RecordRetry(int64_t segment_id, const std::string& key, const std::string& target,
                             int64_t next_attempt_ms, int status, const std::string& error,
                             int64_t now_ms) {
    record_retry_.Bind(1, segment_id)
        .Bind(2, key)
        .Bind(3, target)
        .Bind(4, next_attempt_ms)
        .Bind(5, int64_t{status})
        .Bind(6, error)
        .Bind(7, now_ms);
    record_retry_.Run();
}

void WriteStore::RecordDead(int64_t segment_id, const std::string& key, const std::string& target,
                            int64_t version, int status, const std::string& error, int64_t now_ms) {
    record_dead_.Bind(1, segment_id)
        .Bind(2, key)
        .Bind(3, target)
        .Bind(4, version)
        .Bind(5, int64_t{status})
        .Bind(6, error)
        .Bind(7, now_ms);
    record_dead_.Run();
}

void WriteStore::RecordHeld(int64_t segment_id, const std::string& key, const std::string& target,
                            int64_t next_attempt_ms, const std::string& error, int64_t now_ms) {
    // Rare (lists over a platform's limit): prepared here.
    Statement s(detail::Access::Handle(db_),
                "UPDATE deliveries SET next_attempt_ms = ?4, last_error = ?5, last_status = 0, "
                "last_push_ms = ?6 WHERE segment_id = ?1 AND context_key = ?2 AND target = ?3");
    s.Bind(1, segment_id).Bind(2, key).Bind(3, target).Bind(4, next_attempt_ms).Bind(5, error);
    s.Bind(6, now_ms);
    s.Run();
}

void WriteStore::SetTargetState(const std::string& destination, const std::string& target,
                                const std::string& status, int64_t paused_until_ms,
                                const std::optional<std::string>& error,
                                std::optional<int64_t> success_ms) {
    Statement& s = status == "ok" ? target_ok_ : target_failed_;
    s.Bind(1, destination).Bind(2, target);
    if (status == "ok") {
        s.Bind(3, paused_until_ms);
        success_ms ? s.Bind(4, *success_ms) : s.BindNull(4);
    } else {
        s.Bind(3, status).Bind(4, paused_until_ms);
        error ? s.Bind(5, *error) : s.BindNull(5);
        success_ms ? s.Bind(6, *success_ms) : s.BindNull(6);
    }
    s.Run();
}

void WriteStore::SetSegmentTargetState(int64_t segment_id, const std::string& target,
                                       const std::string& status,
                                       const std::optional<std::string>& error,
                                       const std::optional<std::string>& limit_name,
                                       int64_t now_ms) {
    segment_target_.Bind(1, segment_id).Bind(2, target).Bind(3, status);
    error ? segment_target_.Bind(4, *error) : segment_target_.BindNull(4);
    limit_name ? segment_target_.Bind(5, *limit_name) : segment_target_.BindNull(5);
    segment_target_.Bind(6, now_ms);
    segment_target_.Run();
}

namespace {

// Runs `keyed` (?1 segment, ?2 key) for one member or `whole` (?1 segment) for all,
// with ?3 the target (NULL: all).
int64_t RunForMembers(Database& db, Statement& keyed, Statement& whole, int64_t segment_id,
                      const std::optional<std::string>& key,
                      const std::optional<std::string>& target) {
    Statement& s = key ? keyed : whole;
    s.Bind(1, segment_id);
    if (key) s.Bind(2, *key);
    target ? s.Bind(3, *target) : s.BindNull(3);
    s.Run();
    return db.Changes();
}

}  // namespace

int64_t WriteStore::RetryDeadLetter(int64_t segment_id, const std::optional<std::string>& key,
                                    const std::optional<std::string>& target) {
    return RunForMembers(db_, retry_dead_key_, retry_dead_segment_, segment_id, key, target);
}

int64_t WriteStore::DiscardDeadLetter(int64_t segment_id, const std::optional<std::string>& key,
                                      const std::optional<std::string>& target) {
    return RunForMembers(db_, discard_dead_key_, discard_dead_segment_, segment_id, key, target);
}

int64_t WriteStore::MarkForResync(int64_t segment_id, const std::optional<std::string>& target,
                                  std::optional<int64_t> members,
                                  std::vector<std::pair<std::string, int64_t>>* per_target) {
    std::vector<std::pair<std::string, std::string>> targets;  // id, platform
    replay_targets_.Bind(1, segment_id);
    target ? replay_targets_.Bind(2, *target) : replay_targets_.BindNull(2);
    try {
        while (replay_targets_.Step()) {
            targets.emplace_back(replay_targets_.Text(0), replay_targets_.Text(1));
        }
    } catch (...) {
        replay_targets_.Reset();
        throw;
    }
    replay_targets_.Reset();
    int64_t marked = 0;
    for (const auto& [id, platform] : targets) {
        int64_t rows = 0;
        if (IsFullListPlatform(platform)) {
            mark_resync_.Bind(1, segment_id).Bind(2, id);
            mark_resync_.Run();
            rows = db_.Changes();
        } else {
            for (Statement* s : {&replay_due_pending_, &replay_revive_dead_}) {
                s->Bind(1, segment_id).Bind(2, id);
                s->Run();
            }
            replay_start_.Bind(1, segment_id).Bind(2, id).Bind(3, text::NowMs());
            replay_start_.Run();
            if (members) {
                rows = *members;
            } else {
                replay_count_.Bind(1, segment_id).Bind(2, id);
                if (replay_count_.Step()) rows = replay_count_.Int(0);
                replay_count_.Reset();
            }
        }
        marked += rows;
        if (per_target != nullptr) per_target->emplace_back(id, rows);
    }
    return marked;
}

void WriteStore::AdvanceReplay(int64_t segment_id, const std::string& target, int64_t generation,
                               const std::string& end_key, bool finished, int64_t retry_at_ms) {
    if (finished) {
        replay_end_.Bind(1, segment_id).Bind(2, target).Bind(3, generation);
        replay_end_.Run();
        return;
    }
    replay_advance_.Bind(1, segment_id)
        .Bind(2, target)
        .Bind(3, generation)
        .Bind(4, end_key)
        .Bind(5, retry_at_ms);
    replay_advance_.Run();
}

void WriteStore::ReplayMissed(int64_t segment_id, const std::string& key,
                              const std::string& target) {
    replay_missed_.Bind(1, segment_id).Bind(2, key).Bind(3, target);
    replay_missed_.Run();
}

int64_t WriteStore::DeleteSegment(int64_t segment_id) {
    // Rare and operator-driven: prepared here.
    for (const char* sql : {"DELETE FROM replays WHERE segment_id = ?1",
                            "DELETE FROM deliveries WHERE segment_id = ?1",
                            // zeros once its deliveries are gone (schema 9's triggers)
                            "DELETE FROM delivery_counts WHERE segment_id = ?1",
                            "DELETE FROM segment_targets WHERE segment_id = ?1"}) {
        Statement s(detail::Access::Handle(db_), sql);
        s.Bind(1, segment_id);
        s.Run();
    }
    Statement members(detail::Access::Handle(db_), "DELETE FROM memberships WHERE segment_id = ?1");
    members.Bind(1, segment_id);
    members.Run();
    int64_t deleted = db_.Changes();
    // what AddMemberCounts kept for it
    Statement counts(detail::Access::Handle(db_),
                     "DELETE FROM segment_counts WHERE segment_id = ?1");
    counts.Bind(1, segment_id);
    counts.Run();
    Statement segment(detail::Access::Handle(db_), "DELETE FROM segments WHERE id = ?1");
    segment.Bind(1, segment_id);
    segment.Run();
    // A cached id must not outlive its segment: the next event creates a new one.
    for (auto it = segment_ids_.begin(); it != segment_ids_.end();) {
        it = it->second == segment_id ? segment_ids_.erase(it) : std::next(it);
    }
    return deleted;
}

int64_t WriteStore::ExcludeAllMembers(int64_t segment_id, int64_t now_ms) {
    // Prepared here, not in the constructor: an operator action, rare.
    Statement deliveries(detail::Access::Handle(db_),
                         "UPDATE deliveries SET pending = (acked IS NOT 0), attempts = 0, "
                         "next_attempt_ms = 0, dead = 0 WHERE segment_id = ?1 AND context_key IN "
                         "(SELECT context_key FROM memberships WHERE segment_id = ?1 "
                         "AND desired = 1)");
    deliveries.Bind(1, segment_id);
    deliveries.Run();
    Statement s(detail::Access::Handle(db_),
                "UPDATE memberships SET desired = 0, version = version + 1, "
                "message_id = 'audsync:segments-delete', event_ms = max(event_ms, ?2), "
                "received_ms = ?2 WHERE segment_id = ?1 AND desired = 1");
    s.Bind(1, segment_id).Bind(2, now_ms);
    s.Run();
    const int64_t changed = db_.Changes();
    AddMemberCounts(db_, segment_id, -changed, changed);
    return changed;
}

void WriteStore::ResumeDestination(const std::string& id, int64_t now_ms,
                                   const std::optional<std::string>& target) {
    // Prepared here, not in the constructor: an operator action, rare.
    Statement targets(detail::Access::Handle(db_),
                      "UPDATE targets SET status = 'ok', paused_until_ms = 0, last_error = NULL "
                      "WHERE destination = ?1 AND (?2 IS NULL OR id = ?2)");
    targets.Bind(1, id);
    target ? targets.Bind(2, *target) : targets.BindNull(2);
    targets.Run();
    Statement members(detail::Access::Handle(db_),
                      "UPDATE deliveries SET next_attempt_ms = ?2 WHERE pending = 1 "
                      "AND dead = 0 AND next_attempt_ms > ?2 AND (?3 IS NULL OR target = ?3) "
                      "AND segment_id IN (SELECT id FROM segments WHERE destination = ?1)");
    members.Bind(1, id).Bind(2, now_ms);
    target ? members.Bind(3, *target) : members.BindNull(3);
    members.Run();
}

SyncReader::SyncReader(Database& db)
    : db_(db),
      due_(detail::Access::Handle(db),
           "SELECT s.id, s.destination, s.audience_id, s.audience_key, s.context_kind, t.id "
           "FROM targets t JOIN segments s ON s.destination = t.destination "
           "WHERE t.active = 1 AND (EXISTS (SELECT 1 FROM deliveries d INDEXED BY deliveries_due "
           "WHERE d.target = t.id AND d.segment_id = s.id AND d.pending = 1 AND d.dead = 0 "
           "AND d.next_attempt_ms <= ?1) OR EXISTS (SELECT 1 FROM replays r "
           "WHERE r.segment_id = s.id AND r.target = t.id AND r.next_attempt_ms <= ?1)) "
           "ORDER BY s.id, t.id"),
      dirty_(
          detail::Access::Handle(db),
          "SELECT d.context_key, m.desired, m.version, d.attempts, m.message_id FROM deliveries d "
          "INDEXED BY deliveries_due JOIN memberships m ON m.segment_id = d.segment_id "
          "AND m.context_key = d.context_key WHERE d.target = ?2 AND d.segment_id = ?1 "
          "AND d.pending = 1 AND d.dead = 0 AND d.next_attempt_ms <= ?3 LIMIT ?4"),
      included_(detail::Access::Handle(db),
                "SELECT context_key FROM memberships WHERE segment_id = ?1 AND desired = 1 "
                "ORDER BY context_key LIMIT ?2"),
      next_(detail::Access::Handle(db),
            // Per active target and segment of its destination, on deliveries_due: a
            // seek each (schema 8 dropped an index of every pending delivery by time).
            "SELECT min(x) FROM (SELECT (SELECT min(d.next_attempt_ms) FROM deliveries d "
            "INDEXED BY deliveries_due WHERE d.target = t.id AND d.segment_id = s.id "
            "AND d.pending = 1 AND d.dead = 0 AND d.next_attempt_ms > ?1) AS x FROM targets t "
            "JOIN segments s ON s.destination = t.destination WHERE t.active = 1 "
            "UNION ALL SELECT min(next_attempt_ms) FROM replays WHERE next_attempt_ms > ?1)"),
      pauses_(detail::Access::Handle(db),
              "SELECT destination, id, paused_until_ms FROM targets WHERE active = 1"),
      replay_cursor_(detail::Access::Handle(db),
                     "SELECT after_key, generation FROM replays WHERE segment_id = ?1 "
                     "AND target = ?2 AND next_attempt_ms <= ?3"),
      // One pass over the deliveries' primary key: a member the target holds has
      // acked = desired (pending = 0), so the memberships table is not read. Its
      // acknowledged version stands for the version (a replay reports nothing).
      replay_range_(detail::Access::Handle(db),
                    "SELECT context_key, acked, acked_version FROM deliveries "
                    "WHERE segment_id = ?1 AND context_key > ?3 AND target = ?2 "
                    "AND pending = 0 AND dead = 0 ORDER BY context_key LIMIT ?4") {}

std::vector<DueSegment> SyncReader::DueSegments(int64_t now_ms) {
    std::vector<DueSegment> out;
    due_.Bind(1, now_ms);
    try {
        while (due_.Step()) {
            out.push_back({due_.Int(0), due_.Text(1), due_.Text(2), due_.Text(3), due_.Text(4),
                           due_.Text(5)});
        }
    } catch (...) {
        due_.Reset();
        throw;
    }
    due_.Reset();
    return out;
}

std::vector<DirtyMember> SyncReader::Dirty(int64_t segment_id, const std::string& target,
                                           int64_t now_ms, int limit) {
    std::vector<DirtyMember> out;
    dirty_.Bind(1, segment_id).Bind(2, target).Bind(3, now_ms).Bind(4, int64_t{limit});
    try {
        while (dirty_.Step()) {
            out.push_back({dirty_.Text(0), dirty_.Int(1) != 0, dirty_.Int(2),
                           static_cast<int>(dirty_.Int(3)), dirty_.Text(4)});
        }
    } catch (...) {
        dirty_.Reset();
        throw;
    }
    dirty_.Reset();
    return out;
}

std::optional<ReplayRange> SyncReader::Replay(int64_t segment_id, const std::string& target,
                                              int64_t now_ms, int limit) {
    replay_cursor_.Bind(1, segment_id).Bind(2, target).Bind(3, now_ms);
    std::optional<ReplayRange> out;
    std::string after;
    if (replay_cursor_.Step()) {
        out.emplace();
        after = replay_cursor_.Text(0);
        out->generation = replay_cursor_.Int(1);
    }
    replay_cursor_.Reset();
    if (!out) return out;
    out->after = after;
    replay_range_.Bind(1, segment_id).Bind(2, target).Bind(3, after).Bind(4, int64_t{limit});
    try {
        while (replay_range_.Step()) {
            DirtyMember m;
            m.context_key = replay_range_.Text(0);
            m.desired = replay_range_.Int(1) != 0;
            m.version = replay_range_.IsNull(2) ? 0 : replay_range_.Int(2);
            m.replay = true;
            out->members.push_back(std::move(m));
        }
    } catch (...) {
        replay_range_.Reset();
        throw;
    }
    replay_range_.Reset();
    out->last = out->members.size() < static_cast<size_t>(limit);
    return out;
}

std::optional<int64_t> SyncReader::NextAttemptAfter(int64_t now_ms) {
    next_.Bind(1, now_ms);
    std::optional<int64_t> out;
    if (next_.Step() && !next_.IsNull(0)) out = next_.Int(0);
    next_.Reset();
    return out;
}

std::vector<std::string> SyncReader::Included(int64_t segment_id, int limit) {
    std::vector<std::string> out;
    included_.Bind(1, segment_id).Bind(2, int64_t{limit});
    try {
        while (included_.Step()) out.push_back(included_.Text(0));
    } catch (...) {
        included_.Reset();
        throw;
    }
    included_.Reset();
    return out;
}

int64_t SyncReader::CountIncluded(int64_t segment_id) {
    // Schema 10's count, one row. A full list is read right after; a change between the
    // two is pushed next round.
    Statement s(detail::Access::Handle(db_),
                "SELECT included FROM segment_counts WHERE segment_id = ?1");
    s.Bind(1, segment_id);
    return s.Step() ? s.Int(0) : 0;
}

std::map<std::string, int64_t> SyncReader::TargetPauses() {
    std::map<std::string, int64_t> out;
    while (pauses_.Step()) out[TargetKey(pauses_.Text(0), pauses_.Text(1))] = pauses_.Int(2);
    pauses_.Reset();
    return out;
}

namespace {

Audience ReadAudience(Statement& s) {
    Audience a;
    a.destination = s.Text(0);
    a.external_id = s.Text(1);
    a.name = s.Text(2);
    a.extras = s.Text(3);
    if (!s.IsNull(4)) a.context_kind = s.Text(4);
    return a;
}

}  // namespace

std::vector<Audience> LoadAudiences(Database& db) {
    Statement s(detail::Access::Handle(db),
                "SELECT destination, external_id, name, extras, context_kind FROM audiences");
    std::vector<Audience> out;
    while (s.Step()) out.push_back(ReadAudience(s));
    return out;
}

std::optional<Membership> FindMembership(Database& db, const std::string& destination,
                                         const std::string& audience_id,
                                         const std::string& context_kind,
                                         const std::string& context_key) {
    Statement s(detail::Access::Handle(db),
                "SELECT m.segment_id, m.context_key, m.desired, m.version, m.message_id, "
                "m.event_ms, m.received_ms FROM memberships m JOIN segments s ON "
                "s.id = m.segment_id WHERE s.destination = ?1 AND s.audience_id = ?2 AND "
                "s.context_kind = ?3 AND m.context_key = ?4");
    s.Bind(1, destination).Bind(2, audience_id).Bind(3, context_kind).Bind(4, context_key);
    if (!s.Step()) return std::nullopt;
    Membership m;
    m.segment_id = s.Int(0);
    m.context_key = s.Text(1);
    m.desired = s.Int(2) != 0;
    m.version = s.Int(3);
    m.message_id = s.Text(4);
    m.event_ms = s.Int(5);
    m.received_ms = s.Int(6);
    Statement acks(detail::Access::Handle(db),
                   "SELECT d.target, d.acked FROM deliveries d JOIN targets t ON t.id = d.target "
                   "AND t.destination = ?1 AND t.active = 1 WHERE d.segment_id = ?2 "
                   "AND d.context_key = ?3");
    acks.Bind(1, destination).Bind(2, m.segment_id).Bind(3, context_key);
    bool all_same = true;
    std::optional<bool> common;
    bool first = true;
    while (acks.Step()) {
        std::optional<bool> a;
        if (!acks.IsNull(1)) a = acks.Int(1) != 0;
        m.acked_by_target[acks.Text(0)] = a;
        if (first) {
            common = a;
            first = false;
        } else if (a != common) {
            all_same = false;
        }
    }
    if (all_same) m.acked = common;
    return m;
}

bool HasEvent(Database& db, const std::string& destination, const std::string& message_id) {
    Statement s(detail::Access::Handle(db), "SELECT 1 FROM dedupe WHERE hash = ?1");
    s.Bind(1, DedupeKey(destination, message_id));
    return s.Step();
}

namespace {
// One predicate for the count and the repair, so they always agree.
constexpr const char* kFutureDated = "event_ms - received_ms > ?1";
}  // namespace

int64_t CountFutureDated(Database& db, int64_t skew_ms) {
    Statement s(detail::Access::Handle(db),
                std::string("SELECT count(*) FROM memberships WHERE ") + kFutureDated);
    s.Bind(1, skew_ms);
    return s.Step() ? s.Int(0) : 0;
}

int64_t WriteStore::RepairFutureTimes(int64_t skew_ms) {
    // Rare and operator-driven: prepared here rather than with every WriteStore.
    Statement s(detail::Access::Handle(db_),
                std::string("UPDATE memberships SET event_ms = received_ms WHERE ") + kFutureDated);
    s.Bind(1, skew_ms);
    s.Run();
    return db_.Changes();
}

}  // namespace audsync::store
