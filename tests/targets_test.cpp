// One destination fanning out to LaunchDarkly, Flagsmith and ConfigCat (their emulators
// in this process, `audsync serve` as a child): convergence through duplicates and
// reordering, faults in one target, lists over a platform's limit, and the upgrade of a
// database made before targets existed.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../tools/configcat_emulator/emulator.hpp"
#include "../tools/flagsmith_emulator/emulator.hpp"
#include "audsync/store/migrations.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using namespace audsync::testing;
namespace fse = audsync::flagsmith_emulator;
namespace cce = audsync::configcat_emulator;

namespace {

constexpr const char* kFlagsmithKey = "ser.fanout-key";
constexpr const char* kEmptyList = "audsync:no-members";

// What the test stream's audiences are called on the platforms: the audience key, and
// for another context kind than user, "<key>:<kind>".
std::string PlatformName(const std::string& cohort) {
    return cohort == "aud_c" ? "aud_c_key:account" : cohort + "_key";
}

struct FanOut {
    emulator::Emulator ld{[] {
        emulator::Emulator::Options o;
        o.service_token = kToken;
        o.client_side_id = kClientSideId;
        return o;
    }()};
    fse::Emulator fs{[] {
        fse::Emulator::Options o;
        o.environment_key = kFlagsmithKey;
        return o;
    }()};
    cce::Emulator cc;
    TempDir dir;
    std::string db = dir.File("fanout.db");
    std::string config = dir.File("config.json");
    std::unique_ptr<ServerProcess> server;
    HttpClient http;

    explicit FanOut(int max_list_items = 1000, cce::Emulator::Options cc_options = Options())
        : cc(cc_options) {
        ld.Start();
        fs.Start();
        cc.Start();
        WriteConfig(max_list_items);
        StartServer();
    }
    ~FanOut() {
        if (server) CHECK_MESSAGE(server->Stop() == 0, server->Log());
        ld.Stop();
        fs.Stop();
        cc.Stop();
    }
    static cce::Emulator::Options Options() {
        cce::Emulator::Options o;
        o.max_segments = 100;
        return o;
    }
    void WriteConfig(int max_list_items) {
        const std::string delivery =
            R"("retry_base_ms":20,"retry_max_ms":200,"auth_retry_ms":300,"request_timeout_ms":3000)";
        std::ofstream(config)
            << R"({"listen":"127.0.0.1:0","database":")" << db << R"(","admin_token":")"
            << kAdminToken << R"(","admin_auth_free_failures":1000000,)"
            << R"("sync":{"linger_ms":10,"workers":4},"destinations":[{"id":"ld",)"
            << R"("write_keys":["wk-ld"],)" << delivery << R"(,"targets":[)"
            << R"({"id":"ld","platform":"launchdarkly","service_token":")" << kToken
            << R"(","client_side_id":")" << kClientSideId << R"(","api_base":")" << ld.base_url()
            << R"(","clientsdk_base":")" << ld.base_url() << R"(","max_batch":7},)"
            << R"({"id":"fs","platform":"flagsmith","environment_key":")" << kFlagsmithKey
            << R"(","api_base":")" << fs.base_url() << R"(","flagsmith_api":"edge"},)"
            << R"({"id":"cc","platform":"configcat","api_user":"emulator-user",)"
            << R"("api_password":"emulator-password","product_id":"emulator-product",)"
            << R"("api_base":")" << cc.base_url() << R"(","max_list_items":)" << max_list_items
            << "}]}]}";
    }
    void StartServer() {
        server = std::make_unique<ServerProcess>(config);
        REQUIRE_MESSAGE(server->Start(), server->Log());
    }
    void Send(const std::vector<std::string>& events) {
        std::string body = "[";
        for (size_t i = 0; i < events.size(); ++i) body += (i ? "," : "") + events[i];
        body += "]";
        auto r = http.Post(server->url("/v1/destinations/ld/events"), body, {BasicAuth("wk-ld")});
        REQUIRE_MESSAGE(r.status == 200, r.body);
    }
    // Every event twice (the second copy in a later request), in batches of `batch`.
    void SendWithDuplicates(const Stream& s, size_t batch) {
        for (size_t i = 0; i < s.events.size(); i += batch) {
            std::vector<std::string> part(s.events.begin() + static_cast<std::ptrdiff_t>(i),
                                          s.events.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                                 s.events.size(), i + batch)));
            Send(part);
            if (i >= batch) {
                std::vector<std::string> again(
                    s.events.begin() + static_cast<std::ptrdiff_t>(i - batch),
                    s.events.begin() + static_cast<std::ptrdiff_t>(i));
                Send(again);
            }
        }
    }
    HttpResponse Admin(const std::string& method, const std::string& path) {
        return http.Request(method, server->url(path), "",
                            {std::string("Authorization: Bearer ") + kAdminToken});
    }
    int64_t Count(const std::string& sql) {
        store::Database d(db, false);
        store::Statement s(store::TestAccess::Handle(d), sql);
        s.Step();
        return s.Int(0);
    }

    bool LdConverged(const Stream& s) const { return Converged(ld, s); }
    bool FlagsmithConverged(const Stream& s) const {
        for (const auto& [cohort, keys] : s.expected) {
            std::set<std::string> with_true;
            for (const auto& [identifier, identity] : fs.Identities()) {
                if (fs.BoolTrait(identifier, PlatformName(cohort)) == std::optional<bool>(true)) {
                    with_true.insert(identifier);
                }
            }
            if (with_true != keys) return false;
        }
        return true;
    }
    bool ConfigCatConverged(const Stream& s) const {
        for (const auto& [cohort, keys] : s.expected) {
            auto values = cc.Values(PlatformName(cohort));
            std::set<std::string> want = keys.empty() ? std::set<std::string>{kEmptyList} : keys;
            if (!values || *values != want) return false;
        }
        return true;
    }
    std::string State(const Stream& s) const {
        return std::string("ld ") + (LdConverged(s) ? "converged" : "not converged") +
               ", flagsmith " + (FlagsmithConverged(s) ? "converged" : "not converged") +
               ", configcat " + (ConfigCatConverged(s) ? "converged" : "not converged") + "\n" +
               server->Log();
    }
};

}  // namespace

