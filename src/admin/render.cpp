// The one JSON rendering of each operator type (REST bodies and the CLI's --json).
#include "audsync/admin/render.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>

#include "audsync/common/text.hpp"

namespace audsync::admin {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr const char* kRedacted = "[redacted]";

void Str(JsonWriter& w, std::string_view s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void Time(JsonWriter& w, std::optional<int64_t> ms) {
    if (ms) {
        Str(w, text::FormatIso8601(*ms));
    } else {
        w.Null();
    }
}

void OptStr(JsonWriter& w, const std::optional<std::string>& s) {
    if (s) {
        Str(w, *s);
    } else {
        w.Null();
    }
}

void OptInt(JsonWriter& w, const std::optional<int64_t>& v) {
    if (v) {
        w.Int64(*v);
    } else {
        w.Null();
    }
}

void Count(JsonWriter& w, const char* key, int64_t n) {
    w.Key(key);
    w.Int64(n);
}

const char* StateName(bool included) { return included ? "included" : "excluded"; }

void WriteSegment(JsonWriter& w, const store::SegmentSummary& s, bool detail) {
    w.StartObject();
    Count(w, "id", s.id);
    w.Key("destination");
    Str(w, s.destination);
    w.Key("audience_id");
    Str(w, s.audience_id);
    w.Key("audience_key");
    Str(w, s.audience_key);
    w.Key("context_kind");
    Str(w, s.context_kind);
    Count(w, "members", s.included);
    Count(w, "pending", s.pending);
    Count(w, "dead_letters", s.dead);
    w.Key("status");
    Str(w, ToString(StatusOf(s)));
    w.Key("last_synced_at");
    Time(w, s.last_synced_ms);
    w.Key("last_error");
    OptStr(w, s.last_error);
    if (detail) {
        w.Key("counts");
        w.StartObject();
        Count(w, "included", s.included);
        Count(w, "excluded", s.excluded);
        Count(w, "pending", s.pending);
        Count(w, "retrying", s.retrying);
        Count(w, "dead", s.dead);
        w.EndObject();
        w.Key("next_retry_at");
        Time(w, s.next_retry_ms);
    }
    w.Key("targets");
    w.StartArray();
    for (const auto& t : s.targets) {
        w.StartObject();
        w.Key("target");
        Str(w, t.target);
        w.Key("platform");
        Str(w, t.platform);
        w.Key("status");
        Str(w, t.segment_status != "ok"                   ? t.segment_status
               : t.target_status != "ok" && t.pending > 0 ? t.target_status
               : t.pending == 0                           ? "in_sync"
               : t.retrying > 0                           ? "retrying"
                                                          : "syncing");
        Count(w, "pending", t.pending);
        Count(w, "retrying", t.retrying);
        Count(w, "dead_letters", t.dead);
        w.Key("last_synced_at");
        Time(w, t.last_synced_ms);
        w.Key("last_error");
        OptStr(w, t.segment_error ? t.segment_error : t.last_error);
        w.Key("limit");
        OptStr(w, t.limit_name);
        w.Key("next_retry_at");
        Time(w, t.next_retry_ms);
        w.EndObject();
    }
    w.EndArray();
    w.EndObject();
}

void WriteLastPush(JsonWriter& w, const std::optional<int64_t>& at,
                   const std::optional<int64_t>& status, const std::optional<std::string>& error) {
    if (at) {
        w.StartObject();
        w.Key("status");
        OptInt(w, status);
        w.Key("at");
        Time(w, at);
        w.Key("error");
        OptStr(w, error);
        w.EndObject();
    } else {
        w.Null();
    }
}

void WriteDeliveries(JsonWriter& w, const store::MemberRow& m) {
    w.Key("targets");
    w.StartArray();
    for (const auto& d : m.deliveries) {
        w.StartObject();
        w.Key("target");
        Str(w, d.target);
        w.Key("acknowledged");
        if (d.acked) {
            Str(w, StateName(*d.acked));
        } else {
            w.Null();
        }
        w.Key("pending");
        w.Bool(d.pending);
        w.Key("dead");
        w.Bool(d.dead);
        Count(w, "attempts", d.attempts);
        w.Key("next_attempt_at");
        Time(w, d.pending && d.attempts > 0 ? std::optional<int64_t>(d.next_attempt_ms)
                                            : std::nullopt);
        w.Key("last_push");
        WriteLastPush(w, d.last_push_ms, d.last_status, d.last_error);
        w.EndObject();
    }
    w.EndArray();
}

// `payload`: the deciding event as stored (already valid, depth-limited JSON).
void WriteMember(JsonWriter& w, const store::MemberRow& m,
                 const std::optional<std::string>* payload = nullptr) {
    w.StartObject();
    Count(w, "segment_id", m.segment_id);
    w.Key("context_key");
    Str(w, m.context_key);
    w.Key("state");
    Str(w, StateName(m.desired));
    w.Key("acknowledged");
    if (m.acked) {
        Str(w, StateName(*m.acked));
    } else {
        w.Null();
    }
    w.Key("pending");
    w.Bool(m.pending());
    w.Key("dead");
    w.Bool(m.dead);
    Count(w, "version", m.version);
    w.Key("deciding_event");
    w.StartObject();
    w.Key("message_id");
    Str(w, m.message_id);
    w.Key("event_time");
    Time(w, m.event_ms);
    w.Key("received_at");
    Time(w, m.received_ms);
    if (payload != nullptr) {
        w.Key("payload");
        if (*payload) {
            w.RawValue((*payload)->data(), (*payload)->size(), rapidjson::kObjectType);
        } else {
            w.Null();
        }
    }
    w.EndObject();
    // The latest later event that changed nothing (a duplicate or a stale event).
    w.Key("ignored_event");
    if (m.ignored_message_id) {
        w.StartObject();
        w.Key("message_id");
        Str(w, *m.ignored_message_id);
        w.Key("outcome");
        OptStr(w, m.ignored_outcome);
        w.Key("received_at");
        Time(w, m.ignored_ms);
        w.EndObject();
    } else {
        w.Null();
    }
    Count(w, "attempts", m.attempts);
    w.Key("next_attempt_at");
    Time(w,
         m.pending() && m.attempts > 0 ? std::optional<int64_t>(m.next_attempt_ms) : std::nullopt);
    w.Key("last_push");
    WriteLastPush(w, m.last_push_ms, m.last_status, m.last_error);
    WriteDeliveries(w, m);
    w.EndObject();
}

void WriteDeadLetter(JsonWriter& w, const store::MemberRow& m) {
    w.StartObject();
    w.Key("id");
    Str(w, std::to_string(m.segment_id) + ":" + m.context_key);
    Count(w, "segment_id", m.segment_id);
    w.Key("context_key");
    Str(w, m.context_key);
    w.Key("state");
    Str(w, StateName(m.desired));
    w.Key("status");
    OptInt(w, m.last_status);
    w.Key("error");
    OptStr(w, m.last_error);
    w.Key("at");
    Time(w, m.last_push_ms);
    w.Key("targets");
    w.StartArray();
    for (const auto& d : m.deliveries) {
        if (d.dead) Str(w, d.target);
    }
    w.EndArray();
    w.EndObject();
}

void WriteTarget(JsonWriter& w, const config::Target& t, const store::TargetRow* row) {
    w.StartObject();
    w.Key("id");
    Str(w, t.id);
    w.Key("platform");
    Str(w, t.platform);
    w.Key("api_base");
    Str(w, t.api_base);
    if (t.platform == "launchdarkly") {
        w.Key("service_token");
        Str(w, kRedacted);
        w.Key("client_side_id");
        Str(w, t.client_side_id);
        w.Key("clientsdk_base");
        Str(w, t.clientsdk_base);
    } else if (t.platform == "flagsmith") {
        w.Key("environment_key");
        Str(w, kRedacted);
        w.Key("trait_prefix");
        Str(w, t.trait_prefix);
        w.Key("flagsmith_api");
        Str(w, t.flagsmith_api);
    } else if (t.platform == "configcat") {
        w.Key("api_user");
        Str(w, kRedacted);
        w.Key("api_password");
        Str(w, kRedacted);
        w.Key("product_id");
        Str(w, t.product_id);
        w.Key("max_list_items");
        w.Int(t.max_list_items);
    } else if (t.platform == "unleash") {
        w.Key("api_token");
        Str(w, kRedacted);
        w.Key("context_name");
        Str(w, t.context_name);
        w.Key("project");
        Str(w, t.project);
        w.Key("max_list_items");
        w.Int(t.max_list_items);
    } else if (t.platform == "statsig") {
        w.Key("console_api_key");
        Str(w, kRedacted);
        w.Key("id_type");
        Str(w, t.id_type);
    }
    w.Key("max_batch");
    w.Int(t.max_batch);
    w.Key("max_in_flight");
    w.Int(t.max_in_flight);
    const bool paused = row != nullptr && row->paused_until_ms > text::NowMs();
    w.Key("status");
    Str(w, row ? row->status : "ok");
    w.Key("last_success_at");
    Time(w, row ? row->last_success_ms : std::nullopt);
    w.Key("last_error");
    OptStr(w, row ? row->last_error : std::nullopt);
    w.Key("paused_until");
    Time(w, paused ? std::optional<int64_t>(row->paused_until_ms) : std::nullopt);
    Count(w, "pending", row ? row->pending : 0);
    Count(w, "retrying", row ? row->retrying : 0);
    Count(w, "dead_letters", row ? row->dead : 0);
    Count(w, "segments_over_limit", row ? row->over_limit_segments : 0);
    w.EndObject();
}

// The state of a destination's reports to Segment (counts, health).
void WriteReportSummary(JsonWriter& w, const store::ReportSummary& r) {
    const bool paused = r.paused_until_ms > text::NowMs();
    w.Key("status");
    Str(w, r.status);
    w.Key("paused_until");
    Time(w, paused ? std::optional<int64_t>(r.paused_until_ms) : std::nullopt);
    w.Key("last_success_at");
    Time(w, r.last_success_ms);
    w.Key("last_error");
    OptStr(w, r.last_error);
    Count(w, "pending", r.pending);
    Count(w, "sent", r.sent);
    Count(w, "dead", r.dead);
    w.Key("oldest_pending_at");
    Time(w, r.oldest_pending_ms);
}

void WriteReportSettings(JsonWriter& w, const config::SegmentReport& settings,
                         const store::ReportSummary& r) {
    w.StartObject();
    w.Key("api_base");
    Str(w, settings.api_base);
    w.Key("write_key");
    Str(w, kRedacted);
    w.Key("max_batch");
    w.Int(settings.max_batch);
    WriteReportSummary(w, r);
    w.EndObject();
}

void WriteDestination(JsonWriter& w, const DestinationView& v) {
    const config::Destination& d = v.destination;
    const store::DestinationRow* row = v.state ? &*v.state : nullptr;
    w.StartObject();
    w.Key("id");
    Str(w, d.id);
    w.Key("context_kind");
    Str(w, d.context_kind);
    w.Key("context_key");
    Str(w, config::ToString(d.context_key));
    w.Key("write_keys");
    w.StartArray();
    for (size_t i = 0; i < d.write_key_count; ++i) Str(w, kRedacted);
    w.EndArray();
    w.Key("shared_secret");
    if (!d.has_shared_secret) {
        w.Null();
    } else {
        Str(w, kRedacted);
    }
    w.Key("webhook_token");
    if (d.has_webhook_token) {
        Str(w, kRedacted);
    } else {
        w.Null();
    }
    w.Key("audience_url_key");
    if (d.has_audience_url_key) {
        Str(w, kRedacted);
    } else {
        w.Null();
    }
    // The next values of a rotation under way.
    for (const auto& [name, has] :
         {std::pair{"shared_secret_next", d.has_shared_secret_next},
          std::pair{"webhook_token_next", d.has_webhook_token_next},
          std::pair{"audience_url_key_next", d.has_audience_url_key_next}}) {
        w.Key(name);
        if (has) {
            Str(w, kRedacted);
        } else {
            w.Null();
        }
    }
    w.Key("webhook_signature");
    Str(w, config::ToString(d.webhook_signature));
    w.Key("audience_context_kinds");
    w.StartObject();
    for (const auto& [k, kind] : d.audience_context_kinds) {
        Str(w, k);  // as a key
        Str(w, kind);
    }
    w.EndObject();
    const bool paused = row != nullptr && row->paused_until_ms > text::NowMs();
    w.Key("status");
    Str(w, row ? row->status : "ok");
    w.Key("last_success_at");
    Time(w, row ? row->last_success_ms : std::nullopt);
    w.Key("last_error");
    OptStr(w, row ? row->last_error : std::nullopt);
    w.Key("paused_until");
    Time(w, paused ? std::optional<int64_t>(row->paused_until_ms) : std::nullopt);
    w.Key("targets");
    w.StartArray();
    for (const auto& t : d.targets) {
        const store::TargetRow* trow = nullptr;
        if (row != nullptr) {
            for (const auto& r : row->targets) {
                if (r.id == t.id) trow = &r;
            }
        }
        WriteTarget(w, t, trow);
    }
    w.EndArray();
    w.Key("report_to_segment");
    if (d.report.enabled) {
        WriteReportSettings(w, d.report, v.reports ? *v.reports : store::ReportSummary{});
    } else {
        w.Null();
    }
    w.EndObject();
}

template <typename F>
std::string Render(F&& f) {
    rapidjson::StringBuffer b;
    JsonWriter w(b);
    f(w);
    return {b.GetString(), b.GetSize()};
}

template <typename Row, typename WriteRow>
std::string Page(const char* key, const std::vector<Row>& rows,
                 const std::optional<std::string>& next_cursor, WriteRow write) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key(key);
        w.StartArray();
        for (const auto& row : rows) write(w, row);
        w.EndArray();
        w.Key("next_cursor");
        OptStr(w, next_cursor);
        w.EndObject();
    });
}

}  // namespace

