// What the status page stands on: the embedded page itself, GET /v1/pushes, the members
// search by key prefix and the targets' retrying count. The page in a real browser is
// tests/e2e/status_page/.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/http/routes.hpp"
#include "audsync/store/queries.hpp"
#include "audsync/sync/push_log.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using namespace audsync::testing;

namespace {

std::string SourceFile(const std::string& path) {
    std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) + "/" + path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> Members(const std::string& prefix, int n,
                                 const std::string& audience = "aud_1") {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        EngageEvent e;
        e.message_id = "m-" + prefix + std::to_string(i);
        e.user_id = prefix + std::to_string(100 + i);
        e.audience_id = audience;
        out.push_back(e.Json());
    }
    return out;
}

// Every context key of a members listing, following next_cursor to the end.
std::vector<std::string> AllKeys(Harness& h, const std::string& path) {
    std::vector<std::string> keys;
    std::string cursor;
    for (int pages = 0; pages < 100; ++pages) {
        auto r = h.Admin("GET", path + (cursor.empty() ? "" : "&cursor=" + cursor));
        REQUIRE_MESSAGE(r.status == 200, r.body);
        auto doc = ParseJson(r.body);
        for (const auto& m : doc["members"].GetArray())
            keys.push_back(m["context_key"].GetString());
        if (doc["next_cursor"].IsNull()) return keys;
        cursor = doc["next_cursor"].GetString();
    }
    FAIL("the listing did not end");
    return keys;
}

}  // namespace

