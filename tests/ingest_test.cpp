// Tests of the ingest service without HTTP: not-applicable reasons and context-kind warnings.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "audsync/app/runtime.hpp"
#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/migrations.hpp"
#include "audsync/store/store.hpp"
#include "support/helpers.hpp"
#include "support/store_access.hpp"

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

// An ingest service (with its inbox and applier, no sync, no HTTP) over a fresh
// database with the helpers' test config.
struct Fixture {
    testing::TempDir dir;
    config::Config config;
    std::unique_ptr<app::Runtime> runtime;
    ingest::Service* service = nullptr;

    // `edit` changes the helpers' test config before the service starts.
    explicit Fixture(const std::function<void(config::Config&)>& edit = {})
        : config(testing::TestConfig(dir.File("i.db"))) {
        if (edit) edit(config);
        app::RuntimeOptions options;
        options.create_database = true;
        auto started = app::Runtime::Start(std::make_shared<const config::Config>(config), options);
        REQUIRE(started.ok());
        runtime = std::move(started).value();
        service = &runtime->ingest();
    }

    // Returns once the applier has applied everything stored so far.
    void WaitApplied() {
        int64_t last = 0;
        REQUIRE(runtime->inbox_writer()
                    .Run(
                        [&](store::InboxStore&) {
                            store::Database inbox(store::InboxPath(config.database), false);
                            last = store::InboxReader(inbox).LastSeq();
                        },
                        1)
                    .ok());
        REQUIRE(runtime->applier().WaitApplied(last, 20000));
    }

    // Stores `events` and waits until they are applied.
    ingest::Summary Apply(const std::vector<std::string>& events,
                          const std::string& destination = "ld") {
        std::string body = "[";
        for (size_t i = 0; i < events.size(); ++i) body += (i ? "," : "") + events[i];
        body += "]";
        auto parsed = segment::ParseWebhookBody(body, config.limits);
        REQUIRE(parsed.ok());
        auto summary = service->Apply(*config.FindDestination(destination), parsed.value().items);
        REQUIRE(summary.ok());
        REQUIRE(runtime->applier().WaitApplied(summary.value().last_seq, 20000));
        return summary.value();
    }
};

constexpr const char* kWebhookToken = "webhook-token-0123456789";
constexpr const char* kUrlKey = "audience-url-key-0123456789";

// The number of events stored and of members, by reading the database.
int64_t Count(const std::string& db_path, const std::string& table) {
    store::Database db(db_path, false);
    store::Statement s(store::TestAccess::Handle(db), "SELECT count(*) FROM " + table);
    REQUIRE(s.Step());
    return s.Int(0);
}

int64_t SummaryField(const std::string& summary, const char* name) {
    rapidjson::Document doc;
    REQUIRE(json::Parse(summary, doc, 16).ok());
    return doc[name].GetInt64();
}

ingest::Request Webhook(std::string_view body) {
    ingest::Request r;
    r.route = ingest::Route::kWebhook;
    r.destination_id = "ld";
    r.body = body;
    return r;
}

