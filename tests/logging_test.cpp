// log_format and the access log: one record per line, JSON when asked, one access line per
// request naming the route template, never the query string or a credential.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <fstream>
#include <string>
#include <vector>

#include "audsync/common/log.hpp"
#include "audsync/config/config.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;

namespace {

// The complete lines of a log being written (a last line without its newline is left out).
std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
        if (end > start) out.push_back(text.substr(start, end - start));
    }
    return out;
}

std::string WithLogging(const std::string& db, const std::string& extra) {
    std::string c = testing::TestConfigJson(db);
    return "{" + extra + "," + c.substr(1);
}

}  // namespace

TEST_SUITE("logging") {
    TEST_CASE("a record as text and as one JSON object") {
        log::SetFormat(log::Format::kJson);
        const std::string json = log::FormatRecord(1714987822000, log::Level::kWarn,
                                                   "quote \" and\nnewline", {{"status", "200"}});
        log::SetFormat(log::Format::kText);
        rapidjson::Document doc;
        doc.Parse(json.c_str());
        REQUIRE_FALSE(doc.HasParseError());
        CHECK(json.find('\n') == std::string::npos);
        CHECK(std::string(doc["time"].GetString()) == "2024-05-06T09:30:22.000Z");
        CHECK(std::string(doc["level"].GetString()) == "warn");
        CHECK(std::string(doc["message"].GetString()) == "quote \" and\nnewline");
        CHECK(std::string(doc["fields"]["status"].GetString()) == "200");
        CHECK(log::FormatRecord(1714987822000, log::Level::kInfo, "m", {{"a", "1"}, {"b", "2"}}) ==
              "2024-05-06T09:30:22.000Z info m a=1 b=2");
        CHECK(log::ParseFormat("json") == log::Format::kJson);
        CHECK(log::ParseFormat("text") == log::Format::kText);
        CHECK_FALSE(log::ParseFormat("xml").has_value());
    }

    TEST_CASE("config: log_format and access_log") {
        auto env = [](const std::string&) { return std::optional<std::string>(); };
        auto d = config::LoadText(testing::TestConfigJson("x.db"), env);
        REQUIRE(d.ok());
        CHECK(d.value().log_format == log::Format::kText);
        CHECK(d.value().access_log);
        auto j =
            config::LoadText(WithLogging("x.db", R"("log_format":"json","access_log":false)"), env);
        REQUIRE_MESSAGE(j.ok(), j.error().message);
        CHECK(j.value().log_format == log::Format::kJson);
        CHECK_FALSE(j.value().access_log);
        auto bad = config::LoadText(WithLogging("x.db", R"("log_format":"xml")"), env);
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().message == "log_format: must be text or json");
        auto typo = config::LoadText(WithLogging("x.db", R"("log_fromat":"json")"), env);
        REQUIRE_FALSE(typo.ok());
        CHECK(typo.error().message == "log_fromat: unknown field (did you mean \"log_format\"?)");
    }

    TEST_CASE("json logs: one object per line, one access line per request, no query or secret") {
        testing::TempDir dir;
        const std::string config = dir.File("config.json");
        std::ofstream(config) << WithLogging(dir.File("a.db"), R"("log_format":"json")");
        testing::ServerProcess server(config);
        REQUIRE(server.Start());
        testing::HttpClient http;
        CHECK(http.Request("GET", server.url("/healthz")).status == 200);
        auto lookup = http.Post(server.url("/v1/destinations/ld/audiences/lookup?key=wk-ld"), "{}");
        CHECK(lookup.status >= 400);
        CHECK(http.Request("GET", server.url("/v1/segments?limit=5"), "",
                           {std::string("Authorization: Bearer ") + testing::kAdminToken})
                  .status == 200);
        CHECK(http.Request("GET", server.url("/nope/wk-ld")).status == 404);
        const std::string huge(70 * 1024, 'x');  // over the admin routes' 64 KiB
        CHECK(http.Post(server.url("/v1/destinations/ld/resume"), huge).status == 413);
        // /v1/batch names its destination by the write key only: the body's writeKey, Basic
        // auth (also when the body is refused after it), and a key that is not valid.
        CHECK(http.Post(server.url("/v1/batch"), R"({"writeKey":"wk-ld","batch":[]})").status ==
              200);
        CHECK(
            http.Post(server.url("/v1/batch"), "{not json", {testing::BasicAuth("wk-ld")}).status ==
            400);
        CHECK(http.Post(server.url("/v1/batch"), R"({"batch":[]})", {testing::BasicAuth("wk-no")})
                  .status == 401);
        std::vector<rapidjson::Document> access;
        REQUIRE(testing::Eventually([&] {
            access.clear();
            for (const auto& line : Lines(server.Log())) {
                rapidjson::Document doc;
                doc.Parse(line.c_str());
                REQUIRE_MESSAGE(!doc.HasParseError(), line);  // every line is one JSON object
                REQUIRE(doc.HasMember("time"));
                REQUIRE(doc.HasMember("level"));
                REQUIRE(doc.HasMember("message"));
                REQUIRE(doc.HasMember("fields"));
                if (std::string(doc["message"].GetString()) == "http: access") {
                    access.push_back(std::move(doc));
                }
            }
            return access.size() >= 8;
        }));
        REQUIRE(access.size() == 8);
        auto field = [&](size_t i, const char* name) {
            return std::string(access[i]["fields"][name].GetString());
        };
        CHECK(field(0, "method") == "GET");
        CHECK(field(0, "route") == "/healthz");
        CHECK(field(0, "status") == "200");
        CHECK(field(1, "route") == "/v1/destinations/{id}/audiences/lookup");
        CHECK(field(1, "destination") == "ld");
        CHECK(field(2, "route") == "/v1/segments");
        CHECK(field(2, "bytes_out") != "0");
        CHECK(field(3, "route") == "(no route)");
        CHECK(field(3, "status") == "404");
        CHECK(field(4, "status") == "413");
        CHECK(field(4, "route") == "/v1/destinations/{id}/resume");
        CHECK(field(2, "destination") == "-");
        CHECK(field(5, "route") == "/v1/batch");
        CHECK(field(5, "destination") == "ld");
        CHECK(field(6, "status") == "400");
        CHECK(field(6, "destination") == "ld");
        CHECK(field(7, "status") == "401");
        CHECK(field(7, "destination") == "-");
        for (const char* name : {"duration_ms", "bytes_in", "sent"}) {
            CHECK(access[0]["fields"].HasMember(name));
        }
        // The start-up lines on stdout too, "listening on" included.
        const std::vector<std::string> startup = Lines(server.Startup());
        REQUIRE_FALSE(startup.empty());
        for (const auto& line : startup) {
            rapidjson::Document doc;
            doc.Parse(line.c_str());
            REQUIRE_MESSAGE(!doc.HasParseError(), line);
            REQUIRE(doc.HasMember("fields"));
        }
        rapidjson::Document listening;
        listening.Parse(startup.back().c_str());
        CHECK(std::string(listening["message"].GetString()).find("listening on http://") !=
              std::string::npos);
        CHECK(std::string(listening["fields"]["listen"].GetString()) ==
              "127.0.0.1:" + std::to_string(server.port()));
        const std::string log = server.Log();
        CHECK(log.find("lookup?") == std::string::npos);  // no raw target with its query
        CHECK(log.find("wk-ld") == std::string::npos);
        CHECK(log.find("limit=5") == std::string::npos);
        CHECK(log.find(testing::kAdminToken) == std::string::npos);
        CHECK(server.Stop() == 0);
    }

    TEST_CASE("access_log false: no access lines") {
        testing::TempDir dir;
        const std::string config = dir.File("config.json");
        std::ofstream(config) << WithLogging(dir.File("a.db"), R"("access_log":false)");
        testing::ServerProcess server(config);
        REQUIRE(server.Start());
        testing::HttpClient http;
        CHECK(http.Request("GET", server.url("/healthz")).status == 200);
        CHECK(server.Stop() == 0);
        CHECK(server.Log().find("http: access") == std::string::npos);
        CHECK(server.Log().find("SIGTERM") != std::string::npos);  // the log was written
    }
}
