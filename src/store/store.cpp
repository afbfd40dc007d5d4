#include "audsync/store/store.hpp"

#include "audsync/common/crypto.hpp"

namespace audsync::store {

WriteStore::WriteStore(Database& db)
    : db_(db),
      ensure_destination_(db.handle(),
                          "INSERT INTO destinations (id, created_ms) VALUES (?1, ?2) "
                          "ON CONFLICT (id) DO NOTHING"),
      insert_event_(db.handle(),
                    "INSERT INTO events (destination, message_id, received_ms, event_ms, "
                    "outcome, segment_id, context_key, raw) "
                    "VALUES (?1, ?2, ?3, ?4, 'accepted', ?5, ?6, ?7) "
                    "ON CONFLICT (destination, message_id) DO NOTHING"),
      mark_stale_(db.handle(), "UPDATE events SET outcome = 'stale' WHERE rowid = ?1"),
      upsert_segment_(db.handle(),
                      "INSERT INTO segments (destination, audience_id, audience_key, "
                      "context_kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
                      "ON CONFLICT (destination, audience_id, context_kind) "
                      "DO UPDATE SET audience_key = excluded.audience_key RETURNING id"),
      // The WHERE makes the upsert a no-op for an older event (last writer wins by
      // event time); version moves only when the desired state changes.
      upsert_membership_(db.handle(),
                         "INSERT INTO memberships (segment_id, context_key, desired, version, "
                         "message_id, event_ms, received_ms) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6) "
                         "ON CONFLICT (segment_id, context_key) DO UPDATE SET "
                         "version = version + (desired IS NOT excluded.desired), "
                         "desired = excluded.desired, message_id = excluded.message_id, "
                         "event_ms = excluded.event_ms, received_ms = excluded.received_ms "
                         "WHERE excluded.event_ms >= memberships.event_ms"),
      find_audience_by_name_(db.handle(),
                             "SELECT external_id FROM audiences WHERE destination = ?1 AND "
                             "name = ?2"),
      update_audience_(db.handle(),
                       "UPDATE audiences SET extras = ?3, context_kind = ?4 "
                       "WHERE destination = ?1 AND external_id = ?2"),
      insert_audience_(db.handle(),
                       "INSERT INTO audiences (destination, external_id, name, extras, "
                       "context_kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
      prune_events_(db.handle(), "DELETE FROM events WHERE received_ms < ?1") {}

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
    Statement s(db.handle(),
                "SELECT destination, external_id, name, extras, context_kind FROM audiences");
    std::vector<Audience> out;
    while (s.Step()) out.push_back(ReadAudience(s));
    return out;
}

std::optional<Audience> FindAudience(Database& db, const std::string& destination,
                                     const std::string& external_id) {
    Statement s(db.handle(),
                "SELECT destination, external_id, name, extras, context_kind FROM audiences "
                "WHERE destination = ?1 AND external_id = ?2");
    s.Bind(1, destination).Bind(2, external_id);
    if (!s.Step()) return std::nullopt;
    return ReadAudience(s);
}

std::optional<Membership> FindMembership(Database& db, const std::string& destination,
                                         const std::string& audience_id,
                                         const std::string& context_kind,
                                         const std::string& context_key) {
    Statement s(db.handle(),
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

int64_t CountEvents(Database& db, const std::string& destination) {
    Statement s(db.handle(), "SELECT count(*) FROM events WHERE destination = ?1");
    s.Bind(1, destination);
    s.Step();
    return s.Int(0);
}

bool HasEvent(Database& db, const std::string& destination, const std::string& message_id) {
    Statement s(db.handle(), "SELECT 1 FROM events WHERE destination = ?1 AND message_id = ?2");
    s.Bind(1, destination).Bind(2, message_id);
    return s.Step();
}

}  // namespace audsync::store
