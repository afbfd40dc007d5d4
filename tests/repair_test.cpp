// Tests of the future-dated member check and `audsync repair future-times`.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "audsync/store/database.hpp"
#include "audsync/store/migrations.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/store_access.hpp"

using namespace audsync;

namespace {

constexpr int64_t kReceived = 1714987822829;
constexpr int64_t kDayMs = 86400 * 1000;

mapping::MembershipChange Change(const std::string& key, bool included, int64_t time) {
    mapping::MembershipChange c;
    c.audience_id = "aud_1";
    c.audience_key = "high_value_users";
    c.context_kind = "user";
    c.context_key = key;
    c.included = included;
    c.event_time_ms = time;
    return c;
}

// A migrated database holding what a database written before event times were bounded
// may hold: "poisoned" decided by an event dated a year ahead, "edge" exactly one day
// ahead (within the bound), "fine" dated in the past.
void Poison(const std::string& path) {
    {
        store::Database db(path, true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
    }
    REQUIRE(store::WriteDirect(path, [](store::WriteStore& w) {
                w.EnsureTargets("ld", store::ImplicitTargets(), kReceived);
                w.Apply("ld", "m-poison", Change("poisoned", true, kReceived + 365 * kDayMs),
                        kReceived);
                w.Apply("ld", "m-edge", Change("edge", true, kReceived + kDayMs), kReceived);
                w.Apply("ld", "m-fine", Change("fine", true, kReceived - 1000), kReceived);
            }).ok());
}

struct Row {
    int64_t event_ms = 0;
    int64_t received_ms = 0;
    int64_t desired = 0;
    int64_t version = 0;
};

Row Member(const std::string& path, const std::string& key) {
    store::Database db(path, false);
    store::Statement s(store::TestAccess::Handle(db),
                       "SELECT event_ms, received_ms, desired, version FROM memberships WHERE "
                       "context_key = ?1");
    s.Bind(1, key);
    REQUIRE(s.Step());
    return Row{s.Int(0), s.Int(1), s.Int(2), s.Int(3)};
}

int64_t CountFuture(const std::string& path, int64_t skew_ms) {
    store::Database db(path, false);
    return store::CountFutureDated(db, skew_ms);
}

}  // namespace

TEST_SUITE("repair") {
    TEST_CASE("CountFutureDated counts members beyond the skew, not at it") {
        testing::TempDir dir;
        const std::string db = dir.File("r.db");
        Poison(db);
        CHECK(CountFuture(db, kDayMs) == 1);      // "edge" sits exactly at the bound
        CHECK(CountFuture(db, kDayMs - 1) == 2);  // one ms less and it is beyond
        CHECK(CountFuture(db, 400 * kDayMs) == 0);
    }

    TEST_CASE("RepairFutureTimes orders poisoned members by their receive time, nothing else") {
        testing::TempDir dir;
        const std::string db = dir.File("r.db");
        Poison(db);
        const Row before = Member(db, "poisoned");
        int64_t repaired = -1;
        REQUIRE(store::WriteDirect(db, [&](store::WriteStore& w) {
                    repaired = w.RepairFutureTimes(kDayMs);
                }).ok());
        CHECK(repaired == 1);
        const Row after = Member(db, "poisoned");
        CHECK(after.event_ms == kReceived);
        CHECK(after.received_ms == kReceived);
        CHECK(after.desired == before.desired);
        CHECK(after.version == before.version);
        CHECK(Member(db, "edge").event_ms == kReceived + kDayMs);
        CHECK(Member(db, "fine").event_ms == kReceived - 1000);
        CHECK(CountFuture(db, kDayMs) == 0);

        // A genuine later event now decides the member again.
        store::ApplyOutcome outcome = store::ApplyOutcome::kStale;
        REQUIRE(store::WriteDirect(db, [&](store::WriteStore& w) {
                    outcome = w.Apply("ld", "m-genuine", Change("poisoned", false, kReceived + 5),
                                      kReceived + 10);
                }).ok());
        CHECK(outcome == store::ApplyOutcome::kAccepted);
        CHECK(Member(db, "poisoned").desired == 0);

        // Idempotent.
        REQUIRE(store::WriteDirect(db, [&](store::WriteStore& w) {
                    repaired = w.RepairFutureTimes(kDayMs);
                }).ok());
        CHECK(repaired == 0);
    }

    TEST_CASE("audsync repair future-times: --dry-run counts, the real run repairs") {
        testing::TempDir dir;
        const std::string db = dir.File("r.db");
        Poison(db);
        const std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(db);

        auto dry = testing::RunAudsync({"repair", "future-times", "--dry-run", "--config", cfg});
        CHECK_MESSAGE(dry.exit_code == 0, dry.err);
        CHECK(dry.out.find("1 member decided by events dated more than 86400 s") !=
              std::string::npos);
        CHECK(dry.out.find("nothing changed") != std::string::npos);
        CHECK(CountFuture(db, kDayMs) == 1);

        auto dry_json =
            testing::RunAudsync({"repair", "future-times", "--dry-run", "--json", "--config", cfg});
        CHECK(dry_json.exit_code == 0);
        CHECK(dry_json.out == "{\"dry_run\":true,\"members\":1,\"skew_seconds\":86400}\n");

        auto run = testing::RunAudsync({"repair", "future-times", "--config", cfg});
        CHECK_MESSAGE(run.exit_code == 0, run.err);
        CHECK(run.out.find("repaired 1 member decided") != std::string::npos);
        CHECK(CountFuture(db, kDayMs) == 0);
        CHECK(Member(db, "poisoned").event_ms == kReceived);

        auto again = testing::RunAudsync({"repair", "future-times", "--json", "--config", cfg});
        CHECK(again.exit_code == 0);
        CHECK(again.out == "{\"dry_run\":false,\"members\":0,\"skew_seconds\":86400}\n");
    }

    TEST_CASE("audsync repair future-times uses the configured skew") {
        testing::TempDir dir;
        const std::string db = dir.File("r.db");
        Poison(db);
        std::string json = testing::TestConfigJson(db);
        json.insert(1, R"("limits":{"max_future_skew_seconds":3600},)");
        const std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << json;
        auto dry =
            testing::RunAudsync({"repair", "future-times", "--dry-run", "--json", "--config", cfg});
        CHECK_MESSAGE(dry.exit_code == 0, dry.err);
        CHECK(dry.out == "{\"dry_run\":true,\"members\":2,\"skew_seconds\":3600}\n");
    }

    TEST_CASE("audsync repair future-times refuses a missing database and bad usage") {
        testing::TempDir dir;
        const std::string db = dir.File("missing.db");
        const std::string cfg = dir.File("c.json");
        std::ofstream(cfg) << testing::TestConfigJson(db);
        for (bool dry : {true, false}) {
            std::vector<std::string> args = {"repair", "future-times", "--config", cfg};
            if (dry) args.push_back("--dry-run");
            auto r = testing::RunAudsync(args);
            CHECK(r.exit_code == 1);
            CHECK(r.err.find("no database at") != std::string::npos);
        }
        std::ifstream created(db);
        CHECK_FALSE(created.good());  // nothing was created
        CHECK(testing::RunAudsync({"repair"}).exit_code == 2);
        CHECK(testing::RunAudsync({"repair", "future-times", "--bogus"}).exit_code == 2);
        auto no_config = testing::RunAudsync({"repair", "future-times"}, {{"AUDSYNC_CONFIG", ""}});
        CHECK(no_config.exit_code == 1);
    }
}
