// Tests of the ingest service without HTTP: not-applicable reasons and context-kind warnings.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <mutex>
#include <string>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/migrations.hpp"
#include "support/helpers.hpp"

using namespace audsync;
using testing::EngageEvent;

namespace {

// Captures log lines for the life of the object.
class LogCapture {
  public:
    LogCapture() {
        log::SetSinkForTesting([this](log::Level level, std::string_view line) {
            std::lock_guard<std::mutex> lock(mu_);
            if (level == log::Level::kWarn) warnings_.emplace_back(line);
        });
    }
    ~LogCapture() { log::SetSinkForTesting({}); }
    std::vector<std::string> Warnings() const {
        std::lock_guard<std::mutex> lock(mu_);
        return warnings_;
    }

  private:
    mutable std::mutex mu_;
    std::vector<std::string> warnings_;
};

// An ingest service over a fresh database with the helpers' test config.
struct Fixture {
    testing::TempDir dir;
    config::Config config;
    ingest::AudienceRegistry audiences;
    std::unique_ptr<store::Writer> writer;
    std::unique_ptr<ingest::Service> service;

    Fixture() : config(testing::TestConfig(dir.File("i.db"))) {
        {
            store::Database db(config.database, true);
            REQUIRE(store::Migrate(db, store::EmbeddedMigrations()).ok());
        }
        writer = std::make_unique<store::Writer>(config.database, store::WriterOptions{});
        service = std::make_unique<ingest::Service>(config, *writer, audiences);
    }
    ~Fixture() { writer->Stop(); }

    ingest::Summary Apply(const std::vector<std::string>& events,
                          const std::string& destination = "ld") {
        std::string body = "[";
        for (size_t i = 0; i < events.size(); ++i) body += (i ? "," : "") + events[i];
        body += "]";
        auto parsed = segment::ParseWebhookBody(body, config.limits);
        REQUIRE(parsed.ok());
        auto summary = service->Apply(*config.FindDestination(destination), parsed.value().items);
        REQUIRE(summary.ok());
        return summary.value();
    }
};

std::string Event(const std::string& id, void (*edit)(EngageEvent&) = nullptr) {
    EngageEvent e;
    e.message_id = id;
    if (edit != nullptr) edit(e);
    return e.Json();
}

}  // namespace

