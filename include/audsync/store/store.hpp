// The store's writes (WriteStore), the sync engine's reads, and read helpers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "audsync/mapping/mapping.hpp"
#include "audsync/store/database.hpp"

namespace audsync::store {

enum class ApplyOutcome { kAccepted, kDuplicate, kStale };

// An audience registered through Webhook Audiences' createAudienceUrl.
struct Audience {
    std::string destination;
    std::string external_id;
    std::string name;
    std::string extras;  // JSON object
    std::optional<std::string> context_kind;
};

// One membership row, as stored.
struct Membership {
    int64_t segment_id = 0;
    std::string context_key;
    bool desired = false;
    int64_t version = 0;
    std::string message_id;
    int64_t event_ms = 0;
    int64_t received_ms = 0;
    std::optional<bool> acked;
};

// Every write statement, prepared once on the writer's connection. Used only by the
// writer thread inside its transaction (see Writer), or inside WriteDirect's.
// Not thread-safe. Methods throw SqliteError.
class WriteStore {
  public:
    explicit WriteStore(Database& db);
    WriteStore(const WriteStore&) = delete;
    WriteStore& operator=(const WriteStore&) = delete;

    void EnsureDestination(const std::string& id, int64_t now_ms);

    // Semantics rules 5-7: de-duplicates on (destination, message_id), records the
    // event, and applies the change unless an event with a later time decided the
    // current state (equal times: this later arrival wins).
    ApplyOutcome Apply(const std::string& destination, const std::string& message_id,
                       const mapping::MembershipChange& change, const std::string& raw,
                       int64_t received_ms);

    // Registers (or, for a name already known, updates and returns) an audience.
    std::string UpsertAudience(const std::string& destination, const std::string& name,
                               const std::string& extras,
                               const std::optional<std::string>& context_kind, int64_t now_ms);

    // Deletes de-duplication entries received before `before_ms`; returns how many.
    int64_t PruneEvents(int64_t before_ms);

    // Sync outcomes (semantics rules 11-13). `acked` records what the platform now
    // holds: the pushed state. A member whose desired state moved on meanwhile keeps
    // desired != acked and so stays due; attempts reset only if `version` is current.
    void RecordAck(int64_t segment_id, const std::string& key, bool pushed, int64_t version,
                   int status, int64_t now_ms);
    void RecordRetry(int64_t segment_id, const std::string& key, int64_t next_attempt_ms,
                     int status, const std::string& error, int64_t now_ms);
    // Dead-letters the member if its state is still the refused `version`.
    void RecordDead(int64_t segment_id, const std::string& key, int64_t version, int status,
                    const std::string& error, int64_t now_ms);
    // status "ok" or "auth_failed"; `success_ms` set on a successful push.
    void SetDestinationState(const std::string& id, const std::string& status,
                             int64_t paused_until_ms, const std::optional<std::string>& error,
                             std::optional<int64_t> success_ms);

    // Operator writes; each returns the rows changed. With a key, one member by primary
    // key; without, every dead letter of the segment.
    // Retry: the dead letter becomes due again with its attempts reset.
    int64_t RetryDeadLetter(int64_t segment_id, const std::optional<std::string>& key);
    // Discard: recorded as if the platform held the desired state, so it is not pushed.
    int64_t DiscardDeadLetter(int64_t segment_id, const std::optional<std::string>& key);
    // Marks every member of the segment as never acknowledged, so all are pushed again.
    int64_t MarkForResync(int64_t segment_id);
    // Forgets the segment, its members and its dead letters; returns the members deleted.
    // The de-duplication log keeps its entries (a resent event stays a duplicate); a
    // later event for the audience creates the segment anew.
    int64_t DeleteSegment(int64_t segment_id);
    // Before a delete that empties the platform: every included member becomes excluded
    // (a new version, decided at `now_ms` by the operator), due for a push at once.
    // Returns the members changed.
    int64_t ExcludeAllMembers(int64_t segment_id, int64_t now_ms);
    // An operator's resume: the destination back to "ok" with no pause, and its pending,
    // non-dead members due at `now_ms`. Unknown ids change nothing.
    void ResumeDestination(const std::string& id, int64_t now_ms);

    // Repair of a poisoned database: every member whose deciding event is dated more
    // than `skew_ms` after it was received gets its receive time as its ordering time
    // (event_ms = received_ms), so that genuine events order against it again. The
    // desired state, version and push bookkeeping are untouched. Returns the members
    // changed. Scans every membership.
    int64_t RepairFutureTimes(int64_t skew_ms);

    // Forgets cached ids after a rollback.
    void ForgetCache() { segment_ids_.clear(); }

  private:
    int64_t SegmentId(const std::string& destination, const mapping::MembershipChange& change,
                      int64_t now_ms);

    Database& db_;
    Statement ensure_destination_;
    Statement insert_event_;
    Statement mark_stale_;
    Statement upsert_segment_;
    Statement upsert_membership_;
    Statement find_audience_by_name_;
    Statement update_audience_;
    Statement insert_audience_;
    Statement prune_events_;
    Statement record_ack_;
    Statement record_retry_;
    Statement record_dead_;
    Statement destination_ok_;
    Statement destination_failed_;
    Statement retry_dead_key_;
    Statement retry_dead_segment_;
    Statement discard_dead_key_;
    Statement discard_dead_segment_;
    Statement mark_resync_;
    Statement delete_members_;
    Statement delete_segment_;
    std::map<std::tuple<std::string, std::string, std::string>, int64_t> segment_ids_;
};

// A segment with members due for a push.
struct DueSegment {
    int64_t id = 0;
    std::string destination;
    std::string audience_id;
    std::string audience_key;
    std::string context_kind;
};

// A member whose desired state differs from the acknowledged one.
struct DirtyMember {
    std::string context_key;
    bool desired = false;
    int64_t version = 0;
    int attempts = 0;
};

// The sync engine's reads, prepared once on the engine's own connection.
// Not thread-safe. Methods throw SqliteError.
class SyncReader {
  public:
    explicit SyncReader(Database& db);
    std::vector<DueSegment> DueSegments(int64_t now_ms);
    std::vector<DirtyMember> Dirty(int64_t segment_id, int64_t now_ms, int limit);
    // The earliest next attempt of a pending member after `now_ms`, if any.
    std::optional<int64_t> NextAttemptAfter(int64_t now_ms);
    std::map<std::string, int64_t> DestinationPauses();

  private:
    Statement due_;
    Statement dirty_;
    Statement next_;
    Statement pauses_;
};

// Read helpers on a connection of the caller's own (WAL lets them run beside the
// writer). Throw SqliteError.
std::vector<Audience> LoadAudiences(Database& db);
std::optional<Membership> FindMembership(Database& db, const std::string& destination,
                                         const std::string& audience_id,
                                         const std::string& context_kind,
                                         const std::string& context_key);
bool HasEvent(Database& db, const std::string& destination, const std::string& message_id);
// Members whose deciding event is dated more than `skew_ms` after it was received (such
// an event wins against every genuine one until its date): the start-up check for a
// database poisoned before event times were bounded. Scans every membership.
int64_t CountFutureDated(Database& db, int64_t skew_ms);

}  // namespace audsync::store
