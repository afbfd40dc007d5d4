#include "audsync/admin/admin.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdlib>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/sync/engine.hpp"

namespace audsync::admin {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr int kDefaultLimit = 100;
constexpr int kMaxLimit = 1000;
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

const char* StateName(bool included) { return included ? "included" : "excluded"; }

void WriteSegment(JsonWriter& w, const store::SegmentSummary& s, bool detail) {
    w.StartObject();
    w.Key("id");
    w.Int64(s.id);
    w.Key("destination");
    Str(w, s.destination);
    w.Key("audience_id");
    Str(w, s.audience_id);
    w.Key("audience_key");
    Str(w, s.audience_key);
    w.Key("context_kind");
    Str(w, s.context_kind);
    w.Key("members");
    w.Int64(s.included);
    w.Key("pending");
    w.Int64(s.pending);
    w.Key("dead_letters");
    w.Int64(s.dead);
    w.Key("status");
    Str(w, SegmentStatus(s));
    w.Key("last_synced_at");
    Time(w, s.last_synced_ms);
    w.Key("last_error");
    OptStr(w, s.last_error);
    if (detail) {
        w.Key("counts");
        w.StartObject();
        w.Key("included");
        w.Int64(s.included);
        w.Key("excluded");
        w.Int64(s.excluded);
        w.Key("pending");
        w.Int64(s.pending);
        w.Key("retrying");
        w.Int64(s.retrying);
        w.Key("dead");
        w.Int64(s.dead);
        w.EndObject();
        w.Key("next_retry_at");
        Time(w, s.next_retry_ms);
    }
    w.EndObject();
}

void WriteMember(JsonWriter& w, const store::MemberRow& m) {
    w.StartObject();
    w.Key("segment_id");
    w.Int64(m.segment_id);
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
    w.Key("version");
    w.Int64(m.version);
    w.Key("deciding_event");
    w.StartObject();
    w.Key("message_id");
    Str(w, m.message_id);
    w.Key("event_time");
    Time(w, m.event_ms);
    w.Key("received_at");
    Time(w, m.received_ms);
    w.EndObject();
    w.Key("attempts");
    w.Int64(m.attempts);
    w.Key("next_attempt_at");
    Time(w,
         m.pending() && m.attempts > 0 ? std::optional<int64_t>(m.next_attempt_ms) : std::nullopt);
    w.Key("last_push");
    if (m.last_push_ms) {
        w.StartObject();
        w.Key("status");
        OptInt(w, m.last_status);
        w.Key("at");
        Time(w, m.last_push_ms);
        w.Key("error");
        OptStr(w, m.last_error);
        w.EndObject();
    } else {
        w.Null();
    }
    w.EndObject();
}

void WriteDeadLetter(JsonWriter& w, const store::MemberRow& m) {
    w.StartObject();
    w.Key("id");
    Str(w, std::to_string(m.segment_id) + ":" + m.context_key);
    w.Key("segment_id");
    w.Int64(m.segment_id);
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
    w.EndObject();
}

std::string Done(const rapidjson::StringBuffer& b) { return {b.GetString(), b.GetSize()}; }

// One page of a keyset listing: `rows` holds up to limit + 1 rows; the extra one only
// says that another page exists, whose cursor is the position of the last row shown.
template <typename WriteRow, typename Position>
std::string Page(const char* key, std::vector<store::MemberRow> rows, int limit, WriteRow write,
                 Position position) {
    bool more = rows.size() > static_cast<size_t>(limit);
    if (more) rows.pop_back();
    rapidjson::StringBuffer b;
    JsonWriter w(b);
    w.StartObject();
    w.Key(key);
    w.StartArray();
    for (const auto& row : rows) write(w, row);
    w.EndArray();
    w.Key("next_cursor");
    if (more) {
        Str(w, EncodeCursor(position(rows.back())));
    } else {
        w.Null();
    }
    w.EndObject();
    return Done(b);
}

Error BadRequest(const std::string& message) {
    return MakeError(ErrorCode::kInvalidBody, "invalid_request", message);
}

Error NotFound(const std::string& what) {
    return MakeError(ErrorCode::kNotFound, "not_found", what);
}

Result<int> Limit(const Query& q) {
    auto it = q.find("limit");
    if (it == q.end()) return kDefaultLimit;
    char* end = nullptr;
    long v = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || v < 1 || v > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    return static_cast<int>(v);
}

std::optional<std::string> Get(const Query& q, const char* name) {
    auto it = q.find(name);
    if (it == q.end()) return std::nullopt;
    return it->second;
}

template <typename F>
Result<std::string> Guard(F&& f) {
    try {
        return f();
    } catch (const store::SqliteError&) {
        return MakeError(ErrorCode::kUnavailable, "storage_unavailable",
                         "the database could not be read");
    }
}

}  // namespace

