// Store tests: migrations, last-writer-wins, the writer, transactions, operator writes,
// direct writes, backups and file modes.
#include <doctest/doctest.h>

#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/queries.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/store_access.hpp"

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

int64_t Count(store::Database& db, const std::string& sql) {
    return store::TestAccess::Int(db, sql);
}

// Every row of `sql`, each as its columns' text joined by '|' (NULL as "-").
std::vector<std::string> Rows(store::Database& db, const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(store::TestAccess::Handle(db), sql.c_str(), -1, &st, nullptr) ==
            SQLITE_OK);
    std::vector<std::string> out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        std::string line;
        for (int i = 0; i < sqlite3_column_count(st); ++i) {
            const unsigned char* v = sqlite3_column_text(st, i);
            line += (i > 0 ? "|" : "") + std::string(v ? reinterpret_cast<const char*>(v) : "-");
        }
        out.push_back(line);
    }
    sqlite3_finalize(st);
    return out;
}

unsigned Mode(const std::string& path) {
    struct stat st;
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

// A segment "aud_1"/user with members k0..k<n-1>, every one dead-lettered at version 1.
int64_t DeadSegment(store::Database& db, int n, const std::string& audience = "aud_1") {
    store::Transaction tx(db);
    store::WriteStore w(db);
    w.EnsureTargets("ld", store::ImplicitTargets(), 0);
    for (int i = 0; i < n; ++i) {
        std::string key = "k" + std::to_string(i);
        w.Apply("ld", audience + key, Change(key, true, 1, audience), 0);
    }
    auto m = store::FindMembership(db, "ld", audience, "user", "k0");
    REQUIRE(m.has_value());
    for (int i = 0; i < n; ++i) {
        w.RecordDead(m->segment_id, "k" + std::to_string(i), "launchdarkly", 1, 400, "refused", 5);
    }
    tx.Commit();
    return m->segment_id;
}

}  // namespace

