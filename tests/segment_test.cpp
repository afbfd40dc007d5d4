// Tests of Segment bodies: parsing, identities, signatures, and stream splitting.
#include <doctest/doctest.h>

#include <string>

#include "audsync/common/crypto.hpp"
#include "audsync/common/text.hpp"
#include "audsync/segment/body.hpp"
#include "support/helpers.hpp"

using namespace audsync;
using testing::EngageEvent;

namespace {

config::Limits SmallLimits() {
    config::Limits l;
    l.webhook_max_events = 3;
    l.tracking_max_events = 3;
    l.webhook_max_request_bytes = 4096;
    l.tracking_max_request_bytes = 4096;
    l.max_event_bytes = 1024;
    l.max_json_depth = 16;
    return l;
}

std::string Repeat(const std::string& item, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += (i ? "," : "") + item;
    return out;
}

}  // namespace

TEST_SUITE("segment") {
    TEST_CASE("webhook body: one event object") {
        auto r = segment::ParseWebhookBody(EngageEvent{}.Json(), config::Limits{});
        REQUIRE(r.ok());
        CHECK(r.value().single);
        REQUIRE(r.value().items.size() == 1);
        const auto& e = *r.value().items[0].event;
        CHECK(e.type == "identify");
        CHECK(e.message_id == "m1");
        CHECK(e.user_id == std::optional<std::string>("u1"));
        CHECK(e.computation_class == std::optional<std::string>("audience"));
        CHECK(e.computation_id == std::optional<std::string>("aud_1"));
        CHECK(e.computation_key == std::optional<std::string>("high_value_users"));
        CHECK(e.value == segment::BoolValue::kTrue);
    }

    TEST_CASE("webhook body: an array, an empty array, and wrong shapes") {
        EngageEvent a, b;
        b.message_id = "m2";
        b.type = "track";
        b.value = "false";
        auto r =
            segment::ParseWebhookBody("[" + a.Json() + "," + b.Json() + ",7]", config::Limits{});
        REQUIRE(r.ok());
        REQUIRE(r.value().items.size() == 3);
        CHECK(r.value().items[1].event->value == segment::BoolValue::kFalse);
        CHECK_FALSE(r.value().items[2].event.has_value());
        CHECK(r.value().items[2].error.reason == "not_an_object");
        auto empty = segment::ParseWebhookBody("[]", config::Limits{});
        REQUIRE(empty.ok());
        CHECK(empty.value().items.empty());
        for (const char* bad : {"7", "\"x\"", "null", "true"}) {
            auto s = segment::ParseWebhookBody(bad, config::Limits{});
            REQUIRE_FALSE(s.ok());
            CHECK(s.error().name == "invalid_body");
        }
    }

    TEST_CASE("webhook limits: bytes, events, event size, depth") {
        auto l = SmallLimits();
        std::string small = R"({"type":"identify","userId":"u"})";
        CHECK(segment::ParseWebhookBody("[" + Repeat(small, 3) + "]", l).ok());
        auto many = segment::ParseWebhookBody("[" + Repeat(small, 4) + "]", l);
        REQUIRE_FALSE(many.ok());
        CHECK(many.error().name == "too_many_events");
        CHECK(many.error().code == ErrorCode::kPayloadTooLarge);
        std::string big_body(4097, ' ');
        big_body.replace(0, 2, "[]");
        auto big = segment::ParseWebhookBody(big_body, l);
        REQUIRE_FALSE(big.ok());
        CHECK(big.error().name == "payload_too_large");
        CHECK(segment::ParseWebhookBody(big_body.substr(0, 4096), l).ok());
        std::string fat =
            R"({"type":"identify","userId":"u","traits":{"x":")" + std::string(1000, 'a') + "\"}}";
        auto single = segment::ParseWebhookBody(fat, l);
        REQUIRE_FALSE(single.ok());
        CHECK(single.error().name == "event_too_large");
        auto in_array = segment::ParseWebhookBody("[" + small + "," + fat + "]", l);
        REQUIRE(in_array.ok());
        CHECK(in_array.value().items[0].event.has_value());
        CHECK(in_array.value().items[1].error.reason == "event_too_large");
        std::string deep = std::string(17, '[') + std::string(17, ']');
        auto d = segment::ParseWebhookBody(deep, l);
        REQUIRE_FALSE(d.ok());
        CHECK(d.error().name == "too_deep");
    }

    TEST_CASE("item errors name the reason") {
        struct Row {
            std::string item;
            std::string reason;
        };
        Row rows[] = {
            {R"({"userId":"u"})", "missing_type"},
            {R"({"type":"","userId":"u"})", "missing_type"},
            {R"({"type":"purchase","userId":"u"})", "invalid_type"},
            {R"({"type":7,"userId":"u"})", "invalid_field"},
            {R"({"type":"identify","userId":7})", "invalid_field"},
            {R"({"type":"identify","messageId":["x"]})", "invalid_field"},
            {R"({"type":"identify","traits":{"email":false}})", "invalid_field"},
            {R"({"type":"identify","context":{"personas":{"computation_id":1}}})", "invalid_field"},
            {R"({"type":"identify","messageId":")" + std::string(257, 'm') + "\"}",
             "invalid_field"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.item);
            auto p = segment::ParseWebhookBody("[" + r.item + "]", config::Limits{});
            REQUIRE(p.ok());
            REQUIRE_FALSE(p.value().items[0].event.has_value());
            CHECK(p.value().items[0].error.reason == r.reason);
        }
        auto ok = segment::ParseWebhookBody(
            R"([{"type":"identify","messageId":")" + std::string(256, 'm') + "\"}]",
            config::Limits{});
        CHECK(ok.value().items[0].event.has_value());
    }

    TEST_CASE("email comes from traits, else context.traits") {
        EngageEvent identify;
        identify.email = "bob@example.com";
        auto a = segment::ParseWebhookBody(identify.Json(), config::Limits{});
        CHECK(a.value().items[0].event->email == std::optional<std::string>("bob@example.com"));
        EngageEvent track;
        track.type = "track";
        track.email = "eve@example.com";
        auto b = segment::ParseWebhookBody(track.Json(), config::Limits{});
        CHECK(b.value().items[0].event->email == std::optional<std::string>("eve@example.com"));
        auto c = segment::ParseWebhookBody(
            R"({"type":"identify","traits":{"email":""},"context":{"traits":{"email":"c@x"}}})",
            config::Limits{});
        CHECK(c.value().items[0].event->email == std::optional<std::string>("c@x"));
    }

    TEST_CASE("the value is read from traits for identify and properties for track") {
        struct Row {
            std::string type;
            std::string value;
            segment::BoolValue expected;
        };
        Row rows[] = {{"identify", "true", segment::BoolValue::kTrue},
                      {"identify", "false", segment::BoolValue::kFalse},
                      {"identify", "", segment::BoolValue::kAbsent},
                      {"identify", "\"yes\"", segment::BoolValue::kNotBool},
                      {"identify", "1", segment::BoolValue::kNotBool},
                      {"track", "true", segment::BoolValue::kTrue},
                      {"track", "false", segment::BoolValue::kFalse},
                      {"track", "", segment::BoolValue::kAbsent}};
        for (const auto& r : rows) {
            CAPTURE(r.type);
            CAPTURE(r.value);
            EngageEvent e;
            e.type = r.type;
            e.value = r.value;
            auto p = segment::ParseWebhookBody(e.Json(), config::Limits{});
            CHECK(p.value().items[0].event->value == r.expected);
        }
        // identify reads traits only: a property of that name does not count.
        auto p = segment::ParseWebhookBody(
            R"({"type":"identify","properties":{"k":true},"context":{"personas":{"computation_key":"k"}}})",
            config::Limits{});
        CHECK(p.value().items[0].event->value == segment::BoolValue::kAbsent);
    }

    TEST_CASE("a missing messageId is derived from the event's bytes") {
        EngageEvent e;
        e.message_id = "";
        auto a = segment::ParseWebhookBody(e.Json(), config::Limits{});
        auto b = segment::ParseWebhookBody(e.Json(), config::Limits{});
        const auto& ea = *a.value().items[0].event;
        CHECK(ea.message_id_synthesized);
        CHECK(ea.message_id.rfind("audsync-sha1-", 0) == 0);
        CHECK(ea.message_id == b.value().items[0].event->message_id);
        e.user_id = "u2";
        auto c = segment::ParseWebhookBody(e.Json(), config::Limits{});
        CHECK(c.value().items[0].event->message_id != ea.message_id);
    }

    TEST_CASE("first element span of an array") {
        struct Row {
            std::string body;
            std::optional<std::string> first;
        };
        Row rows[] = {
            {R"([{"a":1},{"b":2}])", R"({"a":1})"},
            {" \n[ {\"a\":\"}]\\\"\"} , {}]", "{\"a\":\"}]\\\"\"}"},
            {R"([[1,[2]],3])", "[1,[2]]"},
            {R"(["x]",1])", R"("x]")"},
            {R"([12 , 3])", "12"},
            {"[]", std::nullopt},
            {"{}", std::nullopt},
            {"[{", std::nullopt},
            {"", std::nullopt},
        };
        for (const auto& r : rows) {
            CAPTURE(r.body);
            auto span = segment::FirstElementSpan(r.body);
            std::optional<std::string> got;
            if (span) got = r.body.substr(span->first, span->second - span->first);
            CHECK(got == r.first);
        }
    }

    TEST_CASE("X-Signature: whole body for an object, first element for an array") {
        std::string one = EngageEvent{}.Json();
        std::string sig = crypto::HmacSha1Hex("s3cret", one);
        CHECK(segment::VerifySignature(one, "s3cret", sig));
        std::string upper = sig;
        for (char& c : upper) c = static_cast<char>(std::toupper(c));
        CHECK(segment::VerifySignature(one, "s3cret", upper));
        CHECK_FALSE(segment::VerifySignature(one, "other", sig));
        CHECK_FALSE(segment::VerifySignature(one + " ", "s3cret", sig));
        CHECK_FALSE(segment::VerifySignature(one, "s3cret", ""));

        EngageEvent second;
        second.message_id = "m2";
        std::string batch = "[" + one + "," + second.Json() + "]";
        // Segment signs JSON.stringify(payload[0]): the first element's bytes only.
        CHECK(segment::VerifySignature(batch, "s3cret", sig));
        CHECK_FALSE(
            segment::VerifySignature(batch, "s3cret", crypto::HmacSha1Hex("s3cret", batch)));
        std::string tampered = "[" + one + "," + second.Json() + "," + second.Json() + "]";
        CHECK(segment::VerifySignature(tampered, "s3cret", sig));  // the rule's known limit
        std::string changed_first = one;
        changed_first.replace(changed_first.find("u1"), 2, "u9");
        CHECK_FALSE(segment::VerifySignature("[" + changed_first + "]", "s3cret", sig));
        CHECK_FALSE(segment::VerifySignature("[]", "s3cret", crypto::HmacSha1Hex("s3cret", "")));
    }

    TEST_CASE("Basic auth: the write key is the user name") {
        CHECK(segment::BasicAuthUser("Basic " + text::Base64Encode("wk-ld:")) ==
              std::optional<std::string>("wk-ld"));
        CHECK(segment::BasicAuthUser("basic " + text::Base64Encode("wk-ld")) ==
              std::optional<std::string>("wk-ld"));
        CHECK(segment::BasicAuthUser("Basic " + text::Base64Encode("a:b:c")) ==
              std::optional<std::string>("a"));
        CHECK_FALSE(segment::BasicAuthUser("Bearer abc").has_value());
        CHECK_FALSE(segment::BasicAuthUser("Basic !!!").has_value());
        CHECK_FALSE(segment::BasicAuthUser("").has_value());
    }

    TEST_CASE("tracking batch: writeKey, context and integrations merge") {
        std::string body =
            R"({"writeKey":"wk","sentAt":"2024-05-06T09:30:40Z",)"
            R"("context":{"library":{"name":"x"},"personas":{"computation_class":"audience",)"
            R"("computation_id":"aud_1","computation_key":"k"}},)"
            R"("integrations":{"All":false},)"
            R"("batch":[{"type":"identify","userId":"u1","traits":{"k":true},"writeKey":"leak"},)"
            R"({"type":"identify","userId":"u2","context":{"personas":{"computation_class":"trait"}},)"
            R"("integrations":{"All":true}},)"
            R"({"type":"identify","traits":{"k":true}}]})";
        auto r = segment::ParseTrackingBody(body, "", config::Limits{});
        REQUIRE(r.ok());
        CHECK(r.value().write_key == std::optional<std::string>("wk"));
        REQUIRE(r.value().items.size() == 3);
        const auto& first = *r.value().items[0].event;
        CHECK(first.computation_id == std::optional<std::string>("aud_1"));
        CHECK(first.value == segment::BoolValue::kTrue);
        CHECK(first.raw.find("\"library\"") != std::string::npos);
        CHECK(first.raw.find("\"All\":false") != std::string::npos);
        CHECK(first.raw.find("leak") == std::string::npos);  // write keys are never stored
        const auto& second = *r.value().items[1].event;
        CHECK(second.computation_class == std::optional<std::string>("trait"));  // item wins
        CHECK(second.raw.find("\"All\":true") != std::string::npos);
        CHECK(second.raw.find("\"library\"") != std::string::npos);  // merged beside it
        CHECK(r.value().items[2].error.reason == "missing_identity");
    }

    TEST_CASE("tracking shapes and limits") {
        auto l = SmallLimits();
        for (const char* bad : {"[]", R"({"batch":{}})", R"({"writeKey":"k"})",
                                R"({"batch":[],"writeKey":5})", R"({"batch":[],"context":[]})"}) {
            CAPTURE(bad);
            auto r = segment::ParseTrackingBody(bad, "", l);
            REQUIRE_FALSE(r.ok());
            CHECK(r.error().name == "invalid_body");
        }
        std::string item = R"({"type":"track","userId":"u"})";
        CHECK(segment::ParseTrackingBody("{\"batch\":[" + Repeat(item, 3) + "]}", "", l).ok());
        auto many = segment::ParseTrackingBody("{\"batch\":[" + Repeat(item, 4) + "]}", "", l);
        REQUIRE_FALSE(many.ok());
        CHECK(many.error().name == "too_many_events");
        std::string big = "{\"batch\":[]}" + std::string(4096, ' ');
        auto b = segment::ParseTrackingBody(big, "", l);
        REQUIRE_FALSE(b.ok());
        CHECK(b.error().name == "payload_too_large");
    }

    TEST_CASE("tracking single-event routes force the type and drop the write key") {
        auto r = segment::ParseTrackingBody(
            R"({"type":"track","userId":"u","writeKey":"wk","traits":{"k":true},)"
            R"("context":{"personas":{"computation_class":"audience","computation_id":"a","computation_key":"k"}}})",
            "identify", config::Limits{});
        REQUIRE(r.ok());
        CHECK(r.value().single);
        CHECK(r.value().write_key == std::optional<std::string>("wk"));
        const auto& e = *r.value().items[0].event;
        CHECK(e.type == "identify");
        CHECK(e.value == segment::BoolValue::kTrue);
        CHECK(e.raw.find("wk") == std::string::npos);
        auto missing = segment::ParseTrackingBody(R"({"traits":{}})", "identify", config::Limits{});
        CHECK(missing.value().items[0].error.reason == "missing_identity");
    }
}

