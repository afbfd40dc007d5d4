// The sync engine in this process against a scripted fake platform: resume (in memory
// and through the database), reload, Retry-After bounds, honest log lines, and a
// segment's batches pushed in concurrent lanes.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/migrations.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/sync/engine.hpp"
#include "support/helpers.hpp"
#include "support/store_access.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;
using testing::Eventually;

namespace {

constexpr const char* kSecretToken = "sekrit-token-1";

// One push as the platform saw it. `entered` and `left` number the platform's push
// entries and exits in one sequence: two pushes overlapped when each entered before the
// other left.
struct PushRecord {
    std::string audience_id;
    std::vector<targets::PushMember> members;
    int entered = 0;
    int left = 0;
    int in_flight = 0;  // pushes of the same segment in flight on entry, itself included
};

bool Overlap(const PushRecord& a, const PushRecord& b) {
    return a.entered < b.left && b.entered < a.left;
}

// What the fake platform answers, and what it saw. Thread-safe.
struct Platform {
    std::mutex mu;
    std::condition_variable cv;
    targets::HttpResult answer;  // for every push
    bool hold = false;           // block pushes until released
    int held = 0;                // pushes blocked now
    int pushes = 0;
    int targets_built = 0;
    std::vector<std::string> tokens;  // the token of each push, in order
    // Gate: a push waits until `gate_at` pushes of its segment are in flight (the gate
    // then stays open) or `gate_ms` have passed, so that pushes that can overlap do.
    int gate_at = 0;  // 0: no gate
    int64_t gate_ms = 0;
    bool gate_open = false;
    int sequence = 0;                      // push entries and exits
    std::map<std::string, int> in_flight;  // by audience id
    std::vector<PushRecord> records;       // in order of exit

    void Answer(int status, const std::string& body = "",
                std::optional<std::string> retry_after = std::nullopt) {
        std::lock_guard<std::mutex> lock(mu);
        answer = targets::HttpResult{};
        answer.status = status;
        answer.body = body;
        answer.retry_after = std::move(retry_after);
    }
    int Pushes() {
        std::lock_guard<std::mutex> lock(mu);
        return pushes;
    }
};

class FakeTarget : public targets::Target {
  public:
    FakeTarget(Platform& p, const config::Target& t) : platform_(p), token_(t.service_token) {}
    targets::PushShape shape() const override { return targets::PushShape::kDeltas; }
    targets::HttpResult Push(const targets::PushRequest& request) override {
        std::unique_lock<std::mutex> lock(platform_.mu);
        PushRecord record;
        record.audience_id = request.audience_id;
        record.members = request.members;
        record.entered = ++platform_.sequence;
        int& in_flight = platform_.in_flight[request.audience_id];  // std::map: stays valid
        record.in_flight = ++in_flight;
        ++platform_.held;
        platform_.cv.notify_all();
        if (platform_.gate_at > 0) {
            platform_.cv.wait_for(lock, std::chrono::milliseconds(platform_.gate_ms), [&] {
                return platform_.gate_open || in_flight >= platform_.gate_at;
            });
            if (in_flight >= platform_.gate_at) platform_.gate_open = true;
        }
        platform_.cv.wait(lock, [&] { return !platform_.hold; });
        --platform_.held;
        --in_flight;
        record.left = ++platform_.sequence;
        platform_.records.push_back(std::move(record));
        ++platform_.pushes;
        platform_.tokens.push_back(token_);
        return platform_.answer;
    }
    targets::CheckResult Check() override { return {}; }

  private:
    Platform& platform_;
    std::string token_;
};

// Captures log lines for the life of the object.
struct Lines {
    std::mutex mu;
    std::vector<std::pair<log::Level, std::string>> lines;
    Lines() {
        log::SetLevel(log::Level::kInfo);
        log::SetSinkForTesting([this](log::Level l, std::string_view m) {
            std::lock_guard<std::mutex> lock(mu);
            lines.emplace_back(l, std::string(m));
        });
    }
    ~Lines() { log::SetSinkForTesting(nullptr); }
    int Count(log::Level level, const std::string& part) {
        std::lock_guard<std::mutex> lock(mu);
        int n = 0;
        for (const auto& [l, m] : lines) n += (l == level && m.find(part) != std::string::npos);
        return n;
    }
    bool AnyContains(const std::string& part) {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& line : lines) {
            if (line.second.find(part) != std::string::npos) return true;
        }
        return false;
    }
    std::string All() {
        std::lock_guard<std::mutex> lock(mu);
        std::string out;
        for (const auto& line : lines) out += line.second + "\n";
        return out;
    }
};

