// The Flagsmith target (trait names, bodies, pushes, checks) and the Flagsmith emulator it
// is tested against over HTTP.
#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

// Both emulators' directories are on the include path and both name their header
// emulator.hpp: this one is named by its path.
#include "../tools/flagsmith_emulator/emulator.hpp"
#include "audsync/config/config.hpp"
#include "audsync/targets/flagsmith.hpp"
#include "audsync/targets/target.hpp"
#include "support/process.hpp"

using namespace audsync;

namespace {

constexpr const char* kKey = "ser.emulator-key";

config::Target FlagsmithConfig(const std::string& base, const std::string& api,
                               const std::string& key = kKey) {
    config::Target t;
    t.id = "fs";
    t.platform = "flagsmith";
    t.api_base = base;
    t.environment_key = key;
    t.trait_prefix = "seg_";
    t.flagsmith_api = api;
    t.max_batch = 100;
    t.request_timeout_ms = 5000;
    return t;
}

targets::PushRequest Request(std::vector<targets::PushMember> members,
                             const std::string& kind = "user") {
    return targets::PushRequest{"aud_1", "high_value_users", kind, std::move(members)};
}

// An emulator on an ephemeral loopback port.
struct Running {
    flagsmith_emulator::Emulator emulator{flagsmith_emulator::Emulator::Options{}};
    Running() { emulator.Start(); }
    std::string url(const std::string& path) const { return emulator.base_url() + path; }
};

const std::vector<std::string> kJsonKey = {"X-Environment-Key: ser.emulator-key",
                                           "Content-Type: application/json"};

std::string EdgeIdentities(size_t n) {
    std::string body = "{\"data\":[";
    for (size_t i = 0; i < n; ++i) {
        if (i > 0) body += ',';
        body += R"({"identifier":"u)" + std::to_string(i) +
                R"(","traits":[{"trait_key":"t","trait_value":true}]})";
    }
    return body + "]}";
}

}  // namespace

