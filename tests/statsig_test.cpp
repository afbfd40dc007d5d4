// The Statsig target: its pure functions, its requests over HTTP to the Statsig emulator
// (which these tests also check), and `audsync serve` pushing to the emulator: deltas,
// the mutation window, a refused key, a refused ID.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

// By path: every emulator's header is called emulator.hpp.
#include "../tools/statsig_emulator/emulator.hpp"
#include "audsync/common/json.hpp"
#include "audsync/config/config.hpp"
#include "audsync/sync/policy.hpp"
#include "audsync/targets/statsig.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using targets::HttpResult;
using targets::PushMember;
using targets::PushRequest;
using targets::StatsigTarget;

namespace {

namespace ste = audsync::statsig_emulator;

constexpr const char* kKey = "console-statsig-test-key";
constexpr const char* kSegmentsPath = "/console/v1/segments";

PushRequest Request(std::vector<PushMember> members, const std::string& kind = "user",
                    const std::string& key = "vip") {
    return PushRequest{"aud_1", key, kind, std::move(members)};
}

std::vector<PushMember> Joined(const std::vector<std::string>& keys) {
    std::vector<PushMember> out;
    for (const auto& k : keys) out.push_back({k, true});
    return out;
}

std::set<std::string> Set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

// An emulator on an ephemeral loopback port, its clock in the test's hands, no mutation
// budget unless the test sets one.
struct Rig {
    std::shared_ptr<std::atomic<int64_t>> clock =
        std::make_shared<std::atomic<int64_t>>(1'700'000'000'000);
    std::unique_ptr<ste::Emulator> emulator;

    explicit Rig(ste::Emulator::Options o = Unlimited()) {
        o.console_api_key = kKey;
        o.threads = 2;
        auto c = clock;
        o.now_ms = [c] { return c->load(); };
        emulator = std::make_unique<ste::Emulator>(o);
        emulator->Start();
    }
    static ste::Emulator::Options Unlimited() {
        ste::Emulator::Options o;
        o.rate_limit = 0;
        return o;
    }

    config::Target Config(const std::string& key = kKey,
                          const std::string& id_type = "userID") const {
        config::Target t;
        t.id = "st";
        t.platform = "statsig";
        t.api_base = emulator->base_url();
        t.api_token = key;
        t.id_type = id_type;
        t.max_batch = 10000;
        t.request_timeout_ms = 3000;
        return t;
    }

    // A request to the emulator without HTTP, with the right key.
    ste::Answer Call(const std::string& method, const std::string& path,
                     const std::string& body = "", const std::string& key = kKey) const {
        std::map<std::string, std::string> h = {{"content-type", "application/json"}};
        if (!key.empty()) h["statsig-api-key"] = key;
        return emulator->Handle(method, path, h, body);
    }
};

sync::Decision DecideNow(const HttpResult& r, int attempts = 0, size_t batch = 1,
                         double jitter = 0.0, sync::RetrySchedule schedule = {}) {
    return sync::Decide(r, attempts, batch, 1'700'000'000'000, schedule, jitter);
}

bool ValidStatsigId(const std::string& id) {
    return id.size() >= 3 && id.size() <= 100 &&
           std::regex_match(id, std::regex("^[a-zA-Z0-9_-]*$"));
}

std::string ReadSource(const std::string& path) {
    std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) + "/" + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every "/_emulator/..." route the emulator's code answers.
std::set<std::string> ControlRoutes() {
    std::string code = ReadSource("tools/statsig_emulator/emulator.cpp");
    std::set<std::string> routes;
    for (size_t at = code.find("\"/_emulator/"); at != std::string::npos;
         at = code.find("\"/_emulator/", at + 1)) {
        size_t end = code.find('"', at + 1);
        std::string route = code.substr(at + 1, end - at - 1);
        if (route != "/_emulator/") routes.insert(route);
    }
    return routes;
}

}  // namespace