std::string ToJson(const store::SegmentSummary& segment) {
    return Render([&](JsonWriter& w) { WriteSegment(w, segment, false); });
}

std::string ToJson(const SegmentList& list) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("segments");
        w.StartArray();
        for (const auto& s : list.segments) WriteSegment(w, s, false);
        w.EndArray();
        w.Key("next_cursor");
        OptStr(w, list.next_cursor);
        // Stored events the segments do not show yet.
        w.Key("backlog");
        w.StartObject();
        Count(w, "events", list.backlog.events);
        w.Key("oldest_received_at");
        Time(w, list.backlog.oldest_received_ms);
        w.Key("age_seconds");
        w.Double(list.backlog.oldest_received_ms
                     ? std::max<double>(0, static_cast<double>(text::NowMs() -
                                                               *list.backlog.oldest_received_ms) /
                                               1000.0)
                     : 0.0);
        Count(w, "max_events", list.max_backlog_events);
        Count(w, "max_seconds", list.max_backlog_seconds);
        w.Key("admitting");
        w.Bool(list.admitting);
        w.EndObject();
        w.Key("storage");
        w.StartObject();
        Count(w, "max_wal_bytes", list.max_wal_bytes);
        w.Key("files");
        w.StartArray();
        for (const auto& f : list.storage) {
            w.StartObject();
            w.Key("file");
            w.String(f.file);
            Count(w, "bytes", f.bytes);
            w.EndObject();
        }
        w.EndArray();
        w.EndObject();
        w.EndObject();
    });
}