TEST_SUITE("ingest") {
    TEST_CASE("not applicable items are counted by reason") {
        Fixture f;
        auto s = f.Apply({
            Event("ok"),
            R"({"type":"page","messageId":"p1","userId":"u1"})",
            R"({"type":"identify","messageId":"i1","userId":"u1","traits":{"plan":"pro"}})",
            R"({"type":"track","messageId":"t1","userId":"u1","event":"Signed Up"})",
            Event("trait", [](EngageEvent& e) { e.computation_class = "computed_trait"; }),
            Event("noid", [](EngageEvent& e) { e.audience_id = ""; }),
        });
        CHECK(s.accepted == 1);
        CHECK(s.not_applicable == 5);
        CHECK(s.not_applicable_reasons == std::map<std::string, size_t>{
                                              {"no_audience_id", 1},
                                              {"not_engage", 2},
                                              {"not_identify_or_track", 1},
                                              {"not_membership_class", 1},
                                          });
        size_t total = 0;
        for (const auto& [reason, n] : s.not_applicable_reasons) total += n;
        CHECK(total == s.not_applicable);

        auto counted = f.service->counters().NotApplicableByReason();
        CHECK(counted["not_engage"] == 2);
        CHECK(f.service->counters().not_applicable.load() == 5);
    }

    TEST_CASE("the summary JSON carries not_applicable_reasons") {
        ingest::Summary s;
        s.accepted = 1;
        s.not_applicable = 3;
        s.not_applicable_reasons = {{"not_engage", 2}, {"not_identify_or_track", 1}};
        s.rejected.push_back({4, "m\"4", "no_context_key", "d"});
        CHECK(
            ingest::SummaryJson(s) ==
            R"({"accepted":1,"duplicates":0,"stale":0,"not_applicable":3,)"
            R"("not_applicable_reasons":{"not_engage":2,"not_identify_or_track":1},)"
            R"("rejected":[{"index":4,"messageId":"m\"4","reason":"no_context_key","detail":"d"}]})");
        rapidjson::Document doc;
        REQUIRE(json::Parse(ingest::SummaryJson(ingest::Summary{}), doc, 8).ok());
        REQUIRE(doc["not_applicable_reasons"].IsObject());
        CHECK(doc["not_applicable_reasons"].MemberCount() == 0);
    }

    TEST_CASE("one audience with two context kinds logs one warning naming the fix") {
        Fixture f;
        LogCapture logs;
        f.audiences.Put("ld", "ext-1", std::string("account"));
        auto with_external = [](EngageEvent& e) {
            e.extra_personas = R"("external_audience_id":"ext-1")";
        };
        // The first event carries the externalId (kind account), the next does not (user).
        f.Apply({Event("a1", with_external)});
        CHECK(logs.Warnings().empty());
        f.Apply({Event("a2", [](EngageEvent& e) { e.user_id = "u2"; })});
        auto warnings = logs.Warnings();
        REQUIRE(warnings.size() == 1);
        const std::string& w = warnings[0];
        CAPTURE(w);
        CHECK(w.find("destination \"ld\"") != std::string::npos);
        CHECK(w.find("audience \"aud_1\" (\"high_value_users\")") != std::string::npos);
        CHECK(w.find("\"account\" and then \"user\"") != std::string::npos);
        CHECK(w.find("destinations[].audience_context_kinds") != std::string::npos);
        CHECK(w.find(R"({"aud_1": "account"})") != std::string::npos);

        // Never again for this (destination, audience), whatever the order.
        f.Apply({Event("a3", with_external), Event("a4"), Event("a5", with_external)});
        CHECK(logs.Warnings().size() == 1);

        // Another destination is watched on its own; another audience too.
        f.Apply({Event("o1")}, "other");
        f.Apply({Event("b1", [](EngageEvent& e) {
            e.audience_id = "aud_2";
            e.audience_key = "other_users";
        })});
        CHECK(logs.Warnings().size() == 1);
    }

    TEST_CASE("one audience with one context kind logs nothing") {
        Fixture f;
        LogCapture logs;
        f.Apply({Event("a1"), Event("a2", [](EngageEvent& e) { e.user_id = "u2"; })});
        f.Apply({Event("a3", [](EngageEvent& e) { e.user_id = "u3"; })});
        CHECK(logs.Warnings().empty());
    }

    TEST_CASE("the kind watch warns once per destination and audience, within its bound") {
        ingest::KindConflictWatch watch(2);
        CHECK_FALSE(watch.Observe("ld", "aud_1", "k1", "user"));
        CHECK_FALSE(watch.Observe("ld", "aud_1", "k1", "user"));
        auto w = watch.Observe("ld", "aud_1", "k1", "account");
        REQUIRE(w.has_value());
        CHECK_FALSE(watch.Observe("ld", "aud_1", "k1", "account"));
        CHECK_FALSE(watch.Observe("ld", "aud_1", "k1", "device"));
        CHECK_FALSE(watch.Observe("other", "aud_1", "k1", "account"));
        CHECK(watch.watched() == 2);
        // Full: a third audience is not remembered, so it never warns.
        CHECK_FALSE(watch.Observe("ld", "aud_3", "k3", "user"));
        CHECK_FALSE(watch.Observe("ld", "aud_3", "k3", "account"));
        CHECK(watch.watched() == 2);
        // The ones already watched still are.
        CHECK(watch.Observe("other", "aud_1", "k1", "user").has_value());
    }

    TEST_CASE("ids in the warning are quoted, so a newline cannot forge a log line") {
        ingest::KindConflictWatch watch;
        CHECK_FALSE(watch.Observe("ld", "aud\n1", "k", "user"));
        auto w = watch.Observe("ld", "aud\n1", "k", "account");
        REQUIRE(w.has_value());
        CHECK(w->find('\n') == std::string::npos);
        CHECK(w->find("\"aud\\n1\"") != std::string::npos);
    }
}
