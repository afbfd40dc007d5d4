// Integration tests: `audsync serve` in a child process, driven over real HTTP.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/http/routes.hpp"
#include "audsync/http/transport.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/queries.hpp"
#include "audsync/store/store.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/raw_http.hpp"
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
    // The test config with these members added to it, e.g. R"("limits":{...},)".
    struct With {
        std::string members;
    };
    explicit Running(With with) {
        std::string cfg = testing::TestConfigJson(db);
        cfg.insert(1, with.members);
        std::ofstream(config) << cfg;
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
        REQUIRE(store::TestAccess::WaitApplied(db));  // reads see applied state
        store::Database d(db, false);
        return store::FindMembership(d, destination, audience, kind, key);
    }
    // Applied messageIds (waits for the applier first).
    int64_t Events() {
        REQUIRE(store::TestAccess::WaitApplied(db));
        store::Database d(db, false);
        return store::TestAccess::CountDedupe(d);
    }
    // The member's row with its latest ignored event (waits for the applier first).
    std::optional<store::MemberRow> Row(const std::string& key,
                                        const std::string& audience = "aud_1",
                                        const std::string& destination = "ld") {
        REQUIRE(store::TestAccess::WaitApplied(db));
        auto m = Member(key, audience, "user", destination);
        if (!m) return std::nullopt;
        store::Database d(db, false);
        return store::GetMember(d, m->segment_id, key);
    }
};

