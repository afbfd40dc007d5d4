// The CLI's text renderer: tables and key/value blocks for people.
#include "text.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "audsync/common/text.hpp"

namespace audsync::cli::text {
namespace {

std::string Time(std::optional<int64_t> ms) { return ms ? audsync::text::FormatIso8601(*ms) : "-"; }

const char* State(bool included) { return included ? "included" : "excluded"; }

std::string Plural(int64_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::string Safe(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::string Cell(const std::string& raw, size_t width) {
    std::string s = Safe(raw);
    if (s.size() > width) {
        // Cut at a UTF-8 character boundary.
        size_t cut = width - 1;
        while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
        s = s.substr(0, cut) + "~";
    }
    return s + std::string(width > s.size() ? width - s.size() + 2 : 2, ' ');
}

void Print(std::ostream& out, const admin::SegmentList& list) {
    out << Cell("ID", 6) << Cell("DESTINATION", 14) << Cell("AUDIENCE KEY", 28) << Cell("KIND", 10)
        << Cell("MEMBERS", 9) << Cell("PENDING", 9) << Cell("DEAD", 6) << Cell("STATUS", 12)
        << "LAST SYNCED\n";
    for (const auto& s : list.segments) {
        out << Cell(std::to_string(s.id), 6) << Cell(s.destination, 14) << Cell(s.audience_key, 28)
            << Cell(s.context_kind, 10) << Cell(std::to_string(s.included), 9)
            << Cell(std::to_string(s.pending), 9) << Cell(std::to_string(s.dead), 6)
            << Cell(std::string(admin::ToString(admin::StatusOf(s))), 12) << Time(s.last_synced_ms)
            << "\n";
    }
    if (list.backlog.events > 0) {
        // Stored by ingest, not applied yet: the rows above do not show them.
        const int64_t age_s =
            list.backlog.oldest_received_ms
                ? std::max<int64_t>(
                      0, (audsync::text::NowMs() - *list.backlog.oldest_received_ms) / 1000)
                : 0;
        out << Plural(list.backlog.events, "stored event", "stored events")
            << " not applied yet (the oldest " << age_s << " s old; limits "
            << list.max_backlog_events << " events, " << list.max_backlog_seconds
            << " s); the rows show the state before them\n";
    }
    if (!list.admitting) {
        out << "ingest refuses new events (503 overloaded) until the backlog is back under "
               "its limits\n";
    }
    for (const auto& f : list.storage) {
        if (f.file.size() > 4 && f.file.compare(f.file.size() - 4, 4, "-wal") == 0 &&
            list.max_wal_bytes > 0 && f.bytes > list.max_wal_bytes) {
            out << "the " << f.file << " file is " << f.bytes / (1024 * 1024)
                << " MB, over limits.max_wal_bytes (" << list.max_wal_bytes / (1024 * 1024)
                << " MB)\n";
        }
    }
}

void Print(std::ostream& out, const admin::SegmentDetail& detail) {
    const auto& s = detail.segment;
    out << "id:             " << s.id << "\n"
        << "destination:    " << Safe(s.destination) << "\n"
        << "audience:       " << Safe(s.audience_key) << " (" << Safe(s.audience_id) << ")\n"
        << "context kind:   " << Safe(s.context_kind) << "\n"
        << "status:         " << admin::ToString(admin::StatusOf(s)) << "\n"
        << "included:       " << s.included << "\n"
        << "excluded:       " << s.excluded << "\n"
        << "pending:        " << s.pending << " (" << s.retrying << " retrying)\n"
        << "dead letters:   " << s.dead << "\n"
        << "last synced:    " << Time(s.last_synced_ms) << "\n"
        << "next retry:     " << Time(s.next_retry_ms) << "\n"
        << "last error:     " << Safe(s.last_error.value_or("-")) << "\n"
        << "targets:\n";
    for (const auto& t : s.targets) {
        out << "  " << Safe(t.target) << " (" << Safe(t.platform) << "): ";
        if (t.segment_status != "ok") {
            out << Safe(t.segment_status);
            if (t.limit_name) out << " [" << Safe(*t.limit_name) << "]";
            if (t.segment_error) out << ": " << Safe(*t.segment_error);
            out << "; ";
        } else if (t.target_status != "ok") {
            out << Safe(t.target_status) << "; ";
        }
        out << t.pending << " pending (" << t.retrying << " retrying), " << t.dead
            << " dead, last synced " << Time(t.last_synced_ms);
        if (t.segment_status == "ok" && t.last_error) out << ", last error " << Safe(*t.last_error);
        out << "\n";
    }
}

void PrintMembersHeader(std::ostream& out) {
    out << Cell("CONTEXT KEY", 32) << Cell("STATE", 9) << Cell("ACKED", 9) << Cell("PENDING", 8)
        << Cell("DEAD", 5) << Cell("DECIDED BY", 28) << "EVENT TIME\n";
}

void PrintMemberRow(std::ostream& out, const store::MemberRow& m) {
    out << Cell(m.context_key, 32) << Cell(State(m.desired), 9)
        << Cell(m.acked ? State(*m.acked) : "-", 9) << Cell(m.pending() ? "yes" : "no", 8)
        << Cell(m.dead ? "yes" : "no", 5) << Cell(m.message_id, 28)
        << audsync::text::FormatIso8601(m.event_ms) << "\n";
}

void Print(std::ostream& out, const admin::MemberDetail& detail) {
    const auto& m = detail.member;
    out << "segment:        " << m.segment_id << "\n"
        << "context key:    " << Safe(m.context_key) << "\n"
        << "state:          " << State(m.desired) << " (version " << m.version << ")\n"
        << "acknowledged:   " << (m.acked ? State(*m.acked) : "never") << "\n"
        << "pending:        " << (m.pending() ? "yes" : "no") << "\n"
        << "dead letter:    " << (m.dead ? "yes" : "no") << "\n"
        << "decided by:     " << Safe(m.message_id) << "\n"
        << "  event time:   " << audsync::text::FormatIso8601(m.event_ms) << "\n"
        << "  received at:  " << audsync::text::FormatIso8601(m.received_ms) << "\n"
        << "  payload:      " << Safe(detail.event_payload.value_or("(pruned)")) << "\n"
        << "attempts:       " << m.attempts << "\n"
        << "last push:      ";
    if (m.last_push_ms) {
        out << Time(m.last_push_ms) << ", status "
            << (m.last_status ? std::to_string(*m.last_status) : std::string("none"));
        if (m.last_error) out << ", " << Safe(*m.last_error);
        out << "\n";
    } else {
        out << "-\n";
    }
    for (const auto& d : m.deliveries) {
        out << "at " << Cell(d.target + ":", 12) << (d.acked ? State(*d.acked) : "never")
            << (d.dead      ? ", dead letter"
                : d.pending ? ", pending"
                            : ", in step");
        if (d.attempts > 0) out << ", " << Plural(d.attempts, "attempt", "attempts");
        if (d.last_push_ms) {
            out << ", last push " << Time(d.last_push_ms) << " status "
                << (d.last_status ? std::to_string(*d.last_status) : std::string("none"));
        }
        if (d.last_error) out << ", " << Safe(*d.last_error);
        out << "\n";
    }
}

void Print(std::ostream& out, const admin::ContextView& view) {
    if (view.segments.empty()) {
        out << "context key " << Safe(view.context_key) << " is in no segment\n";
        return;
    }
    out << Cell("SEGMENT", 8) << Cell("DESTINATION", 14) << Cell("AUDIENCE KEY", 28)
        << Cell("KIND", 10) << Cell("ACKED", 9) << "DECIDED BY\n";
    for (const auto& [seg, m] : view.segments) {
        out << Cell(std::to_string(seg.id), 8) << Cell(seg.destination, 14)
            << Cell(seg.audience_key, 28) << Cell(seg.context_kind, 10)
            << Cell(m.acked ? State(*m.acked) : "-", 9) << Safe(m.message_id) << "\n";
    }
}

namespace {

std::string PauseOf(const admin::DestinationView& v) {
    if (!v.state || v.state->paused_until_ms <= audsync::text::NowMs()) return "-";
    return audsync::text::FormatIso8601(v.state->paused_until_ms);
}

}  // namespace

namespace {

const store::TargetRow* RowOf(const admin::DestinationView& v, const std::string& target) {
    if (!v.state) return nullptr;
    for (const auto& r : v.state->targets) {
        if (r.id == target) return &r;
    }
    return nullptr;
}

std::string PauseOf(const store::TargetRow* row) {
    if (row == nullptr || row->paused_until_ms <= audsync::text::NowMs()) return "-";
    return audsync::text::FormatIso8601(row->paused_until_ms);
}

}  // namespace

namespace {

// "reports to Segment: ok, 3 pending, 120 sent, 1 dead (...)".
std::string ReportLine(const store::ReportSummary& r) {
    std::string line = "reports to Segment: " + r.status;
    if (r.paused_until_ms > audsync::text::NowMs()) {
        line += " until " + audsync::text::FormatIso8601(r.paused_until_ms);
    }
    line += ", " + std::to_string(r.pending) + " pending, " + std::to_string(r.sent) + " sent, " +
            std::to_string(r.dead) + " dead";
    if (r.dead > 0) line += " (see `audsync destinations reports`)";
    if (r.status != "ok" && r.last_error) line += ", last error " + Safe(*r.last_error);
    return line;
}

}  // namespace

void Print(std::ostream& out, const admin::DestinationList& list) {
    out << Cell("DESTINATION", 14) << Cell("TARGET", 14) << Cell("PLATFORM", 13)
        << Cell("STATUS", 13) << Cell("PENDING", 9) << Cell("DEAD", 6) << Cell("PAUSED UNTIL", 26)
        << Cell("LAST SUCCESS", 26) << "LAST ERROR\n";
    for (const auto& v : list.destinations) {
        for (const auto& t : v.destination.targets) {
            const store::TargetRow* row = RowOf(v, t.id);
            out << Cell(v.destination.id, 14) << Cell(t.id, 14) << Cell(t.platform, 13)
                << Cell(row ? row->status : "ok", 13)
                << Cell(std::to_string(row ? row->pending : 0), 9)
                << Cell(std::to_string(row ? row->dead : 0), 6) << Cell(PauseOf(row), 26)
                << Cell(Time(row ? row->last_success_ms : std::nullopt), 26)
                << Safe(row && row->last_error ? *row->last_error : "-") << "\n";
        }
        if (v.reports)
            out << "  " << Safe(v.destination.id) << ": " << ReportLine(*v.reports) << "\n";
    }
}

void Print(std::ostream& out, const admin::DestinationView& v) {
    const auto& d = v.destination;
    out << "id:             " << Safe(d.id) << "\n"
        << "context kind:   " << Safe(d.context_kind) << "\n"
        << "context key:    " << config::ToString(d.context_key) << "\n"
        << "write keys:     " << d.write_key_count << " (redacted)\n"
        << "shared secret:  " << (d.has_shared_secret ? "set (redacted)" : "none") << "\n"
        << "status:         " << (v.state ? v.state->status : "ok") << "\n"
        << "paused until:   " << PauseOf(v) << "\n"
        << "last success:   " << Time(v.state ? v.state->last_success_ms : std::nullopt) << "\n"
        << "last error:     " << Safe(v.state && v.state->last_error ? *v.state->last_error : "-")
        << "\n"
        << "targets:\n";
    for (const auto& t : d.targets) {
        const store::TargetRow* row = RowOf(v, t.id);
        out << "  " << Safe(t.id) << " (" << Safe(t.platform) << ", " << Safe(t.api_base)
            << "): " << (row ? row->status : "ok") << ", " << (row ? row->pending : 0)
            << " pending, " << (row ? row->dead : 0) << " dead letters, "
            << (row ? row->over_limit_segments : 0) << " segments over limit, paused until "
            << PauseOf(row) << ", last success " << Time(row ? row->last_success_ms : std::nullopt)
            << ", last error " << Safe(row && row->last_error ? *row->last_error : "-") << "\n";
    }
    if (v.reports) out << ReportLine(*v.reports) << "\n";
}

void Print(std::ostream& out, const admin::ReportView& view) {
    if (!view.enabled) {
        out << "destination " << Safe(view.destination)
            << " has no report_to_segment; what is kept from before:\n";
    }
    out << ReportLine(view.summary) << "\n";
    out << "last success:   " << Time(view.summary.last_success_ms) << "\n"
        << "last error:     " << Safe(view.summary.last_error.value_or("-")) << "\n";
    if (view.summary.oldest_pending_ms) {
        out << "oldest pending: " << Time(view.summary.oldest_pending_ms) << "\n";
    }
    if (view.dead.empty()) return;
    out << "dead reports (oldest first):\n"
        << Cell("MESSAGE ID", 42) << Cell("USER", 24) << Cell("AUDIENCE", 24) << Cell("TARGET", 14)
        << Cell("STATUS", 7) << "ERROR\n";
    for (const auto& d : view.dead) {
        out << Cell(d.row.message_id, 42) << Cell(Safe(d.row.user_id), 24)
            << Cell(Safe(d.row.audience_key), 24) << Cell(Safe(d.row.target), 14)
            << Cell(d.status ? std::to_string(*d.status) : "-", 7) << Safe(d.error.value_or("-"))
            << "\n";
    }
}

void Print(std::ostream& out, const admin::ReportChange& change) {
    out << (change.retry ? "retried " : "discarded ") << change.changed << " dead report"
        << (change.changed == 1 ? "" : "s") << " of destination " << Safe(change.destination)
        << (change.retry ? "; they are sent again" : "") << "\n";
}

void PrintDeadLettersHeader(std::ostream& out) {
    out << Cell("ID", 36) << Cell("STATE", 9) << Cell("STATUS", 7) << Cell("AT TARGETS", 16)
        << "ERROR\n";
}

void PrintDeadLetterRow(std::ostream& out, const store::MemberRow& m) {
    out << Cell(std::to_string(m.segment_id) + ":" + m.context_key, 36) << Cell(State(m.desired), 9)
        << Cell(m.last_status ? std::to_string(*m.last_status) : "-", 7);
    std::string targets;
    for (const auto& d : m.deliveries) {
        if (d.dead) targets += (targets.empty() ? "" : ",") + d.target;
    }
    out << Cell(targets.empty() ? "-" : targets, 16) << Safe(m.last_error.value_or("-")) << "\n";
}

void Print(std::ostream& out, const admin::DeadLetterChange& change) {
    out << (change.retry ? "retried " : "discarded ")
        << Plural(change.changed, "dead letter", "dead letters") << "\n";
    for (const auto& id : change.not_found) out << "  not a dead letter: " << Safe(id) << "\n";
}

void Print(std::ostream& out, const admin::ReplayReport& report) {
    // Per target, over the segments, in target order: a member counts once per target.
    std::map<std::string, int64_t> per_target;
    for (const auto& e : report.segments) {
        out << "segment " << e.segment.id << " (" << Safe(e.segment.destination) << ", "
            << Safe(e.segment.audience_key) << ", " << Safe(e.segment.context_kind)
            << "): " << e.adds << " adds, " << e.removes << " removes";
        if (!e.targets.empty()) {
            out << ", at";
            for (size_t i = 0; i < e.targets.size(); ++i) {
                out << (i == 0 ? " " : ", ") << Safe(e.targets[i].target);
                per_target[e.targets[i].target] += e.targets[i].members;
            }
        }
        if (!e.sample.empty()) {
            out << "; e.g.";
            for (const auto& k : e.sample) out << " " << Safe(k);
        }
        out << "\n";
    }
    std::string targets;
    for (const auto& [target, members] : per_target) {
        targets += (targets.empty() ? "" : ", ") + std::to_string(members) + " at " + Safe(target);
    }
    const int64_t n = static_cast<int64_t>(report.segments.size());
    if (report.dry_run) {
        out << "dry run: would re-push " << report.adds << " adds and " << report.removes
            << " removes in " << Plural(n, "segment", "segments");
        if (!targets.empty()) out << " (" << targets << ")";
        out << "; nothing changed\n";
    } else {
        out << "marked " << Plural(report.marked, "member push", "member pushes") << " of "
            << Plural(n, "segment", "segments") << " for re-push";
        if (!targets.empty()) out << " (" << targets << "; a member counts once per target)";
        out << "; a running audsync pushes them within seconds\n";
    }
}

void Print(std::ostream& out, const admin::PushReport& report) {
    out << "replayed " << Plural(report.segments, "segment", "segments") << ": "
        << report.acknowledged << " acknowledged, " << report.pending << " still pending, "
        << Plural(report.dead_letters, "new dead letter", "new dead letters") << "\n";
    for (const auto& p : report.paused) out << p << "\n";
}

void Print(std::ostream& out, const admin::SegmentDeletion& deletion) {
    out << "deleted segment " << deletion.segment_id << " and "
        << Plural(deletion.members, "member", "members");
    if (deletion.emptied_on_platform) out << " (emptied on the platform first)";
    out << "\n";
}

void Print(std::ostream& out, const admin::Resumed& resumed) {
    out << "resumed " << (resumed.target ? "target " + Safe(*resumed.target) + " of " : "")
        << "destination " << Safe(resumed.destination) << "; "
        << Plural(resumed.pending, "member is", "members are") << " due now\n";
}

void Print(std::ostream& out, const admin::FutureTimesRepair& repair) {
    const std::string what = " decided by events dated more than " +
                             std::to_string(repair.skew_seconds) +
                             " s (limits.max_future_skew_seconds) after they were received";
    if (repair.dry_run) {
        out << Plural(repair.members, "member", "members") << what
            << "; nothing changed (--dry-run)\n";
    } else {
        out << "repaired " << Plural(repair.members, "member", "members") << what
            << ": their ordering time is now their receive time\n";
    }
}

void Print(std::ostream& out, const admin::EventReplayReport& r) {
    if (r.dry_run) out << "dry run: nothing was written\n";
    out << "events:          " << r.events << "\n";
    if (r.dry_run) {
        out << "accepted:        " << r.accepted << "\n"
            << "duplicates:      " << r.duplicates << "\n"
            << "stale:           " << r.stale << "\n";
    } else {
        // Duplicates and stale events are decided as they are applied: the members show
        // them (ignored_event), /metrics counts them.
        out << "stored:          " << r.stored << (r.applied ? " (applied)" : " (not applied yet)")
            << "\n";
    }
    out << "not applicable:  " << r.not_applicable << "\n";
    for (const auto& [reason, n] : r.not_applicable_reasons) {
        out << "  " << reason << ": " << n << "\n";
    }
    out << "rejected:        " << r.rejected << "\n";
    for (const auto& [reason, n] : r.rejected_by_reason) out << "  " << reason << ": " << n << "\n";
    for (const auto& x : r.first_rejections) {
        out << "  line " << x.line << ": " << x.reason;
        if (!x.message_id.empty()) out << " (messageId " << Safe(x.message_id) << ")";
        if (!x.detail.empty()) out << ": " << Safe(x.detail);
        out << "\n";
    }
    if (r.rejected > r.first_rejections.size()) {
        out << "  (" << r.rejected - r.first_rejections.size() << " more rejections not listed)\n";
    }
}

}  // namespace audsync::cli::text
