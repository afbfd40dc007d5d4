#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "support/helpers.hpp"

using namespace audsync;

namespace {

mapping::MembershipChange Change(const std::string& key, bool included, int64_t time,
                                 const std::string& audience = "aud_1") {
    mapping::MembershipChange c;
    c.audience_id = audience;
    c.audience_key = "high_value_users";
    c.context_kind = "user";
    c.context_key = key;
    c.included = included;
    c.event_time_ms = time;
    return c;
}

struct Fixture {
    testing::TempDir dir;
    std::string path = dir.File("a.db");
    store::Database db{path, true};
    Fixture() { REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok()); }
};

}  // namespace

TEST_SUITE("store") {
    TEST_CASE("migrations apply once, in order, and are recorded") {
        testing::TempDir dir;
        store::Database db(dir.File("m.db"), true);
        CHECK(db.SchemaVersion() == 0);
        auto first = store::Migrate(db, store::EmbeddedMigrations());
        REQUIRE(first.ok());
        CHECK(first.value().size() == store::EmbeddedMigrations().size());
        CHECK(db.SchemaVersion() == store::EmbeddedMigrations().back().version);
        auto again = store::Migrate(db, store::EmbeddedMigrations());
        REQUIRE(again.ok());
        CHECK(again.value().empty());
    }

    TEST_CASE("a migration that fails leaves the database as it was") {
        testing::TempDir dir;
        store::Database db(dir.File("m.db"), true);
        std::vector<store::Migration> ms = {
            {1, "0001_ok", "CREATE TABLE a (x INTEGER);"},
            {2, "0002_bad", "CREATE TABLE b (x INTEGER); NOT SQL;"}};
        auto r = store::Migrate(db, ms);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().name == "migration_failed");
        CHECK(db.SchemaVersion() == 1);
        store::Statement s(db.handle(), "SELECT count(*) FROM sqlite_master WHERE name = 'b'");
        s.Step();
        CHECK(s.Int(0) == 0);
    }

    TEST_CASE("a database newer than the binary is refused") {
        testing::TempDir dir;
        store::Database db(dir.File("n.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        db.Exec("INSERT INTO schema_migrations VALUES (9999, '9999_future', 0)");
        auto r = store::Migrate(db, store::EmbeddedMigrations());
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().name == "schema_too_new");
        CHECK(r.error().message.find("schema version 9999") != std::string::npos);
    }

    TEST_CASE("WAL mode and foreign keys are on") {
        Fixture f;
        store::Statement wal(f.db.handle(), "PRAGMA journal_mode");
        wal.Step();
        CHECK(wal.Text(0) == "wal");
        store::Statement fk(f.db.handle(), "PRAGMA foreign_keys");
        fk.Step();
        CHECK(fk.Int(0) == 1);
    }

    TEST_CASE("last writer wins by event time, duplicates and stale events change nothing") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureDestination("ld", 0);
        using O = store::ApplyOutcome;
        struct Step {
            const char* message_id;
            bool included;
            int64_t time;
            O expected;
            bool desired_after;
            int64_t version_after;
        };
        Step steps[] = {
            {"m1", true, 100, O::kAccepted, true, 1},
            {"m1", false, 500, O::kDuplicate, true, 1},  // same messageId: not applied
            {"m0", false, 50, O::kStale, true, 1},       // older event arrives late
            {"m2", true, 200, O::kAccepted, true, 1},    // same state, newer: no new version
            {"m3", false, 200, O::kAccepted, false, 2},  // equal time: later arrival wins
            {"m4", true, 199, O::kStale, false, 2},
            {"m5", true, 300, O::kAccepted, true, 3},
        };
        for (const auto& s : steps) {
            CAPTURE(s.message_id);
            CHECK(w.Apply("ld", s.message_id, Change("u1", s.included, s.time), "{}", 1000) ==
                  s.expected);
            auto m = store::FindMembership(f.db, "ld", "aud_1", "user", "u1");
            REQUIRE(m.has_value());
            CHECK(m->desired == s.desired_after);
            CHECK(m->version == s.version_after);
        }
        auto m = store::FindMembership(f.db, "ld", "aud_1", "user", "u1");
        CHECK(m->message_id == "m5");
        CHECK(m->event_ms == 300);
        CHECK_FALSE(m->acked.has_value());
        CHECK(store::CountEvents(f.db, "ld") == 6);  // every non-duplicate is logged
        store::Statement stale(f.db.handle(),
                               "SELECT count(*) FROM events WHERE outcome = 'stale'");
        stale.Step();
        CHECK(stale.Int(0) == 2);
    }

    TEST_CASE("segments are per audience id and context kind, duplicates per destination") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureDestination("ld", 0);
        w.EnsureDestination("other", 0);
        auto a = Change("u1", true, 1);
        auto b = Change("u1", true, 1, "aud_2");
        auto c = a;
        c.context_kind = "account";
        CHECK(w.Apply("ld", "m1", a, "{}", 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("ld", "m2", b, "{}", 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("ld", "m3", c, "{}", 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("other", "m1", a, "{}", 0) == store::ApplyOutcome::kAccepted);
        store::Statement s(f.db.handle(), "SELECT count(*) FROM segments");
        s.Step();
        CHECK(s.Int(0) == 4);
        CHECK(store::FindMembership(f.db, "ld", "aud_1", "account", "u1").has_value());
    }

    TEST_CASE("keys are stored verbatim") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureDestination("ld", 0);
        std::string odd = std::string("'; DROP TABLE memberships; --\0/%é\"", 34);
        CHECK(w.Apply("ld", "m1", Change(odd, true, 1), "{}", 0) == store::ApplyOutcome::kAccepted);
        auto m = store::FindMembership(f.db, "ld", "aud_1", "user", odd);
        REQUIRE(m.has_value());
        CHECK(m->context_key == odd);
    }

    TEST_CASE("pruning forgets messageIds past the window only") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureDestination("ld", 0);
        CHECK(w.Apply("ld", "old", Change("u1", true, 1), "{}", 1000) ==
              store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("ld", "new", Change("u2", true, 1), "{}", 5000) ==
              store::ApplyOutcome::kAccepted);
        CHECK(w.PruneEvents(2000) == 1);
        CHECK_FALSE(store::HasEvent(f.db, "ld", "old"));
        CHECK(store::HasEvent(f.db, "ld", "new"));
        CHECK(store::FindMembership(f.db, "ld", "aud_1", "user", "u1").has_value());
    }

    TEST_CASE("audiences: create once per name, update extras") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureDestination("ld", 0);
        auto id = w.UpsertAudience("ld", "High value", R"({"contextKind":"account"})",
                                   std::string("account"), 1);
        auto again = w.UpsertAudience("ld", "High value", "{}", std::nullopt, 2);
        CHECK(id == again);
        auto other = w.UpsertAudience("ld", "Churn", "{}", std::nullopt, 3);
        CHECK(other != id);
        auto a = store::FindAudience(f.db, "ld", id);
        REQUIRE(a.has_value());
        CHECK(a->extras == "{}");
        CHECK_FALSE(a->context_kind.has_value());
        CHECK(store::LoadAudiences(f.db).size() == 2);
        CHECK_FALSE(store::FindAudience(f.db, "other", id).has_value());
    }

    TEST_CASE("the writer commits concurrent jobs in groups") {
        Fixture f;
        store::Writer writer(f.path, store::WriterOptions{});
        constexpr int kThreads = 8;
        constexpr int kPerThread = 50;
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < kPerThread; ++i) {
                    std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
                    Status s = writer.Run(
                        [&](store::WriteStore& w) {
                            w.EnsureDestination("ld", 0);
                            w.Apply("ld", id, Change(id, true, 1), "{}", text::NowMs());
                        },
                        1);
                    if (!s) ++failures;
                }
            });
        }
        for (auto& t : threads) t.join();
        CHECK(failures == 0);
        CHECK(store::CountEvents(f.db, "ld") == kThreads * kPerThread);
        CHECK(writer.commits() >= 1);
        CHECK(writer.commits() <= static_cast<uint64_t>(kThreads * kPerThread));
    }

    TEST_CASE("a failing job is rolled back alone") {
        Fixture f;
        store::Writer writer(f.path, store::WriterOptions{});
        std::atomic<bool> hook_ran{false};
        writer.SetAfterCommit([&] { hook_ran = true; });
        Status bad = writer.Run(
            [&](store::WriteStore& w) {
                w.EnsureDestination("ld", 0);
                w.Apply("ld", "bad", Change("x", true, 1), "{}", 0);
                throw store::SqliteError("simulated failure");
            },
            1);
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().code == ErrorCode::kUnavailable);
        Status good = writer.Run(
            [&](store::WriteStore& w) {
                w.EnsureDestination("ld", 0);
                w.Apply("ld", "good", Change("y", true, 1), "{}", 0);
            },
            1);
        CHECK(good.ok());
        CHECK(hook_ran);
        CHECK_FALSE(store::HasEvent(f.db, "ld", "bad"));
        CHECK(store::HasEvent(f.db, "ld", "good"));
    }

    TEST_CASE("the writer refuses work past its queue bound and after stopping") {
        Fixture f;
        store::WriterOptions opts;
        opts.max_pending_weight = 10;
        store::Writer writer(f.path, opts);
        // A single job may exceed the bound when the queue is empty (it is one request).
        CHECK(writer.Run([](store::WriteStore& w) { w.EnsureDestination("ld", 0); }, 50).ok());
        std::atomic<bool> release{false};
        std::atomic<bool> started{false};
        std::thread blocker([&] {
            (void)writer.Run(
                [&](store::WriteStore&) {
                    started = true;
                    while (!release) std::this_thread::yield();
                },
                1);
        });
        while (!started) std::this_thread::yield();
        std::thread queued([&] { CHECK(writer.Run([](store::WriteStore&) {}, 8).ok()); });
        // Poll until the 8-event job is queued behind the blocker.
        auto deadline = text::NowMs() + 10000;
        while (writer.queued_weight() < 8 && text::NowMs() < deadline) std::this_thread::yield();
        REQUIRE(writer.queued_weight() == 8);
        Status over = writer.Run([](store::WriteStore&) {}, 5);
        REQUIRE_FALSE(over.ok());
        CHECK(over.error().name == "storage_unavailable");
        release = true;
        blocker.join();
        queued.join();
        writer.Stop();
        Status after = writer.Run([](store::WriteStore&) {}, 1);
        REQUIRE_FALSE(after.ok());
        CHECK(after.error().name == "storage_unavailable");
    }
}
