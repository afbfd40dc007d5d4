// Tests of the membership rules: which events count, values, keys, kinds, times.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "audsync/mapping/mapping.hpp"

using namespace audsync;
using config::ContextKeyChoice;

namespace {

segment::Event Membership() {
    segment::Event e;
    e.type = "identify";
    e.message_id = "m1";
    e.user_id = "u1";
    e.computation_class = "audience";
    e.computation_id = "aud_1";
    e.computation_key = "high_value_users";
    e.value = segment::BoolValue::kTrue;
    e.timestamp = "2024-05-06T09:30:22.829Z";
    return e;
}

// When the events above were received: a second after their timestamp.
constexpr int64_t kReceived = 1714987822829 + 1000;

std::string ReasonOf(const mapping::Outcome& o) {
    if (auto* n = std::get_if<mapping::NotApplicable>(&o)) return "not_applicable:" + n->reason;
    if (auto* r = std::get_if<mapping::Rejection>(&o)) return r->reason;
    return "change";
}

}  // namespace

TEST_SUITE("mapping") {
    TEST_CASE("rule 1: which events are membership events") {
        struct Row {
            const char* name;
            void (*edit)(segment::Event&);
            const char* expected;
        };
        Row rows[] = {
            {"audience identify", [](segment::Event&) {}, "change"},
            {"journey step", [](segment::Event& e) { e.computation_class = "journey_step"; },
             "change"},
            {"trait computation", [](segment::Event& e) { e.computation_class = "trait"; },
             "not_applicable:not_membership_class"},
            {"no personas", [](segment::Event& e) { e.computation_class.reset(); },
             "not_applicable:not_engage"},
            {"empty computation class", [](segment::Event& e) { e.computation_class = ""; },
             "not_applicable:not_engage"},
            {"empty computation id", [](segment::Event& e) { e.computation_id = ""; },
             "not_applicable:no_audience_id"},
            {"no computation key", [](segment::Event& e) { e.computation_key.reset(); },
             "not_applicable:no_audience_id"},
            {"page call", [](segment::Event& e) { e.type = "page"; },
             "not_applicable:not_identify_or_track"},
            {"group call", [](segment::Event& e) { e.type = "group"; },
             "not_applicable:not_identify_or_track"},
            {"page call without personas",
             [](segment::Event& e) {
                 e.type = "page";
                 e.computation_class.reset();
             },
             "not_applicable:not_identify_or_track"},
            {"track audience", [](segment::Event& e) { e.type = "track"; }, "change"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            auto e = Membership();
            r.edit(e);
            CHECK(ReasonOf(mapping::Resolve(e, mapping::Rules{}, kReceived)) == r.expected);
        }
    }

    TEST_CASE("rule 2: the membership value") {
        struct Row {
            const char* name;
            const char* type;
            segment::BoolValue value;
            const char* event_name;
            const char* cls;
            std::optional<bool> expected;
        };
        using segment::BoolValue;
        Row rows[] = {
            {"identify true", "identify", BoolValue::kTrue, "", "audience", true},
            {"identify false", "identify", BoolValue::kFalse, "", "audience", false},
            {"identify missing", "identify", BoolValue::kAbsent, "", "audience", std::nullopt},
            {"identify not bool", "identify", BoolValue::kNotBool, "", "audience", std::nullopt},
            {"track entered, no value", "track", BoolValue::kAbsent, "Audience Entered", "audience",
             true},
            {"track exited, no value", "track", BoolValue::kAbsent, "Audience Exited", "audience",
             false},
            {"boolean wins over the event name", "track", BoolValue::kTrue, "Audience Exited",
             "audience", true},
            {"track other name, no value", "track", BoolValue::kAbsent, "Order Completed",
             "audience", std::nullopt},
            {"track not bool, entered", "track", BoolValue::kNotBool, "Audience Entered",
             "audience", true},
            {"journey step without a value adds", "track", BoolValue::kAbsent, "Step",
             "journey_step", true},
            {"journey step identify without a value adds", "identify", BoolValue::kAbsent, "",
             "journey_step", true},
            {"journey step with false removes", "identify", BoolValue::kFalse, "", "journey_step",
             false},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            auto e = Membership();
            e.type = r.type;
            e.value = r.value;
            if (*r.event_name) e.event_name = r.event_name;
            e.computation_class = r.cls;
            CHECK(mapping::ResolveValue(e) == r.expected);
            auto outcome = mapping::Resolve(e, mapping::Rules{}, kReceived);
            if (r.expected) {
                REQUIRE(std::holds_alternative<mapping::MembershipChange>(outcome));
                CHECK(std::get<mapping::MembershipChange>(outcome).included == *r.expected);
            } else {
                CHECK(ReasonOf(outcome) == "no_membership_value");
            }
        }
    }

    TEST_CASE("rule 3: the five context key priorities") {
        struct Row {
            ContextKeyChoice choice;
            const char* user;
            const char* email;
            const char* anon;
            std::optional<std::string> expected;
        };
        Row rows[] = {
            {ContextKeyChoice::kUserIdOnly, "u", "e", "a", "u"},
            {ContextKeyChoice::kUserIdOnly, "", "e", "a", std::nullopt},
            {ContextKeyChoice::kUserIdThenEmail, "u", "e", "a", "u"},
            {ContextKeyChoice::kUserIdThenEmail, "", "e", "a", "e"},
            {ContextKeyChoice::kUserIdThenEmail, "", "", "a", std::nullopt},
            {ContextKeyChoice::kUserIdThenAnonymousId, "u", "e", "a", "u"},
            {ContextKeyChoice::kUserIdThenAnonymousId, "", "e", "a", "a"},
            {ContextKeyChoice::kUserIdThenAnonymousId, "", "e", "", std::nullopt},
            {ContextKeyChoice::kUserIdThenEmailThenAnonymousId, "u", "e", "a", "u"},
            {ContextKeyChoice::kUserIdThenEmailThenAnonymousId, "", "e", "a", "e"},
            {ContextKeyChoice::kUserIdThenEmailThenAnonymousId, "", "", "a", "a"},
            {ContextKeyChoice::kUserIdThenEmailThenAnonymousId, "", "", "", std::nullopt},
            {ContextKeyChoice::kEmailOnly, "u", "e", "a", "e"},
            {ContextKeyChoice::kEmailOnly, "u", "", "a", std::nullopt},
        };
        for (const auto& r : rows) {
            CAPTURE(config::ToString(r.choice));
            CAPTURE(r.user);
            CAPTURE(r.email);
            CAPTURE(r.anon);
            auto e = Membership();
            e.user_id = r.user;  // empty strings count as absent
            e.email = r.email;
            e.anonymous_id = r.anon;
            CHECK(mapping::ResolveContextKey(e, r.choice) == r.expected);
            mapping::Rules rules;
            rules.key_choice = r.choice;
            auto outcome = mapping::Resolve(e, rules, kReceived);
            if (r.expected) {
                REQUIRE(std::holds_alternative<mapping::MembershipChange>(outcome));
                CHECK(std::get<mapping::MembershipChange>(outcome).context_key == *r.expected);
            } else {
                CHECK(ReasonOf(outcome) == "no_context_key");
            }
        }
        auto absent = Membership();
        absent.user_id.reset();
        CHECK(ReasonOf(mapping::Resolve(absent, mapping::Rules{}, kReceived)) == "no_context_key");
    }

    TEST_CASE("rule 4: context kind priority") {
        std::map<std::string, std::string> overrides{{"aud_1", "account"}, {"by_key", "org"}};
        auto lookup = [](const std::string& ext) -> std::optional<std::string> {
            if (ext == "ext-1") return std::string("device");
            return std::nullopt;
        };
        struct Row {
            const char* name;
            bool use_overrides;
            const char* audience_key;
            const char* top;
            const char* settings;
            const char* external;
            const char* expected;
        };
        Row rows[] = {
            {"destination default", false, "k", "", "", "", "company"},
            {"override by audience id beats everything", true, "k", "team", "team2", "ext-1",
             "account"},
            {"top-level contextKind", false, "k", "team", "team2", "ext-1", "team"},
            {"audience_settings.contextKind", false, "k", "", "team2", "ext-1", "team2"},
            {"created audience's extras", false, "k", "", "", "ext-1", "device"},
            {"unknown external id falls back", false, "k", "", "", "ext-9", "company"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            auto e = Membership();
            e.computation_key = r.audience_key;
            if (*r.top) e.context_kind = r.top;
            if (*r.settings) e.settings_context_kind = r.settings;
            if (*r.external) e.external_audience_id = r.external;
            mapping::Rules rules;
            rules.default_kind = "company";
            if (r.use_overrides) rules.kind_overrides = &overrides;
            auto outcome = mapping::Resolve(e, rules, kReceived, lookup);
            REQUIRE(std::holds_alternative<mapping::MembershipChange>(outcome));
            CHECK(std::get<mapping::MembershipChange>(outcome).context_kind == r.expected);
        }
        auto by_key = Membership();
        by_key.computation_id = "aud_other";
        by_key.computation_key = "by_key";
        mapping::Rules rules;
        rules.kind_overrides = &overrides;
        CHECK(std::get<mapping::MembershipChange>(mapping::Resolve(by_key, rules, kReceived))
                  .context_kind == "org");
        auto invalid = Membership();
        invalid.context_kind = "multi";
        CHECK(ReasonOf(mapping::Resolve(invalid, mapping::Rules{}, kReceived)) ==
              "invalid_context_kind");
    }

    TEST_CASE("rule 6: the event time") {
        auto e = Membership();
        CHECK(mapping::ResolveEventTime(e, 5) == std::optional<int64_t>(1714987822829));
        e.timestamp.reset();
        e.original_timestamp = "2024-05-06T09:30:20Z";
        e.sent_at = "2024-05-06T09:30:21Z";
        CHECK(mapping::ResolveEventTime(e, 5) == std::optional<int64_t>(1714987820000));
        e.original_timestamp = "";
        CHECK(mapping::ResolveEventTime(e, 5) == std::optional<int64_t>(1714987821000));
        e.sent_at.reset();
        CHECK(mapping::ResolveEventTime(e, 5) == std::optional<int64_t>(5));
        e.timestamp = "yesterday";
        CHECK_FALSE(mapping::ResolveEventTime(e, 5).has_value());
        CHECK(ReasonOf(mapping::Resolve(e, mapping::Rules{}, 5)) == "invalid_timestamp");
    }

    TEST_CASE("length limits on keys and audience ids") {
        mapping::Rules rules;
        rules.max_key_bytes = 16;
        rules.max_id_bytes = 16;
        auto e = Membership();
        e.user_id = std::string(16, 'k');
        CHECK(ReasonOf(mapping::Resolve(e, rules, kReceived)) == "change");
        e.user_id = std::string(17, 'k');
        CHECK(ReasonOf(mapping::Resolve(e, rules, kReceived)) == "context_key_too_long");
        e = Membership();
        e.computation_key = std::string(17, 'a');
        CHECK(ReasonOf(mapping::Resolve(e, rules, kReceived)) == "invalid_audience");
    }

    TEST_CASE("a resolved change carries every field") {
        auto e = Membership();
        e.value = segment::BoolValue::kFalse;
        auto outcome = mapping::Resolve(e, mapping::Rules{}, kReceived);
        const auto& c = std::get<mapping::MembershipChange>(outcome);
        CHECK(c.audience_id == "aud_1");
        CHECK(c.audience_key == "high_value_users");
        CHECK(c.context_kind == "user");
        CHECK(c.context_key == "u1");
        CHECK_FALSE(c.included);
        CHECK(c.event_time_ms == 1714987822829);
    }

    TEST_CASE("rule 6 bound: an event dated beyond the skew after receipt is invalid") {
        mapping::Rules rules;
        CHECK(rules.max_future_skew_ms == 86400 * 1000);  // the default
        rules.max_future_skew_ms = 60 * 1000;
        auto e = Membership();
        const int64_t event_ms = 1714987822829;
        struct Row {
            int64_t received_ms;
            std::string expected;
        };
        for (const Row& r :
             {Row{event_ms - 60 * 1000, "change"},  // exactly at the bound
              Row{event_ms - 60 * 1000 - 1, "invalid_timestamp"}, Row{event_ms, "change"},
              Row{event_ms + 86400 * 1000, "change"},  // the past is fine
              Row{0, "invalid_timestamp"}}) {
            CAPTURE(r.received_ms);
            CHECK(ReasonOf(mapping::Resolve(e, rules, r.received_ms)) == r.expected);
        }
        // Every time field counts, not only timestamp.
        e.timestamp.reset();
        e.sent_at = "2999-01-01T00:00:00Z";
        auto far = mapping::Resolve(e, rules, event_ms);
        REQUIRE(ReasonOf(far) == "invalid_timestamp");
        CHECK(std::get<mapping::Rejection>(far).detail ==
              "timestamp is more than 60 seconds after the event was received");
        // No time at all: the receive time, which is never in the future.
        e.sent_at.reset();
        CHECK(ReasonOf(mapping::Resolve(e, rules, event_ms)) == "change");
    }

    TEST_CASE("RulesFor takes the skew from the limits") {
        config::Destination d;
        config::Limits limits;
        CHECK(mapping::RulesFor(d, limits).max_future_skew_ms == 86400LL * 1000);
        limits.max_future_skew_seconds = 120;
        CHECK(mapping::RulesFor(d, limits).max_future_skew_ms == 120 * 1000);
    }
}