TEST_SUITE("statsig target") {
    TEST_CASE("Statsig segment ids: plain keys as they are, kinds after --, the rest hashed") {
        CHECK(targets::StatsigSegmentId("vip", "user") == "vip");
        CHECK(targets::StatsigSegmentId("high_value_users", "user") == "high_value_users");
        CHECK(targets::StatsigSegmentId("vip", "account") == "vip--account");
        // Deterministic: the same input, the same id.
        const std::string dotted = targets::StatsigSegmentId("vip", "org.team");
        CHECK(dotted == targets::StatsigSegmentId("vip", "org.team"));
        CHECK(std::regex_match(dotted, std::regex("^vip_org_team-[0-9a-f]{8}$")));
        CHECK(std::regex_match(targets::StatsigSegmentId("ab", "user"),
                               std::regex("^ab-[0-9a-f]{8}$")));  // under 3 characters
        CHECK(std::regex_match(targets::StatsigSegmentId("Big Spenders!", "user"),
                               std::regex("^Big_Spenders_-[0-9a-f]{8}$")));
        CHECK(std::regex_match(targets::StatsigSegmentId("caf\xc3\xa9", "user"),
                               std::regex("^caf_-[0-9a-f]{8}$")));  // é is one character
        const std::string long_id = targets::StatsigSegmentId(std::string(300, 'k'), "user");
        CHECK(long_id.size() == 100);
        CHECK(long_id.substr(0, 91) == std::string(91, 'k'));
        CHECK(targets::StatsigSegmentId(std::string(100, 'k'), "user") == std::string(100, 'k'));
        // Inputs that sanitising alone would merge get different ids.
        const std::vector<std::pair<std::string, std::string>> inputs = {
            {"vip_account", "user"},
            {"vip", "account"},
            {"vip--account", "user"},
            {"a.b", "user"},
            {"a_b", "user"},
            {"a-b", "user"},
            {"a b", "user"},
            {"vip", "acc.ount"},
            {"vip", "acc_ount"},
            {"ab", "user"},
            {"", "user"},
            {std::string(300, 'k'), "user"},
            {std::string(301, 'k'), "user"}};
        std::set<std::string> ids;
        for (const auto& [key, kind] : inputs) {
            const std::string id = targets::StatsigSegmentId(key, kind);
            CAPTURE(key);
            CAPTURE(id);
            CHECK(ValidStatsigId(id));
            ids.insert(id);
        }
        CHECK(ids.size() == inputs.size());
    }

    TEST_CASE("the Statsig bodies are byte-exact") {
        PushRequest r = Request({{"u1", true}, {"gone", false}, {"u\"2", true}, {"u1", true}});
        CHECK(targets::StatsigIdsBody(r, true) == R"({"ids":["u1","u\"2"]})");
        CHECK(targets::StatsigIdsBody(r, false) == R"({"ids":["gone"]})");
        CHECK(targets::StatsigIdsBody(Request({}), true) == R"({"ids":[]})");
        CHECK(targets::StatsigCreateBody(r, "userID") ==
              R"({"name":"vip","id":"vip","type":"id_list","idType":"userID","description":)"
              R"("Managed by audsync: the members of Segment audience vip (aud_1). IDs are )"
              R"(added and removed as members join and leave."})");
        CHECK(targets::StatsigCreateBody(Request({}, "account"), "companyID") ==
              R"({"name":"vip--account","id":"vip--account","type":"id_list",)"
              R"("idType":"companyID","description":"Managed by audsync: the members of )"
              R"(Segment audience vip (aud_1), context kind account. IDs are added and )"
              R"(removed as members join and leave."})");
        PushRequest huge = Request({});
        huge.audience_id = std::string(2000, 'x');
        CHECK(targets::StatsigSegmentDescription(huge).size() <= targets::kStatsigMaxDescription);
    }

    TEST_CASE("Statsig's limit of 100,000 IDs per call is checked before sending") {
        std::vector<PushMember> members;
        for (int i = 0; i < 100000; ++i) members.push_back({"u" + std::to_string(i), true});
        for (int i = 0; i < 100000; ++i) members.push_back({"x" + std::to_string(i), false});
        CHECK(targets::StatsigLimitViolation(Request(members)) == std::nullopt);
        members.push_back({"one-more", false});
        CHECK(targets::StatsigLimitViolation(Request(members)) ==
              "100,001 IDs to remove in one call; Statsig takes at most 100,000 IDs per call "
              "(lower max_batch)");
    }

    TEST_CASE("Statsig keys are blanked in answers") {
        CHECK(targets::RedactStatsigKeys(
                  R"({"status":401,"message":"... an invalid key was sent. Key: console-AbC_1-x"})",
                  "console-mine") ==
              R"({"status":401,"message":"... an invalid key was sent. Key: console-[redacted]"})");
        CHECK(targets::RedactStatsigKeys("key mine-123 and secret-abc, client-x.", "mine-123") ==
              "key [redacted] and secret-[redacted], client-[redacted].");
        CHECK(targets::RedactStatsigKeys("no key here", "") == "no key here");
        CHECK(targets::RedactStatsigKeys("console-", "k") == "console-");
    }

    TEST_CASE("a Statsig 429 waits for the 10-second window, longer as 429s go on") {
        HttpResult r;
        r.status = 429;
        r.ratelimit_reset = "1700000000500";  // LaunchDarkly's header, not Statsig's
        targets::NormaliseStatsigAnswer(r, kKey);
        CHECK(r.ratelimit_reset == std::nullopt);
        REQUIRE(r.rate_limit_window_ms == targets::kStatsigRateWindowMs);
        struct Row {
            const char* name;
            std::optional<std::string> retry_after;
            int attempts;
            double jitter;
            sync::RetrySchedule schedule;
            int64_t min_ms, max_ms;
        };
        const std::vector<Row> rows = {
            {"no header: the window", std::nullopt, 0, 0.0, {}, 10000, 10000},
            {"no header: the window and a tenth of jitter",
             std::nullopt,
             0,
             0.999,
             {},
             11098,
             11100},
            {"no header, many 429s: the backoff beyond the window",
             std::nullopt,
             6,
             0.0,
             {},
             16000,
             16000},
            {"no header, the backoff capped by retry_max_ms",
             std::nullopt,
             30,
             0.0,
             {},
             150000,
             150000},
            {"no header, retry_max_ms under the window: retry_max_ms (1 s floor)",
             std::nullopt,
             0,
             0.5,
             {20, 200, 300},
             1000,
             1000},
            {"Retry-After wins when Statsig sends it", std::string("3"), 0, 0.0, {}, 3000, 3000},
        };
        for (const auto& row : rows) {
            const std::string name = row.name;
            CAPTURE(name);
            HttpResult limited = r;
            limited.retry_after = row.retry_after;
            sync::Decision d = DecideNow(limited, row.attempts, 5, row.jitter, row.schedule);
            CHECK(d.action == sync::Action::kRateLimited);
            CHECK(d.delay_ms >= row.min_ms);
            CHECK(d.delay_ms <= row.max_ms);
        }
        // Without the window (every other platform) nothing changes: the backoff.
        HttpResult plain;
        plain.status = 429;
        CHECK(DecideNow(plain).delay_ms == sync::kRateLimitFloorMs);
        // Other answers carry no window.
        HttpResult ok;
        ok.status = 200;
        targets::NormaliseStatsigAnswer(ok, kKey);
        CHECK_FALSE(ok.rate_limit_window_ms.has_value());
    }

    TEST_CASE("a Statsig 400 about the segment's type pauses, other 400s are bisected") {
        HttpResult wrong_type;
        wrong_type.status = 400;
        wrong_type.body =
            R"({"status":400,"message":"Segment must be of type 'id_list' to be modified on this endpoint"})";
        CHECK(targets::IsStatsigWrongSegmentType(wrong_type));
        targets::NormaliseStatsigAnswer(wrong_type, kKey);
        CHECK(wrong_type.credentials_refused);
        CHECK(DecideNow(wrong_type, 0, 10).action == sync::Action::kAuthFailed);

        HttpResult refused_id;
        refused_id.status = 400;
        refused_id.body = R"({"status":400,"message":"ID refused by the emulator: u3"})";
        targets::NormaliseStatsigAnswer(refused_id, kKey);
        CHECK_FALSE(refused_id.credentials_refused);
        CHECK(DecideNow(refused_id, 0, 10).action == sync::Action::kSplit);
        CHECK(DecideNow(refused_id, 0, 1).action == sync::Action::kDeadLetter);
    }

    TEST_CASE("the Statsig key check line for each answer") {
        HttpResult ok;
        ok.status = 200;
        CHECK(targets::StatsigKeyCheckLine(ok) == "console API key: ok");
        HttpResult refused;
        refused.status = 401;
        CHECK(targets::StatsigKeyCheckLine(refused) == "console API key: refused (HTTP 401)");
        HttpResult down;
        down.transport_error = "Couldn't connect to server";
        CHECK(targets::StatsigKeyCheckLine(down) ==
              "console API key: not verified (no answer (Couldn't connect to server))");
    }

    TEST_CASE("the Statsig factory makes a delta target") {
        config::Target t;
        t.platform = "statsig";
        t.api_base = "http://127.0.0.1:1";
        auto target = targets::MakeTarget(t);
        REQUIRE(target != nullptr);
        CHECK(target->shape() == targets::PushShape::kDeltas);
    }
}

