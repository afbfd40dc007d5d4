// The durable inbox and the applier: batched folds equal one-at-a-time application,
// crash-safe resumption, shared work, retention, the schema-5 migration, the backlog.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "audsync/app/runtime.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/store/applier.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/inspect.hpp"
#include "audsync/store/migrations.hpp"
#include "audsync/store/queries.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "support/helpers.hpp"
#include "support/process.hpp"
#include "support/store_access.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;

namespace {

// A migrated database with the inbox beside it.
struct Files {
    testing::TempDir dir;
    std::string db = dir.File("a.db");
    std::string inbox = store::InboxPath(db);
    Files() {
        store::Database d(db, true);
        REQUIRE(store::Migrate(d, store::EmbeddedMigrations()).ok());
        store::WriteStore w(d);
        w.EnsureTargets("ld", store::ImplicitTargets(), 0);
        store::Database i(inbox, true);
        store::PrepareInbox(i);
    }
};

store::InboxEntry Entry(const std::string& message_id, const std::string& key, bool included,
                        int64_t event_ms, const std::string& audience = "aud_1") {
    store::InboxEntry e;
    e.destination = "ld";
    e.message_id = message_id;
    e.received_ms = text::NowMs();  // inside the de-duplication window
    e.audience_id = audience;
    e.audience_key = audience + "_key";
    e.context_kind = "user";
    e.context_key = key;
    e.included = included;
    e.event_ms = event_ms;
    e.raw = R"({"messageId":")" + message_id + R"("})";
    return e;
}

// A stream with duplicates (resent messageIds), late and equal times, over few keys.
std::vector<store::InboxEntry> Stream(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<store::InboxEntry> out;
    for (size_t i = 0; i < n; ++i) {
        if (!out.empty() && rng() % 5 == 0) {
            out.push_back(out[rng() % out.size()]);  // a resend, same messageId
            continue;
        }
        out.push_back(Entry("m" + std::to_string(i), "k" + std::to_string(rng() % 7),
                            rng() % 2 == 0, static_cast<int64_t>(rng() % 20),
                            rng() % 3 == 0 ? "aud_2" : "aud_1"));
    }
    return out;
}

// Every membership column, in key order, as one string per row.
std::vector<std::string> Memberships(const std::string& db_path) {
    store::Database db(db_path, false);
    store::Statement s(store::TestAccess::Handle(db),
                       "SELECT s.audience_id, m.context_key, m.desired, m.version, m.message_id, "
                       "m.event_ms, coalesce(m.ignored_message_id, '-'), "
                       "coalesce(m.ignored_outcome, '-') FROM memberships m JOIN segments s ON "
                       "s.id = m.segment_id ORDER BY 1, 2");
    std::vector<std::string> out;
    while (s.Step()) {
        std::string row;
        for (int c = 0; c < 8; ++c) row += s.Text(c) + "|";
        out.push_back(row);
    }
    return out;
}

std::vector<store::InboxEntry> Append(const std::string& inbox,
                                      std::vector<store::InboxEntry> entries) {
    store::Database db(inbox, false);
    store::Transaction tx(db);
    store::InboxStore s(db);
    for (auto& e : entries) e.seq = s.Append(e);
    tx.Commit();
    return entries;
}

// A writer with an applier on `files`, as the runtime wires them.
struct Applying {
    store::InboxWriter inbox_writer;
    store::Writer writer;
    store::Applier applier;
    Applying(const Files& f, store::ApplierOptions options)
        : inbox_writer(f.inbox, store::WriterOptions{}),
          writer(f.db, store::WriterOptions{}),
          applier(f.inbox, options, inbox_writer) {
        writer.SetAfterCommit([this] { applier.Committed(writer.committed_pages()); });
        writer.SetBackground([this](store::WriteStore& w) { return applier.Step(w); },
                             options.poll_ms, [this] { applier.RolledBack(); });
    }
    ~Applying() {
        writer.Stop();
        inbox_writer.Stop();
    }
};

// The whole stream folded in one batch from scratch, with seqs in its order.
void FoldAll(const Files& f, std::vector<store::InboxEntry> entries) {
    store::Database d(f.db, false);
    store::WriteStore w(d);
    int64_t seq = 0;
    for (auto& e : entries) e.seq = ++seq;
    w.Fold(entries);
}

int64_t Rows(const std::string& path, const std::string& sql) {
    store::Database d(path, false);
    return store::TestAccess::Int(d, sql);
}

}  // namespace