TEST_SUITE("status page") {
    TEST_CASE("routes: / and /status/{file} are the page, /v1/pushes an admin route") {
        CHECK(http::MatchRoute("GET", "/").id == http::RouteId::kStatusPage);
        CHECK(http::MatchRoute("HEAD", "/").id == http::RouteId::kStatusPage);
        CHECK(http::MatchRoute("POST", "/").id == http::RouteId::kMethodNotAllowed);
        auto asset = http::MatchRoute("GET", "/status/app.js");
        CHECK(asset.id == http::RouteId::kStatusAsset);
        CHECK(asset.key == "app.js");
        CHECK(http::MatchRoute("GET", "/status/a/b").id == http::RouteId::kNotFound);
        CHECK(http::IsStatusPageRoute(http::RouteId::kStatusPage));
        CHECK_FALSE(http::IsAdminRoute(http::RouteId::kStatusPage));
        CHECK(http::MatchRoute("GET", "/v1/pushes").id == http::RouteId::kPushes);
        CHECK(http::IsAdminRoute(http::RouteId::kPushes));
        CHECK(http::RouteTemplate(http::RouteId::kStatusAsset) == "/status/{file}");
    }

    TEST_CASE("the embedded page is served as written, confined by its headers") {
        Harness h;
        const std::vector<std::pair<std::string, std::string>> files = {
            {"/", "ui/status/index.html"},
            {"/status/app.js", "ui/status/app.js"},
            {"/status/app.css", "ui/status/app.css"}};
        for (const auto& [path, file] : files) {
            CAPTURE(path);
            auto r = h.http.Get(h.server->url(path));  // no credential: the page holds no data
            REQUIRE(r.status == 200);
            CHECK(r.body == SourceFile(file));
            const std::string csp = r.headers["content-security-policy"];
            CHECK(csp.find("default-src 'none'") != std::string::npos);
            CHECK(csp.find("script-src 'self'") != std::string::npos);
            CHECK(csp.find("connect-src 'self'") != std::string::npos);
            CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
            CHECK(r.headers["x-content-type-options"] == "nosniff");
            CHECK(r.headers["referrer-policy"] == "no-referrer");
        }
        CHECK(h.http.Get(h.server->url("/")).headers["content-type"] == "text/html; charset=utf-8");
        CHECK(h.http.Get(h.server->url("/status/app.js")).headers["content-type"] ==
              "text/javascript; charset=utf-8");
        CHECK(h.http.Get(h.server->url("/status/app.css")).headers["content-type"] ==
              "text/css; charset=utf-8");
        // Only the three files: anything else under /status/ is a JSON 404.
        for (const char* path : {"/status/index.html", "/status/nope.js", "/status/..%2Fapp.js",
                                 "/status/", "/status"}) {
            CAPTURE(path);
            auto r = h.http.Get(h.server->url(path));
            CHECK(r.status == 404);
            CHECK(r.headers["content-type"] == "application/json");
        }
        CHECK(h.http.Post(h.server->url("/"), "x").status == 405);
        // The page never holds a secret: no token, key or secret of the config in it.
        const std::string page =
            h.http.Get(h.server->url("/")).body + h.http.Get(h.server->url("/status/app.js")).body;
        for (const std::string& secret :
             {std::string(kAdminToken), std::string(kToken), std::string("s3cret")}) {
            CHECK(page.find(secret) == std::string::npos);
        }
    }

    TEST_CASE("GET /v1/pushes: the recent requests and their answers, newest first") {
        Harness h;
        CHECK(h.http.Get(h.server->url("/v1/pushes")).status == 401);
        auto empty = ParseJson(h.Admin("GET", "/v1/pushes").body);
        CHECK(empty["pushes"].Size() == 0);
        CHECK(empty["kept"].GetInt() == 0);

        h.emulator.RefuseKeys({"pu102"});
        REQUIRE(h.Send(Members("pu", 5)).status == 200);
        REQUIRE(Eventually([&] {
            return h.InSync() && h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 1;
        }));
        auto r = h.Admin("GET", "/v1/pushes");
        REQUIRE(r.status == 200);
        auto doc = ParseJson(r.body);
        const auto& pushes = doc["pushes"];
        // 5 members in one batch (max_batch 7): refused, then bisected down to pu102.
        REQUIRE(pushes.Size() >= 3);
        CHECK(doc["kept"].GetInt() == static_cast<int>(pushes.Size()));
        int64_t accepted_adds = 0;
        int refused = 0;
        std::string newer;
        for (const auto& p : pushes.GetArray()) {
            const std::string at = p["at"].GetString();
            if (!newer.empty()) CHECK(at <= newer);  // newest first
            newer = at;
            CHECK(p["destination"].GetString() == std::string("ld"));
            CHECK(p["target"].GetString() == std::string("launchdarkly"));
            CHECK(p["platform"].GetString() == std::string("launchdarkly"));
            CHECK(p["audience_key"].GetString() == std::string("high_value_users"));
            CHECK(p["removes"].GetInt() == 0);
            const std::string outcome = p["outcome"].GetString();
            if (outcome == "accepted") {
                CHECK(p["status"].GetInt() == 204);
                CHECK(p["message"].IsNull());
                accepted_adds += p["adds"].GetInt64();
            } else {
                CHECK(outcome == "refused");
                CHECK(p["status"].GetInt() == 400);
                REQUIRE(p["message"].IsString());
                CHECK(std::string(p["message"].GetString()).find("HTTP 400") == 0);
                CHECK(std::string(p["message"].GetString()).find(kToken) == std::string::npos);
                ++refused;
            }
        }
        CHECK(accepted_adds == 4);
        CHECK(refused >= 2);  // the whole batch, then each part holding pu102
        CHECK(ParseJson(h.Admin("GET", "/v1/pushes?limit=1").body)["pushes"].Size() == 1);
        const int64_t segment = pushes[0]["segment_id"].GetInt64();
        CHECK(ParseJson(
                  h.Admin("GET", "/v1/pushes?segment=" + std::to_string(segment)).body)["pushes"]
                  .Size() == pushes.Size());
        CHECK(ParseJson(
                  h.Admin("GET", "/v1/pushes?destination=ld&target=launchdarkly").body)["pushes"]
                  .Size() == pushes.Size());
        CHECK(ParseJson(h.Admin("GET", "/v1/pushes?destination=other").body)["pushes"].Size() == 0);
        CHECK(ParseJson(h.Admin("GET", "/v1/pushes?segment=999").body)["pushes"].Size() == 0);
        for (const char* bad : {"limit=0", "limit=1001", "limit=x", "segment=0", "segment=x"}) {
            CAPTURE(bad);
            CHECK(h.Admin("GET", std::string("/v1/pushes?") + bad).status == 400);
        }
    }

    TEST_CASE("members ?prefix= finds keys by their start, page by page") {
        Harness h;
        std::vector<std::string> events = Members("alpha-", 12);
        for (auto& e : Members("alp", 1)) events.push_back(e);
        for (auto& e : Members("beta-", 3)) events.push_back(e);
        REQUIRE(h.Send(events).status == 200);
        REQUIRE(Eventually([&] { return h.InSync(); }));
        const std::string base = "/v1/segments/1/members?limit=5";
        auto alpha = AllKeys(h, base + "&prefix=alpha-");
        REQUIRE(alpha.size() == 12);
        CHECK(alpha.front() == "alpha-100");
        CHECK(alpha.back() == "alpha-111");
        CHECK(std::set<std::string>(alpha.begin(), alpha.end()).size() == 12);
        CHECK(AllKeys(h, base + "&prefix=alp").size() == 13);
        CHECK(AllKeys(h, base + "&prefix=beta-10").size() == 3);
        CHECK(AllKeys(h, base + "&prefix=beta-101").size() == 1);
        CHECK(AllKeys(h, base + "&prefix=gamma").empty());
        CHECK(AllKeys(h, base + "&prefix=alpha-&state=excluded").empty());
        CHECK(AllKeys(h, base + "&prefix=alpha-&state=included").size() == 12);
        CHECK(h.Admin("GET", "/v1/segments/1/members?prefix=").status == 400);
        CHECK(h.Admin("GET", "/v1/segments/1/members?prefix=" + std::string(1025, 'a')).status ==
              400);
        // The CLI takes the same filter.
        auto out = RunAudsync(
            {"segments", "members", "1", "--prefix", "beta-", "--json", "--config", h.config});
        CHECK(out.exit_code == 0);
        CHECK(out.out.find("beta-100") != std::string::npos);
        CHECK(out.out.find("alpha-") == std::string::npos);
    }

    TEST_CASE("the push log keeps the newest 1,000 records, newest first, filtered") {
        sync::PushLog log;
        for (int64_t i = 0; i < 1005; ++i) {
            sync::PushRecord r;
            r.segment_id = i;
            r.destination = i % 2 == 0 ? "even" : "odd";
            r.target = "t";
            log.Add(r);
        }
        CHECK(log.size() == sync::PushLog::kCapacity);
        auto all = log.Recent({}, 5000);
        REQUIRE(all.size() == sync::PushLog::kCapacity);
        CHECK(all.front().segment_id == 1004);  // the newest first
        CHECK(all.back().segment_id == 5);      // the 5 oldest went
        auto two = log.Recent({}, 2);
        REQUIRE(two.size() == 2);
        CHECK(two[1].segment_id == 1003);
        sync::PushLog::Filter odd;
        odd.destination = "odd";
        auto odds = log.Recent(odd, 5000);
        CHECK(odds.size() == 500);
        CHECK(odds.front().segment_id == 1003);
        sync::PushLog::Filter one;
        one.segment_id = 7;
        one.target = "t";
        CHECK(log.Recent(one, 10).size() == 1);
        one.target = "other";
        CHECK(log.Recent(one, 10).empty());
    }

    TEST_CASE("PrefixEnd: the first key after every key with the prefix") {
        CHECK(store::PrefixEnd("abc") == std::optional<std::string>("abd"));
        CHECK(store::PrefixEnd(std::string("a\xff", 2)) == std::optional<std::string>("b"));
        CHECK(store::PrefixEnd(std::string("\xff\xff", 2)) == std::nullopt);
        CHECK(store::PrefixEnd("") == std::nullopt);
        CHECK(store::PrefixEnd(std::string("a\x7f", 2)) ==
              std::optional<std::string>(std::string("a\x80", 2)));
    }

    TEST_CASE("a target shows how many of its members are retrying") {
        Harness h;
        emulator::Fault outage;
        outage.status = 503;
        outage.count = 1000000;
        h.emulator.AddFault(outage);
        REQUIRE(h.Send(Members("rt", 3)).status == 200);
        auto target = [&] {
            auto doc = ParseJson(h.Admin("GET", "/v1/destinations/ld").body);
            return std::make_pair(std::string(doc["targets"][0]["status"].GetString()),
                                  doc["targets"][0]["retrying"].GetInt64());
        };
        REQUIRE(Eventually([&] { return target().second == 3; }));
        // A 503 is no pause, but the target shows that it is failing.
        CHECK(target().first == "retrying");
        h.emulator.ClearFaults();
        REQUIRE(Eventually([&] { return h.InSync(); }));
        CHECK(target().second == 0);
        CHECK(Eventually([&] { return target().first == "ok"; }));
    }
}
