// The operator core: typed queries and commands on the store, shared by REST and the CLI.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/store/applier.hpp"
#include "audsync/store/queries.hpp"
#include "audsync/store/store.hpp"
#include "audsync/sync/push_log.hpp"

namespace audsync::ingest {
struct Counters;
class Admission;
}  // namespace audsync::ingest
namespace audsync::sync {
struct SyncCounters;
struct ReporterCounters;
}  // namespace audsync::sync

namespace audsync::admin {

// A segment's state as operators see it.
enum class SegmentStatus { kInSync, kSyncing, kRetrying, kAuthFailed, kOverLimit, kRefused };
std::string_view ToString(SegmentStatus status);
SegmentStatus StatusOf(const store::SegmentSummary& s);

// "included", "excluded", "pending" or "dead"; nullopt for anything else.
std::optional<store::MemberState> ParseMemberState(std::string_view name);

// Opaque keyset cursors (base64url).
std::string EncodeCursor(std::string_view raw);
std::optional<std::string> DecodeCursor(std::string_view cursor);

inline constexpr int kDefaultLimit = 100;
inline constexpr int kMaxLimit = 1000;
inline constexpr size_t kMaxDeadLetterIds = 10000;
inline constexpr size_t kMaxKeyPrefixBytes = 1024;  // a member search's prefix

// --- results -------------------------------------------------------------------------

struct SegmentList {
    std::vector<store::SegmentSummary> segments;
    std::optional<std::string> next_cursor;  // nullopt on the last page
    // Events stored and not yet applied: the segments show the state before them.
    store::Backlog backlog;
    // Its bounds (limits.max_backlog_events and max_backlog_seconds), and whether ingest
    // admits requests now (beyond a bound it answers 503 overloaded).
    int64_t max_backlog_events = 0;
    int64_t max_backlog_seconds = 0;
    bool admitting = true;
    // The size of each file of the store, and the bound of each WAL file.
    std::vector<store::StorageFile> storage;
    int64_t max_wal_bytes = 0;
};

// One segment with its counts by state and next retry (the detail view).
struct SegmentDetail {
    store::SegmentSummary segment;
};

struct MemberPage {
    std::vector<store::MemberRow> members;
    std::optional<std::string> next_cursor;  // nullopt on the last page
};

// One member: desired and acknowledged state, the deciding event, the last push.
struct MemberDetail {
    store::MemberRow member;
    // The deciding event as stored, credentials removed; nullopt once pruned.
    std::optional<std::string> event_payload;
};

struct ContextView {
    std::string context_key;
    std::vector<std::pair<store::SegmentSummary, store::MemberRow>> segments;
    std::optional<std::string> next_cursor;  // nullopt on the last page
};

struct DestinationView {
    config::Destination destination;             // rendered with every secret redacted
    std::optional<store::DestinationRow> state;  // nullopt: never pushed
    // Its reports to Segment, when report_to_segment is configured.
    std::optional<store::ReportSummary> reports;
};

// A destination's reports to Segment: the summary and the oldest dead reports.
struct ReportView {
    std::string destination;
    bool enabled = false;  // report_to_segment configured
    store::ReportSummary summary;
    std::vector<store::DeadReport> dead;
};

// How many dead reports a retry or discard changed.
struct ReportChange {
    std::string destination;
    bool retry = true;  // false: discarded
    int64_t changed = 0;
};

struct DestinationList {
    std::vector<DestinationView> destinations;
};

struct DeadLetterPage {
    std::vector<store::MemberRow> dead_letters;
    std::optional<std::string> next_cursor;
};

// How many dead letters a retry or discard changed.
struct DeadLetterChange {
    bool retry = true;  // false: discarded
    int64_t changed = 0;
    std::vector<std::string> not_found;  // ids given that name no dead letter
};

// What a replay of segments did (or, dry, would do).
struct ReplayReport {
    // One target of a segment: its members pushed again there (each member counts once
    // per target it is pushed to).
    struct TargetEntry {
        std::string target;
        std::string platform;
        int64_t members = 0;  // to push (a dry run: what would be)
    };
    struct Entry {
        store::SegmentSummary segment;
        int64_t adds = 0;     // included members that will be pushed again
        int64_t removes = 0;  // excluded members that will be pushed again
        std::vector<std::string> sample;
        std::vector<TargetEntry> targets;  // the targets replayed, in id order
    };
    bool dry_run = false;
    std::optional<std::string> target;  // only this target (else every active one)
    std::vector<Entry> segments;
    int64_t adds = 0;
    int64_t removes = 0;
    // Member pushes marked, summed over targets: a member replayed at two targets counts
    // twice (0 on a dry run).
    int64_t marked = 0;
};

// The outcome of pushing from the CLI (replay segments --push-now).
struct PushReport {
    int64_t segments = 0;
    int64_t marked = 0;
    int64_t acknowledged = 0;
    int64_t pending = 0;
    int64_t dead_letters = 0;
    std::vector<std::string> paused;  // "destination ld is paused (auth_failed) until ..."
};

struct SegmentDeletion {
    int64_t segment_id = 0;
    int64_t members = 0;
    bool emptied_on_platform = false;
};

// Members decided by events dated beyond limits.max_future_skew_seconds after receipt.
struct FutureTimesRepair {
    bool dry_run = false;
    int64_t skew_seconds = 0;
    int64_t members = 0;  // found (dry run) or reordered by their receive time
};

// The recent pushes of this server (GET /v1/pushes), the newest first.
struct PushList {
    std::vector<sync::PushRecord> pushes;
    size_t kept = 0;  // how many this server keeps now (at most sync::PushLog::kCapacity)
};

struct Resumed {
    std::string destination;
    std::optional<std::string> target;  // nullopt: every target of the destination
    int64_t pending = 0;                // member changes now due at once
};

// --- parameters ----------------------------------------------------------------------

// One page of segments (or of a context's segments), in id order.
struct PageQuery {
    std::optional<std::string> cursor;
    int limit = kDefaultLimit;
};

struct MemberQuery {
    store::MemberState state = store::MemberState::kAll;
    std::optional<std::string> prefix;  // only keys starting with it
    std::optional<std::string> cursor;
    int limit = kDefaultLimit;
};

struct PushQuery {
    sync::PushLog::Filter filter;
    int limit = kDefaultLimit;
};

struct DeadLetterQuery {
    std::optional<int64_t> segment;
    std::optional<std::string> cursor;
    int limit = kDefaultLimit;
};

// Either a whole segment or members named "<segment id>:<context key>".
struct DeadLetterSelection {
    std::optional<int64_t> segment;
    std::vector<std::pair<int64_t, std::string>> ids;
    std::optional<std::string> target;  // nullopt: the dead letters at every target
};

// Parses a dead-letter id "<segment id>:<context key>".
Result<std::pair<int64_t, std::string>> ParseDeadLetterId(std::string_view id);
// Parses a positive decimal id; the error names `what`.
Result<int64_t> ParseId(std::string_view text, std::string_view what);

// Runs a write in a transaction: the Writer's when a server runs, a connection of the
// CLI's own otherwise.
using WriteRunner = std::function<Status(const std::function<void(store::WriteStore&)>&)>;

// Called after a write that made members due (the engine's Wake, when one runs here).
using Notify = std::function<void()>;

// The operator API without transport. Every call returns a typed result or an Error.
// Thread-safe: every read opens its own connection; writes go through `write`.
class Service {
  public:
    Service(std::shared_ptr<const config::Config> config, std::string db_path, WriteRunner write,
            const ingest::Counters* ingest_counters, const sync::SyncCounters* sync_counters,
            const store::ApplierCounters* applier_counters = nullptr,
            const sync::ReporterCounters* reporter_counters = nullptr);

