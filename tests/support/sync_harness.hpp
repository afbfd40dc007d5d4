// The integration harness: the LaunchDarkly emulator in process and `audsync serve` as a child.
#pragma once
// Shared by the integration tests: the LaunchDarkly emulator in this process and
// `audsync serve` as a child process pointed at it.

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "emulator.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/store_access.hpp"

namespace audsync::testing {

inline constexpr const char* kToken = "api-emulated-token";
inline constexpr const char* kClientSideId = "cs-emulated";

// An answer's JSON; the test fails (showing the body) when it is not JSON.
inline rapidjson::Document ParseJson(const std::string& body) {
    rapidjson::Document doc;
    REQUIRE_MESSAGE(json::Parse(body, doc, 64).ok(), body);
    return doc;
}

inline bool Eventually(const std::function<bool()>& done, int64_t deadline_ms = 45000) {
    const int64_t deadline = text::NowMs() + deadline_ms;
    while (text::NowMs() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
    }
    return done();
}

inline std::string SyncConfig(const std::string& db, const std::string& emulator_url,
                              const std::string& destination_extra = "") {
    // Tests refuse the admin token on purpose many times: no slowdown for them.
    return R"({"listen":"127.0.0.1:0","database":")" + db + R"(","admin_token":")" + kAdminToken +
           R"(","admin_auth_free_failures":1000000,)"
           R"("sync":{"linger_ms":10,"workers":4},"destinations":[{"id":"ld",)"
           R"("service_token":")" +
           kToken + R"(","client_side_id":")" + kClientSideId + R"(","api_base":")" + emulator_url +
           R"(","clientsdk_base":")" + emulator_url +
           R"(","write_keys":["wk-ld"],"shared_secret":"s3cret","max_batch":7,"retry_base_ms":20,"retry_max_ms":200,)"
           R"("auth_retry_ms":300,"request_timeout_ms":3000)" +
           (destination_extra.empty() ? "" : "," + destination_extra) + "}]}";
}

struct Harness {
    emulator::Emulator emulator{[] {
        emulator::Emulator::Options o;
        o.service_token = kToken;
        o.client_side_id = kClientSideId;
        return o;
    }()};
    testing::TempDir dir;
    std::string db = dir.File("sync.db");
    std::string config = dir.File("config.json");
    std::unique_ptr<testing::ServerProcess> server;
    testing::HttpClient http;

    explicit Harness(const std::string& destination_extra = "") {
        emulator.Start();
        std::ofstream(config) << SyncConfig(db, emulator.base_url(), destination_extra);
        StartServer();
    }
    ~Harness() {
        if (server) CHECK_MESSAGE(server->Stop() == 0, server->Log());
        emulator.Stop();
    }
    void StartServer() {
        server = std::make_unique<testing::ServerProcess>(config);
        REQUIRE_MESSAGE(server->Start(), server->Log());
    }
    // Posts the events and, once stored, waits until the applier has applied them, so
    // that what the test reads next includes them.
    testing::HttpResponse Send(const std::vector<std::string>& events) {
        std::string body = "[";
        for (size_t i = 0; i < events.size(); ++i) body += (i ? "," : "") + events[i];
        body += "]";
        auto r = http.Post(server->url("/v1/destinations/ld/events"), body, {BasicAuth("wk-ld")});
        if (r.status == 200) REQUIRE(store::TestAccess::WaitApplied(db));
        return r;
    }
    testing::HttpResponse Admin(const std::string& method, const std::string& path,
                                const std::string& body = "") {
        return http.Request(method, server->url(path), body,
                            {std::string("Authorization: Bearer ") + kAdminToken});
    }
    int64_t Count(const std::string& sql) {
        store::Database d(db, false);
        store::Statement s(store::TestAccess::Handle(d), sql);
        s.Step();
        return s.Int(0);
    }
    std::string Text(const std::string& sql) {
        store::Database d(db, false);
        store::Statement s(store::TestAccess::Handle(d), sql);
        return s.Step() && !s.IsNull(0) ? s.Text(0) : std::string();
    }
    // No member change awaits a push (each is acknowledged or a dead letter), and no
    // replay is under way.
    bool InSync() {
        return Count("SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0") == 0 &&
               Count("SELECT count(*) FROM replays") == 0;
    }
};

// A stream of membership events over several audiences and kinds, shuffled, with the
// final membership it implies (newest event time wins).
struct Stream {
    std::vector<std::string> events;
    std::map<std::string, std::set<std::string>> expected;  // cohortId -> included keys
};

inline Stream MixedStream(int n, unsigned seed, const std::string& prefix = "s") {
    std::mt19937 rng(seed);
    struct Latest {
        int64_t time = -1;
        bool value = false;
    };
    std::map<std::pair<std::string, std::string>, Latest> latest;
    Stream s;
    const char* audiences[] = {"aud_a", "aud_b", "aud_c"};
    for (int i = 0; i < n; ++i) {
        EngageEvent e;
        e.message_id = prefix + std::to_string(i);
        std::string audience = audiences[rng() % 3];
        e.audience_id = audience;
        e.audience_key = audience + "_key";
        if (audience == "aud_c")
            e.extra_personas = R"("audience_settings":{"contextKind":"account"})";
        e.user_id = "user-" + std::to_string(rng() % 25);
        bool value = rng() % 3 != 0;
        e.value = value ? "true" : "false";
        e.type = rng() % 2 ? "identify" : "track";
        int64_t t = 1714987822000 + static_cast<int64_t>(rng() % 100000) * 1000 + i;  // distinct
        e.timestamp = text::FormatIso8601(t);
        auto& l = latest[{audience, e.user_id}];
        if (t > l.time) l = {t, value};
        s.events.push_back(e.Json());
    }
    for (const auto& [k, l] : latest) {
        auto& set = s.expected[k.first];
        if (l.value) set.insert(k.second);
    }
    return s;
}

inline bool Converged(const emulator::Emulator& e, const Stream& s) {
    for (const auto& [cohort, keys] : s.expected) {
        if (e.Included(cohort) != keys) return false;
    }
    return true;
}

inline void SendAll(Harness& h, const Stream& s, size_t batch) {
    for (size_t i = 0; i < s.events.size(); i += batch) {
        std::vector<std::string> part(
            s.events.begin() + static_cast<std::ptrdiff_t>(i),
            s.events.begin() + static_cast<std::ptrdiff_t>(std::min(s.events.size(), i + batch)));
        auto r = h.Send(part);
        REQUIRE_MESSAGE(r.status == 200, r.body);
    }
}

}  // namespace audsync::testing