std::string RawPost(const std::string& path, const std::string& body,
                    const std::string& headers = "") {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string RawBasic(const std::string& key) {
    return "Authorization: Basic " + text::Base64Encode(key + ":") + "\r\n";
}

// The error code of a raw response's JSON body, or "" when there is none.
std::string RawErrorCode(const std::string& response) {
    rapidjson::Document doc;
    if (!json::Parse(testing::RawConnection::Body(response), doc, 16).ok()) return "";
    const auto* err = json::FindObject(doc, "error");
    if (err == nullptr) return "";
    return json::FindString(*err, "code").value_or("");
}

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
        // Strangers learn nothing of the routes under /v1/: a wrong method, an unknown path
        // or an unknown destination is a 401 until a credential is shown.
        CHECK(r.http.Get(r.url("/v1/batch")).status == 401);
        CHECK(r.http.Get(r.url("/v1/nope")).status == 401);
        CHECK(r.http.Post(r.url("/v1/destinations/nope/events"), "{}").status == 401);
        const std::vector<std::string> wk = {BasicAuth("wk-ld")};
        CHECK(r.http.Get(r.url("/v1/nope"), wk).status == 404);
        CHECK(r.http.Post(r.url("/v1/destinations/nope/events"), "{}", wk).status == 404);
        auto m = r.http.Get(r.url("/v1/batch"), wk);
        CHECK(m.status == 405);
        CHECK(m.body.find("this route takes POST") != std::string::npos);
        CHECK(r.http.Post(r.url("/healthz"), "").status == 405);
        CHECK(ErrorCodeOf(m) == "method_not_allowed");
        for (const char* method : {"PUT", "DELETE", "PATCH", "OPTIONS"}) {
            auto x = r.http.Request(method, r.url("/v1/destinations/ld/events"), "{}", wk);
            CHECK(x.status == 405);
        }
        CHECK(r.http.Post(r.url("/v1/destinations/%zz/events"), "{}").status == 401);
        auto bad = r.http.Post(r.url("/v1/destinations/%zz/events"), "{}", wk);
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
        CHECK(Field(doc, "stored") == 1);
        EngageEvent b;
        b.message_id = "m2";
        b.user_id = "u2";
        auto body_key =
            r.http.Post(r.url("/v1/batch"), TrackingBatch({b.Json()}, ",\"writeKey\":\"wk-ld\""));
        REQUIRE(body_key.status == 200);
        CHECK(Field(Json(body_key.body), "stored") == 1);
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
        CHECK(Field(Json(track.body), "stored") == 1);
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
        // Stored: add twice and older; the applier finds the second add a duplicate and
        // older stale, and the member shows the latest of them.
        CHECK(Field(doc, "stored") == 3);
        CHECK(Field(doc, "not_applicable") == 1);
        auto row = r.Row("u1", "aud_1", "other");
        REQUIRE(row.has_value());
        CHECK(row->message_id == add.message_id);
        CHECK(row->ignored_message_id == std::optional<std::string>("m0"));
        CHECK(row->ignored_outcome == std::optional<std::string>("stale"));
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
        CHECK(Field(Json(signed_one.body), "stored") == 1);

        EngageEvent b, c;
        b.message_id = "m2";
        b.user_id = "u2";
        c.message_id = "m3";
        c.user_id = "u3";
        std::string first = b.Json();
        std::string batch = "[" + first + "," + c.Json() + "]";
        // Segment signs only the first element: the signature alone does not admit the rest.
        auto first_only = r.http.Post(r.url("/v1/destinations/ld/events"), batch,
                                      {"X-Signature: " + crypto::HmacSha1Hex("s3cret", first)});
        CHECK(first_only.status == 401);
        auto signed_batch = r.http.Post(
            r.url("/v1/destinations/ld/events"), batch,
            {"X-Signature: " + crypto::HmacSha1Hex("s3cret", first), BasicAuth("wk-ld")});
        REQUIRE(signed_batch.status == 200);
        CHECK(Field(Json(signed_batch.body), "stored") == 2);

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
        CHECK(Field(doc, "stored") == 1);  // m0 again (the applier finds it a duplicate)
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
        // Never the shared secret (the HMAC key would sit in proxy logs).
        auto secret = r.http.Post(r.url("/v1/destinations/ld/audiences?key=s3cret"),
                                  R"({"audienceName":"High value users","contextKind":"account"})");
        CHECK(secret.status == 401);
        auto again = r.http.Post(r.url("/v1/destinations/ld/audiences?key=wk-ld"),
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
        CHECK(Field(Json(dup.body), "stored") == 1);
        auto member = [&] {
            REQUIRE(store::TestAccess::WaitApplied(db));
            store::Database d(db, false);
            auto m = store::FindMembership(d, "ld", "aud_1", "user", "u1");
            REQUIRE(m.has_value());
            return *store::GetMember(d, m->segment_id, "u1");
        };
        CHECK(member().ignored_outcome == std::optional<std::string>("duplicate"));
        EngageEvent older = add;
        older.message_id = "m-old";
        older.value = "false";
        older.timestamp = "2024-05-06T09:00:00.000Z";
        auto stale = http.Post(s.url("/v1/identify"), older.Json(), {BasicAuth("wk-ld")});
        CHECK(Field(Json(stale.body), "stored") == 1);
        CHECK(member().ignored_outcome == std::optional<std::string>("stale"));
        CHECK(member().ignored_message_id == std::optional<std::string>("m-old"));
        CHECK(member().message_id == add.message_id);
        CHECK(s.Stop() == 0);
    }

    TEST_CASE("secrets never appear in answers or logs") {
        Running r;
        EngageEvent a;
        r.http.Post(r.url("/v1/batch"), TrackingBatch({a.Json()}, ",\"writeKey\":\"wk-ld\""));
        r.http.Post(r.url("/v1/batch"), TrackingBatch({a.Json()}), {BasicAuth("wk-wrong-key")});
        r.http.Post(r.url("/v1/destinations/ld/audiences?key=wk-wrong-key"), "{}");
        store::Database d(store::InboxPath(r.db), false);
        store::Statement s(store::TestAccess::Handle(d), "SELECT raw FROM inbox");
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
        REQUIRE(store::TestAccess::WaitApplied(db));
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

// The HTTP edge: framing, limits and connection handling (docs/security.md lists them).
TEST_SUITE("http") {
    TEST_CASE("a request smuggled in an oversized body is not executed and the connection closes") {
        Running r(Running::With{R"("limits":{"tracking_max_request_bytes":20000},)"});
        EngageEvent hidden;
        hidden.user_id = "smuggled";
        std::string chunk = hidden.Json();
        char size_hex[16];
        std::snprintf(size_hex, sizeof size_hex, "%zx", chunk.size());
        std::string smuggled =
            "POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
            RawBasic("wk-ld") + "Transfer-Encoding: chunked\r\n\r\n" + size_hex + "\r\n" + chunk +
            "\r\n0\r\n\r\n";
        // The oversized body: padding, then the hidden request, up to 30,000 bytes.
        std::string body = std::string(30000 - smuggled.size(), ' ') + smuggled;
        testing::RawConnection c(r.server.port());
        REQUIRE(c.ok());
        c.Send(RawPost("/v1/batch", body, RawBasic("wk-ld")));
        std::string answer = c.ReadResponse();
        CHECK(testing::RawConnection::Status(answer) == 413);
        CHECK(RawErrorCode(answer) == "payload_too_large");
        CHECK(testing::RawConnection::HeaderOf(answer, "Connection") == "close");
        CHECK(c.ClosedByPeer(5000));
        // Had the hidden request run, its event would be stored before its answer.
        CHECK(r.http.Get(r.url("/healthz")).status == 200);
        CHECK_FALSE(r.Member("smuggled").has_value());
        CHECK(r.Events() == 0);
    }

    TEST_CASE("a 1 MB request line is answered or closed within a second") {
        Running r;
        testing::RawConnection c(r.server.port());
        REQUIRE(c.ok());
        const int64_t t0 = text::NowMs();
        c.Send("GET /" + std::string(1024 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
        std::string answer = c.ReadResponse(5000);
        const int status = testing::RawConnection::Status(answer);
        const bool closed = c.ClosedByPeer(5000);
        const int64_t elapsed = text::NowMs() - t0;
        MESSAGE("1 MB request line: status " << status << " in " << elapsed << " ms");
        CHECK(status == 414);
        CHECK(RawErrorCode(answer) == "request_line_too_long");
        CHECK(closed);
        CHECK(elapsed < 1000);
        CHECK(r.http.Get(r.url("/healthz")).status == 200);
    }

    TEST_CASE("request line and headers are limited to 16 KiB: 414 and 431, then close") {
        Running r;
        struct Row {
            std::string bytes;
            int status;
            const char* code;
        };
        Row rows[] = {
            {"GET /healthz?" + std::string(16000, 'q') + " HTTP/1.1\r\nHost: x\r\n\r\n", 200, ""},
            {"GET /healthz?" + std::string(17000, 'q') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414,
             "request_line_too_long"},
            {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(17000, 'h') + "\r\n\r\n",
             431, "headers_too_large"},
            {"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                 [] {
                     std::string many;
                     for (int i = 0; i < 2000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
                     return many;
                 }() +
                 "\r\n",
             431, "headers_too_large"},
        };
        for (const auto& row : rows) {
            CAPTURE(row.status);
            testing::RawConnection c(r.server.port());
            REQUIRE(c.ok());
            c.Send(row.bytes);
            std::string answer = c.ReadResponse();
            CHECK(testing::RawConnection::Status(answer) == row.status);
            if (row.status != 200) {
                CHECK(RawErrorCode(answer) == row.code);
                CHECK(c.ClosedByPeer(5000));
            }
        }
    }

    TEST_CASE("two pipelined requests get two answers in order") {
        Running r;
        EngageEvent a, b;
        b.message_id = "m2";
        b.user_id = "u2";
        testing::RawConnection c(r.server.port());
        REQUIRE(c.ok());
        c.Send(RawPost("/v1/identify", a.Json(), RawBasic("wk-ld")) +
               RawPost("/v1/identify", b.Json(), RawBasic("wk-ld")) +
               "GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        auto answers = c.ReadResponses(4);
        REQUIRE(answers.size() == 4);
        CHECK(testing::RawConnection::Status(answers[0]) == 200);
        CHECK(testing::RawConnection::Status(answers[1]) == 200);
        CHECK(testing::RawConnection::Status(answers[2]) == 404);
        CHECK(testing::RawConnection::Status(answers[3]) == 200);
        CHECK(testing::RawConnection::Body(answers[3]) == "{\"status\":\"ok\"}");
        CHECK(r.Member("u1").has_value());
        CHECK(r.Member("u2").has_value());
        CHECK(r.Events() == 2);
    }

    TEST_CASE("HTTP/1.1 keeps the connection without a Connection header, and 1.0 closes it") {
        Running r;
        testing::RawConnection c(r.server.port());
        REQUIRE(c.ok());
        for (int i = 0; i < 3; ++i) {
            c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            std::string answer = c.ReadResponse();
            CHECK(testing::RawConnection::Status(answer) == 200);
            CHECK(testing::RawConnection::HeaderOf(answer, "Connection") != "close");
        }
        testing::RawConnection old(r.server.port());
        old.Send("GET /healthz HTTP/1.0\r\n\r\n");
        CHECK(testing::RawConnection::Status(old.ReadResponse()) == 200);
        CHECK(old.ClosedByPeer(5000));
        testing::RawConnection asked(r.server.port());
        asked.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        CHECK(testing::RawConnection::Status(asked.ReadResponse()) == 200);
        CHECK(asked.ClosedByPeer(5000));
    }

    TEST_CASE("negative, malformed or absurd Content-Length is a 400 and closes") {
        Running r;
        EngageEvent a;
        const std::string event = a.Json();
        struct Row {
            std::string length;
            int status;
        };
        Row rows[] = {
            {"Content-Length: -1", 400},
            {"Content-Length: -5000", 400},
            {"Content-Length: 1x", 400},
            {"Content-Length: 99999999999999999999999999", 400},
            {"Content-Length: 5\r\nContent-Length: 6", 400},
            {"Content-Length: 10000000000", 413},  // 10 GB: well-formed, over the limit
        };
        for (const auto& row : rows) {
            CAPTURE(row.length);
            testing::RawConnection c(r.server.port());
            REQUIRE(c.ok());
            c.Send("POST /v1/identify HTTP/1.1\r\nHost: x\r\n" + RawBasic("wk-ld") + row.length +
                   "\r\n\r\n" + event);
            std::string answer = c.ReadResponse();
            CHECK(testing::RawConnection::Status(answer) == row.status);
            CHECK_FALSE(RawErrorCode(answer).empty());
            CHECK(c.ClosedByPeer(5000));
        }
        CHECK(r.Events() == 0);
        CHECK(r.http.Get(r.url("/healthz")).status == 200);
    }

    TEST_CASE("the buffered body budget answers 503 beyond it and frees on close") {
        Running r(Running::With{R"("limits":{"max_buffered_body_bytes":1048576},)"});
        const std::string head = "POST /v1/destinations/ld/events HTTP/1.1\r\nHost: x\r\n" +
                                 RawBasic("wk-ld") + "Content-Length: 600000\r\n\r\n[";
        auto holder = std::make_unique<testing::RawConnection>(r.server.port());
        holder->Send(head);  // 600,000 bytes reserved, body never finished
        // The second declaration does not fit: the first one's reservation is polled for.
        std::string refused;
        const int64_t deadline = text::NowMs() + 10000;
        while (text::NowMs() < deadline) {
            testing::RawConnection c(r.server.port());
            c.Send(head);
            refused = c.ReadResponse(500);
            if (testing::RawConnection::Status(refused) == 503) {
                CHECK(c.ClosedByPeer(5000));
                break;
            }
        }
        CHECK(testing::RawConnection::Status(refused) == 503);
        CHECK(RawErrorCode(refused) == "overloaded");
        holder.reset();  // its reservation goes with the connection
        bool fits = false;
        const int64_t deadline2 = text::NowMs() + 10000;
        while (!fits && text::NowMs() < deadline2) {
            testing::RawConnection c(r.server.port());
            c.Send(head + std::string(599998, ' ') + "]");
            fits = testing::RawConnection::Status(c.ReadResponse(2000)) == 200;
        }
        CHECK(fits);
    }

    TEST_CASE("connections beyond the cap get a 503, and the cap frees on close") {
        Running r(Running::With{R"("limits":{"max_connections":4},)"});
        std::vector<std::unique_ptr<testing::RawConnection>> held;
        for (int i = 0; i < 4; ++i) {
            held.push_back(std::make_unique<testing::RawConnection>(r.server.port()));
            held.back()->Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            CHECK(testing::RawConnection::Status(held.back()->ReadResponse()) == 200);
        }
        testing::RawConnection extra(r.server.port());
        extra.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        std::string refused = extra.ReadResponse();
        CHECK(testing::RawConnection::Status(refused) == 503);
        CHECK(RawErrorCode(refused) == "overloaded");
        held.pop_back();
        bool served = false;
        const int64_t deadline = text::NowMs() + 10000;
        while (!served && text::NowMs() < deadline) {
            testing::RawConnection c(r.server.port());
            c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            served = testing::RawConnection::Status(c.ReadResponse(1000)) == 200;
        }
        CHECK(served);
    }

    TEST_CASE("Expect 100-continue, HEAD and the Allow header") {
        Running r;
        EngageEvent a;
        testing::RawConnection c(r.server.port());
        c.Send("POST /v1/identify HTTP/1.1\r\nHost: x\r\n" + RawBasic("wk-ld") +
               "Expect: 100-continue\r\nContent-Length: " + std::to_string(a.Json().size()) +
               "\r\n\r\n");
        std::string cont = c.ReadResponse(5000);
        CHECK(cont.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
        c.Send(a.Json());
        auto answers = c.ReadResponses(1);
        REQUIRE(answers.size() == 1);
        CHECK(testing::RawConnection::Status(answers[0]) == 200);
        c.Send(
            "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nDELETE /v1/batch HTTP/1.1\r\nHost: "
            "x\r\n" +
            RawBasic("wk-ld") + "\r\n");
        std::string both = c.ReadUntil("}}");
        // The HEAD answer has the GET's Content-Length and no body: the 405 follows at once.
        size_t second = both.find("\r\n\r\nHTTP/1.1 405 ");
        REQUIRE_MESSAGE(second != std::string::npos, both);
        std::string head = both.substr(0, second + 4);
        std::string next = both.substr(second + 4);
        CHECK(testing::RawConnection::Status(head) == 200);
        CHECK(testing::RawConnection::HeaderOf(head, "Content-Length") == "15");
        CHECK(testing::RawConnection::HeaderOf(next, "Allow") == "POST");
    }

    TEST_CASE("framing in-process: the session code without a socket") {
        http::TransportOptions o;
        auto limit = [](const http::RequestHead&) -> size_t { return 100; };
        int calls = 0;
        auto echo = [&calls](const http::Request& req) {
            ++calls;
            http::Response res;
            res.body = req.method + " " + req.target + " " + req.body;
            res.content_type = "text/plain";
            return res;
        };
        struct Row {
            const char* name;
            std::string input;
            std::vector<int> statuses;
            int calls;
        };
        std::vector<Row> rows = {
            {"two pipelined",
             "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\n\r\n",
             {200, 200},
             2},
            {"chunked",
             "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
             {200},
             1},
            {"chunked over the limit",
             "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n70\r\n" +
                 std::string(112, 'x') + "\r\n0\r\n\r\n",
             {413},
             0},
            {"declared over the limit, then a request",
             "POST /a HTTP/1.1\r\nContent-Length: 101\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
             {413},
             0},
            {"negative length", "POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", {400}, 0},
            {"garbage", "GARBAGE\r\n\r\n", {400}, 0},
            {"error closes: nothing after it runs",
             "GET / HTTP/1.1\r\nBad Header\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
             {400},
             0},
            {"partial request", "POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", {}, 0},
        };
        for (const auto& row : rows) {
            CAPTURE(row.name);
            calls = 0;
            std::string out = http::ServeBytesForTesting(o, limit, echo, row.input);
            std::vector<int> statuses;
            for (size_t at = out.find("HTTP/1.1 "); at != std::string::npos;
                 at = out.find("HTTP/1.1 ", at + 1)) {
                statuses.push_back(std::atoi(out.c_str() + at + 9));
            }
            CHECK(statuses == row.statuses);
            CHECK(calls == row.calls);
        }
    }

    TEST_CASE("handlers that block do not hold the socket threads") {
        http::TransportOptions o;
        o.io_threads = 2;
        o.handler_threads = 4;
        std::mutex mu;
        std::condition_variable cv;
        bool release = false;
        std::atomic<int> blocked{0};
        http::Transport t(
            o, [](const http::RequestHead&) -> size_t { return 1024; },
            [&](const http::Request& req) {
                if (req.Path() == "/block") {
                    std::unique_lock<std::mutex> lock(mu);
                    ++blocked;
                    cv.wait(lock, [&] { return release; });
                }
                return http::Response{};
            });
        t.Start();
        // As many blocked handlers as there are socket threads: were handlers run on the
        // socket threads, nothing else could be served now.
        testing::RawConnection a(t.port()), b(t.port());
        a.Send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n");
        b.Send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n");
        const int64_t deadline = text::NowMs() + 10000;
        while (blocked < 2 && text::NowMs() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
        }
        REQUIRE(blocked == 2);
        testing::HttpClient http;
        const int64_t t0 = text::NowMs();
        auto r = http.Get("http://127.0.0.1:" + std::to_string(t.port()) + "/healthz");
        CHECK(r.status == 200);
        CHECK(text::NowMs() - t0 < 1000);
        {
            std::lock_guard<std::mutex> lock(mu);
            release = true;
        }
        cv.notify_all();
        CHECK(testing::RawConnection::Status(a.ReadResponse()) == 200);
        CHECK(testing::RawConnection::Status(b.ReadResponse()) == 200);
        t.Stop();
    }

    TEST_CASE("an answer that cannot be sent is counted, logged and its connection closed") {
        http::TransportOptions o;
        o.body_timeout_ms = 300;  // also the time allowed to write an answer
        http::Transport t(
            o, [](const http::RequestHead&) -> size_t { return 1024; },
            [](const http::Request&) {
                http::Response r;
                r.body = std::string(64 * 1024 * 1024, 'x');  // far beyond socket buffers
                return r;
            });
        t.Start();
        testing::RawConnection c(t.port());
        c.Send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");  // and never read the answer
        const int64_t deadline = text::NowMs() + 10000;
        while (t.stats().answers_failed == 0 && text::NowMs() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
        }
        CHECK(t.stats().answers_failed == 1);
        CHECK(c.ClosedByPeer(10000));
        while (t.stats().connections > 0 && text::NowMs() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
        }
        CHECK(t.stats().connections == 0);
        t.Stop();
    }

    TEST_CASE("body limits by route") {
        config::Limits l;
        CHECK(http::BodyLimit(l, http::RouteId::kWebhookEvents) == l.webhook_max_request_bytes);
        CHECK(http::BodyLimit(l, http::RouteId::kBatch) == l.tracking_max_request_bytes);
        CHECK(http::BodyLimit(l, http::RouteId::kIdentify) == l.tracking_max_request_bytes);
        CHECK(http::BodyLimit(l, http::RouteId::kDeadLettersRetry) == 1024 * 1024);
        CHECK(http::BodyLimit(l, http::RouteId::kHealthz) == 64 * 1024);
        CHECK(http::BodyLimit(l, http::RouteId::kNotFound) == 64 * 1024);
    }
}