TEST_SUITE("statsig target over HTTP") {
    TEST_CASE("the first Statsig push creates the segment, later pushes send only the changes") {
        Rig rig;
        StatsigTarget target(rig.Config());
        HttpResult first = target.Push(Request(Joined({"u1", "u2", "u3"})));
        CHECK(first.status == 200);
        CHECK(rig.emulator->Ids("vip") == Set({"u1", "u2", "u3"}));
        auto log = rig.emulator->Requests();
        REQUIRE(log.size() == 3);
        CHECK(log[0].method == "PATCH");
        CHECK(log[0].path == "/console/v1/segments/vip/id_list");
        CHECK(log[0].status == 404);
        CHECK(log[1].method == "POST");
        CHECK(log[1].path == kSegmentsPath);
        CHECK(log[1].status == 201);
        CHECK(log[2].method == "PATCH");
        CHECK(log[2].status == 200);
        CHECK(log[2].ids == std::vector<std::string>{"u1", "u2", "u3"});
        auto segments = rig.emulator->Segments();
        REQUIRE(segments.size() == 1);
        CHECK(segments[0].id == "vip");
        CHECK(segments[0].name == "vip");
        CHECK(segments[0].type == "id_list");
        CHECK(segments[0].id_type == "userID");
        CHECK(segments[0].description.find("Segment audience vip (aud_1)") != std::string::npos);
        auto headers = rig.emulator->stats().last_headers;
        CHECK(headers["statsig-api-key"] == kKey);
        CHECK(headers["statsig-api-version"] == "20240601");
        CHECK(headers["content-type"] == "application/json");

        // One leaves, one joins: removals first, each call only with its own IDs.
        HttpResult second = target.Push(Request({{"u2", false}, {"u4", true}}));
        CHECK(second.status == 200);
        log = rig.emulator->Requests();
        REQUIRE(log.size() == 5);
        CHECK(log[3].method == "DELETE");
        CHECK(log[3].ids == std::vector<std::string>{"u2"});
        CHECK(log[4].method == "PATCH");
        CHECK(log[4].ids == std::vector<std::string>{"u4"});
        CHECK(rig.emulator->Ids("vip") == Set({"u1", "u3", "u4"}));

        // Only removals: one call.
        CHECK(target.Push(Request({{"u1", false}})).status == 200);
        CHECK(rig.emulator->Requests().size() == 6);
        CHECK(rig.emulator->Ids("vip") == Set({"u3", "u4"}));
        // Nothing to send: no request.
        CHECK(target.Push(Request({})).status == 204);
        CHECK(rig.emulator->Requests().size() == 6);
        // Another context kind: its own segment.
        CHECK(target.Push(Request(Joined({"a1"}), "account")).status == 200);
        CHECK(rig.emulator->Ids("vip--account") == Set({"a1"}));
        CHECK(rig.emulator->stats().creates == 2);
        CHECK(target.Check().ok);
    }

    TEST_CASE("a Statsig segment deleted in the console is created again by the next push") {
        Rig rig;
        StatsigTarget target(rig.Config());
        REQUIRE(target.Push(Request(Joined({"u1"}))).status == 200);
        REQUIRE(rig.emulator->DeleteSegment("vip"));
        CHECK(target.Push(Request(Joined({"u2"}))).status == 200);
        // Created again, with what this push carries (a replay restores the rest).
        CHECK(rig.emulator->Ids("vip") == Set({"u2"}));
        CHECK(rig.emulator->stats().creates == 2);
        // A removal to a deleted segment creates it too, empty.
        REQUIRE(rig.emulator->DeleteSegment("vip"));
        CHECK(target.Push(Request({{"u2", false}})).status == 200);
        CHECK(rig.emulator->Ids("vip") == Set({}));
    }

    TEST_CASE("a Statsig segment that is not an ID list, or cannot be created, pauses") {
        Rig rig;
        StatsigTarget target(rig.Config());
        REQUIRE(rig.Call("POST", kSegmentsPath, R"({"name":"vip","type":"rule_based"})").status ==
                201);
        HttpResult wrong_type = target.Push(Request(Joined({"u1"})));
        CHECK(wrong_type.status == 400);
        CHECK(wrong_type.credentials_refused);
        CHECK(DecideNow(wrong_type, 0, 1).action == sync::Action::kAuthFailed);

        // An idType the project refuses: PATCH 404, POST 400, PATCH 404 once more.
        StatsigTarget bad_type(rig.Config(kKey, ""));
        const size_t before = rig.emulator->Requests().size();
        HttpResult refused = bad_type.Push(Request(Joined({"u1"}), "user", "other"));
        CHECK(refused.status == 400);
        CHECK(refused.body.find("idType") != std::string::npos);
        CHECK(refused.credentials_refused);
        auto log = rig.emulator->Requests();
        REQUIRE(log.size() == before + 3);
        CHECK(log[before + 1].method == "POST");
        CHECK(log[before + 2].status == 404);

        // A create that fails for a while is the push's answer, retried as any 5xx.
        ste::Fault pass;  // the PATCH answers normally (404)
        rig.emulator->AddFault(pass);
        rig.emulator->AddFault({503, std::nullopt, 0, false, 1});
        HttpResult unavailable = target.Push(Request(Joined({"u1"}), "user", "third"));
        CHECK(unavailable.status == 503);
        CHECK_FALSE(unavailable.credentials_refused);
        CHECK(rig.emulator->Requests().size() == before + 5);
        CHECK(target.Push(Request(Joined({"u1"}), "user", "third")).status == 200);
    }

    TEST_CASE("Statsig faults and the mutation window come back as the push's answer") {
        ste::Emulator::Options o;
        o.rate_limit = 3;
        o.rate_window_ms = 10000;
        Rig rig(o);
        StatsigTarget target(rig.Config());
        REQUIRE(target.Push(Request(Joined({"u1"}))).status == 200);  // PATCH, POST, PATCH
        HttpResult limited = target.Push(Request(Joined({"u2"})));
        CHECK(limited.status == 429);
        CHECK(limited.retry_after == std::nullopt);  // Statsig documents no header
        CHECK(limited.ratelimit_reset == std::nullopt);
        CHECK(limited.rate_limit_window_ms == targets::kStatsigRateWindowMs);
        CHECK(rig.emulator->stats().rate_limited == 1);
        CHECK(target.Check().ok);     // reads are not mutations
        rig.clock->fetch_add(10000);  // the next window
        CHECK(target.Push(Request(Joined({"u2"}))).status == 200);
        CHECK(rig.emulator->Ids("vip") == Set({"u1", "u2"}));

        rig.emulator->SetRateLimit(0, 10000);
        rig.emulator->AddFault({503, std::nullopt, 0, false, 1});
        CHECK(target.Push(Request(Joined({"u3"}))).status == 503);
        rig.emulator->AddFault({429, std::string("7"), 0, false, 1});
        HttpResult with_header = target.Push(Request(Joined({"u3"})));
        CHECK(with_header.status == 429);
        CHECK(with_header.retry_after == "7");
        // Twice: libcurl sends a request again once when a reused connection closes unanswered.
        rig.emulator->AddFault({0, std::nullopt, 0, true, 2});
        HttpResult dropped = target.Push(Request(Joined({"u3"})));
        CHECK(dropped.status == 0);
        CHECK_FALSE(dropped.transport_error.empty());
        // A failing removal stops the push: the additions wait for the retry.
        rig.emulator->AddFault({500, std::nullopt, 0, false, 1});
        const size_t before = rig.emulator->Requests().size();
        CHECK(target.Push(Request({{"u1", false}, {"u3", true}})).status == 500);
        CHECK(rig.emulator->Requests().size() == before + 1);
        CHECK(target.Push(Request({{"u1", false}, {"u3", true}})).status == 200);
        CHECK(rig.emulator->Ids("vip") == Set({"u2", "u3"}));
    }

    TEST_CASE("a wrong Statsig console key: 401, the check says refused, the key is in no text") {
        Rig rig;
        const std::string wrong_key = "console-not-the-key";
        StatsigTarget wrong(rig.Config(wrong_key));
        HttpResult refused = wrong.Push(Request(Joined({"u1"})));
        CHECK(refused.status == 401);
        CHECK(refused.body.find("Key: [redacted]") != std::string::npos);
        sync::Decision d = DecideNow(refused, 0, 1);
        CHECK(d.action == sync::Action::kAuthFailed);
        auto check = wrong.Check();
        CHECK_FALSE(check.ok);
        CHECK(check.lines == std::vector<std::string>{"console API key: refused (HTTP 401)"});
        for (const std::string& text : {refused.body, d.error, d.message, check.lines[0]}) {
            CHECK(text.find(wrong_key) == std::string::npos);
            CHECK(text.find(kKey) == std::string::npos);
        }
        CHECK_FALSE(rig.emulator->Ids("vip").has_value());  // nothing was created

        StatsigTarget good(rig.Config());
        CHECK(good.Check().lines == std::vector<std::string>{"console API key: ok"});
        rig.emulator->SetRejectCredentials(true);
        CHECK(good.Push(Request(Joined({"u1"}))).status == 401);
        rig.emulator->SetRejectCredentials(false);
        CHECK(good.Push(Request(Joined({"u1"}))).status == 200);

        StatsigTarget nobody(config::Target{});  // no server at all
        auto none = nobody.Check();
        CHECK_FALSE(none.ok);
        CHECK(none.lines.at(0).rfind("console API key: not verified (no answer", 0) == 0);
    }

    TEST_CASE("one refused Statsig ID in a batch: bisection isolates it, the rest arrive") {
        Rig rig;
        rig.emulator->RefuseIds({"u3"});
        StatsigTarget target(rig.Config());
        std::vector<PushMember> members = Joined({"u0", "u1", "u2", "u3", "u4", "u5", "u6"});
        members.push_back({"u7", false});
        auto push = [&](const std::vector<PushMember>& part) { return target.Push(Request(part)); };
        auto decide = [&](const HttpResult& r, size_t size) { return DecideNow(r, 0, size); };
        auto decisions = sync::PushWithBisection(members, push, decide);
        REQUIRE(decisions.size() == members.size());
        for (size_t i = 0; i < members.size(); ++i) {
            CAPTURE(members[i].context_key);
            CHECK(decisions[i].action == (members[i].context_key == "u3"
                                              ? sync::Action::kDeadLetter
                                              : sync::Action::kAcknowledge));
        }
        CHECK(decisions[3].message == "ID refused by the emulator: u3");
        CHECK(rig.emulator->Ids("vip") == Set({"u0", "u1", "u2", "u4", "u5", "u6"}));
    }
}

