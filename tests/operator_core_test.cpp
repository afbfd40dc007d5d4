// The operator core: CLI parsing in-process, one renderer for REST and --json, and the
// database the CLI finds (or refuses to create).
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "audsync/cli/cli.hpp"
#include "audsync/common/json.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using namespace audsync::testing;

namespace {

struct InProcess {
    int code = -1;
    std::string out;
    std::string err;
};

InProcess Cli(const std::vector<std::string>& args) {
    std::ostringstream out, err;
    InProcess r;
    r.code = cli::Run(args, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
}

bool Exists(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0;
}

// Runs the audsync binary from `cwd` (the CLI is used from any folder).
CommandResult RunIn(const std::string& cwd, const std::vector<std::string>& args) {
    TempDir io;
    std::string cmd = "cd '" + cwd + "' && " + AUDSYNC_BINARY;
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " >'" + io.File("out") + "' 2>'" + io.File("err") + "'";
    int status = std::system(cmd.c_str());
    CommandResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream o(io.File("out")), e(io.File("err"));
    std::stringstream so, se;
    so << o.rdbuf();
    se << e.rdbuf();
    r.out = so.str();
    r.err = se.str();
    return r;
}

// The same JSON, whatever the order of whitespace: both are parsed and re-serialised.
std::string Canonical(const std::string& text) {
    rapidjson::Document doc;
    REQUIRE_MESSAGE(json::Parse(text, doc, 64).ok(), text);
    return json::Serialize(doc);
}

// A segment list, canonical, with each storage file's size blanked: the sizes are measured
// when the answer is made (the CLI reads the files itself, and a checkpoint may run between
// the two reads), so only which files are listed, in which order, can be the same.
std::string CanonicalList(const std::string& text) {
    rapidjson::Document doc;
    REQUIRE_MESSAGE(json::Parse(text, doc, 64).ok(), text);
    REQUIRE_MESSAGE(doc.HasMember("storage"), text);
    for (auto& file : doc["storage"]["files"].GetArray()) {
        REQUIRE(file["bytes"].IsNumber());
        file["bytes"].SetInt(0);
    }
    return json::Serialize(doc);
}

}  // namespace

TEST_SUITE("cli parsing") {
    TEST_CASE("usage errors exit 2 before anything runs") {
        const std::vector<std::vector<std::string>> cases = {
            {},
            {"frobnicate"},
            {"segments"},
            {"segments", "frob"},
            {"segments", "list", "--bogus"},
            {"segments", "list", "--config"},
            {"segments", "show"},
            {"segments", "show", "abc"},
            {"segments", "show", "0"},
            {"segments", "members", "1", "--limit"},
            {"segments", "members", "1", "--limit", "0"},
            {"segments", "members", "1", "--limit", "ten"},
            {"dead-letters", "list", "--segment", "-3"},
            {"replay", "events"},
            {"replay", "segments", "stray"},
            {"replay", "segments", "--dry-run", "--bogus"},
            {"migrate", "stray"},
            {"version", "extra"},
            {"destinations", "resume"},
            {"backup"},
        };
        for (const auto& args : cases) {
            std::string joined;
            for (const auto& a : args) joined += a + " ";
            CAPTURE(joined);
            auto r = Cli(args);
            CHECK(r.code == 2);
            CHECK(r.out.empty());
            CHECK_FALSE(r.err.empty());
        }
    }

    TEST_CASE("usage errors name what was wrong") {
        auto unknown = Cli({"segments", "lst"});
        CHECK(unknown.code == 2);
        CHECK(unknown.err.find("unknown command lst") != std::string::npos);
        auto missing = Cli({"segments"});
        CHECK(missing.err.find("segments needs one of: list show members member delete") !=
              std::string::npos);
        auto flag = Cli({"segments", "list", "--bogus"});
        CHECK(flag.err.find("--bogus") != std::string::npos);
        CHECK(flag.err.find("run `audsync segments list --help` for usage") != std::string::npos);
    }

    TEST_CASE("every command answers --help with exit 0") {
        for (const auto& args :
             std::vector<std::vector<std::string>>{{"--help"},
                                                   {"segments", "--help"},
                                                   {"segments", "members", "--help"},
                                                   {"replay", "events", "--help"},
                                                   {"dead-letters", "retry", "--help"},
                                                   {"destinations", "resume", "--help"},
                                                   {"backup", "--help"}}) {
            CAPTURE(args.size());
            auto r = Cli(args);
            CHECK(r.code == 0);
            CHECK(r.out.find("Usage:") != std::string::npos);
        }
        auto seg = Cli({"segments", "--help"});
        CHECK(seg.out.find("members") != std::string::npos);
        CHECK(seg.out.find("delete") != std::string::npos);
        auto events = Cli({"replay", "events", "--help"});
        CHECK(events.out.find("--dry-run") != std::string::npos);
    }

    TEST_CASE("version") {
        auto v = Cli({"version"});
        CHECK(v.code == 0);
        CHECK(v.out == std::string("audsync ") + AUDSYNC_VERSION + "\n");
    }
}

TEST_SUITE("cli database") {
    TEST_CASE("a read command on a missing database exits 1 and creates nothing") {
        TempDir dir;
        std::string cfg = dir.File("c.json");
        std::string db = dir.File("missing.db");
        std::ofstream(cfg) << TestConfigJson(db);
        for (const auto& args :
             std::vector<std::vector<std::string>>{{"segments", "list"},
                                                   {"segments", "show", "1"},
                                                   {"contexts", "u1"},
                                                   {"dead-letters", "list"},
                                                   {"destinations", "list"},
                                                   {"replay", "segments"},
                                                   {"replay", "events", "-", "--destination", "ld"},
                                                   {"backup", dir.File("copy.db")}}) {
            auto full = args;
            full.insert(full.end(), {"--config", cfg});
            CAPTURE(args[0]);
            auto r = RunAudsync(full);
            CHECK(r.exit_code == 1);
            CHECK(r.err.find("no database at " + db + " (config " + cfg + ")") !=
                  std::string::npos);
            CHECK_FALSE(Exists(db));
            CHECK_FALSE(Exists(dir.File("copy.db")));
        }
    }

    TEST_CASE("the CLI run from another folder finds the server's database") {
        TempDir etc, home;
        std::string cfg = etc.File("audsync.json");
        // A relative database path is relative to the config file, not the caller.
        std::string text = TestConfigJson("audsync.db");
        std::ofstream(cfg) << text;
        auto migrated = RunIn(etc.path(), {"migrate", "--config", cfg});
        REQUIRE_MESSAGE(migrated.exit_code == 0, migrated.err);
        CHECK(Exists(etc.File("audsync.db")));
        auto list = RunIn(home.path(), {"segments", "list", "--json", "--config", cfg});
        CHECK_MESSAGE(list.exit_code == 0, list.err);
        CHECK(list.out.find("\"segments\":[]") != std::string::npos);
        CHECK_FALSE(Exists(home.File("audsync.db")));
    }
}

TEST_SUITE("one renderer") {
    TEST_CASE("--json output equals the REST body") {
        Harness h;
        std::vector<std::string> events;
        for (int i = 0; i < 9; ++i) {
            EngageEvent e;
            e.message_id = "j" + std::to_string(i);
            e.user_id = "json-user-" + std::to_string(i);
            events.push_back(e.Json());
        }
        // Two refused members, so that there are dead letters to compare.
        h.emulator.RefuseKeys({"json-user-2", "json-user-5"});
        REQUIRE(h.Send(events).status == 200);
        REQUIRE_MESSAGE(
            Eventually([&] {
                return h.Count("SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0") ==
                           0 &&
                       h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 2;
            }),
            h.server->Log());
        auto rest_segments = h.Admin("GET", "/v1/segments");
        auto cli_segments = RunAudsync({"segments", "list", "--json", "--config", h.config});
        REQUIRE_MESSAGE(cli_segments.exit_code == 0, cli_segments.err);
        CHECK(CanonicalList(cli_segments.out) == CanonicalList(rest_segments.body));

        auto rest_one = h.Admin("GET", "/v1/segments/1");
        auto cli_one = RunAudsync({"segments", "show", "1", "--json", "--config", h.config});
        CHECK(Canonical(cli_one.out) == Canonical(rest_one.body));

        auto rest_member = h.Admin("GET", "/v1/segments/1/members/json-user-3");
        auto cli_member =
            RunAudsync({"segments", "member", "1", "json-user-3", "--json", "--config", h.config});
        REQUIRE_MESSAGE(cli_member.exit_code == 0, cli_member.err);
        CHECK(Canonical(cli_member.out) == Canonical(rest_member.body));
        CHECK(cli_member.out.find("\"payload\":{") != std::string::npos);

        // Members and dead letters: the CLI streams one object a line, REST pages them.
        auto rest_members = h.Admin("GET", "/v1/segments/1/members?limit=1000");
        auto cli_members = RunAudsync({"segments", "members", "1", "--json", "--config", h.config});
        rapidjson::Document page;
        REQUIRE(json::Parse(rest_members.body, page, 64).ok());
        std::istringstream lines(cli_members.out);
        std::string line;
        size_t i = 0;
        while (std::getline(lines, line)) {
            REQUIRE(i < page["members"].Size());
            CHECK(Canonical(line) == json::Serialize(page["members"][static_cast<unsigned>(i)]));
            ++i;
        }
        CHECK(i == 9);

        auto rest_dead = h.Admin("GET", "/v1/dead-letters");
        auto cli_dead = RunAudsync({"dead-letters", "list", "--json", "--config", h.config});
        CHECK(cli_dead.exit_code == 0);
        rapidjson::Document dead;
        REQUIRE(json::Parse(rest_dead.body, dead, 64).ok());
        REQUIRE(dead["dead_letters"].Size() == 2);
        std::istringstream dead_lines(cli_dead.out);
        i = 0;
        while (std::getline(dead_lines, line)) {
            REQUIRE(i < 2);
            CHECK(Canonical(line) ==
                  json::Serialize(dead["dead_letters"][static_cast<unsigned>(i)]));
            ++i;
        }
        CHECK(i == 2);

        auto rest_dest = h.Admin("GET", "/v1/destinations/ld");
        auto cli_dest = RunAudsync({"destinations", "show", "ld", "--json", "--config", h.config});
        CHECK(Canonical(cli_dest.out) == Canonical(rest_dest.body));

        auto rest_replay = h.Admin("POST", "/v1/segments/1/resync?dry_run=true");
        auto cli_replay = RunAudsync(
            {"replay", "segments", "--segment", "1", "--dry-run", "--json", "--config", h.config});
        CHECK(Canonical(cli_replay.out) == Canonical(rest_replay.body));
        CHECK(cli_replay.out.find("\"dry_run\":true") != std::string::npos);
    }
}