std::string ToJson(const SegmentDetail& detail) {
    return Render([&](JsonWriter& w) { WriteSegment(w, detail.segment, true); });
}

std::string ToJson(const store::MemberRow& member) {
    return Render([&](JsonWriter& w) { WriteMember(w, member); });
}

std::string ToJson(const MemberPage& page) {
    return Page("members", page.members, page.next_cursor,
                [](JsonWriter& w, const store::MemberRow& m) { WriteMember(w, m); });
}

std::string ToJson(const MemberDetail& detail) {
    return Render([&](JsonWriter& w) { WriteMember(w, detail.member, &detail.event_payload); });
}

std::string ToJson(const ContextView& view) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("context_key");
        Str(w, view.context_key);
        w.Key("segments");
        w.StartArray();
        for (const auto& [seg, member] : view.segments) {
            w.StartObject();
            w.Key("segment");
            WriteSegment(w, seg, false);
            w.Key("member");
            WriteMember(w, member);
            w.EndObject();
        }
        w.EndArray();
        w.Key("next_cursor");
        OptStr(w, view.next_cursor);
        w.EndObject();
    });
}

std::string ToJson(const DestinationView& view) {
    return Render([&](JsonWriter& w) { WriteDestination(w, view); });
}

std::string ToJson(const DestinationList& list) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("destinations");
        w.StartArray();
        for (const auto& d : list.destinations) WriteDestination(w, d);
        w.EndArray();
        w.EndObject();
    });
}

