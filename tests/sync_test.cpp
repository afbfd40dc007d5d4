#include <doctest/doctest.h>

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
        Row rows[] =
            {
                {500, 0, 500, 1000},     {502, 0, 500, 1000}, {503, 1, 1000, 2000},
                {504, 2, 2000, 4000},    {409, 0, 500, 1000}, {0, 3, 4000, 8000},
                {500, 20, 30000, 60000},  // capped at retry_max
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
        CHECK(past.delay_ms == 0);

        HttpResult both = reset;
        both.retry_after = "1";
        CHECK(sync::Decide(both, 0, 10, 1700000000000, kSchedule, 0.0).delay_ms == 1000);

        HttpResult neither = Answer(429);
        neither.retry_after = "soon";
        auto fallback = sync::Decide(neither, 2, 10, 0, kSchedule, 0.0);
        CHECK(fallback.action == Action::kRateLimited);
        CHECK(fallback.delay_ms == 2000);  // the exponential schedule
        CHECK_FALSE(sync::RateLimitWait(neither, 0).has_value());
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
        w.EnsureDestination("ld", 0);
        for (int i = 0; i < 10; ++i) {
            w.Apply("ld", "m" + std::to_string(i), Flip("u1", i % 2 == 0, 100 + i), "{}", 0);
        }
        store::SyncReader r(db);
        auto due = r.DueSegments(1000);
        REQUIRE(due.size() == 1);
        auto dirty = r.Dirty(due[0].id, 1000, 100);
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
        w.EnsureDestination("ld", 0);
        for (int i = 0; i < 5; ++i) {
            w.Apply("ld", "a" + std::to_string(i), Flip("u" + std::to_string(i), true, 1), "{}", 0);
            w.Apply("ld", "b" + std::to_string(i), Flip("u" + std::to_string(i), true, 1, "aud_2"),
                    "{}", 0);
            w.Apply("ld", "c" + std::to_string(i),
                    Flip("u" + std::to_string(i), true, 1, "aud_1", "account"), "{}", 0);
        }
        store::SyncReader r(db);
        auto due = r.DueSegments(1000);
        REQUIRE(due.size() == 3);
        std::set<std::pair<std::string, std::string>> seen;
        for (const auto& s : due) {
            seen.insert({s.audience_id, s.context_kind});
            CHECK(r.Dirty(s.id, 1000, 3).size() == 3);
            CHECK(r.Dirty(s.id, 1000, 100).size() == 5);
        }
        CHECK(seen.size() == 3);
        w.RecordRetry(due[0].id, "u0", 5000, 500, "HTTP 500", 1000);
        CHECK(r.Dirty(due[0].id, 1000, 100).size() == 4);
        CHECK(r.NextAttemptAfter(1000) == std::optional<int64_t>(5000));
        CHECK(r.Dirty(due[0].id, 5000, 100).size() == 5);
    }

    TEST_CASE("an acknowledgement records the pushed state, so a newer change stays due") {
        testing::TempDir dir;
        store::Database db(dir.File("v.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureDestination("ld", 0);
        w.Apply("ld", "m1", Flip("u1", true, 100), "{}", 0);
        store::SyncReader r(db);
        auto seg = r.DueSegments(1000)[0].id;
        auto pushed = r.Dirty(seg, 1000, 10)[0];               // (u1, true, v1) goes out...
        w.Apply("ld", "m2", Flip("u1", false, 200), "{}", 0);  // ...and changes meanwhile
        w.RecordAck(seg, pushed.context_key, pushed.desired, pushed.version, 204, 1500);
        auto still = r.Dirty(seg, 2000, 10);
        REQUIRE(still.size() == 1);
        CHECK_FALSE(still[0].desired);
        CHECK(still[0].version == 2);
        w.RecordAck(seg, "u1", false, 2, 204, 2500);
        CHECK(r.Dirty(seg, 3000, 10).empty());
        auto m = store::FindMembership(db, "ld", "aud_1", "user", "u1");
        CHECK(m->acked == std::optional<bool>(false));
        // A late acknowledgement of the older version does not regress the record.
        w.RecordAck(seg, "u1", true, 1, 204, 2600);
        CHECK(store::FindMembership(db, "ld", "aud_1", "user", "u1")->acked ==
              std::optional<bool>(false));
    }

    TEST_CASE("a removal never pushed as included is pushed once") {
        testing::TempDir dir;
        store::Database db(dir.File("x.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureDestination("ld", 0);
        w.Apply("ld", "m1", Flip("ghost", false, 100), "{}", 0);
        store::SyncReader r(db);
        auto seg = r.DueSegments(1000)[0].id;
        auto d = r.Dirty(seg, 1000, 10);
        REQUIRE(d.size() == 1);
        w.RecordAck(seg, "ghost", false, d[0].version, 204, 1000);
        CHECK(r.DueSegments(2000).empty());
        w.Apply("ld", "m2", Flip("ghost", false, 200), "{}", 0);  // another exit
        CHECK(r.DueSegments(3000).empty());
    }

    TEST_CASE("dead letters hold until the state changes") {
        testing::TempDir dir;
        store::Database db(dir.File("dl.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::WriteStore w(db);
        w.EnsureDestination("ld", 0);
        w.Apply("ld", "m1", Flip("bad", true, 100), "{}", 0);
        store::SyncReader r(db);
        auto seg = r.DueSegments(1000)[0].id;
        w.RecordDead(seg, "bad", 1, 400, "HTTP 400: refused", 1000);
        CHECK(r.DueSegments(2000).empty());
        w.Apply("ld", "m2", Flip("bad", true, 150), "{}", 0);  // same state: still dead
        CHECK(r.DueSegments(2000).empty());
        w.Apply("ld", "m3", Flip("bad", false, 200), "{}", 0);  // new state: due again
        CHECK(r.DueSegments(2000).size() == 1);
        // A refusal of an older version does not bury the newer state.
        w.RecordDead(seg, "bad", 1, 400, "HTTP 400: refused", 2000);
        CHECK(r.DueSegments(2000).size() == 1);
    }
}