// Changes a destination's settings before its implicit target is made from them.
using Tune = std::function<void(config::Destination&)>;

std::shared_ptr<const config::Config> MakeConfig(const std::string& db,
                                                 const std::vector<std::string>& ids,
                                                 const std::string& token = kSecretToken,
                                                 int workers = 2, const Tune& tune = nullptr) {
    auto c = std::make_shared<config::Config>();
    c->database = db;
    c->sync_linger_ms = 0;
    c->sync_workers = workers;
    for (const auto& id : ids) {
        config::Destination d;
        d.id = id;
        d.service_token = token;
        d.client_side_id = "cs";
        d.retry_base_ms = 20;
        d.retry_max_ms = 400;
        d.auth_retry_ms = 600000;  // only a resume ends a refused-token pause in a test
        if (tune) tune(d);
        d.targets = {config::ImplicitTarget(d)};
        c->destinations.push_back(d);
    }
    return c;
}

// A migrated database, its writer and an engine on the fake platform.
struct Rig {
    testing::TempDir dir;
    std::string db = dir.File("engine.db");
    Platform platform;
    std::unique_ptr<store::Writer> writer;
    std::unique_ptr<sync::Engine> engine;
    int seq = 0;

    explicit Rig(const std::vector<std::string>& ids = {"ld"}, int workers = 2,
                 const Tune& tune = nullptr) {
        {
            store::Database d(db, true);
            REQUIRE(store::Migrate(d, store::EmbeddedMigrations()).ok());
        }
        writer = std::make_unique<store::Writer>(db, store::WriterOptions{});
        auto config = MakeConfig(db, ids, kSecretToken, workers, tune);
        for (const auto& d : config->destinations) {
            REQUIRE(writer
                        ->Run(
                            [&](store::WriteStore& w) {
                                w.EnsureTargets(d.id, store::ImplicitTargets(), 0);
                            },
                            1)
                        .ok());
        }
        engine =
            std::make_unique<sync::Engine>(config, db, *writer, [this](const config::Target& d) {
                std::lock_guard<std::mutex> lock(platform.mu);
                ++platform.targets_built;
                return std::make_unique<FakeTarget>(platform, d);
            });
        writer->SetAfterCommit([this] { engine->Wake(); });
        engine->Start();
    }
    ~Rig() {
        writer->SetAfterCommit(nullptr);
        engine->Stop();
        writer->Stop();
    }
    void Add(const std::string& destination, const std::string& key) {
        mapping::MembershipChange c;
        c.audience_id = "aud_1";
        c.audience_key = "k";
        c.context_kind = "user";
        c.context_key = key;
        c.included = true;
        c.event_time_ms = 1000 + seq;
        std::string id = "m" + std::to_string(++seq);
        REQUIRE(writer->Run([&](store::WriteStore& w) { w.Apply(destination, id, c, 0); }, 1).ok());
    }
    // `keys` members of one segment in one commit (so one scan sees them all), every
    // third one excluded.
    void AddMany(const std::string& destination, const std::vector<std::string>& keys) {
        REQUIRE(writer
                    ->Run(
                        [&](store::WriteStore& w) {
                            for (size_t i = 0; i < keys.size(); ++i) {
                                mapping::MembershipChange c;
                                c.audience_id = "aud_1";
                                c.audience_key = "k";
                                c.context_kind = "user";
                                c.context_key = keys[i];
                                c.included = i % 3 != 2;
                                c.event_time_ms = 1000 + seq;
                                w.Apply(destination, "m" + std::to_string(++seq), c, 0);
                            }
                        },
                        keys.size())
                    .ok());
    }
    int64_t Count(const std::string& sql) {
        store::Database d(db, false);
        return store::TestAccess::Int(d, sql);
    }
    int64_t Pending(const std::string& destination) {
        return Count(
            "SELECT count(*) FROM deliveries d JOIN segments s ON s.id = d.segment_id WHERE "
            "d.pending = 1 AND d.dead = 0 AND s.destination = '" +
            destination + "'");
    }
    bool AuthFailed() {
        return Count(
                   "SELECT count(*) FROM targets WHERE destination = 'ld' AND status = "
                   "'auth_failed' AND paused_until_ms > 0") == 1;
    }
};