std::string DeadLetterJson(const store::MemberRow& dead_letter) {
    return Render([&](JsonWriter& w) { WriteDeadLetter(w, dead_letter); });
}

std::string ToJson(const DeadLetterPage& page) {
    return Page("dead_letters", page.dead_letters, page.next_cursor, WriteDeadLetter);
}

std::string ToJson(const DeadLetterChange& change) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        Count(w, change.retry ? "retried" : "discarded", change.changed);
        w.Key("not_found");
        w.StartArray();
        for (const auto& id : change.not_found) Str(w, id);
        w.EndArray();
        w.EndObject();
    });
}

std::string ToJson(const ReplayReport& report) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("dry_run");
        w.Bool(report.dry_run);
        w.Key("segments");
        w.StartArray();
        for (const auto& e : report.segments) {
            w.StartObject();
            w.Key("segment");
            WriteSegment(w, e.segment, false);
            Count(w, "adds", e.adds);
            Count(w, "removes", e.removes);
            w.Key("sample");
            w.StartArray();
            for (const auto& key : e.sample) Str(w, key);
            w.EndArray();
            w.Key("targets");
            w.StartArray();
            for (const auto& t : e.targets) {
                w.StartObject();
                w.Key("target");
                Str(w, t.target);
                w.Key("platform");
                Str(w, t.platform);
                Count(w, "members", t.members);
                w.EndObject();
            }
            w.EndArray();
            w.EndObject();
        }
        w.EndArray();
        w.Key("target");
        if (report.target) {
            Str(w, *report.target);
        } else {
            w.Null();
        }
        Count(w, "adds", report.adds);
        Count(w, "removes", report.removes);
        Count(w, "marked", report.marked);
        w.EndObject();
    });
}

