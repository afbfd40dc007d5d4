// The reporter: pending reports -> Segment's Tracking API, with the push policy's answers.
#include "audsync/sync/reporter.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "audsync/sync/policy.hpp"
#include "audsync/targets/segment.hpp"

namespace audsync::sync {
namespace {

// How often the queue is looked at without a wake, and sent reports pruned.
constexpr int64_t kPollMs = 1000;
constexpr int64_t kPruneEveryMs = 60000;
constexpr int kPruneRows = 10000;
// The envelope of a batch around its events, with room to spare.
constexpr size_t kBatchEnvelopeBytes = 128;

void Field(std::string& out, const char* name, std::string_view value) {
    out += '"';
    out += name;
    out += "\":";
    json::AppendQuoted(out, value);
}

}  // namespace

std::string ReportEvent(const store::ReportRow& row) {
    const std::string synced_at = text::FormatIso8601(row.synced_ms);
    std::string out = R"({"type":"track","event":"Audience Membership Synced",)";
    Field(out, "userId", row.user_id);
    out += ',';
    Field(out, "messageId", row.message_id);
    out += ',';
    Field(out, "timestamp", synced_at);
    out += R"(,"properties":{)";
    Field(out, "audience_key", row.audience_key);
    out += ',';
    Field(out, "audience_id", row.audience_id);
    out += row.included ? R"(,"included":true,)" : R"(,"included":false,)";
    Field(out, "platform", row.platform);
    out += ',';
    Field(out, "target", row.target);
    out += ',';
    Field(out, "context_kind", row.context_kind);
    out += ',';
    Field(out, "synced_at", synced_at);
    out += R"(,"deciding_message_id":)";
    if (row.deciding_message_id) {
        json::AppendQuoted(out, *row.deciding_message_id);
    } else {
        out += "null";
    }
    out += R"(},"context":{"integration":{"name":"audsync","version":)";
    json::AppendQuoted(out, AUDSYNC_VERSION);
    out += "}}}";
    return out;
}

std::string ReportBatch(const std::vector<const std::string*>& events, int64_t now_ms) {
    std::string out = R"({"batch":[)";
    for (size_t i = 0; i < events.size(); ++i) {
        if (i > 0) out += ',';
        out += *events[i];
    }
    out += R"(],"sentAt":)";
    json::AppendQuoted(out, text::FormatIso8601(now_ms));
    out += '}';
    return out;
}

Reporter::Reporter(std::shared_ptr<const config::Config> config, std::string db_path,
                   store::Writer& writer, Send send)
    : writer_(writer),
      db_path_(std::move(db_path)),
      send_(std::move(send)),
      config_(std::move(config)) {}

Reporter::~Reporter() { Stop(); }

void Reporter::Start() {
    thread_ = std::thread([this] { Run(); });
}

void Reporter::Stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Reporter::Wake() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        woken_ = true;
    }
    cv_.notify_all();
}

void Reporter::Reload(std::shared_ptr<const config::Config> config) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        config_ = std::move(config);
        woken_ = true;
    }
    cv_.notify_all();
}

void Reporter::SetStatus(const std::string& destination, DestinationState& st,
                         const std::string& status, int64_t paused_until_ms,
                         const std::optional<std::string>& error,
                         std::optional<int64_t> success_ms) {
    const bool changed = st.status != status;
    st.status = status;
    if (!changed && !error && !success_ms) return;
    Status stored = writer_.Run(
        [&](store::WriteStore& w) {
            w.SetReportStatus(destination, status, paused_until_ms, error, success_ms);
        },
        1);
    if (!stored) log::Error("report: cannot record status: " + stored.error().message);
}

