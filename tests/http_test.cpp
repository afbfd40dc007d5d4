// Integration tests: `audsync serve` in a child process, driven over real HTTP.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/store_access.hpp"

using namespace audsync;
using testing::BasicAuth;
using testing::EngageEvent;

namespace {

rapidjson::Document Json(const std::string& body) {
    rapidjson::Document doc;
    REQUIRE_MESSAGE(json::Parse(body, doc, 64).ok(), body);
    return doc;
}

int64_t Field(const rapidjson::Document& doc, const char* name) {
    const auto* v = json::Find(doc, name);
    REQUIRE_MESSAGE(v != nullptr, name);
    REQUIRE(v->IsInt64());
    return v->GetInt64();
}

std::string ErrorCodeOf(const testing::HttpResponse& r) {
    auto doc = Json(r.body);
    const auto* err = json::FindObject(doc, "error");
    REQUIRE_MESSAGE(err != nullptr, r.body);
    auto code = json::FindString(*err, "code");
    REQUIRE(code.has_value());
    CHECK(json::FindString(*err, "message").has_value());
    return *code;
}

// A running server with the test config and its own database.
struct Running {
    testing::TempDir dir;
    std::string db = dir.File("audsync.db");
    std::string config = dir.File("config.json");
    testing::ServerProcess server{config};
    testing::HttpClient http;

    explicit Running(const std::string& config_json = "") {
        std::ofstream(config) << (config_json.empty() ? testing::TestConfigJson(db) : config_json);
        REQUIRE_MESSAGE(server.Start(), server.Log());
    }
    ~Running() {
        int code = server.Stop();
        CHECK_MESSAGE(code == 0, server.Log());
    }
    std::string url(const std::string& path) const { return server.url(path); }

    std::optional<store::Membership> Member(const std::string& key,
                                            const std::string& audience = "aud_1",
                                            const std::string& kind = "user",
                                            const std::string& destination = "ld") {
        store::Database d(db, false);
        return store::FindMembership(d, destination, audience, kind, key);
    }
    int64_t Events(const std::string& destination = "ld") {
        store::Database d(db, false);
        return store::TestAccess::CountEvents(d, destination);
    }
};

std::string TrackingBatch(const std::vector<std::string>& items, const std::string& extra = "") {
    std::string out = "{\"batch\":[";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
    out += "]" + extra + ",\"sentAt\":\"2024-05-06T09:31:00.000Z\"}";
    return out;
}

}  // namespace

