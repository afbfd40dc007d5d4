// report_to_segment: every change a target acknowledged reaches Segment's Tracking API once
// (by messageId), across SIGKILLs; nothing is reported for a change no target acknowledged.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/config/config.hpp"
#include "audsync/store/reports.hpp"
#include "audsync/sync/reporter.hpp"
#include "serve.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using testing::Eventually;
using testing::Harness;

namespace {

constexpr const char* kReportKey = "wk-report-0123456789";

// A stand-in of Segment's Tracking API: POST /v1/batch with Basic auth of the write key.
// It records every event it accepted (duplicates too) and can refuse, rate-limit or fail.
class TrackingStandIn {
  public:
    TrackingStandIn()
        : server_(
              "127.0.0.1", 0, 4, 4 * 1024 * 1024,
              [this](const std::string& method, const std::string& target,
                     const std::map<std::string, std::string>& headers,
                     const std::string& body) { return Handle(method, target, headers, body); },
              [] {
                  return emulator_common::Answer{500, R"({"success":false})", {}, false, 0};
              }) {
        server_.Start();
    }
    ~TrackingStandIn() { server_.Stop(); }

    std::string base_url() const { return server_.base_url(); }

    struct Received {
        std::string message_id;
        std::string user_id;
        bool included = false;
        std::string deciding;
        std::string target;
        std::string raw;  // the event as sent
    };
    std::vector<Received> received() const {
        std::lock_guard<std::mutex> lock(mu_);
        return received_;
    }
    int requests() const { return requests_; }
    // 400 for a batch holding an event of this user (Segment's answer to a bad event).
    void RefuseUser(std::string user) {
        std::lock_guard<std::mutex> lock(mu_);
        refused_user_ = std::move(user);
    }
    // The next `n` requests answer 429 with Retry-After: 1.
    void RateLimit(int n) { rate_limited_ = n; }
    void Fail(bool fail) { fail_ = fail; }
    void SetDelay(int ms) { delay_ms_ = ms; }

  private:
    emulator_common::Answer Handle(const std::string& method, const std::string& target,
                                   const std::map<std::string, std::string>& headers,
                                   const std::string& body) {
        ++requests_;
        emulator_common::Answer a;
        a.delay_ms = delay_ms_;
        if (method != "POST" || target != "/v1/batch") return {404, "{}", {}, false, 0};
        auto auth = headers.find("authorization");
        if (auth == headers.end() ||
            auth->second != "Basic " + text::Base64Encode(std::string(kReportKey) + ":")) {
            return {401, R"({"success":false})", {}, false, 0};
        }
        if (body.size() > config::kSegmentBatchMaxBytes) return {400, "{}", {}, false, 0};
        if (rate_limited_ > 0) {
            --rate_limited_;
            return {429, "{}", {{"Retry-After", "1"}}, false, 0};
        }
        if (fail_) return {503, "{}", {}, false, 0};
        rapidjson::Document doc;
        doc.Parse(body.data(), body.size());
        if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("batch") ||
            !doc["batch"].IsArray()) {
            return {400, R"({"success":false})", {}, false, 0};
        }
        std::vector<Received> got;
        for (const auto& e : doc["batch"].GetArray()) {
            Received r;
            r.message_id = e["messageId"].GetString();
            r.user_id = e["userId"].GetString();
            const auto& p = e["properties"];
            r.included = p["included"].GetBool();
            r.deciding =
                p["deciding_message_id"].IsString() ? p["deciding_message_id"].GetString() : "";
            r.target = p["target"].GetString();
            r.raw = json::Serialize(e);
            got.push_back(std::move(r));
        }
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& r : got) {
            if (!refused_user_.empty() && r.user_id == refused_user_) {
                return {400, R"({"success":false,"message":"bad event"})", {}, false, 0};
            }
        }
        received_.insert(received_.end(), got.begin(), got.end());
        a.status = 200;
        a.body = R"({"success":true})";
        return a;
    }

    mutable std::mutex mu_;
    std::vector<Received> received_;
    std::string refused_user_;
    std::atomic<int> requests_{0};
    std::atomic<int> rate_limited_{0};
    std::atomic<bool> fail_{false};
    std::atomic<int> delay_ms_{0};
    emulator_common::Server server_;
};