TEST_SUITE("flagsmith") {
    TEST_CASE("trait names: the prefix, then the audience key, then the context kind unless user") {
        struct Row {
            const char* prefix;
            const char* key;
            const char* kind;
            const char* name;
        };
        const Row rows[] = {{"", "high_value_users", "user", "high_value_users"},
                            {"seg_", "high_value_users", "user", "seg_high_value_users"},
                            {"seg_", "high_value_users", "account", "seg_high_value_users:account"},
                            {"", "churn_risk", "org", "churn_risk:org"},
                            {"audsync.", "k", "User", "audsync.k:User"}};
        for (const auto& r : rows) {
            CAPTURE(r.name);
            CHECK(targets::FlagsmithTraitName(r.prefix, r.key, r.kind) == r.name);
        }
    }

    TEST_CASE("the Edge bulk body is byte-exact") {
        CHECK(targets::FlagsmithEdgeBody("seg_", Request({{"u123", true}, {"u456", false}})) ==
              R"({"data":[{"identifier":"u123","traits":[{"trait_key":"seg_high_value_users",)"
              R"("trait_value":true}]},{"identifier":"u456","traits":[{"trait_key":)"
              R"("seg_high_value_users","trait_value":false}]}]})");
        CHECK(targets::FlagsmithEdgeBody("", Request({{"q\"/\\\n", true}}, "account")) ==
              R"({"data":[{"identifier":"q\"/\\\n","traits":[{"trait_key":)"
              R"("high_value_users:account","trait_value":true}]}]})");
        CHECK(targets::FlagsmithEdgeBody("", Request({})) == R"({"data":[]})");
    }

    TEST_CASE("the Core bulk body is byte-exact") {
        CHECK(targets::FlagsmithCoreBody("seg_", Request({{"u123", true}, {"u456", false}})) ==
              R"([{"identity":{"identifier":"u123"},"trait_key":"seg_high_value_users",)"
              R"("trait_value":true},{"identity":{"identifier":"u456"},"trait_key":)"
              R"("seg_high_value_users","trait_value":false}])");
        CHECK(targets::FlagsmithCoreBody("", Request({{"é\t", false}}, "device")) ==
              R"([{"identity":{"identifier":"é\t"},"trait_key":"high_value_users:device",)"
              R"("trait_value":false}])");
    }

    TEST_CASE("the key check line for each answer") {
        struct Row {
            int status;
            const char* transport_error;
            const char* line;
        };
        const Row rows[] = {
            {200, "", "environment key: ok"},
            {401, "", "environment key: refused (HTTP 401)"},
            {403, "", "environment key: refused (HTTP 403)"},
            {404, "", "environment key: not verified (HTTP 404)"},
            {502, "", "environment key: not verified (HTTP 502)"},
            {0, "Couldn't connect to server",
             "environment key: not verified (no answer (Couldn't connect to server))"}};
        for (const auto& r : rows) {
            targets::HttpResult result;
            result.status = r.status;
            result.transport_error = r.transport_error;
            CHECK(targets::FlagsmithKeyCheckLine(result) == r.line);
        }
    }

    TEST_CASE("the factory makes a delta target") {
        auto target = targets::MakeTarget(FlagsmithConfig("http://127.0.0.1:9", "edge"));
        CHECK(target->shape() == targets::PushShape::kDeltas);
    }

    TEST_CASE("Edge push over HTTP sets the trait true, then false") {
        Running r;
        targets::FlagsmithTarget target(FlagsmithConfig(r.emulator.base_url(), "edge"));
        auto included = Request({{"u1", true}, {"u2", true}});
        targets::HttpResult first = target.Push(included);
        CHECK(first.status == 202);
        CHECK(r.emulator.BoolTrait("u1", "seg_high_value_users") == true);
        CHECK(r.emulator.BoolTrait("u2", "seg_high_value_users") == true);
        auto stats = r.emulator.stats();
        CHECK(stats.last_method == "PUT");
        CHECK(stats.last_path == "/api/v1/bulk-identities/");
        CHECK(stats.last_headers["x-environment-key"] == kKey);
        CHECK(stats.last_headers["content-type"] == "application/json");
        CHECK(stats.last_body == targets::FlagsmithEdgeBody("seg_", included));

        CHECK(target.Push(Request({{"u1", false}})).status == 202);
        CHECK(r.emulator.BoolTrait("u1", "seg_high_value_users") == false);
        CHECK(r.emulator.BoolTrait("u2", "seg_high_value_users") == true);
        CHECK(r.emulator.stats().by_status[202] == 2);
    }

    TEST_CASE("Core push over HTTP sets the trait true, then false, per context kind") {
        Running r;
        targets::FlagsmithTarget target(FlagsmithConfig(r.emulator.base_url(), "core"));
        auto included = Request({{"acme", true}}, "account");
        CHECK(target.Push(included).status == 200);
        CHECK(r.emulator.BoolTrait("acme", "seg_high_value_users:account") == true);
        CHECK(!r.emulator.Trait("acme", "seg_high_value_users"));
        auto stats = r.emulator.stats();
        CHECK(stats.last_method == "PUT");
        CHECK(stats.last_path == "/api/v1/traits/bulk/");
        CHECK(stats.last_body == targets::FlagsmithCoreBody("seg_", included));
        CHECK(target.Push(Request({{"acme", false}}, "account")).status == 200);
        CHECK(r.emulator.BoolTrait("acme", "seg_high_value_users:account") == false);
    }

    TEST_CASE("an application's trait survives audsync's pushes, and an Edge POST would erase it") {
        Running r;
        r.emulator.SetIdentityTrait("u1", "plan", "\"pro\"");
        testing::HttpClient http;
        // The application identifies u1 with another trait, as an SDK does.
        auto identify = http.Post(
            r.url("/api/v1/identities/"),
            R"({"identifier":"u1","traits":[{"trait_key":"age","trait_value":30}]})", kJsonKey);
        REQUIRE(identify.status == 200);
        CHECK(identify.body.find(R"({"trait_key":"plan","trait_value":"pro"})") !=
              std::string::npos);

        targets::FlagsmithTarget edge(FlagsmithConfig(r.emulator.base_url(), "edge"));
        targets::FlagsmithTarget core(FlagsmithConfig(r.emulator.base_url(), "core"));
        REQUIRE(edge.Push(Request({{"u1", true}})).status == 202);
        REQUIRE(core.Push(Request({{"u1", false}}, "account")).status == 200);
        REQUIRE(edge.Push(Request({{"u1", false}})).status == 202);
        CHECK(r.emulator.Trait("u1", "plan") == std::string("\"pro\""));
        CHECK(r.emulator.Trait("u1", "age") == std::string("30"));
        CHECK(r.emulator.BoolTrait("u1", "seg_high_value_users") == false);
        CHECK(r.emulator.BoolTrait("u1", "seg_high_value_users:account") == false);

        // What the SDK reads back holds all four.
        auto read = http.Get(r.url("/api/v1/identities/?identifier=u1"), kJsonKey);
        REQUIRE(read.status == 200);
        CHECK(read.body ==
              R"({"identifier":"u1","flags":[],"traits":[{"trait_key":"age","trait_value":30},)"
              R"({"trait_key":"plan","trait_value":"pro"},)"
              R"({"trait_key":"seg_high_value_users","trait_value":false},)"
              R"({"trait_key":"seg_high_value_users:account","trait_value":false}]})");

        // POST replaces the identity's traits: the reason audsync never uses it.
        auto post =
            http.Post(r.url("/api/v1/bulk-identities/"),
                      targets::FlagsmithEdgeBody("seg_", Request({{"u1", true}})), kJsonKey);
        CHECK(post.status == 202);
        CHECK(!r.emulator.Trait("u1", "plan"));
        CHECK(!r.emulator.Trait("u1", "age"));
        CHECK(r.emulator.Identities().at("u1").traits.size() == 1);
    }

    TEST_CASE("faults become HttpResults: 500, 429 with Retry-After, a dropped connection") {
        Running r;
        targets::FlagsmithTarget target(FlagsmithConfig(r.emulator.base_url(), "edge"));
        flagsmith_emulator::Fault f500;
        f500.status = 500;
        flagsmith_emulator::Fault throttled;
        throttled.status = 429;
        throttled.retry_after = "7";
        flagsmith_emulator::Fault drop;
        drop.drop = true;
        // libcurl sends a request again, once, when a reused connection closes before any
        // answer: a drop must happen twice to reach the target.
        drop.count = 2;
        for (const auto& f : {f500, throttled, drop}) r.emulator.AddFault(f);
        auto push = Request({{"u1", true}});

        targets::HttpResult a = target.Push(push);
        CHECK(a.status == 500);
        CHECK(!a.retry_after);
        targets::HttpResult b = target.Push(push);
        CHECK(b.status == 429);
        CHECK(b.retry_after == std::string("7"));
        CHECK(!b.ratelimit_reset);
        CHECK(b.body.find("Request was throttled") != std::string::npos);
        targets::HttpResult c = target.Push(push);
        CHECK(c.status == 0);
        CHECK(!c.transport_error.empty());
        CHECK(!r.emulator.Trait("u1", "seg_high_value_users"));  // nothing applied so far

        CHECK(target.Push(push).status == 202);
        CHECK(r.emulator.BoolTrait("u1", "seg_high_value_users") == true);
        auto stats = r.emulator.stats();
        CHECK(stats.requests == 5);
        CHECK(stats.by_status[500] == 1);
        CHECK(stats.by_status[429] == 1);
        CHECK(stats.by_status[0] == 2);
    }

    TEST_CASE("a wrong or refused key: 403, the check says refused, the key is in no text") {
        Running r;
        const std::string secret = "ser.not-the-key-5d1e";
        targets::FlagsmithTarget wrong(FlagsmithConfig(r.emulator.base_url(), "edge", secret));
        targets::HttpResult pushed = wrong.Push(Request({{"u1", true}}));
        CHECK(pushed.status == 403);
        CHECK(pushed.body == R"({"detail":"Invalid or missing Environment Key"})");
        CHECK(!r.emulator.Trait("u1", "seg_high_value_users"));
        targets::CheckResult check = wrong.Check();
        CHECK(!check.ok);
        REQUIRE(check.lines.size() == 1);
        CHECK(check.lines[0] == "environment key: refused (HTTP 403)");

        targets::FlagsmithTarget right(FlagsmithConfig(r.emulator.base_url(), "core"));
        check = right.Check();
        CHECK(check.ok);
        CHECK(check.lines == std::vector<std::string>{"environment key: ok"});
        r.emulator.SetRejectKey(true);
        CHECK(right.Push(Request({{"u1", true}})).status == 403);
        CHECK(right.Check().lines ==
              std::vector<std::string>{"environment key: refused (HTTP 403)"});

        r.emulator.Stop();
        targets::FlagsmithTarget gone(FlagsmithConfig(r.emulator.base_url(), "edge", secret));
        check = gone.Check();
        CHECK(!check.ok);
        REQUIRE(check.lines.size() == 1);
        CHECK(check.lines[0].rfind("environment key: not verified (no answer (", 0) == 0);
        targets::HttpResult unanswered = gone.Push(Request({{"u1", true}}));
        CHECK(unanswered.status == 0);
        for (const auto& text : {pushed.body, pushed.transport_error, check.lines[0],
                                 unanswered.body, unanswered.transport_error}) {
            CHECK(text.find(secret) == std::string::npos);
            CHECK(text.find("not-the-key") == std::string::npos);
        }
    }

    TEST_CASE(
        "the Edge API's 100-identity limit: the emulator answers 400, the target sends none") {
        Running r;
        testing::HttpClient http;
        auto over =
            http.Request("PUT", r.url("/api/v1/bulk-identities/"), EdgeIdentities(101), kJsonKey);
        CHECK(over.status == 400);
        CHECK(over.body == "Number of identities must not be more than 100");
        CHECK(r.emulator.Identities().empty());
        auto at =
            http.Request("PUT", r.url("/api/v1/bulk-identities/"), EdgeIdentities(100), kJsonKey);
        CHECK(at.status == 202);
        CHECK(r.emulator.Identities().size() == 100);
        CHECK(r.emulator.stats().max_batch == 100);

        targets::FlagsmithTarget target(FlagsmithConfig(r.emulator.base_url(), "edge"));
        std::vector<targets::PushMember> members;
        for (int i = 0; i < 101; ++i) members.push_back({"m" + std::to_string(i), true});
        uint64_t before = r.emulator.stats().requests;
        targets::HttpResult refused = target.Push(Request(members));
        REQUIRE(refused.over_limit);
        CHECK(refused.over_limit->find("100") != std::string::npos);
        CHECK(refused.status == 0);
        CHECK(r.emulator.stats().requests == before);
        members.pop_back();
        CHECK(target.Push(Request(members)).status == 202);
    }

    TEST_CASE("Core trait names over 200 characters are refused before sending") {
        Running r;
        config::Target c = FlagsmithConfig(r.emulator.base_url(), "core");
        c.trait_prefix = std::string(190, 'p');
        targets::FlagsmithTarget target(c);
        targets::HttpResult refused = target.Push(Request({{"u1", true}}));  // 206 characters
        REQUIRE(refused.over_limit);
        CHECK(refused.over_limit->find("200") != std::string::npos);
        CHECK(r.emulator.stats().requests == 0);
        c.trait_prefix = std::string(184, 'p');  // 200 characters exactly
        targets::FlagsmithTarget fits(c);
        CHECK(fits.Push(Request({{"u1", true}})).status == 200);
    }

    TEST_CASE("emulator: a null value deletes a trait, values over 2,000 characters are refused") {
        Running r;
        testing::HttpClient http;
        r.emulator.SetIdentityTrait("u1", "a", "true");
        r.emulator.SetIdentityTrait("u1", "b", "\"x\"");
        r.emulator.SetIdentityTrait("u1", "c", "1.5");
        auto edge = http.Request(
            "PUT", r.url("/api/v1/bulk-identities"),
            R"({"data":[{"identifier":"u1","traits":[{"trait_key":"a","trait_value":null}]}]})",
            kJsonKey);
        CHECK(edge.status == 202);
        CHECK(!r.emulator.Trait("u1", "a"));
        auto core = http.Request(
            "PUT", r.url("/api/v1/traits/bulk/"),
            R"([{"identity":{"identifier":"u1"},"trait_key":"b","trait_value":null}])", kJsonKey);
        CHECK(core.status == 200);
        CHECK(core.body == "[]");
        CHECK(!r.emulator.Trait("u1", "b"));
        CHECK(r.emulator.Trait("u1", "c") == std::string("1.5"));

        std::string at_limit(2000, 'v');
        std::string over_limit(2001, 'v');
        auto edge_item = [](const std::string& value) {
            return R"({"data":[{"identifier":"u2","traits":[{"trait_key":"s","trait_value":")" +
                   value + R"("}]}]})";
        };
        CHECK(
            http.Request("PUT", r.url("/api/v1/bulk-identities/"), edge_item(over_limit), kJsonKey)
                .status == 400);
        CHECK(!r.emulator.Trait("u2", "s"));
        CHECK(http.Request("PUT", r.url("/api/v1/bulk-identities/"), edge_item(at_limit), kJsonKey)
                  .status == 202);
        CHECK(r.emulator.Trait("u2", "s") == "\"" + at_limit + "\"");
        auto core_over =
            http.Request("PUT", r.url("/api/v1/traits/bulk/"),
                         R"([{"identity":{"identifier":"u3"},"trait_key":"s","trait_value":")" +
                             over_limit + R"("}])",
                         kJsonKey);
        CHECK(core_over.status == 400);
        CHECK(core_over.body.find("Value string is too long") != std::string::npos);
        CHECK(r.emulator.Identities().count("u3") == 0);
    }

    TEST_CASE("emulator: refused identifiers make a bulk request fail whole with 400") {
        Running r;
        r.emulator.RefuseKeys({"bad"});
        targets::FlagsmithTarget edge(FlagsmithConfig(r.emulator.base_url(), "edge"));
        targets::FlagsmithTarget core(FlagsmithConfig(r.emulator.base_url(), "core"));
        CHECK(edge.Push(Request({{"good", true}, {"bad", true}})).status == 400);
        CHECK(core.Push(Request({{"good", true}, {"bad", true}})).status == 400);
        CHECK(!r.emulator.Trait("good", "seg_high_value_users"));
        CHECK(edge.Push(Request({{"good", true}})).status == 202);
        CHECK(r.emulator.BoolTrait("good", "seg_high_value_users") == true);
    }

    TEST_CASE("emulator: the SDK reads need the key, and unknown routes are 404") {
        Running r;
        testing::HttpClient http;
        CHECK(http.Get(r.url("/api/v1/flags/"), kJsonKey).body == "[]");
        auto none = http.Get(r.url("/api/v1/flags/"));
        CHECK(none.status == 403);
        CHECK(none.body == R"({"detail":"Invalid or missing Environment key"})");
        auto wrong =
            http.Get(r.url("/api/v1/identities/?identifier=u1"), {"X-Environment-Key: ser.other"});
        CHECK(wrong.status == 403);
        CHECK(r.emulator.Identities().empty());
        auto lazily = http.Get(r.url("/api/v1/identities/?identifier=a%20b"), kJsonKey);
        CHECK(lazily.body == R"({"identifier":"a b","flags":[],"traits":[]})");
        CHECK(r.emulator.Identities().count("a b") == 1);
        CHECK(http.Get(r.url("/api/v1/bulk-identities/"), kJsonKey).status == 405);
        CHECK(http.Post(r.url("/api/v1/traits/bulk/"), "[]", kJsonKey).status == 405);
        CHECK(http.Get(r.url("/api/v1/environment-document/"), kJsonKey).status == 404);
    }

    TEST_CASE("emulator control routes over HTTP") {
        Running r;
        testing::HttpClient http;
        targets::FlagsmithTarget target(FlagsmithConfig(r.emulator.base_url(), "edge"));
        CHECK(http.Post(r.url("/_emulator/faults"), R"({"status":429,"count":2,"retry_after":3})")
                  .status == 200);
        CHECK(target.Push(Request({{"u1", true}})).retry_after == std::string("3"));
        CHECK(target.Push(Request({{"u1", true}})).status == 429);
        CHECK(target.Push(Request({{"u1", true}})).status == 202);
        CHECK(http.Post(r.url("/_emulator/faults"), R"({"drop":true,"count":2})").status == 200);
        CHECK(target.Push(Request({{"u1", true}})).status == 0);

        CHECK(http.Post(r.url("/_emulator/refuse"), R"({"keys":["u2"]})").status == 200);
        CHECK(target.Push(Request({{"u2", true}})).status == 400);
        CHECK(http.Post(r.url("/_emulator/refuse"), R"({"keys":[]})").status == 200);
        CHECK(target.Push(Request({{"u2", true}})).status == 202);

        CHECK(http.Post(r.url("/_emulator/key"), R"({"reject":true})").status == 200);
        CHECK(target.Push(Request({{"u3", true}})).status == 403);
        CHECK(http.Post(r.url("/_emulator/key"), R"({"reject":false})").status == 200);
        CHECK(target.Push(Request({{"u3", false}})).status == 202);
        CHECK(http.Post(r.url("/_emulator/key"), R"({"reject":1})").status == 400);

        auto identities = http.Get(r.url("/_emulator/identities"));
        CHECK(identities.body ==
              R"({"identities":[{"identifier":"u1","traits":{"seg_high_value_users":true}},)"
              R"({"identifier":"u2","traits":{"seg_high_value_users":true}},)"
              R"({"identifier":"u3","traits":{"seg_high_value_users":false}}]})");
        auto stats = http.Get(r.url("/_emulator/stats"));
        CHECK(stats.body == R"({"requests":9,"identities":3,"max_batch":1,)"
                            R"("by_status":{"0":2,"202":3,"400":1,"403":1,"429":2}})");
        CHECK(http.Post(r.url("/_emulator/reset"), "").status == 200);
        CHECK(http.Get(r.url("/_emulator/identities")).body == R"({"identities":[]})");
        CHECK(http.Get(r.url("/_emulator/nothing")).status == 404);
    }

    TEST_CASE("the emulator's --help names every control route it answers") {
        std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) +
                         "/tools/flagsmith_emulator/emulator.cpp");
        std::stringstream ss;
        ss << in.rdbuf();
        std::string code = ss.str();
        std::set<std::string> routes;
        for (size_t at = code.find("\"/_emulator/"); at != std::string::npos;
             at = code.find("\"/_emulator/", at + 1)) {
            size_t end = code.find('"', at + 1);
            std::string route = code.substr(at + 1, end - at - 1);
            if (route != "/_emulator/") routes.insert(route);
        }
        CHECK(routes.size() == 6);
        std::string usage = flagsmith_emulator::Usage();
        for (const auto& route : routes) {
            CAPTURE(route);
            CHECK(usage.find(route + " ") != std::string::npos);
        }
    }
}
