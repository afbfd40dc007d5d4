// The store at a large workspace's scale: each WAL stays under limits.max_wal_bytes while
// a database of a million members is folded under sustained overload and shrinks once the
// load stops (sizes, not times); folds of any batch size decide byte for byte alike.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "audsync/app/runtime.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/applier.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/migrations.hpp"
#include "audsync/store/store.hpp"
#include "support/helpers.hpp"
#include "support/store_access.hpp"
#include "support/sync_harness.hpp"

using namespace audsync;

namespace {

int64_t FileBytes(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

store::InboxEntry Entry(const std::string& message_id, const std::string& audience,
                        const std::string& key, bool included, int64_t event_ms,
                        int64_t received_ms) {
    store::InboxEntry e;
    e.destination = "ld";
    e.message_id = message_id;
    e.received_ms = received_ms;
    e.audience_id = audience;
    e.audience_key = audience + "_key";
    e.context_kind = "user";
    e.context_key = key;
    e.included = included;
    e.event_ms = event_ms;
    e.raw = R"({"messageId":")" + message_id + R"("})";
    return e;
}

// Appends the rows `make(k)` makes for k in [0, n) to `inbox`, at positions 1..n.
template <class Make>
void FillInbox(const std::string& inbox, int n, const Make& make) {
    store::Database i(inbox, false);
    store::Transaction tx(i);
    store::InboxStore s(i);
    for (int k = 0; k < n; ++k) {
        store::InboxEntry e = make(k);
        e.seq = k + 1;
        REQUIRE(s.Append(e) == e.seq);
    }
    tx.Commit();
}

// The pages of each commit of an applier's steps: Attach before the writer runs, set
// `stepped` at the start of each step.
struct StepCommits {
    std::mutex mu;
    std::vector<int64_t> pages;  // of each commit that carried a step
    int shared = 0;              // of them, those that carried queued jobs too
    std::atomic<bool> stepped{false};

    void Attach(store::Writer& writer, store::Applier& applier) {
        writer.SetAfterCommit([this, &writer, &applier] {
            applier.Committed(writer.committed_pages());
            std::lock_guard<std::mutex> lock(mu);
            if (stepped.exchange(false)) {
                if (writer.committed_jobs() > 0) ++shared;
                pages.push_back(writer.committed_pages());
            }
        });
    }
    int64_t most() {
        std::lock_guard<std::mutex> lock(mu);
        return pages.empty() ? 0 : *std::max_element(pages.begin(), pages.end());
    }
};

// A migrated database with the implicit target, and its inbox.
void MakeDatabase(const std::string& db) {
    store::Database d(db, true);
    REQUIRE(store::Migrate(d, store::EmbeddedMigrations()).ok());
    store::WriteStore w(d);
    w.EnsureDestination("ld", 0);
    w.EnsureTargets("ld", store::ImplicitTargets(), 0);
    store::Database i(store::InboxPath(db), true);
    store::PrepareInbox(i);
}

// Every column a member lookup and the engine read, of every membership and delivery.
std::string Dump(const std::string& db_path) {
    store::Database db(db_path, false);
    std::string out;
    store::Statement m(store::TestAccess::Handle(db),
                       "SELECT s.destination, s.audience_id, m.context_key, m.desired, m.version, "
                       "m.message_id, "
                       "m.event_ms, m.received_ms, coalesce(m.inbox_seq, -1), "
                       "coalesce(m.ignored_message_id, '-'), coalesce(m.ignored_outcome, '-'), "
                       "coalesce(m.ignored_ms, -1) FROM memberships m JOIN segments s "
                       "ON s.id = m.segment_id ORDER BY 1, 2, 3");
    while (m.Step()) {
        for (int c = 0; c < 12; ++c) out += m.Text(c) + "|";
        out += "\n";
    }
    store::Statement d(store::TestAccess::Handle(db),
                       "SELECT s.destination, s.audience_id, d.context_key, d.target, d.pending, "
                       "coalesce(d.acked, -1), coalesce(d.acked_version, -1), d.attempts, "
                       "d.next_attempt_ms, d.dead FROM deliveries d JOIN segments s "
                       "ON s.id = d.segment_id ORDER BY 1, 2, 3, 4");
    while (d.Step()) {
        for (int c = 0; c < 10; ++c) out += d.Text(c) + "|";
        out += "\n";
    }
    return out;
}

// Seeded: resends of earlier messageIds (duplicates), events out of time order, equal
// times, flips, over few members so that every rule meets every other.
std::vector<store::InboxEntry> Stream(size_t n, uint32_t seed, int64_t now) {
    std::mt19937 rng(seed);
    std::vector<store::InboxEntry> out;
    for (size_t i = 0; i < n; ++i) {
        if (!out.empty() && rng() % 6 == 0) {
            store::InboxEntry again = out[rng() % out.size()];
            out.push_back(again);
            continue;
        }
        out.push_back(Entry("m" + std::to_string(seed) + "-" + std::to_string(i),
                            rng() % 3 == 0 ? "aud_2" : "aud_1", "k" + std::to_string(rng() % 23),
                            rng() % 2 == 0, static_cast<int64_t>(rng() % 40),
                            now + static_cast<int64_t>(i)));
    }
    int64_t seq = 0;
    for (auto& e : out) e.seq = ++seq;
    return out;
}

}  // namespace

TEST_SUITE("storage") {
    TEST_CASE("folds in large and small batches decide byte for byte the same") {
        const int64_t now = text::NowMs();
        for (uint32_t seed : {1u, 2u, 3u, 17u, 99u}) {
            CAPTURE(seed);
            const auto stream = Stream(1500, seed, now);
            std::vector<std::string> dumps;
            for (size_t batch : {size_t{1}, size_t{7}, size_t{64}, size_t{500}, stream.size()}) {
                CAPTURE(batch);
                testing::TempDir dir;
                const std::string db = dir.File("f.db");
                MakeDatabase(db);
                {
                    store::Database d(db, false);
                    store::WriteStore w(d);
                    for (size_t at = 0; at < stream.size(); at += batch) {
                        store::Transaction tx(d);
                        std::vector<store::InboxEntry> part(
                            stream.begin() + static_cast<std::ptrdiff_t>(at),
                            stream.begin() +
                                static_cast<std::ptrdiff_t>(std::min(stream.size(), at + batch)));
                        w.Fold(part);
                        tx.Commit();
                    }
                }
                dumps.push_back(Dump(db));
                CHECK(dumps.back().size() > 0);
            }
            for (size_t i = 1; i < dumps.size(); ++i) CHECK(dumps[i] == dumps[0]);
        }
    }

    TEST_CASE("a plan keeps its rows compactly and decides as the rows themselves would") {
        // One segment named with two audience keys, a second destination with the same
        // audiences and keys, resends and equal times: a plan built in slices orders and
        // de-duplicates as one built at once, and folds as events applied one at a time.
        const int64_t now = text::NowMs();
        for (uint32_t seed : {7u, 8u, 9u}) {
            CAPTURE(seed);
            auto stream = Stream(1200, seed, now);
            std::mt19937 rng(seed);
            for (auto& e : stream) {
                if (rng() % 2 == 0) e.audience_key = e.audience_id + "_renamed";
                if (rng() % 4 == 0) e.destination = "ld2";
            }
            const store::FoldPlan whole = store::WriteStore::PlanFold(stream);
            store::FoldPlan sliced;
            for (size_t at = 0; at < stream.size(); at += 97) {
                sliced.Add(std::vector<store::InboxEntry>(
                    stream.begin() + static_cast<std::ptrdiff_t>(at),
                    stream.begin() +
                        static_cast<std::ptrdiff_t>(std::min(stream.size(), at + 97))));
            }
            sliced.Finish();
            REQUIRE(sliced.size() == stream.size());
            CHECK(sliced.order == whole.order);
            CHECK(sliced.checks == whole.checks);
            CHECK(sliced.duplicate == whole.duplicate);
            for (size_t i = 0; i < stream.size(); ++i) {
                CHECK(std::string(whole.MessageId(whole.rows[i])) == stream[i].message_id);
                CHECK(std::string(whole.Key(whole.rows[i])) == stream[i].context_key);
            }
            // A member is its destination, audience, kind and key, whatever audience key
            // names it; its events follow in arrival order.
            size_t members = 0;
            for (size_t at = 0; at < whole.order.size(); at = whole.MemberEnd(at)) {
                ++members;
                const auto& first = stream[whole.order[at]];
                for (size_t k = at + 1; k < whole.MemberEnd(at); ++k) {
                    const auto& e = stream[whole.order[k]];
                    CHECK(e.destination == first.destination);
                    CHECK(e.audience_id == first.audience_id);
                    CHECK(e.context_key == first.context_key);
                    CHECK(e.seq > stream[whole.order[k - 1]].seq);
                }
            }
            std::set<std::string> distinct;
            for (const auto& e : stream) {
                distinct.insert(e.destination + "|" + e.audience_id + "|" + e.context_key);
            }
            CHECK(members == distinct.size());

            std::vector<std::string> dumps;
            for (size_t batch : {size_t{1}, stream.size()}) {
                testing::TempDir dir;
                const std::string db = dir.File("p.db");
                MakeDatabase(db);
                {
                    store::Database d(db, false);
                    store::WriteStore w(d);
                    w.EnsureDestination("ld2", 0);
                    w.EnsureTargets("ld2", store::ImplicitTargets(), 0);
                    for (size_t at = 0; at < stream.size(); at += batch) {
                        store::Transaction tx(d);
                        w.Fold(std::vector<store::InboxEntry>(
                            stream.begin() + static_cast<std::ptrdiff_t>(at),
                            stream.begin() +
                                static_cast<std::ptrdiff_t>(std::min(stream.size(), at + batch))));
                        tx.Commit();
                    }
                }
                dumps.push_back(Dump(db));
            }
            CHECK(dumps[0].size() > 0);
            CHECK(dumps[1] == dumps[0]);
        }
    }

    TEST_CASE("a batch folded in parts, cut short after any part, decides what one fold does") {
        // Parts of a few rows each (a WAL share of two pages), each its own commit; the
        // applier is stopped after `cut` commits, as a crash would stop it, and a new one
        // finishes. Memberships, deliveries and the window are those of one fold.
        const int64_t now = text::NowMs();
        bool cut_in_checks = false;
        bool cut_in_members = false;
        for (uint32_t seed : {4u, 5u, 6u}) {
            CAPTURE(seed);
            const auto stream = Stream(800, seed, now);
            std::string expected;
            int64_t expected_dedupe = 0;
            {
                testing::TempDir dir;
                const std::string db = dir.File("one.db");
                MakeDatabase(db);
                store::Database d(db, false);
                store::WriteStore w(d);
                store::Transaction tx(d);
                w.Fold(stream);
                tx.Commit();
                expected = Dump(db);
                expected_dedupe = store::TestAccess::Int(d, "SELECT count(*) FROM dedupe");
            }
            REQUIRE(expected.size() > 0);
            for (int cut : {2, 6, 12, 30, 60, 1000000}) {
                CAPTURE(cut);
                testing::TempDir dir;
                const std::string db = dir.File("parts.db");
                const std::string inbox = store::InboxPath(db);
                MakeDatabase(db);
                {
                    store::Database i(inbox, false);
                    store::Transaction tx(i);
                    store::InboxStore s(i);
                    for (const auto& e : stream) REQUIRE(s.Append(e) == e.seq);
                    tx.Commit();
                }
                store::ApplierOptions options;
                // One batch, read 64 rows at a time into its plan, folded in parts.
                options.batch = 64;
                options.large_batch = static_cast<int>(stream.size());
                options.large_backlog = 0;
                options.max_transaction_wal_bytes = 2 * 4096;
                options.min_batch = 1;
                auto run = [&](int steps_at_most) {
                    store::InboxWriter inbox_writer(inbox, store::WriterOptions{});
                    store::Writer writer(db, store::WriterOptions{});
                    store::Applier applier(inbox, options, inbox_writer);
                    std::atomic<int> steps{0};
                    std::atomic<bool> idle{false};
                    writer.SetAfterCommit([&] { applier.Committed(writer.committed_pages()); });
                    writer.SetBackground(
                        [&](store::WriteStore& w) {
                            if (steps >= steps_at_most) {
                                idle = true;
                                return false;
                            }
                            ++steps;
                            return applier.Step(w);
                        },
                        options.poll_ms, [&] { applier.RolledBack(); });
                    const int64_t last = stream.back().seq;
                    REQUIRE(testing::Eventually(
                        [&] { return idle.load() || applier.applied_seq() >= last; }, 60000));
                    writer.Stop();
                    inbox_writer.Stop();
                    return applier.applied_seq() >= last;
                };
                if (!run(cut)) {
                    store::Database d(db, false);
                    const int64_t applied =
                        store::TestAccess::Int(d, "SELECT applied_seq FROM applier");
                    const int64_t fold_end =
                        store::TestAccess::Int(d, "SELECT coalesce(fold_end_seq, 0) FROM applier");
                    const int64_t own =
                        store::TestAccess::Int(d, "SELECT count(*) FROM dedupe WHERE seq > 0");
                    CHECK(applied == 0);
                    // The plan holds every slice read: its end is the batch's last row.
                    CHECK((fold_end == 0 || fold_end == stream.back().seq));
                    if (fold_end > 0) cut_in_members = true;
                    if (fold_end == 0 && own > 0) cut_in_checks = true;
                    REQUIRE(run(1000000));
                }
                CHECK(Dump(db) == expected);
                store::Database d(db, false);
                CHECK(store::TestAccess::Int(d, "SELECT count(*) FROM dedupe") == expected_dedupe);
                CHECK(store::TestAccess::Int(
                          d,
                          "SELECT count(*) FROM applier WHERE fold_end_seq IS NULL AND "
                          "fold_folded = 0") == 1);
            }
        }
        // Both phases were cut short at least once (else the parts were not small).
        CHECK(cut_in_checks);
        CHECK(cut_in_members);
    }

    TEST_CASE("jobs beside the applier do not shrink its parts") {
        // Every step is followed by a job writing about as many pages as the WAL share
        // (as the sync engine's acknowledgements do under load). Counted as the step's,
        // those pages would make each part smaller than the last, down to min_batch (1
        // here: some 12,000 steps). The writer commits jobs apart from the step, so the
        // parts grow from the first estimates (48 checks and 16 members a part: 500
        // steps) as they do alone.
        auto steps_to_fold = [](bool with_jobs) {
            testing::TempDir dir;
            const std::string db = dir.File("j.db");
            const std::string inbox = store::InboxPath(db);
            MakeDatabase(db);
            const int64_t now = text::NowMs();
            const int n = 6000;
            FillInbox(inbox, n, [&](int k) {
                return Entry("j" + std::to_string(k), "aud_1", "key" + std::to_string(k), true, now,
                             now);
            });
            store::ApplierOptions options;
            options.batch = n;  // one batch, in parts of a 48-page share
            options.max_transaction_wal_bytes = 48 * 4096;
            options.min_batch = 1;
            store::InboxWriter inbox_writer(inbox, store::WriterOptions{});
            store::Writer writer(db, store::WriterOptions{});
            store::Applier applier(inbox, options, inbox_writer);
            std::atomic<int> steps{0};
            std::atomic<int> jobs{0};
            writer.SetAfterCommit([&] { applier.Committed(writer.committed_pages()); });
            writer.SetBackground(
                [&](store::WriteStore& w) {
                    ++steps;
                    if (with_jobs) {
                        // ~48 pages: an audience with 192 KB of extras, a new one each time.
                        writer.Post([&jobs, k = steps.load()](store::WriteStore& ws) {
                            ws.UpsertAudience("ld", "job-" + std::to_string(k),
                                              "{\"x\":\"" + std::string(192 * 1024, 'x') + "\"}",
                                              std::nullopt, 0);
                            ++jobs;
                        });
                    }
                    return applier.Step(w);
                },
                options.poll_ms, [&] { applier.RolledBack(); });
            REQUIRE(applier.WaitApplied(n, 120000));
            writer.Stop();
            inbox_writer.Stop();
            if (with_jobs) CHECK(jobs.load() > 10);
            return steps.load();
        };
        const int alone = steps_to_fold(false);
        const int beside_jobs = steps_to_fold(true);
        MESSAGE("steps to fold alone " << alone << ", beside jobs " << beside_jobs);
        CHECK(alone > 5);  // folded in parts
        CHECK(beside_jobs <= 2 * alone + 10);
    }

    TEST_CASE("a part that writes more than its estimate makes the next one smaller, jobs or not") {
        // 3,000 members with short keys train the estimates low, then 3,000 with keys of
        // 1,500 bytes write some 20 times as many pages each. Every step is followed by a
        // job. The part that meets the long keys overshoots the WAL share (learning comes
        // after the fact); the next ones must be sized on what it wrote. Estimates that
        // ignored samples above them (as they must when jobs' pages are mixed in) would
        // cut every later part on the short keys' figure, each several times over. The
        // part that meets them stops once its transaction has spilled half the share.
        testing::TempDir dir;
        const std::string db = dir.File("grow.db");
        const std::string inbox = store::InboxPath(db);
        MakeDatabase(db);
        const int64_t now = text::NowMs();
        const int n = 6000;
        FillInbox(inbox, n, [&](int k) {
            // Sorted by key within the segment: the short keys ("a…") fold first.
            const std::string key = k < n / 2
                                        ? "a" + std::to_string(100000 + k)
                                        : "b" + std::to_string(100000 + k) + std::string(1500, 'k');
            return Entry("g" + std::to_string(k), "aud_1", key, true, now, now);
        });
        store::ApplierOptions options;
        options.batch = n;  // one plan, in parts of a 64-page share
        const int64_t share = 64;
        options.max_transaction_wal_bytes = share * 4096;
        options.min_batch = 1;
        store::InboxWriter inbox_writer(inbox, store::WriterOptions{});
        // A cache of 64 pages: a transaction that dirties more spills to the WAL before
        // its commit, which the step sees, and stops its part at half the share.
        store::WriterOptions small_cache;
        small_cache.cache_kib = 256;
        store::Writer writer(db, small_cache);
        store::Applier applier(inbox, options, inbox_writer);
        StepCommits commits;
        commits.Attach(writer, applier);
        std::atomic<int> jobs{0};
        writer.SetBackground(
            [&](store::WriteStore& w) {
                writer.Post([&jobs, k = jobs.load()](store::WriteStore& ws) {
                    ws.UpsertAudience("ld", "job-" + std::to_string(k),
                                      "{\"x\":\"" + std::string(64 * 4096, 'x') + "\"}",
                                      std::nullopt, 0);
                    ++jobs;
                });
                commits.stepped = true;
                return applier.Step(w);
            },
            options.poll_ms, [&] { applier.RolledBack(); });
        REQUIRE(applier.WaitApplied(n, 120000));
        writer.Stop();
        inbox_writer.Stop();
        CHECK(jobs.load() > 10);
        CHECK(commits.shared == 0);
        const int64_t most = commits.most();
        const auto over = std::count_if(commits.pages.begin(), commits.pages.end(),
                                        [&](int64_t pages) { return pages > 3 * share; });
        MESSAGE(commits.pages.size()
                << " steps, " << over << " over three shares, at most " << most << " pages");
        CHECK(commits.pages.size() > 20);  // folded in many parts
        CHECK(over <= 2);
        // Half the share spilled, the cache and one chunk at most.
        CHECK(most <= 4 * share);
    }

    TEST_CASE("a part is sized to a quarter of the room the main WAL has left") {
        // The same stream folded twice, the applier told that the WAL is empty, then
        // that it has 64 pages left before its bound (a file of that size stands in for
        // it): the share of 64 pages falls to 16, so the parts are smaller, and even a
        // part written at several times its estimate stays within the room.
        struct Folded {
            int steps = 0;
            int64_t most_pages = 0;
        };
        auto fold = [](int64_t room_pages) {
            testing::TempDir dir;
            const std::string db = dir.File("room.db");
            const std::string inbox = store::InboxPath(db);
            MakeDatabase(db);
            const int64_t now = text::NowMs();
            const int n = 4000;
            FillInbox(inbox, n, [&](int k) {
                return Entry("r" + std::to_string(k), "aud_" + std::to_string(k % 3),
                             "key" + std::to_string(k), true, now, now);
            });
            const int64_t bound = 1024 * 4096;
            const std::string wal = dir.File("stand-in-wal");
            {
                std::FILE* f = std::fopen(wal.c_str(), "wb");
                REQUIRE(f != nullptr);
                REQUIRE(::ftruncate(::fileno(f), bound - room_pages * 4096) == 0);
                std::fclose(f);
            }
            store::ApplierOptions options;
            options.batch = n;
            options.max_transaction_wal_bytes = 64 * 4096;
            options.min_batch = 1;
            options.wal_path = wal;
            options.max_wal_bytes = bound;
            store::InboxWriter inbox_writer(inbox, store::WriterOptions{});
            store::Writer writer(db, store::WriterOptions{});
            store::Applier applier(inbox, options, inbox_writer);
            StepCommits commits;
            commits.Attach(writer, applier);
            writer.SetBackground(
                [&](store::WriteStore& w) {
                    commits.stepped = true;
                    return applier.Step(w);
                },
                options.poll_ms, [&] { applier.RolledBack(); });
            REQUIRE(applier.WaitApplied(n, 120000));
            writer.Stop();
            inbox_writer.Stop();
            return Folded{static_cast<int>(commits.pages.size()), commits.most()};
        };
        const Folded roomy = fold(1024);
        const Folded tight = fold(64);
        MESSAGE("steps " << roomy.steps << " / " << tight.steps << ", at most " << roomy.most_pages
                         << " / " << tight.most_pages << " pages");
        CHECK(roomy.steps > 5);  // in parts either way
        CHECK(tight.steps > 2 * roomy.steps);
        CHECK(tight.most_pages <= 64);
    }

    TEST_CASE("a fold in progress whose rows the inbox lost is named, and applying goes on") {
        testing::TempDir dir;
        const std::string db = dir.File("lost.db");
        const std::string inbox = store::InboxPath(db);
        MakeDatabase(db);
        {
            store::Database d(db, false);
            store::WriteStore w(d);
            w.SetFoldProgress(40, 7);  // as a crash mid-fold left it, over an inbox now empty
        }
        std::mutex mu;
        std::vector<std::string> warnings;
        log::SetSinkForTesting([&](log::Level l, std::string_view m) {
            std::lock_guard<std::mutex> lock(mu);
            if (l == log::Level::kWarn) warnings.emplace_back(m);
        });
        store::InboxWriter inbox_writer(inbox, store::WriterOptions{});
        store::Writer writer(db, store::WriterOptions{});
        store::Applier applier(inbox, store::ApplierOptions{}, inbox_writer);
        writer.SetAfterCommit([&] { applier.Committed(writer.committed_pages()); });
        writer.SetBackground([&](store::WriteStore& w) { return applier.Step(w); }, 50,
                             [&] { applier.RolledBack(); });
        REQUIRE(applier.WaitApplied(40, 20000));
        writer.Stop();
        inbox_writer.Stop();
        log::SetSinkForTesting(nullptr);
        CHECK(std::count_if(warnings.begin(), warnings.end(), [](const std::string& m) {
                  return m.find("no longer holds the events at positions 1-40") !=
                         std::string::npos;
              }) == 1);
        store::Database d(db, false);
        CHECK(store::TestAccess::Int(d,
                                     "SELECT count(*) FROM applier WHERE applied_seq = 40 "
                                     "AND fold_end_seq IS NULL") == 1);
    }

    TEST_CASE("a batch is read whole and folded in parts that fit the WAL share, within bounds") {
        testing::TempDir dir;
        const std::string db = dir.File("n.db");
        MakeDatabase(db);
        store::InboxWriter inbox_writer(store::InboxPath(db), store::WriterOptions{});
        struct Row {
            int64_t wal_bytes;
            double pages_per_event;
            int part;
        };
        const store::ApplierOptions d;
        const Row rows[] = {
            {64LL * 1024 * 1024, 4, 4096},        // 16,384 pages / 4
            {64LL * 1024 * 1024, 0.5, 32768},     // fewer pages, larger parts
            {4LL * 1024 * 1024, 4, d.min_batch},  // 256 fit: the floor
            {int64_t{1} << 50, 1e-9, d.batch},    // never past a batch (nor int)
        };
        for (const auto& r : rows) {
            CAPTURE(r.wal_bytes);
            CAPTURE(r.pages_per_event);
            store::ApplierOptions o;
            o.max_transaction_wal_bytes = r.wal_bytes;
            store::Applier applier(store::InboxPath(db), o, inbox_writer);
            CHECK(applier.PartSize(r.pages_per_event) == r.part);
            // What is read does not depend on the WAL: the parts do.
            CHECK(applier.NextBatch(0) == d.batch);
            CHECK(applier.NextBatch(d.large_backlog) == d.batch);
            CHECK(applier.NextBatch(d.large_backlog + 1) == d.large_batch);
        }
        inbox_writer.Stop();
    }

    TEST_CASE("each WAL stays under its bound at a million members under overload, then shrinks") {
        testing::TempDir dir;
        const std::string db = dir.File("big.db");
        const std::string inbox = store::InboxPath(db);
        MakeDatabase(db);
        constexpr int kMembers = 1000000;
        {
            // A million members in one segment, each acknowledged by the target.
            store::Database d(db, false);
            store::WriteStore w(d);
            store::Transaction tx(d);
            w.Fold({Entry("seed", "aud_1", "u0000000", true, 1, 1)});
            store::TestAccess::Exec(
                d, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < " +
                       std::to_string(kMembers - 1) +
                       ") INSERT INTO memberships (segment_id, context_key, desired, version, "
                       "message_id, event_ms, received_ms) SELECT 1, printf('u%07d', i), 1, 1, "
                       "'seed-' || i, 1, 1 FROM c");
            store::TestAccess::Exec(
                d,
                "INSERT INTO deliveries (segment_id, context_key, target, pending, acked, "
                "acked_version) SELECT segment_id, context_key, 'launchdarkly', 0, 1, 1 "
                "FROM memberships WHERE true ON CONFLICT DO UPDATE SET pending = 0, acked = 1, "
                "acked_version = 1");
            tx.Commit();
            CHECK(store::TestAccess::Int(d, "SELECT count(*) FROM memberships") == kMembers);
            REQUIRE_FALSE(d.Checkpoint(store::Database::CheckpointMode::kTruncate).busy);
        }
        REQUIRE(FileBytes(db + "-wal") == 0);

        config::Config c = testing::TestConfig(db);
        c.limits.max_wal_bytes = 32LL * 1024 * 1024;  // the smallest test-sized bound
        const int64_t bound = static_cast<int64_t>(c.limits.max_wal_bytes);
        app::RuntimeOptions options;
        auto started = app::Runtime::Start(std::make_shared<const config::Config>(c), options);
        REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message));
        auto rt = std::move(started).value();

