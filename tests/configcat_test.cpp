// The ConfigCat target: its pure functions, and its requests over HTTP to the ConfigCat
// emulator (which these tests also check, with its control routes and command line).
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

// By path: the LaunchDarkly emulator's header has the same name on the include path.
#include "../tools/configcat_emulator/emulator.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/config/config.hpp"
#include "audsync/targets/configcat.hpp"

using namespace audsync;
using targets::ConfigCatTarget;
using targets::HttpResult;
using targets::PushRequest;

namespace {

namespace cce = audsync::configcat_emulator;

constexpr const char* kUser = "cc-user";
constexpr const char* kPassword = "cc-p@ss:word/+=";
constexpr const char* kProduct = "08d86d63-2726-47cd-8bfc-59608ecb91e2";

PushRequest Request(const std::vector<std::string>& keys, const std::string& kind = "user",
                    const std::string& key = "vip") {
    PushRequest r;
    r.audience_id = "aud_1";
    r.audience_key = key;
    r.context_kind = kind;
    for (const auto& k : keys) r.members.push_back({k, true});
    return r;
}

std::vector<std::string> Keys(size_t n, size_t length = 0) {
    std::vector<std::string> keys;
    for (size_t i = 0; i < n; ++i) {
        std::string k = "u" + std::to_string(i);
        if (length > k.size()) k += std::string(length - k.size(), 'x');
        keys.push_back(k);
    }
    return keys;
}

// An emulator on an ephemeral loopback port, its clock in the test's hands.
struct Rig {
    std::shared_ptr<std::atomic<int64_t>> clock =
        std::make_shared<std::atomic<int64_t>>(1'700'000'000'000);
    std::unique_ptr<cce::Emulator> emulator;

    explicit Rig(cce::Emulator::Options o = {}) {
        o.user = kUser;
        o.password = kPassword;
        o.product_id = kProduct;
        o.threads = 2;
        auto c = clock;
        o.now_ms = [c] { return c->load(); };
        emulator = std::make_unique<cce::Emulator>(o);
        emulator->Start();
    }

    config::Target Config(const std::string& password = kPassword,
                          const std::string& product = kProduct) const {
        config::Target t;
        t.id = "configcat";
        t.platform = "configcat";
        t.api_base = emulator->base_url();
        t.api_user = kUser;
        t.api_password = password;
        t.product_id = product;
        t.max_list_items = 1000;
        t.request_timeout_ms = 3000;
        return t;
    }