std::string ReportConfig(const TrackingStandIn& s) {
    return R"("report_to_segment":{"write_key":")" + std::string(kReportKey) + R"(","api_base":")" +
           s.base_url() +
           R"(","max_batch":10,"retry_base_ms":20,"retry_max_ms":200,"request_timeout_ms":3000})";
}

int64_t PendingReports(Harness& h) {
    return h.Count("SELECT count(*) FROM reports WHERE state = 0");
}

}  // namespace

TEST_SUITE("report to segment") {
    TEST_CASE("a report is one track event with the change's facts and a stable messageId") {
        store::ReportRow row;
        row.destination = "engage";
        row.message_id =
            store::ReportMessageId("engage", "aud_1", "user", "u1", "ld-prod", 3, "m9");
        row.user_id = "u1";
        row.audience_id = "aud_1";
        row.audience_key = "high_value_users";
        row.context_kind = "user";
        row.target = "ld-prod";
        row.platform = "launchdarkly";
        row.included = true;
        row.deciding_message_id = "m9";
        row.synced_ms = 1714987822000;
        const std::string event = sync::ReportEvent(row);
        rapidjson::Document doc;
        doc.Parse(event.c_str());
        REQUIRE_FALSE(doc.HasParseError());
        CHECK(std::string(doc["type"].GetString()) == "track");
        CHECK(std::string(doc["event"].GetString()) == "Audience Membership Synced");
        CHECK(std::string(doc["userId"].GetString()) == "u1");
        CHECK(std::string(doc["messageId"].GetString()) == row.message_id);
        CHECK(std::string(doc["timestamp"].GetString()) == "2024-05-06T09:30:22.000Z");
        const auto& p = doc["properties"];
        CHECK(std::string(p["audience_key"].GetString()) == "high_value_users");
        CHECK(std::string(p["audience_id"].GetString()) == "aud_1");
        CHECK(p["included"].GetBool());
        CHECK(std::string(p["platform"].GetString()) == "launchdarkly");
        CHECK(std::string(p["target"].GetString()) == "ld-prod");
        CHECK(std::string(p["context_kind"].GetString()) == "user");
        CHECK(std::string(p["synced_at"].GetString()) == "2024-05-06T09:30:22.000Z");
        CHECK(std::string(p["deciding_message_id"].GetString()) == "m9");
        CHECK(std::string(doc["context"]["integration"]["name"].GetString()) == "audsync");
        CHECK(std::string(doc["context"]["integration"]["version"].GetString()) == AUDSYNC_VERSION);

        // The id: the same change, the same id; any part of the change, another id.
        CHECK(row.message_id.rfind("audsync-", 0) == 0);
        CHECK(row.message_id.size() == 8 + 32);
        CHECK(store::ReportMessageId("engage", "aud_1", "user", "u1", "ld-prod", 3, "m9") ==
              row.message_id);
        std::set<std::string> ids = {row.message_id};
        ids.insert(store::ReportMessageId("engage", "aud_1", "user", "u1", "ld-prod", 4, "m9"));
        ids.insert(store::ReportMessageId("engage", "aud_1", "user", "u1", "ld-stg", 3, "m9"));
        ids.insert(store::ReportMessageId("engage", "aud_1", "user", "u2", "ld-prod", 3, "m9"));
        ids.insert(store::ReportMessageId("engage", "aud_2", "user", "u1", "ld-prod", 3, "m9"));
        ids.insert(store::ReportMessageId("engage", "aud_1", "account", "u1", "ld-prod", 3, "m9"));
        ids.insert(store::ReportMessageId("other", "aud_1", "user", "u1", "ld-prod", 3, "m9"));
        ids.insert(store::ReportMessageId("engage", "aud_1", "user", "u1", "ld-prod", 3, "m8"));
        CHECK(ids.size() == 8);

        const std::string body = sync::ReportBatch({&event, &event}, 1714987822000);
        rapidjson::Document batch;
        batch.Parse(body.c_str());
        REQUIRE_FALSE(batch.HasParseError());
        CHECK(batch["batch"].Size() == 2);
        CHECK(std::string(batch["sentAt"].GetString()) == "2024-05-06T09:30:22.000Z");
    }

    TEST_CASE("config: report_to_segment's fields, defaults and errors") {
        auto env = [](const std::string& name) -> std::optional<std::string> {
            if (name == "REPORT_KEY") return std::string("wk");
            return std::nullopt;
        };
        auto base = [](const std::string& report) {
            return R"({"destinations":[{"id":"d","write_keys":["k"],"service_token":"t",)"
                   R"("client_side_id":"c","report_to_segment":)" +
                   report + "}]}";
        };
        auto ok = config::LoadText(base(R"({"write_key":"${REPORT_KEY}"})"), env);
        REQUIRE_MESSAGE(ok.ok(), ok.error().message);
        const auto& r = ok.value().destinations[0].report;
        CHECK(r.enabled);
        CHECK(r.write_key == "wk");
        CHECK(r.api_base == "https://api.segment.io");
        CHECK(r.max_batch == 100);
        auto none = config::LoadText(
            R"({"destinations":[{"id":"d","write_keys":["k"],"service_token":"t","client_side_id":"c"}]})",
            env);
        REQUIRE(none.ok());
        CHECK_FALSE(none.value().destinations[0].report.enabled);
        struct Row {
            std::string report;
            std::string error;
        };
        const Row rows[] = {
            {"{}", "destinations[0].report_to_segment.write_key: required"},
            {"true", "destinations[0].report_to_segment: must be an object"},
            {R"({"write_key":"w","max_batch":2501})",
             "destinations[0].report_to_segment.max_batch: must be an integer from 1 to 2500"},
            {R"({"write_key":"w","api_base":"https://api.segment.io/v1"})",
             "destinations[0].report_to_segment.api_base: give the host only (e.g. "
             "https://api.segment.io); audsync adds /v1/batch"},
            {R"({"write_key":"w","api_base":"ftp://x"})",
             "destinations[0].report_to_segment.api_base: must be an http(s) URL"},
            {R"({"write_key":"w","writekey":"x"})",
             "destinations[0].report_to_segment.writekey: unknown field (did you mean "
             "\"write_key\"?)"},
        };
        for (const auto& row : rows) {
            CAPTURE(row.report);
            auto c = config::LoadText(base(row.report), env);
            REQUIRE_FALSE(c.ok());
            CHECK(c.error().message == row.error);
        }
    }

    TEST_CASE("every acknowledged change is reported exactly once across SIGKILLs") {
        TrackingStandIn segment;
        Harness h(ReportConfig(segment));
        h.emulator.RefuseKeys({"u-refused"});  // its change is never acknowledged
        std::mt19937 rng(7);
        const int kUsers = 40;
        const int kRounds = 4;
        // What must be reported: (user, included, deciding messageId) of every change.
        std::set<std::tuple<std::string, bool, std::string>> expected;
        std::map<std::string, bool> desired;  // user -> state after the last change
        int kills = 0;
        for (int round = 0; round < kRounds; ++round) {
            std::vector<std::string> events;
            for (int u = 0; u <= kUsers; ++u) {
                testing::EngageEvent e;
                e.user_id = u == kUsers ? "u-refused" : "u" + std::to_string(u);
                e.message_id = "r" + std::to_string(round) + "-" + e.user_id;
                const bool value = u == kUsers ? true : rng() % 2 == 0;
                e.value = value ? "true" : "false";
                e.timestamp = text::FormatIso8601(1714987822000 + round * 1000);
                auto it = desired.find(e.user_id);
                const bool changes = it == desired.end() || it->second != value;
                if (changes && u != kUsers) expected.insert({e.user_id, value, e.message_id});
                desired[e.user_id] = value;
                events.push_back(e.Json());
            }
            // Pushes and reports in flight when the kill lands.
            h.emulator.SetDelay(30);
            segment.SetDelay(30);
            REQUIRE(h.Send(events).status == 200);
            const int at = static_cast<int>(rng() % 3);
            if (at == 0) {
                // Between the acknowledgement of pushes and their reports.
                REQUIRE(Eventually([&] { return h.Count("SELECT count(*) FROM reports") > 0; }));
            } else if (at == 1) {
                REQUIRE(Eventually(
                    [&] { return !segment.received().empty() || segment.requests() > 0; }));
            }
            h.server->Kill();
            ++kills;
            h.emulator.SetDelay(0);
            segment.SetDelay(0);
            h.StartServer();
            // The same events again (what Segment does after a failed request): duplicates.
            REQUIRE(h.Send(events).status == 200);
            REQUIRE_MESSAGE(Eventually([&] {
                                return h.Count(
                                           "SELECT count(*) FROM deliveries WHERE pending = 1 "
                                           "AND dead = 0") == 0 &&
                                       PendingReports(h) == 0;
                            }),
                            h.server->Log());
        }
        const auto received = segment.received();
        std::map<std::string, std::string> by_id;  // messageId -> the event as sent
        std::set<std::tuple<std::string, bool, std::string>> reported;
        size_t resent = 0;
        for (const auto& r : received) {
            auto [it, fresh] = by_id.emplace(r.message_id, r.raw);
            if (!fresh) {
                ++resent;
                CHECK(it->second == r.raw);  // a resend is the same event: Segment drops it
                continue;
            }
            CHECK(r.target == "launchdarkly");
            reported.insert({r.user_id, r.included, r.deciding});
        }
        CHECK(reported == expected);
        CHECK(by_id.size() == expected.size());  // one messageId per change
        for (const auto& r : received) CHECK(r.user_id != "u-refused");
        CHECK(h.Count("SELECT count(*) FROM reports WHERE user_id = 'u-refused'") == 0);
        MESSAGE("kills: " << kills << ", changes: " << expected.size()
                          << ", events received: " << received.size()
                          << ", resent after a kill (same messageId): " << resent);
    }

    TEST_CASE("a refused report is bisected out, kept dead, and retried by the operator") {
        TrackingStandIn segment;
        segment.RefuseUser("u3");
        Harness h(ReportConfig(segment));
        std::vector<std::string> events;
        for (int u = 0; u < 8; ++u) {
            testing::EngageEvent e;
            e.user_id = "u" + std::to_string(u);
            e.message_id = "m" + std::to_string(u);
            events.push_back(e.Json());
        }
        REQUIRE(h.Send(events).status == 200);
        REQUIRE_MESSAGE(Eventually([&] { return segment.received().size() == 7; }),
                        h.server->Log());
        // Received is not yet recorded: wait for the reporter's records.
        REQUIRE(Eventually([&] {
            return h.Count("SELECT count(*) FROM reports WHERE state = 2") == 1 &&
                   h.Count("SELECT count(*) FROM reports WHERE state = 1") == 7;
        }));
        // The operator sees it: REST, CLI and metrics.
        auto rest = h.Admin("GET", "/v1/destinations/ld/reports");
        REQUIRE(rest.status == 200);
        rapidjson::Document doc;
        doc.Parse(rest.body.c_str());
        REQUIRE_FALSE(doc.HasParseError());
        CHECK(doc["dead"].GetInt() == 1);
        CHECK(doc["pending"].GetInt() == 0);
        CHECK(doc["sent"].GetInt() == 7);
        REQUIRE(doc["dead_reports"].Size() == 1);
        CHECK(std::string(doc["dead_reports"][0]["user_id"].GetString()) == "u3");
        CHECK(doc["dead_reports"][0]["status"].GetInt() == 400);
        auto dest = h.Admin("GET", "/v1/destinations/ld");
        CHECK(dest.body.find(R"("report_to_segment":{"api_base")") != std::string::npos);
        CHECK(dest.body.find(kReportKey) == std::string::npos);
        auto metrics = h.Admin("GET", "/metrics");
        CHECK(metrics.body.find(R"(audsync_segment_reports{destination="ld",state="dead"} 1)") !=
              std::string::npos);
        CHECK(metrics.body.find(R"(audsync_segment_reports{destination="ld",state="sent"} 7)") !=
              std::string::npos);
        CHECK(h.server->Log().find("destinations reports ld --retry-dead") != std::string::npos);
        auto cli = testing::RunAudsync({"destinations", "reports", "ld", "--config", h.config});
        CHECK(cli.exit_code == 0);
        CHECK(cli.out.find("1 dead") != std::string::npos);
        CHECK(cli.out.find("u3") != std::string::npos);
        auto list = testing::RunAudsync({"destinations", "list", "--config", h.config});
        CHECK(list.out.find("reports to Segment: ok, 0 pending, 7 sent, 1 dead") !=
              std::string::npos);
        // Fixed upstream: the operator retries, and it goes.
        segment.RefuseUser("");
        auto retry = testing::RunAudsync(
            {"destinations", "reports", "ld", "--retry-dead", "--config", h.config});
        CHECK_MESSAGE(retry.exit_code == 0, retry.err);
        CHECK(retry.out.find("retried 1 dead report") != std::string::npos);
        REQUIRE(Eventually([&] { return segment.received().size() == 8; }));
        CHECK(segment.received().back().user_id == "u3");
        auto both = testing::RunAudsync({"destinations", "reports", "ld", "--retry-dead",
                                         "--discard-dead", "--config", h.config});
        CHECK(both.exit_code == 2);
        auto check = testing::RunAudsync({"check", "--config", h.config});
        CHECK_MESSAGE(check.out.find("ld/report_to_segment: ok") != std::string::npos, check.out);
        CHECK(check.out.find(kReportKey) == std::string::npos);
        auto unknown = h.Admin("GET", "/v1/destinations/nope/reports");
        CHECK(unknown.status == 404);
        auto bad = h.Admin("GET", "/v1/destinations/ld/reports?limit=0");
        CHECK(bad.status == 400);
    }

    TEST_CASE("429 and 5xx wait and retry; nothing is lost or sent twice") {
        TrackingStandIn segment;
        Harness h(ReportConfig(segment));
        segment.RateLimit(2);
        std::vector<std::string> events;
        for (int u = 0; u < 25; ++u) {
            testing::EngageEvent e;
            e.user_id = "u" + std::to_string(u);
            e.message_id = "m" + std::to_string(u);
            events.push_back(e.Json());
        }
        REQUIRE(h.Send(events).status == 200);
        REQUIRE_MESSAGE(Eventually([&] { return segment.received().size() == 25; }),
                        h.server->Log());
        CHECK(h.server->Log().find("Segment's Tracking API answered HTTP 429") !=
              std::string::npos);
        segment.Fail(true);
        std::vector<std::string> removals;
        for (int u = 0; u < 25; ++u) {
            testing::EngageEvent e;
            e.user_id = "u" + std::to_string(u);
            e.message_id = "x" + std::to_string(u);
            e.value = "false";
            e.timestamp = "2024-05-06T10:30:22.829Z";
            removals.push_back(e.Json());
        }
        REQUIRE(h.Send(removals).status == 200);
        REQUIRE(Eventually([&] {
            auto r = h.Admin("GET", "/v1/destinations/ld/reports");
            return r.body.find(R"("status":"retrying")") != std::string::npos &&
                   r.body.find(R"("pending":25)") != std::string::npos;
        }));
        segment.Fail(false);
        REQUIRE(Eventually([&] { return segment.received().size() == 50; }));
        std::set<std::string> ids;
        for (const auto& r : segment.received()) ids.insert(r.message_id);
        CHECK(ids.size() == 50);
        REQUIRE(Eventually([&] {
            return h.Admin("GET", "/v1/destinations/ld/reports").body.find(R"("status":"ok")") !=
                   std::string::npos;
        }));
    }
}