TEST_SUITE("targets fan-out") {
    TEST_CASE(
        "three targets end with exactly the true membership through duplicates and "
        "reordering") {
        FanOut f;
        Stream s = MixedStream(240, 31, "fan");
        f.SendWithDuplicates(s, 40);
        REQUIRE_MESSAGE(
            Eventually([&] {
                return f.LdConverged(s) && f.FlagsmithConverged(s) && f.ConfigCatConverged(s) &&
                       f.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0;
            }),
            f.State(s));
        // One delivery row per member and target, and every member at every target.
        CHECK(f.Count("SELECT count(*) FROM deliveries") ==
              3 * f.Count("SELECT count(*) FROM memberships"));
        // ConfigCat received whole lists only: one segment per audience, never more.
        CHECK(f.cc.Segments().size() == s.expected.size());
        // Flagsmith was only ever updated, never overwritten (the emulator counts POSTs
        // to the bulk endpoint as requests with the method in its stats).
        CHECK(f.fs.stats().last_method == "PUT");
        // The REST view lists the three targets of each segment, all in sync.
        auto segments = f.Admin("GET", "/v1/segments");
        REQUIRE(segments.status == 200);
        for (const char* t : {"\"target\":\"ld\"", "\"target\":\"fs\"", "\"target\":\"cc\""}) {
            CHECK_MESSAGE(segments.body.find(t) != std::string::npos, segments.body);
        }
        CHECK(segments.body.find("\"status\":\"syncing\"") == std::string::npos);
    }

    // Before, the report summed every target's rows into one "members" figure without
    // saying so, and there was no way to replay one target.
    TEST_CASE("replay segments --target replays one target, and every count is per target") {
        FanOut f;
        Stream s = MixedStream(90, 37, "rt");
        f.SendWithDuplicates(s, 30);
        REQUIRE_MESSAGE(
            Eventually([&] {
                return f.LdConverged(s) && f.FlagsmithConverged(s) && f.ConfigCatConverged(s) &&
                       f.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0;
            }),
            f.State(s));
        const int64_t members = f.Count("SELECT count(*) FROM memberships");
        REQUIRE(members > 0);

        // A dry run over every target names the three, each with every member.
        auto dry = RunAudsync({"replay", "segments", "--dry-run", "--json", "--config", f.config});
        REQUIRE_MESSAGE(dry.exit_code == 0, dry.err);
        auto all = ParseJson(dry.out);
        CHECK(all["target"].IsNull());
        int64_t listed = 0;
        for (const auto& e : all["segments"].GetArray()) {
            REQUIRE(e["targets"].Size() == 3);
            for (const auto& t : e["targets"].GetArray()) {
                CHECK(t["members"].GetInt64() == e["adds"].GetInt64() + e["removes"].GetInt64());
            }
            listed += e["adds"].GetInt64() + e["removes"].GetInt64();
        }
        CHECK(listed == members);

        // LaunchDarkly loses its state; only it is replayed.
        f.ld.Reset();
        const uint64_t fs_requests = f.fs.stats().requests;
        auto one =
            RunAudsync({"replay", "segments", "--target", "ld", "--json", "--config", f.config});
        REQUIRE_MESSAGE(one.exit_code == 0, one.err);
        auto report = ParseJson(one.out);
        CHECK(std::string(report["target"].GetString()) == "ld");
        CHECK(report["marked"].GetInt64() == members);  // once each: one target
        for (const auto& e : report["segments"].GetArray()) {
            REQUIRE(e["targets"].Size() == 1);
            CHECK(std::string(e["targets"][0]["target"].GetString()) == "ld");
            CHECK(std::string(e["targets"][0]["platform"].GetString()) == "launchdarkly");
        }
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.LdConverged(s) && f.Count("SELECT count(*) FROM replays") == 0;
                        }),
                        f.State(s));
        CHECK(f.fs.stats().requests == fs_requests);  // Flagsmith was not pushed again

        // Without --target every target is replayed, and the text says how many at each.
        auto text = RunAudsync({"replay", "segments", "--config", f.config});
        REQUIRE_MESSAGE(text.exit_code == 0, text.err);
        for (const char* t : {" at cc", " at fs", " at ld"}) {
            CHECK_MESSAGE(text.out.find(std::to_string(members) + t) != std::string::npos,
                          text.out);
        }
        CHECK(text.out.find("a member counts once per target") != std::string::npos);

        // An unknown target is an error that changes nothing; REST takes ?target= too.
        auto unknown = RunAudsync({"replay", "segments", "--target", "nope", "--config", f.config});
        CHECK(unknown.exit_code != 0);
        CHECK_MESSAGE(
            unknown.err.find("no segment matches with an active target nope") != std::string::npos,
            unknown.err);
        auto rest = f.Admin("POST", "/v1/segments/1/resync?dry_run=true&target=fs");
        REQUIRE_MESSAGE(rest.status == 200, rest.body);
        auto fs_only = ParseJson(rest.body);
        REQUIRE(fs_only["segments"][0]["targets"].Size() == 1);
        CHECK(std::string(fs_only["segments"][0]["targets"][0]["target"].GetString()) == "fs");
        CHECK(f.Admin("POST", "/v1/segments/1/resync?dry_run=true&target=nope").status == 404);
        CHECK(f.Admin("POST", "/v1/segments/1/resync?target=").status == 400);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.LdConverged(s) && f.FlagsmithConverged(s) &&
                                   f.ConfigCatConverged(s) &&
                                   f.Count("SELECT count(*) FROM replays") == 0;
                        }),
                        f.State(s));
    }

    TEST_CASE("a target failing never holds the other two back") {
        struct Case {
            const char* name;
            std::function<void(FanOut&)> break_it;
            std::function<void(FanOut&)> heal;
            std::function<bool(FanOut&, const Stream&)> broken_converged;
        };
        std::vector<Case> cases = {
            {"LaunchDarkly refuses the token", [](FanOut& f) { f.ld.SetRejectToken(true); },
             [](FanOut& f) { f.ld.SetRejectToken(false); },
             [](FanOut& f, const Stream& s) { return f.LdConverged(s); }},
            {"Flagsmith answers 500 and drops connections",
             [](FanOut& f) {
                 fse::Fault drop;
                 drop.drop = true;
                 drop.count = 6;
                 f.fs.AddFault(drop);
                 fse::Fault fail;
                 fail.status = 500;
                 fail.count = 100000;
                 f.fs.AddFault(fail);
             },
             [](FanOut& f) { f.fs.ClearFaults(); },
             [](FanOut& f, const Stream& s) { return f.FlagsmithConverged(s); }},
            {"ConfigCat rate-limits every request",
             [](FanOut& f) {
                 cce::Fault limited;
                 limited.status = 429;
                 limited.retry_after = "1";
                 limited.count = 100000;
                 f.cc.AddFault(limited);
             },
             [](FanOut& f) { f.cc.ClearFaults(); },
             [](FanOut& f, const Stream& s) { return f.ConfigCatConverged(s); }},
        };
        for (const auto& c : cases) {
            CAPTURE(c.name);
            FanOut f;
            c.break_it(f);
            Stream s = MixedStream(150, 41, std::string("f") + c.name[0]);
            f.SendWithDuplicates(s, 30);
            auto others = [&] {
                int converged = static_cast<int>(f.LdConverged(s)) +
                                static_cast<int>(f.FlagsmithConverged(s)) +
                                static_cast<int>(f.ConfigCatConverged(s));
                return converged == 2 && !c.broken_converged(f, s);
            };
            // The healthy two converge while the third keeps failing.
            REQUIRE_MESSAGE(Eventually(others, 20000), f.State(s));
            c.heal(f);
            auto resume = f.Admin("POST", "/v1/destinations/ld/resume");
            CHECK(resume.status == 200);
            REQUIRE_MESSAGE(Eventually([&] {
                                return f.LdConverged(s) && f.FlagsmithConverged(s) &&
                                       f.ConfigCatConverged(s);
                            }),
                            f.State(s));
        }
    }

    TEST_CASE("an audience over ConfigCat's item limit is refused visibly, never truncated") {
        FanOut f(3);
        std::vector<std::string> events;
        for (int i = 0; i < 5; ++i) {
            EngageEvent e;
            e.message_id = "big-" + std::to_string(i);
            e.audience_id = "aud_big";
            e.audience_key = "big_spenders";
            e.user_id = "u" + std::to_string(i);
            e.value = "true";
            e.timestamp = text::FormatIso8601(1714987822000 + i);
            events.push_back(e.Json());
        }
        f.Send(events);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.ld.Included("aud_big").size() == 5 &&
                                   f.Count(
                                       "SELECT count(*) FROM segment_targets WHERE "
                                       "status = 'over_limit'") == 1;
                        }),
                        f.server->Log());
        CHECK_FALSE(f.cc.Values("big_spenders").has_value());  // nothing sent, nothing cut
        auto seg = f.Admin("GET", "/v1/segments?audience_key=big_spenders");
        REQUIRE(seg.status == 200);
        CHECK_MESSAGE(seg.body.find("\"status\":\"over_limit\"") != std::string::npos, seg.body);
        CHECK(seg.body.find("\"limit\":\"max_list_items\"") != std::string::npos);
        CHECK(seg.body.find("takes at most 3 in one list") != std::string::npos);
        auto metrics = f.Admin("GET", "/metrics");
        CHECK_MESSAGE(
            metrics.body.find("audsync_target_segments_over_limit{destination=\"ld\","
                              "target=\"cc\",platform=\"configcat\"} 1") != std::string::npos,
            metrics.body);
        CHECK_MESSAGE(metrics.body.find("audsync_target_segments_over_limit_by_limit{destination="
                                        "\"ld\",target=\"cc\",platform=\"configcat\","
                                        "limit=\"max_list_items\"} 1") != std::string::npos,
                      metrics.body);
        auto cli = RunAudsync({"segments", "show", "1", "--config", f.config});
        CHECK(cli.exit_code == 0);
        CHECK_MESSAGE(cli.out.find("over_limit") != std::string::npos, cli.out);
        CHECK(cli.out.find("max_list_items") != std::string::npos);
        CHECK(f.server->Log().find("over the platform's limit") != std::string::npos);
        // Two members leave: the list fits and goes out whole.
        std::vector<std::string> exits;
        for (int i = 0; i < 2; ++i) {
            EngageEvent e;
            e.message_id = "exit-" + std::to_string(i);
            e.audience_id = "aud_big";
            e.audience_key = "big_spenders";
            e.user_id = "u" + std::to_string(i);
            e.value = "false";
            e.timestamp = text::FormatIso8601(1714987900000 + i);
            exits.push_back(e.Json());
        }
        f.Send(exits);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.cc.Values("big_spenders") ==
                                   std::optional<std::set<std::string>>({"u2", "u3", "u4"});
                        }),
                        f.server->Log());
        CHECK(Eventually([&] {
            return f.Count("SELECT count(*) FROM segment_targets WHERE status = 'over_limit'") == 0;
        }));
    }
}