TEST_SUITE("statsig emulator") {
    TEST_CASE("the Statsig emulator validates requests as Statsig documents them") {
        Rig rig;
        auto create = [&](const std::string& body) {
            return rig.Call("POST", kSegmentsPath, body);
        };
        CHECK(create(R"({"name":"ok","type":"id_list"})").status == 400);         // 2 characters
        CHECK(create(R"({"name":"has space","type":"id_list"})").status == 400);  // as the id
        CHECK(create(R"({"name":"has space","id":"has_space","type":"id_list"})").status == 201);
        CHECK(create(R"({"name":"x:y","id":"xyz","type":"id_list"})").status == 400);
        CHECK(create(R"({"name":"abc","id":"a.c","type":"id_list"})").status == 400);
        CHECK(create(R"({"name":"abc","type":"list"})").status == 400);
        CHECK(create(R"({"name":"abc"})").status == 400);
        CHECK(create(R"({"type":"id_list"})").status == 400);
        CHECK(create(R"({"name":"abc","type":"id_list","idType":""})").status == 400);
        CHECK(create(R"({"name":"abc","type":"id_list","description":)" + std::string("\"") +
                     std::string(1001, 'd') + "\"}")
                  .status == 400);
        CHECK(create(R"({"name":1,"type":"id_list"})").status == 400);
        CHECK(create("not json").status == 400);
        CHECK(create(R"({"name":")" + std::string(101, 'n') + R"(","type":"id_list"})").status ==
              400);
        ste::Answer made = create(R"({"name":"abc","type":"id_list","idType":"stableID"})");
        CHECK(made.status == 201);
        rapidjson::Document doc;
        REQUIRE(json::Parse(made.body, doc, 8).ok());
        CHECK(json::FindString(doc, "message") == "Segment created successfully.");
        const rapidjson::Value* data = json::FindObject(doc, "data");
        REQUIRE(data != nullptr);
        CHECK(json::FindString(*data, "id") == "abc");
        CHECK(json::FindString(*data, "idType") == "stableID");
        ste::Answer twice = create(R"({"name":"abc","type":"id_list"})");
        CHECK(twice.status == 400);
        CHECK(twice.body.find("already exists") != std::string::npos);

        const std::string ids = std::string(kSegmentsPath) + "/abc/id_list";
        CHECK(rig.Call("PATCH", ids, R"({"ids":["a","b"]})").status == 200);
        CHECK(rig.Call("PATCH", ids, R"({"ids":"a"})").status == 400);
        CHECK(rig.Call("PATCH", ids, R"({"ids":[1]})").status == 400);
        CHECK(rig.Call("PATCH", ids, "{}").status == 400);
        std::string too_many = "{\"ids\":[";
        for (size_t i = 0; i <= ste::kMaxIdsPerCall; ++i)
            too_many += (i ? ",\"" : "\"") + std::string("i\"");
        CHECK(rig.Call("PATCH", ids, too_many + "]}").status == 400);
        CHECK(rig.Call("DELETE", ids, R"({"ids":["a","never"]})").status == 200);
        CHECK(rig.emulator->Ids("abc") == Set({"b"}));
        CHECK(rig.Call("PATCH", std::string(kSegmentsPath) + "/nope/id_list", R"({"ids":["a"]})")
                  .status == 404);
        REQUIRE(create(R"({"name":"rules","type":"rule_based"})").status == 201);
        ste::Answer wrong_type =
            rig.Call("PATCH", std::string(kSegmentsPath) + "/rules/id_list", R"({"ids":["a"]})");
        CHECK(wrong_type.status == 400);
        CHECK(
            wrong_type.body ==
            R"({"status":400,"message":"Segment must be of type 'id_list' to be modified on this endpoint"})");
        CHECK(rig.Call("PUT", ids, R"({"ids":["a"]})").status == 405);
        CHECK(rig.Call("GET", "/console/v1/gates").status == 404);
        ste::Answer unauthorized = rig.Call("GET", kSegmentsPath, "", "console-wrong");
        CHECK(unauthorized.status == 401);
        CHECK(unauthorized.body.find("Key: console-wrong") != std::string::npos);
        CHECK(rig.Call("GET", kSegmentsPath, "", "").status == 401);
    }

    TEST_CASE("the Statsig emulator's reads: list and ID list pages, get, delete") {
        Rig rig;
        for (const char* name : {"seg_c", "seg_a", "seg_b"}) {
            REQUIRE(rig.Call("POST", kSegmentsPath,
                             std::string(R"({"name":")") + name + R"(","type":"id_list"})")
                        .status == 201);
        }
        ste::Answer page = rig.Call("GET", std::string(kSegmentsPath) + "?limit=2&page=2");
        CHECK(page.status == 200);
        rapidjson::Document doc;
        REQUIRE(json::Parse(page.body, doc, 8).ok());
        const rapidjson::Value* data = json::Find(doc, "data");
        REQUIRE((data != nullptr && data->IsArray()));
        REQUIRE(data->Size() == 1);
        CHECK(json::FindString((*data)[0], "id") == "seg_c");
        CHECK(page.body.find(R"("totalItems":3)") != std::string::npos);
        const std::string ids = std::string(kSegmentsPath) + "/seg_a/id_list";
        REQUIRE(rig.Call("PATCH", ids, R"({"ids":["x","y","z"]})").status == 200);
        ste::Answer list = rig.Call("GET", ids + "?limit=2");
        CHECK(list.status == 200);
        CHECK(list.body.find(R"("count":3,"ids":["x","y"])") != std::string::npos);
        ste::Answer got = rig.Call("GET", std::string(kSegmentsPath) + "/seg_a");
        CHECK(got.status == 200);
        CHECK(got.body.find(R"("count":3)") != std::string::npos);
        CHECK(rig.Call("DELETE", std::string(kSegmentsPath) + "/seg_a").status == 200);
        CHECK(rig.Call("GET", std::string(kSegmentsPath) + "/seg_a").status == 404);
        CHECK(rig.Call("DELETE", std::string(kSegmentsPath) + "/seg_a").status == 404);
        CHECK(rig.emulator->stats().deletes == 1);
    }

    TEST_CASE("the Statsig emulator's project limit of IDs") {
        ste::Emulator::Options o = Rig::Unlimited();
        o.max_project_ids = 3;
        Rig rig(o);
        REQUIRE(rig.Call("POST", kSegmentsPath, R"({"name":"one","type":"id_list"})").status ==
                201);
        REQUIRE(rig.Call("POST", kSegmentsPath, R"({"name":"two","type":"id_list"})").status ==
                201);
        const std::string one = std::string(kSegmentsPath) + "/one/id_list";
        const std::string two = std::string(kSegmentsPath) + "/two/id_list";
        CHECK(rig.Call("PATCH", one, R"({"ids":["a","b"]})").status == 200);
        CHECK(rig.Call("PATCH", one, R"({"ids":["a","b"]})").status == 200);  // no new ID
        CHECK(rig.Call("PATCH", two, R"({"ids":["c","d"]})").status == 400);
        CHECK(rig.Call("PATCH", two, R"({"ids":["c"]})").status == 200);
    }

    TEST_CASE("the Statsig emulator's control routes") {
        Rig rig;
        REQUIRE(rig.Call("POST", kSegmentsPath, R"({"name":"seg","type":"id_list"})").status ==
                201);
        REQUIRE(
            rig.Call("PATCH", std::string(kSegmentsPath) + "/seg/id_list", R"({"ids":["b","a"]})")
                .status == 200);
        ste::Answer segments = rig.Call("GET", "/_emulator/segments");
        CHECK(segments.status == 200);
        CHECK(segments.body ==
              R"({"segments":[{"id":"seg","name":"seg","type":"id_list","idType":"userID",)"
              R"("ids":["a","b"]}]})");
        ste::Answer requests = rig.Call("GET", "/_emulator/requests");
        CHECK(requests.body ==
              R"({"requests":[{"method":"POST","path":"/console/v1/segments","id_count":0,)"
              R"("ids":[],"status":201},{"method":"PATCH","path":"/console/v1/segments/seg/)"
              R"(id_list","id_count":2,"ids":["b","a"],"status":200}]})");
        CHECK(rig.Call("GET", "/_emulator/stats").body ==
              R"({"requests":2,"mutations":2,"creates":1,"adds":1,"removes":0,"deletes":0,)"
              R"("rate_limited":0,"by_status":{"200":1,"201":1}})");

        CHECK(rig.Call("POST", "/_emulator/credentials", R"({"reject":true})").status == 200);
        CHECK(rig.Call("GET", kSegmentsPath).status == 401);
        CHECK(rig.Call("POST", "/_emulator/credentials", R"({"reject":false})").status == 200);
        CHECK(rig.Call("GET", kSegmentsPath).status == 200);
        CHECK(rig.Call("POST", "/_emulator/credentials", "{}").status == 400);

        CHECK(rig.Call("POST", "/_emulator/faults",
                       R"({"status":503,"count":2,"retry_after":"3","delay_ms":0})")
                  .status == 200);
        ste::Answer f1 = rig.Call("GET", kSegmentsPath);
        CHECK(f1.status == 503);
        CHECK(f1.headers["Retry-After"] == "3");
        CHECK(rig.Call("GET", kSegmentsPath).status == 503);
        CHECK(rig.Call("GET", kSegmentsPath).status == 200);
        CHECK(rig.Call("POST", "/_emulator/faults", R"({"drop":true})").status == 200);
        CHECK(rig.Call("GET", kSegmentsPath).drop);
        CHECK(rig.Call("POST", "/_emulator/faults", "[]").status == 400);

        const std::string ids = std::string(kSegmentsPath) + "/seg/id_list";
        CHECK(rig.Call("POST", "/_emulator/refuse", R"({"ids":["bad"]})").status == 200);
        CHECK(rig.Call("PATCH", ids, R"({"ids":["ok","bad"]})").status == 400);
        CHECK(rig.Call("DELETE", ids, R"({"ids":["bad"]})").status == 400);
        CHECK(rig.Call("POST", "/_emulator/refuse", R"({"ids":[]})").status == 200);
        CHECK(rig.Call("PATCH", ids, R"({"ids":["ok","bad"]})").status == 200);
        CHECK(rig.Call("POST", "/_emulator/refuse", "{}").status == 400);

        CHECK(rig.Call("POST", "/_emulator/rate-limit", R"({"requests":1,"window_ms":1000})")
                  .status == 200);
        CHECK(rig.Call("PATCH", ids, R"({"ids":["c"]})").status == 200);
        ste::Answer limited = rig.Call("PATCH", ids, R"({"ids":["d"]})");
        CHECK(limited.status == 429);
        CHECK(limited.headers.count("Retry-After") == 0);
        CHECK(rig.Call("GET", kSegmentsPath).status == 200);  // reads are not counted
        rig.clock->fetch_add(1000);
        CHECK(rig.Call("PATCH", ids, R"({"ids":["d"]})").status == 200);
        CHECK(rig.Call("POST", "/_emulator/rate-limit", R"({"requests":0})").status == 200);
        CHECK(rig.Call("POST", "/_emulator/rate-limit", R"({"requests":-1})").status == 400);

        CHECK(rig.Call("POST", "/_emulator/delete-segment", R"({"id":"seg"})").status == 200);
        CHECK(rig.Call("POST", "/_emulator/delete-segment", R"({"id":"seg"})").status == 404);
        CHECK(rig.Call("POST", "/_emulator/delete-segment", "{}").status == 400);
        CHECK(rig.emulator->Segments().empty());

        REQUIRE(rig.Call("POST", kSegmentsPath, R"({"name":"seg","type":"id_list"})").status ==
                201);
        CHECK(rig.Call("POST", "/_emulator/reset").status == 200);
        CHECK(rig.emulator->Segments().empty());
        CHECK(rig.emulator->Requests().empty());
        CHECK(rig.emulator->stats().requests == 0);
        CHECK(rig.Call("GET", "/_emulator/nothing").status == 404);
    }

    TEST_CASE("the Statsig emulator's default budget is the documented 100 mutations per 10 s") {
        ste::Emulator::Options o;
        CHECK(o.rate_limit == 100);
        CHECK(o.rate_window_ms == 10000);
        o.console_api_key = kKey;
        auto clock = std::make_shared<std::atomic<int64_t>>(5'000);
        o.now_ms = [clock] { return clock->load(); };
        ste::Emulator e(o);
        std::map<std::string, std::string> h = {{"statsig-api-key", kKey}};
        int ok = 0;
        for (int i = 0; i < 101; ++i) {
            ok += e.Handle("DELETE", "/console/v1/segments/none", h, "").status == 404 ? 1 : 0;
        }
        CHECK(ok == 100);
        CHECK(e.Handle("DELETE", "/console/v1/segments/none", h, "").status == 429);
        clock->fetch_add(10000);
        CHECK(e.Handle("DELETE", "/console/v1/segments/none", h, "").status == 404);
    }

    TEST_CASE("docs/platforms/statsig.md documents every Statsig control route") {
        std::string doc = ReadSource("docs/platforms/statsig.md");
        REQUIRE_FALSE(doc.empty());
        auto routes = ControlRoutes();
        CHECK(routes.size() >= 9);
        for (const auto& route : routes) {
            CAPTURE(route);
            CHECK(doc.find("`" + route + "`") != std::string::npos);
            CHECK(std::string(ste::Usage()).find(route) != std::string::npos);
        }
    }
}

