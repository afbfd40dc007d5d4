// Reliability and security: crashes, platform faults, hostile input, slow clients.
// Each test prints its figures (MESSAGE). AUDSYNC_LONG=1 runs the long versions.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/store.hpp"
#include "support/raw_http.hpp"
#include "support/store_access.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using namespace audsync::testing;

namespace {

bool LongMode() {
    const char* v = std::getenv("AUDSYNC_LONG");
    return v != nullptr && std::string(v) == "1";
}

std::string Request(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& headers = "") {
    return method + " " + path +
           " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string Basic(const std::string& key) {
    return "Authorization: Basic " + text::Base64Encode(key + ":") + "\r\n";
}

}  // namespace

TEST_SUITE("reliability") {
    TEST_CASE("crash safety: repeated SIGKILL under concurrent ingest and pushes") {
        const int kills = LongMode() ? 20 : 3;
        Harness h;
        h.emulator.SetDelay(20);  // keep pushes in flight when the kill lands
        std::mutex mu;
        std::set<std::string> acknowledged;
        std::mt19937 rng(2024);
        for (int round = 0; round < kills; ++round) {
            if (round > 0) h.StartServer();
            std::atomic<bool> stop{false};
            std::atomic<int> acked_requests{0};
            std::vector<std::thread> senders;
            for (int t = 0; t < 3; ++t) {
                senders.emplace_back([&, t] {
                    HttpClient http;
                    for (int n = 0; !stop; ++n) {
                        std::vector<std::string> ids;
                        std::string body = "[";
                        for (int i = 0; i < 40; ++i) {
                            EngageEvent e;
                            e.message_id = "k" + std::to_string(round) + "-" + std::to_string(t) +
                                           "-" + std::to_string(n) + "-" + std::to_string(i);
                            e.user_id = e.message_id;  // one event decides each key
                            e.value = (i % 3) ? "true" : "false";
                            ids.push_back(e.message_id);
                            body += (i ? "," : "") + e.Json();
                        }
                        auto r = http.Post(h.server->url("/v1/destinations/ld/events"), body + "]",
                                           {BasicAuth("wk-ld")});
                        if (r.status != 200) break;
                        std::lock_guard<std::mutex> lock(mu);
                        acknowledged.insert(ids.begin(), ids.end());
                        ++acked_requests;
                    }
                });
            }
            const int target = 5 + static_cast<int>(rng() % 20);  // a random point
            REQUIRE(Eventually([&] { return acked_requests >= target; }));
            h.server->Kill();
            stop = true;
            for (auto& s : senders) s.join();
        }
        h.StartServer();
        h.emulator.SetDelay(0);
        // The restarted applier resumes where the last commit left it.
        REQUIRE(store::TestAccess::WaitApplied(h.db, 60000));
        size_t missing = 0;
        {
            store::Database d(h.db, false);
            for (const auto& id : acknowledged) missing += store::HasEvent(d, "ld", id) ? 0 : 1;
        }
        CHECK(missing == 0);
        // No event applied twice: each key one version (every key has one event), and the
        // applied position is the inbox's end.
        CHECK(h.Count("SELECT count(*) FROM dedupe") >= static_cast<int64_t>(acknowledged.size()));
        CHECK(h.Count("SELECT count(*) FROM memberships WHERE version <> 1") == 0);
        REQUIRE_MESSAGE(
            Eventually(
                [&] { return h.Count("SELECT count(*) FROM deliveries WHERE pending = 1") == 0; },
                90000),
            h.server->Log());
        // The platform holds exactly the committed membership.
        std::set<std::string> expected;
        {
            store::Database d(h.db, false);
            store::Statement s(store::TestAccess::Handle(d),
                               "SELECT context_key FROM memberships WHERE desired = 1");
            while (s.Step()) expected.insert(s.Text(0));
        }
        CHECK(h.emulator.Included("aud_1") == expected);
        MESSAGE("kills survived: " << kills << ", acknowledged events: " << acknowledged.size()
                                   << ", missing after restarts: " << missing
                                   << ", members converged: " << expected.size());
    }

    TEST_CASE("platform faults: ingest never fails, memory stays bounded, convergence is exact") {
        const int64_t seconds = LongMode() ? 180 : 8;
        Harness h;
        h.emulator.RefuseKeys({"user-4", "user-13"});
        std::atomic<bool> stop{false};
        std::atomic<uint64_t> faults{0};
        std::thread chaos([&] {
            std::mt19937 rng(7);
            while (!stop) {
                emulator::Fault f;
                switch (rng() % 6) {
                    case 0:
                        f.status = 500;
                        break;
                    case 1:
                        f.status = 429;
                        f.retry_after = "1";
                        break;
                    case 2:
                        f.status = 429;
                        f.reset_in_ms = 200;
                        break;
                    case 3:
                        f.drop = true;
                        break;
                    case 4:
                        f.delay_ms = 300;
                        break;
                    case 5:
                        f.status = 401;
                        break;
                }
                f.count = 1 + static_cast<int>(rng() % 3);
                h.emulator.AddFault(f);
                faults += static_cast<uint64_t>(f.count);
                std::this_thread::sleep_for(std::chrono::milliseconds(100));  // injection pace
            }
        });
        Stream all;
        int64_t max_rss_kb = 0;
        uint64_t requests = 0, failures = 0;
        const int64_t end = text::NowMs() + seconds * 1000;
        for (unsigned round = 0; text::NowMs() < end; ++round) {
            Stream s = MixedStream(100, 1000 + round, "f" + std::to_string(round) + "-");
            auto r = h.Send(s.events);
            ++requests;
            if (r.status != 200) ++failures;
            all.events.insert(all.events.end(), s.events.begin(), s.events.end());
            max_rss_kb = std::max(max_rss_kb, RssKb(h.server->pid()));
        }
        stop = true;
        chaos.join();
        h.emulator.ClearFaults();
        CHECK(failures == 0);
        // The final state: recompute from every event sent (times are unique per key).
        REQUIRE_MESSAGE(
            Eventually(
                [&] {
                    return h.Count(
                               "SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0") ==
                           0;
                },
                120000),
            h.server->Log());
        std::map<std::string, std::set<std::string>> expected;
        {
            store::Database d(h.db, false);
            store::Statement s(
                store::TestAccess::Handle(d),
                "SELECT s.audience_id, m.context_key FROM memberships m JOIN segments s ON "
                "s.id = m.segment_id JOIN deliveries d ON d.segment_id = m.segment_id AND "
                "d.context_key = m.context_key WHERE m.desired = 1 AND d.dead = 0");
            while (s.Step()) expected[s.Text(0)].insert(s.Text(1));
        }
        for (const auto& [cohort, keys] : expected) CHECK(h.emulator.Included(cohort) == keys);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1 AND context_key NOT IN "
                      "('user-4','user-13')") == 0);
        CHECK(h.Count("SELECT count(*) FROM deliveries WHERE dead = 1") > 0);
        CHECK(max_rss_kb < 1024 * 1024);  // bounded (ASan build): well under 1 GiB
        MESSAGE("fault seconds: " << seconds << ", faults injected: " << faults.load()
                                  << ", ingest requests: " << requests << ", failed: " << failures
                                  << ", peak server RSS MB: " << max_rss_kb / 1024);
    }

    TEST_CASE("hostile input: every bad request gets a 4xx, nothing is stored, the server lives") {
        Harness h;
        EngageEvent good;
        const std::string event = good.Json();
        const std::string signed_sig = crypto::HmacSha1Hex("s3cret", event);
        const std::string admin =
            std::string("Authorization: Bearer ") + testing::kAdminToken + "\r\n";
        struct Case {
            std::string name;
            std::string bytes;
            bool json;  // answered by audsync's handler (JSON error expected)
        };
        std::vector<Case> cases;
        auto add = [&](const std::string& name, const std::string& bytes, bool json = true) {
            cases.push_back({name, bytes, json});
        };
        const std::vector<std::pair<std::string, std::string>> ingest_routes = {
            {"/v1/batch", Basic("wk-ld")},
            {"/v1/identify", Basic("wk-ld")},
            {"/v1/track", Basic("wk-ld")},
            {"/v1/import", Basic("wk-ld")},
            {"/v1/destinations/ld/events", Basic("wk-ld")},
            {"/v1/destinations/ld/audiences?key=wk-ld", ""},
            {"/v1/destinations/ld/audiences/lookup?key=wk-ld", ""},
        };
        const std::vector<std::pair<std::string, std::string>> bodies = {
            {"malformed JSON", "{\"type\":"},
            {"truncated event", event.substr(0, event.size() / 2)},
            {"nesting 100000 deep", std::string(100000, '[') + std::string(100000, ']')},
            {"invalid UTF-8", "{\"type\":\"identify\",\"userId\":\"\xc3\x28\"}"},
            {"raw NUL byte",
             [] {
                 static const char kRaw[] = "{\"type\":\"identify\",\"userId\":\"a\0b\"}";
                 return std::string(kRaw, sizeof kRaw - 1);
             }()},
            {"a bare string", "\"identify\""},
            {"a number", "42"},
            {"trailing garbage", event + "}}"},
        };
        for (const auto& [route, auth] : ingest_routes) {
            for (const auto& [what, body] : bodies)
                add(what + " to " + route, Request("POST", route, body, auth));
        }
        // Wrong types where the shape matters.
        add("batch is a string", Request("POST", "/v1/batch", R"({"batch":"x"})", Basic("wk-ld")));
        add("batch is an object", Request("POST", "/v1/batch", R"({"batch":{}})", Basic("wk-ld")));
        add("writeKey is a number", Request("POST", "/v1/batch", R"({"batch":[],"writeKey":5})"));
        add("context is an array",
            Request("POST", "/v1/batch", R"({"batch":[],"context":[]})", Basic("wk-ld")));
        add("audienceName is a number",
            Request("POST", "/v1/destinations/ld/audiences?key=wk-ld", R"({"audienceName":5})"));
        add("externalId is null", Request("POST", "/v1/destinations/ld/audiences/lookup?key=wk-ld",
                                          R"({"externalId":null})"));
        // Oversize.
        add("body over 4 MB",
            Request("POST", "/v1/destinations/ld/events",
                    "[" + std::string(4 * 1024 * 1024, ' ') + "]", Basic("wk-ld")));
        add("tracking body over 500 KB",
            Request("POST", "/v1/batch", "{\"batch\":[]" + std::string(600000, ' ') + "}",
                    Basic("wk-ld")));
        EngageEvent fat;
        fat.extra_top = "\"pad\":\"" + std::string(40000, 'x') + "\"";
        add("event over 32 KB", Request("POST", "/v1/identify", fat.Json(), Basic("wk-ld")));
        std::string many = "[";
        for (int i = 0; i < 4001; ++i) many += (i ? ",1" : "1");
        add("4001 events",
            Request("POST", "/v1/destinations/ld/events", many + "]", Basic("wk-ld")));
        // Credentials.
        add("forged signature",
            Request("POST", "/v1/destinations/ld/events", event,
                    "X-Signature: " + crypto::HmacSha1Hex("guess", event) + "\r\n"));
        add("signature of another body", Request("POST", "/v1/destinations/ld/events", event + " ",
                                                 "X-Signature: " + signed_sig + "\r\n"));
        add("missing signature", Request("POST", "/v1/destinations/ld/events", event));
        add("wrong write key",
            Request("POST", "/v1/batch", "{\"batch\":[" + event + "]}", Basic("nope")));
        add("write key of another destination",
            Request("POST", "/v1/destinations/ld/events", event, Basic("wk-other")));
        add("no write key", Request("POST", "/v1/batch", "{\"batch\":[" + event + "]}"));
        add("audience call without key",
            Request("POST", "/v1/destinations/ld/audiences", R"({"audienceName":"x"})"));
        add("unknown destination",
            Request("POST", "/v1/destinations/zzz/events", event, Basic("wk-ld")));
        add("unknown destination (audiences)",
            Request("POST", "/v1/destinations/zzz/audiences?key=wk-ld", R"({"audienceName":"x"})"));
        for (const char* path : {"/v1/segments", "/v1/segments/1", "/v1/dead-letters", "/metrics",
                                 "/v1/destinations", "/v1/contexts/x"}) {
            add(std::string("no admin token for ") + path, Request("GET", path, ""));
            add(std::string("wrong admin token for ") + path,
                Request("GET", path, "", "Authorization: Bearer wrong\r\n"));
        }
        add("unknown segment", Request("GET", "/v1/segments/424242", "", admin));
        add("unknown segment members", Request("GET", "/v1/segments/424242/members", "", admin));
        add("SQL in a segment id", Request("GET", "/v1/segments/1%20OR%201=1", "", admin));
        add("SQL in a member key",
            Request("GET", "/v1/segments/1/members/'%20OR%20''='", "", admin));
        add("bad percent escape", Request("GET", "/v1/contexts/%ZZ", "", admin));
        add("bad cursor", Request("GET", "/v1/dead-letters?cursor=!!!", "", admin));
        add("bad dead-letter body",
            Request("POST", "/v1/dead-letters/retry", "{\"ids\":[7]}", admin));
        add("unknown route", Request("GET", "/v2/anything", ""));
        add("wrong method", Request("DELETE", "/v1/batch", ""));
        // Framing errors: answered by the transport, with the same JSON error shape. A
        // Content-Length that lies low is cut at the declared length (the rest is the next
        // request); one that lies high is the slow-client case below.
        add("Content-Length shorter than the body",
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"batch\":[]}");
        add("negative Content-Length",
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}");
        add("absurd Content-Length", "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                         std::string(40, '9') + "\r\n\r\n{}");
        add("garbage request line", "GARBAGE\r\n\r\n");
        {
            static const char kTlsHello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
            add("TLS handshake on the plain port", std::string(kTlsHello, sizeof kTlsHello - 1));
        }
        add("huge header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                               std::string(5 * 1024 * 1024, 'a') + "\r\n\r\n");
        REQUIRE(cases.size() >= 50);

        size_t passed = 0;
        for (const auto& c : cases) {
            CAPTURE(c.name);
            RawConnection conn(h.server->port());
            REQUIRE(conn.ok());
            conn.Send(c.bytes);
            std::string response = conn.ReadResponse();
            int status = RawConnection::Status(response);
            if (c.json) {
                CHECK(status >= 400);
                CHECK(status < 500);
                rapidjson::Document doc;
                bool parsed = json::Parse(RawConnection::Body(response), doc, 16).ok();
                CHECK(parsed);
                CHECK((parsed && json::FindObject(doc, "error") != nullptr));
                if (status >= 400 && status < 500 && parsed) ++passed;
            } else {
                // Refused before any handler runs: a 4xx or a closed connection, never a 2xx.
                CHECK((status == 0 || (status >= 400 && status < 500)));
                if (status == 0 || (status >= 400 && status < 500)) ++passed;
            }
        }
        CHECK(h.http.Get(h.server->url("/healthz")).status == 200);
        REQUIRE(store::TestAccess::WaitApplied(h.db));
        CHECK(h.Count("SELECT count(*) FROM dedupe") == 0);
        CHECK(h.Count("SELECT count(*) FROM memberships") == 0);
        CHECK(h.Count("SELECT count(*) FROM audiences") == 0);
        MESSAGE("hostile requests tried: " << cases.size() << ", answered as expected: " << passed);
    }

    TEST_CASE("slow and idle clients neither block others nor stay forever") {
        testing::TempDir dir;
        emulator::Emulator emu{[] {
            emulator::Emulator::Options o;
            o.service_token = kToken;
            o.client_side_id = kClientSideId;
            return o;
        }()};
        emu.Start();
        std::string cfg = SyncConfig(dir.File("s.db"), emu.base_url());
        cfg.insert(
            1, R"("header_timeout_ms":1000,"body_timeout_ms":1000,"keepalive_timeout_ms":1000,)");
        std::ofstream(dir.File("c.json")) << cfg;
        ServerProcess server(dir.File("c.json"));
        REQUIRE(server.Start());
        std::vector<std::unique_ptr<RawConnection>> slow;
        for (int i = 0; i < 200; ++i) {
            auto c = std::make_unique<RawConnection>(server.port());
            REQUIRE(c->ok());
            c->Send(i % 2 ? "POST /v1/batch HTTP/1.1\r\nHost: x\r\n"  // headers never finish
                          : "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
            slow.push_back(std::move(c));
        }
        HttpClient http;
        const int64_t t0 = text::NowMs();
        auto r = http.Get(server.url("/healthz"));
        CHECK(r.status == 200);
        EngageEvent e;
        CHECK(http.Post(server.url("/v1/identify"), e.Json(), {BasicAuth("wk-ld")}).status == 200);
        const int64_t served_ms = text::NowMs() - t0;
        size_t closed = 0;
        for (auto& c : slow) closed += c->ClosedByPeer(15000) ? 1 : 0;
        CHECK(closed == slow.size());
        RawConnection idle(server.port());
        idle.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        CHECK(RawConnection::Status(idle.ReadResponse()) == 200);
        CHECK(idle.ClosedByPeer(15000));
        MESSAGE("half-open connections: " << slow.size() << ", others served in " << served_ms
                                          << " ms, closed by timeout: " << closed);
        CHECK(server.Stop() == 0);
        emu.Stop();
    }

    TEST_CASE("300 half-sent 4 MB bodies keep the server under 300 MB and /healthz answers") {
        testing::TempDir dir;
        std::ofstream(dir.File("c.json")) << TestConfigJson(dir.File("m.db"));
        ServerProcess server(dir.File("c.json"));
        REQUIRE(server.Start());
        const int64_t rss_before = RssKb(server.pid());
        const size_t kBody = 4 * 1024 * 1024;
        const std::string half(kBody / 2, ' ');
        std::vector<std::unique_ptr<RawConnection>> held;
        for (int i = 0; i < 300; ++i) {
            auto c = std::make_unique<RawConnection>(server.port());
            REQUIRE(c->ok());
            c->Send("POST /v1/destinations/ld/events HTTP/1.1\r\nHost: x\r\n" + Basic("wk-ld") +
                    "Content-Length: " + std::to_string(kBody) + "\r\n\r\n[" + half);
            held.push_back(std::move(c));
        }
        HttpClient http;
        const int64_t t0 = text::NowMs();
        CHECK(http.Get(server.url("/healthz")).status == 200);
        const int64_t health_ms = text::NowMs() - t0;
        const int64_t rss_after = RssKb(server.pid());
        MESSAGE("RSS before: " << rss_before / 1024 << " MB, with 300 half-sent 4 MB bodies: "
                               << rss_after / 1024 << " MB, /healthz in " << health_ms << " ms");
        CHECK(rss_after < 300 * 1024);
        held.clear();
        CHECK(server.Stop() == 0);
    }

    TEST_CASE("an exhausted file descriptor table costs no CPU spin") {
        testing::TempDir dir;
        std::string cfg = TestConfigJson(dir.File("f.db"));
        cfg.insert(1, R"("limits":{"max_connections":100000},)");  // let accept hit EMFILE
        std::ofstream(dir.File("c.json")) << cfg;
        ServerProcess server(dir.File("c.json"));
        server.SetFileLimit(64);
        REQUIRE_MESSAGE(server.Start(), server.Log());
        std::vector<std::unique_ptr<RawConnection>> held;
        for (int i = 0; i < 120; ++i) {
            held.push_back(std::make_unique<RawConnection>(server.port()));
            REQUIRE(held.back()->ok());  // completed by the kernel, accepted or not
        }
        // Wait until the server has run out of descriptors: it logs its backoff.
        REQUIRE(Eventually([&] { return server.Log().find("backing off") != std::string::npos; },
                           10000));
        const int64_t cpu0 = CpuTimeMs(server.pid());
        const int64_t t0 = text::NowMs();
        while (text::NowMs() - t0 < 1000) {  // a measuring window, not a synchronisation
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        const int64_t cpu_ms = CpuTimeMs(server.pid()) - cpu0;
        MESSAGE("CPU while out of descriptors: " << cpu_ms << " ms over " << text::NowMs() - t0
                                                 << " ms");
        CHECK(cpu_ms < 200);
        held.clear();
        // Descriptors freed: the server serves again.
        HttpClient http;
        CHECK_MESSAGE(
            Eventually([&] { return http.Get(server.url("/healthz")).status == 200; }, 10000),
            server.Log());
        CHECK_MESSAGE(server.Stop() == 0, server.Log());
    }
}
