// The operator core: typed reads and writes on the store for REST and the CLI.
#include "audsync/admin/admin.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inspect.hpp"
#include "audsync/sync/engine.hpp"
#include "audsync/sync/reporter.hpp"

namespace audsync::admin {
namespace {

constexpr int kSampleSize = 5;
constexpr size_t kIdsPerTransaction = 1000;

Error BadRequest(const std::string& message) {
    return MakeError(ErrorCode::kInvalidBody, "invalid_request", message);
}

Error NoSegment() { return MakeError(ErrorCode::kNotFound, "not_found", "no segment has that id"); }

Error Unavailable() {
    return MakeError(ErrorCode::kUnavailable, "storage_unavailable",
                     "the database could not be read");
}

// Runs a read on a connection of its own; SQLite failures become storage_unavailable.
template <typename T, typename F>
Result<T> Read(const std::string& path, F&& f) {
    try {
        store::Database db(path, false);
        // A read walks its rows once (a count in slices, a page of members): a large
        // page cache would only add to the server's memory for as long as it runs.
        db.SetCacheKiB(2048);
        return f(db);
    } catch (const store::SqliteError&) {
        return Unavailable();
    }
}

std::optional<store::SegmentSummary> FindSegment(store::Database& db, int64_t id) {
    store::SegmentFilter f;
    f.id = id;
    auto rows = store::ListSegments(db, f);
    if (rows.empty()) return std::nullopt;
    return rows.front();
}

// The stored event with every "writeKey" member removed, at any depth.
std::string WithoutCredentials(const std::string& raw) {
    rapidjson::Document doc;
    if (!json::Parse(raw, doc, 64)) return "{}";
    std::vector<rapidjson::Value*> stack{&doc};
    while (!stack.empty()) {
        rapidjson::Value* v = stack.back();
        stack.pop_back();
        if (v->IsObject()) {
            v->RemoveMember("writeKey");
            for (auto& m : v->GetObject()) stack.push_back(&m.value);
        } else if (v->IsArray()) {
            for (auto& e : v->GetArray()) stack.push_back(&e);
        }
    }
    return json::Serialize(doc);
}

}  // namespace

std::string_view ToString(SegmentStatus status) {
    switch (status) {
        case SegmentStatus::kInSync:
            return "in_sync";
        case SegmentStatus::kSyncing:
            return "syncing";
        case SegmentStatus::kRetrying:
            return "retrying";
        case SegmentStatus::kAuthFailed:
            return "auth_failed";
        case SegmentStatus::kOverLimit:
            return "over_limit";
        case SegmentStatus::kRefused:
            return "refused";
    }
    return "in_sync";
}

SegmentStatus StatusOf(const store::SegmentSummary& s) {
    for (const auto& t : s.targets) {
        if (t.segment_status == "over_limit") return SegmentStatus::kOverLimit;
    }
    for (const auto& t : s.targets) {
        if (t.segment_status == "refused") return SegmentStatus::kRefused;
    }
    for (const auto& t : s.targets) {
        if (t.target_status == "auth_failed" && t.pending > 0) return SegmentStatus::kAuthFailed;
    }
    if (s.pending == 0) return SegmentStatus::kInSync;
    if (s.retrying > 0) return SegmentStatus::kRetrying;
    return SegmentStatus::kSyncing;
}

std::optional<store::MemberState> ParseMemberState(std::string_view name) {
    if (name == "included") return store::MemberState::kIncluded;
    if (name == "excluded") return store::MemberState::kExcluded;
    if (name == "pending") return store::MemberState::kPending;
    if (name == "dead") return store::MemberState::kDead;
    return std::nullopt;
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

Result<int64_t> ParseId(std::string_view text, std::string_view what) {
    std::string s(text);
    char* end = nullptr;
    errno = 0;
    long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE || v <= 0 || s[0] == '+' || s[0] == ' ') {
        return BadRequest(std::string(what) + " must be a positive whole number, not \"" +
                          s.substr(0, 64) + "\"");
    }
    return static_cast<int64_t>(v);
}

Result<std::pair<int64_t, std::string>> ParseDeadLetterId(std::string_view id) {
    size_t colon = id.find(':');
    if (colon == std::string_view::npos || colon + 1 >= id.size()) {
        return BadRequest("a dead-letter id is \"<segment id>:<context key>\", not \"" +
                          std::string(id.substr(0, 64)) + "\"");
    }
    auto sid = ParseId(id.substr(0, colon), "the segment id of a dead-letter id");
    if (!sid) {
        return BadRequest("a dead-letter id is \"<segment id>:<context key>\", not \"" +
                          std::string(id.substr(0, 64)) + "\"");
    }
    return std::make_pair(sid.value(), std::string(id.substr(colon + 1)));
}

Service::Service(std::shared_ptr<const config::Config> config, std::string db_path,
                 WriteRunner write, const ingest::Counters* ingest_counters,
                 const sync::SyncCounters* sync_counters,
                 const store::ApplierCounters* applier_counters,
                 const sync::ReporterCounters* reporter_counters)
    : config_(std::move(config)),
      db_path_(std::move(db_path)),
      write_(std::move(write)),
      ingest_counters_(ingest_counters),
      sync_counters_(sync_counters),
      applier_counters_(applier_counters),
      reporter_counters_(reporter_counters) {}

void Service::SetConfig(std::shared_ptr<const config::Config> config) {
    std::lock_guard<std::mutex> lock(mu_);
    config_ = std::move(config);
}

void Service::SetNotify(Notify notify) {
    std::lock_guard<std::mutex> lock(mu_);
    notify_ = std::move(notify);
}

std::shared_ptr<const config::Config> Service::config() const {
    std::lock_guard<std::mutex> lock(mu_);
    return config_;
}

namespace {

// The segment id after which a page starts, from its cursor.
Result<std::optional<int64_t>> AfterId(const PageQuery& page) {
    if (page.limit < 1 || page.limit > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    if (!page.cursor) return std::optional<int64_t>();
    auto raw = DecodeCursor(*page.cursor);
    auto id = raw ? ParseId(*raw, "cursor") : Result<int64_t>(BadRequest("bad cursor"));
    if (!id) return BadRequest("cursor is not one this API returned");
    return std::optional<int64_t>(id.value());
}

}  // namespace

Result<SegmentList> Service::ListSegments(const store::SegmentFilter& filter,
                                          const PageQuery& page) {
    auto after = AfterId(page);
    if (!after) return after.error();
    return Read<SegmentList>(db_path_, [&](store::Database& db) -> Result<SegmentList> {
        store::SegmentFilter f = filter;
        f.after_id = after.value();
        f.limit = page.limit + 1;  // one extra row tells whether another page exists
        SegmentList list;
        list.segments = store::ListSegments(db, f);
        list.backlog = store::ReadBacklog(db, store::InboxPath(db_path_));
        const auto cfg = config();
        const ingest::BacklogLimits bounds{static_cast<int64_t>(cfg->limits.max_backlog_events),
                                           cfg->limits.max_backlog_seconds};
        list.max_backlog_events = bounds.max_events;
        list.max_backlog_seconds = bounds.max_seconds;
        if (admission_ != nullptr) {
            list.admitting = admission_->Current(bounds).admitting;
        } else {
            ingest::BacklogView v;
            v.events = list.backlog.events;
            v.age_ms = list.backlog.oldest_received_ms
                           ? std::max<int64_t>(0, text::NowMs() - *list.backlog.oldest_received_ms)
                           : 0;
            // Without the server's gate: would one more event be admitted?
            list.admitting = ingest::Decide(v, 1, bounds, false).admit;
        }
        list.storage = store::StorageSizes(db_path_);
        list.max_wal_bytes = static_cast<int64_t>(cfg->limits.max_wal_bytes);
        if (list.segments.size() > static_cast<size_t>(page.limit)) {
            list.segments.pop_back();
            list.next_cursor = EncodeCursor(std::to_string(list.segments.back().id));
        }
        return list;
    });
}

Result<SegmentDetail> Service::GetSegment(int64_t id) {
    return Read<SegmentDetail>(db_path_, [&](store::Database& db) -> Result<SegmentDetail> {
        auto s = FindSegment(db, id);
        if (!s) return NoSegment();
        return SegmentDetail{std::move(*s)};
    });
}

Result<MemberPage> Service::ListMembers(int64_t segment_id, const MemberQuery& query) {
    if (query.limit < 1 || query.limit > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    std::optional<std::string> after;
    if (query.cursor) {
        after = DecodeCursor(*query.cursor);
        if (!after) return BadRequest("cursor is not one this API returned");
    }
    return Read<MemberPage>(db_path_, [&](store::Database& db) -> Result<MemberPage> {
        if (!FindSegment(db, segment_id)) return NoSegment();
        // One extra row tells whether another page exists.
        auto rows =
            store::ListMembers(db, segment_id, query.state, after, query.limit + 1, query.prefix);
        MemberPage page;
        if (rows.size() > static_cast<size_t>(query.limit)) {
            rows.pop_back();
            page.next_cursor = EncodeCursor(rows.back().context_key);
        }
        page.members = std::move(rows);
        return page;
    });
}

Result<MemberDetail> Service::GetMember(int64_t segment_id, const std::string& key) {
    return Read<MemberDetail>(db_path_, [&](store::Database& db) -> Result<MemberDetail> {
        auto segment = FindSegment(db, segment_id);
        if (!segment) return NoSegment();
        auto m = store::GetMember(db, segment_id, key);
        if (!m) {
            return MakeError(ErrorCode::kNotFound, "not_found",
                             "that context key was never seen in this segment");
        }
        MemberDetail detail{std::move(*m), std::nullopt};
        if (detail.member.inbox_seq) {
            if (auto raw = store::FindEventRaw(store::InboxPath(db_path_), *detail.member.inbox_seq,
                                               segment->destination, detail.member.message_id)) {
                detail.event_payload = WithoutCredentials(*raw);
            }
        }
        return detail;
    });
}

Result<ContextView> Service::Context(const std::string& key, const PageQuery& page) {
    auto after = AfterId(page);
    if (!after) return after.error();
    return Read<ContextView>(db_path_, [&](store::Database& db) -> Result<ContextView> {
        ContextView view{key, store::ContextMemberships(db, key, after.value(), page.limit + 1),
                         std::nullopt};
        if (view.segments.size() > static_cast<size_t>(page.limit)) {
            view.segments.pop_back();
            view.next_cursor = EncodeCursor(std::to_string(view.segments.back().first.id));
        }
        return view;
    });
}

Result<DestinationList> Service::ListDestinations() {
    auto cfg = config();
    return Read<DestinationList>(db_path_, [&](store::Database& db) -> Result<DestinationList> {
        auto rows = store::ListDestinations(db);
        DestinationList out;
        for (const auto& d : cfg->destinations) {
            DestinationView v{d, std::nullopt, std::nullopt};
            for (const auto& r : rows) {
                if (r.id == d.id) v.state = r;
            }
            if (d.report.enabled) v.reports = store::ReadReportSummary(db, d.id);
            out.destinations.push_back(std::move(v));
        }
        return out;
    });
}

Result<DestinationView> Service::GetDestination(const std::string& id) {
    auto all = ListDestinations();
    if (!all) return all.error();
    for (auto& v : all.value().destinations) {
        if (v.destination.id == id) return std::move(v);
    }
    return MakeError(ErrorCode::kNotFound, "unknown_destination", "no destination has that id");
}

Result<DeadLetterPage> Service::ListDeadLetters(const DeadLetterQuery& query) {
    if (query.limit < 1 || query.limit > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    std::optional<std::pair<int64_t, std::string>> after;
    if (query.cursor) {
        auto raw = DecodeCursor(*query.cursor);
        auto parsed = raw ? ParseDeadLetterId(*raw)
                          : Result<std::pair<int64_t, std::string>>(BadRequest("bad cursor"));
        if (!parsed) return BadRequest("cursor is not one this API returned");
        after = parsed.value();
    }
    return Read<DeadLetterPage>(db_path_, [&](store::Database& db) -> Result<DeadLetterPage> {
        if (query.segment && !FindSegment(db, *query.segment)) return NoSegment();
        auto rows = store::ListDeadLetters(db, query.segment, after, query.limit + 1);
        DeadLetterPage page;
        if (rows.size() > static_cast<size_t>(query.limit)) {
            rows.pop_back();
            page.next_cursor = EncodeCursor(std::to_string(rows.back().segment_id) + ":" +
                                            rows.back().context_key);
        }
        page.dead_letters = std::move(rows);
        return page;
    });
}

Result<DeadLetterChange> Service::ChangeDeadLetters(const DeadLetterSelection& selection,
                                                    bool retry) {
    if (selection.segment.has_value() == !selection.ids.empty()) {
        return BadRequest("give exactly one of a segment and dead-letter ids");
    }
    if (selection.ids.size() > kMaxDeadLetterIds) {
        return BadRequest("at most " + std::to_string(kMaxDeadLetterIds) +
                          " dead-letter ids at once");
    }
    if (selection.target) {
        bool known = false;
        for (const auto& d : config()->destinations)
            known = known || d.FindTarget(*selection.target);
        if (!known) {
            return MakeError(ErrorCode::kNotFound, "unknown_target",
                             "no destination has a target " + *selection.target);
        }
    }
    if (selection.segment) {
        auto found = GetSegment(*selection.segment);
        if (!found) return found.error();
    }
    DeadLetterChange change{retry, 0, {}};
    if (selection.segment) {
        int64_t n = 0;
        Status s = write_([&](store::WriteStore& w) {
            n = retry ? w.RetryDeadLetter(*selection.segment, std::nullopt, selection.target)
                      : w.DiscardDeadLetter(*selection.segment, std::nullopt, selection.target);
        });
        if (!s) return s.error();
        change.changed = n;
    }
    // At most kIdsPerTransaction ids a transaction: ingest, which shares the writer, never
    // waits for more than one of them.
    for (size_t at = 0; at < selection.ids.size(); at += kIdsPerTransaction) {
        const size_t end = std::min(selection.ids.size(), at + kIdsPerTransaction);
        int64_t changed = 0;
        std::vector<std::string> not_found;
        Status s = write_([&](store::WriteStore& w) {
            changed = 0;  // a job may run again after a rollback
            not_found.clear();
            for (size_t i = at; i < end; ++i) {
                const auto& [sid, key] = selection.ids[i];
                int64_t n = retry ? w.RetryDeadLetter(sid, key, selection.target)
                                  : w.DiscardDeadLetter(sid, key, selection.target);
                if (n == 0) not_found.push_back(std::to_string(sid) + ":" + key);
                changed += n;
            }
        });
        if (!s) return s.error();
        change.changed += changed;
        for (auto& id : not_found) change.not_found.push_back(std::move(id));
    }
    if (retry && change.changed > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        if (notify_) notify_();
    }
    return change;
}

Result<DeadLetterChange> Service::RetryDeadLetters(const DeadLetterSelection& selection) {
    return ChangeDeadLetters(selection, true);
}

Result<DeadLetterChange> Service::DiscardDeadLetters(const DeadLetterSelection& selection) {
    return ChangeDeadLetters(selection, false);
}

Result<ReplayReport> Service::ReplaySegments(const store::SegmentFilter& filter, bool dry_run,
                                             const std::optional<std::string>& target) {
    auto plan = Read<ReplayReport>(db_path_, [&](store::Database& db) -> Result<ReplayReport> {
        ReplayReport report;
        report.dry_run = dry_run;
        report.target = target;
        for (auto& s : store::ListSegments(db, filter)) {
            ReplayReport::Entry e;
            e.adds = s.included;
            e.removes = s.excluded;
            for (const auto& t : s.targets) {
                if (target && t.target != *target) continue;
                e.targets.push_back({t.target, t.platform, s.included + s.excluded});
            }
            // A segment whose destination has no such target is not replayed.
            if (target && e.targets.empty()) continue;
            for (const auto& m : store::ListMembers(db, s.id, store::MemberState::kIncluded,
                                                    std::nullopt, kSampleSize)) {
                e.sample.push_back(m.context_key);
            }
            e.segment = std::move(s);
            report.adds += e.adds;
            report.removes += e.removes;
            report.segments.push_back(std::move(e));
        }
        return report;
    });
    if (!plan) return plan.error();
    ReplayReport report = std::move(plan).value();
    if (report.segments.empty()) {
        return MakeError(ErrorCode::kNotFound, "not_found",
                         target ? "no segment matches with an active target " + *target
                                : std::string("no segment matches"));
    }
    if (dry_run) return report;
    Status s = write_([&](store::WriteStore& w) {
        report.marked = 0;
        for (auto& e : report.segments) {
            std::vector<std::pair<std::string, int64_t>> rows;
            report.marked += w.MarkForResync(e.segment.id, target, e.adds + e.removes, &rows);
            for (auto& t : e.targets) {
                t.members = 0;
                for (const auto& [id, n] : rows) {
                    if (id == t.target) t.members = n;
                }
            }
        }
    });
    if (!s) return s.error();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (notify_) notify_();
    }
    return report;
}

Result<SegmentDeletion> Service::DeleteSegment(int64_t id) {
    auto found = GetSegment(id);
    if (!found) return found.error();
    SegmentDeletion deletion{id, 0, false};
    Status s = write_([&](store::WriteStore& w) { deletion.members = w.DeleteSegment(id); });
    if (!s) return s.error();
    return deletion;
}

Result<int64_t> Service::ExcludeAllMembers(int64_t id) {
    auto found = GetSegment(id);
    if (!found) return found.error();
    int64_t changed = 0;
    Status s =
        write_([&](store::WriteStore& w) { changed = w.ExcludeAllMembers(id, text::NowMs()); });
    if (!s) return s.error();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (notify_) notify_();
    }
    return changed;
}

Result<Resumed> Service::ResumeDestination(const std::string& id,
                                           const std::optional<std::string>& target) {
    auto cfg = config();
    const config::Destination* dest = cfg->FindDestination(id);
    if (dest == nullptr) {
        return MakeError(ErrorCode::kNotFound, "unknown_destination", "no destination has that id");
    }
    if (target && dest->FindTarget(*target) == nullptr) {
        return MakeError(ErrorCode::kNotFound, "unknown_target",
                         "destination " + id + " has no target " + *target);
    }
    Status s =
        write_([&](store::WriteStore& w) { w.ResumeDestination(id, text::NowMs(), target); });
    if (!s) return s.error();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (notify_) notify_();
    }
    return Read<Resumed>(db_path_, [&](store::Database& db) -> Result<Resumed> {
        store::SegmentFilter f;
        f.destination = id;
        Resumed r{id, target, 0};
        for (const auto& seg : store::ListSegments(db, f)) {
            for (const auto& t : seg.targets) {
                if (!target || t.target == *target) r.pending += t.pending;
            }
        }
        return r;
    });
}

Result<ReportView> Service::DestinationReports(const std::string& id, int limit) {
    if (limit < 1 || limit > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    auto cfg = config();
    const config::Destination* dest = cfg->FindDestination(id);
    if (dest == nullptr) {
        return MakeError(ErrorCode::kNotFound, "unknown_destination", "no destination has that id");
    }
    return Read<ReportView>(db_path_, [&](store::Database& db) -> Result<ReportView> {
        ReportView v;
        v.destination = id;
        v.enabled = dest->report.enabled;
        v.summary = store::ReadReportSummary(db, id);
        v.dead = store::ListDeadReports(db, id, limit);
        return v;
    });
}

Result<PushList> Service::ListPushes(const PushQuery& query) {
    if (query.limit < 1 || query.limit > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    PushList list;
    if (sync_counters_ == nullptr) return list;
    list.pushes = sync_counters_->pushes.Recent(query.filter, static_cast<size_t>(query.limit));
    list.kept = sync_counters_->pushes.size();
    return list;
}

Result<ReportChange> Service::ChangeDeadReports(const std::string& id, bool retry) {
    auto cfg = config();
    if (cfg->FindDestination(id) == nullptr) {
        return MakeError(ErrorCode::kNotFound, "unknown_destination", "no destination has that id");
    }
    ReportChange change{id, retry, 0};
    Status s = write_([&](store::WriteStore& w) {
        change.changed = retry ? w.RetryDeadReports(id) : w.DiscardDeadReports(id, text::NowMs());
    });
    if (!s) return s.error();
    return change;
}

Result<FutureTimesRepair> Service::RepairFutureTimes(bool dry_run) {
    FutureTimesRepair r;
    r.dry_run = dry_run;
    r.skew_seconds = config()->limits.max_future_skew_seconds;
    const int64_t skew_ms = r.skew_seconds * 1000;
    if (dry_run) {
        return Read<FutureTimesRepair>(db_path_,
                                       [&](store::Database& db) -> Result<FutureTimesRepair> {
                                           r.members = store::CountFutureDated(db, skew_ms);
                                           return r;
                                       });
    }
    Status s = write_([&](store::WriteStore& w) { r.members = w.RepairFutureTimes(skew_ms); });
    if (!s) return s.error();
    return r;
}

Result<int64_t> Service::CountPending(int64_t segment_id) {
    return Read<int64_t>(db_path_, [&](store::Database& db) -> Result<int64_t> {
        return store::CountPending(db, segment_id);
    });
}

Result<std::string> Service::Metrics() {
    return Read<std::string>(db_path_, [&](store::Database& db) -> Result<std::string> {
        store::SyncGauges g = store::ReadSyncGauges(db);
        std::string out;
        auto metric = [&](const char* name, const char* type, const char* help) {
            out +=
                std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
        };
        auto count = [&](const std::string& name, uint64_t value) {
            out += name + " " + std::to_string(value) + "\n";
        };
        auto seconds = [&](const std::string& name, double value) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.3f", value);
            out += name + " " + buf + "\n";
        };
        if (ingest_counters_ != nullptr) {
            const auto& c = *ingest_counters_;
            metric("audsync_ingest_requests_total", "counter", "Ingest requests answered 200.");
            count("audsync_ingest_requests_total", c.requests.load());
            metric("audsync_events_total", "counter", "Events received, by outcome.");
            count("audsync_events_total{outcome=\"received\"}", c.events_received.load());
            count("audsync_events_total{outcome=\"stored\"}", c.stored.load());
            if (applier_counters_ != nullptr) {
                // Decided by the applier: what the stored events did.
                const auto& a = *applier_counters_;
                count("audsync_events_total{outcome=\"accepted\"}", a.accepted.load());
                count("audsync_events_total{outcome=\"duplicate\"}", a.duplicates.load());
                count("audsync_events_total{outcome=\"stale\"}", a.stale.load());
            }
            count("audsync_events_total{outcome=\"not_applicable\"}", c.not_applicable.load());
            count("audsync_events_total{outcome=\"rejected\"}", c.rejected.load());
            metric("audsync_events_rejected_total", "counter", "Rejected events, by reason.");
            for (const auto& [reason, n] : c.RejectedByReason()) {
                count("audsync_events_rejected_total{reason=\"" + reason + "\"}", n);
            }
        }
        if (sync_counters_ != nullptr) {
            const auto& c = *sync_counters_;
            metric("audsync_pushes_total", "counter", "Pushes to the flag platform, by outcome.");
            count("audsync_pushes_total{outcome=\"ok\"}", c.pushes_ok.load());
            count("audsync_pushes_total{outcome=\"retry\"}", c.pushes_retry.load());
            count("audsync_pushes_total{outcome=\"rate_limited\"}", c.pushes_rate_limited.load());
            count("audsync_pushes_total{outcome=\"auth_failed\"}", c.pushes_auth_failed.load());
            count("audsync_pushes_total{outcome=\"refused\"}", c.pushes_refused.load());
            metric("audsync_members_acknowledged_total", "counter",
                   "Members acknowledged by the platform.");
            count("audsync_members_acknowledged_total", c.members_acknowledged.load());
            metric("audsync_push_duration_seconds", "histogram", "Duration of one push request.");
            auto cumulative = c.push_seconds.Cumulative();
            for (size_t i = 0; i < sync::Histogram::kBuckets; ++i) {
                char le[32];
                std::snprintf(le, sizeof le, "%g", sync::Histogram::kBounds[i]);
                count(std::string("audsync_push_duration_seconds_bucket{le=\"") + le + "\"}",
                      cumulative[i]);
            }
            count("audsync_push_duration_seconds_bucket{le=\"+Inf\"}", cumulative.back());
            seconds("audsync_push_duration_seconds_sum", c.push_seconds.Sum());
            count("audsync_push_duration_seconds_count", cumulative.back());
        }
        if (sync_counters_ != nullptr) {
            const auto by_target = sync_counters_->ByTarget();
            auto labelled = [&](const char* name, const char* help, auto field) {
                metric(name, "counter", help);
                for (const auto& [key, c] : by_target) {
                    size_t slash = key.find('/');
                    count(std::string(name) + "{destination=\"" + key.substr(0, slash) +
                              "\",target=\"" + key.substr(slash + 1) + "\"}",
                          field(c));
                }
            };
            labelled("audsync_target_pushes_ok_total", "Accepted pushes, by target.",
                     [](const auto& c) { return c.pushes_ok; });
            labelled("audsync_target_pushes_failed_total",
                     "Pushes that failed (retry, rate limit, credentials, refusal), by target.",
                     [](const auto& c) { return c.pushes_failed; });
            labelled("audsync_target_members_acknowledged_total",
                     "Members acknowledged, by target.",
                     [](const auto& c) { return c.members_acknowledged; });
            labelled("audsync_target_lists_over_limit_total",
                     "Full-list pushes not sent because the list is over the platform's limit.",
                     [](const auto& c) { return c.lists_over_limit; });
        }
        metric("audsync_pending_members", "gauge",
               "Member changes a target has not acknowledged (summed over targets).");
        count("audsync_pending_members", static_cast<uint64_t>(g.pending));
        metric("audsync_dead_letters", "gauge", "Members a target refused (summed over targets).");
        count("audsync_dead_letters", static_cast<uint64_t>(g.dead));
        auto label = [](const store::TargetRow& t) {
            return "{destination=\"" + t.destination + "\",target=\"" + t.id + "\",platform=\"" +
                   t.platform + "\"}";
        };
        metric("audsync_target_pending_members", "gauge",
               "Member changes the target has not acknowledged.");
        for (const auto& t : g.targets) {
            count("audsync_target_pending_members" + label(t), static_cast<uint64_t>(t.pending));
        }
        metric("audsync_target_dead_letters", "gauge", "Members the target refused.");
        for (const auto& t : g.targets) {
            count("audsync_target_dead_letters" + label(t), static_cast<uint64_t>(t.dead));
        }
        metric("audsync_target_segments_over_limit", "gauge",
               "Segments whose list is over the target platform's limit (not sent).");
        for (const auto& t : g.targets) {
            count("audsync_target_segments_over_limit" + label(t),
                  static_cast<uint64_t>(t.over_limit_segments));
        }
        metric("audsync_target_segments_over_limit_by_limit", "gauge",
               "Segments not sent because their list is over the platform's limit, by the "
               "limit's name.");
        for (const auto& o : store::CountOverLimit(db)) {
            count("audsync_target_segments_over_limit_by_limit{destination=\"" + o.destination +
                      "\",target=\"" + o.target + "\",platform=\"" + o.platform + "\",limit=\"" +
                      o.limit + "\"}",
                  static_cast<uint64_t>(o.segments));
        }
        metric(
            "audsync_target_up", "gauge",
            "1 while the target accepts pushes, 0 while failing (no answer, 5xx), rate limited or "
            "refusing credentials.");
        for (const auto& t : g.targets) count("audsync_target_up" + label(t), t.status == "ok");
        metric("audsync_sync_lag_seconds", "gauge", "Age of the oldest pending change.");
        double lag =
            g.oldest_pending_received_ms
                ? std::max<double>(
                      0,
                      static_cast<double>(text::NowMs() - *g.oldest_pending_received_ms) / 1000.0)
                : 0;
        seconds("audsync_sync_lag_seconds", lag);
        const store::Backlog backlog = store::ReadBacklog(db, store::InboxPath(db_path_));
        metric("audsync_inbox_backlog_events", "gauge",
               "Events stored in the inbox and not yet applied to memberships.");
        count("audsync_inbox_backlog_events", static_cast<uint64_t>(backlog.events));
        metric("audsync_inbox_backlog_age_seconds", "gauge",
               "Age of the oldest event not yet applied (0 without a backlog).");
        seconds(
            "audsync_inbox_backlog_age_seconds",
            backlog.oldest_received_ms
                ? std::max<double>(
                      0, static_cast<double>(text::NowMs() - *backlog.oldest_received_ms) / 1000.0)
                : 0);
        auto cfg = config();
        metric("audsync_inbox_backlog_limit_events", "gauge",
               "limits.max_backlog_events: beyond it ingest answers 503 overloaded.");
        count("audsync_inbox_backlog_limit_events",
              static_cast<uint64_t>(cfg->limits.max_backlog_events));
        metric("audsync_inbox_backlog_limit_seconds", "gauge",
               "limits.max_backlog_seconds: beyond it ingest answers 503 overloaded.");
        count("audsync_inbox_backlog_limit_seconds",
              static_cast<uint64_t>(cfg->limits.max_backlog_seconds));
        if (admission_ != nullptr) {
            const ingest::BacklogLimits bounds{static_cast<int64_t>(cfg->limits.max_backlog_events),
                                               cfg->limits.max_backlog_seconds};
            metric("audsync_ingest_admitting", "gauge",
                   "1 while ingest admits requests, 0 while the backlog is past a limit and "
                   "requests are answered 503 overloaded.");
            count("audsync_ingest_admitting", admission_->Current(bounds).admitting ? 1 : 0);
            const auto& a = admission_->counters();
            metric("audsync_ingest_overloaded_total", "counter",
                   "Ingest requests answered 503 overloaded (nothing stored), by the limit "
                   "that refused them.");
            count("audsync_ingest_overloaded_total{limit=\"events\"}",
                  a.refused_events_limit.load());
            count("audsync_ingest_overloaded_total{limit=\"seconds\"}",
                  a.refused_seconds_limit.load());
            metric("audsync_ingest_overloaded_events_total", "counter",
                   "Events carried by the requests answered 503 overloaded after their body "
                   "was read (one refused while the backlog is past its limits already is "
                   "refused before, and counts in audsync_ingest_overloaded_total only).");
            count("audsync_ingest_overloaded_events_total", a.refused_events.load());
            metric("audsync_replay_backlog_waits_total", "counter",
                   "Times an event replay waited for the backlog to fall instead of being "
                   "refused.");
            count("audsync_replay_backlog_waits_total", a.waits.load());
        }
        metric("audsync_storage_bytes", "gauge",
               "Size of each file of the store: the database, the inbox, their WAL and "
               "shared-memory files.");
        for (const auto& f : store::StorageSizes(db_path_)) {
            count("audsync_storage_bytes{file=\"" + f.file + "\"}", static_cast<uint64_t>(f.bytes));
        }
        metric("audsync_storage_wal_limit_bytes", "gauge",
               "limits.max_wal_bytes: each WAL file is checkpointed and truncated before it.");
        count("audsync_storage_wal_limit_bytes", static_cast<uint64_t>(cfg->limits.max_wal_bytes));
        metric("audsync_segment_reports", "gauge",
               "Reports of synced changes to Segment, by destination and state (sent: kept for "
               "the de-duplication window).");
        for (const auto& d : cfg->destinations) {
            if (!d.report.enabled) continue;
            const store::ReportSummary r = store::ReadReportSummary(db, d.id);
            const std::string l = "{destination=\"" + d.id + "\",state=\"";
            count("audsync_segment_reports" + l + "pending\"}", static_cast<uint64_t>(r.pending));
            count("audsync_segment_reports" + l + "sent\"}", static_cast<uint64_t>(r.sent));
            count("audsync_segment_reports" + l + "dead\"}", static_cast<uint64_t>(r.dead));
        }
        metric("audsync_segment_reports_up", "gauge",
               "1 while Segment accepts the destination's reports, 0 while they wait.");
        for (const auto& d : cfg->destinations) {
            if (!d.report.enabled) continue;
            const store::ReportSummary r = store::ReadReportSummary(db, d.id);
            count("audsync_segment_reports_up{destination=\"" + d.id + "\"}", r.status == "ok");
        }
        if (reporter_counters_ != nullptr) {
            const auto& c = *reporter_counters_;
            metric("audsync_segment_report_requests_total", "counter",
                   "Requests to Segment's Tracking API, by outcome.");
            count("audsync_segment_report_requests_total{outcome=\"ok\"}", c.requests_ok.load());
            count("audsync_segment_report_requests_total{outcome=\"failed\"}",
                  c.requests_failed.load());
            metric("audsync_segment_reports_sent_total", "counter",
                   "Reports Segment accepted since start.");
            count("audsync_segment_reports_sent_total", c.sent.load());
        }
        if (applier_counters_ != nullptr) {
            metric("audsync_inbox_applied_total", "counter",
                   "Inbox events folded into memberships since start.");
            count("audsync_inbox_applied_total", applier_counters_->applied.load());
        }
        return out;
    });
}

}  // namespace audsync::admin