namespace {

using testing::Eventually;

// `audsync serve` (a child process) with one destination whose only target is Statsig,
// pushing to the emulator in this process.
struct StatsigSync {
    ste::Emulator st;
    testing::TempDir dir;
    std::string db = dir.File("statsig.db");
    std::string config = dir.File("config.json");
    std::unique_ptr<testing::ServerProcess> server;
    testing::HttpClient http;

    explicit StatsigSync(ste::Emulator::Options o = Rig::Unlimited(), const std::string& key = kKey,
                         int max_batch = 10)
        : st([&] {
              o.threads = 4;
              o.console_api_key = kKey;
              return o;
          }()) {
        st.Start();
        WriteConfig(key, max_batch);
        StartServer();
    }
    ~StatsigSync() {
        if (server) CHECK_MESSAGE(server->Stop() == 0, server->Log());
        st.Stop();
    }
    void WriteConfig(const std::string& key, int max_batch) {
        std::ofstream(config)
            << R"({"listen":"127.0.0.1:0","database":")" << db << R"(","admin_token":")"
            << testing::kAdminToken << R"(","admin_auth_free_failures":1000000,)"
            << R"("sync":{"linger_ms":10,"workers":4},"destinations":[{"id":"ld",)"
            << R"("write_keys":["wk-ld"],"retry_base_ms":20,"retry_max_ms":200,)"
            << R"("auth_retry_ms":300,"request_timeout_ms":3000,"targets":[)"
            << R"({"id":"st","platform":"statsig","console_api_key":")" << key
            << R"(","api_base":")" << st.base_url() << R"(","max_batch":)" << max_batch << "}]}]}";
    }
    void StartServer() {
        server = std::make_unique<testing::ServerProcess>(config);
        REQUIRE_MESSAGE(server->Start(), server->Log());
    }
    void Send(const std::vector<std::string>& events) {
        std::string body = "[";
        for (size_t i = 0; i < events.size(); ++i) body += (i ? "," : "") + events[i];
        body += "]";
        auto r = http.Post(server->url("/v1/destinations/ld/events"), body,
                           {testing::BasicAuth("wk-ld")});
        REQUIRE_MESSAGE(r.status == 200, r.body);
        REQUIRE(store::TestAccess::WaitApplied(db));
    }
    void SendAll(const testing::Stream& s, size_t batch) {
        for (size_t i = 0; i < s.events.size(); i += batch) {
            Send({s.events.begin() + static_cast<std::ptrdiff_t>(i),
                  s.events.begin() +
                      static_cast<std::ptrdiff_t>(std::min(s.events.size(), i + batch))});
        }
    }
    int64_t Count(const std::string& sql) {
        store::Database d(db, false);
        store::Statement s(store::TestAccess::Handle(d), sql);
        s.Step();
        return s.Int(0);
    }
    // The IDs of the audience's segment (the test stream's aud_c is of kind account); a
    // segment not made yet is empty.
    std::set<std::string> Ids(const std::string& cohort) const {
        const std::string id =
            targets::StatsigSegmentId(cohort + "_key", cohort == "aud_c" ? "account" : "user");
        return st.Ids(id).value_or(std::set<std::string>{});
    }
    bool Converged(const testing::Stream& s) const {
        for (const auto& [cohort, keys] : s.expected) {
            if (Ids(cohort) != keys) return false;
        }
        return true;
    }
    bool Settled(const testing::Stream& s) {
        return Converged(s) && Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0;
    }
    std::string State() const { return server->Log(); }
};