TEST_SUITE("targets operator views") {
    TEST_CASE("a member refused by one target is a dead letter there only, retried there") {
        FanOut f;
        f.fs.RefuseKeys({"user-3"});
        Stream s = MixedStream(120, 51, "dl");
        f.SendWithDuplicates(s, 40);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.LdConverged(s) && f.ConfigCatConverged(s) &&
                                   f.Count("SELECT count(*) FROM deliveries WHERE dead = 1") > 0;
                        }),
                        f.State(s));
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND target <> 'fs'") == 0);
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND context_key <> "
                      "'user-3'") == 0);
        auto list = RunAudsync({"dead-letters", "list", "--config", f.config});
        CHECK(list.exit_code == 0);
        CHECK_MESSAGE(list.out.find(":user-3") != std::string::npos, list.out);
        CHECK(list.out.find("AT TARGETS") != std::string::npos);
        auto rest = f.Admin("GET", "/v1/dead-letters");
        CHECK_MESSAGE(rest.body.find("\"targets\":[\"fs\"]") != std::string::npos, rest.body);
        auto destinations = RunAudsync({"destinations", "list", "--config", f.config});
        CHECK(destinations.exit_code == 0);
        for (const char* t : {"launchdarkly", "flagsmith", "configcat"}) {
            CHECK_MESSAGE(destinations.out.find(t) != std::string::npos, destinations.out);
        }
        // An unknown target is refused, by the CLI and the API alike.
        auto unknown = RunAudsync(
            {"dead-letters", "retry", "--config", f.config, "--target", "nope", "--segment", "1"});
        CHECK(unknown.exit_code == 1);
        CHECK(unknown.err.find("no destination has a target nope") != std::string::npos);
        f.fs.RefuseKeys({});
        std::vector<std::string> args = {"dead-letters", "retry",    "--config",
                                         f.config,       "--target", "fs"};
        for (int64_t seg = 1; seg <= 3; ++seg) {
            auto ids = args;
            ids.push_back(std::to_string(seg) + ":user-3");
            RunAudsync(ids);  // segments where user-3 is no dead letter exit 1: fine here
        }
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.FlagsmithConverged(s) &&
                                   f.Count(
                                       "SELECT count(*) FROM deliveries WHERE dead = 1 OR "
                                       "pending = 1") == 0;
                        }),
                        f.State(s));
    }
}