bool Reporter::SendRows(const config::Destination& d, const std::vector<store::ReportRow>& rows,
                        const std::vector<std::string>& events, size_t begin, size_t end,
                        DestinationState& st) {
    std::vector<const std::string*> part;
    for (size_t i = begin; i < end; ++i) part.push_back(&events[i]);
    const std::string body = ReportBatch(part, text::NowMs());
    targets::HttpResult r;
    if (send_) {
        r = send_(d.report, body);
    } else {
        auto& client = clients_[d.id];
        if (!client.client || client.api_base != d.report.api_base ||
            client.write_key != d.report.write_key) {
            client.client = std::make_unique<targets::TrackingClient>(d.report);
            client.api_base = d.report.api_base;
            client.write_key = d.report.write_key;
        }
        r = client.client->SendBatch(body);
    }
    const int64_t now = text::NowMs();
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    RetrySchedule schedule{d.report.retry_base_ms, d.report.retry_max_ms, d.auth_retry_ms};
    Decision decision = Decide(r, st.attempts, end - begin, now, schedule, uniform(rng));
    std::string detail =
        decision.status == 0 ? "no answer" : "HTTP " + std::to_string(decision.status);
    if (!decision.message.empty()) detail += ": " + decision.message;
    if (d.report.write_key.size() >= 4) {
        for (size_t at = detail.find(d.report.write_key); at != std::string::npos;
             at = detail.find(d.report.write_key, at)) {
            detail.replace(at, d.report.write_key.size(), "[redacted]");
        }
    }
    detail = log::Clip(detail, 300);
    switch (decision.action) {
        case Action::kAcknowledge: {
            std::vector<int64_t> ids;
            for (size_t i = begin; i < end; ++i) ids.push_back(rows[i].id);
            const bool recovered = st.status != "ok";
            st.status = "ok";
            Status stored = writer_.Run(
                [&](store::WriteStore& w) {
                    w.MarkReportsSent(ids, decision.status, now);
                    w.SetReportStatus(d.id, "ok", 0, std::nullopt, now);
                },
                ids.size());
            if (!stored) {
                // Sent but not recorded: sent again later, with the same messageIds.
                log::Error("report: cannot record sent reports: " + stored.error().message);
                st.next_ms = now + d.report.retry_base_ms;
                return false;
            }
            st.attempts = 0;
            counters_.sent += ids.size();
            ++counters_.requests_ok;
            if (recovered) log::Info("report: " + d.id + ": Segment accepts reports again");
            return true;
        }
        case Action::kSplit:
            ++counters_.requests_failed;
            if (end - begin > 1) {
                const size_t mid = begin + (end - begin) / 2;
                return SendRows(d, rows, events, begin, mid, st) &&
                       SendRows(d, rows, events, mid, end, st);
            }
            [[fallthrough]];
        case Action::kDeadLetter: {
            ++counters_.requests_failed;
            Status stored = writer_.Run(
                [&](store::WriteStore& w) {
                    for (size_t i = begin; i < end; ++i) {
                        w.MarkReportDead(rows[i].id, decision.status, detail, now);
                    }
                },
                end - begin);
            if (!stored) {
                log::Error("report: cannot record a dead report: " + stored.error().message);
                st.next_ms = now + d.report.retry_base_ms;
                return false;
            }
            counters_.dead += end - begin;
            log::Warn("report: " + d.id + ": Segment refused the report of " + rows[begin].user_id +
                      " in " + rows[begin].audience_key + " (" + detail +
                      "); kept as a dead report: `audsync destinations reports " + d.id +
                      " --retry-dead` sends it again");
            return true;
        }
        case Action::kRateLimited:
        case Action::kAuthFailed:
        case Action::kRetry: {
            ++counters_.requests_failed;
            ++st.attempts;
            st.next_ms = now + std::max<int64_t>(decision.delay_ms, 1);
            const std::string status = decision.action == Action::kRateLimited  ? "rate_limited"
                                       : decision.action == Action::kAuthFailed ? "auth_failed"
                                                                                : "retrying";
            if (st.status != status) {
                auto log = decision.action == Action::kAuthFailed ? log::Error : log::Warn;
                log("report: " + d.id + ": Segment's Tracking API answered " + detail +
                    "; reports stay queued, next attempt in " +
                    std::to_string((st.next_ms - now + 999) / 1000) + " s");
            }
            SetStatus(d.id, st, status, st.next_ms, detail, std::nullopt);
            return false;
        }
    }
    return false;
}

void Reporter::Drain(const config::Destination& d, store::ReportReader& reader,
                     DestinationState& st) {
    while (true) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopping_) return;
        }
        if (text::NowMs() < st.next_ms) return;
        std::vector<store::ReportRow> rows = reader.Pending(d.id, d.report.max_batch);
        if (rows.empty()) return;
        std::vector<store::ReportRow> fit;
        std::vector<std::string> events;
        for (auto& row : rows) {
            std::string event = ReportEvent(row);
            if (event.size() > config::kSegmentEventMaxBytes) {
                const std::string why = "the event has " + std::to_string(event.size()) +
                                        " bytes; Segment takes at most " +
                                        std::to_string(config::kSegmentEventMaxBytes) +
                                        " bytes per event";
                Status stored = writer_.Run(
                    [&](store::WriteStore& w) { w.MarkReportDead(row.id, 0, why, text::NowMs()); },
                    1);
                if (!stored) return;
                ++counters_.dead;
                log::Warn("report: " + d.id + ": " + why + "; kept as a dead report");
                continue;
            }
            fit.push_back(std::move(row));
            events.push_back(std::move(event));
        }
        size_t begin = 0;
        while (begin < fit.size()) {
            size_t end = begin;
            size_t bytes = kBatchEnvelopeBytes;
            while (end < fit.size() &&
                   bytes + events[end].size() + 1 <= config::kSegmentBatchMaxBytes) {
                bytes += events[end].size() + 1;
                ++end;
            }
            if (!SendRows(d, fit, events, begin, end, st)) return;
            begin = end;
        }
    }
}

void Reporter::Run() {
    std::unique_ptr<store::Database> db;
    std::unique_ptr<store::ReportReader> reader;
    std::map<std::string, DestinationState> states;
    int64_t last_prune = 0;
    while (true) {
        std::shared_ptr<const config::Config> config;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait_for(lock, std::chrono::milliseconds(kPollMs),
                         [this] { return stopping_ || woken_; });
            if (stopping_) return;
            woken_ = false;
            config = config_;
        }
        bool any = false;
        for (const auto& d : config->destinations) any = any || d.report.enabled;
        if (!any) continue;
        try {
            if (!db) {
                db = std::make_unique<store::Database>(db_path_, false);
                db->SetCacheKiB(1024);
                reader = std::make_unique<store::ReportReader>(*db);
            }
            for (const auto& d : config->destinations) {
                if (d.report.enabled) Drain(d, *reader, states[d.id]);
            }
            const int64_t now = text::NowMs();
            if (now - last_prune >= kPruneEveryMs) {
                last_prune = now;
                const int64_t before = now - int64_t{config->dedupe_window_hours} * 3600 * 1000;
                writer_.Post(
                    [before](store::WriteStore& w) { w.PruneReports(before, kPruneRows); });
            }
        } catch (const std::exception& e) {
            log::Error(std::string("report: cannot read the queue: ") + e.what());
            reader.reset();
            db.reset();
        }
    }
}

}  // namespace audsync::sync