std::string Basic(const std::string& user) { return "Basic " + text::Base64Encode(user + ":"); }

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
        CHECK(s.stored == 1);
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
        s.stored = 1;
        s.accepted = 7;  // a dry run's prediction: never in a live answer
        s.not_applicable = 3;
        s.not_applicable_reasons = {{"not_engage", 2}, {"not_identify_or_track", 1}};
        s.rejected.push_back({4, "m\"4", "no_context_key", "d"});
        CHECK(
            ingest::SummaryJson(s) ==
            R"({"stored":1,"not_applicable":3,)"
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
        f.runtime->audiences().Put("ld", "ext-1", std::string("account"));
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

TEST_SUITE("ingest edge") {
    TEST_CASE("a signed batch of several events needs X-Audsync-Token or a write key") {
        Fixture f([](config::Config& c) { c.destinations[0].webhook_token = kWebhookToken; });
        const std::string first = Event("m1");
        const std::string forged = Event("m-forged", [](EngageEvent& e) { e.user_id = "mallory"; });
        const std::string signature = crypto::HmacSha1Hex("s3cret", first);
        const std::string batch = "[" + first + "," + forged + "]";

        // Refused: the signature alone, or with a wrong token or write key. Nothing stored.
        struct Refused {
            std::optional<std::string> token;
            std::optional<std::string> authorization;
        };
        for (const Refused& r :
             {Refused{std::nullopt, std::nullopt},
              Refused{std::string("wrong-token-0123456789"), std::nullopt},
              Refused{std::string(""), std::nullopt}, Refused{std::nullopt, Basic("wk-other")},
              Refused{std::nullopt, Basic("wk-wrong")},
              Refused{std::nullopt, std::string("Bearer wrong-token-0123456789")},
              Refused{std::nullopt, std::string("Bearer ")},
              Refused{std::nullopt, std::string("Token ") + kWebhookToken}}) {
            auto request = Webhook(batch);
            request.signature = signature;
            request.token = r.token;
            request.authorization = r.authorization;
            auto answer = f.service->Ingest(request);
            REQUIRE_FALSE(answer.ok());
            CHECK(answer.error().code == ErrorCode::kUnauthorized);
            CHECK(answer.error().name == "unauthorized");
            CHECK(answer.error().message.find("s3cret") == std::string::npos);
            CHECK(answer.error().message.find(kWebhookToken) == std::string::npos);
        }
        CHECK(Count(store::InboxPath(f.config.database), "inbox") == 0);
        CHECK(Count(f.config.database, "memberships") == 0);

        // A single signed event, and a signed array of one, need nothing more.
        auto single = Webhook(first);
        single.signature = signature;
        auto one = f.service->Ingest(single);
        REQUIRE(one.ok());
        CHECK(SummaryField(one.value(), "stored") == 1);
        const std::string array_of_one =
            "[" + Event("m2", [](EngageEvent& e) { e.user_id = "u2"; }) + "]";
        auto arr = Webhook(array_of_one);
        arr.signature =
            crypto::HmacSha1Hex("s3cret", array_of_one.substr(1, array_of_one.size() - 2));
        auto arr_answer = f.service->Ingest(arr);
        REQUIRE(arr_answer.ok());
        CHECK(SummaryField(arr_answer.value(), "stored") == 1);

        // With the token beside the signature the batch goes in.
        auto with_token = Webhook(batch);
        with_token.signature = signature;
        with_token.token = kWebhookToken;
        auto accepted = f.service->Ingest(with_token);
        REQUIRE(accepted.ok());
        CHECK(SummaryField(accepted.value(), "stored") == 2);
        // m1 was in already: the applier finds it a duplicate.
        f.WaitApplied();
        CHECK(f.runtime->applier().counters().duplicates.load() == 1);
        CHECK(f.runtime->applier().counters().accepted.load() == 3);

        // The token or a write key covers any body on its own.
        const std::string other = "[" + Event("m3", [](EngageEvent& e) { e.user_id = "u3"; }) +
                                  "," + Event("m4", [](EngageEvent& e) { e.user_id = "u4"; }) + "]";
        auto token_only = Webhook(other);
        token_only.token = kWebhookToken;
        auto t = f.service->Ingest(token_only);
        REQUIRE(t.ok());
        CHECK(SummaryField(t.value(), "stored") == 2);
        const std::string more = "[" + Event("m5", [](EngageEvent& e) { e.user_id = "u5"; }) + "," +
                                 Event("m6", [](EngageEvent& e) { e.user_id = "u6"; }) + "]";
        auto key_and_signature = Webhook(more);
        key_and_signature.authorization = Basic("wk-ld");
        key_and_signature.signature = signature;  // not over this body: the key suffices
        auto k = f.service->Ingest(key_and_signature);
        REQUIRE(k.ok());
        CHECK(SummaryField(k.value(), "stored") == 2);
    }

    TEST_CASE("a token is worthless where no webhook_token is configured") {
        Fixture f;  // "ld" has a shared secret and no webhook_token
        const std::string first = Event("m1");
        const std::string batch =
            "[" + first + "," + Event("m2", [](EngageEvent& e) { e.user_id = "u2"; }) + "]";
        for (const std::optional<std::string>& token :
             {std::optional<std::string>(), std::optional<std::string>(""),
              std::optional<std::string>(kWebhookToken)}) {
            auto request = Webhook(batch);
            request.signature = crypto::HmacSha1Hex("s3cret", first);
            request.token = token;
            auto answer = f.service->Ingest(request);
            REQUIRE_FALSE(answer.ok());
            CHECK(answer.error().code == ErrorCode::kUnauthorized);
            auto alone = Webhook(first);
            alone.token = token;
            CHECK_FALSE(f.service->Ingest(alone).ok());
        }
        CHECK(Count(store::InboxPath(f.config.database), "inbox") == 0);
    }

    TEST_CASE("require_header: the webhook_token as Authorization: Bearer admits a signed batch") {
        Fixture f([](config::Config& c) { c.destinations[0].webhook_token = kWebhookToken; });
        REQUIRE(f.config.destinations[0].webhook_signature ==
                config::WebhookSignature::kRequireHeader);
        const std::string first = Event("m1");
        const std::string batch = "[" + first + "," +
                                  Event("m2", [](EngageEvent& e) { e.user_id = "u2"; }) + "," +
                                  Event("m3", [](EngageEvent& e) { e.user_id = "u3"; }) + "]";
        // The signature alone: 401, nothing stored, the answer names the header to add.
        auto alone = Webhook(batch);
        alone.signature = crypto::HmacSha1Hex("s3cret", first);
        auto refused = f.service->Ingest(alone);
        REQUIRE_FALSE(refused.ok());
        CHECK(refused.error().code == ErrorCode::kUnauthorized);
        CHECK(refused.error().message.find("Authorization: Bearer") != std::string::npos);
        CHECK(Count(store::InboxPath(f.config.database), "inbox") == 0);
        // The same batch with the token as a bearer token (as Segment's webhook settings
        // send a custom Authorization header), the scheme in any case.
        for (const std::string scheme : {"Bearer ", "bearer "}) {
            auto with_header = Webhook(batch);
            with_header.signature = crypto::HmacSha1Hex("s3cret", first);
            with_header.authorization = scheme + kWebhookToken;
            auto answer = f.service->Ingest(with_header);
            REQUIRE(answer.ok());
            CHECK(SummaryField(answer.value(), "stored") == 3);
        }
        CHECK(Count(store::InboxPath(f.config.database), "inbox") == 6);
    }

    TEST_CASE("webhook_signature first_element admits the whole signed batch (opt-in)") {
        Fixture f([](config::Config& c) {
            c.destinations[0].webhook_signature = config::WebhookSignature::kFirstElement;
        });
        const std::string first = Event("m1");
        const std::string batch =
            "[" + first + "," + Event("m2", [](EngageEvent& e) { e.user_id = "u2"; }) + "]";
        auto request = Webhook(batch);
        request.signature = crypto::HmacSha1Hex("s3cret", first);
        auto answer = f.service->Ingest(request);
        REQUIRE(answer.ok());
        CHECK(SummaryField(answer.value(), "stored") == 2);
        // A bad signature is still refused.
        auto bad = Webhook(batch);
        bad.signature = crypto::HmacSha1Hex("wrong", first);
        CHECK_FALSE(f.service->Ingest(bad).ok());
    }

    TEST_CASE("an event dated beyond the skew is rejected invalid_timestamp and not stored") {
        Fixture f([](config::Config& c) { c.limits.max_future_skew_seconds = 3600; });
        const int64_t now = text::NowMs();
        auto at = [](const std::string& id, const std::string& user, int64_t ms) {
            EngageEvent e;
            e.message_id = id;
            e.user_id = user;
            e.timestamp = text::FormatIso8601(ms);
            return e.Json();
        };
        std::mutex mu;
        std::vector<std::string> warnings;
        log::SetSinkForTesting([&](log::Level l, std::string_view m) {
            std::lock_guard<std::mutex> lock(mu);
            if (l == log::Level::kWarn) warnings.emplace_back(m);
        });
        auto summary =
            f.Apply({at("far", "u-far", now + 3600 * 1000 + 60 * 1000),
                     at("y2999", "u-2999", text::ParseIso8601("2999-01-01T00:00:00Z").value()),
                     at("near", "u-near", now + 3600 * 1000 - 60 * 1000),
                     at("past", "u-past", now - 1000)});
        CHECK(summary.stored == 2);
        REQUIRE(summary.rejected.size() == 2);
        for (const auto& r : summary.rejected) {
            CHECK(r.reason == "invalid_timestamp");
            CHECK(r.detail == "timestamp is more than 3600 seconds after the event was received");
        }
        CHECK(summary.rejected[0].index == 0);
        CHECK(summary.rejected[1].index == 1);
        CHECK(Count(store::InboxPath(f.config.database), "inbox") == 2);
        CHECK(Count(f.config.database, "memberships") == 2);
        CHECK(f.service->counters().RejectedByReason().at("invalid_timestamp") == 2);
        // One warning for the two, naming the first as the example; a second request within
        // the minute adds none.
        f.Apply({at("far-again", "u-far", now + 7200 * 1000)});
        log::SetSinkForTesting(nullptr);
        std::lock_guard<std::mutex> lock(mu);
        REQUIRE(warnings.size() == 1);
        CHECK(warnings[0].find("ingest rejected an event of destination \"ld\" "
                               "(invalid_timestamp): messageId \"far\"") == 0);
        CHECK(warnings[0].find("audsync_events_rejected_total{reason=\"invalid_timestamp\"}") !=
              std::string::npos);
    }

    TEST_CASE("rejection warnings: one a minute per destination and reason, then the count") {
        ingest::RejectionLog r(60000);
        auto first = r.Observe("ld", "invalid_timestamp", "m1", "too far", 1000);
        REQUIRE(first.has_value());
        CHECK(first->find("messageId \"m1\", \"too far\"") != std::string::npos);
        CHECK_FALSE(r.Observe("ld", "invalid_timestamp", "m2", "too far", 2000).has_value());
        CHECK_FALSE(r.Observe("ld", "invalid_timestamp", "m3", "too far", 60999).has_value());
        // Another reason or destination is its own spell.
        CHECK(r.Observe("ld", "missing_context_key", "m4", "no key", 3000).has_value());
        CHECK(r.Observe("other", "invalid_timestamp", "m5", "too far", 3000).has_value());
        auto later = r.Observe("ld", "invalid_timestamp", "m6", "too far", 61000);
        REQUIRE(later.has_value());
        CHECK(later->find("messageId \"m6\"") != std::string::npos);
        CHECK(later->find("; 2 more invalid_timestamp since the last such line") !=
              std::string::npos);
        // A hostile messageId stays on one quoted line.
        auto hostile = r.Observe("x", "invalid_body", "a\nb" + std::string(5000, 'z'), "d", 0);
        REQUIRE(hostile.has_value());
        CHECK(hostile->find('\n') == std::string::npos);
        CHECK(hostile->size() < 1500);
    }

    TEST_CASE("audience URLs take audience_url_key only, once it is set") {
        Fixture f([](config::Config& c) { c.destinations[0].audience_url_key = kUrlKey; });
        const std::string body = R"({"audienceName":"High value users"})";
        auto created = f.service->CreateAudience("ld", std::string(kUrlKey), body);
        REQUIRE(created.ok());
        rapidjson::Document doc;
        REQUIRE(json::Parse(created.value(), doc, 8).ok());
        const std::string lookup =
            "{\"externalId\":\"" + std::string(doc["externalId"].GetString()) + "\"}";
        CHECK(f.service->LookupAudience("ld", std::string(kUrlKey), lookup).ok());
        for (const std::optional<std::string>& key :
             {std::optional<std::string>(), std::optional<std::string>(""),
              std::optional<std::string>("wk-ld"), std::optional<std::string>("s3cret"),
              std::optional<std::string>("wk-other"),
              std::optional<std::string>(std::string(kUrlKey) + "x")}) {
            CAPTURE(key.value_or("<none>"));
            auto c = f.service->CreateAudience("ld", key, body);
            REQUIRE_FALSE(c.ok());
            CHECK(c.error().code == ErrorCode::kUnauthorized);
            CHECK(c.error().message.find(kUrlKey) == std::string::npos);
            auto l = f.service->LookupAudience("ld", key, lookup);
            REQUIRE_FALSE(l.ok());
            CHECK(l.error().code == ErrorCode::kUnauthorized);
        }
        // The key of one destination opens no other.
        CHECK_FALSE(f.service->CreateAudience("other", std::string(kUrlKey), body).ok());
    }

    TEST_CASE("without audience_url_key, audience URLs take a write key but never the secret") {
        Fixture f;
        const std::string body = R"({"audienceName":"High value users"})";
        CHECK(f.service->CreateAudience("ld", std::string("wk-ld"), body).ok());
        auto by_secret = f.service->CreateAudience("ld", std::string("s3cret"), body);
        REQUIRE_FALSE(by_secret.ok());
        CHECK(by_secret.error().code == ErrorCode::kUnauthorized);
        auto lookup =
            f.service->LookupAudience("ld", std::string("s3cret"), R"({"externalId":"x"})");
        REQUIRE_FALSE(lookup.ok());
        CHECK(lookup.error().code == ErrorCode::kUnauthorized);
        CHECK_FALSE(f.service->CreateAudience("ld", std::string("wk-other"), body).ok());
    }

    TEST_CASE("a writeKey nested anywhere in an event never reaches the stored log") {
        Fixture f;
        EngageEvent e;
        e.extra_top =
            R"("properties":{"writeKey":"wk-ld"},"integrations":{"x":[{"writeKey":"wk-ld"}]})";
        std::string event = e.Json();
        // Nest one in context as well.
        event.replace(event.find("\"context\":{"), 11, R"("context":{"writeKey":"wk-ld",)");
        const std::string body = R"({"writeKey":"wk-ld","batch":[)" + event + "]}";
        ingest::Request request;
        request.route = ingest::Route::kBatch;
        request.body = body;
        auto answer = f.service->Ingest(request);
        REQUIRE(answer.ok());
        CHECK(SummaryField(answer.value(), "stored") == 1);
        store::Database db(store::InboxPath(f.config.database), false);
        store::Statement s(store::TestAccess::Handle(db), "SELECT raw FROM inbox");
        REQUIRE(s.Step());
        const std::string raw = s.Text(0);
        CHECK(raw.find("wk-ld") == std::string::npos);
        CHECK(raw.find("writeKey") == std::string::npos);
        CHECK(raw.find("\"personas\"") != std::string::npos);  // the rest is kept
    }
}
