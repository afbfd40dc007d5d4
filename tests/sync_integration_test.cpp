// Integration tests of the sync engine: `audsync serve` in a child process pushing to
// the LaunchDarkly emulator running in this process.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/json.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;

using namespace audsync::testing;

TEST_SUITE("sync integration") {
    TEST_CASE("a mixed stream over several audiences converges exactly") {
        Harness h;
        Stream s = MixedStream(400, 1);
        SendAll(h, s, 37);
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, s); }), h.server->Log());
        auto segments = h.emulator.Segments();
        CHECK(segments.at("segment-audiences-aud_a").cohort_name == "Aud a key");
        CHECK(segments.at("segment-audiences-aud_a").context_kind == "user");
        CHECK(segments.at("segment-audiences-aud_c").context_kind == "account");
        auto stats = h.emulator.stats();
        CHECK(stats.max_batch <= 7);  // max_batch
        CHECK(stats.by_status[204] == stats.requests);
        // Everything acknowledged: nothing pending.
        CHECK(Eventually(
            [&] { return h.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0; }));
        // The request was byte-exact to the spec's headers.
        CHECK(stats.last_headers["authorization"] == kToken);
        CHECK(stats.last_headers["ld-api-version"] == "20240415");
        CHECK(stats.last_headers["content-type"] == "application/json");
        CHECK(stats.last_headers["user-agent"] == std::string("audsync/") + AUDSYNC_VERSION);
    }

    TEST_CASE("coalescing: many flips of one member cost one entry with the final state") {
        Harness h;
        h.emulator.SetDelay(300);  // hold the first push so the flips pile up behind it
        EngageEvent first;
        first.message_id = "f0";
        first.user_id = "flipper";
        first.timestamp = text::FormatIso8601(1714987822000);
        REQUIRE(h.Send({first.Json()}).status == 200);
        REQUIRE(Eventually([&] { return h.emulator.stats().requests >= 1; }));
        for (int i = 1; i <= 10; ++i) {
            EngageEvent e = first;
            e.message_id = "f" + std::to_string(i);
            e.value = i % 2 ? "false" : "true";
            e.timestamp = text::FormatIso8601(1714987822000 + i);
            REQUIRE(h.Send({e.Json()}).status == 200);
        }
        // The 10th flip (i = 10) is an add.
        REQUIRE(Eventually([&] {
            return h.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0 &&
                   h.emulator.Included("aud_1").count("flipper") == 1;
        }));
        auto stats = h.emulator.stats();
        MESSAGE("entries pushed for 11 events: " << stats.members);
        CHECK(stats.members <= 3);  // the first push, the final state, maybe one between
    }

    TEST_CASE("the version guard: a change during a slow push goes out after it") {
        Harness h;
        h.emulator.SetDelay(700);
        EngageEvent add;
        add.user_id = "racer";
        add.timestamp = text::FormatIso8601(1714987822000);
        REQUIRE(h.Send({add.Json()}).status == 200);
        REQUIRE(Eventually([&] { return h.emulator.stats().requests >= 1; }));  // push in flight
        EngageEvent remove = add;
        remove.message_id = "m2";
        remove.value = "false";
        remove.timestamp = text::FormatIso8601(1714987823000);
        REQUIRE(h.Send({remove.Json()}).status == 200);
        REQUIRE(Eventually(
            [&] { return h.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0; }));
        CHECK(h.emulator.Included("aud_1").count("racer") == 0);
        CHECK(h.Count("SELECT acked FROM deliveries WHERE context_key = 'racer'") == 0);
    }

    TEST_CASE("converges under 500s, 429s with both headers, dropped connections and delays") {
        Harness h;
        emulator::Fault f500;
        f500.status = 500;
        f500.count = 3;
        emulator::Fault retry_after;
        retry_after.status = 429;
        retry_after.retry_after = "1";
        emulator::Fault reset;
        reset.status = 429;
        reset.reset_in_ms = 300;
        emulator::Fault drop;
        drop.drop = true;
        drop.count = 2;
        emulator::Fault slow;
        slow.delay_ms = 400;
        slow.count = 2;
        emulator::Fault f503;
        f503.status = 503;
        f503.count = 2;
        for (const auto& f : {f500, retry_after, drop, reset, slow, f503}) h.emulator.AddFault(f);
        Stream s = MixedStream(300, 2);
        SendAll(h, s, 50);
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, s); }), h.server->Log());
        auto stats = h.emulator.stats();
        CHECK(stats.by_status[500] == 3);
        CHECK(stats.by_status[429] == 2);
        CHECK(stats.by_status[0] == 2);  // dropped
        CHECK(stats.by_status[503] == 2);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
    }

    TEST_CASE("ingest keeps answering while the platform fails") {
        Harness h;
        emulator::Fault down;
        down.status = 500;
        down.count = 1000000;
        h.emulator.AddFault(down);
        Stream s = MixedStream(200, 3);
        SendAll(h, s, 20);  // every request must be answered 200
        CHECK(Eventually([&] { return h.emulator.stats().by_status[500] >= 3; }));
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE last_status = 500") > 0);
        h.emulator.ClearFaults();
        REQUIRE(Eventually([&] { return Converged(h.emulator, s); }));
    }

    TEST_CASE("refused keys become dead letters while everything else converges") {
        Harness h;
        h.emulator.RefuseKeys({"user-3", "user-17"});
        Stream s = MixedStream(300, 4);
        SendAll(h, s, 60);
        auto expected_without = [&](const Stream& st) {
            Stream copy = st;
            for (auto& [cohort, keys] : copy.expected) {
                keys.erase("user-3");
                keys.erase("user-17");
            }
            return copy;
        };
        Stream reachable = expected_without(s);
        REQUIRE_MESSAGE(
            Eventually([&] {
                return Converged(h.emulator, reachable) &&
                       h.Count("SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0") ==
                           0;
            }),
            h.server->Log());
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND context_key NOT IN "
                      "('user-3','user-17')") == 0);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") > 0);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND last_status = 400 AND "
                      "last_error LIKE '%refused%'") ==
              h.Count("SELECT count(*) FROM deliveries WHERE dead = 1"));
    }

    TEST_CASE("a platform that always answers 409 ends in dead letters, not endless retries") {
        Harness h;
        emulator::Fault conflict;
        conflict.status = 409;
        conflict.count = 1000000;
        h.emulator.AddFault(conflict);
        Stream s = MixedStream(40, 8);
        SendAll(h, s, 40);
        const int64_t members = h.Count("SELECT count(*) FROM memberships");
        REQUIRE(members > 0);
        REQUIRE_MESSAGE(Eventually(
                            [&] {
                                return h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") ==
                                       members;
                            },
                            60000),
                        h.server->Log());
        CHECK(h.Count("SELECT max(attempts) FROM deliveries") <= 3);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE last_status = 409 AND last_error "
                      "LIKE '%injected by the emulator%'") == members);
        // Nothing is left to push: the platform is not hammered any more.
        const uint64_t requests = h.emulator.stats().requests;
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0") == 0);
        CHECK(requests <= static_cast<uint64_t>(3 * members));
        std::string log = h.server->Log();
        CHECK_MESSAGE(log.find(" warn sync: segment ") != std::string::npos, log);
        CHECK_MESSAGE(
            log.find("now dead letters (HTTP 409: injected by the emulator)") != std::string::npos,
            log);
        CHECK(log.find(kToken) == std::string::npos);
    }

    TEST_CASE("401 marks the destination auth_failed, holds members, and recovers") {
        Harness h;
        h.emulator.SetRejectToken(true);
        Stream s = MixedStream(60, 5);
        SendAll(h, s, 30);
        REQUIRE(Eventually([&] {
            return h.Count(
                       "SELECT count(*) FROM targets WHERE destination = 'ld' AND status = "
                       "'auth_failed'") == 1;
        }));
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE pending = 1") > 0);
        // One warn line with the platform's message, whole, and never the token.
        CHECK(Eventually([&] {
            return h.server->Log().find(
                       "refused its credentials (HTTP 401: invalid access "
                       "token)") != std::string::npos;
        }));
        CHECK(h.server->Log().find(kToken) == std::string::npos);
        h.emulator.SetRejectToken(false);
        REQUIRE(Eventually([&] { return Converged(h.emulator, s); }));
        CHECK(Eventually([&] {
            return h.server->Log().find(
                       "target launchdarkly of destination ld accepts pushes again") !=
                   std::string::npos;
        }));
        CHECK(Eventually([&] {
            return h.Count(
                       "SELECT count(*) FROM targets WHERE destination = 'ld' AND status = 'ok' "
                       "AND "
                       "last_success_ms IS NOT NULL") == 1;
        }));
    }

    // Before, a platform that could not be reached left the target "ok" with no error:
    // only the segment's members said so.
    TEST_CASE("a target that does not answer shows retrying with its error, and recovers") {
        Harness h;
        emulator::Fault drop;
        drop.drop = true;
        drop.count = 1000000;
        h.emulator.AddFault(drop);
        Stream s = MixedStream(40, 9);
        SendAll(h, s, 40);
        REQUIRE_MESSAGE(Eventually([&] {
                            return h.Count(
                                       "SELECT count(*) FROM targets WHERE destination = 'ld' "
                                       "AND status = 'retrying' AND last_error IS NOT NULL") == 1;
                        }),
                        h.server->Log());
        rapidjson::Document d;
        auto shown = h.Admin("GET", "/v1/destinations/ld");
        REQUIRE(shown.status == 200);
        d.Parse(shown.body.c_str());
        REQUIRE(d.IsObject());
        CHECK(std::string(d["status"].GetString()) == "retrying");
        REQUIRE(d["last_error"].IsString());
        CHECK(std::string(d["last_error"].GetString()).size() > 0);
        REQUIRE(d["targets"].Size() == 1);
        CHECK(std::string(d["targets"][0]["status"].GetString()) == "retrying");
        CHECK(d["targets"][0]["pending"].GetInt64() > 0);
        const std::string metrics = h.Admin("GET", "/metrics").body;
        CHECK_MESSAGE(metrics.find("audsync_target_up{destination=\"ld\",target=\"launchdarkly\","
                                   "platform=\"launchdarkly\"} 0") != std::string::npos,
                      metrics);
        CHECK(Eventually([&] {
            return h.server->Log().find(
                       "warn sync: target launchdarkly of destination ld is failing (") !=
                   std::string::npos;
        }));
        h.emulator.ClearFaults();
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, s) && h.InSync(); }),
                        h.server->Log());
        CHECK(Eventually([&] {
            return h.Count(
                       "SELECT count(*) FROM targets WHERE destination = 'ld' AND status = "
                       "'ok' AND last_error IS NULL") == 1;
        }));
        CHECK(h.server->Log().find("target launchdarkly of destination ld accepts pushes again") !=
              std::string::npos);
        CHECK(h.server->Log().find(kToken) == std::string::npos);
    }

    TEST_CASE("SIGKILL during pushes, then a restart, converges with nothing lost") {
        Harness h;
        h.emulator.SetDelay(150);
        Stream s = MixedStream(300, 6);
        SendAll(h, s, 100);
        REQUIRE(Eventually([&] { return h.emulator.stats().requests >= 3; }));
        h.server->Kill();
        CHECK_FALSE(Converged(h.emulator, s));
        h.emulator.SetDelay(0);
        h.StartServer();
        REQUIRE_MESSAGE(Eventually([&] { return Converged(h.emulator, s); }), h.server->Log());
        CHECK(Eventually(
            [&] { return h.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0; }));
    }
}

