// Reports of synced changes back into Segment (report_to_segment): the rows the sync
// engine queues with each acknowledgement, and the reads of the reporter and operators.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/store/database.hpp"

namespace audsync::store {

// One change a target acknowledged, to be reported as one track event.
struct ReportRow {
    int64_t id = 0;  // set when read
    std::string destination;
    std::string message_id;  // ReportMessageId
    std::string user_id;     // the context key
    std::string audience_id;
    std::string audience_key;
    std::string context_kind;
    std::string target;
    std::string platform;
    bool included = false;
    std::optional<std::string> deciding_message_id;
    int64_t synced_ms = 0;
};

// The messageId of a change's report: "audsync-" and 32 hex digits of SHA-1 over the
// change (destination, audience, context kind, key, target, version and the deciding
// event's messageId). The same change always gets the same id, so a report sent again
// after a crash is one Segment de-duplicates.
std::string ReportMessageId(std::string_view destination, std::string_view audience_id,
                            std::string_view context_kind, std::string_view context_key,
                            std::string_view target, int64_t version,
                            std::string_view deciding_message_id);

enum class ReportState : int { kPending = 0, kSent = 1, kDead = 2, kDiscarded = 3 };

// A destination's reports as operators see them.
struct ReportSummary {
    int64_t pending = 0;
    int64_t sent = 0;  // sent and still kept (the de-duplication window)
    int64_t dead = 0;
    std::optional<int64_t> oldest_pending_ms;  // synced_ms of the oldest pending one
    std::string status = "ok";                 // ok | retrying | rate_limited | auth_failed
    int64_t paused_until_ms = 0;
    std::optional<int64_t> last_success_ms;
    std::optional<std::string> last_error;
};
ReportSummary ReadReportSummary(Database& db, const std::string& destination);

// Dead reports of a destination, oldest first, at most `limit`, with their last answer.
struct DeadReport {
    ReportRow row;
    std::optional<int64_t> status;
    std::optional<std::string> error;
};
std::vector<DeadReport> ListDeadReports(Database& db, const std::string& destination, int limit);

// The reporter's reads, prepared once on its own connection. Not thread-safe.
class ReportReader {
  public:
    explicit ReportReader(Database& db);
    // Pending reports of a destination in queue order, at most `limit`.
    std::vector<ReportRow> Pending(const std::string& destination, int limit);

  private:
    Statement pending_;
};

}  // namespace audsync::store