TEST_SUITE("segment") {
    TEST_CASE("writeKey is removed at any depth, the rest kept in order") {
        const std::string event =
            R"({"type":"identify","userId":"u","writeKey":"wk-top",)"
            R"("traits":{"a":1,"writeKey":"wk-traits","b":{"writeKey":"wk-deep","c":2}},)"
            R"("properties":{"list":[{"writeKey":"wk-in-array"},[{"writeKey":{"x":"wk-obj"}}]]},)"
            R"("context":{"writeKey":"wk-context","traits":{"email":"e@x"}}})";
        auto check = [](const segment::ParsedBody& body, bool same_order = true) {
            REQUIRE(body.items.size() == 1);
            REQUIRE(body.items[0].event.has_value());
            const std::string& raw = body.items[0].event->raw;
            CHECK(raw.find("writeKey") == std::string::npos);
            CHECK(raw.find("wk-") == std::string::npos);
            if (same_order) {
                CHECK(raw ==
                      R"({"type":"identify","userId":"u","traits":{"a":1,"b":{"c":2}},)"
                      R"("properties":{"list":[{},[{}]]},"context":{"traits":{"email":"e@x"}}})");
            }
            CHECK(body.items[0].event->email == std::optional<std::string>("e@x"));
        };
        auto webhook = segment::ParseWebhookBody(event, config::Limits{});
        REQUIRE(webhook.ok());
        check(webhook.value());
        auto array = segment::ParseWebhookBody("[" + event + "]", config::Limits{});
        REQUIRE(array.ok());
        check(array.value());
        auto single = segment::ParseTrackingBody(event, "identify", config::Limits{});
        REQUIRE(single.ok());
        CHECK(single.value().write_key == std::optional<std::string>("wk-top"));
        check(single.value(), false);  // the route moves "type"
        // A batch-level context is merged into the item: its writeKey goes too.
        auto batch = segment::ParseTrackingBody(
            R"({"writeKey":"wk-body","context":{"writeKey":"wk-batch-ctx"},"batch":[)" + event +
                "]}",
            "", config::Limits{});
        REQUIRE(batch.ok());
        CHECK(batch.value().write_key == std::optional<std::string>("wk-body"));
        check(batch.value());
    }
}