TEST_SUITE("inbox") {
    TEST_CASE("a fold of a batch decides exactly what one event at a time decides") {
        for (uint32_t seed : {1u, 2u, 3u, 4u}) {
            CAPTURE(seed);
            auto stream = Stream(400, seed);
            Files one;
            Files batched;
            store::FoldCounts singles;
            {
                store::Database d(one.db, false);
                store::WriteStore w(d);
                for (auto e : stream) {
                    switch (w.Apply(
                        e.destination, e.message_id,
                        mapping::MembershipChange{e.audience_id, e.audience_key, e.context_kind,
                                                  e.context_key, e.included, e.event_ms},
                        e.received_ms)) {
                        case store::ApplyOutcome::kAccepted:
                            ++singles.accepted;
                            break;
                        case store::ApplyOutcome::kDuplicate:
                            ++singles.duplicates;
                            break;
                        case store::ApplyOutcome::kStale:
                            ++singles.stale;
                            break;
                    }
                }
            }
            store::FoldCounts folded;
            {
                store::Database d(batched.db, false);
                store::WriteStore w(d);
                std::mt19937 rng(seed);
                int64_t seq = 0;
                for (size_t i = 0; i < stream.size();) {
                    size_t n = std::min(stream.size() - i, size_t{1} + rng() % 60);
                    std::vector<store::InboxEntry> part(stream.begin() + static_cast<long>(i),
                                                        stream.begin() + static_cast<long>(i + n));
                    for (auto& e : part) e.seq = ++seq;
                    auto c = w.Fold(part);
                    folded.accepted += c.accepted;
                    folded.duplicates += c.duplicates;
                    folded.stale += c.stale;
                    i += n;
                }
            }
            CHECK(folded.accepted == singles.accepted);
            CHECK(folded.duplicates == singles.duplicates);
            CHECK(folded.stale == singles.stale);
            CHECK(folded.accepted + folded.duplicates + folded.stale ==
                  static_cast<int64_t>(stream.size()));
            CHECK(singles.duplicates > 0);
            CHECK(singles.stale > 0);
            CHECK(Memberships(batched.db) == Memberships(one.db));
            CHECK(Rows(batched.db, "SELECT count(*) FROM deliveries WHERE pending = 1") ==
                  Rows(one.db, "SELECT count(*) FROM deliveries WHERE pending = 1"));
        }
    }

    TEST_CASE("the applier resumes where its last commit left off and applies nothing twice") {
        Files f;
        auto stream = Stream(3000, 9);
        Append(f.inbox, stream);
        store::ApplierOptions options;
        options.batch = 97;  // many steps
        int64_t applied_first = 0;
        {
            // A step that fails after folding is rolled back whole (the position too).
            store::InboxWriter inbox_writer(f.inbox, store::WriterOptions{});
            store::Writer writer(f.db, store::WriterOptions{});
            store::Applier applier(f.inbox, options, inbox_writer);
            std::atomic<int> steps{0};
            // What the applier publishes never runs ahead of what is committed.
            std::atomic<int> ahead{0};
            writer.SetAfterCommit([&] {
                applier.Committed(writer.committed_pages());
                if (applier.applied_seq() > Rows(f.db, "SELECT applied_seq FROM applier")) ++ahead;
            });
            writer.SetBackground(
                [&](store::WriteStore& w) {
                    if (steps >= 12) return false;  // idle from here until stopped
                    bool more = applier.Step(w);
                    if (++steps == 5) throw store::SqliteError("simulated crash inside a step");
                    return more;
                },
                options.poll_ms, [&] { applier.RolledBack(); });
            REQUIRE(testing::Eventually([&] { return steps >= 12; }, 20000));
            writer.Stop();
            inbox_writer.Stop();
            applied_first = applier.applied_seq();
            CHECK(ahead == 0);
        }
        CHECK(applied_first > 0);
        CHECK(applied_first < static_cast<int64_t>(stream.size()));
        CHECK(Rows(f.db, "SELECT applied_seq FROM applier") == applied_first);
        {
            Applying a(f, options);
            REQUIRE(a.applier.WaitApplied(static_cast<int64_t>(stream.size()), 30000));
        }
        // The same stream folded in one go from scratch gives the same rows.
        Files fresh;
        FoldAll(fresh, stream);
        CHECK(Memberships(f.db) == Memberships(fresh.db));
        CHECK(Rows(f.db, "SELECT count(*) FROM dedupe") ==
              Rows(fresh.db, "SELECT count(*) FROM dedupe"));
    }

    TEST_CASE("two appliers on one database share the inbox and apply each event once") {
        Files f;
        auto stream = Stream(4000, 21);
        Append(f.inbox, stream);
        store::ApplierOptions options;
        options.batch = 50;
        uint64_t decided = 0;
        {
            Applying a(f, options);
            Applying b(f, options);
            const int64_t last = static_cast<int64_t>(stream.size());
            REQUIRE(testing::Eventually(
                [&] { return a.applier.applied_seq() >= last && b.applier.applied_seq() >= last; },
                30000));
            for (const auto* c : {&a.applier.counters(), &b.applier.counters()}) {
                decided += c->accepted + c->duplicates + c->stale;
            }
            CHECK(a.applier.counters().applied.load() + b.applier.counters().applied.load() ==
                  stream.size());
        }
        CHECK(decided == stream.size());
        Files fresh;
        FoldAll(fresh, stream);
        CHECK(Memberships(f.db) == Memberships(fresh.db));
    }

    TEST_CASE("raw events stay for raw_retention_hours, or go once applied with 0") {
        for (int64_t retention_ms : {int64_t{0}, int64_t{24} * 3600 * 1000}) {
            CAPTURE(retention_ms);
            Files f;
            auto stored = Append(f.inbox, {Entry("r1", "u1", true, 5), Entry("r2", "u2", true, 5),
                                           Entry("r3", "u1", false, 6)});
            store::ApplierOptions options;
            options.raw_retention_ms = retention_ms;
            Applying a(f, options);
            REQUIRE(a.applier.WaitApplied(stored.back().seq, 20000));
            auto member = [&] {
                store::Database d(f.db, false);
                auto m = store::FindMembership(d, "ld", "aud_1", "user", "u1");
                REQUIRE(m.has_value());
                return *store::GetMember(d, m->segment_id, "u1");
            };
            REQUIRE(member().inbox_seq == std::optional<int64_t>(stored[2].seq));
            if (retention_ms == 0) {
                REQUIRE(testing::Eventually(
                    [&] { return Rows(f.inbox, "SELECT count(*) FROM inbox") == 0; }, 20000));
                CHECK_FALSE(store::FindEventRaw(f.inbox, stored[2].seq, "ld", "r3").has_value());
            } else {
                CHECK(Rows(f.inbox, "SELECT count(*) FROM inbox") == 3);
                auto raw = store::FindEventRaw(f.inbox, stored[2].seq, "ld", "r3");
                CHECK(raw == std::optional<std::string>(stored[2].raw));
                // The seq of another event never shows a payload that is not the deciding one.
                CHECK_FALSE(store::FindEventRaw(f.inbox, stored[0].seq, "ld", "r3").has_value());
            }
            // Appends go on after pruning, above every seq handed out before.
            auto more = Append(f.inbox, {Entry("r4", "u3", true, 7)});
            CHECK(more[0].seq > stored.back().seq);
            REQUIRE(a.applier.WaitApplied(more[0].seq, 20000));
        }
    }

    TEST_CASE("de-duplication entries are pruned past the window in slices of the key space") {
        Files f;
        store::Database d(f.db, false);
        store::WriteStore w(d);
        for (int i = 0; i < 300; ++i) {
            w.Apply(
                "ld", "old-" + std::to_string(i),
                mapping::MembershipChange{"aud_1", "k", "user", "u" + std::to_string(i), true, 1},
                1000);
            w.Apply(
                "ld", "new-" + std::to_string(i),
                mapping::MembershipChange{"aud_1", "k", "user", "v" + std::to_string(i), true, 1},
                9000);
        }
        int64_t pruned = 0;
        for (int slice = 0; slice < 16; ++slice) pruned += w.PruneDedupe(5000, slice, 16);
        CHECK(pruned == 300);
        CHECK(store::TestAccess::CountDedupe(d) == 300);
        CHECK_FALSE(store::HasEvent(d, "ld", "old-7"));
        CHECK(store::HasEvent(d, "ld", "new-7"));
    }

    TEST_CASE("a database of schema 4 keeps membership, acknowledgements and dedupe history") {
        testing::TempDir dir;
        const std::string path = dir.File("v4.db");
        {
            store::Database d(path, true);
            auto all = store::EmbeddedMigrations();
            REQUIRE(all.size() >= 5);
            std::vector<store::Migration> v4(all.begin(), all.begin() + 4);
            REQUIRE(v4.back().version == 4);
            REQUIRE(store::Migrate(d, v4).ok());
            for (const char* sql : {
                     "INSERT INTO destinations (id, created_ms) VALUES ('ld', 1)",
                     "INSERT INTO targets (destination, id, platform, created_ms) "
                     "VALUES ('ld', 'launchdarkly', 'launchdarkly', 1)",
                     "INSERT INTO segments (id, destination, audience_id, audience_key, "
                     "context_kind, created_ms) VALUES (1, 'ld', 'aud_1', 'k', 'user', 1)",
                     "INSERT INTO memberships (segment_id, context_key, desired, version, "
                     "message_id, event_ms, received_ms) VALUES (1, 'u1', 1, 3, 'm-old', 500, "
                     "600), (1, 'u2', 0, 2, 'm-two', 500, 600)",
                     "INSERT INTO deliveries (segment_id, context_key, target, pending, acked, "
                     "acked_version) VALUES (1, 'u1', 'launchdarkly', 0, 1, 3), "
                     "(1, 'u2', 'launchdarkly', 1, 1, 1)",
                     "INSERT INTO events (destination, message_id, received_ms, event_ms, "
                     "outcome, segment_id, context_key, raw) VALUES ('ld', 'm-old', 600, 500, "
                     "'accepted', 1, 'u1', '{}'), ('ld', 'm-two', 600, 500, 'accepted', 1, "
                     "'u2', '{}'), ('ld', 'm-stale', 700, 100, 'stale', 1, 'u1', '{}')",
                 }) {
                store::TestAccess::Exec(d, sql);
            }
        }
        store::Database d(path, false);
        auto migrated = store::Migrate(d, store::EmbeddedMigrations());
        REQUIRE(migrated.ok());
        CHECK(d.SchemaVersion() == store::EmbeddedMigrations().back().version);
        auto m = store::GetMember(d, 1, "u1");
        REQUIRE(m.has_value());
        CHECK(m->desired);
        CHECK(m->version == 3);
        CHECK(m->message_id == "m-old");
        CHECK(m->acked == std::optional<bool>(true));
        CHECK_FALSE(m->pending());
        auto two = store::GetMember(d, 1, "u2");
        REQUIRE(two.has_value());
        CHECK(two->pending());
        for (const char* id : {"m-old", "m-two", "m-stale"}) {
            CAPTURE(id);
            CHECK(store::HasEvent(d, "ld", id));
        }
        CHECK(Rows(path, "SELECT count(*) FROM sqlite_master WHERE name = 'events'") == 0);
        // A resent old event is still a duplicate; a new one applies on the old state.
        store::WriteStore w(d);
        CHECK(w.Apply("ld", "m-stale",
                      mapping::MembershipChange{"aud_1", "k", "user", "u1", false, 900},
                      1000) == store::ApplyOutcome::kDuplicate);
        CHECK(w.Apply("ld", "m-new",
                      mapping::MembershipChange{"aud_1", "k", "user", "u1", false, 900},
                      1000) == store::ApplyOutcome::kAccepted);
        auto after = store::GetMember(d, 1, "u1");
        CHECK(after->version == 4);
        CHECK(after->pending());
    }

    TEST_CASE("an inbox file lost after its events were applied does not hide new events") {
        testing::TempDir dir;
        config::Config c = testing::TestConfig(dir.File("lost.db"));
        app::RuntimeOptions options;
        options.create_database = true;
        auto ingest_one = [&](app::Runtime& rt, const std::string& id, const std::string& user) {
            testing::EngageEvent e;
            e.message_id = id;
            e.user_id = user;
            auto parsed = segment::ParseWebhookBody("[" + e.Json() + "]", c.limits);
            REQUIRE(parsed.ok());
            auto s = rt.ingest().Apply(*c.FindDestination("ld"), parsed.value().items);
            REQUIRE(s.ok());
            REQUIRE(rt.applier().WaitApplied(s.value().last_seq, 20000));
        };
        {
            auto rt = app::Runtime::Start(std::make_shared<const config::Config>(c), options);
            REQUIRE(rt.ok());
            ingest_one(*rt.value(), "a1", "u1");
            ingest_one(*rt.value(), "a2", "u2");
        }
        const std::string inbox = store::InboxPath(c.database);
        for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((inbox + suffix).c_str());
        auto rt = app::Runtime::Start(std::make_shared<const config::Config>(c), options);
        REQUIRE(rt.ok());
        ingest_one(*rt.value(), "a3", "u3");
        store::Database d(c.database, false);
        CHECK(store::FindMembership(d, "ld", "aud_1", "user", "u3").has_value());
    }

    TEST_CASE("reads report the backlog, and /readyz refuses while it is older than the bound") {
        testing::TempDir dir;
        const std::string db = dir.File("b.db");
        const std::string cfg = dir.File("c.json");
        std::string json = testing::TestConfigJson(db);
        json.insert(1, R"("ready_max_backlog_seconds":1,)");
        std::ofstream(cfg) << json;
        testing::ServerProcess server(cfg);
        REQUIRE_MESSAGE(server.Start(), server.Log());
        testing::HttpClient http;
        const std::vector<std::string> admin = {std::string("Authorization: Bearer ") +
                                                testing::kAdminToken};
        CHECK(http.Get(server.url("/readyz")).status == 200);
        {
            // Another connection holds the database's write lock: the applier cannot commit,
            // ingest (the inbox) goes on.
            store::Database blocker(db, false);
            store::Transaction hold(blocker);
            testing::EngageEvent e;
            e.message_id = "held-1";
            auto r = http.Post(server.url("/v1/identify"), e.Json(), {testing::BasicAuth("wk-ld")});
            REQUIRE(r.status == 200);
            testing::HttpResponse ready;
            REQUIRE(testing::Eventually(
                [&] {
                    ready = http.Get(server.url("/readyz"));
                    return ready.status == 503;
                },
                15000));
            CHECK(ready.body.find("not_ready") != std::string::npos);
            CHECK(ready.body.find("not applied yet") != std::string::npos);
            auto metrics = http.Get(server.url("/metrics"), admin);
            CHECK(metrics.body.find("audsync_inbox_backlog_events 1") != std::string::npos);
            auto segments = http.Get(server.url("/v1/segments"), admin);
            rapidjson::Document doc;
            REQUIRE(json::Parse(segments.body, doc, 32).ok());
            CHECK(doc["backlog"]["events"].GetInt64() == 1);
            CHECK(doc["backlog"]["age_seconds"].GetDouble() >= 1.0);
            CHECK(doc["segments"].Size() == 0);  // the event is not applied yet
            auto cli = testing::RunAudsync({"segments", "list", "--config", cfg});
            CHECK_MESSAGE(cli.exit_code == 0, cli.err);
            CHECK_MESSAGE(cli.out.find("1 stored event not applied yet") != std::string::npos,
                          cli.out);
        }
        REQUIRE(testing::Eventually([&] { return http.Get(server.url("/readyz")).status == 200; },
                                    30000));
        auto segments = http.Get(server.url("/v1/segments"), admin);
        rapidjson::Document doc;
        REQUIRE(json::Parse(segments.body, doc, 32).ok());
        CHECK(doc["backlog"]["events"].GetInt64() == 0);
        CHECK(doc["segments"].Size() == 1);
        CHECK(server.Stop() == 0);
    }
}