std::string ToJson(const PushReport& report) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        Count(w, "segments", report.segments);
        Count(w, "marked", report.marked);
        Count(w, "pushed", report.acknowledged);
        Count(w, "pending", report.pending);
        Count(w, "dead_letters", report.dead_letters);
        w.Key("paused");
        w.StartArray();
        for (const auto& p : report.paused) Str(w, p);
        w.EndArray();
        w.EndObject();
    });
}

std::string ToJson(const SegmentDeletion& deletion) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        Count(w, "segment_id", deletion.segment_id);
        Count(w, "members_deleted", deletion.members);
        w.Key("emptied_on_platform");
        w.Bool(deletion.emptied_on_platform);
        w.EndObject();
    });
}

std::string ToJson(const Resumed& resumed) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("destination");
        Str(w, resumed.destination);
        w.Key("target");
        OptStr(w, resumed.target);
        Count(w, "pending", resumed.pending);
        w.EndObject();
    });
}

std::string ToJson(const ReportView& view) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("destination");
        Str(w, view.destination);
        w.Key("enabled");
        w.Bool(view.enabled);
        WriteReportSummary(w, view.summary);
        w.Key("dead_reports");
        w.StartArray();
        for (const auto& d : view.dead) {
            w.StartObject();
            w.Key("message_id");
            Str(w, d.row.message_id);
            w.Key("user_id");
            Str(w, d.row.user_id);
            w.Key("audience_id");
            Str(w, d.row.audience_id);
            w.Key("audience_key");
            Str(w, d.row.audience_key);
            w.Key("target");
            Str(w, d.row.target);
            w.Key("included");
            w.Bool(d.row.included);
            w.Key("synced_at");
            Time(w, d.row.synced_ms);
            w.Key("status");
            if (d.status) {
                w.Int64(*d.status);
            } else {
                w.Null();
            }
            w.Key("error");
            OptStr(w, d.error);
            w.EndObject();
        }
        w.EndArray();
        w.EndObject();
    });
}

