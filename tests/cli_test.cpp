// The audsync binary's basic commands: usage, version, serve and migrate failures.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "audsync/store/database.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/store_access.hpp"

using namespace audsync;
using testing::RunAudsync;

TEST_SUITE("cli") {
    TEST_CASE("usage errors exit 2 and print usage") {
        for (const auto& args : std::vector<std::vector<std::string>>{{},
                                                                      {"frobnicate"},
                                                                      {"serve", "--bogus", "x"},
                                                                      {"serve", "--config"},
                                                                      {"migrate", "stray"},
                                                                      {"version", "extra"}}) {
            auto r = RunAudsync(args);
            CAPTURE(args.size());
            CHECK(r.exit_code == 2);
            // Either the whole usage, or the error with the command's --help to run.
            CHECK((r.err.find("Usage:") != std::string::npos ||
                   r.err.find("--help` for usage") != std::string::npos));
        }
    }

    TEST_CASE("version and help") {
        auto v = RunAudsync({"version"});
        CHECK(v.exit_code == 0);
        CHECK(v.out == std::string("audsync ") + AUDSYNC_VERSION + "\n");
        auto h = RunAudsync({"help"});
        CHECK(h.exit_code == 0);
        CHECK(h.out.find("serve") != std::string::npos);
        CHECK(h.out.find("migrate") != std::string::npos);
    }

    TEST_CASE("serve without a config, or with a bad one, fails clearly") {
        auto none = RunAudsync({"serve"}, {{"AUDSYNC_CONFIG", ""}});
        CHECK(none.exit_code == 1);
        testing::TempDir dir;
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg)
            << R"({"destinations":[{"id":"ld","service_token":"${NOT_SET_ANYWHERE}",)"
               R"("client_side_id":"c","write_keys":["k"]}]})";
        auto bad = RunAudsync({"serve", "--config", cfg});
        CHECK(bad.exit_code == 1);
        CHECK(bad.err.find("destinations[0].service_token: environment variable NOT_SET_ANYWHERE "
                           "is not set") != std::string::npos);
        auto env = RunAudsync({"serve"}, {{"AUDSYNC_CONFIG", cfg}});
        CHECK(env.exit_code == 1);
        CHECK(env.err.find("NOT_SET_ANYWHERE") != std::string::npos);
    }

    TEST_CASE("migrate creates the schema, is idempotent, and refuses a newer database") {
        testing::TempDir dir;
        std::string db = dir.File("m.db");
        auto first = RunAudsync({"migrate", "--database", db});
        CHECK(first.exit_code == 0);
        CHECK(first.out.find("applied migration 1") != std::string::npos);
        auto second = RunAudsync({"migrate", "--database", db});
        CHECK(second.exit_code == 0);
        CHECK(second.out.find("up to date") != std::string::npos);
        {
            store::Database d(db, false);
            store::TestAccess::Exec(d,
                                    "INSERT INTO schema_migrations VALUES (999, '0999_future', 0)");
        }
        auto newer = RunAudsync({"migrate", "--database", db});
        CHECK(newer.exit_code == 1);
        CHECK(newer.err.find("schema version 999") != std::string::npos);
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(db);
        auto serve = RunAudsync({"serve", "--config", cfg});
        CHECK(serve.exit_code == 1);
        CHECK(serve.err.find("schema version 999") != std::string::npos);
        auto via_config = RunAudsync({"migrate", "--config", cfg});
        CHECK(via_config.exit_code == 1);
    }

    TEST_CASE("a config file readable by others draws a warning") {
        testing::TempDir dir;
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(dir.File("a.db"));
        REQUIRE(RunAudsync({"migrate", "--database", dir.File("a.db")}).exit_code == 0);
        chmod(cfg.c_str(), 0644);
        auto open = RunAudsync({"segments", "list", "--config", cfg});
        CHECK(open.exit_code == 0);
        CHECK(open.err.find("is readable by other users (mode 0644)") != std::string::npos);
        chmod(cfg.c_str(), 0600);
        auto closed = RunAudsync({"segments", "list", "--config", cfg});
        CHECK(closed.exit_code == 0);
        CHECK(closed.err.find("readable by other users") == std::string::npos);
    }

    TEST_CASE("a config file readable by its own group only draws no warning") {
        // The Debian package's layout: root:audsync 0640, read by the service user audsync.
        testing::TempDir dir;
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(dir.File("a.db"));
        REQUIRE(RunAudsync({"migrate", "--database", dir.File("a.db")}).exit_code == 0);
        REQUIRE(chown(cfg.c_str(), static_cast<uid_t>(-1), getegid()) == 0);
        chmod(cfg.c_str(), 0640);
        auto own = RunAudsync({"segments", "list", "--config", cfg});
        CHECK(own.exit_code == 0);
        CHECK(own.err.find("readable by other users") == std::string::npos);
        // Another group's: only root may give the file to it (the suite runs as root in CI;
        // tests/package/package_test.sh checks the same as root with the packaged config).
        const gid_t other = getegid() == 65534 ? 0 : 65534;
        if (chown(cfg.c_str(), static_cast<uid_t>(-1), other) == 0) {
            auto foreign = RunAudsync({"segments", "list", "--config", cfg});
            CHECK(foreign.exit_code == 0);
            CHECK(foreign.err.find("is readable by other users (mode 0640)") != std::string::npos);
        }
    }

    TEST_CASE("replay events reads standard input") {
        testing::TempDir dir;
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(dir.File("a.db"));
        REQUIRE(RunAudsync({"migrate", "--database", dir.File("a.db")}).exit_code == 0);
        auto r =
            RunAudsync({"replay", "events", "-", "--destination", "ld", "--json", "--config", cfg});
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("\"events\":0") != std::string::npos);
        auto several = RunAudsync({"replay", "events", "-", "--config", cfg});
        CHECK(several.exit_code == 2);  // two destinations: --destination is required
    }

    TEST_CASE("serve reports a port it cannot bind") {
        testing::TempDir dir;
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(dir.File("a.db"), "203.0.113.1:1");
        auto r = RunAudsync({"serve", "--config", cfg});
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("cannot listen") != std::string::npos);
    }
}