TEST_SUITE("targets migration") {
    TEST_CASE(
        "a database of schema 3 upgrades and its LaunchDarkly members are not pushed "
        "again") {
        TempDir dir;
        const std::string db = dir.File("old.db");
        {
            // The schema before targets, with what an older audsync stored: two members
            // acknowledged by LaunchDarkly, one pending.
            store::Database d(db, true);
            std::vector<store::Migration> old(store::EmbeddedMigrations().begin(),
                                              store::EmbeddedMigrations().begin() + 3);
            REQUIRE(store::Migrate(d, old).ok());
            REQUIRE(d.SchemaVersion() == 3);
            for (const char* sql : {
                     "INSERT INTO destinations (id, created_ms) VALUES ('ld', 1)",
                     "INSERT INTO segments (id, destination, audience_id, audience_key, "
                     "context_kind, created_ms) VALUES (1, 'ld', 'aud_old', 'old_key', 'user', 1)",
                     "INSERT INTO memberships (segment_id, context_key, desired, version, "
                     "message_id, event_ms, received_ms, acked, acked_version) VALUES "
                     "(1, 'acked-in', 1, 1, 'm1', 1, 1, 1, 1), "
                     "(1, 'acked-out', 0, 2, 'm2', 2, 2, 0, 2), "
                     "(1, 'pending-in', 1, 1, 'm3', 3, 3, NULL, NULL)",
                 }) {
                store::TestAccess::Exec(d, sql);
            }
        }
        emulator::Emulator ld{[] {
            emulator::Emulator::Options o;
            o.service_token = kToken;
            o.client_side_id = kClientSideId;
            return o;
        }()};
        ld.Start();
        const std::string config = dir.File("config.json");
        std::ofstream(config) << SyncConfig(db, ld.base_url());
        auto migrate = RunAudsync({"migrate", "--config", config});
        REQUIRE_MESSAGE(migrate.exit_code == 0, migrate.err);
        {
            store::Database d(db, false);
            CHECK(d.SchemaVersion() >= 4);
            CHECK(store::TestAccess::Int(
                      d,
                      "SELECT count(*) FROM deliveries WHERE target = 'launchdarkly' AND "
                      "pending = 0") == 2);
        }
        ServerProcess server(config);
        REQUIRE_MESSAGE(server.Start(), server.Log());
        REQUIRE_MESSAGE(Eventually([&] { return ld.Included("aud_old").count("pending-in") == 1; }),
                        server.Log());
        // Only the pending member went out: the acknowledged ones were not pushed again.
        CHECK(ld.stats().members == 1);
        CHECK(ld.Included("aud_old") == std::set<std::string>{"pending-in"});
        CHECK(server.Stop() == 0);
        ld.Stop();
    }
}

