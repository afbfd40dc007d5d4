// The store's writes (WriteStore), the sync engine's reads, and read helpers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "audsync/mapping/mapping.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/reports.hpp"

namespace audsync::store {

enum class ApplyOutcome { kAccepted, kDuplicate, kStale };

// What one Fold decided.
struct FoldCounts {
    int64_t accepted = 0;
    int64_t duplicates = 0;
    int64_t stale = 0;
};

// A batch of inbox rows prepared for folding in parts (WriteStore::PlanFold): which
// rows are duplicates within the batch, the rest in hash order for the window check
// (Dedupe), and every row in member order for the memberships (FoldMembers). Each part
// is its own transaction's work: a fold of a large batch writes each page of each table
// once, and no transaction more than its WAL share.
//
// The plan keeps its own compact copy of the rows (about 70 bytes each plus the message
// id and the key, against some 300 as InboxEntry): the larger a batch, the more events
// share each page, and a plan of a few hundred thousand rows must fit the memory bound.
// Build it with Add (rows in seq order, in as many calls as suits the reader) and Finish.
struct FoldPlan {
    // A segment as rows name it. Rows of one store segment (destination, audience_id,
    // context_kind) that carry different audience keys have different entries here and
    // the same rank.
    struct Segment {
        std::string destination;
        std::string audience_id;
        std::string audience_key;
        std::string context_kind;
    };
    struct Row {
        int64_t seq = 0;
        int64_t received_ms = 0;
        int64_t event_ms = 0;
        int64_t hash = 0;      // its (destination, message_id) key
        uint64_t text = 0;     // offset of its message id, then its key, in `text`
        uint32_t id_size = 0;  // bytes of its message id
        uint32_t key_size = 0;
        uint32_t segment = 0;  // index into `segments`
        bool included = false;
    };

    void Add(const std::vector<InboxEntry>& rows);
    // De-duplication within the batch and the two orders; after the last Add.
    void Finish();
    size_t size() const { return rows.size(); }
    std::string_view MessageId(const Row& r) const { return {text.data() + r.text, r.id_size}; }
    std::string_view Key(const Row& r) const {
        return {text.data() + r.text + r.id_size, r.key_size};
    }
    // The end of the member whose events start at order[at] (at < order.size()).
    size_t MemberEnd(size_t at) const;

    std::vector<Row> rows;
    std::string text;
    std::vector<Segment> segments;
    std::vector<char> duplicate;   // per row: decided a duplicate so far
    std::vector<uint32_t> checks;  // rows to check against the window, in hash order
    std::vector<uint32_t> order;   // every row, by member (segment, key), then arrival
    size_t checked = 0;            // checks done (Dedupe)
    size_t folded = 0;             // entries of `order` folded (FoldMembers)

  private:
    // Per segment: its rank in (destination, audience_id, context_kind) order (Finish);
    // equal ranks name one segment of the store.
    std::vector<uint32_t> rank_;
    std::map<std::tuple<std::string, std::string, std::string, std::string>, uint32_t> index_;
};

// The applier's position and the fold in progress past it (schema 11): the rows up to
// `fold_end` after `applied_seq` are being folded in parts, and the first `folded` of
// their member order (FoldPlan::order) are committed. fold_end = 0: none.
struct FoldProgress {
    int64_t applied_seq = 0;
    int64_t fold_end = 0;
    int64_t folded = 0;
};

// An audience registered through Webhook Audiences' createAudienceUrl.
struct Audience {
    std::string destination;
    std::string external_id;
    std::string name;
    std::string extras;  // JSON object
    std::optional<std::string> context_kind;
};

// A target as the store knows it: its id (unique within its destination) and platform.
struct TargetRef {
    std::string id;
    std::string platform;
};

// The implicit target of a destination made before targets existed, and of the flat
// LaunchDarkly fields.
inline const std::vector<TargetRef>& ImplicitTargets() {
    static const std::vector<TargetRef> targets = {{"launchdarkly", "launchdarkly"}};
    return targets;
}

// One membership row, as stored, with what its targets acknowledged.
struct Membership {
    int64_t segment_id = 0;
    std::string context_key;
    bool desired = false;
    int64_t version = 0;
    std::string message_id;
    int64_t event_ms = 0;
    int64_t received_ms = 0;
    // The state every active target acknowledged, when they all hold the same one;
    // nullopt when one has acknowledged nothing or they differ.
    std::optional<bool> acked;
    std::map<std::string, std::optional<bool>> acked_by_target;
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
    // Makes `targets` the destination's active targets. A target new to the database
    // (or configured again after a while without) gets a delivery row per member: the
    // included ones pending, so it receives the whole current membership. Targets of the
    // destination not listed become inactive: their state is kept, nothing is pushed.
    // Returns the members made pending.
    int64_t EnsureTargets(const std::string& destination, const std::vector<TargetRef>& targets,
                          int64_t now_ms);