TEST_SUITE("store") {
    TEST_CASE("schemas 9 and 10's counts equal the rows they count, through every write") {
        // A seeded stream of every write that touches deliveries, at a delta and a
        // full-list target; after each step the trigger-kept counts must equal a count of
        // the rows themselves (a row of zeros where nothing is left).
        const std::string recount =
            "SELECT segment_id, target, sum(pending = 1 AND dead = 0), "
            "sum(pending = 1 AND dead = 0 AND attempts > 0), sum(dead = 1) FROM deliveries "
            "GROUP BY 1, 2 HAVING sum(pending = 1 AND dead = 0) + sum(dead = 1) > 0 ORDER BY 1, 2";
        const std::string kept =
            "SELECT segment_id, target, pending, retrying, dead FROM delivery_counts "
            "WHERE pending + dead > 0 OR retrying != 0 ORDER BY 1, 2";
        // Schema 10's member counts, the same way.
        const std::string members_recount =
            "SELECT segment_id, sum(desired = 1), sum(desired = 0) FROM memberships "
            "GROUP BY 1 ORDER BY 1";
        const std::string members_kept =
            "SELECT segment_id, included, excluded FROM segment_counts "
            "WHERE included != 0 OR excluded != 0 ORDER BY 1";
        for (uint32_t seed : {1u, 2u, 3u}) {
            CAPTURE(seed);
            Fixture f;
            store::WriteStore w(f.db);
            const std::vector<store::TargetRef> both = {{"launchdarkly", "launchdarkly"},
                                                        {"configcat", "configcat"}};
            w.EnsureTargets("ld", both, 0);
            std::mt19937 rng(seed);
            auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
            int64_t time = 1;
            int64_t message = 0;
            for (int step = 0; step < 600; ++step) {
                const std::string audience = "aud_" + std::to_string(pick(2));
                const std::string key = "k" + std::to_string(pick(30));
                const std::string target = pick(2) == 0 ? "launchdarkly" : "configcat";
                auto m = store::FindMembership(f.db, "ld", audience, "user", key);
                const int op = pick(100);
                store::Transaction tx(f.db);
                if (op < 40 || !m) {
                    w.Apply("ld", "m" + std::to_string(++message),
                            Change(key, pick(3) != 0, time + pick(3) - 1, audience), time);
                    ++time;
                } else if (op < 55) {
                    w.RecordAck(m->segment_id, key, target, m->desired, m->version, 200, time);
                } else if (op < 65) {
                    w.RecordRetry(m->segment_id, key, target, time + 1000, 503, "busy", time);
                } else if (op < 72) {
                    w.RecordDead(m->segment_id, key, target, m->version - pick(2), 400, "no", time);
                } else if (op < 76) {
                    w.RecordHeld(m->segment_id, key, target, time + 5, "over", time);
                } else if (op < 80) {
                    w.RetryDeadLetter(m->segment_id, pick(2) == 0 ? std::optional<std::string>(key)
                                                                  : std::nullopt);
                } else if (op < 84) {
                    w.DiscardDeadLetter(m->segment_id, std::nullopt, target);
                } else if (op < 87) {
                    w.MarkForResync(m->segment_id, pick(2) == 0 ? std::optional<std::string>(target)
                                                                : std::nullopt);
                } else if (op < 90) {
                    w.ReplayMissed(m->segment_id, key, target);
                } else if (op < 92) {
                    w.ExcludeAllMembers(m->segment_id, time);
                } else if (op < 94) {
                    w.ResumeDestination("ld", time);
                } else if (op < 97) {
                    // A target retired and configured again: its rows come back pending.
                    w.EnsureTargets("ld", {both[0]}, time);
                    w.EnsureTargets("ld", both, time + 1);
                } else {
                    w.DeleteSegment(m->segment_id);
                }
                tx.Commit();
                CAPTURE(step);
                CAPTURE(op);
                REQUIRE(Rows(f.db, kept) == Rows(f.db, recount));
                REQUIRE(Rows(f.db, members_kept) == Rows(f.db, members_recount));
            }
            // Something of each kind was counted on the way (the stream can fail).
            CHECK(Count(f.db, "SELECT count(*) FROM deliveries WHERE dead = 1") +
                      Count(f.db, "SELECT count(*) FROM deliveries WHERE pending = 1") >
                  0);
        }
    }

    TEST_CASE(
        "a segment summary reads schema 10's counts, newest sync and the error that applies") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        for (int i = 0; i < 6; ++i) {
            const std::string key = "k" + std::to_string(i);
            w.Apply("ld", "m" + key, Change(key, i != 5, 1), 0);
        }
        const int64_t seg = store::FindMembership(f.db, "ld", "aud_1", "user", "k0")->segment_id;
        const std::string t = "launchdarkly";
        w.RecordAck(seg, "k0", t, true, 1, 200, 100);
        w.RecordAck(seg, "k1", t, true, 1, 200, 200);
        w.RecordDead(seg, "k3", t, 1, 400, "refused", 250);
        w.RecordRetry(seg, "k2", t, 5000, 503, "busy", 300);
        auto summary = [&] {
            auto list = store::ListSegments(f.db, store::SegmentFilter{});
            REQUIRE(list.size() == 1);
            REQUIRE(list[0].targets.size() == 1);
            return list[0];
        };
        store::SegmentSummary s = summary();
        CHECK(s.included == 5);
        CHECK(s.excluded == 1);
        CHECK(s.targets[0].pending == 3);  // k2 retrying, k4 and k5 never pushed
        CHECK(s.targets[0].retrying == 1);
        CHECK(s.targets[0].dead == 1);
        CHECK(s.last_synced_ms == 200);
        CHECK(s.next_retry_ms == 5000);
        CHECK(s.last_error == "busy");  // the newer of the retry and the dead letter
        // The retried member goes through: the dead letter's error is the one left.
        w.RecordAck(seg, "k2", t, true, 1, 200, 400);
        s = summary();
        CHECK(s.targets[0].retrying == 0);
        CHECK_FALSE(s.next_retry_ms.has_value());
        CHECK(s.last_synced_ms == 400);
        CHECK(s.last_error == "refused");
        // Discarded, nothing is wrong any more.
        CHECK(w.DiscardDeadLetter(seg, std::nullopt) == 1);
        s = summary();
        CHECK_FALSE(s.last_error.has_value());
        // A member leaving moves one count to the other.
        w.Apply("ld", "mk0-out", Change("k0", false, 2), 0);
        s = summary();
        CHECK(s.included == 4);
        CHECK(s.excluded == 2);
    }

    TEST_CASE("schemas 9 and 10 count what a database made before them holds") {
        testing::TempDir dir;
        store::Database db(dir.File("a.db"), true);
        std::vector<store::Migration> before = store::EmbeddedMigrations();
        while (before.back().version >= 9) before.pop_back();
        REQUIRE(before.back().version == 8);
        REQUIRE(store::Migrate(db, before).ok());
        // What schema 8 holds after pushes: k0 acknowledged, k1 retrying, k2 dead, k3 and
        // k4 never pushed (raw rows: today's store writes the tables schema 9 and 10 add).
        for (const char* sql : {
                 "INSERT INTO destinations (id, created_ms) VALUES ('ld', 1)",
                 "INSERT INTO targets (destination, id, platform, created_ms) "
                 "VALUES ('ld', 'launchdarkly', 'launchdarkly', 1)",
                 "INSERT INTO segments (id, destination, audience_id, audience_key, "
                 "context_kind, created_ms) VALUES (1, 'ld', 'aud_1', 'k', 'user', 1)",
                 "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4) "
                 "INSERT INTO memberships (segment_id, context_key, desired, version, message_id, "
                 "event_ms, received_ms) SELECT 1, 'k' || i, 1, 1, 'm' || i, 1, 0 FROM n",
                 "INSERT INTO deliveries (segment_id, context_key, target, pending, acked, "
                 "acked_version, attempts, next_attempt_ms, last_status, last_error, "
                 "last_push_ms, dead, dead_version) VALUES "
                 "(1, 'k0', 'launchdarkly', 0, 1, 1, 0, 0, 200, NULL, 2, 0, NULL), "
                 "(1, 'k1', 'launchdarkly', 1, NULL, NULL, 1, 10, 503, 'busy', 2, 0, NULL), "
                 "(1, 'k2', 'launchdarkly', 1, NULL, NULL, 1, 0, 400, 'no', 2, 1, 1), "
                 "(1, 'k3', 'launchdarkly', 1, NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL), "
                 "(1, 'k4', 'launchdarkly', 1, NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL)",
             }) {
            store::TestAccess::Exec(db, sql);
        }
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        CHECK(Count(db, "SELECT pending FROM delivery_counts") == 3);  // k1, k3, k4
        CHECK(Count(db, "SELECT retrying FROM delivery_counts") == 1);
        CHECK(Count(db, "SELECT dead FROM delivery_counts") == 1);
        store::SyncGauges g = store::ReadSyncGauges(db);
        CHECK(g.pending == 3);
        CHECK(g.dead == 1);
        CHECK(Rows(db, "SELECT included, excluded FROM segment_counts") ==
              std::vector<std::string>{"5|0"});
        CHECK(Rows(db, "SELECT last_synced_ms, retry_error, dead_error FROM delivery_counts") ==
              std::vector<std::string>{"2|busy|no"});
    }

    TEST_CASE("the sync lag of a lane past the sample holds its longest deferred change") {
        // 9,000 pending changes at one target, more than the two ends the gauge reads. The
        // oldest is a change whose push failed: its retry waits, so it is at the end of
        // push order, which the gauge reads too.
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        {
            store::Transaction tx(f.db);
            for (int i = 0; i < 9000; ++i) {
                const std::string key = "k" + std::to_string(100000 + i);
                w.Apply("ld", "m" + key, Change(key, true, 1), i == 4500 ? 1000 : 50000 + i);
            }
            tx.Commit();
        }
        const int64_t segment =
            store::FindMembership(f.db, "ld", "aud_1", "user", "k100000")->segment_id;
        CHECK(store::ReadSyncGauges(f.db).pending == 9000);
        // Not retried, the oldest lies in the middle of push order, beyond either end read.
        CHECK(store::ReadSyncGauges(f.db).oldest_pending_received_ms == 50000);
        w.RecordRetry(segment, "k104500", "launchdarkly", 999999, 503, "busy", 2);
        CHECK(store::ReadSyncGauges(f.db).oldest_pending_received_ms == 1000);
        // Within the sample, exact: the lane drained down to 8,000.
        for (int i = 0; i < 1000; ++i) {
            w.RecordAck(segment, "k" + std::to_string(100000 + i), "launchdarkly", true, 1, 200, 3);
        }
        w.RecordAck(segment, "k104500", "launchdarkly", true, 1, 200, 3);
        CHECK(store::ReadSyncGauges(f.db).oldest_pending_received_ms == 51000);
    }

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
        store::Statement s(store::TestAccess::Handle(db),
                           "SELECT count(*) FROM sqlite_master WHERE name = 'b'");
        s.Step();
        CHECK(s.Int(0) == 0);
    }

    TEST_CASE("a database newer than the binary is refused") {
        testing::TempDir dir;
        store::Database db(dir.File("n.db"), true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        store::TestAccess::Exec(db,
                                "INSERT INTO schema_migrations VALUES (9999, '9999_future', 0)");
        auto r = store::Migrate(db, store::EmbeddedMigrations());
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().name == "schema_too_new");
        CHECK(r.error().message.find("schema version 9999") != std::string::npos);
    }

    TEST_CASE("WAL mode and foreign keys are on") {
        Fixture f;
        store::Statement wal(store::TestAccess::Handle(f.db), "PRAGMA journal_mode");
        wal.Step();
        CHECK(wal.Text(0) == "wal");
        store::Statement fk(store::TestAccess::Handle(f.db), "PRAGMA foreign_keys");
        fk.Step();
        CHECK(fk.Int(0) == 1);
    }

    TEST_CASE("last writer wins by event time, duplicates and stale events change nothing") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        using O = store::ApplyOutcome;
        struct Step {
            const char* message_id;
            bool included;
            int64_t time;
            O expected;
            bool desired_after;
            int64_t version_after;
            const char* ignored_after;  // the member's latest ignored event, and why
            const char* ignored_outcome;
        };
        Step steps[] = {
            {"m1", true, 100, O::kAccepted, true, 1, nullptr, nullptr},
            // same messageId: not applied
            {"m1", false, 500, O::kDuplicate, true, 1, "m1", "duplicate"},
            {"m0", false, 50, O::kStale, true, 1, "m0", "stale"},  // older event arrives late
            // same state, newer: no new version; it decides now, nothing after it
            {"m2", true, 200, O::kAccepted, true, 1, nullptr, nullptr},
            {"m3", false, 200, O::kAccepted, false, 2, nullptr, nullptr},  // equal time: later
            {"m4", true, 199, O::kStale, false, 2, "m4", "stale"},
            {"m5", true, 300, O::kAccepted, true, 3, nullptr, nullptr},
        };
        for (const auto& s : steps) {
            CAPTURE(s.message_id);
            CHECK(w.Apply("ld", s.message_id, Change("u1", s.included, s.time), 1000) ==
                  s.expected);
            auto m = store::FindMembership(f.db, "ld", "aud_1", "user", "u1");
            REQUIRE(m.has_value());
            CHECK(m->desired == s.desired_after);
            CHECK(m->version == s.version_after);
            auto row = store::GetMember(f.db, m->segment_id, "u1");
            REQUIRE(row.has_value());
            CHECK(row->ignored_message_id.value_or("") == (s.ignored_after ? s.ignored_after : ""));
            CHECK(row->ignored_outcome.value_or("") ==
                  (s.ignored_outcome ? s.ignored_outcome : ""));
        }
        auto m = store::FindMembership(f.db, "ld", "aud_1", "user", "u1");
        CHECK(m->message_id == "m5");
        CHECK(m->event_ms == 300);
        CHECK_FALSE(m->acked.has_value());
        // Every applied messageId is remembered once, stale ones included.
        CHECK(store::TestAccess::CountDedupe(f.db) == 6);
    }

    TEST_CASE("segments are per audience id and context kind, duplicates per destination") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        w.EnsureTargets("other", store::ImplicitTargets(), 0);
        auto a = Change("u1", true, 1);
        auto b = Change("u1", true, 1, "aud_2");
        auto c = a;
        c.context_kind = "account";
        CHECK(w.Apply("ld", "m1", a, 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("ld", "m2", b, 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("ld", "m3", c, 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("other", "m1", a, 0) == store::ApplyOutcome::kAccepted);
        store::Statement s(store::TestAccess::Handle(f.db), "SELECT count(*) FROM segments");
        s.Step();
        CHECK(s.Int(0) == 4);
        CHECK(store::FindMembership(f.db, "ld", "aud_1", "account", "u1").has_value());
    }

    TEST_CASE("keys are stored verbatim") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        std::string odd = std::string("'; DROP TABLE memberships; --\0/%é\"", 34);
        CHECK(w.Apply("ld", "m1", Change(odd, true, 1), 0) == store::ApplyOutcome::kAccepted);
        auto m = store::FindMembership(f.db, "ld", "aud_1", "user", odd);
        REQUIRE(m.has_value());
        CHECK(m->context_key == odd);
    }

    TEST_CASE("pruning forgets messageIds past the window only") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        CHECK(w.Apply("ld", "old", Change("u1", true, 1), 1000) == store::ApplyOutcome::kAccepted);
        CHECK(w.Apply("ld", "new", Change("u2", true, 1), 5000) == store::ApplyOutcome::kAccepted);
        CHECK(w.PruneDedupe(2000, 0, 1) == 1);
        CHECK_FALSE(store::HasEvent(f.db, "ld", "old"));
        CHECK(store::HasEvent(f.db, "ld", "new"));
        CHECK(store::FindMembership(f.db, "ld", "aud_1", "user", "u1").has_value());
    }

    TEST_CASE("audiences: create once per name, update extras") {
        Fixture f;
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        auto id = w.UpsertAudience("ld", "High value", R"({"contextKind":"account"})",
                                   std::string("account"), 1);
        auto again = w.UpsertAudience("ld", "High value", "{}", std::nullopt, 2);
        CHECK(id == again);
        auto other = w.UpsertAudience("ld", "Churn", "{}", std::nullopt, 3);
        CHECK(other != id);
        auto a = store::TestAccess::FindAudience(f.db, "ld", id);
        REQUIRE(a.has_value());
        CHECK(a->extras == "{}");
        CHECK_FALSE(a->context_kind.has_value());
        CHECK(store::LoadAudiences(f.db).size() == 2);
        CHECK_FALSE(store::TestAccess::FindAudience(f.db, "other", id).has_value());
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
                            w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                            w.Apply("ld", id, Change(id, true, 1), text::NowMs());
                        },
                        1);
                    if (!s) ++failures;
                }
            });
        }
        for (auto& t : threads) t.join();
        CHECK(failures == 0);
        CHECK(store::TestAccess::CountDedupe(f.db) == kThreads * kPerThread);
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
                w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                w.Apply("ld", "bad", Change("x", true, 1), 0);
                throw store::SqliteError("simulated failure");
            },
            1);
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().code == ErrorCode::kUnavailable);
        Status good = writer.Run(
            [&](store::WriteStore& w) {
                w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                w.Apply("ld", "good", Change("y", true, 1), 0);
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
        CHECK(writer
                  .Run(
                      [](store::WriteStore& w) {
                          w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                      },
                      50)
                  .ok());
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

    TEST_CASE("a transaction commits, or rolls back when it is not committed") {
        Fixture f;
        {
            store::Transaction tx(f.db);
            store::WriteStore(f.db).EnsureTargets("kept", store::ImplicitTargets(), 0);
            tx.Commit();
        }
        {
            store::Transaction tx(f.db);
            store::WriteStore(f.db).EnsureTargets("dropped", store::ImplicitTargets(), 0);
        }
        CHECK_THROWS_AS(
            [&] {
                store::Transaction tx(f.db);
                store::WriteStore(f.db).EnsureTargets("thrown", store::ImplicitTargets(), 0);
                throw store::SqliteError("simulated");
            }(),
            store::SqliteError);
        CHECK(Count(f.db, "SELECT count(*) FROM destinations WHERE id = 'kept'") == 1);
        CHECK(Count(f.db, "SELECT count(*) FROM destinations WHERE id <> 'kept'") == 0);
        // The connection is usable afterwards: no transaction was left open.
        store::Transaction again(f.db);
        again.Commit();
    }

    TEST_CASE("a transaction takes the write lock: a second writer waits for it") {
        Fixture f;
        store::Database other(f.path, false);
        store::TestAccess::Exec(other, "PRAGMA busy_timeout = 0");
        store::Transaction held(f.db);
        CHECK_THROWS_AS([&] { store::Transaction blocked(other); }(), store::SqliteError);
        held.Commit();
        store::Transaction now(other);
        now.Commit();
    }

    TEST_CASE("dead letters: retry and discard one by key, or a whole segment") {
        Fixture f;
        int64_t seg = DeadSegment(f.db, 3);
        int64_t other = DeadSegment(f.db, 2, "aud_2");
        store::WriteStore w(f.db);
        CHECK(w.RetryDeadLetter(seg, std::string("k0")) == 1);
        CHECK(w.RetryDeadLetter(seg, std::string("k0")) == 0);  // no longer dead
        CHECK(w.RetryDeadLetter(seg, std::string("nobody")) == 0);
        auto k0 = store::GetMember(f.db, seg, "k0");
        CHECK_FALSE(k0->dead);
        CHECK(k0->attempts == 0);
        CHECK(k0->pending());
        CHECK(w.DiscardDeadLetter(seg, std::string("k1")) == 1);
        auto k1 = store::GetMember(f.db, seg, "k1");
        CHECK_FALSE(k1->dead);
        CHECK_FALSE(k1->pending());  // recorded as held by the platform
        CHECK(k1->last_error.value_or("").find("discarded by an operator") == 0);
        CHECK(w.DiscardDeadLetter(seg, std::nullopt) == 1);  // k2 only: k0, k1 are not dead
        CHECK(w.RetryDeadLetter(other, std::nullopt) == 2);
        CHECK(Count(f.db, "SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
    }

    TEST_CASE("retrying 10000 dead letters by key (the API's limit) uses the primary key") {
        Fixture f;
        constexpr int kIds = 10000;  // admin's limit on ids per request
        int64_t seg = DeadSegment(f.db, kIds);
        // SQLite's virtual-machine steps, counted in thousands by a progress handler: work
        // done, not time taken. A scan of the segment per id (4.6 s here before) costs
        // about kIds * kIds steps; a lookup by primary key a few dozen per id, and schema
        // 9's trigger as many again for the segment's counts.
        int64_t thousands = 0;
        sqlite3_progress_handler(
            store::TestAccess::Handle(f.db), 1000,
            [](void* n) {
                ++*static_cast<int64_t*>(n);
                return 0;
            },
            &thousands);
        int64_t changed = 0;
        {
            store::Transaction tx(f.db);
            store::WriteStore w(f.db);
            for (int i = 0; i < kIds; ++i)
                changed += w.RetryDeadLetter(seg, "k" + std::to_string(i));
            tx.Commit();
        }
        sqlite3_progress_handler(store::TestAccess::Handle(f.db), 0, nullptr, nullptr);
        CHECK(changed == kIds);
        CHECK_MESSAGE(thousands * 1000 < int64_t{400} * kIds, thousands);
    }

    TEST_CASE("resync marks every member of one segment as never acknowledged") {
        Fixture f;
        int64_t seg = DeadSegment(f.db, 2);
        int64_t other = DeadSegment(f.db, 1, "aud_2");
        store::WriteStore w(f.db);
        w.RecordAck(other, "k0", "launchdarkly", true, 1, 200, 9);
        CHECK(w.MarkForResync(seg) == 2);
        for (const char* k : {"k0", "k1"}) {
            auto m = store::GetMember(f.db, seg, k);
            CHECK_FALSE(m->dead);
            CHECK_FALSE(m->acked.has_value());
        }
        CHECK(store::GetMember(f.db, other, "k0")->acked == std::optional<bool>(true));
        CHECK(w.MarkForResync(999) == 0);
    }

    TEST_CASE("a replay at a delta platform is a cursor over the members held there") {
        Fixture f;
        store::WriteStore w(f.db);
        const std::string t = "launchdarkly";
        int64_t seg = 0;
        {
            store::Transaction tx(f.db);
            w.EnsureTargets("ld", store::ImplicitTargets(), 0);
            for (int i = 0; i < 6; ++i) {
                const std::string key = "k" + std::to_string(i);
                w.Apply("ld", "m" + key, Change(key, i != 5, 1), 0);
            }
            seg = store::FindMembership(f.db, "ld", "aud_1", "user", "k0")->segment_id;
            for (int i = 0; i < 6; ++i) {
                REQUIRE(w.RecordAck(seg, "k" + std::to_string(i), t, i != 5, 1, 200, 7));
            }
            w.Apply("ld", "mk1-later", Change("k1", false, 2), 0);   // pending again
            w.RecordDead(seg, "k2", t, 1, 400, "refused", 5);        // a dead letter
            w.RecordRetry(seg, "k1", t, 1'000'000, 503, "busy", 8);  // due later
            tx.Commit();
        }
        auto keys = [](const std::vector<store::DirtyMember>& ms) {
            std::string out;
            for (const auto& m : ms) out += m.context_key + (m.replay ? "" : "!") + " ";
            return out;
        };
        auto rows_written = [&] {
            return Count(f.db, "SELECT total_changes()");  // on this connection
        };
        const int64_t before = rows_written();
        CHECK(w.MarkForResync(seg) == 6);
        // Only what is not held was written: the dead letter revived, the pending member
        // made due now, and the cursor; and, by schema 9's trigger, the segment's counts
        // once for each of the two deliveries (one dead letter less, one retry less).
        CHECK(rows_written() - before == 5);
        CHECK(Count(f.db, "SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
        CHECK(Count(f.db,
                    "SELECT count(*) FROM deliveries WHERE pending = 1 "
                    "AND next_attempt_ms = 0") == 2);
        CHECK(store::CountPending(f.db, seg) == 6);

        store::SyncReader r(f.db);
        auto all = r.Replay(seg, t, 10, 10);
        REQUIRE(all.has_value());
        CHECK(keys(all->members) == "k0 k3 k4 k5 ");
        CHECK(all->last);
        CHECK_FALSE(all->members[3].desired);  // an excluded member's removal is replayed
        auto two = r.Replay(seg, t, 10, 2);
        CHECK(keys(two->members) == "k0 k3 ");
        CHECK_FALSE(two->last);
        CHECK(r.DueSegments(10).size() == 1);

        w.AdvanceReplay(seg, t, two->generation, "k3", false, 0);
        CHECK(keys(r.Replay(seg, t, 10, 10)->members) == "k4 k5 ");
        CHECK(store::CountPending(f.db, seg) == 4);  // 2 pending, 2 left to replay

        // Started again: a range of the older request moves nothing.
        CHECK(w.MarkForResync(seg, t) == 6);
        auto again = r.Replay(seg, t, 10, 10);
        CHECK(again->generation == two->generation + 1);
        w.AdvanceReplay(seg, t, two->generation, "k4", false, 0);
        CHECK(keys(r.Replay(seg, t, 10, 10)->members) == "k0 k3 k4 k5 ");

        // A failed range: the replay waits, and the scheduler knows until when.
        w.AdvanceReplay(seg, t, again->generation, "k0", false, 5000);
        CHECK_FALSE(r.Replay(seg, t, 10, 10).has_value());
        CHECK(r.NextAttemptAfter(10) == std::optional<int64_t>(5000));
        CHECK(keys(r.Replay(seg, t, 5000, 10)->members) == "k3 k4 k5 ");

        // A replayed member whose push failed is pending like any other.
        w.ReplayMissed(seg, "k4", t);
        CHECK(keys(r.Replay(seg, t, 5000, 10)->members) == "k3 k5 ");
        CHECK_FALSE(store::GetMember(f.db, seg, "k4")->acked.has_value());

        // A target whose platform changed (or that comes back) has no replay to go on with.
        CHECK(Count(f.db, "SELECT count(*) FROM replays") == 1);
        w.EnsureTargets("ld", {{t, "flagsmith"}}, 0);
        CHECK(Count(f.db, "SELECT count(*) FROM replays") == 0);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        CHECK(w.MarkForResync(seg) == 6);
        again = r.Replay(seg, t, 10, 10);

        // The last range ends it; deleting the segment forgets a running one.
        w.AdvanceReplay(seg, t, again->generation, "k5", true, 0);
        CHECK(Count(f.db, "SELECT count(*) FROM replays") == 0);
        CHECK_FALSE(r.Replay(seg, t, 5000, 10).has_value());
        CHECK(w.MarkForResync(seg) == 6);
        CHECK(Count(f.db, "SELECT count(*) FROM replays") == 1);
        w.DeleteSegment(seg);
        CHECK(Count(f.db, "SELECT count(*) FROM replays") == 0);
    }

    TEST_CASE("deleting a segment forgets it, its members and dead letters, and only those") {
        Fixture f;
        int64_t seg = DeadSegment(f.db, 3);
        int64_t other = DeadSegment(f.db, 2, "aud_2");
        store::WriteStore w(f.db);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        // Caches the segment's id in this WriteStore, as the writer does.
        CHECK(w.Apply("ld", "late", Change("k9", true, 2), 0) == store::ApplyOutcome::kAccepted);
        CHECK(w.DeleteSegment(seg) == 4);
        CHECK(Count(f.db, "SELECT count(*) FROM segments WHERE id = " + std::to_string(seg)) == 0);
        CHECK(store::ListDeadLetters(f.db, seg, std::nullopt, 10).empty());
        CHECK(store::ListMembers(f.db, other, store::MemberState::kAll, std::nullopt, 10).size() ==
              2);
        CHECK(w.DeleteSegment(seg) == 0);
        // A later event creates the segment anew rather than reusing the forgotten id.
        CHECK(w.Apply("ld", "after", Change("k1", true, 3), 0) == store::ApplyOutcome::kAccepted);
        auto m = store::FindMembership(f.db, "ld", "aud_1", "user", "k1");
        REQUIRE(m.has_value());
        CHECK(m->segment_id != seg);
        CHECK(store::ListMembers(f.db, m->segment_id, store::MemberState::kAll, std::nullopt, 10)
                  .size() == 1);
    }

    TEST_CASE("WriteDirect commits beside a running writer") {
        Fixture f;
        store::Writer writer(f.path, store::WriterOptions{});
        REQUIRE(writer
                    .Run(
                        [](store::WriteStore& w) {
                            w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                        },
                        1)
                    .ok());
        int64_t seg = DeadSegment(f.db, 2);
        int64_t retried = 0;
        Status s = store::WriteDirect(
            f.path, [&](store::WriteStore& w) { retried = w.RetryDeadLetter(seg, std::nullopt); });
        REQUIRE(s.ok());
        CHECK(retried == 2);
        CHECK(writer
                  .Run(
                      [](store::WriteStore& w) {
                          w.EnsureTargets("other", store::ImplicitTargets(), 0);
                      },
                      1)
                  .ok());
        CHECK(Count(f.db, "SELECT count(*) FROM deliveries WHERE dead = 1") == 0);
    }

    TEST_CASE("WriteDirect writes nothing when SQLite fails") {
        Fixture f;
        int64_t seg = DeadSegment(f.db, 2);
        Status s = store::WriteDirect(f.path, [&](store::WriteStore& w) {
            w.RetryDeadLetter(seg, std::string("k0"));
            throw store::SqliteError("simulated");
        });
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().code == ErrorCode::kUnavailable);
        CHECK(s.error().name == "storage_unavailable");
        CHECK(Count(f.db, "SELECT count(*) FROM deliveries WHERE dead = 1") == 2);
        CHECK_THROWS_AS((void)store::WriteDirect(f.path,
                                                 [&](store::WriteStore& w) {
                                                     w.RetryDeadLetter(seg, std::nullopt);
                                                     throw std::logic_error("bug");
                                                 }),
                        std::logic_error);
        CHECK(Count(f.db, "SELECT count(*) FROM deliveries WHERE dead = 1") == 2);
        Status missing = store::WriteDirect(f.dir.File("missing.db"), [](store::WriteStore&) {});
        REQUIRE_FALSE(missing.ok());
        CHECK(missing.error().name == "storage_unavailable");
    }

    TEST_CASE("a new database and its -wal and -shm files are created mode 0600") {
        testing::TempDir dir;
        std::string path = dir.File("modes.db");
        mode_t old = ::umask(0);  // even a permissive umask does not open them up
        {
            store::Database db(path, true);
            REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
            CHECK(Mode(path) == 0600);
            CHECK(Mode(path + "-wal") == 0600);
            CHECK(Mode(path + "-shm") == 0600);
        }
        ::umask(old);
    }

    TEST_CASE("an existing database readable by others draws a warning") {
        testing::TempDir dir;
        std::string db = dir.File("a.db");
        std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(db);
        ::chmod(cfg.c_str(), 0600);
        auto created = testing::RunAudsync({"migrate", "--config", cfg});
        REQUIRE(created.exit_code == 0);
        CHECK(Mode(db) == 0600);
        CHECK(created.err.find("readable by other users") == std::string::npos);
        ::chmod(db.c_str(), 0644);
        auto open = testing::RunAudsync({"segments", "list", "--config", cfg});
        CHECK(open.exit_code == 0);
        CHECK(open.err.find("database " + db + " is readable by other users (mode 0644)") !=
              std::string::npos);
        // Once per process, however many connections the command opens.
        CHECK(open.err.find("readable by other users") ==
              open.err.rfind("readable by other users"));
    }

    TEST_CASE("a backup is a consistent copy, mode 0600") {
        Fixture f;
        DeadSegment(f.db, 5);
        std::string dest = f.dir.File("backup.db");
        REQUIRE(store::Backup(f.path, dest).ok());
        CHECK(Mode(dest) == 0600);
        store::Database copy(dest, false);
        CHECK(Count(copy, "SELECT count(*) FROM deliveries WHERE dead = 1") == 5);
        CHECK(copy.SchemaVersion() == store::EmbeddedMigrations().back().version);
        store::Statement check(store::TestAccess::Handle(copy), "PRAGMA integrity_check");
        REQUIRE(check.Step());
        CHECK(check.Text(0) == "ok");
    }

    TEST_CASE("a backup refuses an existing destination and leaves it alone") {
        Fixture f;
        std::string dest = f.dir.File("exists.db");
        std::ofstream(dest) << "precious";
        Status s = store::Backup(f.path, dest);
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().name == "backup_exists");
        CHECK(s.error().message.find("already exists") != std::string::npos);
        std::ifstream in(dest);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(text == "precious");
    }

    TEST_CASE("a failed backup leaves no file behind") {
        testing::TempDir dir;
        std::string dest = dir.File("b.db");
        Status s = store::Backup(dir.File("missing.db"), dest);
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().name == "storage_unavailable");
        struct stat st;
        CHECK(::stat(dest.c_str(), &st) != 0);
        Status no_dir = store::Backup(dir.File("missing.db"), dir.File("no/such/dir.db"));
        REQUIRE_FALSE(no_dir.ok());
        CHECK(no_dir.error().name == "storage_unavailable");
    }

    TEST_CASE("a backup taken while the writer commits holds whole transactions") {
        Fixture f;
        store::Writer writer(f.path, store::WriterOptions{});
        REQUIRE(writer
                    .Run(
                        [](store::WriteStore& w) {
                            w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                        },
                        1)
                    .ok());
        // Every job writes 10 events; a consistent snapshot holds a multiple of 10.
        std::atomic<bool> stop{false};
        std::atomic<int> jobs{0};
        std::thread load([&] {
            for (int j = 0; !stop; ++j) {
                Status s = writer.Run(
                    [&](store::WriteStore& w) {
                        for (int i = 0; i < 10; ++i) {
                            std::string id = std::to_string(j) + "-" + std::to_string(i);
                            w.Apply("ld", id, Change(id, true, 1), 0);
                        }
                    },
                    10);
                if (s) ++jobs;
            }
        });
        auto deadline = text::NowMs() + 10000;
        while (jobs < 20 && text::NowMs() < deadline) std::this_thread::yield();
        std::vector<int64_t> counts;
        for (int b = 0; b < 3; ++b) {
            std::string dest = f.dir.File("live" + std::to_string(b) + ".db");
            Status s = store::Backup(f.path, dest);
            CHECK(s.ok());
            if (!s) continue;
            store::Database copy(dest, false);
            counts.push_back(Count(copy, "SELECT count(*) FROM dedupe"));
        }
        stop = true;
        load.join();
        REQUIRE(jobs >= 20);
        REQUIRE(counts.size() == 3);
        for (int64_t c : counts) {
            CHECK(c % 10 == 0);
            CHECK(c >= 200);
        }
    }
}