        // Every WAL's size, sampled while the load runs and the backlog drains.
        std::atomic<bool> sampling{true};
        std::atomic<int64_t> max_wal{0};
        std::atomic<int64_t> max_inbox_wal{0};
        std::thread sampler([&] {
            while (sampling) {
                max_wal = std::max<int64_t>(max_wal, FileBytes(db + "-wal"));
                max_inbox_wal = std::max<int64_t>(max_inbox_wal, FileBytes(inbox + "-wal"));
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
        });
        // Readers all along, as an operator's scrapes and status page make them: each
        // /metrics and segment list counts over the million members and the pending
        // changes. A read that held its snapshot for the whole count would keep every
        // TRUNCATE checkpoint from resetting the WAL.
        std::atomic<bool> reading{true};
        std::atomic<int> reads{0};
        std::thread reader([&] {
            while (reading) {
                auto metrics = rt->admin().Metrics();
                auto segments =
                    rt->admin().ListSegments(store::SegmentFilter{}, admin::PageQuery{});
                if (metrics.ok() && segments.ok()) reads.fetch_add(1);
            }
        });
        // Overload: events over random members appended far faster than a fold at this
        // size applies them (each dirties a page of each table of its own).
        std::mt19937 rng(7);
        constexpr int kEvents = 150000;
        constexpr int kPerAppend = 2500;
        int64_t last_seq = 0;
        const int64_t t0 = text::NowMs();
        for (int at = 0; at < kEvents; at += kPerAppend) {
            std::vector<store::InboxEntry> batch;
            for (int i = 0; i < kPerAppend; ++i) {
                char key[16];
                std::snprintf(key, sizeof key, "u%07u", static_cast<unsigned>(rng() % kMembers));
                batch.push_back(Entry("load-" + std::to_string(at + i), "aud_1", key,
                                      rng() % 2 == 0, 1000 + at + i, t0 + at));
            }
            REQUIRE(rt->inbox_writer()
                        .Run(
                            [&](store::InboxStore& s) {
                                for (const auto& e : batch) last_seq = s.Append(e);
                            },
                            batch.size())
                        .ok());
        }
        CHECK(rt->applier().applied_seq() < last_seq);  // a backlog was left behind
        REQUIRE(
            testing::Eventually([&] { return rt->applier().applied_seq() >= last_seq; }, 110000));
        // Once the load stops, the checkpointer takes each WAL back to (nearly) nothing.
        REQUIRE(testing::Eventually(
            [&] {
                return FileBytes(db + "-wal") <= bound / 8 &&
                       FileBytes(inbox + "-wal") <= bound / 8;
            },
            30000));
        reading = false;
        reader.join();
        sampling = false;
        sampler.join();
        CHECK(reads > 0);
        MESSAGE("reads " << reads.load() << ", max WAL " << max_wal / 1024 << " KB, max inbox WAL "
                         << max_inbox_wal / 1024 << " KB, bound " << bound / 1024 << " KB");
        CHECK(max_wal > 0);
        CHECK(max_wal <= bound);
        CHECK(max_inbox_wal <= bound);
        CHECK(rt->checkpointer().counters().truncates > 0);
        CHECK(rt->checkpointer().counters().over_bound == 0);
        rt->Stop();
        store::Database d(db, false);
        CHECK(store::TestAccess::Int(d, "SELECT count(*) FROM memberships") >= kMembers);
    }
}