    // Semantics rules 5-8 over a batch of inbox rows in seq order, written in key order
    // (each page once): de-duplicates on (destination, message_id) within the batch and
    // against the window, applies each change unless an event with a later time decided
    // the current state (equal times: the later arrival wins), bumps the version only
    // when the desired state changes, records the latest ignored event per member, and
    // makes a changed member due at every active target that does not hold it.
    FoldCounts Fold(const std::vector<InboxEntry>& rows);
    // The same in parts, each in its own transaction: PlanFold (no writes), Dedupe over
    // the checks up to `end`, then, once every check is done, FoldMembers over the
    // member order up to `end` (extended to the end of a member: a member's events are
    // folded together). Checking again a row whose window entry this same inbox row
    // wrote (a part committed before a crash) finds it not a duplicate, so Dedupe may
    // run again over checks already committed; FoldMembers may not (see FoldProgress).
    static FoldPlan PlanFold(const std::vector<InboxEntry>& rows);  // Add and Finish
    void Dedupe(FoldPlan& plan, size_t end);
    FoldCounts FoldMembers(FoldPlan& plan, size_t end);
    // One event without the inbox (tests, tools): Fold of a single row.
    ApplyOutcome Apply(const std::string& destination, const std::string& message_id,
                       const mapping::MembershipChange& change, int64_t received_ms);
    // Pages written to the WAL since the last call (see Database::TakePagesWritten).
    int64_t TakePagesWritten() { return db_.TakePagesWritten(); }
    // Inside the writer's transaction: the pages it has spilled so far (see
    // Database::PagesWritten; the writer takes the count at each commit).
    int64_t PagesSpilled() { return db_.PagesWritten(); }
    // The applier's position: every inbox row up to it is folded.
    int64_t AppliedSeq();
    // Moves the position to `seq` and ends the fold in progress.
    void SetAppliedSeq(int64_t seq);
    FoldProgress ReadFoldProgress();
    // A fold of the rows up to `fold_end` in progress, `folded` of its member order done.
    void SetFoldProgress(int64_t fold_end, int64_t folded);

    // Registers (or, for a name already known, updates and returns) an audience.
    std::string UpsertAudience(const std::string& destination, const std::string& name,
                               const std::string& extras,
                               const std::optional<std::string>& context_kind, int64_t now_ms);

    // Deletes the de-duplication entries received before `before_ms` whose key lies in
    // slice `slice` of `slices` equal slices of the 64-bit key space (pruning walks the
    // table a slice at a time, without an index on time); returns how many.
    int64_t PruneDedupe(int64_t before_ms, int slice, int slices);

    // Sync outcomes at one target (semantics rules 11-13). `acked` records what the
    // platform now holds: the pushed state. A member whose desired state moved on
    // meanwhile stays pending; attempts reset only if `version` is current.
    // Returns whether the acknowledgement was recorded (false when the target already
    // holds a later version).
    bool RecordAck(int64_t segment_id, const std::string& key, const std::string& target,
                   bool pushed, int64_t version, int status, int64_t now_ms);
    void RecordRetry(int64_t segment_id, const std::string& key, const std::string& target,
                     int64_t next_attempt_ms, int status, const std::string& error, int64_t now_ms);
    // Dead-letters the member at the target if its state is still the refused `version`.
    void RecordDead(int64_t segment_id, const std::string& key, const std::string& target,
                    int64_t version, int status, const std::string& error, int64_t now_ms);
    // Not sent, without counting as a failed attempt (a list over the platform's limit):
    // due again at `next_attempt_ms`, or at once when the member changes.
    void RecordHeld(int64_t segment_id, const std::string& key, const std::string& target,
                    int64_t next_attempt_ms, const std::string& error, int64_t now_ms);
    // A target's health: status "ok", "rate_limited" or "auth_failed"; `success_ms` set
    // on a successful push.
    void SetTargetState(const std::string& destination, const std::string& target,
                        const std::string& status, int64_t paused_until_ms,
                        const std::optional<std::string>& error, std::optional<int64_t> success_ms);
    // A segment's state at a target: "ok", or "over_limit" / "refused" with the error
    // (and, for over_limit, the platform limit's name).
    void SetSegmentTargetState(int64_t segment_id, const std::string& target,
                               const std::string& status, const std::optional<std::string>& error,
                               const std::optional<std::string>& limit_name, int64_t now_ms);