#include "audsync/segment/stream.hpp"

TEST_SUITE("segment stream") {
    std::vector<std::string> Split(const std::string& input, size_t chunk, size_t max = 1 << 20,
                                   bool* ok = nullptr) {
        segment::ValueSplitter s(max);
        std::vector<std::string> out;
        auto emit = [&](std::string_view v, bool oversize) {
            out.push_back(oversize ? "<oversize>" : std::string(v));
        };
        bool good = true;
        for (size_t i = 0; i < input.size() && good; i += chunk) {
            good = s.Feed(std::string_view(input).substr(i, chunk), emit).ok();
        }
        if (good) good = s.Finish(emit).ok();
        if (ok != nullptr) *ok = good;
        return out;
    }

    TEST_CASE("values are split the same whatever the chunk size") {
        struct Row {
            std::string input;
            std::vector<std::string> values;
        };
        Row rows[] = {
            {"{\"a\":1}\n{\"b\":\"}{\"}\n", {"{\"a\":1}", "{\"b\":\"}{\"}"}},
            {"[{\"a\":[1,2]}, {\"b\":\"\\\"]\"} ]", {"{\"a\":[1,2]}", "{\"b\":\"\\\"]\"}"}},
            {"{\"x\":1}{\"y\":2}", {"{\"x\":1}", "{\"y\":2}"}},
            {"[1, \"two\", null]", {"1", "\"two\"", "null"}},
            {"  \n", {}},
            {"[]", {}},
            {"{\"batch\":[{\"type\":\"track\"}]}\n", {"{\"batch\":[{\"type\":\"track\"}]}"}},
        };
        for (const auto& r : rows) {
            for (size_t chunk : {1, 2, 3, 7, 1000}) {
                CAPTURE(r.input);
                CAPTURE(chunk);
                bool ok = false;
                CHECK(Split(r.input, chunk, 1 << 20, &ok) == r.values);
                CHECK(ok);
            }
        }
    }

    TEST_CASE("oversize values are skipped, broken streams are errors") {
        bool ok = false;
        auto v = Split("{\"a\":\"" + std::string(100, 'x') + "\"}\n{\"b\":1}", 5, 50, &ok);
        CHECK(ok);
        CHECK(v == std::vector<std::string>{"<oversize>", "{\"b\":1}"});
        for (const char* bad : {"[{\"a\":1}", "{\"a\":", "[1] x", "[}]", "[1]]"}) {
            CAPTURE(bad);
            Split(bad, 2, 1 << 20, &ok);
            CHECK_FALSE(ok);
        }
    }

    // The values of `input` fed in `chunk`-byte pieces, each as "LINE:value".
    std::vector<std::string> SplitLines(const std::string& input, size_t chunk, bool* ok,
                                        size_t max = 1 << 20) {
        segment::ValueSplitter s(max);
        std::vector<std::string> out;
        auto emit = [&](std::string_view v, bool oversize) {
            out.push_back(std::to_string(s.line()) + ":" +
                          (oversize ? std::string("<oversize>") : std::string(v)));
        };
        bool good = true;
        for (size_t i = 0; i < input.size() && good; i += chunk) {
            good = s.Feed(std::string_view(input).substr(i, chunk), emit).ok();
        }
        if (good) good = s.Finish(emit).ok();
        *ok = good;
        return out;
    }

    TEST_CASE("each value reports the line it started on") {
        struct Row {
            std::string input;
            std::vector<std::string> values;
        };
        Row rows[] = {
            {"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}", {"1:{\"a\":1}", "3:{\"b\":2}", "4:{\"c\":3}"}},
            // A pretty-printed value starts where its '{' is.
            {"\n{\n  \"a\": {\n    \"b\": [1,\n 2]\n  }\n}\n{\"c\":\"x\\ny\"}",
             {"2:{\n  \"a\": {\n    \"b\": [1,\n 2]\n  }\n}", "8:{\"c\":\"x\\ny\"}"}},
            {"[\n{\"a\":1},\n\n{\"b\":2}]", {"2:{\"a\":1}", "4:{\"b\":2}"}},
            {"{\"x\":1}{\"y\":2}\n{\"z\":3}", {"1:{\"x\":1}", "1:{\"y\":2}", "2:{\"z\":3}"}},
        };
        for (const auto& r : rows) {
            for (size_t chunk : {1, 3, 1000}) {
                CAPTURE(r.input);
                CAPTURE(chunk);
                bool ok = false;
                CHECK(SplitLines(r.input, chunk, &ok) == r.values);
                CHECK(ok);
            }
        }
    }

    TEST_CASE("one garbage line is one value, and the next line is read as usual") {
        struct Row {
            const char* name;
            std::string input;
            std::vector<std::string> values;
        };
        Row rows[] = {
            {"words",
             "{\"a\":1}\nnot json at all\n{\"b\":2}\n",
             {"1:{\"a\":1}", "2:not json at all", "3:{\"b\":2}"}},
            {"a number and a string",
             "42 43\n\"s\" x\n{\"b\":2}",
             {"1:42 43", "2:\"s\" x", "3:{\"b\":2}"}},
            {"stray closers", "}\n]]\n{\"b\":2}", {"1:}", "2:]]", "3:{\"b\":2}"}},
            {"a string broken by a newline",
             "{\"a\":\"open\n{\"b\":2}\n",
             {"1:{\"a\":\"open", "2:{\"b\":2}"}},
            {"an object left open", "{\"a\":1\n{\"b\":2}\n", {"1:{\"a\":1", "2:{\"b\":2}"}},
            {"an object left open after a string",
             "{\"a\":{\"c\":\"d\"}\n  {\"b\":2}",
             {"1:{\"a\":{\"c\":\"d\"}", "2:{\"b\":2}"}},
            {"garbage at the end without a newline",
             "{\"a\":1}\ntrailing words",
             {"1:{\"a\":1}", "2:trailing words"}},
            {"garbage after a value on its line",
             "{\"a\":1} tail\n{\"b\":2}",
             {"1:{\"a\":1}", "1:tail", "2:{\"b\":2}"}},
        };
        for (const auto& r : rows) {
            for (size_t chunk : {1, 2, 5, 1000}) {
                CAPTURE(r.name);
                CAPTURE(chunk);
                bool ok = false;
                CHECK(SplitLines(r.input, chunk, &ok) == r.values);
                CHECK(ok);
            }
        }
    }

    TEST_CASE("a garbage line over the limit is one oversize value") {
        bool ok = false;
        auto v = SplitLines(std::string(100, 'x') + "\n{\"b\":1}", 7, &ok, 50);
        CHECK(ok);
        CHECK(v == std::vector<std::string>{"1:<oversize>", "2:{\"b\":1}"});
        // An object left open past the limit is cut at its line too.
        v = SplitLines("{\"a\":\"" + std::string(100, 'x') + "\"\n{\"b\":1}", 7, &ok, 50);
        CHECK(ok);
        CHECK(v == std::vector<std::string>{"1:<oversize>", "2:{\"b\":1}"});
    }

    TEST_CASE("pretty-printed values that are valid are never cut") {
        bool ok = false;
        std::string input =
            "{\n \"batch\": [\n  {\n   \"type\": \"identify\"\n  },\n  {\n   \"k\": true\n  }\n "
            "],\n \"o\": {\n  \"p\": null\n }\n}\n";
        auto v = SplitLines(input, 1, &ok);
        CHECK(ok);
        REQUIRE(v.size() == 1);
        CHECK(v[0] == "1:" + input.substr(0, input.size() - 1));
    }
}
