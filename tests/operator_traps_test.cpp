// The operator's traps: dry runs that are dry, one server per database, deletes, resumes,
// reads without secrets, backups, and the why of a member on the CLI.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "support/store_access.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using namespace audsync::testing;

namespace {

std::string Replace(std::string s, const std::string& from, const std::string& to) {
    size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
}

EngageEvent Event(const std::string& id, const std::string& user, const std::string& value,
                  const std::string& timestamp) {
    EngageEvent e;
    e.message_id = id;
    e.user_id = user;
    e.value = value;
    e.timestamp = timestamp;
    return e;
}

int64_t Rows(const std::string& db, const std::string& sql) {
    store::Database d(db, false);
    return store::TestAccess::Int(d, sql);
}

}  // namespace

TEST_SUITE("operator traps") {
    TEST_CASE("replay events --dry-run classifies against the stored state and writes nothing") {
        Harness h;
        REQUIRE(h.Send({Event("d1", "dry-a", "true", "2024-05-06T10:00:00.000Z").Json()}).status ==
                200);
        TempDir dir;
        std::string file = dir.File("capture.ndjson");
        std::ofstream(file) << Event("d1", "dry-a", "true", "2024-05-06T10:00:00.000Z").Json()
                            << "\n"  // line 1: duplicate of a stored event
                            << Event("d2", "dry-a", "false", "2024-05-06T09:00:00.000Z").Json()
                            << "\n"  // line 2: older than the stored decision
                            << Event("d3", "dry-b", "true", "2024-05-06T10:00:00.000Z").Json()
                            << "\n"         // line 3: new
                            << "garbage\n"  // line 4: one rejected event
                            << Event("d3", "dry-b", "true", "2024-05-06T10:00:00.000Z").Json()
                            << "\n";  // line 5: duplicate within the file
        const std::string inbox = store::InboxPath(h.db);
        const int64_t events_before = Rows(inbox, "SELECT count(*) FROM inbox");
        const int64_t members_before = Rows(h.db, "SELECT count(*) FROM memberships");
        for (int run = 0; run < 2; ++run) {
            auto dry =
                RunAudsync({"replay", "events", file, "--dry-run", "--json", "--config", h.config});
            REQUIRE_MESSAGE(dry.exit_code == 0, dry.err);
            auto doc = ParseJson(dry.out);
            CHECK(doc["dry_run"].GetBool());
            CHECK(doc["events"].GetInt() == 5);
            CHECK(doc["accepted"].GetInt() == 1);
            CHECK(doc["duplicates"].GetInt() == 2);
            CHECK(doc["stale"].GetInt() == 1);
            CHECK(doc["rejected"].GetInt() == 1);
            REQUIRE(doc["rejections"].Size() == 1);
            CHECK(doc["rejections"][0]["line"].GetInt() == 4);
            CHECK(Rows(inbox, "SELECT count(*) FROM inbox") == events_before);
            CHECK(Rows(h.db, "SELECT count(*) FROM memberships") == members_before);
        }
        auto text = RunAudsync({"replay", "events", file, "--dry-run", "--config", h.config});
        CHECK(text.out.find("dry run: nothing was written") != std::string::npos);
        CHECK(text.out.find("line 4: ") != std::string::npos);
        // The real run does what the dry run said.
        auto real = RunAudsync({"replay", "events", file, "--json", "--config", h.config});
        REQUIRE(real.exit_code == 0);
        CHECK(ParseJson(real.out)["stored"].GetInt() == 4);
        CHECK(ParseJson(real.out)["applied"].GetBool());
        CHECK_FALSE(ParseJson(real.out)["dry_run"].GetBool());
        // One new member, dry-a kept with the stale d2 as its latest ignored event (after
        // the duplicate d1), d3 once.
        CHECK(Rows(h.db, "SELECT count(*) FROM memberships") == members_before + 1);
        CHECK(Rows(h.db,
                   "SELECT count(*) FROM memberships WHERE context_key = 'dry-a' AND "
                   "ignored_message_id = 'd2' AND ignored_outcome = 'stale'") == 1);
        CHECK(Rows(h.db,
                   "SELECT count(*) FROM memberships WHERE context_key = 'dry-b' AND "
                   "desired = 1 AND ignored_message_id = 'd3' AND "
                   "ignored_outcome = 'duplicate'") == 1);
    }

    TEST_CASE("a second serve on one database exits 1 naming it and the holder's pid") {
        Harness h;
        auto second = RunAudsync({"serve", "--config", h.config});
        CHECK(second.exit_code == 1);
        CHECK(second.err.find("pid " + std::to_string(h.server->pid())) != std::string::npos);
        CHECK(second.err.find(h.db) != std::string::npos);
        // Reads keep working beside the server.
        CHECK(RunAudsync({"segments", "list", "--config", h.config}).exit_code == 0);
        // And the lock goes with the server.
        CHECK(h.server->Stop() == 0);
        h.StartServer();
    }

    TEST_CASE("serve with the database in a missing folder names the folder and the fix") {
        testing::TempDir dir;
        const std::string cfg = dir.File("audsync.json");
        const std::string folder = dir.File("not-there");
        std::ofstream(cfg) << testing::TestConfigJson(folder + "/audsync.db");
        auto r = RunAudsync({"serve", "--config", cfg});
        CHECK(r.exit_code == 1);
        CHECK_MESSAGE(r.err.find("the folder " + folder + " does not exist: create it (mkdir -p " +
                                 folder + ")") != std::string::npos,
                      r.err);
        CHECK_FALSE(std::filesystem::exists(folder));
    }

    TEST_CASE("segments delete asks, refuses without a terminal, and forgets with --yes") {
        Harness h;
        REQUIRE(h.Send({Event("x1", "del-a", "true", "2024-05-06T10:00:00.000Z").Json(),
                        Event("x2", "del-b", "true", "2024-05-06T10:00:00.000Z").Json()})
                    .status == 200);
        REQUIRE(Eventually([&] { return h.emulator.Included("aud_1").size() == 2; }));
        auto refused = RunAudsync({"segments", "delete", "1", "--config", h.config});
        CHECK(refused.exit_code == 2);
        CHECK(refused.err.find("--yes") != std::string::npos);
        CHECK(refused.err.find("its members stay on the platforms; --empty-on-platform") !=
              std::string::npos);
        CHECK(Rows(h.db, "SELECT count(*) FROM segments") == 1);
        auto deleted = RunAudsync({"segments", "delete", "1", "--yes", "--empty-on-platform",
                                   "--json", "--config", h.config});
        REQUIRE_MESSAGE(deleted.exit_code == 0, deleted.err);
        auto doc = ParseJson(deleted.out);
        CHECK(doc["members_deleted"].GetInt() == 2);
        CHECK(doc["emptied_on_platform"].GetBool());
        // The running server pushed the removals before the segment was forgotten.
        CHECK(h.emulator.Included("aud_1").empty());
        CHECK(Rows(h.db, "SELECT count(*) FROM segments") == 0);
        CHECK(Rows(h.db, "SELECT count(*) FROM memberships") == 0);
        CHECK(RunAudsync({"segments", "show", "1", "--config", h.config}).exit_code == 1);
    }

    TEST_CASE("a refused token pauses, resume pushes at once, and --push-now names the pause") {
        Harness h;
        // A slow auth retry, so that only a resume can make the push happen in time.
        std::ofstream(h.config) << Replace(SyncConfig(h.db, h.emulator.base_url()),
                                           "\"auth_retry_ms\":300", "\"auth_retry_ms\":600000");
        CHECK(h.server->Stop() == 0);
        h.StartServer();
        h.emulator.SetRejectToken(true);
        REQUIRE(
            h.Send({Event("p1", "paused-a", "true", "2024-05-06T10:00:00.000Z").Json()}).status ==
            200);
        REQUIRE(Eventually([&] {
            auto r = RunAudsync({"destinations", "show", "ld", "--json", "--config", h.config});
            return r.exit_code == 0 &&
                   ParseJson(r.out)["status"].GetString() == std::string("auth_failed");
        }));
        auto list = RunAudsync({"destinations", "list", "--config", h.config});
        CHECK(list.out.find("auth_failed") != std::string::npos);
        h.emulator.SetRejectToken(false);
        auto resumed = RunAudsync({"destinations", "resume", "ld", "--config", h.config});
        CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
        CHECK(resumed.out.find("resumed destination ld") != std::string::npos);
        REQUIRE_MESSAGE(
            Eventually([&] { return h.emulator.Included("aud_1").count("paused-a") == 1; }),
            h.server->Log());
        CHECK(RunAudsync({"destinations", "resume", "nope", "--config", h.config}).exit_code == 1);

        // Without a server, --push-now stops at once on a refused token and says why.
        CHECK(h.server->Stop() == 0);
        h.server.reset();
        h.emulator.Reset();
        h.emulator.SetRejectToken(true);
        auto push = RunAudsync({"replay", "segments", "--push-now", "--config", h.config});
        CHECK(push.exit_code == 1);
        CHECK_MESSAGE(
            push.out.find("destination ld is paused (auth_failed) until ") != std::string::npos,
            push.out);
        CHECK(push.out.find("audsync destinations resume ld") != std::string::npos);
    }

    TEST_CASE("reads need no secrets but serving does") {
        TempDir dir;
        std::string db = dir.File("s.db");
        REQUIRE(RunAudsync({"migrate", "--database", db}).exit_code == 0);
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg)
            << R"({"database":")" << db << R"(","admin_token":"${AUDSYNC_TEST_UNSET_ADMIN}",)"
            << R"("destinations":[{"id":"ld","service_token":"${AUDSYNC_TEST_UNSET_TOKEN}",)"
            << R"("client_side_id":"c","write_keys":["${AUDSYNC_TEST_UNSET_KEY}"]}]})";
        for (const auto& args :
             std::vector<std::vector<std::string>>{{"segments", "list"},
                                                   {"dead-letters", "list"},
                                                   {"destinations", "list"},
                                                   {"destinations", "show", "ld", "--json"},
                                                   {"contexts", "u1"},
                                                   {"replay", "segments", "--dry-run"}}) {
            auto full = args;
            full.insert(full.end(), {"--config", cfg});
            CAPTURE(args[0]);
            auto r = RunAudsync(full);
            CHECK(r.err.find("AUDSYNC_TEST_UNSET") == std::string::npos);
            CHECK(r.exit_code != 2);
        }
        auto show = RunAudsync({"destinations", "show", "ld", "--json", "--config", cfg});
        CHECK(show.exit_code == 0);
        CHECK(ParseJson(show.out)["write_keys"].Size() == 1);  // configured, shown redacted
        auto serve = RunAudsync({"serve", "--config", cfg});
        CHECK(serve.exit_code == 1);
        CHECK(serve.err.find("AUDSYNC_TEST_UNSET") != std::string::npos);
    }

    TEST_CASE("backup writes a consistent 0600 copy beside a running server") {
        Harness h;
        REQUIRE(h.Send({Event("b1", "backup-a", "true", "2024-05-06T10:00:00.000Z").Json(),
                        Event("b2", "backup-b", "true", "2024-05-06T10:00:00.000Z").Json()})
                    .status == 200);
        TempDir dir;
        std::string copy = dir.File("copy.db");
        auto r = RunAudsync({"backup", copy, "--config", h.config});
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        struct stat st {};
        REQUIRE(stat(copy.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        CHECK(Rows(copy, "SELECT count(*) FROM memberships") == 2);
        auto again = RunAudsync({"backup", copy, "--config", h.config});
        CHECK(again.exit_code == 1);
        CHECK(RunAudsync({"backup", "--config", h.config}).exit_code == 2);
    }

    TEST_CASE("the why on the CLI: a member's deciding event and the segments of a key") {
        Harness h;
        EngageEvent e = Event("w1", "why-a", "true", "2024-05-06T10:00:00.000Z");
        e.extra_top = R"("writeKey":"wk-ld")";
        REQUIRE(h.Send({e.Json()}).status == 200);
        REQUIRE(Eventually([&] { return h.emulator.Included("aud_1").count("why-a") == 1; }));
        auto member = RunAudsync({"segments", "member", "1", "why-a", "--config", h.config});
        REQUIRE_MESSAGE(member.exit_code == 0, member.err);
        CHECK(member.out.find("decided by:     w1") != std::string::npos);
        CHECK(member.out.find("acknowledged:   included") != std::string::npos);
        CHECK(member.out.find("\"messageId\":\"w1\"") != std::string::npos);  // the payload
        CHECK(member.out.find("wk-ld") == std::string::npos);                 // credentials removed
        auto contexts = RunAudsync({"contexts", "why-a", "--config", h.config});
        CHECK(contexts.exit_code == 0);
        CHECK(contexts.out.find("high_value_users") != std::string::npos);
        auto none = RunAudsync({"contexts", "nobody", "--config", h.config});
        CHECK(none.out.find("is in no segment") != std::string::npos);
        CHECK(RunAudsync({"segments", "member", "1", "nobody", "--config", h.config}).exit_code ==
              1);
    }

    TEST_CASE("stored keys cannot drive the terminal") {
        Harness h;
        REQUIRE(h.Send({Event("t1", "evil\x1b[2Jkey", "true", "2024-05-06T10:00:00.000Z").Json()})
                    .status == 200);
        auto members = RunAudsync({"segments", "members", "1", "--config", h.config});
        CHECK(members.out.find('\x1b') == std::string::npos);
        CHECK(members.out.find("evil\\x1b[2Jkey") != std::string::npos);
    }
}

TEST_SUITE("admin pagination") {
    TEST_CASE("segments and a context's segments are keyset-paginated") {
        Harness h;
        std::vector<std::string> events;
        for (int i = 0; i < 7; ++i) {
            EngageEvent e =
                Event("pg" + std::to_string(i), "paged-user", "true", "2024-05-06T10:00:00.000Z");
            e.audience_id = "aud_p" + std::to_string(i);
            e.audience_key = "paged_" + std::to_string(i);
            events.push_back(e.Json());
        }
        REQUIRE(h.Send(events).status == 200);
        for (const std::string base : {"/v1/segments", "/v1/contexts/paged-user"}) {
            CAPTURE(base);
            std::vector<int64_t> ids;
            std::string cursor;
            int pages = 0;
            for (;;) {
                auto r =
                    h.Admin("GET", base + "?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor));
                REQUIRE(r.status == 200);
                auto doc = ParseJson(r.body);
                for (const auto& s : doc["segments"].GetArray()) {
                    ids.push_back(s.HasMember("segment") ? s["segment"]["id"].GetInt64()
                                                         : s["id"].GetInt64());
                }
                ++pages;
                if (doc["next_cursor"].IsNull()) break;
                cursor = doc["next_cursor"].GetString();
            }
            CHECK(pages == 3);
            REQUIRE(ids.size() == 7);
            for (size_t i = 1; i < ids.size(); ++i) CHECK(ids[i - 1] < ids[i]);
            CHECK(h.Admin("GET", base + "?limit=0").status == 400);
            CHECK(h.Admin("GET", base + "?limit=1001").status == 400);
            CHECK(h.Admin("GET", base + "?cursor=%21%21").status == 400);
        }
    }
}

TEST_SUITE("reload") {
    TEST_CASE(
        "SIGHUP rotates a write key in place, and a broken config is refused while serving goes "
        "on") {
        Harness h;
        auto send = [&](const std::string& key, const std::string& id) {
            EngageEvent e = Event(id, "hup-" + id, "true", "2024-05-06T10:00:00.000Z");
            return h.http.Post(h.server->url("/v1/batch"), "{\"batch\":[" + e.Json() + "]}",
                               {BasicAuth(key)});
        };
        REQUIRE(send("wk-ld", "h1").status == 200);
        REQUIRE(send("wk-rotated", "h2").status == 401);
        std::ofstream(h.config) << Replace(SyncConfig(h.db, h.emulator.base_url()),
                                           "\"write_keys\":[\"wk-ld\"]",
                                           "\"write_keys\":[\"wk-rotated\"]");
        REQUIRE(kill(h.server->pid(), SIGHUP) == 0);
        int n = 3;
        REQUIRE_MESSAGE(
            Eventually([&] { return send("wk-rotated", "h" + std::to_string(n++)).status == 200; }),
            h.server->Log());
        CHECK(send("wk-ld", "old-key").status == 401);
        CHECK(h.server->Log().find("config reloaded") != std::string::npos);
        CHECK(h.server->Log().find("wk-rotated") == std::string::npos);

        // A change that needs a restart keeps its running value, with a warning.
        std::ofstream(h.config) << Replace(
            Replace(SyncConfig(h.db, h.emulator.base_url()), "\"write_keys\":[\"wk-ld\"]",
                    "\"write_keys\":[\"wk-rotated\"]"),
            "\"listen\":\"127.0.0.1:0\"", "\"listen\":\"127.0.0.1:1\"");
        REQUIRE(kill(h.server->pid(), SIGHUP) == 0);
        REQUIRE(Eventually([&] {
            return h.server->Log().find("listen cannot change without a restart") !=
                   std::string::npos;
        }));

        // A config that does not validate is refused; the last good one stays in force.
        std::ofstream(h.config) << "{\"destinations\": [";
        REQUIRE(kill(h.server->pid(), SIGHUP) == 0);
        REQUIRE(Eventually([&] {
            return h.server->Log().find("the config was not reloaded") != std::string::npos;
        }));
        CHECK(h.http.Get(h.server->url("/healthz")).status == 200);
        CHECK(send("wk-rotated", "after-broken").status == 200);
        CHECK(send("wk-ld", "after-broken-old").status == 401);
    }
}

TEST_SUITE("reload") {
    // docs/operations.md, "Rotating credentials", step by step for every credential Segment
    // or an operator presents. Before, a secret came only from the environment, which a
    // running process cannot see change, and no credential but the write keys had an
    // overlap.
    TEST_CASE("secrets in files rotate by SIGHUP, each with an overlap, as the docs say") {
        Harness h;
        const std::string dir = h.dir.File("secrets");
        REQUIRE(mkdir(dir.c_str(), 0700) == 0);
        struct Secret {
            const char* file;
            std::string old_value;
            std::string new_value;
        };
        const std::vector<Secret> secrets = {
            {"admin", "admin-old-0123456789", "admin-new-0123456789"},
            {"wk", "wk-old-0123456789", "wk-new-0123456789"},
            {"hook", "hook-old-0123456789", "hook-new-0123456789"},
            {"secret", "secret-old-0123456789", "secret-new-0123456789"},
            {"urlkey", "urlkey-old-0123456789", "urlkey-new-0123456789"}};
        auto put = [&](const std::string& name, const std::string& value) {
            std::ofstream(dir + "/" + name) << value << "\n";  // as `echo` writes it
        };
        auto ref = [&](const std::string& name) { return "${file:" + dir + "/" + name + "}"; };
        auto config = [&](bool next) {
            std::string extra = "\"webhook_token\":\"" + ref("hook") +
                                "\",\"audience_url_key\":\"" + ref("urlkey") + "\"";
            if (next) {
                extra += ",\"webhook_token_next\":\"" + ref("hook_next") +
                         "\",\"shared_secret_next\":\"" + ref("secret_next") +
                         "\",\"audience_url_key_next\":\"" + ref("urlkey_next") + "\"";
            }
            std::string c = SyncConfig(h.db, h.emulator.base_url(), extra);
            c = Replace(c, std::string("\"admin_token\":\"") + kAdminToken + "\"",
                        "\"admin_token\":\"" + ref("admin") + "\"" +
                            (next ? ",\"admin_token_next\":\"" + ref("admin_next") + "\"" : ""));
            c = Replace(c, "\"write_keys\":[\"wk-ld\"]",
                        "\"write_keys\":[\"" + ref("wk") + "\"" +
                            (next ? ",\"" + ref("wk_next") + "\"" : "") + "]");
            c = Replace(c, "\"shared_secret\":\"s3cret\"",
                        "\"shared_secret\":\"" + ref("secret") + "\"");
            std::ofstream(h.config) << c;
        };
        int sent = 0;
        auto event = [&] {
            const std::string n = std::to_string(sent++);
            return Event("hk" + n, "rot-" + n, "true", "2024-05-06T10:00:00.000Z").Json();
        };
        // The answer's status with each credential, by kind.
        auto admin = [&](const std::string& v) {
            return h.http.Get(h.server->url("/v1/segments"), {"Authorization: Bearer " + v}).status;
        };
        auto write_key = [&](const std::string& v) {
            return h.http
                .Post(h.server->url("/v1/batch"), "{\"batch\":[" + event() + "]}", {BasicAuth(v)})
                .status;
        };
        auto hook = [&](const std::string& v) {
            return h.http
                .Post(h.server->url("/v1/destinations/ld/events"), event(),
                      {"Authorization: Bearer " + v})
                .status;
        };
        auto signature = [&](const std::string& v) {
            const std::string body = event();
            return h.http
                .Post(h.server->url("/v1/destinations/ld/events"), body,
                      {"X-Signature: " + crypto::HmacSha1Hex(v, body)})
                .status;
        };
        auto url_key = [&](const std::string& v) {
            return h.http
                .Post(h.server->url("/v1/destinations/ld/audiences?key=" + v),
                      "{\"audienceName\":\"rotation " + std::to_string(sent++) + "\"}")
                .status;
        };
        const std::vector<std::function<unsigned(const std::string&)>> check = {
            admin, write_key, hook, signature, url_key};
        auto accepts = [&](bool old_value, bool new_value) {
            for (size_t i = 0; i < secrets.size(); ++i) {
                CAPTURE(secrets[i].file);
                CHECK(check[i](secrets[i].old_value) == (old_value ? 200u : 401u));
                CHECK(check[i](secrets[i].new_value) == (new_value ? 200u : 401u));
            }
        };
        auto reloads = [&] {
            const std::string log = h.server->Log();
            int n = 0;
            for (size_t at = log.find("config reloaded"); at != std::string::npos;
                 at = log.find("config reloaded", at + 1)) {
                ++n;
            }
            return n;
        };
        auto reload = [&] {
            const int before = reloads();
            REQUIRE(kill(h.server->pid(), SIGHUP) == 0);
            REQUIRE_MESSAGE(Eventually([&] { return reloads() > before; }), h.server->Log());
        };

        // The destination as GET /v1/destinations shows it (the new admin token works in
        // both steps that read it).
        auto shown = [&] {
            return ParseJson(h.http
                                 .Get(h.server->url("/v1/destinations/ld"),
                                      {"Authorization: Bearer admin-new-0123456789"})
                                 .body);
        };

        for (const auto& s : secrets) put(s.file, s.old_value);
        config(false);
        CHECK(h.server->Stop() == 0);
        h.StartServer();
        accepts(true, false);

        // 1. The new value beside the old one, then SIGHUP: both work.
        for (const auto& s : secrets) put(std::string(s.file) + "_next", s.new_value);
        config(true);
        reload();
        accepts(true, true);
        for (const char* field :
             {"webhook_token_next", "shared_secret_next", "audience_url_key_next"}) {
            CAPTURE(field);
            auto d = shown();
            REQUIRE(d[field].IsString());
            CHECK(std::string(d[field].GetString()) == "[redacted]");
        }

        // 2. (Segment and the operators change over.) The new value in the current file,
        // the next one removed, SIGHUP: only the new value works.
        for (const auto& s : secrets) put(s.file, s.new_value);
        config(false);
        reload();
        accepts(false, true);
        for (const char* field :
             {"webhook_token_next", "shared_secret_next", "audience_url_key_next"}) {
            CAPTURE(field);
            CHECK(shown()[field].IsNull());
        }

        const std::string log = h.server->Log();
        for (const auto& s : secrets) {
            CHECK(log.find(s.old_value) == std::string::npos);
            CHECK(log.find(s.new_value) == std::string::npos);
        }
    }
}

TEST_SUITE("admin authentication") {
    TEST_CASE("repeated failed admin authentication is slowed per peer, a valid token is not") {
        Harness h;
        std::ofstream(h.config) << Replace(SyncConfig(h.db, h.emulator.base_url()),
                                           "\"admin_auth_free_failures\":1000000",
                                           "\"admin_auth_free_failures\":3");
        CHECK(h.server->Stop() == 0);
        h.StartServer();
        auto timed = [&](const std::string& token) {
            const int64_t start = text::NowMs();
            auto r = h.http.Get(h.server->url("/v1/segments"), {"Authorization: Bearer " + token});
            return std::make_pair(r.status, text::NowMs() - start);
        };
        for (int i = 0; i < 3; ++i) CHECK(timed("wrong-token-wrong-token").first == 401);
        // The 4th, 5th and 6th refusals wait 100, 200 and 400 ms.
        CHECK(timed("wrong-token-wrong-token").second >= 100);
        CHECK(timed("wrong-token-wrong-token").second >= 200);
        auto sixth = timed("wrong-token-wrong-token");
        CHECK(sixth.first == 401);
        CHECK(sixth.second >= 400);
        CHECK(timed(kAdminToken).first == 200);
        // One warning when the slowing starts, naming the peer, not one per refusal.
        const std::string log = h.server->Log();
        const std::string warning = "admin API: 4 failed authentications from 127.0.0.1";
        CHECK_MESSAGE(log.find(warning) != std::string::npos, log);
        CHECK(log.find(warning, log.find(warning) + 1) == std::string::npos);
        CHECK(log.find("failed authentications from", log.find(warning) + warning.size()) ==
              std::string::npos);
        CHECK(log.find("wrong-token") == std::string::npos);
    }
}

TEST_SUITE("operator output") {
    TEST_CASE("the start line counts destinations in words and metrics print sane numbers") {
        Harness h;
        CHECK_MESSAGE(
            h.server->Startup().find("(database " + h.db + ", 1 destination)") != std::string::npos,
            h.server->Startup());
        REQUIRE(
            h.Send({Event("lag1", "lag-a", "true", "2024-05-06T10:00:00.000Z").Json()}).status ==
            200);
        auto metrics = h.Admin("GET", "/metrics");
        REQUIRE(metrics.status == 200);
        size_t at = metrics.body.find("\naudsync_sync_lag_seconds ");
        REQUIRE(at != std::string::npos);
        std::string value = metrics.body.substr(at + 26, metrics.body.find('\n', at + 1) - at - 26);
        size_t dot = value.find('.');
        REQUIRE(dot != std::string::npos);
        CHECK(value.size() - dot - 1 == 3);  // milliseconds, not 276.73200000000003
    }
}

TEST_SUITE("admin listener") {
    TEST_CASE("admin_listen serves the admin API apart, and the public side no longer does") {
        Harness h;
        std::ofstream(h.config) << Replace(
            SyncConfig(h.db, h.emulator.base_url()), "\"listen\":\"127.0.0.1:0\"",
            "\"listen\":\"127.0.0.1:0\",\"admin_listen\":\"127.0.0.1:0\"");
        CHECK(h.server->Stop() == 0);
        h.StartServer();
        const std::string& startup = h.server->Startup();
        size_t at = startup.find("admin API and metrics on http://127.0.0.1:");
        REQUIRE_MESSAGE(at != std::string::npos, startup);
        const int admin_port = std::stoi(startup.substr(at + 42));
        const std::string admin = "http://127.0.0.1:" + std::to_string(admin_port);
        const std::vector<std::string> token = {std::string("Authorization: Bearer ") +
                                                kAdminToken};
        // Public side: ingest and health; the admin routes are not there, even with the token.
        REQUIRE(h.Send({Event("al1", "admin-side", "true", "2024-05-06T10:00:00.000Z").Json()})
                    .status == 200);
        CHECK(h.http.Get(h.server->url("/healthz")).status == 200);
        CHECK(h.http.Get(h.server->url("/v1/segments"), token).status == 404);
        CHECK(h.http.Get(h.server->url("/v1/segments")).status == 401);
        CHECK(h.http.Get(h.server->url("/metrics"), token).status == 404);
        // Admin side: the admin API and metrics; no ingest.
        CHECK(h.http.Get(admin + "/v1/segments", token).status == 200);
        CHECK(h.http.Get(admin + "/metrics", token).status == 200);
        CHECK(h.http.Get(admin + "/v1/segments").status == 401);
        CHECK(h.http.Post(admin + "/v1/batch", "{\"batch\":[]}", {BasicAuth("wk-ld")}).status ==
              404);
        CHECK(h.http.Get(admin + "/healthz").status == 200);
        // The status page goes with the admin API: served on the admin side only.
        CHECK(h.http.Get(admin + "/").status == 200);
        CHECK(h.http.Get(admin + "/status/app.js").status == 200);
        CHECK(h.http.Get(h.server->url("/")).status == 404);
        CHECK(h.http.Get(h.server->url("/status/app.js")).status == 404);
        CHECK(h.http.Get(h.server->url("/v1/pushes"), token).status == 404);
        CHECK(h.http.Get(admin + "/v1/pushes", token).status == 200);
    }
}

TEST_SUITE("operator routes") {
    TEST_CASE("DELETE /v1/segments/{id} forgets a segment and resume answers for a destination") {
        Harness h;
        REQUIRE(
            h.Send({Event("rd1", "rest-del", "true", "2024-05-06T10:00:00.000Z").Json()}).status ==
            200);
        REQUIRE(Eventually([&] { return h.emulator.Included("aud_1").count("rest-del") == 1; }));
        auto deleted = h.Admin("DELETE", "/v1/segments/1");
        REQUIRE(deleted.status == 200);
        CHECK(ParseJson(deleted.body)["members_deleted"].GetInt() == 1);
        CHECK_FALSE(ParseJson(deleted.body)["emptied_on_platform"].GetBool());
        CHECK(h.Admin("GET", "/v1/segments/1").status == 404);
        CHECK(h.Admin("DELETE", "/v1/segments/1").status == 404);
        CHECK(h.Admin("PUT", "/v1/segments/1").status == 405);
        auto resumed = h.Admin("POST", "/v1/destinations/ld/resume");
        REQUIRE(resumed.status == 200);
        CHECK(ParseJson(resumed.body)["destination"].GetString() == std::string("ld"));
        CHECK(h.Admin("POST", "/v1/destinations/nope/resume").status == 404);
        // Without the token: 401, like every admin route.
        CHECK(h.http.Request("DELETE", h.server->url("/v1/segments/2")).status == 401);
        CHECK(h.http.Post(h.server->url("/v1/destinations/ld/resume"), "").status == 401);
    }

    TEST_CASE("log_level quiets the server's log") {
        Harness h;
        std::ofstream(h.config) << Replace(SyncConfig(h.db, h.emulator.base_url()),
                                           "\"listen\":\"127.0.0.1:0\"",
                                           "\"listen\":\"127.0.0.1:0\",\"log_level\":\"warn\"");
        CHECK(h.server->Stop() == 0);
        CHECK(h.server->Log().find(" info received SIGTERM") != std::string::npos);
        h.StartServer();
        CHECK(h.server->Stop() == 0);
        CHECK_MESSAGE(h.server->Log().find(" info ") == std::string::npos, h.server->Log());
        h.StartServer();
    }
}