TEST_SUITE("http") {
    TEST_CASE("health and readiness") {
        Running r;
        auto h = r.http.Get(r.url("/healthz"));
        CHECK(h.status == 200);
        CHECK(h.headers["content-type"] == "application/json");
        auto ready = r.http.Get(r.url("/readyz"));
        CHECK(ready.status == 200);
        CHECK(Json(ready.body).IsObject());
    }

    TEST_CASE("unknown routes and methods get JSON errors") {
        Running r;
        auto nf = r.http.Get(r.url("/nope"));
        CHECK(nf.status == 404);
        CHECK(ErrorCodeOf(nf) == "not_found");
        auto m = r.http.Get(r.url("/v1/batch"));
        CHECK(m.status == 405);
        CHECK(m.body.find("this route takes POST") != std::string::npos);
        CHECK(r.http.Post(r.url("/healthz"), "").status == 405);
        CHECK(ErrorCodeOf(m) == "method_not_allowed");
        for (const char* method : {"PUT", "DELETE", "PATCH", "OPTIONS"}) {
            auto x = r.http.Request(method, r.url("/v1/destinations/ld/events"), "{}");
            CHECK(x.status == 405);
        }
        auto bad = r.http.Post(r.url("/v1/destinations/%zz/events"), "{}");
        CHECK(bad.status == 400);
        CHECK(ErrorCodeOf(bad) == "invalid_path");
    }

    TEST_CASE("Tracking API: write key as Basic auth user or in the body") {
        Running r;
        EngageEvent a;
        auto basic =
            r.http.Post(r.url("/v1/batch"), TrackingBatch({a.Json()}), {BasicAuth("wk-ld")});
        REQUIRE(basic.status == 200);
        auto doc = Json(basic.body);
        CHECK(Field(doc, "accepted") == 1);
        EngageEvent b;
        b.message_id = "m2";
        b.user_id = "u2";
        auto body_key =
            r.http.Post(r.url("/v1/batch"), TrackingBatch({b.Json()}, ",\"writeKey\":\"wk-ld\""));
        REQUIRE(body_key.status == 200);
        CHECK(Field(Json(body_key.body), "accepted") == 1);
        CHECK(r.Member("u1").has_value());
        CHECK(r.Member("u2").has_value());
        // The other destination's key routes there.
        EngageEvent c;
        c.message_id = "m3";
        auto other =
            r.http.Post(r.url("/v1/batch"), TrackingBatch({c.Json()}), {BasicAuth("wk-other")});
        CHECK(other.status == 200);
        CHECK(r.Member("u1", "aud_1", "user", "other").has_value());
    }

    TEST_CASE("Tracking API: missing or wrong write keys are 401 and store nothing") {
        Running r;
        EngageEvent a;
        struct Row {
            std::string body;
            std::vector<std::string> headers;
        };
        Row rows[] = {
            {TrackingBatch({a.Json()}), {}},
            {TrackingBatch({a.Json()}), {BasicAuth("wrong")}},
            {TrackingBatch({a.Json()}, ",\"writeKey\":\"wrong\""), {}},
            {TrackingBatch({a.Json()}, ",\"writeKey\":\"wk-ld\""), {BasicAuth("wrong")}},
            {TrackingBatch({a.Json()}), {"Authorization: Bearer wk-ld"}},
        };
        for (const auto& row : rows) {
            auto resp = r.http.Post(r.url("/v1/batch"), row.body, row.headers);
            CHECK(resp.status == 401);
            CHECK(ErrorCodeOf(resp) == "unauthorized");
            CHECK(resp.body.find("wk-ld") == std::string::npos);
        }
        CHECK(r.Events() == 0);
    }

    TEST_CASE("Tracking API: identify, track and import routes") {
        Running r;
        EngageEvent a;
        auto identify = r.http.Post(r.url("/v1/identify"), a.Json(), {BasicAuth("wk-ld")});
        CHECK(identify.status == 200);
        EngageEvent t;
        t.type = "track";
        t.message_id = "t1";
        t.user_id = "u7";
        t.value = "";
        t.event_name = "Audience Entered";
        auto track = r.http.Post(r.url("/v1/track"), t.Json(), {BasicAuth("wk-ld")});
        CHECK(track.status == 200);
        CHECK(Field(Json(track.body), "accepted") == 1);
        REQUIRE(r.Member("u7").has_value());
        CHECK(r.Member("u7")->desired);
        EngageEvent imp;
        imp.message_id = "i1";
        imp.user_id = "u8";
        auto import =
            r.http.Post(r.url("/v1/import"), TrackingBatch({imp.Json()}), {BasicAuth("wk-ld")});
        CHECK(import.status == 200);
        CHECK(r.Member("u8").has_value());
    }

    TEST_CASE("the summary counts every outcome and names rejected items by index") {
        Running r;
        EngageEvent add;
        EngageEvent older;  // decided before `add`: stale
        older.message_id = "m0";
        older.value = "false";
        older.timestamp = "2024-05-06T09:00:00.000Z";
        EngageEvent no_value;
        no_value.message_id = "m-nv";
        no_value.value = "";
        EngageEvent no_key;
        no_key.message_id = "m-nk";
        no_key.user_id = "";
        no_key.anonymous_id = "anon-1";
        std::string not_applicable = R"({"type":"page","messageId":"p1","userId":"u1"})";
        std::string body = "[" + add.Json() + "," + add.Json() + "," + older.Json() + "," +
                           no_value.Json() + "," + not_applicable + ",5," + no_key.Json() + "]";
        auto resp =
            r.http.Post(r.url("/v1/destinations/other/events"), body, {BasicAuth("wk-other")});
        REQUIRE(resp.status == 200);
        auto doc = Json(resp.body);
        CHECK(Field(doc, "accepted") == 1);
        CHECK(Field(doc, "duplicates") == 1);
        CHECK(Field(doc, "stale") == 1);
        CHECK(Field(doc, "not_applicable") == 1);
        const auto* rejected = json::Find(doc, "rejected");
        REQUIRE(rejected != nullptr);
        REQUIRE(rejected->Size() == 3);
        struct Expect {
            int index;
            const char* message_id;
            const char* reason;
        };
        Expect expect[] = {{3, "m-nv", "no_membership_value"},
                           {5, "", "not_an_object"},
                           {6, "m-nk", "no_context_key"}};  // "other" is user_id_only
        for (int i = 0; i < 3; ++i) {
            const auto& item = (*rejected)[static_cast<rapidjson::SizeType>(i)];
            CHECK(item["index"].GetInt() == expect[i].index);
            CHECK(json::FindString(item, "messageId") ==
                  std::optional<std::string>(expect[i].message_id));
            CHECK(json::FindString(item, "reason") == std::optional<std::string>(expect[i].reason));
        }
        auto m = r.Member("u1", "aud_1", "user", "other");
        REQUIRE(m.has_value());
        CHECK(m->desired);
        CHECK(m->message_id == "m1");
    }

    TEST_CASE("webhook route: X-Signature over the body or the first array element") {
        Running r;
        EngageEvent a;
        std::string one = a.Json();
        auto signed_one = r.http.Post(r.url("/v1/destinations/ld/events"), one,
                                      {"X-Signature: " + crypto::HmacSha1Hex("s3cret", one)});
        REQUIRE(signed_one.status == 200);
        CHECK(Field(Json(signed_one.body), "accepted") == 1);

        EngageEvent b, c;
        b.message_id = "m2";
        b.user_id = "u2";
        c.message_id = "m3";
        c.user_id = "u3";
        std::string first = b.Json();
        std::string batch = "[" + first + "," + c.Json() + "]";
        auto signed_batch = r.http.Post(r.url("/v1/destinations/ld/events"), batch,
                                        {"X-Signature: " + crypto::HmacSha1Hex("s3cret", first)});
        REQUIRE(signed_batch.status == 200);
        CHECK(Field(Json(signed_batch.body), "accepted") == 2);

        EngageEvent d;
        d.message_id = "m4";
        d.user_id = "u4";
        std::string forged = d.Json();
        for (const auto& headers : std::vector<std::vector<std::string>>{
                 {},
                 {"X-Signature: " + crypto::HmacSha1Hex("wrong", forged)},
                 {"X-Signature: " + crypto::HmacSha1Hex("s3cret", forged + " ")},
                 {BasicAuth("wk-other")}}) {
            auto resp = r.http.Post(r.url("/v1/destinations/ld/events"), forged, headers);
            CHECK(resp.status == 401);
            CHECK(ErrorCodeOf(resp) == "unauthorized");
        }
        CHECK_FALSE(r.Member("u4").has_value());
        // The destination's write key is accepted in place of a signature.
        auto by_key =
            r.http.Post(r.url("/v1/destinations/ld/events"), forged, {BasicAuth("wk-ld")});
        CHECK(by_key.status == 200);
        CHECK(r.Member("u4").has_value());
        auto unknown =
            r.http.Post(r.url("/v1/destinations/nope/events"), forged, {BasicAuth("wk-ld")});
        CHECK(unknown.status == 404);
        CHECK(ErrorCodeOf(unknown) == "unknown_destination");
    }

    TEST_CASE("malformed bodies are 400 and store nothing") {
        Running r;
        const std::string nul_body = std::string("{\"type\":\"identify\",\0}", 22);
        std::vector<std::pair<std::string, std::string>> rows = {
            {"{", "malformed_json"},
            {"", "malformed_json"},
            {"{\"type\":\"identify\"} x", "malformed_json"},
            {"\"just a string\"", "invalid_body"},
            {"{\"a\":\"\xff\xfe\"}", "invalid_utf8"},
            {std::string(100000, '['), "too_deep"},
            {nul_body, "malformed_json"},
        };
        for (const auto& [body, code] : rows) {
            CAPTURE(code);
            auto resp =
                r.http.Post(r.url("/v1/destinations/ld/events"), body, {BasicAuth("wk-ld")});
            CHECK(resp.status == 400);
            CHECK(ErrorCodeOf(resp) == code);
            auto tracking = r.http.Post(r.url("/v1/batch"), body, {BasicAuth("wk-ld")});
            CHECK(tracking.status == 400);
        }
        CHECK(r.Events() == 0);
        CHECK(r.http.Get(r.url("/healthz")).status == 200);
    }

    TEST_CASE("size limits answer 413 with JSON") {
        testing::TempDir dir;
        std::string db = dir.File("l.db");
        std::string cfg = testing::TestConfigJson(db);
        cfg.insert(
            1,
            R"("limits":{"tracking_max_request_bytes":20000,"tracking_max_events":5,)"
            R"("webhook_max_request_bytes":30000,"webhook_max_events":6,"max_event_bytes":2000},)");
        Running r(cfg);
        auto items = [](int n, size_t pad) {
            std::vector<std::string> out;
            for (int i = 0; i < n; ++i) {
                EngageEvent e;
                e.message_id = "m" + std::to_string(i);
                e.extra_top = "\"pad\":\"" + std::string(pad, 'p') + "\"";
                out.push_back(e.Json());
            }
            return out;
        };
        auto array = [](const std::vector<std::string>& v) {
            std::string s = "[";
            for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
            return s + "]";
        };
        CHECK(r.http.Post(r.url("/v1/batch"), TrackingBatch(items(5, 10)), {BasicAuth("wk-ld")})
                  .status == 200);
        auto many =
            r.http.Post(r.url("/v1/batch"), TrackingBatch(items(6, 10)), {BasicAuth("wk-ld")});
        CHECK(many.status == 413);
        CHECK(ErrorCodeOf(many) == "too_many_events");
        auto big =
            r.http.Post(r.url("/v1/batch"), TrackingBatch(items(5, 1900)) + std::string(12000, ' '),
                        {BasicAuth("wk-ld")});
        CHECK(big.status == 413);
        CHECK(ErrorCodeOf(big) == "payload_too_large");
        auto webhook_many = r.http.Post(r.url("/v1/destinations/ld/events"), array(items(7, 10)),
                                        {BasicAuth("wk-ld")});
        CHECK(webhook_many.status == 413);
        CHECK(ErrorCodeOf(webhook_many) == "too_many_events");
        auto webhook_big =
            r.http.Post(r.url("/v1/destinations/ld/events"),
                        array(items(6, 1900)) + std::string(20000, ' '), {BasicAuth("wk-ld")});
        CHECK(webhook_big.status == 413);
        auto event_big =
            r.http.Post(r.url("/v1/identify"), items(1, 2100)[0], {BasicAuth("wk-ld")});
        CHECK(event_big.status == 413);
        CHECK(ErrorCodeOf(event_big) == "event_too_large");
        // Inside a batch, one oversize event is rejected by index and the rest stored.
        auto mixed = items(2, 10);
        mixed[1] = items(2, 2100)[1];
        auto partial = r.http.Post(r.url("/v1/batch"), TrackingBatch(mixed), {BasicAuth("wk-ld")});
        REQUIRE(partial.status == 200);
        auto doc = Json(partial.body);
        CHECK(Field(doc, "duplicates") == 1);  // m0 was stored by the first request
        CHECK(json::FindString(doc["rejected"][0], "reason") ==
              std::optional<std::string>("event_too_large"));
    }

    TEST_CASE("Webhook Audiences: create and look up, authenticated by the URL key") {
        Running r;
        auto create = r.http.Post(
            r.url("/v1/destinations/ld/audiences?key=wk-ld"),
            R"({"audienceName":"High value users","contextKind":"account","team":"growth"})");
        REQUIRE(create.status == 200);
        auto id = json::FindString(Json(create.body), "externalId");
        REQUIRE(id.has_value());
        auto again = r.http.Post(r.url("/v1/destinations/ld/audiences?key=s3cret"),
                                 R"({"audienceName":"High value users","contextKind":"account"})");
        REQUIRE(again.status == 200);
        CHECK(json::FindString(Json(again.body), "externalId") == id);
        auto lookup = r.http.Post(r.url("/v1/destinations/ld/audiences/lookup?key=wk-ld"),
                                  "{\"externalId\":\"" + *id + "\"}");
        CHECK(lookup.status == 200);
        CHECK(json::FindString(Json(lookup.body), "externalId") == id);
        auto missing = r.http.Post(r.url("/v1/destinations/ld/audiences/lookup?key=wk-ld"),
                                   R"({"externalId":"nope"})");
        CHECK(missing.status == 404);
        CHECK(ErrorCodeOf(missing) == "unknown_audience");
        for (const char* url :
             {"/v1/destinations/ld/audiences",
              "/v1/destinations/ld/audiences?key=", "/v1/destinations/ld/audiences?key=wrong",
              "/v1/destinations/ld/audiences?key=wk-other"}) {
            auto resp = r.http.Post(r.url(url), R"({"audienceName":"x"})");
            CHECK(resp.status == 401);
        }
        CHECK(
            r.http.Post(r.url("/v1/destinations/zz/audiences?key=wk-ld"), R"({"audienceName":"x"})")
                .status == 404);
        CHECK(
            r.http.Post(r.url("/v1/destinations/ld/audiences?key=wk-ld"), R"({"audienceName":""})")
                .status == 400);
        CHECK(r.http
                  .Post(r.url("/v1/destinations/ld/audiences?key=wk-ld"),
                        R"({"audienceName":"x","contextKind":"multi"})")
                  .status == 400);

        // Events for the audience carry its externalId; their kind comes from its extras.
        EngageEvent e;
        e.extra_personas = "\"external_audience_id\":\"" + *id + "\"";
        auto ingest =
            r.http.Post(r.url("/v1/destinations/ld/events"), e.Json(), {BasicAuth("wk-ld")});
        REQUIRE(ingest.status == 200);
        CHECK(r.Member("u1", "aud_1", "account").has_value());
        CHECK_FALSE(r.Member("u1", "aud_1", "user").has_value());
    }

    TEST_CASE("de-duplication and last-writer-wins survive a restart") {
        testing::TempDir dir;
        std::string db = dir.File("r.db");
        std::string config = dir.File("c.json");
        std::ofstream(config) << testing::TestConfigJson(db);
        EngageEvent add;
        add.timestamp = "2024-05-06T10:00:00.000Z";
        {
            testing::ServerProcess s(config);
            REQUIRE(s.Start());
            testing::HttpClient http;
            CHECK(http.Post(s.url("/v1/identify"), add.Json(), {BasicAuth("wk-ld")}).status == 200);
            CHECK(s.Stop() == 0);
        }
        testing::ServerProcess s(config);
        REQUIRE(s.Start());
        testing::HttpClient http;
        auto dup = http.Post(s.url("/v1/identify"), add.Json(), {BasicAuth("wk-ld")});
        CHECK(Field(Json(dup.body), "duplicates") == 1);
        EngageEvent older = add;
        older.message_id = "m-old";
        older.value = "false";
        older.timestamp = "2024-05-06T09:00:00.000Z";
        auto stale = http.Post(s.url("/v1/identify"), older.Json(), {BasicAuth("wk-ld")});
        CHECK(Field(Json(stale.body), "stale") == 1);
        CHECK(s.Stop() == 0);
    }

    TEST_CASE("secrets never appear in answers or logs") {
        Running r;
        EngageEvent a;
        r.http.Post(r.url("/v1/batch"), TrackingBatch({a.Json()}, ",\"writeKey\":\"wk-ld\""));
        r.http.Post(r.url("/v1/batch"), TrackingBatch({a.Json()}), {BasicAuth("wk-wrong-key")});
        r.http.Post(r.url("/v1/destinations/ld/audiences?key=wk-wrong-key"), "{}");
        store::Database d(r.db, false);
        store::Statement s(store::TestAccess::Handle(d), "SELECT raw FROM events");
        while (s.Step()) CHECK(s.Text(0).find("wk-ld") == std::string::npos);
        std::string log = r.server.Log();
        for (const char* secret : {"wk-ld", "wk-wrong-key", "s3cret", "api-tok", "adm1n"}) {
            CHECK_MESSAGE(log.find(secret) == std::string::npos, secret);
        }
    }

    TEST_CASE("every acknowledged event survives SIGKILL during ingestion") {
        testing::TempDir dir;
        std::string db = dir.File("k.db");
        std::string config = dir.File("c.json");
        std::ofstream(config) << testing::TestConfigJson(db);
        testing::ServerProcess server(config);
        REQUIRE(server.Start());
        std::mutex mu;
        std::set<std::string> acknowledged;
        std::atomic<int> acked_requests{0};
        std::atomic<bool> stop{false};
        std::vector<std::thread> senders;
        for (int t = 0; t < 4; ++t) {
            senders.emplace_back([&, t] {
                testing::HttpClient http;
                for (int n = 0; !stop; ++n) {
                    std::vector<std::string> items;
                    std::vector<std::string> ids;
                    for (int i = 0; i < 50; ++i) {
                        EngageEvent e;
                        e.message_id = "k" + std::to_string(t) + "-" + std::to_string(n) + "-" +
                                       std::to_string(i);
                        e.user_id = "user-" + std::to_string(t) + "-" + std::to_string(i);
                        e.value = (n % 2) ? "true" : "false";
                        e.timestamp = text::FormatIso8601(1714987822829 + n);
                        ids.push_back(e.message_id);
                        items.push_back(e.Json());
                    }
                    auto resp = http.Post(server.url("/v1/batch"), TrackingBatch(items),
                                          {BasicAuth("wk-ld")});
                    if (resp.status != 200) break;  // the server is gone
                    std::lock_guard<std::mutex> lock(mu);
                    acknowledged.insert(ids.begin(), ids.end());
                    ++acked_requests;
                }
            });
        }
        const int64_t deadline = text::NowMs() + 60000;
        while (acked_requests < 40 && text::NowMs() < deadline) std::this_thread::yield();
        REQUIRE(acked_requests >= 40);
        server.Kill();  // SIGKILL while requests are in flight
        stop = true;
        for (auto& s : senders) s.join();

        testing::ServerProcess restarted(config);
        REQUIRE_MESSAGE(restarted.Start(), restarted.Log());
        store::Database d(db, false);
        size_t missing = 0;
        for (const auto& id : acknowledged) {
            if (!store::HasEvent(d, "ld", id)) ++missing;
        }
        MESSAGE("acknowledged events: " << acknowledged.size()
                                        << ", missing after SIGKILL: " << missing);
        CHECK(missing == 0);
        CHECK(acknowledged.size() >= 40 * 50);
        CHECK(restarted.Stop() == 0);
    }
}
