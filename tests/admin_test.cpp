// The operator surface over real HTTP and the CLI, against a running server and the
// LaunchDarkly emulator.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using namespace audsync::testing;

namespace {

std::string ErrorNameOf(const HttpResponse& r) {
    auto doc = ParseJson(r.body);
    const auto* e = json::FindObject(doc, "error");
    REQUIRE_MESSAGE(e != nullptr, r.body);
    return json::FindString(*e, "code").value_or("");
}

// The id of the segment of `audience_id` (and kind), through the API.
int64_t SegmentIdOf(Harness& h, const std::string& audience_id, const std::string& kind = "user") {
    auto r = h.Admin("GET", "/v1/segments");
    REQUIRE(r.status == 200);
    auto doc = ParseJson(r.body);
    for (const auto& s : doc["segments"].GetArray()) {
        if (json::FindString(s, "audience_id") == audience_id &&
            json::FindString(s, "context_kind") == kind) {
            return s["id"].GetInt64();
        }
    }
    FAIL("no segment for " << audience_id);
    return 0;
}

std::vector<std::string> Events(int n, const std::string& prefix,
                                const std::string& audience = "aud_1",
                                const std::string& value = "true") {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        EngageEvent e;
        e.message_id = prefix + std::to_string(i);
        e.user_id = prefix + "-user-" + std::to_string(1000 + i);
        e.audience_id = audience;
        e.value = value;
        out.push_back(e.Json());
    }
    return out;
}

}  // namespace

