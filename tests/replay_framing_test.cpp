// `audsync replay events` end to end: how garbage lines in the input are counted.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "support/helpers.hpp"
#include "support/process.hpp"

using namespace audsync;
using testing::RunAudsync;

TEST_SUITE("replay framing") {
    TEST_CASE("one garbage line is one rejected event and the next line is read") {
        testing::TempDir dir;
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(dir.File("a.db"));
        REQUIRE(RunAudsync({"migrate", "--config", cfg}).exit_code == 0);
        testing::EngageEvent first;
        first.message_id = "m1";
        testing::EngageEvent second;
        second.message_id = "m2";
        second.user_id = "u2";
        std::string input = dir.File("events.ndjson");
        std::ofstream(input) << first.Json() << "\nnot json at all\n" << second.Json() << "\n";
        auto r = RunAudsync(
            {"replay", "events", input, "--destination", "ld", "--json", "--config", cfg});
        CAPTURE(r.out);
        CAPTURE(r.err);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("\"events\":3") != std::string::npos);
        CHECK(r.out.find("\"stored\":2") != std::string::npos);
        CHECK(r.out.find("\"applied\":true") != std::string::npos);
        CHECK(r.out.find("\"rejected\":1") != std::string::npos);
        CHECK(r.out.find("stream_error") == std::string::npos);
    }
}