std::string ToJson(const ReportChange& change) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("destination");
        Str(w, change.destination);
        w.Key(change.retry ? "retried" : "discarded");
        w.Int64(change.changed);
        w.EndObject();
    });
}

std::string ToJson(const PushList& list) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("pushes");
        w.StartArray();
        for (const auto& p : list.pushes) {
            w.StartObject();
            w.Key("at");
            Time(w, p.at_ms);
            w.Key("destination");
            Str(w, p.destination);
            w.Key("target");
            Str(w, p.target);
            w.Key("platform");
            Str(w, p.platform);
            Count(w, "segment_id", p.segment_id);
            w.Key("audience_key");
            Str(w, p.audience_key);
            w.Key("context_kind");
            Str(w, p.context_kind);
            Count(w, "adds", static_cast<int64_t>(p.adds));
            Count(w, "removes", static_cast<int64_t>(p.removes));
            w.Key("status");
            OptInt(w, p.status == 0 ? std::nullopt : std::optional<int64_t>(p.status));
            w.Key("outcome");
            Str(w, p.outcome);
            w.Key("message");
            OptStr(w, p.message.empty() ? std::nullopt : std::optional<std::string>(p.message));
            Count(w, "duration_ms", p.duration_ms);
            w.EndObject();
        }
        w.EndArray();
        Count(w, "kept", static_cast<int64_t>(list.kept));
        w.EndObject();
    });
}

std::string ToJson(const FutureTimesRepair& repair) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("dry_run");
        w.Bool(repair.dry_run);
        Count(w, "members", repair.members);
        Count(w, "skew_seconds", repair.skew_seconds);
        w.EndObject();
    });
}

std::string ToJson(const EventReplayReport& r) {
    return Render([&](JsonWriter& w) {
        w.StartObject();
        w.Key("dry_run");
        w.Bool(r.dry_run);
        Count(w, "events", static_cast<int64_t>(r.events));
        if (r.dry_run) {
            Count(w, "accepted", static_cast<int64_t>(r.accepted));
            Count(w, "duplicates", static_cast<int64_t>(r.duplicates));
            Count(w, "stale", static_cast<int64_t>(r.stale));
        } else {
            Count(w, "stored", static_cast<int64_t>(r.stored));
            w.Key("applied");
            w.Bool(r.applied);
        }
        Count(w, "not_applicable", static_cast<int64_t>(r.not_applicable));
        w.Key("not_applicable_reasons");
        w.StartObject();
        for (const auto& [reason, n] : r.not_applicable_reasons) {
            Str(w, reason);
            w.Int64(static_cast<int64_t>(n));
        }
        w.EndObject();
        Count(w, "rejected", static_cast<int64_t>(r.rejected));
        w.Key("rejected_by_reason");
        w.StartObject();
        for (const auto& [reason, n] : r.rejected_by_reason) {
            Str(w, reason);
            w.Int64(static_cast<int64_t>(n));
        }
        w.EndObject();
        w.Key("rejections");
        w.StartArray();
        for (const auto& x : r.first_rejections) {
            w.StartObject();
            Count(w, "line", static_cast<int64_t>(x.line));
            Count(w, "index", static_cast<int64_t>(x.index));
            w.Key("messageId");
            Str(w, x.message_id);
            w.Key("reason");
            Str(w, x.reason);
            w.Key("detail");
            Str(w, x.detail);
            w.EndObject();
        }
        w.EndArray();
        if (r.stream_error) {
            w.Key("stream_error");
            Str(w, *r.stream_error);
        }
        w.EndObject();
    });
}

}  // namespace audsync::admin