std::optional<store::MemberState> ParseMemberState(std::string_view name) {
    if (name == "included") return store::MemberState::kIncluded;
    if (name == "excluded") return store::MemberState::kExcluded;
    if (name == "pending") return store::MemberState::kPending;
    if (name == "dead") return store::MemberState::kDead;
    return std::nullopt;
}

std::string SegmentStatus(const store::SegmentSummary& s) {
    if (s.destination_status == "auth_failed" && s.pending > 0) return "auth_failed";
    if (s.pending == 0) return "in_sync";
    if (s.retrying > 0) return "retrying";
    return "syncing";
}

std::string SegmentJson(const store::SegmentSummary& s, bool detail) {
    rapidjson::StringBuffer b;
    JsonWriter w(b);
    WriteSegment(w, s, detail);
    return Done(b);
}

std::string MemberJson(const store::MemberRow& m) {
    rapidjson::StringBuffer b;
    JsonWriter w(b);
    WriteMember(w, m);
    return Done(b);
}

std::string DeadLetterJson(const store::MemberRow& m) {
    rapidjson::StringBuffer b;
    JsonWriter w(b);
    WriteDeadLetter(w, m);
    return Done(b);
}

std::string DestinationJson(const config::Destination& d, const store::DestinationRow* row) {
    rapidjson::StringBuffer b;
    JsonWriter w(b);
    w.StartObject();
    w.Key("id");
    Str(w, d.id);
    w.Key("platform");
    Str(w, d.platform);
    w.Key("service_token");
    Str(w, kRedacted);
    w.Key("client_side_id");
    Str(w, d.client_side_id);
    w.Key("api_base");
    Str(w, d.api_base);
    w.Key("clientsdk_base");
    Str(w, d.clientsdk_base);
    w.Key("context_kind");
    Str(w, d.context_kind);
    w.Key("context_key");
    Str(w, config::ToString(d.context_key));
    w.Key("write_keys");
    w.StartArray();
    for (size_t i = 0; i < d.write_keys.size(); ++i) Str(w, kRedacted);
    w.EndArray();
    w.Key("shared_secret");
    if (d.shared_secret.empty()) {
        w.Null();
    } else {
        Str(w, kRedacted);
    }
    w.Key("max_batch");
    w.Int(d.max_batch);
    w.Key("max_in_flight");
    w.Int(d.max_in_flight);
    w.Key("audience_context_kinds");
    w.StartObject();
    for (const auto& [k, v] : d.audience_context_kinds) {
        Str(w, k);  // as a key
        Str(w, v);
    }
    w.EndObject();
    w.Key("status");
    Str(w, row ? row->status : "ok");
    w.Key("last_success_at");
    Time(w, row ? row->last_success_ms : std::nullopt);
    w.Key("last_error");
    OptStr(w, row ? row->last_error : std::nullopt);
    w.Key("paused_until");
    Time(w, row && row->paused_until_ms > text::NowMs()
                ? std::optional<int64_t>(row->paused_until_ms)
                : std::nullopt);
    w.EndObject();
    return Done(b);
}

std::string EncodeCursor(std::string_view raw) {
    std::string s = text::Base64Encode(raw);
    while (!s.empty() && s.back() == '=') s.pop_back();
    for (char& c : s) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    return s;
}

std::optional<std::string> DecodeCursor(std::string_view cursor) {
    std::string s(cursor);
    for (char& c : s) {
        if (c == '-') {
            c = '+';
        } else if (c == '_') {
            c = '/';
        } else if (c == '+' || c == '/' || c == '=') {
            return std::nullopt;
        }
    }
    return text::Base64Decode(s);
}

Service::Service(const config::Config& config, std::string db_path, WriteRunner write,
                 const ingest::Counters* ingest_counters, const sync::SyncCounters* sync_counters)
    : config_(config),
      db_path_(std::move(db_path)),
      write_(std::move(write)),
      ingest_counters_(ingest_counters),
      sync_counters_(sync_counters) {}