const std::string kRefusal = R"({"code":"unauthorized","message":"invalid access token"})";

// A replay: `batches` × max_batch pending members of one segment, pushed with
// max_batch 10 and `max_in_flight`, each push held at the platform until a second one
// of the segment is in flight or `gate_ms` passed. Checks what holds whatever the
// concurrency: every member pushed once, with its desired value, in a batch of at most
// max_batch, never in two overlapping pushes, and acknowledged as desired. Returns the
// pushes.
std::vector<PushRecord> Replay(int max_in_flight, int batches, int64_t gate_ms) {
    constexpr int kBatch = 10;
    Lines lines;
    Rig rig({"ld"}, 4, [&](config::Destination& d) {
        d.max_batch = kBatch;
        d.max_in_flight = max_in_flight;
    });
    rig.platform.Answer(204);
    {
        std::lock_guard<std::mutex> lock(rig.platform.mu);
        rig.platform.gate_at = 2;
        rig.platform.gate_ms = gate_ms;
    }
    std::vector<std::string> keys;
    for (int i = 0; i < batches * kBatch; ++i) keys.push_back("u" + std::to_string(1000 + i));
    rig.AddMany("ld", keys);
    REQUIRE_MESSAGE(Eventually([&] { return rig.Pending("ld") == 0; }, 30000), lines.All());

    // Acknowledged exactly as desired, at the version desired.
    CHECK(rig.Count("SELECT count(*) FROM deliveries d JOIN memberships m ON m.segment_id = "
                    "d.segment_id AND m.context_key = d.context_key WHERE d.target = "
                    "'launchdarkly' AND d.pending = 0 AND d.dead = 0 AND d.acked = m.desired "
                    "AND d.acked_version = m.version") == static_cast<int64_t>(keys.size()));
    CHECK(rig.Count("SELECT count(*) FROM deliveries") == static_cast<int64_t>(keys.size()));

    std::vector<PushRecord> records;
    {
        std::lock_guard<std::mutex> lock(rig.platform.mu);
        records = rig.platform.records;
    }
    std::map<std::string, bool> desired;
    for (size_t i = 0; i < keys.size(); ++i) desired[keys[i]] = i % 3 != 2;  // as AddMany
    std::map<std::string, int> pushed;  // times each key was pushed
    for (const auto& r : records) {
        CHECK(r.audience_id == "aud_1");
        CHECK(r.members.size() <= static_cast<size_t>(kBatch));
        CHECK(r.in_flight <= std::max(1, max_in_flight));
        for (const auto& m : r.members) {
            ++pushed[m.context_key];
            auto want = desired.find(m.context_key);
            REQUIRE_MESSAGE(want != desired.end(), m.context_key);
            CHECK_MESSAGE(m.value == want->second, m.context_key);
        }
    }
    CHECK(pushed.size() == keys.size());
    for (const auto& [key, times] : pushed) CHECK_MESSAGE(times == 1, key);
    for (size_t a = 0; a < records.size(); ++a) {
        for (size_t b = a + 1; b < records.size(); ++b) {
            if (!Overlap(records[a], records[b])) continue;
            std::set<std::string> in_a;
            for (const auto& m : records[a].members) in_a.insert(m.context_key);
            for (const auto& m : records[b].members) {
                CHECK_MESSAGE(in_a.count(m.context_key) == 0,
                              m.context_key << " in two overlapping pushes");
            }
        }
    }
    CHECK(lines.Count(log::Level::kWarn, "is retrying") == 0);
    return records;
}

int MostInFlight(const std::vector<PushRecord>& records) {
    int most = 0;
    for (const auto& r : records) most = std::max(most, r.in_flight);
    return most;
}

