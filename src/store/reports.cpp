// Reports of synced changes back into Segment: queueing, outcomes and reads.
#include "audsync/store/reports.hpp"

#include "access.hpp"
#include "audsync/common/crypto.hpp"
#include "audsync/store/store.hpp"

namespace audsync::store {
namespace {

constexpr const char* kReportColumns =
    "id, destination, message_id, user_id, audience_id, audience_key, context_kind, target, "
    "platform, included, deciding_message_id, synced_ms";

ReportRow ReadRow(const Statement& s) {
    ReportRow r;
    r.id = s.Int(0);
    r.destination = s.Text(1);
    r.message_id = s.Text(2);
    r.user_id = s.Text(3);
    r.audience_id = s.Text(4);
    r.audience_key = s.Text(5);
    r.context_kind = s.Text(6);
    r.target = s.Text(7);
    r.platform = s.Text(8);
    r.included = s.Int(9) != 0;
    if (!s.IsNull(10)) r.deciding_message_id = s.Text(10);
    r.synced_ms = s.Int(11);
    return r;
}

}  // namespace

std::string ReportMessageId(std::string_view destination, std::string_view audience_id,
                            std::string_view context_kind, std::string_view context_key,
                            std::string_view target, int64_t version,
                            std::string_view deciding_message_id) {
    std::string data;
    for (std::string_view part : {destination, audience_id, context_kind, context_key, target}) {
        data.append(part);
        data.push_back('\0');
    }
    data += std::to_string(version);
    data.push_back('\0');
    data.append(deciding_message_id);
    return "audsync-" + crypto::Sha1Hex(data).substr(0, 32);
}

void WriteStore::QueueReport(const ReportRow& row) {
    queue_report_.Bind(1, row.destination)
        .Bind(2, row.message_id)
        .Bind(3, row.user_id)
        .Bind(4, row.audience_id)
        .Bind(5, row.audience_key)
        .Bind(6, row.context_kind)
        .Bind(7, row.target)
        .Bind(8, row.platform)
        .Bind(9, int64_t{row.included ? 1 : 0});
    row.deciding_message_id ? queue_report_.Bind(10, *row.deciding_message_id)
                            : queue_report_.BindNull(10);
    queue_report_.Bind(11, row.synced_ms);
    queue_report_.Run();
}

void WriteStore::MarkReportsSent(const std::vector<int64_t>& ids, int status, int64_t now_ms) {
    for (int64_t id : ids) {
        report_sent_.Bind(1, id).Bind(2, now_ms).Bind(3, int64_t{status});
        report_sent_.Run();
    }
}

void WriteStore::MarkReportDead(int64_t id, int status, const std::string& error, int64_t now_ms) {
    Statement s(detail::Access::Handle(db_),
                "UPDATE reports SET state = 2, done_ms = ?2, last_status = ?3, last_error = ?4 "
                "WHERE id = ?1 AND state = 0");
    s.Bind(1, id).Bind(2, now_ms).Bind(3, int64_t{status}).Bind(4, error);
    s.Run();
}

void WriteStore::SetReportStatus(const std::string& destination, const std::string& status,
                                 int64_t paused_until_ms, const std::optional<std::string>& error,
                                 std::optional<int64_t> success_ms) {
    Statement s(detail::Access::Handle(db_),
                "INSERT INTO report_status (destination, status, paused_until_ms, "
                "last_success_ms, last_error) VALUES (?1, ?2, ?3, ?4, ?5) "
                "ON CONFLICT (destination) DO UPDATE SET status = ?2, paused_until_ms = ?3, "
                "last_success_ms = coalesce(?4, last_success_ms), "
                "last_error = coalesce(?5, last_error)");
    s.Bind(1, destination).Bind(2, status).Bind(3, paused_until_ms);
    success_ms ? s.Bind(4, *success_ms) : s.BindNull(4);
    error ? s.Bind(5, *error) : s.BindNull(5);
    s.Run();
}

int64_t WriteStore::RetryDeadReports(const std::string& destination) {
    Statement s(detail::Access::Handle(db_),
                "UPDATE reports INDEXED BY reports_dead SET state = 0, done_ms = NULL "
                "WHERE destination = ?1 AND state = 2");
    s.Bind(1, destination);
    s.Run();
    return db_.Changes();
}

int64_t WriteStore::DiscardDeadReports(const std::string& destination, int64_t now_ms) {
    Statement s(detail::Access::Handle(db_),
                "UPDATE reports INDEXED BY reports_dead SET state = 3, done_ms = ?2 "
                "WHERE destination = ?1 AND state = 2");
    s.Bind(1, destination).Bind(2, now_ms);
    s.Run();
    return db_.Changes();
}

int64_t WriteStore::PruneReports(int64_t before_ms, int limit) {
    Statement s(detail::Access::Handle(db_),
                "DELETE FROM reports WHERE id IN (SELECT id FROM reports INDEXED BY reports_done "
                "WHERE state IN (1, 3) AND done_ms < ?1 LIMIT ?2)");
    s.Bind(1, before_ms).Bind(2, int64_t{limit});
    s.Run();
    return db_.Changes();
}

ReportSummary ReadReportSummary(Database& db, const std::string& destination) {
    ReportSummary out;
    Statement counts(detail::Access::Handle(db),
                     "SELECT (SELECT count(*) FROM reports INDEXED BY reports_pending "
                     "WHERE destination = ?1 AND state = 0), "
                     "(SELECT count(*) FROM reports WHERE destination = ?1 AND state = 1), "
                     "(SELECT count(*) FROM reports INDEXED BY reports_dead "
                     "WHERE destination = ?1 AND state = 2), "
                     "(SELECT synced_ms FROM reports INDEXED BY reports_pending "
                     "WHERE destination = ?1 AND state = 0 ORDER BY id LIMIT 1)");
    counts.Bind(1, destination);
    if (counts.Step()) {
        out.pending = counts.Int(0);
        out.sent = counts.Int(1);
        out.dead = counts.Int(2);
        if (!counts.IsNull(3)) out.oldest_pending_ms = counts.Int(3);
    }
    counts.Reset();
    Statement status(detail::Access::Handle(db),
                     "SELECT status, paused_until_ms, last_success_ms, last_error "
                     "FROM report_status WHERE destination = ?1");
    status.Bind(1, destination);
    if (status.Step()) {
        out.status = status.Text(0);
        out.paused_until_ms = status.Int(1);
        if (!status.IsNull(2)) out.last_success_ms = status.Int(2);
        if (!status.IsNull(3)) out.last_error = status.Text(3);
    }
    status.Reset();
    return out;
}

std::vector<DeadReport> ListDeadReports(Database& db, const std::string& destination, int limit) {
    std::vector<DeadReport> out;
    Statement s(detail::Access::Handle(db), std::string("SELECT ") + kReportColumns +
                                                ", last_status, last_error FROM reports "
                                                "INDEXED BY reports_dead WHERE destination = ?1 "
                                                "AND state = 2 ORDER BY id LIMIT ?2");
    s.Bind(1, destination).Bind(2, int64_t{limit});
    while (s.Step()) {
        DeadReport d;
        d.row = ReadRow(s);
        if (!s.IsNull(12)) d.status = s.Int(12);
        if (!s.IsNull(13)) d.error = s.Text(13);
        out.push_back(std::move(d));
    }
    s.Reset();
    return out;
}

ReportReader::ReportReader(Database& db)
    : pending_(detail::Access::Handle(db),
               std::string("SELECT ") + kReportColumns +
                   " FROM reports INDEXED BY reports_pending WHERE destination = ?1 AND state = 0 "
                   "ORDER BY id LIMIT ?2") {}

std::vector<ReportRow> ReportReader::Pending(const std::string& destination, int limit) {
    std::vector<ReportRow> out;
    pending_.Bind(1, destination).Bind(2, int64_t{limit});
    try {
        while (pending_.Step()) out.push_back(ReadRow(pending_));
    } catch (...) {
        pending_.Reset();
        throw;
    }
    pending_.Reset();
    return out;
}

}  // namespace audsync::store