    // A request to the emulator without HTTP, with the right credentials.
    cce::Answer Call(const std::string& method, const std::string& path,
                     const std::string& body = "",
                     const std::string& content_type = "application/json") const {
        std::map<std::string, std::string> h = {
            {"authorization", "Basic " + text::Base64Encode(std::string(kUser) + ":" + kPassword)}};
        if (!content_type.empty()) h["content-type"] = content_type;
        return emulator->Handle(method, path, h, body);
    }
};

std::string SegmentsPath() { return std::string("/v1/products/") + kProduct + "/segments"; }

std::string Body(const std::string& name, const std::string& value,
                 const std::string& comparator = "sensitiveIsOneOf") {
    std::string out = "{\"name\":";
    json::AppendQuoted(out, name);
    out += R"(,"description":null,"comparisonAttribute":"Identifier","comparator":)";
    json::AppendQuoted(out, comparator);
    out += ",\"comparisonValue\":";
    json::AppendQuoted(out, value);
    return out + "}";
}

std::set<std::string> Set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

struct Run {
    int exit_code = -1;
    std::string out;
};

std::string EmulatorBinary() {
    std::string audsync = AUDSYNC_BINARY;
    return audsync.substr(0, audsync.rfind('/') + 1) + "audsync-configcat-emulator";
}

Run RunEmulator(const std::string& args) {
    Run r;
    FILE* p = popen((EmulatorBinary() + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    char buffer[4096];
    size_t n = 0;
    while ((n = fread(buffer, 1, sizeof buffer, p)) > 0) r.out.append(buffer, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

std::string ReadSource(const std::string& path) {
    std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) + "/" + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every "/_emulator/..." route the emulator's code answers.
std::set<std::string> ControlRoutes() {
    std::string code = ReadSource("tools/configcat_emulator/emulator.cpp");
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

TEST_SUITE("configcat target") {
    TEST_CASE("ConfigCat segment names: the audience key for user, key:kind otherwise") {
        CHECK(targets::ConfigCatSegmentName("vip", "user") == "vip");
        CHECK(targets::ConfigCatSegmentName("vip", "account") == "vip:account");
        CHECK(targets::ConfigCatSegmentName("high_value_users", "org.team") ==
              "high_value_users:org.team");
    }

    TEST_CASE("the ConfigCat segment body is byte-exact") {
        PushRequest r = Request({"u1", "u\"2", "\xc3\xa9t\xc3\xa9"});
        CHECK(targets::ConfigCatSegmentBody(r) ==
              R"({"name":"vip","description":"Managed by audsync from Segment audience aud_1)"
              R"(; edits are overwritten","comparisonAttribute":"Identifier",)"
              R"("comparator":"sensitiveIsOneOf","comparisonValue":"u1,u\"2,été"})");
        PushRequest account = Request({"a1"}, "account");
        CHECK(targets::ConfigCatSegmentBody(account) ==
              R"({"name":"vip:account","description":"Managed by audsync from Segment )"
              R"(audience aud_1; edits are overwritten","comparisonAttribute":"Identifier",)"
              R"("comparator":"sensitiveIsOneOf","comparisonValue":"a1"})");
    }

    TEST_CASE("the ConfigCat comparison value keeps order, drops repeats and non-members") {
        PushRequest r = Request({"b", "a", "b", "c"});
        r.members.push_back({"gone", false});
        CHECK(targets::ConfigCatComparisonValue(r) == "b,a,c");
    }

    TEST_CASE("an empty ConfigCat audience is the one placeholder item") {
        CHECK(targets::ConfigCatComparisonValue(Request({})) == targets::kConfigCatEmptyListValue);
        PushRequest only_removed = Request({});
        only_removed.members.push_back({"gone", false});
        CHECK(targets::ConfigCatComparisonValue(only_removed) == targets::kConfigCatEmptyListValue);
        CHECK(targets::ConfigCatLimitViolation(Request({}), 1) == std::nullopt);
    }

    TEST_CASE("ConfigCat lengths are counted in UTF-16 code units") {
        CHECK(targets::Utf16Length("") == 0);
        CHECK(targets::Utf16Length("abc") == 3);
        CHECK(targets::Utf16Length("\xc3\xa9") == 1);          // é: 2 bytes, 1 unit
        CHECK(targets::Utf16Length("\xe2\x82\xac") == 1);      // €: 3 bytes, 1 unit
        CHECK(targets::Utf16Length("\xf0\x9f\x98\x80") == 2);  // an emoji: a surrogate pair
    }

    TEST_CASE("ConfigCat limits: the item count names the plan limit and the numbers") {
        CHECK(targets::ConfigCatLimitViolation(Request(Keys(1000)), 1000) == std::nullopt);
        CHECK(targets::ConfigCatLimitViolation(Request(Keys(1204)), 1000) ==
              "audience has 1,204 members; ConfigCat allows 1,000 comparison values per segment "
              "on this plan (max_list_items)");
        CHECK(targets::ConfigCatLimitViolation(Request(Keys(101)), 100) ==
              "audience has 101 members; ConfigCat allows 100 comparison values per segment on "
              "this plan (max_list_items)");
        // Repeats and non-members do not count.
        PushRequest r = Request(Keys(3));
        r.members.push_back({"u0", true});
        r.members.push_back({"gone", false});
        CHECK(targets::ConfigCatLimitViolation(r, 3) == std::nullopt);
    }

    TEST_CASE("ConfigCat limits: 65,535 characters of comparison value, 255 per key") {
        // 256 keys of 255 characters and their 255 commas: 65,535 exactly.
        std::vector<std::string> keys = Keys(256, 255);
        CHECK(targets::ConfigCatLimitViolation(Request(keys), 15000) == std::nullopt);
        keys.push_back("k");  // and a comma: 65,537
        CHECK(targets::ConfigCatLimitViolation(Request(keys), 15000) ==
              "comparison value of 257 members has 65,537 characters; ConfigCat allows 65,535 "
              "characters per comparison value");
        // 65,536 with no key over 255: 255 keys of 255, three of 84 + 85 + 85, 257 commas.
        keys = Keys(255, 255);
        keys.push_back(std::string(84, 'a'));
        keys.push_back(std::string(85, 'b'));
        keys.push_back(std::string(85, 'c'));
        CHECK(targets::ConfigCatLimitViolation(Request(keys), 15000) ==
              "comparison value of 258 members has 65,536 characters; ConfigCat allows 65,535 "
              "characters per comparison value");
        keys.back().pop_back();
        CHECK(targets::ConfigCatLimitViolation(Request(keys), 15000) == std::nullopt);
        // One key of 256 characters.
        keys = {"short", std::string(256, 'q')};
        auto why = targets::ConfigCatLimitViolation(Request(keys), 15000);
        REQUIRE(why.has_value());
        CHECK(why->find("has 256 characters; ConfigCat allows 255 characters per comparison "
                        "value item") != std::string::npos);
        CHECK(targets::ConfigCatLimitViolation(Request({std::string(255, 'q')}), 1) ==
              std::nullopt);
        // Characters, not bytes: 255 two-byte characters are one item of 255.
        std::string accents;
        for (int i = 0; i < 255; ++i) accents += "\xc3\xa9";
        CHECK(targets::ConfigCatLimitViolation(Request({accents}), 10) == std::nullopt);
        CHECK(targets::ConfigCatLimitViolation(Request({accents + "a"}), 10).has_value());
    }

    TEST_CASE("ConfigCat limits: keys the comma-separated list cannot carry") {
        auto comma = targets::ConfigCatLimitViolation(Request({"ok", "a,b"}), 10);
        REQUIRE(comma.has_value());
        CHECK(comma->find("\"a,b\" contains ','") != std::string::npos);
        auto space = targets::ConfigCatLimitViolation(Request({" padded"}), 10);
        REQUIRE(space.has_value());
        CHECK(space->find("white space") != std::string::npos);
        CHECK(targets::ConfigCatLimitViolation(Request({"tab\t"}), 10).has_value());
        CHECK(targets::ConfigCatLimitViolation(Request({""}), 10).has_value());
        CHECK(targets::ConfigCatLimitViolation(Request({"inner space"}), 10) == std::nullopt);
        auto name =
            targets::ConfigCatLimitViolation(Request({"u"}, "account", std::string(250, 'k')), 10);
        REQUIRE(name.has_value());
        CHECK(name->find("has 258 characters; ConfigCat allows 255 characters per segment name") !=
              std::string::npos);
    }

    TEST_CASE("X-Rate-Limit-Reset: ISO 8601, epoch seconds or ms, seconds from now") {
        const int64_t now = 1'700'000'000'000;
        CHECK(targets::ParseConfigCatRateLimitReset("2023-11-14T22:13:25.5000000Z", now) ==
              1'700'000'005'500);
        CHECK(targets::ParseConfigCatRateLimitReset("2023-11-14T22:13:25Z", now) ==
              1'700'000'005'000);
        CHECK(targets::ParseConfigCatRateLimitReset("1700000005", now) == 1'700'000'005'000);
        CHECK(targets::ParseConfigCatRateLimitReset("1700000005123", now) == 1'700'000'005'123);
        CHECK(targets::ParseConfigCatRateLimitReset("30", now) == now + 30'000);
        CHECK(targets::ParseConfigCatRateLimitReset("", now) == std::nullopt);
        CHECK(targets::ParseConfigCatRateLimitReset("soon", now) == std::nullopt);
        CHECK(targets::ParseConfigCatRateLimitReset("99999999999999999999", now) == std::nullopt);
    }

    TEST_CASE("a ConfigCat 429 keeps Retry-After, else takes X-Rate-Limit-Reset as epoch ms") {
        const int64_t now = 1'700'000'000'000;
        std::map<std::string, std::string> h = {
            {"x-rate-limit-reset", "2023-11-14T22:13:30.0000000Z"}, {"retry-after", "7"}};
        HttpResult both;
        both.status = 429;
        both.retry_after = "7";
        targets::NormaliseConfigCatRateLimit(both, h, now);
        CHECK(both.retry_after == "7");
        CHECK(both.ratelimit_reset == std::nullopt);
        HttpResult reset_only;
        reset_only.status = 429;
        h.erase("retry-after");
        targets::NormaliseConfigCatRateLimit(reset_only, h, now);
        CHECK(reset_only.ratelimit_reset == "1700000010000");
        // LaunchDarkly's X-Ratelimit-Reset (read by the shared client) is not ConfigCat's.
        HttpResult ok;
        ok.status = 200;
        ok.ratelimit_reset = "123";
        targets::NormaliseConfigCatRateLimit(ok, h, now);
        CHECK(ok.ratelimit_reset == std::nullopt);
    }

    TEST_CASE("the ConfigCat factory makes a full-list target") {
        config::Target t;
        t.platform = "configcat";
        t.api_base = "http://127.0.0.1:1";
        auto target = targets::MakeTarget(t);
        REQUIRE(target != nullptr);
        CHECK(target->shape() == targets::PushShape::kFullList);
    }
}

TEST_SUITE("configcat target over HTTP") {
    TEST_CASE("ConfigCat pushes over a limit send nothing") {
        Rig rig;
        config::Target c = rig.Config();
        c.max_list_items = 3;
        ConfigCatTarget target(c);
        HttpResult items = target.Push(Request(Keys(4)));
        CHECK(items.status == 0);
        REQUIRE(items.over_limit.has_value());
        CHECK(*items.over_limit ==
              "audience has 4 members; ConfigCat allows 3 comparison values per segment on this "
              "plan (max_list_items)");
        c.max_list_items = 15000;
        ConfigCatTarget wide(c);
        HttpResult chars = wide.Push(Request(Keys(257, 255)));  // 65,791 characters
        CHECK(chars.status == 0);
        REQUIRE(chars.over_limit.has_value());
        CHECK(chars.over_limit->find("65,535 characters") != std::string::npos);
        HttpResult key = wide.Push(Request({std::string(256, 'k')}));
        CHECK(key.status == 0);
        REQUIRE(key.over_limit.has_value());
        CHECK(key.over_limit->find("255 characters per comparison value item") !=
              std::string::npos);
        auto stats = rig.emulator->stats();
        CHECK(stats.requests == 0);
        CHECK(rig.emulator->Segments().empty());
    }

    TEST_CASE("the first ConfigCat push creates the segment, the next replaces its list") {
        Rig rig;
        ConfigCatTarget target(rig.Config());
        HttpResult first = target.Push(Request({"u1", "u2"}));
        CHECK(first.status == 201);
        CHECK_FALSE(first.over_limit.has_value());
        CHECK(rig.emulator->Values("vip") == Set({"u1", "u2"}));
        auto segments = rig.emulator->Segments();
        REQUIRE(segments.size() == 1);
        CHECK(segments[0].comparison_attribute == "Identifier");
        CHECK(segments[0].comparator == "sensitiveIsOneOf");
        CHECK(segments[0].description ==
              "Managed by audsync from Segment audience aud_1; edits are overwritten");
        CHECK(target.CachedSegmentId("vip") == segments[0].segment_id);
        auto stats = rig.emulator->stats();
        CHECK(stats.lists == 1);
        CHECK(stats.creates == 1);
        CHECK(stats.last_method == "POST");
        CHECK(stats.last_path == SegmentsPath());
        CHECK(stats.last_body == targets::ConfigCatSegmentBody(Request({"u1", "u2"})));
        CHECK(stats.last_headers["authorization"] ==
              "Basic " + text::Base64Encode(std::string(kUser) + ":" + kPassword));
        CHECK(stats.last_headers["content-type"] == "application/json");
        CHECK(stats.last_headers["accept"] == "application/json");

        HttpResult second = target.Push(Request({"u2", "u3"}));
        CHECK(second.status == 200);
        CHECK(rig.emulator->Values("vip") == Set({"u2", "u3"}));
        stats = rig.emulator->stats();
        CHECK(stats.lists == 1);  // the id came from the cache
        CHECK(stats.updates == 1);
        CHECK(stats.last_method == "PUT");
        CHECK(stats.last_path == "/v1/segments/" + segments[0].segment_id);
        CHECK(stats.requests == 3);
        CHECK(rig.emulator->Segments().size() == 1);
    }

    TEST_CASE("a fresh ConfigCat target finds the segment by name instead of making another") {
        Rig rig;
        {
            ConfigCatTarget first(rig.Config());
            REQUIRE(first.Push(Request({"u1"})).status == 201);
            REQUIRE(first.Push(Request({"k"}, "account")).status == 201);
        }
        ConfigCatTarget second(rig.Config());
        CHECK(second.Push(Request({"u9"})).status == 200);
        auto stats = rig.emulator->stats();
        CHECK(stats.creates == 2);
        CHECK(stats.updates == 1);
        CHECK(rig.emulator->Values("vip") == Set({"u9"}));
        CHECK(rig.emulator->Values("vip:account") == Set({"k"}));
        CHECK(rig.emulator->Segments().size() == 2);
    }

    TEST_CASE("an empty ConfigCat audience leaves only the placeholder in the list") {
        Rig rig;
        ConfigCatTarget target(rig.Config());
        REQUIRE(target.Push(Request({"u1", "u2"})).status == 201);
        CHECK(target.Push(Request({})).status == 200);
        CHECK(rig.emulator->Values("vip") == Set({targets::kConfigCatEmptyListValue}));
        // Created empty, too: ConfigCat refuses an empty comparison value.
        CHECK(target.Push(Request({}, "user", "nobody")).status == 201);
        CHECK(rig.emulator->Values("nobody") == Set({targets::kConfigCatEmptyListValue}));
    }

    TEST_CASE("a ConfigCat segment deleted in the dashboard is created again in the same push") {
        Rig rig;
        ConfigCatTarget target(rig.Config());
        REQUIRE(target.Push(Request({"u1"})).status == 201);
        const std::string old_id = *target.CachedSegmentId("vip");
        REQUIRE(rig.Call("POST", "/_emulator/delete-segment", R"({"name":"vip"})").status == 200);
        CHECK_FALSE(rig.emulator->Values("vip").has_value());
        HttpResult r = target.Push(Request({"u1", "u2"}));
        CHECK(r.status == 201);
        CHECK(rig.emulator->Values("vip") == Set({"u1", "u2"}));
        REQUIRE(target.CachedSegmentId("vip").has_value());
        CHECK(*target.CachedSegmentId("vip") != old_id);
        auto stats = rig.emulator->stats();
        CHECK(stats.by_status[404] == 1);  // the PUT
        CHECK(stats.creates == 2);
        CHECK(target.Push(Request({"u3"})).status == 200);
        CHECK(rig.emulator->Values("vip") == Set({"u3"}));
    }

    TEST_CASE("ConfigCat faults come back as the push's answer") {
        Rig rig;
        ConfigCatTarget target(rig.Config());
        rig.emulator->AddFault({500, std::nullopt, std::nullopt, 0, false, 1});
        HttpResult server_error = target.Push(Request({"u1"}));
        CHECK(server_error.status == 500);
        CHECK(rig.emulator->Segments().empty());  // the failed list created nothing

        cce::Fault retry;
        retry.status = 429;
        retry.retry_after = "7";
        retry.reset_in_ms = 30000;
        rig.emulator->AddFault(retry);
        HttpResult limited = target.Push(Request({"u1"}));
        CHECK(limited.status == 429);
        CHECK(limited.retry_after == "7");
        CHECK(limited.ratelimit_reset == std::nullopt);

        cce::Fault reset_only;
        reset_only.status = 429;
        reset_only.reset_in_ms = 30000;
        rig.emulator->AddFault(reset_only);
        HttpResult reset = target.Push(Request({"u1"}));
        CHECK(reset.status == 429);
        CHECK(reset.retry_after == std::nullopt);
        CHECK(reset.ratelimit_reset == std::to_string(rig.clock->load() + 30000));

        // Twice: libcurl sends a request again once when a reused connection closes unanswered.
        cce::Fault drop;
        drop.drop = true;
        drop.count = 2;
        rig.emulator->AddFault(drop);
        HttpResult dropped = target.Push(Request({"u1"}));
        CHECK(dropped.status == 0);
        CHECK_FALSE(dropped.transport_error.empty());
        CHECK_FALSE(dropped.over_limit.has_value());
        rig.emulator->ClearFaults();

        // A failing create is the answer, and the next push lists again.
        REQUIRE(target.Push(Request({"u1"})).status == 201);
        rig.emulator->AddFault({503, std::nullopt, std::nullopt, 0, false, 1});
        CHECK(target.Push(Request({"u1"}, "user", "other")).status == 503);
        CHECK(rig.emulator->stats().by_status[0] >= 1);
    }

    TEST_CASE("the ConfigCat emulator's request budget answers 429 with its headers") {
        cce::Emulator::Options o;
        o.rate_limit = 3;
        o.rate_window_ms = 60000;
        Rig rig(o);
        ConfigCatTarget target(rig.Config());
        REQUIRE(target.Push(Request({"u1"})).status == 201);  // GET + POST
        REQUIRE(target.Push(Request({"u2"})).status == 200);  // PUT: the budget is spent
        rig.clock->fetch_add(20000);
        HttpResult limited = target.Push(Request({"u3"}));
        CHECK(limited.status == 429);
        CHECK(limited.retry_after == "40");
        cce::Answer answer = rig.Call("GET", "/v1/me");
        CHECK(answer.status == 429);
        CHECK(answer.headers["X-Rate-Limit-Remaining"] == "0");
        CHECK(text::ParseIso8601(answer.headers["X-Rate-Limit-Reset"]) ==
              1'700'000'000'000 + 60000);
        rig.clock->fetch_add(40000);  // a new window
        CHECK(target.Push(Request({"u3"})).status == 200);
        CHECK(rig.emulator->Values("vip") == Set({"u3"}));
        cce::Answer me = rig.Call("GET", "/v1/me");
        CHECK(me.status == 200);
        CHECK(me.headers["X-Rate-Limit-Remaining"] == "1");
    }

    TEST_CASE("ConfigCat refusals: wrong credentials are 401, checks say which part failed") {
        Rig rig;
        ConfigCatTarget good(rig.Config());
        auto check = good.Check();
        CHECK(check.ok);
        CHECK(check.lines == std::vector<std::string>{"API credentials: ok", "product: ok"});

        ConfigCatTarget wrong(rig.Config("not-the-password"));
        HttpResult refused = wrong.Push(Request({"u1"}));
        CHECK(refused.status == 401);
        auto bad = wrong.Check();
        CHECK_FALSE(bad.ok);
        CHECK(bad.lines == std::vector<std::string>{"API credentials: refused (HTTP 401)",
                                                    "product: not verified (HTTP 401)"});
        for (const auto& line : bad.lines) {
            CHECK(line.find("not-the-password") == std::string::npos);
            CHECK(line.find(kUser) == std::string::npos);
        }

        ConfigCatTarget unknown(rig.Config(kPassword, "another-product"));
        auto product = unknown.Check();
        CHECK_FALSE(product.ok);
        CHECK(product.lines ==
              std::vector<std::string>{"API credentials: ok", "product: unknown (HTTP 404)"});
        CHECK(unknown.Push(Request({"u1"})).status == 404);

        rig.emulator->SetRejectCredentials(true);
        CHECK(good.Push(Request({"u1"})).status == 401);
        CHECK(good.Check().lines[0] == "API credentials: refused (HTTP 401)");
        rig.emulator->SetRejectCredentials(false);
        CHECK(good.Push(Request({"u1"})).status == 201);

        ConfigCatTarget nobody(config::Target{});  // no server at all
        auto none = nobody.Check();
        CHECK_FALSE(none.ok);
        CHECK(none.lines.at(0).rfind("API credentials: not verified (no answer", 0) == 0);
    }

    TEST_CASE("ConfigCat's 400s come back as the push's answer") {
        cce::Emulator::Options o;
        o.max_items = 2;  // a Free-like plan the target was not told about
        o.max_segments = 2;
        Rig rig(o);
        ConfigCatTarget target(rig.Config());
        HttpResult items = target.Push(Request({"a", "b", "c"}));
        CHECK(items.status == 400);
        CHECK(items.body.find("\"comparisonValue\":[") != std::string::npos);
        CHECK(target.Push(Request({"a"}, "user", "one")).status == 201);
        CHECK(target.Push(Request({"a"}, "user", "two")).status == 201);
        HttpResult third = target.Push(Request({"a"}, "user", "three"));
        CHECK(third.status == 400);
        CHECK(third.body.find("limit of 2 segments") != std::string::npos);
        CHECK(rig.emulator->Segments().size() == 2);
    }

    TEST_CASE("a ConfigCat product with many segments: the audience's is found, not made twice") {
        cce::Emulator::Options o;
        o.max_segments = 100;
        Rig rig(o);
        {
            ConfigCatTarget first(rig.Config());
            REQUIRE(first.Push(Request({"u1"})).status == 201);
        }
        // About 550 bytes each: far beyond a few KiB of listing.
        for (int i = 0; i < 40; ++i) {
            REQUIRE(
                rig.Call("POST", SegmentsPath(), Body("filler-" + std::to_string(i), "x")).status ==
                201);
        }
        ConfigCatTarget second(rig.Config());
        HttpResult r = second.Push(Request({"u2"}));
        CHECK(r.status == 200);
        CHECK(rig.emulator->stats().creates == 41);
        CHECK(rig.emulator->Values("vip") == Set({"u2"}));
    }
}

TEST_SUITE("configcat emulator") {
    TEST_CASE("the ConfigCat emulator validates bodies as ConfigCat documents them") {
        cce::Emulator::Options o;
        o.max_items = 3;
        o.max_segments = 100;
        Rig rig(o);
        auto create = [&](const std::string& body, const std::string& type = "application/json") {
            return rig.Call("POST", SegmentsPath(), body, type);
        };
        CHECK(create(Body("s", "a,b,c")).status == 201);
        CHECK(create(Body("s", "a,b,c,d")).status == 400);
        CHECK(create(Body("s", "a, b ,c,d", "contains")).status == 201);  // not a list
        CHECK(create(Body("s", "")).status == 400);
        CHECK(create(Body("", "a")).status == 400);
        CHECK(create(Body(std::string(256, 'n'), "a")).status == 400);
        CHECK(create(Body("s", std::string(256, 'i'))).status == 400);
        CHECK(create(Body("s", std::string(255, 'i'))).status == 201);
        CHECK(create(Body("s", std::string(65536, 'v'), "contains")).status == 400);
        CHECK(create(Body("s", "a", "isOneOff")).status == 400);
        cce::Answer unknown = create(R"({"name":"s","comparisonAttribute":"Identifier",)"
                                     R"("comparator":"isOneOf","comparisonValue":"a","x":1})");
        CHECK(unknown.status == 400);
        CHECK(unknown.body == R"({"x":["Unknown property."]})");
        cce::Answer missing = create(R"({"name":"s"})");
        CHECK(missing.status == 400);
        rapidjson::Document doc;
        REQUIRE(json::Parse(missing.body, doc, 8).ok());
        CHECK(doc.HasMember("comparisonValue"));
        CHECK(doc.HasMember("comparator"));
        CHECK(doc.HasMember("comparisonAttribute"));
        CHECK(create("not json").status == 400);
        CHECK(create(Body("s", "a"), "text/plain").status == 415);
        CHECK(create(Body("s", "a"), "application/json; charset=utf-8").status == 201);
        CHECK(rig.Call("POST", "/v1/products/other/segments", Body("s", "a")).status == 404);
        CHECK(rig.Call("GET", "/v1/segments/nope").status == 404);
        CHECK(rig.Call("PUT", "/v1/segments/nope", Body("s", "a")).status == 404);
        CHECK(rig.Call("DELETE", "/v1/segments/nope").status == 404);
        CHECK(rig.Call("GET", "/v1/nothing").status == 404);
        CHECK(rig.Call("PATCH", "/v1/me").status == 405);
    }

    TEST_CASE("the ConfigCat emulator's segment routes: get, partial put, delete, list") {
        Rig rig;
        cce::Answer created = rig.Call("POST", SegmentsPath(), Body("s", "a,b"));
        REQUIRE(created.status == 201);
        rapidjson::Document doc;
        REQUIRE(json::Parse(created.body, doc, 8).ok());
        auto id = json::FindString(doc, "segmentId");
        REQUIRE(id.has_value());
        CHECK(json::FindString(doc, "comparisonValue") == "a,b");
        const std::string path = "/v1/segments/" + *id;
        // Null and absent fields stay as they are.
        cce::Answer put = rig.Call("PUT", path, R"({"name":null,"comparisonValue":"c"})");
        CHECK(put.status == 200);
        CHECK(rig.emulator->Values("s") == Set({"c"}));
        CHECK(rig.Call("PUT", path, R"({"comparisonValue":""})").status == 400);
        cce::Answer got = rig.Call("GET", path);
        CHECK(got.status == 200);
        CHECK(got.body.find(R"("comparator":"sensitiveIsOneOf")") != std::string::npos);
        cce::Answer list = rig.Call("GET", SegmentsPath());
        CHECK(list.status == 200);
        REQUIRE(json::Parse(list.body, doc, 8).ok());
        REQUIRE(doc.IsArray());
        CHECK(doc.Size() == 1);
        CHECK(json::FindString(doc[0], "name") == "s");
        CHECK(json::Find(doc[0], "comparisonValue") == nullptr);  // SegmentListModel
        CHECK(rig.Call("DELETE", path).status == 204);
        CHECK(rig.Call("GET", path).status == 404);
        CHECK(rig.emulator->stats().deletes == 1);
        std::map<std::string, std::string> no_auth;
        CHECK(rig.emulator->Handle("GET", "/v1/me", no_auth, "").status == 401);
    }

    TEST_CASE("the ConfigCat emulator's control routes") {
        Rig rig;
        REQUIRE(rig.Call("POST", SegmentsPath(), Body("s", " a , b")).status == 201);
        cce::Answer segments = rig.Call("GET", "/_emulator/segments");
        CHECK(segments.status == 200);
        CHECK(segments.body ==
              R"({"segments":[{"segmentId":"00000000-0000-4000-8000-000000000001","name":"s",)"
              R"("comparator":"sensitiveIsOneOf","values":["a","b"]}]})");
        cce::Answer stats = rig.Call("GET", "/_emulator/stats");
        CHECK(
            stats.body ==
            R"({"requests":1,"lists":0,"creates":1,"updates":0,"deletes":0,"by_status":{"201":1}})");

        CHECK(rig.Call("POST", "/_emulator/credentials", R"({"reject":true})").status == 200);
        CHECK(rig.Call("GET", "/v1/me").status == 401);
        CHECK(rig.Call("POST", "/_emulator/credentials", R"({"reject":false})").status == 200);
        CHECK(rig.Call("GET", "/v1/me").status == 200);
        CHECK(rig.Call("POST", "/_emulator/credentials", "{}").status == 400);

        CHECK(rig.Call("POST", "/_emulator/faults",
                       R"({"status":503,"count":2,"retry_after":"3","delay_ms":0})")
                  .status == 200);
        cce::Answer f1 = rig.Call("GET", "/v1/me");
        CHECK(f1.status == 503);
        CHECK(f1.headers["Retry-After"] == "3");
        CHECK(rig.Call("GET", "/v1/me").status == 503);
        CHECK(rig.Call("GET", "/v1/me").status == 200);
        CHECK(rig.Call("POST", "/_emulator/faults", R"({"drop":true})").status == 200);
        CHECK(rig.Call("GET", "/v1/me").drop);

        CHECK(rig.Call("POST", "/_emulator/rate-limit", R"({"requests":1,"window_ms":1000})")
                  .status == 200);
        CHECK(rig.Call("GET", "/v1/me").status == 200);
        CHECK(rig.Call("GET", "/v1/me").status == 429);
        CHECK(rig.Call("POST", "/_emulator/rate-limit", R"({"requests":0})").status == 200);
        CHECK(rig.Call("GET", "/v1/me").status == 200);
        CHECK(rig.Call("POST", "/_emulator/rate-limit", R"({"requests":-1})").status == 400);

        CHECK(rig.Call("POST", "/_emulator/delete-segment", R"({"name":"s"})").status == 200);
        CHECK(rig.Call("POST", "/_emulator/delete-segment", R"({"name":"s"})").status == 404);
        CHECK(rig.emulator->Segments().empty());

        REQUIRE(rig.Call("POST", SegmentsPath(), Body("t", "a")).status == 201);
        CHECK(rig.Call("POST", "/_emulator/reset").status == 200);
        CHECK(rig.emulator->Segments().empty());
        CHECK(rig.emulator->stats().requests == 0);
        // Ids are never reused, even after a reset.
        cce::Answer again = rig.Call("POST", SegmentsPath(), Body("t", "a"));
        CHECK(again.body.find("00000000-0000-4000-8000-000000000003") != std::string::npos);
        CHECK(rig.Call("GET", "/_emulator/nothing").status == 404);
    }

    TEST_CASE("the ConfigCat emulator's --help names every control route, bad options exit 2") {
        std::ifstream binary(EmulatorBinary());
        REQUIRE_MESSAGE(binary.good(), "build the audsync-configcat-emulator target first");
        auto routes = ControlRoutes();
        CHECK(routes.size() >= 7);
        for (const char* flag : {"--help", "-h"}) {
            auto r = RunEmulator(flag);
            CHECK(r.exit_code == 0);
            CHECK(r.out.find("usage: audsync-configcat-emulator") == 0);
            for (const auto& route : routes) {
                CAPTURE(route);
                CHECK(r.out.find(route) != std::string::npos);
            }
        }
        for (const char* args :
             {"--bogus", "--listen", "--listen 8767", "--listen h:70000", "--user", "--password ''",
              "--max-items 0", "--max-items x", "--rate-limit -1", "-x 1", "extra"}) {
            CAPTURE(args);
            auto r = RunEmulator(args);
            CHECK(r.exit_code == 2);
            CHECK(r.out.find("usage:") != std::string::npos);
        }
    }

    TEST_CASE("docs/platforms/configcat.md documents every ConfigCat control route") {
        std::string doc = ReadSource("docs/platforms/configcat.md");
        REQUIRE_FALSE(doc.empty());
        for (const auto& route : ControlRoutes()) {
            CAPTURE(route);
            CHECK(doc.find("`" + route + "`") != std::string::npos);
        }
    }
}
