// Admission control: the decision by table, the gate with a fake clock and backlog, and
// over real HTTP: 503 overloaded with Retry-After past each limit, nothing stored, the
// metrics, one warning per spell and one info line at its end; replays wait instead.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audsync/app/runtime.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/config/config.hpp"
#include "audsync/ingest/admission.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;

namespace {

size_t Occurrences(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
        ++n;
    }
    return n;
}

// A JSON array of `n` fresh Engage events (the webhook route's batch), or with
// `tracking` a Tracking API batch.
std::string Batch(const std::string& prefix, int n, bool tracking = true) {
    std::string out = tracking ? "{\"batch\":[" : "[";
    for (int i = 0; i < n; ++i) {
        testing::EngageEvent e;
        e.message_id = prefix + "-" + std::to_string(i);
        e.user_id = prefix + "-u" + std::to_string(i);
        if (i > 0) out += ',';
        out += e.Json();
    }
    return out + (tracking ? "]}" : "]");
}

// The value of a metric line `name value`, or -1.
double Metric(const std::string& text, const std::string& name) {
    const size_t at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}

int64_t InboxLastSeq(const std::string& db) {
    store::Database inbox(store::InboxPath(db), false);
    return store::InboxReader(inbox).LastSeq();
}

// `name` lower-cased, as HttpResponse keeps them.
std::optional<std::string> HeaderValue(const testing::HttpResponse& r, const std::string& name) {
    auto it = r.headers.find(name);
    if (it == r.headers.end()) return std::nullopt;
    return it->second;
}

}  // namespace

