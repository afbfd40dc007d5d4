// WriteStore's prepared writes, the sync engine's reads and the read helpers.
#include "audsync/store/store.hpp"

#include "access.hpp"
#include "audsync/common/crypto.hpp"

namespace audsync::store {

WriteStore::WriteStore(Database& db)
    : db_(db),
      ensure_destination_(detail::Access::Handle(db),
                          "INSERT INTO destinations (id, created_ms) VALUES (?1, ?2) "
                          "ON CONFLICT (id) DO NOTHING"),
      insert_event_(detail::Access::Handle(db),
                    "INSERT INTO events (destination, message_id, received_ms, event_ms, "
                    "outcome, segment_id, context_key, raw) "
                    "VALUES (?1, ?2, ?3, ?4, 'accepted', ?5, ?6, ?7) "
                    "ON CONFLICT (destination, message_id) DO NOTHING"),
      mark_stale_(detail::Access::Handle(db),
                  "UPDATE events SET outcome = 'stale' WHERE rowid = ?1"),
      upsert_segment_(detail::Access::Handle(db),
                      "INSERT INTO segments (destination, audience_id, audience_key, "
                      "context_kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
                      "ON CONFLICT (destination, audience_id, context_kind) "
                      "DO UPDATE SET audience_key = excluded.audience_key RETURNING id"),
      // The WHERE makes the upsert a no-op for an older event (last writer wins by
      // event time); version moves only when the desired state changes.
      upsert_membership_(detail::Access::Handle(db),
                         "INSERT INTO memberships (segment_id, context_key, desired, version, "
                         "message_id, event_ms, received_ms) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6) "
                         "ON CONFLICT (segment_id, context_key) DO UPDATE SET "
                         "version = version + (desired IS NOT excluded.desired), "
                         "desired = excluded.desired, message_id = excluded.message_id, "
                         "event_ms = excluded.event_ms, received_ms = excluded.received_ms, "
                         // A dead letter is about one refused state: a new state retries.
                         "dead = CASE WHEN desired IS NOT excluded.desired THEN 0 ELSE dead END "
                         "WHERE excluded.event_ms >= memberships.event_ms"),
      find_audience_by_name_(detail::Access::Handle(db),
                             "SELECT external_id FROM audiences WHERE destination = ?1 AND "
                             "name = ?2"),
      update_audience_(detail::Access::Handle(db),
                       "UPDATE audiences SET extras = ?3, context_kind = ?4 "
                       "WHERE destination = ?1 AND external_id = ?2"),
      insert_audience_(detail::Access::Handle(db),
                       "INSERT INTO audiences (destination, external_id, name, extras, "
                       "context_kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
      prune_events_(detail::Access::Handle(db), "DELETE FROM events WHERE received_ms < ?1"),
      record_ack_(detail::Access::Handle(db),
                  "UPDATE memberships SET acked = ?3, acked_version = ?4, last_status = ?5, "
                  "last_push_ms = ?6, last_error = NULL, "
                  "attempts = CASE WHEN version = ?4 THEN 0 ELSE attempts END, "
                  "next_attempt_ms = CASE WHEN version = ?4 THEN 0 ELSE next_attempt_ms END "
                  "WHERE segment_id = ?1 AND context_key = ?2 "
                  "AND (acked_version IS NULL OR acked_version <= ?4)"),
      record_retry_(detail::Access::Handle(db),
                    "UPDATE memberships SET attempts = attempts + 1, next_attempt_ms = ?3, "
                    "last_status = ?4, last_error = ?5, last_push_ms = ?6 "
                    "WHERE segment_id = ?1 AND context_key = ?2"),
      record_dead_(detail::Access::Handle(db),
                   "UPDATE memberships SET dead = (version = ?3), attempts = attempts + 1, "
                   "last_status = ?4, last_error = ?5, last_push_ms = ?6 "
                   "WHERE segment_id = ?1 AND context_key = ?2"),
      destination_ok_(detail::Access::Handle(db),
                      "UPDATE destinations SET status = 'ok', paused_until_ms = ?2, "
                      "last_error = NULL, last_success_ms = ?3 WHERE id = ?1"),
      destination_failed_(detail::Access::Handle(db),
                          "UPDATE destinations SET status = ?2, paused_until_ms = ?3, "
                          "last_error = ?4 WHERE id = ?1"),
      // Operator writes: by primary key for one member, on the dead-letter index for
      // a whole segment.
      retry_dead_key_(detail::Access::Handle(db),
                      "UPDATE memberships SET dead = 0, attempts = 0, next_attempt_ms = 0 "
                      "WHERE segment_id = ?1 AND context_key = ?2 AND dead = 1"),
      retry_dead_segment_(detail::Access::Handle(db),
                          "UPDATE memberships SET dead = 0, attempts = 0, next_attempt_ms = 0 "
                          "WHERE segment_id = ?1 AND dead = 1"),
      discard_dead_key_(detail::Access::Handle(db),
                        "UPDATE memberships SET dead = 0, acked = desired, "
                        "acked_version = version, attempts = 0, next_attempt_ms = 0, "
                        "last_error = 'discarded by an operator: ' || coalesce(last_error, '') "
                        "WHERE segment_id = ?1 AND context_key = ?2 AND dead = 1"),
      discard_dead_segment_(detail::Access::Handle(db),
                            "UPDATE memberships SET dead = 0, acked = desired, "
                            "acked_version = version, attempts = 0, next_attempt_ms = 0, "
                            "last_error = 'discarded by an operator: ' || "
                            "coalesce(last_error, '') WHERE segment_id = ?1 AND dead = 1"),
      mark_resync_(detail::Access::Handle(db),
                   "UPDATE memberships SET acked = NULL, acked_version = NULL, attempts = 0, "
                   "next_attempt_ms = 0, dead = 0 WHERE segment_id = ?1"),
      delete_members_(detail::Access::Handle(db), "DELETE FROM memberships WHERE segment_id = ?1"),
      delete_segment_(detail::Access::Handle(db), "DELETE FROM segments WHERE id = ?1") {}

void WriteStore::EnsureDestination(const std::string& id, int64_t now_ms) {
    ensure_destination_.Bind(1, id).Bind(2, now_ms);
    ensure_destination_.Run();
}

int64_t WriteStore::SegmentId(const std::string& destination,
                              const mapping::MembershipChange& change, int64_t now_ms) {
    auto key = std::make_tuple(destination, change.audience_id, change.context_kind);
    auto it = segment_ids_.find(key);
    if (it != segment_ids_.end()) return it->second;
    upsert_segment_.Bind(1, destination)
        .Bind(2, change.audience_id)
        .Bind(3, change.audience_key)
        .Bind(4, change.context_kind)
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

ApplyOutcome WriteStore::Apply(const std::string& destination, const std::string& message_id,
                               const mapping::MembershipChange& change, const std::string& raw,
                               int64_t received_ms) {
    int64_t segment_id = SegmentId(destination, change, received_ms);
    insert_event_.Bind(1, destination)
        .Bind(2, message_id)
        .Bind(3, received_ms)
        .Bind(4, change.event_time_ms)
        .Bind(5, segment_id)
        .Bind(6, change.context_key)
        .Bind(7, raw);
    insert_event_.Run();
    if (db_.Changes() == 0) return ApplyOutcome::kDuplicate;
    int64_t event_row = db_.LastInsertRowid();
    upsert_membership_.Bind(1, segment_id)
        .Bind(2, change.context_key)
        .Bind(3, static_cast<int64_t>(change.included ? 1 : 0))
        .Bind(4, message_id)
        .Bind(5, change.event_time_ms)
        .Bind(6, received_ms);
    upsert_membership_.Run();
    if (db_.Changes() == 0) {
        mark_stale_.Bind(1, event_row);
        mark_stale_.Run();
        return ApplyOutcome::kStale;
    }
    return ApplyOutcome::kAccepted;
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

int64_t WriteStore::PruneEvents(int64_t before_ms) {
    prune_events_.Bind(1, before_ms);
    prune_events_.Run();
    return db_.Changes();
}

void WriteStore::RecordAck(int64_t segment_id, const std::string& key, bool pushed, int64_t version,
                           int status, int64_t now_ms) {
    record_ack_.Bind(1, segment_id)
        .Bind(2, key)
        .Bind(3, int64_t{pushed ? 1 : 0})
        .Bind(4, version)
        .Bind(5, int64_t{status})
        .Bind(6, now_ms);
    record_ack_.Run();
}

void WriteStore::RecordRetry(int64_t segment_id, const std::string& key, int64_t next_attempt_ms,
                             int status, const std::string& error, int64_t now_ms) {
    record_retry_.Bind(1, segment_id)
        .Bind(2, key)
        .Bind(3, next_attempt_ms)
        .Bind(4, int64_t{status})
        .Bind(5, error)
        .Bind(6, now_ms);
    record_retry_.Run();
}

void WriteStore::RecordDead(int64_t segment_id, const std::string& key, int64_t version, int status,
                            const std::string& error, int64_t now_ms) {
    record_dead_.Bind(1, segment_id)
        .Bind(2, key)
        .Bind(3, version)
        .Bind(4, int64_t{status})
        .Bind(5, error)
        .Bind(6, now_ms);
    record_dead_.Run();
}

void WriteStore::SetDestinationState(const std::string& id, const std::string& status,
                                     int64_t paused_until_ms,
                                     const std::optional<std::string>& error,
                                     std::optional<int64_t> success_ms) {
    if (status == "ok") {
        destination_ok_.Bind(1, id).Bind(2, paused_until_ms);
        success_ms ? destination_ok_.Bind(3, *success_ms) : destination_ok_.BindNull(3);
        destination_ok_.Run();
        return;
    }
    destination_failed_.Bind(1, id).Bind(2, status).Bind(3, paused_until_ms);
    error ? destination_failed_.Bind(4, *error) : destination_failed_.BindNull(4);
    destination_failed_.Run();
}

namespace {

// Runs `keyed` (?1 segment, ?2 key) for one member, or `whole` (?1 segment) for all.
int64_t RunForMembers(Database& db, Statement& keyed, Statement& whole, int64_t segment_id,
                      const std::optional<std::string>& key) {
    if (key) {
        keyed.Bind(1, segment_id).Bind(2, *key);
        keyed.Run();
    } else {
        whole.Bind(1, segment_id);
        whole.Run();
    }
    return db.Changes();
}

}  // namespace

int64_t WriteStore::RetryDeadLetter(int64_t segment_id, const std::optional<std::string>& key) {
    return RunForMembers(db_, retry_dead_key_, retry_dead_segment_, segment_id, key);
}

int64_t WriteStore::DiscardDeadLetter(int64_t segment_id, const std::optional<std::string>& key) {
    return RunForMembers(db_, discard_dead_key_, discard_dead_segment_, segment_id, key);
}

int64_t WriteStore::MarkForResync(int64_t segment_id) {
    mark_resync_.Bind(1, segment_id);
    mark_resync_.Run();
    return db_.Changes();
}

int64_t WriteStore::DeleteSegment(int64_t segment_id) {
    delete_members_.Bind(1, segment_id);
    delete_members_.Run();
    int64_t members = db_.Changes();
    delete_segment_.Bind(1, segment_id);
    delete_segment_.Run();
    // A cached id must not outlive its segment: the next event creates a new one.
    for (auto it = segment_ids_.begin(); it != segment_ids_.end();) {
        it = it->second == segment_id ? segment_ids_.erase(it) : std::next(it);
    }
    return members;
}

int64_t WriteStore::ExcludeAllMembers(int64_t segment_id, int64_t now_ms) {
    // Prepared here, not in the constructor: an operator action, rare.
    Statement s(detail::Access::Handle(db_),
                "UPDATE memberships SET desired = 0, version = version + 1, "
                "message_id = 'audsync:segments-delete', event_ms = max(event_ms, ?2), "
                "received_ms = ?2, attempts = 0, next_attempt_ms = 0, dead = 0 "
                "WHERE segment_id = ?1 AND desired = 1");
    s.Bind(1, segment_id).Bind(2, now_ms);
    s.Run();
    return db_.Changes();
}

void WriteStore::ResumeDestination(const std::string& id, int64_t now_ms) {
    // Prepared here, not in the constructor: an operator action, rare.
    Statement destination(detail::Access::Handle(db_),
                          "UPDATE destinations SET status = 'ok', paused_until_ms = 0, "
                          "last_error = NULL WHERE id = ?1");
    destination.Bind(1, id);
    destination.Run();
    Statement members(detail::Access::Handle(db_),
                      "UPDATE memberships SET next_attempt_ms = ?2 WHERE acked IS NOT desired "
                      "AND dead = 0 AND next_attempt_ms > ?2 AND segment_id IN "
                      "(SELECT id FROM segments WHERE destination = ?1)");
    members.Bind(1, id).Bind(2, now_ms);
    members.Run();
}

SyncReader::SyncReader(Database& db)
    : due_(detail::Access::Handle(db),
           "SELECT s.id, s.destination, s.audience_id, s.audience_key, s.context_kind "
           "FROM segments s WHERE EXISTS (SELECT 1 FROM memberships m WHERE m.segment_id = s.id "
           "AND m.acked IS NOT m.desired AND m.dead = 0 AND m.next_attempt_ms <= ?1) "
           "ORDER BY s.id"),
      dirty_(detail::Access::Handle(db),
             "SELECT context_key, desired, version, attempts FROM memberships "
             "WHERE segment_id = ?1 AND acked IS NOT desired AND dead = 0 "
             "AND next_attempt_ms <= ?2 LIMIT ?3"),
      next_(detail::Access::Handle(db),
            "SELECT min(next_attempt_ms) FROM memberships INDEXED BY memberships_next_attempt "
            "WHERE acked IS NOT desired AND dead = 0 AND next_attempt_ms > ?1"),
      pauses_(detail::Access::Handle(db), "SELECT id, paused_until_ms FROM destinations") {}

std::vector<DueSegment> SyncReader::DueSegments(int64_t now_ms) {
    std::vector<DueSegment> out;
    due_.Bind(1, now_ms);
    try {
        while (due_.Step()) {
            out.push_back({due_.Int(0), due_.Text(1), due_.Text(2), due_.Text(3), due_.Text(4)});
        }
    } catch (...) {
        due_.Reset();
        throw;
    }
    due_.Reset();
    return out;
}

std::vector<DirtyMember> SyncReader::Dirty(int64_t segment_id, int64_t now_ms, int limit) {
    std::vector<DirtyMember> out;
    dirty_.Bind(1, segment_id).Bind(2, now_ms).Bind(3, int64_t{limit});
    try {
        while (dirty_.Step()) {
            out.push_back({dirty_.Text(0), dirty_.Int(1) != 0, dirty_.Int(2),
                           static_cast<int>(dirty_.Int(3))});
        }
    } catch (...) {
        dirty_.Reset();
        throw;
    }
    dirty_.Reset();
    return out;
}

std::optional<int64_t> SyncReader::NextAttemptAfter(int64_t now_ms) {
    next_.Bind(1, now_ms);
    std::optional<int64_t> out;
    if (next_.Step() && !next_.IsNull(0)) out = next_.Int(0);
    next_.Reset();
    return out;
}

std::map<std::string, int64_t> SyncReader::DestinationPauses() {
    std::map<std::string, int64_t> out;
    while (pauses_.Step()) out[pauses_.Text(0)] = pauses_.Int(1);
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
                "m.event_ms, m.received_ms, m.acked FROM memberships m JOIN segments s ON "
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
    if (!s.IsNull(7)) m.acked = s.Int(7) != 0;
    return m;
}

bool HasEvent(Database& db, const std::string& destination, const std::string& message_id) {
    Statement s(detail::Access::Handle(db),
                "SELECT 1 FROM events WHERE destination = ?1 AND message_id = ?2");
    s.Bind(1, destination).Bind(2, message_id);
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