Result<int64_t> Service::SegmentId(const std::string& id, store::Database& db) {
    char* end = nullptr;
    long long v = std::strtoll(id.c_str(), &end, 10);
    if (id.empty() || *end != '\0' || v <= 0) return NotFound("no segment has that id");
    store::SegmentFilter f;
    f.id = v;
    if (store::ListSegments(db, f).empty()) return NotFound("no segment has that id");
    return static_cast<int64_t>(v);
}

Result<std::string> Service::ListSegments(const Query& q) {
    return Guard([&]() -> Result<std::string> {
        store::Database db(db_path_, false);
        store::SegmentFilter f;
        f.destination = Get(q, "destination");
        f.audience_key = Get(q, "audience_key");
        rapidjson::StringBuffer b;
        JsonWriter w(b);
        w.StartObject();
        w.Key("segments");
        w.StartArray();
        for (const auto& s : store::ListSegments(db, f)) WriteSegment(w, s, false);
        w.EndArray();
        w.EndObject();
        return Done(b);
    });
}

Result<std::string> Service::GetSegment(const std::string& id) {
    return Guard([&]() -> Result<std::string> {
        store::Database db(db_path_, false);
        auto sid = SegmentId(id, db);
        if (!sid) return sid.error();
        store::SegmentFilter f;
        f.id = sid.value();
        return SegmentJson(store::ListSegments(db, f).at(0), true);
    });
}

Result<std::string> Service::ListMembers(const std::string& id, const Query& q) {
    return Guard([&]() -> Result<std::string> {
        auto limit = Limit(q);
        if (!limit) return limit.error();
        store::MemberState state = store::MemberState::kAll;
        if (auto s = Get(q, "state")) {
            auto parsed = ParseMemberState(*s);
            if (!parsed) return BadRequest("state must be included, excluded, pending or dead");
            state = *parsed;
        }
        std::optional<std::string> after;
        if (auto c = Get(q, "cursor")) {
            after = DecodeCursor(*c);
            if (!after) return BadRequest("cursor is not one this API returned");
        }
        store::Database db(db_path_, false);
        auto sid = SegmentId(id, db);
        if (!sid) return sid.error();
        // One extra row tells whether another page exists.
        auto rows = store::ListMembers(db, sid.value(), state, after, limit.value() + 1);
        return Page("members", std::move(rows), limit.value(), WriteMember,
                    [](const store::MemberRow& m) { return m.context_key; });
    });
}

Result<std::string> Service::GetMember(const std::string& id, const std::string& key) {
    return Guard([&]() -> Result<std::string> {
        store::Database db(db_path_, false);
        auto sid = SegmentId(id, db);
        if (!sid) return sid.error();
        auto m = store::GetMember(db, sid.value(), key);
        if (!m) return NotFound("that context key was never seen in this segment");
        return MemberJson(*m);
    });
}

Result<std::string> Service::Context(const std::string& key) {
    return Guard([&]() -> Result<std::string> {
        store::Database db(db_path_, false);
        rapidjson::StringBuffer b;
        JsonWriter w(b);
        w.StartObject();
        w.Key("context_key");
        Str(w, key);
        w.Key("segments");
        w.StartArray();
        for (const auto& [seg, member] : store::ContextMemberships(db, key)) {
            w.StartObject();
            w.Key("segment");
            WriteSegment(w, seg, false);
            w.Key("member");
            WriteMember(w, member);
            w.EndObject();
        }
        w.EndArray();
        w.EndObject();
        return Done(b);
    });
}

Result<std::string> Service::ListDestinations() {
    return Guard([&]() -> Result<std::string> {
        store::Database db(db_path_, false);
        auto rows = store::ListDestinations(db);
        std::string out = "{\"destinations\":[";
        bool first = true;
        for (const auto& d : config_.destinations) {
            const store::DestinationRow* row = nullptr;
            for (const auto& r : rows) {
                if (r.id == d.id) row = &r;
            }
            out += first ? "" : ",";
            first = false;
            out += DestinationJson(d, row);
        }
        return out + "]}";
    });
}