bool AnyOverlap(const std::vector<PushRecord>& records) {
    for (size_t a = 0; a < records.size(); ++a) {
        for (size_t b = a + 1; b < records.size(); ++b) {
            if (Overlap(records[a], records[b])) return true;
        }
    }
    return false;
}

}  // namespace

TEST_SUITE("sync engine") {
    TEST_CASE("Resume clears a refused-token pause and pushes what is pending at once") {
        Lines lines;
        Rig rig;
        rig.platform.Answer(401, kRefusal);
        for (int i = 0; i < 3; ++i) rig.Add("ld", "u" + std::to_string(i));
        REQUIRE(Eventually([&] { return rig.AuthFailed(); }, 10000));
        CHECK(Eventually(
            [&] { return lines.Count(log::Level::kWarn, "refused its credentials") == 1; }, 5000));
        CHECK(lines.AnyContains("HTTP 401: invalid access token"));
        CHECK_FALSE(lines.AnyContains(kSecretToken));
        const int refused = rig.platform.Pushes();
        CHECK(rig.Pending("ld") == 3);

        rig.platform.Answer(204);
        CHECK(rig.engine->Resume("nope").error().code == ErrorCode::kNotFound);
        REQUIRE(rig.engine->Resume("ld").ok());
        // auth_retry_ms is ten minutes: only the resume can make this happen in time.
        REQUIRE_MESSAGE(Eventually([&] { return rig.Pending("ld") == 0; }, 10000), lines.All());
        CHECK(rig.platform.Pushes() > refused);
        CHECK(rig.Count("SELECT count(*) FROM targets WHERE destination = 'ld' AND status = 'ok' "
                        "AND paused_until_ms = 0") == 1);
        CHECK(Eventually(
            [&] { return lines.Count(log::Level::kInfo, "accepts pushes again") == 1; }, 5000));
        CHECK(lines.Count(log::Level::kInfo, "resumed by an operator") == 1);
    }

    TEST_CASE("a resume written to the database by another process counts within one scan") {
        Lines lines;
        Rig rig;
        rig.platform.Answer(401, kRefusal);
        rig.Add("ld", "u1");
        REQUIRE(Eventually([&] { return rig.AuthFailed(); }, 10000));
        rig.platform.Answer(204);
        {
            // What `audsync resume` does while a server runs: its own connection.
            REQUIRE(store::WriteDirect(rig.db, [](store::WriteStore& w) {
                        w.ResumeDestination("ld", text::NowMs());
                    }).ok());
        }
        const int64_t resumed_at = text::NowMs();
        REQUIRE_MESSAGE(Eventually([&] { return rig.Pending("ld") == 0; }, 15000), lines.All());
        CHECK(text::NowMs() - resumed_at < 12000);  // a scan is at most 5 s apart
        CHECK(lines.Count(log::Level::kInfo, "resumed (its pause was cleared)") == 1);
    }

    TEST_CASE("ResumeDestination makes only that destination's live pending members due") {
        testing::TempDir dir;
        store::Database db(dir.File("r.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureTargets("a", store::ImplicitTargets(), 0);
        w.EnsureTargets("b", store::ImplicitTargets(), 0);
        mapping::MembershipChange c;
        c.audience_id = "aud";
        c.audience_key = "k";
        c.context_kind = "user";
        c.included = true;
        c.event_time_ms = 1;
        for (const char* key : {"x", "dead"}) {
            c.context_key = key;
            w.Apply("a", std::string("a-") + key, c, 0);
            w.Apply("b", std::string("b-") + key, c, 0);
        }
        store::SyncReader r(db);
        auto due = r.DueSegments(0);
        REQUIRE(due.size() == 2);
        for (const auto& s : due) {
            w.RecordRetry(s.id, "x", "launchdarkly", 900000, 401, "HTTP 401", 0);
            w.RecordDead(s.id, "dead", "launchdarkly", 1, 400, "HTTP 400", 0);
        }
        w.SetTargetState("a", "launchdarkly", "auth_failed", 900000, std::string("HTTP 401"),
                         std::nullopt);
        w.SetTargetState("b", "launchdarkly", "auth_failed", 900000, std::string("HTTP 401"),
                         std::nullopt);
        CHECK(r.DueSegments(1000).empty());
        w.ResumeDestination("a", 1000);
        auto now_due = r.DueSegments(1000);
        REQUIRE(now_due.size() == 1);
        CHECK(now_due[0].destination == "a");
        auto members = r.Dirty(now_due[0].id, "launchdarkly", 1000, 10);
        REQUIRE(members.size() == 1);
        CHECK(members[0].context_key == "x");  // the dead letter stays dead
        auto pauses = r.TargetPauses();
        CHECK(pauses["a/launchdarkly"] == 0);
        CHECK(pauses["b/launchdarkly"] == 900000);
        w.ResumeDestination("unknown", 1000);  // changes nothing, throws nothing
        CHECK(r.TargetPauses().size() == 2);
    }

    TEST_CASE("a huge Retry-After pauses for retry_max_ms, not forever and not never") {
        Lines lines;
        Rig rig;
        rig.platform.Answer(429, R"({"message":"slow down"})", "99999999999999999999");
        rig.Add("ld", "u1");
        // Pause = the push's time + the capped wait (retry_max_ms 400 < the 1 s floor).
        REQUIRE(Eventually(
            [&] {
                return rig.Count(
                           "SELECT count(*) FROM targets d, deliveries m WHERE d.destination = "
                           "'ld' "
                           "AND d.status = 'rate_limited' AND "
                           "d.paused_until_ms - m.last_push_ms = 1000") == 1;
            },
            10000));
        // The line is logged after the outcome is committed: wait for it.
        CHECK(Eventually(
            [&] {
                return lines.Count(log::Level::kWarn, "is rate limited (HTTP 429: slow down)") == 1;
            },
            5000));
        CHECK(rig.platform.Pushes() <= 3);  // not thousands
    }

    TEST_CASE("transient failures log one line when they start and one when they end") {
        Lines lines;
        Rig rig;
        rig.platform.Answer(503, R"({"message":"try later"})");
        rig.Add("ld", "u1");
        REQUIRE(Eventually([&] { return rig.platform.Pushes() >= 4; }, 10000));
        rig.platform.Answer(204);
        REQUIRE(Eventually([&] { return rig.Pending("ld") == 0; }, 10000));
        CHECK(Eventually([&] { return lines.Count(log::Level::kInfo, "is accepted again") == 1; },
                         5000));
        CHECK_MESSAGE(lines.Count(log::Level::kWarn, "is retrying (HTTP 503: try later)") == 1,
                      lines.All());
    }

    TEST_CASE(
        "Reload: pushes keep their snapshot, changed targets are rebuilt, removed destinations "
        "wait") {
        Lines lines;
        Rig rig({"ld", "other"}, 1);  // one worker: target builds can be counted exactly
        auto built = [&] {
            std::lock_guard<std::mutex> lock(rig.platform.mu);
            return rig.platform.targets_built;
        };
        rig.platform.Answer(204);
        rig.Add("ld", "u1");
        REQUIRE(Eventually([&] { return rig.Pending("ld") == 0; }, 10000));
        CHECK(built() == 1);

        // Settings a target does not use: the same target goes on.
        auto same =
            std::make_shared<config::Config>(*MakeConfig(rig.db, {"ld", "other"}, kSecretToken, 1));
        same->destinations[0].max_batch = 3;
        rig.engine->Reload(same);
        rig.Add("ld", "u2");
        REQUIRE(Eventually([&] { return rig.Pending("ld") == 0; }, 10000));
        CHECK(built() == 1);

        // A rotated token, while a push with the old one is in flight.
        {
            std::lock_guard<std::mutex> lock(rig.platform.mu);
            rig.platform.hold = true;
        }
        rig.Add("ld", "u3");
        REQUIRE(Eventually(
            [&] {
                std::lock_guard<std::mutex> lock(rig.platform.mu);
                return rig.platform.held == 1;
            },
            10000));
        rig.engine->Reload(MakeConfig(rig.db, {"ld", "other"}, "rotated-token", 1));
        {
            std::lock_guard<std::mutex> lock(rig.platform.mu);
            rig.platform.hold = false;
        }
        rig.platform.cv.notify_all();
        REQUIRE(Eventually([&] { return rig.Pending("ld") == 0; }, 10000));
        rig.Add("ld", "u4");
        REQUIRE(Eventually([&] { return rig.Pending("ld") == 0; }, 10000));
        CHECK(built() == 2);
        {
            std::lock_guard<std::mutex> lock(rig.platform.mu);
            CHECK(rig.platform.tokens == std::vector<std::string>{kSecretToken, kSecretToken,
                                                                  kSecretToken, "rotated-token"});
        }

        // ld removed: its members wait; the other destination goes on.
        rig.engine->Reload(MakeConfig(rig.db, {"other"}, "rotated-token", 1));
        rig.Add("ld", "u5");
        rig.Add("other", "o1");
        REQUIRE(Eventually([&] { return rig.Pending("other") == 0; }, 10000));
        rig.Add("other", "o2");  // a second scan after ld's member was committed
        REQUIRE(Eventually([&] { return rig.Pending("other") == 0; }, 10000));
        CHECK(rig.Pending("ld") == 1);
        // Back in the config: it goes out.
        rig.engine->Reload(MakeConfig(rig.db, {"ld", "other"}, "rotated-token", 1));
        CHECK(Eventually([&] { return rig.Pending("ld") == 0; }, 10000));
    }
}

TEST_SUITE("sync engine lanes") {
    TEST_CASE("a replay goes out in concurrent lanes of disjoint batches") {
        // 5 batches, 4 slots: a wave of 4 lanes, then the fifth batch.
        const auto records = Replay(4, 5, 5000);
        CHECK(records.size() >= 5);
        CHECK(MostInFlight(records) > 1);
        CHECK(AnyOverlap(records));
    }

    TEST_CASE("with max_in_flight 1 a segment's pushes never overlap") {
        // The gate waits up to 300 ms per push for a second one that must never come.
        const auto records = Replay(1, 3, 300);
        CHECK(records.size() == 3);
        CHECK(MostInFlight(records) == 1);
        CHECK_FALSE(AnyOverlap(records));
    }
}

TEST_SUITE("log") {
    TEST_CASE("levels parse from their names only") {
        CHECK(log::ParseLevel("error") == log::Level::kError);
        CHECK(log::ParseLevel("warn") == log::Level::kWarn);
        CHECK(log::ParseLevel("info") == log::Level::kInfo);
        CHECK(log::ParseLevel("debug") == log::Level::kDebug);
        for (const char* bad : {"", "WARN", "warning", "trace", "info "}) {
            CAPTURE(bad);
            CHECK_FALSE(log::ParseLevel(bad).has_value());
        }
    }

    TEST_CASE("the sink receives lines above the level, and Debug is filtered by default") {
        Lines lines;
        log::Debug("hidden");
        log::Info("shown");
        log::SetLevel(log::Level::kDebug);
        log::Debug("now shown");
        log::SetLevel(log::Level::kWarn);
        log::Info("hidden too");
        log::Warn("warned");
        log::SetLevel(log::Level::kInfo);
        CHECK(lines.Count(log::Level::kDebug, "hidden") == 0);
        CHECK(lines.Count(log::Level::kInfo, "shown") == 1);
        CHECK(lines.Count(log::Level::kDebug, "now shown") == 1);
        CHECK(lines.Count(log::Level::kInfo, "hidden too") == 0);
        CHECK(lines.Count(log::Level::kWarn, "warned") == 1);
    }

    TEST_CASE("Clip never cuts a UTF-8 character") {
        CHECK(log::Clip("abc", 3) == "abc");
        CHECK(log::Clip("abcd", 3) == "abc\xE2\x80\xA6");
        CHECK(log::Clip("ab\xC3\xA9", 3) == "ab\xE2\x80\xA6");         // é cut: dropped
        CHECK(log::Clip("a\xF0\x9F\x98\x80z", 3) == "a\xE2\x80\xA6");  // 4-byte emoji
        CHECK(log::Clip("\xC3\xA9\xC3\xA9", 2) == "\xC3\xA9\xE2\x80\xA6");
        CHECK(log::Clip("", 0) == "");
    }
}
