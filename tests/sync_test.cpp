// Unit tests of the sync policy (answer -> action tables, Retry-After, bisection) and its store.
#include <doctest/doctest.h>

#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "audsync/sync/policy.hpp"
#include "audsync/targets/launchdarkly.hpp"
#include "support/helpers.hpp"

using namespace audsync;
using sync::Action;
using targets::HttpResult;

namespace {

HttpResult Answer(int status) {
    HttpResult r;
    r.status = status;
    if (status == 0) r.transport_error = "Couldn't connect to server";
    return r;
}

const sync::RetrySchedule kSchedule{1000, 60000, 120000};

}  // namespace

TEST_SUITE("sync") {
    TEST_CASE("outcome to action: successful answers") {
        for (int s : {200, 201, 202, 204}) {
            CAPTURE(s);
            auto d = sync::Decide(Answer(s), 3, 10, 0, kSchedule, 0.5);
            CHECK(d.action == Action::kAcknowledge);
            CHECK(d.error.empty());
        }
    }

    TEST_CASE("outcome to action: recoverable answers back off exponentially") {
        struct Row {
            int status;
            int attempts;
            int64_t min_delay;
            int64_t max_delay;
        };
        Row rows[] = {
            {500, 0, 500, 1000},        {502, 0, 500, 1000}, {503, 1, 1000, 2000},
            {504, 2, 2000, 4000},       {408, 0, 500, 1000}, {0, 3, 4000, 8000},
            {500, 20, 30000, 60000},   // capped at retry_max
            {503, 500, 30000, 60000},  // transient answers are retried without end
            {0, 1000000, 30000, 60000},
        };
        for (const auto& r : rows) {
            CAPTURE(r.status);
            CAPTURE(r.attempts);
            for (double jitter : {0.0, 0.5, 0.999}) {
                auto d = sync::Decide(Answer(r.status), r.attempts, 10, 0, kSchedule, jitter);
                CHECK(d.action == Action::kRetry);
                CHECK(d.delay_ms >= r.min_delay);
                CHECK(d.delay_ms < r.max_delay);
                CHECK_FALSE(d.error.empty());
            }
        }
        CHECK(sync::Decide(Answer(0), 0, 1, 0, kSchedule, 0).error ==
              "no answer: Couldn't connect to server");
    }

    TEST_CASE("outcome to action: 429 honours Retry-After and X-Ratelimit-Reset with jitter") {
        HttpResult retry_after = Answer(429);
        retry_after.retry_after = "7";
        auto low = sync::Decide(retry_after, 0, 10, 0, kSchedule, 0.0);
        auto high = sync::Decide(retry_after, 0, 10, 0, kSchedule, 0.999);
        CHECK(low.action == Action::kRateLimited);
        CHECK(low.delay_ms == 7000);
        CHECK(high.delay_ms > 7000);
        CHECK(high.delay_ms < 7000 + 700 + 100);

        HttpResult reset = Answer(429);
        reset.ratelimit_reset = "1700000002500";  // epoch ms
        auto r = sync::Decide(reset, 0, 10, 1700000000000, kSchedule, 0.0);
        CHECK(r.action == Action::kRateLimited);
        CHECK(r.delay_ms == 2500);
        auto past = sync::Decide(reset, 0, 10, 1700000009000, kSchedule, 0.0);
        CHECK(past.delay_ms == sync::kRateLimitFloorMs);  // never sooner than 1 s

        HttpResult both = reset;
        both.retry_after = "1";
        CHECK(sync::Decide(both, 0, 10, 1700000000000, kSchedule, 0.0).delay_ms == 1000);

        HttpResult neither = Answer(429);
        neither.retry_after = "soon";
        auto fallback = sync::Decide(neither, 2, 10, 0, kSchedule, 0.0);
        CHECK(fallback.action == Action::kRateLimited);
        CHECK(fallback.delay_ms == 2000);  // the exponential schedule
        CHECK_FALSE(sync::RateLimitWait(neither, 0, 60000).has_value());
    }

    TEST_CASE("outcome to action: refused credentials") {
        for (int s : {401, 403}) {
            auto d = sync::Decide(Answer(s), 0, 10, 0, kSchedule, 0.0);
            CHECK(d.action == Action::kAuthFailed);
            CHECK(d.delay_ms == 120000);
            CHECK(sync::Decide(Answer(s), 0, 10, 0, kSchedule, 0.999).delay_ms < 132000);
        }
    }

    TEST_CASE("outcome to action: permanent refusals split, then dead-letter") {
        for (int s : {400, 404, 413, 422}) {
            CAPTURE(s);
            CHECK(sync::Decide(Answer(s), 0, 2, 0, kSchedule, 0.5).action == Action::kSplit);
            CHECK(sync::Decide(Answer(s), 0, 1, 0, kSchedule, 0.5).action == Action::kDeadLetter);
        }
        HttpResult body = Answer(400);
        body.body = R"({"message":"bad key"})";
        CHECK(sync::Decide(body, 0, 1, 0, kSchedule, 0).error ==
              R"(HTTP 400: {"message":"bad key"})");
        CHECK(sync::Decide(body, 0, 1, 0, kSchedule, 0).message == "bad key");
    }

    TEST_CASE("outcome to action: answers retrying will not change end as dead letters") {
        struct Row {
            int status;
            int attempts;  // of the member before this answer
            Action action;
        };
        Row rows[] = {
            {409, 0, Action::kRetry},       {409, 1, Action::kRetry},
            {409, 2, Action::kDeadLetter},  // the third attempt is the last
            {409, 40, Action::kDeadLetter}, {302, 0, Action::kRetry},
            {302, 2, Action::kDeadLetter},  {101, 2, Action::kDeadLetter},
        };
        static_assert(sync::kMaxRefusedAttempts == 3);
        for (const auto& r : rows) {
            CAPTURE(r.status);
            CAPTURE(r.attempts);
            for (size_t batch : {size_t{1}, size_t{7}}) {
                auto d = sync::Decide(Answer(r.status), r.attempts, batch, 0, kSchedule, 0.5);
                CHECK(d.action == r.action);
                CHECK(d.status == r.status);
            }
        }
        // Whatever retry_max_ms says, the three attempts end within two minutes.
        const sync::RetrySchedule slow{100000, 3600000, 120000};
        int64_t waited = 0;
        for (int attempts = 0;; ++attempts) {
            auto d = sync::Decide(Answer(409), attempts, 1, 0, slow, 0.999);
            if (d.action == Action::kDeadLetter) {
                CHECK(attempts + 1 == sync::kMaxRefusedAttempts);
                break;
            }
            REQUIRE(d.action == Action::kRetry);
            CHECK(d.delay_ms <= sync::kRefusedRetryMaxMs);
            waited += d.delay_ms;
        }
        CHECK(waited <= 120000);
        // The dead letter carries the platform's status and message.
        HttpResult conflict = Answer(409);
        conflict.body = R"({"code":"conflict","message":"the segment holds another kind"})";
        auto d = sync::Decide(conflict, 2, 1, 0, kSchedule, 0.0);
        CHECK(d.action == Action::kDeadLetter);
        CHECK(d.status == 409);
        CHECK(d.message == "the segment holds another kind");
        CHECK(d.error.find("the segment holds another kind") != std::string::npos);
    }

    TEST_CASE(
        "Retry-After: delta-seconds saturate, HTTP-dates count from now, garbage is ignored") {
        const int64_t now = 784111777000;  // Sun, 06 Nov 1994 08:49:37 GMT
        struct Row {
            const char* value;
            std::optional<int64_t> ms;
        };
        Row rows[] = {
            {"0", 0},
            {"7", 7000},
            {"120", 120000},
            {"99999999999999999999", std::numeric_limits<int64_t>::max()},
            {"9223372036854776", std::numeric_limits<int64_t>::max()},  // * 1000 overflows
            {"Sun, 06 Nov 1994 08:49:37 GMT", 0},
            {"Sun, 06 Nov 1994 08:50:07 GMT", 30000},
            {"Sat, 05 Nov 1994 08:49:37 GMT", 0},  // past
            {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
            {"-5", std::nullopt},
            {" 5", std::nullopt},
            {"5s", std::nullopt},
            {"", std::nullopt},
            {"soon", std::nullopt},
            {"Sun, 06 Nov 1994 08:49:37 UTC", std::nullopt},
            {"Sun, 32 Nov 1994 08:49:37 GMT", std::nullopt},
            {"Xyz, 06 Nov 1994 08:49:37 GMT", std::nullopt},
            {"Sun, 06 Foo 1994 08:49:37 GMT", std::nullopt},
        };
        for (const auto& r : rows) {
            CAPTURE(r.value);
            CHECK(sync::RetryAfterMs(r.value, now) == r.ms);
        }
        CHECK(sync::ParseHttpDate("Thu, 01 Jan 1970 00:00:00 GMT") == std::optional<int64_t>(0));
        CHECK(sync::ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT") == std::optional<int64_t>(now));
        CHECK(sync::ParseHttpDate("Tue, 29 Feb 2028 23:59:59 GMT") ==
              std::optional<int64_t>(1835481599000));
    }

    TEST_CASE("429 waits are capped at retry_max_ms and floored at 1 s") {
        const int64_t now = 1700000000000;
        struct Row {
            std::optional<std::string> retry_after;
            std::optional<std::string> reset;
            int64_t min_delay;
            int64_t max_delay;
        };
        Row rows[] = {
            {std::string("99999999999999999999"), std::nullopt, 60000, 60000},  // was negative
            {std::string("0"), std::nullopt, 1000, 1000},
            {std::string("garbage"), std::nullopt, 1000, 1000},  // backoff(0) = 500, floored
            {std::string("Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt, 1000, 1000},  // past
            {std::string("Tue, 14 Nov 2023 22:13:40 GMT"), std::nullopt, 20000, 22100},
            {std::nullopt, std::string("99999999999999999999"), 60000, 60000},
            {std::nullopt, std::string("1700000000000"), 1000, 1000},
            {std::nullopt, std::string("-1"), 1000, 1000},
            {std::nullopt, std::string("1700000030000"), 30000, 33100},
        };
        for (const auto& r : rows) {
            CAPTURE(r.retry_after.value_or("-"));
            CAPTURE(r.reset.value_or("-"));
            for (double jitter : {0.0, 0.999}) {
                HttpResult a = Answer(429);
                a.retry_after = r.retry_after;
                a.ratelimit_reset = r.reset;
                auto d = sync::Decide(a, 0, 5, now, kSchedule, jitter);
                CHECK(d.action == Action::kRateLimited);
                CHECK(d.delay_ms >= r.min_delay);
                CHECK(d.delay_ms <= r.max_delay);
            }
        }
        HttpResult huge = Answer(429);
        huge.retry_after = "99999999999999999999";
        CHECK(sync::RateLimitWait(huge, now, 60000) == std::optional<int64_t>(60000));
        CHECK(sync::RateLimitWait(huge, now, -5) == std::optional<int64_t>(0));
    }

    TEST_CASE("platform messages are cut at a UTF-8 character boundary") {
        // "é" is two bytes: a cut in its middle must drop it whole.
        std::string long_message = std::string(199, 'a') + "\xC3\xA9" + "tail";
        std::string body = R"({"message":")" + long_message + R"("})";
        std::string m = sync::PlatformMessage(body);
        CHECK(m == std::string(199, 'a') + "\xE2\x80\xA6");
        CHECK(
            sync::PlatformMessage(R"({"code":"unauthorized","message":"invalid access token"})") ==
            "invalid access token");
        CHECK(sync::PlatformMessage("plain text") == "plain text");
        CHECK(sync::PlatformMessage("") == "");
        HttpResult r = Answer(401);
        r.body = std::string(511, 'x') + "\xE2\x82\xAC" + "rest";  // a 3-byte character at the cut
        std::string error = sync::Decide(r, 0, 1, 0, kSchedule, 0).error;
        CHECK(error == "HTTP 401: " + std::string(511, 'x') + "\xE2\x80\xA6");
    }

    TEST_CASE("backoff stays within its bounds for every jitter") {
        for (int attempts = 0; attempts < 40; ++attempts) {
            for (double j : {0.0, 0.25, 0.5, 0.75, 0.999999, 1.0, -1.0}) {
                int64_t d = sync::Backoff(attempts, kSchedule, j);
                CHECK(d >= 500);
                CHECK(d < 60000);
            }
        }
    }

    TEST_CASE("bisection isolates the refused members and pushes the rest") {
        std::vector<targets::PushMember> members;
        for (int i = 0; i < 16; ++i) members.push_back({"k" + std::to_string(i), true});
        std::set<std::string> poisoned{"k3", "k11", "k12"};
        std::vector<size_t> sizes;
        std::set<std::string> accepted;
        auto push = [&](const std::vector<targets::PushMember>& part) {
            sizes.push_back(part.size());
            for (const auto& m : part) {
                if (poisoned.count(m.context_key)) return Answer(400);
            }
            for (const auto& m : part) accepted.insert(m.context_key);
            return Answer(204);
        };
        auto decide = [](const HttpResult& r, size_t n) {
            return sync::Decide(r, 0, n, 0, kSchedule, 0.0);
        };
        auto decisions = sync::PushWithBisection(members, push, decide);
        REQUIRE(decisions.size() == 16);
        for (size_t i = 0; i < 16; ++i) {
            CAPTURE(i);
            bool bad = poisoned.count(members[i].context_key) > 0;
            CHECK(decisions[i].action == (bad ? Action::kDeadLetter : Action::kAcknowledge));
            CHECK(accepted.count(members[i].context_key) == (bad ? 0u : 1u));
        }
        CHECK(sizes.front() == 16);
        CHECK(sizes.size() < 16 * 2);  // far fewer requests than one per member and level
    }

    TEST_CASE("bisection stops at a rate limit and holds the rest") {
        std::vector<targets::PushMember> members;
        for (int i = 0; i < 8; ++i) members.push_back({"k" + std::to_string(i), false});
        int calls = 0;
        auto push = [&](const std::vector<targets::PushMember>& part) {
            ++calls;
            if (part.size() == 8) return Answer(400);
            HttpResult r = Answer(429);
            r.retry_after = "2";
            return r;
        };
        auto decisions = sync::PushWithBisection(members, push, [](const HttpResult& r, size_t n) {
            return sync::Decide(r, 0, n, 0, kSchedule, 0.0);
        });
        CHECK(calls == 2);
        for (const auto& d : decisions) {
            CHECK(d.action == Action::kRateLimited);
            CHECK(d.delay_ms == 2000);
        }
    }

    TEST_CASE("cohort names in sentence case") {
        struct Row {
            const char* key;
            const char* name;
        };
        Row rows[] = {{"high_value_users", "High value users"},
                      {"churn", "Churn"},
                      {"a_b_c", "A b c"},
                      {"", ""},
                      {"Already_Upper", "Already Upper"},
                      {"_x", " x"}};
        for (const auto& r : rows) CHECK(targets::CohortName(r.key) == r.name);
    }

    TEST_CASE("the synced-segment body is byte-exact") {
        targets::PushRequest req{"aud_2g5VilffxpBYqelWk4K0yBzAuFl",
                                 "high_value_users",
                                 "user",
                                 {{"u123", true}, {"u456", false}}};
        CHECK(targets::SyncedSegmentBody("5f0c", req) ==
              R"({"environmentId":"5f0c","contextKind":"user",)"
              R"("batch":[{"userId":"u123","cohortName":"High value users",)"
              R"("cohortId":"aud_2g5VilffxpBYqelWk4K0yBzAuFl","value":true},)"
              R"({"userId":"u456","cohortName":"High value users",)"
              R"("cohortId":"aud_2g5VilffxpBYqelWk4K0yBzAuFl","value":false}]})");
        targets::PushRequest odd{"a", "k", "account", {{"q\"/\\\n", true}}};
        CHECK(
            targets::SyncedSegmentBody("c", odd) ==
            R"({"environmentId":"c","contextKind":"account","batch":[{"userId":"q\"/\\\n","cohortName":"K","cohortId":"a","value":true}]})");
    }
}

TEST_SUITE("sync store") {
    namespace {
    mapping::MembershipChange Flip(const std::string& key, bool included, int64_t time,
                                   const std::string& audience = "aud_1",
                                   const std::string& kind = "user") {
        mapping::MembershipChange c;
        c.audience_id = audience;
        c.audience_key = "k";
        c.context_kind = kind;
        c.context_key = key;
        c.included = included;
        c.event_time_ms = time;
        return c;
    }
    }  // namespace

    TEST_CASE("ten flips between pushes coalesce into one entry with the final state") {
        testing::TempDir dir;
        store::Database db(dir.File("c.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        for (int i = 0; i < 10; ++i) {
            w.Apply("ld", "m" + std::to_string(i), Flip("u1", i % 2 == 0, 100 + i), 0);
        }
        store::SyncReader r(db);
        auto due = r.DueSegments(1000);
        REQUIRE(due.size() == 1);
        auto dirty = r.Dirty(due[0].id, "launchdarkly", 1000, 100);
        REQUIRE(dirty.size() == 1);
        CHECK(dirty[0].context_key == "u1");
        CHECK_FALSE(dirty[0].desired);  // the 10th event (i = 9) is a removal
        CHECK(dirty[0].version == 10);
    }

    TEST_CASE("due members are per segment, limited, and not due before their time") {
        testing::TempDir dir;
        store::Database db(dir.File("d.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        for (int i = 0; i < 5; ++i) {
            w.Apply("ld", "a" + std::to_string(i), Flip("u" + std::to_string(i), true, 1), 0);
            w.Apply("ld", "b" + std::to_string(i), Flip("u" + std::to_string(i), true, 1, "aud_2"),
                    0);
            w.Apply("ld", "c" + std::to_string(i),
                    Flip("u" + std::to_string(i), true, 1, "aud_1", "account"), 0);
        }
        store::SyncReader r(db);
        auto due = r.DueSegments(1000);
        REQUIRE(due.size() == 3);
        std::set<std::pair<std::string, std::string>> seen;
        for (const auto& s : due) {
            seen.insert({s.audience_id, s.context_kind});
            CHECK(r.Dirty(s.id, "launchdarkly", 1000, 3).size() == 3);
            CHECK(r.Dirty(s.id, "launchdarkly", 1000, 100).size() == 5);
        }
        CHECK(seen.size() == 3);
        w.RecordRetry(due[0].id, "u0", "launchdarkly", 5000, 500, "HTTP 500", 1000);
        CHECK(r.Dirty(due[0].id, "launchdarkly", 1000, 100).size() == 4);
        CHECK(r.NextAttemptAfter(1000) == std::optional<int64_t>(5000));
        CHECK(r.Dirty(due[0].id, "launchdarkly", 5000, 100).size() == 5);
    }

    TEST_CASE("an acknowledgement records the pushed state, so a newer change stays due") {
        testing::TempDir dir;
        store::Database db(dir.File("v.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        w.Apply("ld", "m1", Flip("u1", true, 100), 0);
        store::SyncReader r(db);
        auto seg = r.DueSegments(1000)[0].id;
        auto pushed = r.Dirty(seg, "launchdarkly", 1000, 10)[0];  // (u1, true, v1) goes out...
        w.Apply("ld", "m2", Flip("u1", false, 200), 0);           // ...and changes meanwhile
        w.RecordAck(seg, pushed.context_key, "launchdarkly", pushed.desired, pushed.version, 204,
                    1500);
        auto still = r.Dirty(seg, "launchdarkly", 2000, 10);
        REQUIRE(still.size() == 1);
        CHECK_FALSE(still[0].desired);
        CHECK(still[0].version == 2);
        w.RecordAck(seg, "u1", "launchdarkly", false, 2, 204, 2500);
        CHECK(r.Dirty(seg, "launchdarkly", 3000, 10).empty());
        auto m = store::FindMembership(db, "ld", "aud_1", "user", "u1");
        CHECK(m->acked == std::optional<bool>(false));
        // A late acknowledgement of the older version does not regress the record.
        w.RecordAck(seg, "u1", "launchdarkly", true, 1, 204, 2600);
        CHECK(store::FindMembership(db, "ld", "aud_1", "user", "u1")->acked ==
              std::optional<bool>(false));
    }

    TEST_CASE("a removal never pushed as included is pushed once") {
        testing::TempDir dir;
        store::Database db(dir.File("x.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        w.Apply("ld", "m1", Flip("ghost", false, 100), 0);
        store::SyncReader r(db);
        auto seg = r.DueSegments(1000)[0].id;
        auto d = r.Dirty(seg, "launchdarkly", 1000, 10);
        REQUIRE(d.size() == 1);
        w.RecordAck(seg, "ghost", "launchdarkly", false, d[0].version, 204, 1000);
        CHECK(r.DueSegments(2000).empty());
        w.Apply("ld", "m2", Flip("ghost", false, 200), 0);  // another exit
        CHECK(r.DueSegments(3000).empty());
    }

    TEST_CASE("dead letters hold until the state changes") {
        testing::TempDir dir;
        store::Database db(dir.File("dl.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        w.Apply("ld", "m1", Flip("bad", true, 100), 0);
        store::SyncReader r(db);
        auto seg = r.DueSegments(1000)[0].id;
        w.RecordDead(seg, "bad", "launchdarkly", 1, 400, "HTTP 400: refused", 1000);
        CHECK(r.DueSegments(2000).empty());
        w.Apply("ld", "m2", Flip("bad", true, 150), 0);  // same state: still dead
        CHECK(r.DueSegments(2000).empty());
        w.Apply("ld", "m3", Flip("bad", false, 200), 0);  // new state: due again
        CHECK(r.DueSegments(2000).size() == 1);
        // A refusal of an older version does not bury the newer state.
        w.RecordDead(seg, "bad", "launchdarkly", 1, 400, "HTTP 400: refused", 2000);
        CHECK(r.DueSegments(2000).size() == 1);
    }
}