TEST_SUITE("storage") {
    // With no checkpointer at all, the writer alone holds its WAL: past wal_stop_bytes after
    // a commit it truncates the file before its next transaction. Without the option the
    // same appends grow the WAL to their whole size, so the check can fail.
    TEST_CASE("a writer past wal_stop_bytes truncates its own WAL before its next transaction") {
        for (const bool bounded : {true, false}) {
            CAPTURE(bounded);
            testing::TempDir dir;
            const std::string db = dir.File("w.db");
            MakeDatabase(db);
            const std::string inbox = store::InboxPath(db);
            store::WriterOptions o;
            o.wal_stop_bytes = bounded ? 1024 * 1024 : 0;
            store::InboxWriter writer(inbox, o);
            int64_t largest = 0;
            constexpr int kJobs = 60;
            constexpr int kPerJob = 500;  // each job about 250 KB of WAL
            for (int j = 0; j < kJobs; ++j) {
                REQUIRE(writer
                            .Run(
                                [&](store::InboxStore& s) {
                                    for (int i = 0; i < kPerJob; ++i) {
                                        store::InboxEntry e =
                                            Entry("m" + std::to_string(j * kPerJob + i), "aud_1",
                                                  "k" + std::to_string(i), true, 1, 1);
                                        e.raw = std::string(400, 'x');
                                        s.Append(e);
                                    }
                                },
                                kPerJob)
                            .ok());
                // Run returns after the commit; the truncation runs before the next group,
                // so the file is measured after the following job's commit at the latest.
                largest = std::max(largest, FileBytes(inbox + "-wal"));
            }
            writer.Stop();
            if (bounded) {
                // The stop size plus what one job adds (a job commits alone here).
                CHECK(largest <= 2 * 1024 * 1024);
                CHECK(writer.wal_stops() > 0);
                CHECK(writer.wal_stops_busy() == 0);
            } else {
                CHECK(largest > 8 * 1024 * 1024);
                CHECK(writer.wal_stops() == 0);
            }
        }
    }

    // At wal_max_bytes the writer leaves room for a commit as large as its recent ones,
    // not only for twice wal_stop_bytes: with commits of some 5 MB against a stop size of
    // 512 KB and a limit of 8 MB, a writer counting on 1 MB of headroom would commit the
    // second one over the limit while a reader holds the first.
    TEST_CASE("a writer at wal_max_bytes leaves room for a commit as large as its last") {
        testing::TempDir dir;
        const std::string db = dir.File("w.db");
        MakeDatabase(db);
        const std::string inbox = store::InboxPath(db);
        constexpr int64_t kStop = 512 * 1024;
        constexpr int64_t kLimit = 8 * 1024 * 1024;
        store::WriterOptions o;
        o.wal_stop_bytes = kStop;
        o.wal_max_bytes = kLimit;
        o.wal_stop_busy_ms = 20;
        log::SetSinkForTesting([](log::Level, std::string_view) {});
        store::InboxWriter writer(inbox, o);
        auto job = [&](int j, int entries) {
            return writer.Run(
                [&, j, entries](store::InboxStore& s) {
                    for (int i = 0; i < entries; ++i) {
                        store::InboxEntry e =
                            Entry("m" + std::to_string(j) + "-" + std::to_string(i), "aud_1",
                                  "k" + std::to_string(i), true, 1, 1);
                        e.raw = std::string(3900, 'x');
                        s.Append(e);
                    }
                },
                static_cast<size_t>(entries));
        };
        REQUIRE(job(0, 10).ok());  // under the stop size: no truncation
        const int64_t before = FileBytes(inbox + "-wal");
        REQUIRE(before < kStop);
        store::Database reader(inbox, false);
        store::TestAccess::Exec(reader, "BEGIN");
        CHECK(store::TestAccess::Int(reader, "SELECT count(*) FROM inbox") == 10);
        REQUIRE(job(1, 1100).ok());
        const int64_t first = FileBytes(inbox + "-wal");
        // One such commit fits under the limit with 1 MB to spare; two do not.
        REQUIRE(first - before > kLimit / 2);
        REQUIRE(first + 2 * kStop < kLimit);
        std::atomic<int> done{0};
        std::atomic<int64_t> largest{first};
        std::thread appender([&] {
            for (int j = 2; j <= 4; ++j) {
                if (!job(j, 1100).ok()) break;
                largest = std::max<int64_t>(largest, FileBytes(inbox + "-wal"));
                done.fetch_add(1);
            }
        });
        CHECK(testing::Eventually([&] { return writer.wal_waits() == 1; }, 20000));
        CHECK(done.load() == 0);
        CHECK(FileBytes(inbox + "-wal") <= kLimit);
        store::TestAccess::Exec(reader, "COMMIT");
        appender.join();
        writer.Stop();
        log::SetSinkForTesting(nullptr);
        CHECK(done.load() == 3);
        CHECK(largest <= kLimit);
    }

    // A reader holding an old snapshot keeps every truncation from completing. Without
    // wal_max_bytes the writer gives up after wal_stop_busy_ms each time and its WAL grows
    // with every job; with it, the writer stops at the limit (one more job could pass it),
    // warns once the wait passes a second, and goes on when the reader lets go.
    TEST_CASE("a writer at wal_max_bytes waits for a reader of an old snapshot, then goes on") {
        for (const bool limited : {true, false}) {
            CAPTURE(limited);
            testing::TempDir dir;
            const std::string db = dir.File("w.db");
            MakeDatabase(db);
            const std::string inbox = store::InboxPath(db);
            constexpr int64_t kStop = 1024 * 1024;
            constexpr int64_t kLimit = 4 * kStop;
            store::WriterOptions o;
            o.wal_stop_bytes = kStop;
            o.wal_max_bytes = limited ? kLimit : 0;
            o.wal_stop_busy_ms = 20;
            std::mutex log_mu;
            std::vector<std::pair<log::Level, std::string>> lines;
            log::SetSinkForTesting([&](log::Level l, std::string_view m) {
                std::lock_guard<std::mutex> lock(log_mu);
                lines.emplace_back(l, std::string(m));
            });
            auto count_lines = [&](log::Level level, const std::string& part) {
                std::lock_guard<std::mutex> lock(log_mu);
                return std::count_if(lines.begin(), lines.end(), [&](const auto& line) {
                    return line.first == level && line.second.find(part) != std::string::npos;
                });
            };
            store::InboxWriter writer(inbox, o);
            std::atomic<int> done{0};
            auto job = [&](int j) {
                return writer.Run(
                    [&, j](store::InboxStore& s) {
                        for (int i = 0; i < 500; ++i) {  // about 250 KB of WAL
                            store::InboxEntry e = Entry("m" + std::to_string(j * 500 + i), "aud_1",
                                                        "k" + std::to_string(i), true, 1, 1);
                            e.raw = std::string(400, 'x');
                            s.Append(e);
                        }
                    },
                    500);
            };
            REQUIRE(job(0).ok());
            store::Database reader(inbox, false);
            store::TestAccess::Exec(reader, "BEGIN");
            CHECK(store::TestAccess::Int(reader, "SELECT count(*) FROM inbox") == 500);
            constexpr int kJobs = 40;  // 10 MB in all, well past the limit
            std::atomic<int64_t> largest{0};
            std::thread appender([&] {
                for (int j = 1; j <= kJobs; ++j) {
                    if (!job(j).ok()) break;
                    largest = std::max<int64_t>(largest, FileBytes(inbox + "-wal"));
                    done.fetch_add(1);
                }
            });
            if (limited) {
                // The writer is held at the limit while the reader holds its snapshot.
                CHECK(testing::Eventually([&] { return writer.wal_waits() == 1; }, 20000));
                CHECK(testing::Eventually(
                    [&] {
                        return count_lines(log::Level::kWarn, "writing waits until the readers") ==
                               1;
                    },
                    20000));
                CHECK(count_lines(log::Level::kInfo, "was let go") == 0);
                const int held = done.load();
                CHECK(held < kJobs);
                CHECK(FileBytes(inbox + "-wal") <= kLimit);
            } else {
                CHECK(testing::Eventually([&] { return done.load() == kJobs; }, 60000));
            }
            store::TestAccess::Exec(reader, "COMMIT");
            appender.join();
            CHECK(done.load() == kJobs);
            writer.Stop();
            log::SetSinkForTesting(nullptr);
            if (limited) {
                CHECK(largest <= kLimit);
                CHECK(writer.wal_waits() == 1);
                CHECK(count_lines(log::Level::kWarn, "writing waits until the readers") == 1);
                CHECK(count_lines(log::Level::kInfo, "was let go: writing goes on") == 1);
            } else {
                CHECK(largest > kLimit);
                CHECK(writer.wal_waits() == 0);
                CHECK(count_lines(log::Level::kWarn, "writing waits") == 0);
            }
        }
    }
}