TEST_SUITE("admin api") {
    TEST_CASE("every admin route needs the bearer token") {
        Harness h;
        const std::vector<std::pair<std::string, std::string>> routes = {
            {"GET", "/v1/segments"},
            {"GET", "/v1/segments/1"},
            {"GET", "/v1/segments/1/members"},
            {"GET", "/v1/segments/1/members/u1"},
            {"POST", "/v1/segments/1/resync"},
            {"GET", "/v1/contexts/u1"},
            {"GET", "/v1/destinations"},
            {"GET", "/v1/destinations/ld"},
            {"GET", "/v1/dead-letters"},
            {"POST", "/v1/dead-letters/retry"},
            {"POST", "/v1/dead-letters/discard"},
            {"GET", "/metrics"}};
        for (const auto& [method, path] : routes) {
            CAPTURE(path);
            for (const auto& headers : std::vector<std::vector<std::string>>{
                     {},
                     {"Authorization: Bearer wrong"},
                     {std::string("Authorization: ") + testing::kAdminToken},
                     {"Authorization: Basic YWRtMW4tdGVzdC10b2tlbi0wMTIzOg=="},
                     {std::string("Authorization: Bearer ") + testing::kAdminToken + "2"}}) {
                auto r = h.http.Request(method, h.server->url(path), "{}", headers);
                CHECK(r.status == 401);
                CHECK(ErrorNameOf(r) == "unauthorized");
            }
        }
    }

    TEST_CASE("segments, members, a member, contexts, with odd keys verbatim") {
        Harness h;
        const std::vector<std::string> odd = {
            "plain",    "ünïcødé-✓",   "quo\"te's",          "sl/ash",
            "per%cent", "sp ace+plus", "'; DROP TABLE x; --"};
        std::vector<std::string> events;
        for (size_t i = 0; i < odd.size(); ++i) {
            EngageEvent e;
            e.message_id = "odd" + std::to_string(i);
            e.user_id = odd[i];
            events.push_back(e.Json());
        }
        EngageEvent other;
        other.message_id = "o1";
        other.user_id = "plain";
        other.audience_id = "aud_2";
        other.audience_key = "churn_risk";
        other.value = "false";
        events.push_back(other.Json());
        REQUIRE(h.Send(events).status == 200);
        REQUIRE(Eventually([&] { return h.InSync(); }));

        auto list = h.Admin("GET", "/v1/segments");
        REQUIRE(list.status == 200);
        auto doc = ParseJson(list.body);
        REQUIRE(doc["segments"].Size() == 2);
        const auto& first = doc["segments"][0];
        for (const char* field :
             {"id", "destination", "audience_id", "audience_key", "context_kind", "members",
              "pending", "dead_letters", "status", "last_synced_at", "last_error"}) {
            CHECK_MESSAGE(first.HasMember(field), field);
        }
        int64_t seg = SegmentIdOf(h, "aud_1");
        auto filtered = ParseJson(h.Admin("GET", "/v1/segments?audience_key=churn_risk").body);
        REQUIRE(filtered["segments"].Size() == 1);
        CHECK(json::FindString(filtered["segments"][0], "audience_id") ==
              std::optional<std::string>("aud_2"));
        CHECK(ParseJson(h.Admin("GET", "/v1/segments?destination=nope").body)["segments"].Size() ==
              0);

        auto one = ParseJson(h.Admin("GET", "/v1/segments/" + std::to_string(seg)).body);
        CHECK(one["members"].GetInt64() == static_cast<int64_t>(odd.size()));
        CHECK(json::FindString(one, "status") == std::optional<std::string>("in_sync"));
        CHECK(one["counts"]["included"].GetInt64() == static_cast<int64_t>(odd.size()));
        CHECK(one["last_synced_at"].IsString());
        CHECK(h.Admin("GET", "/v1/segments/999").status == 404);
        CHECK(h.Admin("GET", "/v1/segments/abc").status == 404);

        for (const auto& key : odd) {
            CAPTURE(key);
            auto r = h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members/" +
                                        text::PercentEncode(key));
            REQUIRE(r.status == 200);
            auto m = ParseJson(r.body);
            CHECK(json::FindString(m, "context_key") == key);
            CHECK(json::FindString(m, "state") == std::optional<std::string>("included"));
            CHECK(json::FindString(m, "acknowledged") == std::optional<std::string>("included"));
            CHECK(m["deciding_event"]["message_id"].IsString());
            CHECK(m["last_push"]["status"].GetInt() == 204);
            auto ctx = ParseJson(h.Admin("GET", "/v1/contexts/" + text::PercentEncode(key)).body);
            CHECK(ctx["segments"].Size() == 1);  // aud_2 holds "plain" as excluded only
        }
        auto missing = h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members/nobody");
        CHECK(missing.status == 404);
        CHECK(ErrorNameOf(missing) == "not_found");

        auto members = ParseJson(
            h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members?state=included").body);
        CHECK(members["members"].Size() == odd.size());
        CHECK(members["next_cursor"].IsNull());
        CHECK(ParseJson(
                  h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members?state=pending")
                      .body)["members"]
                  .Size() == 0);
        CHECK(
            h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members?state=weird").status ==
            400);
        CHECK(h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members?limit=0").status ==
              400);
        CHECK(
            h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members?limit=1001").status ==
            400);
        CHECK(h.Admin("GET", "/v1/segments/" + std::to_string(seg) + "/members?cursor=!!").status ==
              400);
    }

    TEST_CASE("keyset pagination is complete and stable under concurrent writes") {
        Harness h;
        REQUIRE(h.Send(Events(250, "p")).status == 200);
        int64_t seg = SegmentIdOf(h, "aud_1");
        std::atomic<bool> stop{false};
        std::thread writer([&] {
            HttpClient http;
            for (int round = 0; !stop && round < 200; ++round) {
                std::vector<std::string> batch;
                for (int i = 0; i < 5; ++i) {
                    EngageEvent e;
                    e.message_id = "w" + std::to_string(round) + "-" + std::to_string(i);
                    e.user_id =
                        "p-user-" + std::to_string(round % 2 ? 500 + round * 5 + i : 100 + i);
                    batch.push_back(e.Json());
                }
                std::string body = "[";
                for (size_t i = 0; i < batch.size(); ++i) body += (i ? "," : "") + batch[i];
                http.Post(h.server->url("/v1/destinations/ld/events"), body + "]",
                          {BasicAuth("wk-ld")});
            }
        });
        std::set<std::string> seen;
        size_t duplicates = 0;
        std::string cursor;
        int pages = 0;
        for (;;) {
            std::string path = "/v1/segments/" + std::to_string(seg) + "/members?limit=40" +
                               (cursor.empty() ? "" : "&cursor=" + cursor);
            auto r = h.Admin("GET", path);
            REQUIRE(r.status == 200);
            auto doc = ParseJson(r.body);
            for (const auto& m : doc["members"].GetArray()) {
                if (!seen.insert(*json::FindString(m, "context_key")).second) ++duplicates;
            }
            ++pages;
            if (doc["next_cursor"].IsNull()) break;
            cursor = *json::FindString(doc, "next_cursor");
        }
        stop = true;
        writer.join();
        CHECK(duplicates == 0);
        for (int i = 0; i < 250; ++i) CHECK(seen.count("p-user-" + std::to_string(1000 + i)) == 1);
        CHECK(pages >= 7);
    }

    TEST_CASE("destinations are shown with every secret redacted") {
        Harness h;
        REQUIRE(h.Send(Events(3, "d")).status == 200);
        REQUIRE(Eventually([&] { return h.InSync(); }));
        auto list = h.Admin("GET", "/v1/destinations");
        auto one = h.Admin("GET", "/v1/destinations/ld");
        REQUIRE(list.status == 200);
        REQUIRE(one.status == 200);
        for (const auto& body : {list.body, one.body, h.Admin("GET", "/metrics").body,
                                 h.Admin("GET", "/v1/segments").body, h.server->Log()}) {
            for (const char* secret : {kToken, "wk-ld", "s3cret", testing::kAdminToken}) {
                CHECK_MESSAGE(body.find(secret) == std::string::npos, secret);
            }
        }
        auto doc = ParseJson(one.body);
        REQUIRE(doc["targets"].IsArray());
        CHECK(json::FindString(doc["targets"][0], "service_token") ==
              std::optional<std::string>("[redacted]"));
        CHECK(json::FindString(doc, "shared_secret") == std::optional<std::string>("[redacted]"));
        CHECK(json::FindString(doc["write_keys"][0], "x") == std::nullopt);
        CHECK(std::string(doc["write_keys"][0].GetString()) == "[redacted]");
        CHECK(json::FindString(doc, "status") == std::optional<std::string>("ok"));
        CHECK(doc["last_success_at"].IsString());
        CHECK(h.Admin("GET", "/v1/destinations/nope").status == 404);
    }

    TEST_CASE("dead letters: list, retry, discard") {
        Harness h;
        h.emulator.RefuseKeys({"dl-user-1000", "dl-user-1001", "dl-user-1002"});
        REQUIRE(h.Send(Events(10, "dl")).status == 200);
        REQUIRE(Eventually([&] {
            return h.InSync() && h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 3;
        }));
        auto list = ParseJson(h.Admin("GET", "/v1/dead-letters?limit=2").body);
        REQUIRE(list["dead_letters"].Size() == 2);
        REQUIRE(list["next_cursor"].IsString());
        auto rest = ParseJson(h.Admin("GET", "/v1/dead-letters?cursor=" +
                                                 std::string(list["next_cursor"].GetString()))
                                  .body);
        REQUIRE(rest["dead_letters"].Size() == 1);
        CHECK(rest["next_cursor"].IsNull());
        const auto& item = list["dead_letters"][0];
        CHECK(item["status"].GetInt() == 400);
        CHECK(std::string(item["error"].GetString()).find("refused") != std::string::npos);
        std::string id = item["id"].GetString();
        auto seg = ParseJson(
            h.Admin("GET", "/v1/segments/" + std::to_string(item["segment_id"].GetInt64())).body);
        CHECK(seg["dead_letters"].GetInt() == 3);

        h.emulator.RefuseKeys({"dl-user-1002"});
        auto retried = h.Admin("POST", "/v1/dead-letters/retry", "{\"ids\":[\"" + id + "\"]}");
        REQUIRE(retried.status == 200);
        CHECK(ParseJson(retried.body)["retried"].GetInt() == 1);
        REQUIRE(
            Eventually([&] { return h.emulator.Included("aud_1").count("dl-user-1000") == 1; }));
        auto by_segment =
            h.Admin("POST", "/v1/dead-letters/discard",
                    "{\"segment\":" + std::to_string(item["segment_id"].GetInt64()) + "}");
        CHECK(ParseJson(by_segment.body)["discarded"].GetInt() == 2);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
        CHECK(h.InSync());
        for (const char* bad : {"{}", "[]", R"({"ids":[]})", R"({"ids":["x"]})",
                                R"({"ids":["1:a"],"segment":1})", R"({"segment":"1"})", "nope"}) {
            CAPTURE(bad);
            CHECK(h.Admin("POST", "/v1/dead-letters/retry", bad).status == 400);
        }
    }

    TEST_CASE("resync after the platform lost its state restores it exactly") {
        Harness h;
        Stream s = MixedStream(200, 11);
        SendAll(h, s, 50);
        REQUIRE(Eventually([&] { return Converged(h.emulator, s); }));
        h.emulator.Reset();  // LaunchDarkly's environment was reset
        CHECK_FALSE(Converged(h.emulator, s));
        auto doc = ParseJson(h.Admin("GET", "/v1/segments").body);
        for (const auto& seg : doc["segments"].GetArray()) {
            auto r =
                h.Admin("POST", "/v1/segments/" + std::to_string(seg["id"].GetInt64()) + "/resync");
            REQUIRE(r.status == 200);
            CHECK(ParseJson(r.body)["marked"].GetInt64() > 0);
        }
        REQUIRE(Eventually([&] { return Converged(h.emulator, s); }));
        CHECK(h.Admin("POST", "/v1/segments/999/resync").status == 404);
    }

    TEST_CASE("metrics in Prometheus text format") {
        Harness h;
        REQUIRE(h.Send(Events(5, "m")).status == 200);
        REQUIRE(
            h.Send(
                 {R"({"type":"identify","userId":"x","context":{"personas":{"computation_class":"audience","computation_id":"a","computation_key":"k"}}})"})
                .status == 200);
        REQUIRE(Eventually([&] { return h.InSync(); }));
        auto r = h.Admin("GET", "/metrics");
        REQUIRE(r.status == 200);
        CHECK(r.headers["content-type"].rfind("text/plain", 0) == 0);
        for (const char* line :
             {"audsync_events_total{outcome=\"accepted\"} 5",
              "audsync_events_total{outcome=\"stored\"} 5", "audsync_inbox_backlog_events 0",
              "audsync_inbox_applied_total 5", "audsync_inbox_backlog_age_seconds 0.000",
              "audsync_events_rejected_total{reason=\"no_membership_value\"} 1",
              "audsync_pending_members 0", "audsync_dead_letters 0",
              "# TYPE audsync_push_duration_seconds histogram",
              "audsync_push_duration_seconds_bucket{le=\"+Inf\"}", "audsync_sync_lag_seconds 0",
              "audsync_pushes_total{outcome=\"ok\"}"}) {
            CHECK_MESSAGE(r.body.find(line) != std::string::npos, line);
        }
    }
}