    // Operator writes; each returns the rows changed. With a key, one member by primary
    // key; without, every dead letter of the segment. With a target, at that target
    // only; without, at every target.
    // Retry: the dead letter becomes due again with its attempts reset.
    int64_t RetryDeadLetter(int64_t segment_id, const std::optional<std::string>& key,
                            const std::optional<std::string>& target = std::nullopt);
    // Discard: recorded as if the platform held the desired state, so it is not pushed.
    int64_t DiscardDeadLetter(int64_t segment_id, const std::optional<std::string>& key,
                              const std::optional<std::string>& target = std::nullopt);
    // Pushes every member of the segment again (at one target or all): returns the
    // delivery rows to push. At a delta platform this starts a replay cursor (the
    // `replays` table) and makes dead letters and pending members due now; at a
    // full-list platform every member is marked as never acknowledged.
    // `members`: the segment's member count if the caller has it (one delivery row per
    // member and target), which saves counting them. `per_target` (optional) receives
    // each target's id and its rows, in target order.
    int64_t MarkForResync(int64_t segment_id,
                          const std::optional<std::string>& target = std::nullopt,
                          std::optional<int64_t> members = std::nullopt,
                          std::vector<std::pair<std::string, int64_t>>* per_target = nullptr);
    // A range of a replay was pushed: members up to `end_key` are done. `finished`: the
    // range was the last one, and the replay ends. `retry_at_ms` > 0: a member of it
    // failed, and the replay waits until then. Does nothing if the replay was started
    // again since generation `generation` was read (the newer one starts from the top).
    void AdvanceReplay(int64_t segment_id, const std::string& target, int64_t generation,
                       const std::string& end_key, bool finished, int64_t retry_at_ms);
    // A replayed member whose push failed: not held at the target any more, so pending
    // like any other (its retry or dead letter is recorded after this).
    void ReplayMissed(int64_t segment_id, const std::string& key, const std::string& target);
    // Forgets the segment, its members, their delivery state and dead letters; returns
    // the members deleted. The de-duplication log keeps its entries (a resent event
    // stays a duplicate); a later event for the audience creates the segment anew.
    int64_t DeleteSegment(int64_t segment_id);
    // Before a delete that empties the platforms: every included member becomes
    // excluded (a new version, decided at `now_ms` by the operator), due at every target
    // at once. Returns the members changed.
    int64_t ExcludeAllMembers(int64_t segment_id, int64_t now_ms);
    // An operator's resume: the destination's targets (or one) back to "ok" with no
    // pause, and their pending, non-dead members due at `now_ms`. Unknown ids change
    // nothing.
    void ResumeDestination(const std::string& id, int64_t now_ms,
                           const std::optional<std::string>& target = std::nullopt);

    // Repair of a poisoned database: every member whose deciding event is dated more
    // than `skew_ms` after it was received gets its receive time as its ordering time
    // (event_ms = received_ms), so that genuine events order against it again. The
    // desired state, version and push bookkeeping are untouched. Returns the members
    // changed. Scans every membership.
    int64_t RepairFutureTimes(int64_t skew_ms);

    // Reports to Segment (reports.hpp). Queue: a change just acknowledged, unless a
    // report with its messageId is already kept. Sent / Dead: the reporter's outcome.
    // Status: the reporter's health for a destination. Retry and discard act on a
    // destination's dead reports and return how many changed. Prune deletes sent and
    // discarded reports done before `before_ms`, at most `limit`, returning how many.
    void QueueReport(const ReportRow& row);
    void MarkReportsSent(const std::vector<int64_t>& ids, int status, int64_t now_ms);
    void MarkReportDead(int64_t id, int status, const std::string& error, int64_t now_ms);
    void SetReportStatus(const std::string& destination, const std::string& status,
                         int64_t paused_until_ms, const std::optional<std::string>& error,
                         std::optional<int64_t> success_ms);
    int64_t RetryDeadReports(const std::string& destination);
    int64_t DiscardDeadReports(const std::string& destination, int64_t now_ms);
    int64_t PruneReports(int64_t before_ms, int limit);

    // Forgets cached ids after a rollback.
    void ForgetCache() {
        segment_ids_.clear();
        targets_.clear();
        destinations_.clear();
    }

  private:
    int64_t SegmentId(const FoldPlan::Segment& segment, int64_t now_ms);
    const std::vector<std::string>& ActiveTargets(const std::string& destination);