std::string Event(const std::string& id, const std::string& user, bool value, int64_t time,
                  const std::string& audience = "aud_a") {
    testing::EngageEvent e;
    e.message_id = id;
    e.audience_id = audience;
    e.audience_key = audience + "_key";
    e.user_id = user;
    e.value = value ? "true" : "false";
    e.timestamp = text::FormatIso8601(time);
    return e.Json();
}

}  // namespace

TEST_SUITE("statsig sync") {
    TEST_CASE("Statsig through the engine: adds then removes reach the ID lists exactly") {
        StatsigSync f;
        std::vector<std::string> joins;
        for (int i = 1; i <= 5; ++i) {
            joins.push_back(
                Event("j" + std::to_string(i), "u" + std::to_string(i), true, 1714987822000 + i));
        }
        f.Send(joins);
        REQUIRE_MESSAGE(
            Eventually([&] {
                return f.st.Ids("aud_a_key") ==
                           std::optional<std::set<std::string>>({"u1", "u2", "u3", "u4", "u5"}) &&
                       f.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0;
            }),
            f.State());
        const size_t before = f.st.Requests().size();
        f.Send({Event("x2", "u2", false, 1714987900000), Event("x6", "u6", true, 1714987900001)});
        REQUIRE_MESSAGE(
            Eventually([&] {
                return f.st.Ids("aud_a_key") ==
                           std::optional<std::set<std::string>>({"u1", "u3", "u4", "u5", "u6"}) &&
                       f.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0;
            }),
            f.State());
        // Only the changed members were sent, each in the call for its change.
        auto log = f.st.Requests();
        REQUIRE(log.size() > before);
        for (size_t i = before; i < log.size(); ++i) {
            CAPTURE(i);
            CHECK(log[i].status == 200);
            if (log[i].method == "DELETE") CHECK(log[i].ids == std::vector<std::string>{"u2"});
            if (log[i].method == "PATCH") CHECK(log[i].ids == std::vector<std::string>{"u6"});
        }
        CHECK(f.st.stats().creates == 1);
    }

    TEST_CASE("a mixed stream over three audiences ends in exactly the true Statsig ID lists") {
        StatsigSync f;
        // Three audiences, one of kind account, every event sent twice, reordered.
        testing::Stream s = testing::MixedStream(150, 7, "st");
        f.SendAll(s, 30);
        f.SendAll(s, 50);
        REQUIRE_MESSAGE(Eventually([&] { return f.Settled(s); }), f.State());
        CHECK(f.st.Ids("aud_c_key--account").has_value());
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
    }

    TEST_CASE("Statsig's mutation window: 429s pause the target, then it converges, nothing lost") {
        ste::Emulator::Options o;
        o.rate_limit = 4;
        o.rate_window_ms = 1000;
        StatsigSync f(o, kKey, 5);
        testing::Stream s = testing::MixedStream(90, 11, "rl");
        f.SendAll(s, 30);
        REQUIRE_MESSAGE(Eventually([&] { return f.Settled(s); }, 90000), f.State());
        CHECK(f.st.stats().rate_limited > 0);
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
        CHECK(f.server->Log().find("rate limited") != std::string::npos);
        auto metrics =
            f.http.Request("GET", f.server->url("/metrics"), "",
                           {std::string("Authorization: Bearer ") + testing::kAdminToken});
        CHECK_MESSAGE(metrics.body.find("audsync_pushes_total{outcome=\"rate_limited\"} 0") ==
                          std::string::npos,
                      metrics.body);
        CHECK(f.Count("SELECT count(*) FROM targets WHERE status = 'ok'") == 1);
    }

    TEST_CASE("a wrong Statsig console key pauses with members pending, the right one converges") {
        StatsigSync f(Rig::Unlimited(), "console-wrong-key");
        std::vector<std::string> joins;
        for (int i = 1; i <= 4; ++i) {
            joins.push_back(
                Event("a" + std::to_string(i), "u" + std::to_string(i), true, 1714987822000 + i));
        }
        f.Send(joins);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.Count(
                                       "SELECT count(*) FROM targets WHERE id = 'st' AND "
                                       "status = 'auth_failed'") == 1;
                        }),
                        f.State());
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 4);
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
        CHECK_FALSE(f.st.Ids("aud_a_key").has_value());
        // The key Statsig quotes back is in no stored error and no log line.
        CHECK(f.Count("SELECT count(*) FROM targets WHERE last_error LIKE '%console-wrong-key%'") ==
              0);
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE last_error LIKE '%wrong-key%'") == 0);
        CHECK(f.server->Log().find("console-wrong-key") == std::string::npos);

        // The key is fixed: restart with it, the pending members go out.
        REQUIRE(f.server->Stop() == 0);
        f.WriteConfig(kKey, 10);
        f.StartServer();
        REQUIRE_MESSAGE(
            Eventually([&] {
                return f.st.Ids("aud_a_key") ==
                           std::optional<std::set<std::string>>({"u1", "u2", "u3", "u4"}) &&
                       f.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0;
            }),
            f.State());
        CHECK(Eventually([&] {
            return f.Count("SELECT count(*) FROM targets WHERE id = 'st' AND status = 'ok'") == 1;
        }));
    }

    TEST_CASE("one refused Statsig ID ends as exactly one dead letter, the rest arrive") {
        StatsigSync f;
        f.st.RefuseIds({"u3"});
        std::vector<std::string> joins;
        std::set<std::string> others;
        for (int i = 0; i < 10; ++i) {
            const std::string user = "u" + std::to_string(i);
            joins.push_back(Event("b" + std::to_string(i), user, true, 1714987822000 + i));
            if (user != "u3") others.insert(user);
        }
        f.Send(joins);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.st.Ids("aud_a_key") ==
                                       std::optional<std::set<std::string>>(others) &&
                                   f.Count("SELECT count(*) FROM deliveries WHERE dead = 1") == 1;
                        }),
                        f.State());
        CHECK(f.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND context_key = 'u3'") ==
              1);
        CHECK(Eventually([&] {
            return f.Count("SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0") == 0;
        }));
    }

    TEST_CASE(
        "a Statsig segment deleted in the console: the next push recreates it, a replay refills "
        "it") {
        StatsigSync f;
        f.Send({Event("c1", "u1", true, 1714987822001), Event("c2", "u2", true, 1714987822002)});
        REQUIRE_MESSAGE(
            Eventually([&] {
                return f.st.Ids("aud_a_key") == std::optional<std::set<std::string>>({"u1", "u2"});
            }),
            f.State());
        REQUIRE(f.st.DeleteSegment("aud_a_key"));
        f.Send({Event("c3", "u3", true, 1714987822003)});
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.st.Ids("aud_a_key") ==
                                   std::optional<std::set<std::string>>({"u3"});
                        }),
                        f.State());
        CHECK(f.st.stats().creates == 2);
        auto replay = testing::RunAudsync({"replay", "segments", "--config", f.config});
        CHECK_MESSAGE(replay.exit_code == 0, replay.err);
        REQUIRE_MESSAGE(Eventually([&] {
                            return f.st.Ids("aud_a_key") ==
                                   std::optional<std::set<std::string>>({"u1", "u2", "u3"});
                        }),
                        f.State());
    }
}