TEST_SUITE("targets check") {
    TEST_CASE("audsync check verifies every target's credentials, one line each") {
        FanOut f;
        auto ok = RunAudsync({"check", "--config", f.config});
        CHECK_MESSAGE(ok.exit_code == 0, (ok.out + ok.err));
        CHECK(ok.out.find("ld/ld (launchdarkly): ok") != std::string::npos);
        CHECK(ok.out.find("ld/fs (flagsmith): ok") != std::string::npos);
        CHECK(ok.out.find("ld/cc (configcat): ok") != std::string::npos);
        f.fs.SetRejectKey(true);
        f.cc.SetRejectCredentials(true);
        auto bad = RunAudsync({"check", "--config", f.config});
        CHECK(bad.exit_code == 1);
        CHECK(bad.out.find("ld/ld (launchdarkly): ok") != std::string::npos);
        CHECK_MESSAGE(bad.out.find("ld/fs (flagsmith): FAILED") != std::string::npos, bad.out);
        CHECK(bad.out.find("ld/cc (configcat): FAILED") != std::string::npos);
        CHECK(bad.out.find("refused") != std::string::npos);
        for (const char* secret : {kFlagsmithKey, "emulator-password", kToken}) {
            CHECK(bad.out.find(secret) == std::string::npos);
            CHECK(bad.err.find(secret) == std::string::npos);
        }
    }
}