    Database& db_;
    Statement ensure_destination_;
    Statement insert_dedupe_;
    Statement upsert_segment_;
    Statement get_membership_;
    Statement put_membership_;
    Statement put_ignored_;
    Statement dedupe_owner_;
    Statement applied_seq_;
    Statement set_applied_seq_;
    Statement fold_progress_;
    Statement set_fold_progress_;
    Statement upsert_delivery_;
    Statement active_targets_;
    Statement find_audience_by_name_;
    Statement update_audience_;
    Statement insert_audience_;
    Statement prune_dedupe_;
    Statement record_ack_;
    Statement queue_report_;
    Statement report_sent_;
    Statement record_retry_;
    Statement record_dead_;
    Statement target_ok_;
    Statement target_failed_;
    Statement segment_target_;
    Statement retry_dead_key_;
    Statement retry_dead_segment_;
    Statement discard_dead_key_;
    Statement discard_dead_segment_;
    Statement mark_resync_;
    Statement replay_targets_;
    Statement replay_due_pending_;
    Statement replay_revive_dead_;
    Statement replay_start_;
    Statement replay_count_;
    Statement replay_advance_;
    Statement replay_end_;
    Statement replay_missed_;
    std::map<std::tuple<std::string, std::string, std::string>, int64_t> segment_ids_;
    std::map<std::string, std::vector<std::string>> targets_;  // active, per destination
    std::set<std::string> destinations_;                       // known to exist
};

// A segment with members due for a push at one target.
struct DueSegment {
    int64_t id = 0;
    std::string destination;
    std::string audience_id;
    std::string audience_key;
    std::string context_kind;
    std::string target;
};

// A member whose desired state the target does not hold.
struct DirtyMember {
    std::string context_key;
    bool desired = false;
    int64_t version = 0;
    int attempts = 0;
    std::string message_id;  // the event that decided `desired` (for reports)
    // Read by a replay: held at the target already, pushed again. An acknowledgement
    // writes nothing for it; a failure makes it pending (WriteStore::ReplayMissed).
    bool replay = false;
};

// The next range of a segment's replay at one target: members held there (pending = 0,
// dead = 0) with keys above the cursor, in key order.
struct ReplayRange {
    int64_t generation = 0;
    std::string after;  // the cursor it was read from
    std::vector<DirtyMember> members;
    bool last = false;  // fewer than asked: nothing is left after these
};

// Platforms that take a segment's whole list in one request (ConfigCat, Unleash): a
// replay marks every member of theirs, and the engine pushes the list.
inline bool IsFullListPlatform(const std::string& platform) {
    return platform == "configcat" || platform == "unleash";
}

// The sync engine's reads, prepared once on the engine's own connection.
// Not thread-safe. Methods throw SqliteError.
class SyncReader {
  public:
    explicit SyncReader(Database& db);
    // (segment, active target) pairs with a member due at `now_ms`, in segment order.
    std::vector<DueSegment> DueSegments(int64_t now_ms);
    std::vector<DirtyMember> Dirty(int64_t segment_id, const std::string& target, int64_t now_ms,
                                   int limit);
    // The included members of a segment in key order, at most `limit` (for full-list
    // platforms), and how many there are in all.
    std::vector<std::string> Included(int64_t segment_id, int limit);
    int64_t CountIncluded(int64_t segment_id);
    // The next range of the segment's replay at `target` (limit members at most), if a
    // replay runs there and is due at `now_ms`.
    std::optional<ReplayRange> Replay(int64_t segment_id, const std::string& target, int64_t now_ms,
                                      int limit);
    // The earliest next attempt of a pending member or a waiting replay after `now_ms`.
    std::optional<int64_t> NextAttemptAfter(int64_t now_ms);
    // Every target's pause, keyed "<destination>/<target>".
    std::map<std::string, int64_t> TargetPauses();

  private:
    Database& db_;
    Statement due_;
    Statement dirty_;
    Statement included_;
    Statement next_;
    Statement pauses_;
    Statement replay_cursor_;
    Statement replay_range_;
};

// "<destination>/<target>": how the engine and the metrics name a target (ids hold no '/').
inline std::string TargetKey(const std::string& destination, const std::string& target) {
    return destination + "/" + target;
}

// Read helpers on a connection of the caller's own (WAL lets them run beside the
// writer). Throw SqliteError.
std::vector<Audience> LoadAudiences(Database& db);
std::optional<Membership> FindMembership(Database& db, const std::string& destination,
                                         const std::string& audience_id,
                                         const std::string& context_kind,
                                         const std::string& context_key);
// Whether an applied event with this messageId is in the de-duplication window.
bool HasEvent(Database& db, const std::string& destination, const std::string& message_id);
// Members whose deciding event is dated more than `skew_ms` after it was received (such
// an event wins against every genuine one until its date): the start-up check for a
// database poisoned before event times were bounded. Scans every membership.
int64_t CountFutureDated(Database& db, int64_t skew_ms);

}  // namespace audsync::store