Result<std::string> Service::GetDestination(const std::string& id) {
    return Guard([&]() -> Result<std::string> {
        const config::Destination* d = config_.FindDestination(id);
        if (d == nullptr) {
            return MakeError(ErrorCode::kNotFound, "unknown_destination",
                             "no destination has that id");
        }
        store::Database db(db_path_, false);
        auto rows = store::ListDestinations(db);
        for (const auto& r : rows) {
            if (r.id == id) return DestinationJson(*d, &r);
        }
        return DestinationJson(*d, nullptr);
    });
}

Result<std::string> Service::ListDeadLetters(const Query& q) {
    return Guard([&]() -> Result<std::string> {
        auto limit = Limit(q);
        if (!limit) return limit.error();
        store::Database db(db_path_, false);
        std::optional<int64_t> segment;
        if (auto s = Get(q, "segment")) {
            auto sid = SegmentId(*s, db);
            if (!sid) return sid.error();
            segment = sid.value();
        }
        std::optional<std::pair<int64_t, std::string>> after;
        if (auto c = Get(q, "cursor")) {
            auto raw = DecodeCursor(*c);
            size_t colon = raw ? raw->find(':') : std::string::npos;
            if (colon == std::string::npos)
                return BadRequest("cursor is not one this API returned");
            after = std::make_pair(std::strtoll(raw->substr(0, colon).c_str(), nullptr, 10),
                                   raw->substr(colon + 1));
        }
        auto rows = store::ListDeadLetters(db, segment, after, limit.value() + 1);
        return Page("dead_letters", std::move(rows), limit.value(), WriteDeadLetter,
                    [](const store::MemberRow& m) {
                        return std::to_string(m.segment_id) + ":" + m.context_key;
                    });
    });
}

Result<std::string> Service::ChangeDeadLetters(std::string_view body, bool retry) {
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(body, doc, 8));
    if (!doc.IsObject()) return BadRequest("body must be {\"ids\": [...]} or {\"segment\": id}");
    std::vector<std::pair<int64_t, std::optional<std::string>>> targets;
    const rapidjson::Value* ids = json::Find(doc, "ids");
    const rapidjson::Value* segment = json::Find(doc, "segment");
    if ((ids == nullptr) == (segment == nullptr)) {
        return BadRequest("give exactly one of ids and segment");
    }
    if (ids != nullptr) {
        if (!ids->IsArray() || ids->Empty() || ids->Size() > 10000) {
            return BadRequest("ids must be an array of 1 to 10000 dead-letter ids");
        }
        for (const auto& v : ids->GetArray()) {
            std::string id = v.IsString() ? std::string(json::View(v)) : std::string();
            size_t colon = id.find(':');
            char* end = nullptr;
            long long sid = colon == std::string::npos ? 0 : std::strtoll(id.c_str(), &end, 10);
            if (sid <= 0 || end != id.c_str() + colon) {
                return BadRequest("a dead-letter id is \"<segment id>:<context key>\"");
            }
            targets.emplace_back(sid, id.substr(colon + 1));
        }
    } else {
        if (!segment->IsInt64() || segment->GetInt64() <= 0) {
            return BadRequest("segment must be a segment id");
        }
        targets.emplace_back(segment->GetInt64(), std::nullopt);
    }
    int64_t changed = 0;
    Status s = write_([&](store::WriteStore& w) {
        for (const auto& [sid, key] : targets) {
            changed += retry ? w.RetryDeadLetter(sid, key) : w.DiscardDeadLetter(sid, key);
        }
    });
    if (!s) return s.error();
    return std::string(retry ? "{\"retried\":" : "{\"discarded\":") + std::to_string(changed) + "}";
}

Result<std::string> Service::RetryDeadLetters(std::string_view body) {
    return ChangeDeadLetters(body, true);
}

Result<std::string> Service::DiscardDeadLetters(std::string_view body) {
    return ChangeDeadLetters(body, false);
}

Result<std::string> Service::Resync(const std::string& id) {
    return Guard([&]() -> Result<std::string> {
        int64_t sid = 0;
        {
            store::Database db(db_path_, false);
            auto r = SegmentId(id, db);
            if (!r) return r.error();
            sid = r.value();
        }
        int64_t marked = 0;
        Status s = write_([&](store::WriteStore& w) { marked = w.MarkForResync(sid); });
        if (!s) return s.error();
        return "{\"segment_id\":" + std::to_string(sid) + ",\"marked\":" + std::to_string(marked) +
               "}";
    });
}