    void SetConfig(std::shared_ptr<const config::Config> config);
    void SetNotify(Notify notify);
    // The server's backlog gate (for `admitting` and the metrics); set before serving.
    // Without one (the CLI beside no server) the bounds are checked against the files.
    void SetAdmission(ingest::Admission* admission) { admission_ = admission; }

    Result<SegmentList> ListSegments(const store::SegmentFilter& filter, const PageQuery& page);
    Result<SegmentDetail> GetSegment(int64_t id);
    Result<MemberPage> ListMembers(int64_t segment_id, const MemberQuery& query);
    Result<MemberDetail> GetMember(int64_t segment_id, const std::string& key);
    Result<ContextView> Context(const std::string& key, const PageQuery& page);
    Result<DestinationList> ListDestinations();
    Result<DestinationView> GetDestination(const std::string& id);
    Result<DeadLetterPage> ListDeadLetters(const DeadLetterQuery& query);
    Result<DeadLetterChange> RetryDeadLetters(const DeadLetterSelection& selection);
    Result<DeadLetterChange> DiscardDeadLetters(const DeadLetterSelection& selection);
    // Marks the chosen segments' members for re-push; a dry run only counts them.
    // Every active target of each segment, or only `target` (not_found when no segment
    // of the filter has it).
    Result<ReplayReport> ReplaySegments(const store::SegmentFilter& filter, bool dry_run,
                                        const std::optional<std::string>& target = std::nullopt);
    Result<SegmentDeletion> DeleteSegment(int64_t id);
    // The first step of a delete with --empty-on-platform: every included member becomes
    // an exclusion due now. Returns the members changed.
    Result<int64_t> ExcludeAllMembers(int64_t id);
    // Clears auth and rate-limit pauses and makes the destination's pending members due.
    // With a target, only that one; errors: unknown_destination, unknown_target.
    Result<Resumed> ResumeDestination(const std::string& id,
                                      const std::optional<std::string>& target = std::nullopt);
    // A destination's reports to Segment with at most `limit` dead ones (1..1000);
    // errors: unknown_destination, bad limit.
    Result<ReportView> DestinationReports(const std::string& id, int limit);
    // Sends the destination's dead reports again (retry) or gives them up (discard).
    Result<ReportChange> ChangeDeadReports(const std::string& id, bool retry);
    // Orders members decided by future-dated events by their receive time; a dry run
    // only counts them.
    Result<FutureTimesRepair> RepairFutureTimes(bool dry_run);
    // Members of a segment awaiting a push at its active targets, on the pending index
    // (cheap however large the segment, unlike GetSegment's counts).
    Result<int64_t> CountPending(int64_t segment_id);
    // The recent pushes of this process, newest first (none where no sync engine runs).
    Result<PushList> ListPushes(const PushQuery& query);
    // Prometheus text format.
    Result<std::string> Metrics();

  private:
    std::shared_ptr<const config::Config> config() const;
    Result<DeadLetterChange> ChangeDeadLetters(const DeadLetterSelection& selection, bool retry);

    mutable std::mutex mu_;  // guards config_ and notify_
    std::shared_ptr<const config::Config> config_;
    std::string db_path_;
    WriteRunner write_;
    Notify notify_;
    const ingest::Counters* ingest_counters_;
    const sync::SyncCounters* sync_counters_;
    const store::ApplierCounters* applier_counters_;
    const sync::ReporterCounters* reporter_counters_;
    ingest::Admission* admission_ = nullptr;
};

}  // namespace audsync::admin
