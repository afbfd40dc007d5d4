// Read side for operators (REST and CLI): segments, members, dead letters, gauges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "audsync/store/database.hpp"

namespace audsync::store {

// Read side for operators (REST and CLI). Each function runs on the caller's own
// connection; WAL lets it read while the writer writes. Throw SqliteError. Counts over
// many rows (members, pending changes, dead letters) are read in slices of their own
// snapshots (src/store/slices.hpp), so that no scrape or status page holds the WAL.

// A segment at one of its destination's active targets.
struct SegmentTargetSummary {
    std::string target;
    std::string platform;
    std::string target_status;   // the target's health: ok | rate_limited | auth_failed
    std::string segment_status;  // ok | over_limit | refused (about the segment as a whole)
    std::optional<std::string> segment_error;
    std::optional<std::string> limit_name;  // the platform limit of an over_limit list
    int64_t pending = 0;
    int64_t retrying = 0;
    int64_t dead = 0;
    std::optional<int64_t> last_synced_ms;
    std::optional<std::string> last_error;
    std::optional<int64_t> next_retry_ms;
};

struct SegmentSummary {
    int64_t id = 0;
    std::string destination;
    std::string audience_id;
    std::string audience_key;
    std::string context_kind;
    std::string destination_status;  // ok, or the first target's that is not
    int64_t included = 0;
    int64_t excluded = 0;
    // Summed over the targets (a member pending at two targets counts twice).
    int64_t pending = 0;   // the target does not hold the desired state, not dead
    int64_t retrying = 0;  // pending after at least one failed attempt
    int64_t dead = 0;
    std::optional<int64_t> last_synced_ms;  // newest acknowledged push, any target
    std::optional<std::string> last_error;
    std::optional<int64_t> next_retry_ms;
    std::vector<SegmentTargetSummary> targets;
};

struct SegmentFilter {
    std::optional<std::string> destination;
    std::optional<std::string> audience_key;
    std::optional<int64_t> id;
    std::optional<std::string> audience_id;
    std::optional<int64_t> after_id;  // keyset pagination: segments with a larger id
    std::optional<int64_t> limit;     // at most this many
};

std::vector<SegmentSummary> ListSegments(Database& db, const SegmentFilter& filter);

// A member at one target.
struct DeliveryRow {
    std::string target;
    std::optional<bool> acked;
    bool pending = false;
    bool dead = false;
    int64_t attempts = 0;
    int64_t next_attempt_ms = 0;
    std::optional<int64_t> last_status;
    std::optional<int64_t> last_push_ms;
    std::optional<std::string> last_error;
};

// A member, with its state at each active target and, in the fields after `version`
// and `received_ms`, that state folded: acked when every target holds the same,
// pending / dead when any target is, the most attempts, the earliest next attempt, and
// the newest push's answer.
struct MemberRow {
    int64_t segment_id = 0;
    std::string context_key;
    bool desired = false;
    std::optional<bool> acked;
    bool dead = false;
    int64_t version = 0;
    std::string message_id;
    int64_t event_ms = 0;
    int64_t received_ms = 0;
    std::optional<int64_t> inbox_seq;  // the deciding event's inbox row (its raw JSON)
    // The latest event after the deciding one that changed nothing, and why:
    // "duplicate" (its messageId was seen) or "stale" (dated before the deciding one).
    std::optional<std::string> ignored_message_id;
    std::optional<std::string> ignored_outcome;
    std::optional<int64_t> ignored_ms;  // when it was received
    int64_t attempts = 0;
    int64_t next_attempt_ms = 0;
    std::optional<int64_t> last_status;
    std::optional<int64_t> last_push_ms;
    std::optional<std::string> last_error;
    bool any_pending = false;
    std::vector<DeliveryRow> deliveries;

    bool pending() const { return any_pending; }
};

enum class MemberState { kAll, kIncluded, kExcluded, kPending, kDead };

// Keyset pagination: members after `after_key` (exclusive) in key order; with a
// `prefix`, only keys that start with it (a range of the primary key, however large the
// segment).
std::vector<MemberRow> ListMembers(Database& db, int64_t segment_id, MemberState state,
                                   const std::optional<std::string>& after_key, int limit,
                                   const std::optional<std::string>& prefix = std::nullopt);

// The least string greater than every string starting with `prefix` (its last byte
// below 0xFF incremented, the bytes after it dropped); nullopt when there is none
// (empty, or only 0xFF bytes).
std::optional<std::string> PrefixEnd(std::string_view prefix);
std::optional<MemberRow> GetMember(Database& db, int64_t segment_id, const std::string& key);

// Every segment where `key` is a member (desired included), with its row.
std::vector<std::pair<SegmentSummary, MemberRow>> ContextMemberships(
    Database& db, const std::string& key, std::optional<int64_t> after_segment = std::nullopt,
    std::optional<int64_t> limit = std::nullopt);

// Dead letters in (segment, key) order after the given position.
std::vector<MemberRow> ListDeadLetters(Database& db, std::optional<int64_t> segment_id,
                                       std::optional<std::pair<int64_t, std::string>> after,
                                       int limit);

struct TargetRow {
    std::string destination;
    std::string id;
    std::string platform;
    bool active = true;
    std::string status;
    std::optional<int64_t> last_success_ms;
    std::optional<std::string> last_error;
    int64_t paused_until_ms = 0;
    int64_t pending = 0;   // pending deliveries, not dead
    int64_t retrying = 0;  // of those, the ones whose last push failed
    int64_t dead = 0;
    int64_t over_limit_segments = 0;
};

// A destination folds its targets: the first status that is not ok, the newest
// success, the error of the target not ok, the longest pause.
struct DestinationRow {
    std::string id;
    std::string status;
    std::optional<int64_t> last_success_ms;
    std::optional<std::string> last_error;
    int64_t paused_until_ms = 0;
    std::vector<TargetRow> targets;  // active ones
};
std::vector<DestinationRow> ListDestinations(Database& db);

// Members of one segment awaiting a push, counted on the pending-members index (cheap
// however large the segment).
int64_t CountPending(Database& db, int64_t segment_id);

// Gauges for /metrics.
struct SyncGauges {
    int64_t pending = 0;
    int64_t dead = 0;
    std::optional<int64_t> oldest_pending_received_ms;
    std::vector<TargetRow> targets;  // active ones, with their counts
};
SyncGauges ReadSyncGauges(Database& db);

// Segments over a platform's limit, per target and limit name (for /metrics).
struct OverLimitCount {
    std::string destination;
    std::string target;
    std::string platform;
    std::string limit;
    int64_t segments = 0;
};
std::vector<OverLimitCount> CountOverLimit(Database& db);

// Operator writes are WriteStore methods (store.hpp).

}  // namespace audsync::store
