// The operator core without transport: typed results and the bounds of its writes.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "audsync/admin/admin.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/migrations.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "support/helpers.hpp"

using namespace audsync;

namespace {

// A migrated database with one segment of `n` dead letters; returns its id.
int64_t DeadLetters(const std::string& path, int n) {
    {
        store::Database db(path, true);
        REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
    }
    int64_t segment = 0;
    REQUIRE(store::WriteDirect(path, [&](store::WriteStore& w) {
                w.EnsureTargets("ld", store::ImplicitTargets(), 0);
                for (int i = 0; i < n; ++i) {
                    mapping::MembershipChange c;
                    c.audience_id = "aud_1";
                    c.audience_key = "dead_letters";
                    c.context_kind = "user";
                    c.context_key = "k" + std::to_string(i);
                    c.included = true;
                    c.event_time_ms = 1;
                    w.Apply("ld", "m" + std::to_string(i), c, 0);
                }
            }).ok());
    store::Database db(path, false);
    auto m = store::FindMembership(db, "ld", "aud_1", "user", "k0");
    REQUIRE(m.has_value());
    segment = m->segment_id;
    REQUIRE(store::WriteDirect(path, [&](store::WriteStore& w) {
                for (int i = 0; i < n; ++i) {
                    w.RecordDead(segment, "k" + std::to_string(i), "launchdarkly", 1, 400,
                                 "refused", 5);
                }
            }).ok());
    return segment;
}

}  // namespace

TEST_SUITE("admin core") {
    TEST_CASE("dead-letter retries by id run in transactions of at most 1000 ids") {
        testing::TempDir dir;
        const std::string path = dir.File("a.db");
        const int64_t segment = DeadLetters(path, 2500);
        int transactions = 0;
        admin::Service service(
            std::make_shared<const config::Config>(testing::TestConfig(path)), path,
            [&](const std::function<void(store::WriteStore&)>& f) {
                ++transactions;
                return store::WriteDirect(path, f);
            },
            nullptr, nullptr);
        admin::DeadLetterSelection selection;
        for (int i = 0; i < 2500; ++i) selection.ids.emplace_back(segment, "k" + std::to_string(i));
        selection.ids.emplace_back(segment, "not-a-dead-letter");
        auto r = service.RetryDeadLetters(selection);
        REQUIRE(r.ok());
        CHECK(r.value().changed == 2500);
        CHECK(transactions == 3);
        REQUIRE(r.value().not_found.size() == 1);
        CHECK(r.value().not_found[0] == std::to_string(segment) + ":not-a-dead-letter");
        // The API's own bound on one call.
        admin::DeadLetterSelection too_many;
        for (size_t i = 0; i <= admin::kMaxDeadLetterIds; ++i)
            too_many.ids.emplace_back(segment, "x");
        CHECK_FALSE(service.DiscardDeadLetters(too_many).ok());
    }

    TEST_CASE("typed errors: unknown segments, bad limits and cursors") {
        testing::TempDir dir;
        const std::string path = dir.File("a.db");
        const int64_t segment = DeadLetters(path, 3);
        admin::Service service(
            std::make_shared<const config::Config>(testing::TestConfig(path)), path,
            [&](const std::function<void(store::WriteStore&)>& f) {
                return store::WriteDirect(path, f);
            },
            nullptr, nullptr);
        CHECK(service.GetSegment(segment + 1).error().code == ErrorCode::kNotFound);
        admin::MemberQuery q;
        q.limit = 0;
        CHECK(service.ListMembers(segment, q).error().code == ErrorCode::kInvalidBody);
        q.limit = 2;
        auto page = service.ListMembers(segment, q);
        REQUIRE(page.ok());
        CHECK(page.value().members.size() == 2);
        REQUIRE(page.value().next_cursor.has_value());
        q.cursor = page.value().next_cursor;
        auto rest = service.ListMembers(segment, q);
        REQUIRE(rest.ok());
        CHECK(rest.value().members.size() == 1);
        CHECK_FALSE(rest.value().next_cursor.has_value());
        q.cursor = "!!";
        CHECK(service.ListMembers(segment, q).error().code == ErrorCode::kInvalidBody);
        CHECK(service.ResumeDestination("nope").error().name == "unknown_destination");
        auto deleted = service.DeleteSegment(segment);
        REQUIRE(deleted.ok());
        CHECK(deleted.value().members == 3);
        CHECK(service.GetSegment(segment).error().code == ErrorCode::kNotFound);
    }
}