Result<std::string> Service::Metrics() {
    return Guard([&]() -> Result<std::string> {
        store::Database db(db_path_, false);
        store::SyncGauges g = store::ReadSyncGauges(db);
        std::string out;
        auto metric = [&](const char* name, const char* type, const char* help) {
            out +=
                std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
        };
        auto line = [&](const std::string& name, double value) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.17g", value);
            out += name + " " + buf + "\n";
        };
        if (ingest_counters_ != nullptr) {
            const auto& c = *ingest_counters_;
            metric("audsync_ingest_requests_total", "counter", "Ingest requests answered 200.");
            line("audsync_ingest_requests_total", static_cast<double>(c.requests.load()));
            metric("audsync_events_total", "counter", "Events received, by outcome.");
            line("audsync_events_total{outcome=\"received\"}",
                 static_cast<double>(c.events_received.load()));
            line("audsync_events_total{outcome=\"accepted\"}",
                 static_cast<double>(c.accepted.load()));
            line("audsync_events_total{outcome=\"duplicate\"}",
                 static_cast<double>(c.duplicates.load()));
            line("audsync_events_total{outcome=\"stale\"}", static_cast<double>(c.stale.load()));
            line("audsync_events_total{outcome=\"not_applicable\"}",
                 static_cast<double>(c.not_applicable.load()));
            line("audsync_events_total{outcome=\"rejected\"}",
                 static_cast<double>(c.rejected.load()));
            metric("audsync_events_rejected_total", "counter", "Rejected events, by reason.");
            for (const auto& [reason, n] : c.RejectedByReason()) {
                line("audsync_events_rejected_total{reason=\"" + reason + "\"}",
                     static_cast<double>(n));
            }
        }
        if (sync_counters_ != nullptr) {
            const auto& c = *sync_counters_;
            metric("audsync_pushes_total", "counter", "Pushes to the flag platform, by outcome.");
            line("audsync_pushes_total{outcome=\"ok\"}", static_cast<double>(c.pushes_ok.load()));
            line("audsync_pushes_total{outcome=\"retry\"}",
                 static_cast<double>(c.pushes_retry.load()));
            line("audsync_pushes_total{outcome=\"rate_limited\"}",
                 static_cast<double>(c.pushes_rate_limited.load()));
            line("audsync_pushes_total{outcome=\"auth_failed\"}",
                 static_cast<double>(c.pushes_auth_failed.load()));
            line("audsync_pushes_total{outcome=\"refused\"}",
                 static_cast<double>(c.pushes_refused.load()));
            metric("audsync_members_acknowledged_total", "counter",
                   "Members acknowledged by the platform.");
            line("audsync_members_acknowledged_total",
                 static_cast<double>(c.members_acknowledged.load()));
            metric("audsync_push_duration_seconds", "histogram", "Duration of one push request.");
            auto cumulative = c.push_seconds.Cumulative();
            for (size_t i = 0; i < sync::Histogram::kBuckets; ++i) {
                char le[32];
                std::snprintf(le, sizeof le, "%g", sync::Histogram::kBounds[i]);
                line(std::string("audsync_push_duration_seconds_bucket{le=\"") + le + "\"}",
                     static_cast<double>(cumulative[i]));
            }
            line("audsync_push_duration_seconds_bucket{le=\"+Inf\"}",
                 static_cast<double>(cumulative.back()));
            line("audsync_push_duration_seconds_sum", c.push_seconds.Sum());
            line("audsync_push_duration_seconds_count", static_cast<double>(cumulative.back()));
        }
        metric("audsync_pending_members", "gauge",
               "Members whose state the platform has not acknowledged.");
        line("audsync_pending_members", static_cast<double>(g.pending));
        metric("audsync_dead_letters", "gauge", "Members the platform refused.");
        line("audsync_dead_letters", static_cast<double>(g.dead));
        metric("audsync_sync_lag_seconds", "gauge", "Age of the oldest pending change.");
        double lag =
            g.oldest_pending_received_ms
                ? std::max<double>(
                      0,
                      static_cast<double>(text::NowMs() - *g.oldest_pending_received_ms) / 1000.0)
                : 0;
        line("audsync_sync_lag_seconds", lag);
        return out;
    });
}

}  // namespace audsync::admin