TEST_SUITE("admission") {
    TEST_CASE("the decision: admitted under both bounds, refused past either, resumed under 0.9") {
        const ingest::BacklogLimits limits{10000, 120};
        struct Row {
            const char* name;
            int64_t events;
            int64_t age_ms;
            size_t incoming;
            bool refusing;
            bool admit;
            ingest::LimitHit limit;
        };
        const Row rows[] = {
            {"empty backlog admits anything", 0, 0, 50000, false, true, ingest::LimitHit::kNone},
            {"under both", 5000, 1000, 100, false, true, ingest::LimitHit::kNone},
            {"exactly at the event bound", 9900, 1000, 100, false, true, ingest::LimitHit::kNone},
            {"one event past it", 9901, 1000, 100, false, false, ingest::LimitHit::kEvents},
            {"age at the bound", 10, 120000, 1, false, true, ingest::LimitHit::kNone},
            {"age past the bound", 10, 120001, 1, false, false, ingest::LimitHit::kSeconds},
            {"age wins when both pass", 20000, 200000, 1, false, false, ingest::LimitHit::kSeconds},
            {"refusing: under the bound but over 0.9", 8950, 1000, 100, true, false,
             ingest::LimitHit::kEvents},
            {"refusing: under 0.9 resumes", 8900, 1000, 100, true, true, ingest::LimitHit::kNone},
            {"refusing: age over 0.9", 10, 108001, 1, true, false, ingest::LimitHit::kSeconds},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            ingest::BacklogView v{r.events, r.age_ms, 1000};
            const auto d = ingest::Decide(v, r.incoming, limits, r.refusing);
            CHECK(d.admit == r.admit);
            CHECK(d.limit == r.limit);
            if (d.admit) {
                CHECK(d.retry_after_s == 0);
            } else {
                CHECK(d.retry_after_s >= 1);
                CHECK(d.retry_after_s <= 60);
            }
        }
    }

    TEST_CASE("the age bound is kept ahead: refused once the applier would reach the events late") {
        // 120 s: projected once the oldest is 30 s old, against 60 s (54 s resuming).
        const ingest::BacklogLimits limits{1000000, 120};
        struct Row {
            const char* name;
            int64_t events;
            int64_t age_ms;
            double rate;
            bool refusing;
            bool admit;
        };
        const Row rows[] = {
            {"younger than a quarter of the bound: the rate may not be the applier's", 199900,
             29999, 1000, false, true},
            {"a quarter old, reached at half the bound", 59900, 30000, 1000, false, true},
            {"a quarter old, one event later", 59901, 30000, 1000, false, false},
            {"a faster applier reaches more in time", 599900, 60000, 10000, false, true},
            {"no rate measured: only the age itself", 999000, 100000, 0, false, true},
            {"refusing: over 0.9 of the projection", 53901, 40000, 1000, true, false},
            {"refusing: under 0.9 resumes", 53900, 40000, 1000, true, true},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            const auto d = ingest::Decide({r.events, r.age_ms, r.rate}, 100, limits, r.refusing);
            CHECK(d.admit == r.admit);
            CHECK(d.limit == (r.admit ? ingest::LimitHit::kNone : ingest::LimitHit::kSeconds));
        }
        // Retry-After: until the projection is under its resume share (54,000 events at
        // 1,000/s): 60,001 events, 6,001 to fold.
        CHECK(ingest::Decide({59901, 30000, 1000}, 100, limits, false).retry_after_s == 7);
    }

    TEST_CASE("the applier's rate is read over a window of its steps, not second by second") {
        int64_t now = 1000000;
        ingest::Admission::Source source;
        source.events = 10;
        ingest::Admission gate([&] { return source; }, [&] { return now; }, 100);
        const ingest::BacklogLimits limits{1000000, 120};
        CHECK(gate.Current(limits).backlog.applied_per_second == 0);  // one sample: unknown
        // Folds in parts: the total moves in steps of 20,000 every 4 s.
        for (int s = 1; s <= 20; ++s) {
            now += 1000;
            if (s % 4 == 0) source.applied_total += 20000;
            const double rate = gate.Current(limits).backlog.applied_per_second;
            CAPTURE(s);
            CHECK(rate == doctest::Approx(static_cast<double>(source.applied_total) * 1000.0 /
                                          static_cast<double>(s * 1000)));
        }
        // 30 s later with nothing folded, the window holds only the stall.
        for (int s = 0; s < 31; ++s) {
            now += 1000;
            (void)gate.Current(limits);
        }
        CHECK(gate.Current(limits).backlog.applied_per_second == 0);
        // A counter that went back (a restart) starts over rather than going negative.
        source.applied_total = 5;
        now += 1000;
        CHECK(gate.Current(limits).backlog.applied_per_second == 0);
        now += 1000;
        source.applied_total = 2005;
        CHECK(gate.Current(limits).backlog.applied_per_second == doctest::Approx(2000));
    }

    TEST_CASE("Retry-After follows the drain rate, from 1 to 60 s, 10 s without a rate") {
        const ingest::BacklogLimits limits{10000, 120};
        // 12,000 events, resume at 9,000: 3,100 to fold with the request's 100.
        CHECK(ingest::Decide({12000, 0, 1000}, 100, limits, false).retry_after_s == 4);
        CHECK(ingest::Decide({12000, 0, 100000}, 100, limits, false).retry_after_s == 1);
        CHECK(ingest::Decide({12000, 0, 1}, 100, limits, false).retry_after_s == 60);
        CHECK(ingest::Decide({12000, 0, 0}, 100, limits, false).retry_after_s == 10);
    }

    TEST_CASE("the gate counts admitted and in-flight events between reads of the backlog") {
        int64_t now = 1000000;
        std::atomic<int> reads{0};
        ingest::Admission::Source source;
        ingest::Admission gate(
            [&] {
                ++reads;
                return source;
            },
            [&] { return now; }, 100);
        const ingest::BacklogLimits limits{10000, 120};
        // Two requests in flight at once cannot together pass the bound.
        REQUIRE(gate.Admit(6000, limits).ok());
        auto second = gate.Admit(6000, limits);
        REQUIRE_FALSE(second.ok());
        CHECK(second.error().name == "overloaded");
        CHECK(second.error().retry_after_s >= 1);
        CHECK(reads == 1);  // one read per refresh interval, not per request
        // Committed: still counted until a read shows the files.
        gate.Done(6000, 6000);
        CHECK_FALSE(gate.Admit(6000, limits).ok());
        now += 100;
        source.events = 0;  // the applier caught up
        CHECK(gate.Admit(6000, limits).ok());
        CHECK(reads == 2);
        gate.Done(6000, 0);  // failed: nothing stored, nothing counted
        CHECK(gate.Current(limits).backlog.events == 0);
        CHECK(gate.counters().refused_events_limit == 2);
        CHECK(gate.counters().refused_events == 12000);
    }

    TEST_CASE("the gate logs one warning per spell of refusals and one info line when it ends") {
        std::mutex mu;
        std::vector<std::pair<log::Level, std::string>> lines;
        log::SetSinkForTesting([&](log::Level l, std::string_view m) {
            std::lock_guard<std::mutex> lock(mu);
            lines.emplace_back(l, std::string(m));
        });
        int64_t now = 5000000;
        ingest::Admission::Source source;
        source.events = 50;
        source.oldest_received_ms = now - 200000;  // 200 s old
        ingest::Admission gate([&] { return source; }, [&] { return now; }, 0);
        const ingest::BacklogLimits limits{10000, 120};
        for (int i = 0; i < 5; ++i) {
            auto r = gate.Admit(10, limits);
            REQUIRE_FALSE(r.ok());
            CHECK(r.error().message.find("max_backlog_seconds") != std::string::npos);
        }
        CHECK(gate.counters().refused_seconds_limit == 5);
        CHECK_FALSE(gate.Current(limits).admitting);
        source.oldest_received_ms = now - 1000;
        CHECK(gate.Current(limits).admitting);  // the end of the spell, without a request
        CHECK(gate.Admit(10, limits).ok());
        log::SetSinkForTesting(nullptr);
        size_t warnings = 0;
        size_t infos = 0;
        for (const auto& [level, m] : lines) {
            if (m.find("ingest refuses new events") != std::string::npos) {
                CHECK(level == log::Level::kWarn);
                ++warnings;
            }
            if (m.find("ingest admits events again") != std::string::npos) {
                CHECK(level == log::Level::kInfo);
                ++infos;
            }
        }
        CHECK(warnings == 1);
        CHECK(infos == 1);
    }

    TEST_CASE("the backlog limits are read from the config, bounded, and unknown ones refused") {
        testing::TempDir dir;
        auto load = [&](const std::string& limits) {
            std::string json = testing::TestConfigJson(dir.File("a.db"));
            json.insert(1, "\"limits\":{" + limits + "},");
            const std::string path = dir.File("c.json");
            std::ofstream(path) << json;
            return config::LoadFile(
                path, [](const std::string&) { return std::optional<std::string>(); });
        };
        auto defaults = load("");
        REQUIRE(defaults.ok());
        CHECK(defaults.value().limits.max_backlog_events == 1000000);
        CHECK(defaults.value().limits.max_backlog_seconds == 120);
        CHECK(defaults.value().limits.max_wal_bytes == 268435456);
        auto set =
            load(R"("max_backlog_events":20000,"max_backlog_seconds":30,"max_wal_bytes":33554432)");
        REQUIRE(set.ok());
        CHECK(set.value().limits.max_backlog_events == 20000);
        CHECK(set.value().limits.max_backlog_seconds == 30);
        CHECK(set.value().limits.max_wal_bytes == 33554432);
        for (const char* bad : {R"("max_backlog_events":9999)", R"("max_backlog_seconds":4)",
                                R"("max_wal_bytes":1048576)", R"("max_backlog_events":-1)",
                                R"("max_backlog_event":20000)"}) {
            CAPTURE(bad);
            auto r = load(bad);
            REQUIRE_FALSE(r.ok());
            CHECK(r.error().message.find("limits.max_") != std::string::npos);
        }
    }

    TEST_CASE("past max_backlog_events ingest answers 503 overloaded with Retry-After") {
        testing::TempDir dir;
        const std::string db = dir.File("b.db");
        const std::string cfg = dir.File("c.json");
        std::string json = testing::TestConfigJson(db);
        json.insert(1, R"("limits":{"max_backlog_events":10000},)");
        std::ofstream(cfg) << json;
        testing::ServerProcess server(cfg);
        REQUIRE_MESSAGE(server.Start(), server.Log());
        testing::HttpClient http;
        const std::vector<std::string> admin = {std::string("Authorization: Bearer ") +
                                                testing::kAdminToken};
        const std::vector<std::string> auth = {testing::BasicAuth("wk-ld"),
                                               "Content-Type: application/json"};
        {
            // Another connection holds the database's write lock: the applier cannot
            // commit, ingest (the inbox) goes on and the backlog grows.
            store::Database blocker(db, false);
            store::Transaction hold(blocker);
            for (int i = 0; i < 4; ++i) {
                auto r = http.Post(server.url("/v1/destinations/ld/events"),
                                   Batch("a" + std::to_string(i), 2500, false), auth);
                REQUIRE_MESSAGE(r.status == 200, r.body);
            }
            const int64_t stored = InboxLastSeq(db);
            CHECK(stored == 10000);
            testing::HttpResponse refused;
            for (int i = 0; i < 3; ++i) {
                refused =
                    http.Post(server.url("/v1/batch"), Batch("r" + std::to_string(i), 10), auth);
                CHECK(refused.status == 503);
            }
            CHECK(refused.body.find("\"overloaded\"") != std::string::npos);
            CHECK(refused.body.find("max_backlog_events") != std::string::npos);
            auto retry = HeaderValue(refused, "retry-after");
            REQUIRE(retry.has_value());
            CHECK(std::stoi(*retry) >= 1);
            CHECK(std::stoi(*retry) <= 60);
            // The webhook route is gated alike.
            testing::EngageEvent e;
            e.message_id = "webhook-refused";
            auto webhook = http.Post(server.url("/v1/destinations/ld/events"), e.Json(), auth);
            CHECK(webhook.status == 503);
            // Once refusing, the backlog is past the resume bound before any request's
            // events: a request is refused before its body is parsed, so a body that
            // does not parse gets the same 503, not a 400. Authentication comes first.
            auto garbage = http.Post(server.url("/v1/batch"), "{not json", auth);
            CHECK(garbage.status == 503);
            CHECK(garbage.body.find("\"overloaded\"") != std::string::npos);
            CHECK(HeaderValue(garbage, "retry-after").has_value());
            auto stranger = http.Post(
                server.url("/v1/batch"), Batch("s", 10),
                {testing::BasicAuth("not-a-write-key"), "Content-Type: application/json"});
            CHECK(stranger.status == 401);
            CHECK(InboxLastSeq(db) == stored);  // nothing of the refused requests
            auto metrics = http.Get(server.url("/metrics"), admin);
            CHECK(metrics.body.find("audsync_ingest_overloaded_total{limit=\"events\"} 5") !=
                  std::string::npos);
            // Only the first refusal read its body (10 events); the others were refused
            // before they were parsed.
            CHECK(metrics.body.find("audsync_ingest_overloaded_events_total 10") !=
                  std::string::npos);
            CHECK(metrics.body.find("audsync_ingest_admitting 0") != std::string::npos);
            CHECK(metrics.body.find("audsync_inbox_backlog_limit_events 10000") !=
                  std::string::npos);
            auto segments = http.Get(server.url("/v1/segments"), admin);
            rapidjson::Document doc;
            REQUIRE(json::Parse(segments.body, doc, 32).ok());
            CHECK(doc["backlog"]["max_events"].GetInt64() == 10000);
            CHECK(doc["backlog"]["max_seconds"].GetInt64() == 120);
            CHECK(doc["backlog"]["admitting"].GetBool() == false);
            auto cli = testing::RunAudsync({"segments", "list", "--config", cfg});
            CHECK_MESSAGE(cli.out.find("ingest refuses new events") != std::string::npos, cli.out);
        }
        // The lock is gone: the applier folds the backlog and ingest admits again.
        REQUIRE(testing::Eventually(
            [&] {
                return http.Post(server.url("/v1/batch"), Batch("after", 10), auth).status == 200;
            },
            30000));
        REQUIRE(testing::Eventually([&] {
            const std::string log = server.Log();
            return log.find("ingest admits events again") != std::string::npos;
        }));
        const std::string log = server.Log();
        CHECK(Occurrences(log, "ingest refuses new events") == 1);
        CHECK(Occurrences(log, "ingest admits events again") == 1);
        CHECK(server.Stop() == 0);
        // Exactly the admitted events were applied: 4 x 2,500 and the 10 after.
        CHECK(InboxLastSeq(db) == 10010);
    }

    TEST_CASE(
        "past max_backlog_seconds ingest answers 503 overloaded until the backlog is applied") {
        testing::TempDir dir;
        const std::string db = dir.File("b.db");
        const std::string cfg = dir.File("c.json");
        std::string json = testing::TestConfigJson(db);
        json.insert(1, R"("limits":{"max_backlog_seconds":5},)");
        std::ofstream(cfg) << json;
        testing::ServerProcess server(cfg);
        REQUIRE_MESSAGE(server.Start(), server.Log());
        testing::HttpClient http;
        const std::vector<std::string> auth = {testing::BasicAuth("wk-ld"),
                                               "Content-Type: application/json"};
        {
            store::Database blocker(db, false);
            store::Transaction hold(blocker);
            REQUIRE(http.Post(server.url("/v1/batch"), Batch("old", 1), auth).status == 200);
            int i = 0;
            testing::HttpResponse r;
            // Admitted while the oldest is younger than 5 s, refused after.
            REQUIRE(testing::Eventually(
                [&] {
                    r = http.Post(server.url("/v1/batch"), Batch("n" + std::to_string(i++), 1),
                                  auth);
                    return r.status == 503;
                },
                20000));
            CHECK(r.body.find("max_backlog_seconds") != std::string::npos);
            CHECK(HeaderValue(r, "retry-after").has_value());
            const int64_t stored = InboxLastSeq(db);
            CHECK(http.Post(server.url("/v1/batch"), Batch("again", 1), auth).status == 503);
            CHECK(InboxLastSeq(db) == stored);
        }
        REQUIRE(testing::Eventually(
            [&] { return http.Post(server.url("/v1/batch"), Batch("x", 1), auth).status == 200; },
            30000));
        testing::HttpClient metrics_http;
        auto metrics = metrics_http.Get(
            server.url("/metrics"), {std::string("Authorization: Bearer ") + testing::kAdminToken});
        // The two refusals above, and those of the wait for the applier.
        CHECK(Metric(metrics.body, "audsync_ingest_overloaded_total{limit=\"seconds\"}") >= 2);
        CHECK(Metric(metrics.body, "audsync_ingest_overloaded_total{limit=\"events\"}") == 0);
        CHECK(Occurrences(server.Log(), "ingest refuses new events") == 1);
        CHECK(server.Stop() == 0);
    }

    TEST_CASE("an event replay waits for room instead of being refused") {
        testing::TempDir dir;
        const std::string db = dir.File("r.db");
        config::Config c = testing::TestConfig(db);
        c.limits.max_backlog_events = 10000;
        app::RuntimeOptions options;
        options.create_database = true;
        auto started = app::Runtime::Start(std::make_shared<const config::Config>(c), options);
        REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message));
        auto rt = std::move(started).value();
        const config::Destination& d = rt->config().destinations[0];
        auto items = [&](const std::string& prefix, int n) {
            config::Limits limits = c.limits;
            limits.tracking_max_events = 100000;
            limits.tracking_max_request_bytes = 64 * 1024 * 1024;
            auto parsed = segment::ParseTrackingBody(Batch(prefix, n), "", limits);
            REQUIRE(parsed.ok());
            return std::move(parsed.value().items);
        };
        std::atomic<bool> done{false};
        std::thread replay;
        {
            store::Database blocker(db, false);
            store::Transaction hold(blocker);
            auto first = items("fill", 10000);
            REQUIRE(rt->ingest().Apply(d, first).ok());
            auto live = items("live", 5);
            auto refused = rt->ingest().Apply(d, live);
            REQUIRE_FALSE(refused.ok());
            CHECK(refused.error().name == "overloaded");
            auto more = std::make_shared<std::vector<segment::Item>>(items("replayed", 5));
            replay = std::thread([&, more] {
                auto r = rt->ingest().Apply(d, *more, 0, ingest::Service::WhenOverloaded::kWait);
                CHECK(r.ok());
                CHECK(r.value().stored == 5);
                done = true;
            });
            REQUIRE(testing::Eventually([&] { return rt->admission().counters().waits == 1; }));
            CHECK_FALSE(done);  // waits while the lock holds the backlog up
        }
        REQUIRE(testing::Eventually([&] { return done.load(); }, 30000));
        replay.join();
        CHECK(InboxLastSeq(db) == 10005);
        rt->Stop();
    }
}