TEST_SUITE("check command") {
    TEST_CASE("audsync check verifies both credentials against the emulator") {
        emulator::Emulator::Options o;
        o.service_token = kToken;
        o.client_side_id = kClientSideId;
        emulator::Emulator e(o);
        e.Start();
        testing::TempDir dir;
        auto write = [&](const std::string& name, const std::string& token, const std::string& cs) {
            std::string path = dir.File(name);
            std::string cfg = SyncConfig(dir.File("x.db"), e.base_url());
            cfg.replace(cfg.find(kToken), std::string(kToken).size(), token);
            cfg.replace(cfg.find(kClientSideId), std::string(kClientSideId).size(), cs);
            std::ofstream(path) << cfg;
            return path;
        };
        auto ok =
            testing::RunAudsync({"check", "--config", write("ok.json", kToken, kClientSideId)});
        CHECK(ok.exit_code == 0);
        CHECK(ok.out.find("ld/launchdarkly (launchdarkly): ok") != std::string::npos);
        auto token = testing::RunAudsync(
            {"check", "--config", write("t.json", "wrong-token", kClientSideId)});
        CHECK(token.exit_code == 1);
        CHECK(token.out.find("service token: refused (HTTP 401)") != std::string::npos);
        CHECK(token.out.find("wrong-token") == std::string::npos);
        auto cs = testing::RunAudsync({"check", "--config", write("c.json", kToken, "nope")});
        CHECK(cs.exit_code == 1);
        CHECK(cs.out.find("client-side ID: unknown to LaunchDarkly (HTTP 404)") !=
              std::string::npos);
        auto unknown = testing::RunAudsync(
            {"check", "--config", write("u.json", kToken, kClientSideId), "--destination", "zz"});
        CHECK(unknown.exit_code == 1);
        auto chosen = testing::RunAudsync(
            {"check", "--config", write("d.json", kToken, kClientSideId), "--destination", "ld"});
        CHECK(chosen.exit_code == 0);
        e.Stop();
        auto down =
            testing::RunAudsync({"check", "--config", write("x.json", kToken, kClientSideId)});
        CHECK(down.exit_code == 1);
        CHECK(down.out.find("no answer") != std::string::npos);
    }
}