TEST_SUITE("operator cli") {
    TEST_CASE("segments list, show and members as tables and JSON") {
        Harness h;
        REQUIRE(h.Send(Events(12, "c")).status == 200);
        REQUIRE(Eventually([&] { return h.InSync(); }));
        int64_t seg = SegmentIdOf(h, "aud_1");
        auto list = RunAudsync({"segments", "list", "--config", h.config});
        CHECK(list.exit_code == 0);
        CHECK(list.out.find("high_value_users") != std::string::npos);
        CHECK(list.out.find("in_sync") != std::string::npos);
        auto json_list = RunAudsync({"segments", "list", "--json", "--config", h.config});
        CHECK(ParseJson(json_list.out)["segments"][0]["members"].GetInt() == 12);
        auto show = RunAudsync({"segments", "show", std::to_string(seg), "--config", h.config});
        CHECK(show.out.find("included:       12") != std::string::npos);
        auto members = RunAudsync({"segments", "members", std::to_string(seg), "--state",
                                   "included", "--json", "--config", h.config});
        CHECK(members.exit_code == 0);
        size_t lines = 0;
        for (char c : members.out) lines += c == '\n';
        CHECK(lines == 12);
        auto limited = RunAudsync(
            {"segments", "members", std::to_string(seg), "--limit", "3", "--config", h.config});
        lines = 0;
        for (char c : limited.out) lines += c == '\n';
        CHECK(lines == 4);  // header + 3
        CHECK(RunAudsync({"segments", "show", "999", "--config", h.config}).exit_code == 1);
        CHECK(RunAudsync({"segments", "members", std::to_string(seg), "--state", "x", "--config",
                          h.config})
                  .exit_code == 2);
        CHECK(RunAudsync({"segments", "frob", "1", "--config", h.config}).exit_code == 2);
        CHECK(RunAudsync({"segments", "--config", h.config}).exit_code == 2);
    }

    TEST_CASE("replay segments: dry run changes nothing, a replay restores a wiped platform") {
        Harness h;
        Stream s = MixedStream(150, 21);
        SendAll(h, s, 50);
        REQUIRE(Eventually([&] { return Converged(h.emulator, s) && h.InSync(); }));
        h.emulator.Reset();
        auto dry = RunAudsync({"replay", "segments", "--dry-run", "--config", h.config});
        CHECK(dry.exit_code == 0);
        CHECK(dry.out.find("dry run: would re-push") != std::string::npos);
        CHECK(h.InSync());  // nothing marked
        auto dry_json =
            RunAudsync({"replay", "segments", "--dry-run", "--json", "--config", h.config});
        auto doc = ParseJson(dry_json.out);
        int64_t expected_adds = 0;
        for (const auto& [cohort, keys] : s.expected)
            expected_adds += static_cast<int64_t>(keys.size());
        CHECK(doc["adds"].GetInt64() == expected_adds);
        CHECK(doc["dry_run"].GetBool());
        // While the server serves, the CLI marks and the server pushes.
        auto replay = RunAudsync({"replay", "segments", "--config", h.config});
        CHECK(replay.exit_code == 0);
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, s); }), h.server->Log());
    }

    TEST_CASE("replay segments --push-now pushes without a server") {
        Harness h;
        Stream s = MixedStream(120, 22);
        SendAll(h, s, 60);
        REQUIRE(Eventually([&] { return Converged(h.emulator, s) && h.InSync(); }));
        CHECK(h.server->Stop() == 0);
        h.server.reset();
        h.emulator.Reset();
        auto aud_a =
            RunAudsync({"replay", "segments", "--push-now", "--json", "--config", h.config});
        CHECK_MESSAGE(aud_a.exit_code == 0, aud_a.err);
        CHECK(Converged(h.emulator, s));
        auto doc = ParseJson(aud_a.out);
        CHECK(doc["pending"].GetInt() == 0);
    }

    TEST_CASE(
        "replay segments: a cursor that writes nothing per acknowledged member, and "
        "resumes after a crash") {
        Harness h;
        // 400 members of one audience (and some excluded): ranges of 112 (4 lanes of 4
        // batches of 7), so the cursor moves several times.
        Stream s = MixedStream(150, 23);
        for (int i = 0; i < 400; ++i) {
            EngageEvent e;
            e.message_id = "big-" + std::to_string(i);
            e.audience_id = "aud_big";
            e.audience_key = "big_audience";
            e.user_id = "big-" + std::to_string(i);
            e.value = i % 10 == 0 ? "false" : "true";
            s.events.push_back(e.Json());
            if (i % 10 != 0) s.expected["aud_big"].insert(e.user_id);
        }
        SendAll(h, s, 50);
        REQUIRE(Eventually([&] { return Converged(h.emulator, s) && h.InSync(); }));
        const std::string rows =
            "SELECT group_concat(segment_id || '/' || context_key || '/' || target || '/' || "
            "coalesce(acked, '-') || '/' || coalesce(acked_version, '-') || '/' || "
            "coalesce(last_push_ms, '-') || '/' || pending || dead, ',') FROM "
            "(SELECT * FROM deliveries ORDER BY segment_id, context_key, target)";
        const std::string before = h.Text(rows);
        REQUIRE_FALSE(before.empty());
        h.emulator.Reset();
        h.emulator.SetDelay(100);  // ranges of 7 members: the replay takes a few seconds
        auto replay = RunAudsync({"replay", "segments", "--config", h.config});
        REQUIRE_MESSAGE(replay.exit_code == 0, replay.err);
        // The running server takes the cursor up; killed once it has moved, the next
        // server goes on from it.
        REQUIRE_MESSAGE(Eventually([&] {
                            return h.Count(
                                       "SELECT count(*) FROM replays "
                                       "WHERE after_key <> ''") > 0;
                        }),
                        h.server->Log());
        h.server->Kill();
        const int64_t cursors = h.Count("SELECT count(*) FROM replays WHERE after_key <> ''");
        CHECK(cursors > 0);
        h.emulator.SetDelay(0);
        h.StartServer();
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, s) && h.InSync(); }),
                        h.server->Log());
        CHECK(h.Text(rows) == before);  // no delivery row was written for the replay
        // Lanes take several batches of a replay, each request within max_batch (7).
        CHECK(h.emulator.stats().max_batch == 7);
    }

    TEST_CASE("replay segments: a failure on the way goes the usual way, retried or refused") {
        Harness h;
        Stream s = MixedStream(150, 24);
        SendAll(h, s, 50);
        REQUIRE(Eventually([&] { return Converged(h.emulator, s) && h.InSync(); }));
        REQUIRE(h.Count("SELECT count(*) FROM deliveries WHERE context_key = 'user-3'") > 0);
        h.emulator.Reset();
        emulator::Fault busy;
        busy.status = 503;
        busy.count = 2;
        h.emulator.AddFault(busy);
        h.emulator.RefuseKeys({"user-3"});
        auto replay = RunAudsync({"replay", "segments", "--config", h.config});
        REQUIRE_MESSAGE(replay.exit_code == 0, replay.err);
        Stream without = s;
        for (auto& [cohort, keys] : without.expected) keys.erase("user-3");
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, without) && h.InSync(); }),
                        h.server->Log());
        CHECK(h.emulator.stats().by_status[503] == 2);
        // user-3's rows, and only those, are dead letters: each at its own version.
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") ==
              h.Count("SELECT count(*) FROM deliveries WHERE context_key = 'user-3'"));
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND "
                      "context_key <> 'user-3'") == 0);
    }

    TEST_CASE("replay events: NDJSON, arrays and batch objects through the ingest path") {
        Harness h;
        TempDir dir;
        EngageEvent a, b, c, stale;
        a.message_id = "r1";
        a.user_id = "replayed-1";
        b.message_id = "r2";
        b.user_id = "replayed-2";
        c.message_id = "r3";
        c.user_id = "replayed-3";
        c.value = "";  // no value: rejected
        stale = a;
        stale.message_id = "r0";
        stale.value = "false";
        stale.timestamp = "2024-01-01T00:00:00.000Z";
        std::string ndjson = a.Json() + "\n" + b.Json() + "\n" + c.Json() + "\n" + a.Json() + "\n" +
                             stale.Json() + "\n{\"type\":\"page\",\"userId\":\"x\"}\n";
        std::ofstream(dir.File("events.ndjson")) << ndjson;
        auto r = RunAudsync(
            {"replay", "events", dir.File("events.ndjson"), "--json", "--config", h.config});
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        auto doc = ParseJson(r.out);
        CHECK(doc["events"].GetInt() == 6);
        // Stored: a, b, a again and the stale one; applied (duplicates and stale events are
        // the applier's to find) before the command returns.
        CHECK(doc["stored"].GetInt() == 4);
        CHECK(doc["applied"].GetBool());
        CHECK_FALSE(doc.HasMember("accepted"));
        CHECK(doc["not_applicable"].GetInt() == 1);
        CHECK(doc["rejected_by_reason"]["no_membership_value"].GetInt() == 1);
        // The running server pushes what the replay committed.
        REQUIRE(Eventually([&] { return h.emulator.Included("aud_1").count("replayed-2") == 1; }));

        EngageEvent d = a;
        d.message_id = "r4";
        d.user_id = "replayed-4";
        std::ofstream(dir.File("events.json")) << "[\n" << d.Json() << ",\n" << a.Json() << "\n]";
        auto arr = RunAudsync(
            {"replay", "events", dir.File("events.json"), "--json", "--config", h.config});
        REQUIRE(arr.exit_code == 0);
        CHECK(ParseJson(arr.out)["stored"].GetInt() == 2);
        CHECK(ParseJson(arr.out)["applied"].GetBool());

        EngageEvent e = a;
        e.message_id = "r5";
        e.user_id = "replayed-5";
        std::ofstream(dir.File("batch.json"))
            << "{\"batch\":[" << e.Json() << "],\"writeKey\":\"wk-ld\"}";
        auto batch = RunAudsync({"replay", "events", dir.File("batch.json"), "--config", h.config});
        REQUIRE(batch.exit_code == 0);
        CHECK(batch.out.find("stored:          1 (applied)") != std::string::npos);
        REQUIRE(Eventually([&] { return h.emulator.Included("aud_1").count("replayed-5") == 1; }));

        auto missing =
            RunAudsync({"replay", "events", dir.File("nope.json"), "--config", h.config});
        CHECK(missing.exit_code == 1);
        std::ofstream(dir.File("broken.json")) << "[" << a.Json();
        auto broken =
            RunAudsync({"replay", "events", dir.File("broken.json"), "--config", h.config});
        CHECK(broken.exit_code == 1);
        CHECK(RunAudsync({"replay", "events", "--config", h.config}).exit_code == 2);
        CHECK(RunAudsync({"replay", "nothing", "--config", h.config}).exit_code == 2);
    }

    TEST_CASE("dead-letters list, retry and discard from the CLI") {
        Harness h;
        h.emulator.RefuseKeys({"cdl-user-1000", "cdl-user-1001"});
        REQUIRE(h.Send(Events(4, "cdl")).status == 200);
        REQUIRE(Eventually(
            [&] { return h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 2; }));
        auto list = RunAudsync({"dead-letters", "list", "--config", h.config});
        CHECK(list.exit_code == 0);
        CHECK(list.out.find("cdl-user-1000") != std::string::npos);
        CHECK(list.out.find("refused") != std::string::npos);
        int64_t seg = SegmentIdOf(h, "aud_1");
        h.emulator.RefuseKeys({});
        auto retry = RunAudsync({"dead-letters", "retry", std::to_string(seg) + ":cdl-user-1000",
                                 "--config", h.config});
        CHECK(retry.exit_code == 0);
        CHECK(retry.out.find("retried 1") != std::string::npos);
        REQUIRE(
            Eventually([&] { return h.emulator.Included("aud_1").count("cdl-user-1000") == 1; }));
        auto discard = RunAudsync({"dead-letters", "discard", "--segment", std::to_string(seg),
                                   "--json", "--config", h.config});
        CHECK(ParseJson(discard.out)["discarded"].GetInt() == 1);
        CHECK(RunAudsync({"dead-letters", "retry", "--config", h.config}).exit_code == 2);
        CHECK(RunAudsync({"dead-letters", "retry", "bad-id", "--config", h.config}).exit_code == 2);
        // A member that is no dead letter is named, and the command fails.
        auto nope = RunAudsync(
            {"dead-letters", "retry", std::to_string(seg) + ":nope", "--config", h.config});
        CHECK(nope.exit_code == 1);
        CHECK(nope.out.find("retried 0 dead letters") != std::string::npos);
        CHECK(nope.out.find("not a dead letter: " + std::to_string(seg) + ":nope") !=
              std::string::npos);
    }
}
