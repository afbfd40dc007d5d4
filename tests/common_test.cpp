// Tests of the common helpers: JSON, text, crypto and Result.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <string>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

using namespace audsync;

TEST_SUITE("common") {
    TEST_CASE("base64 decodes standard alphabet with and without padding") {
        struct Row {
            const char* in;
            std::optional<std::string> out;
        };
        Row rows[] = {{"d2s6", "wk:"}, {"d2stbGQ6", "wk-ld:"}, {"YQ==", "a"},      {"YQ", "a"},
                      {"", ""},        {"@@@@", std::nullopt}, {"Y", std::nullopt}};
        for (const auto& r : rows) {
            CAPTURE(r.in);
            CHECK(text::Base64Decode(r.in) == r.out);
        }
        CHECK(text::Base64Encode("wk-ld:") == "d2stbGQ6");
        CHECK(text::Base64Encode("a") == "YQ==");
    }

    TEST_CASE("percent decoding handles escapes and refuses malformed ones") {
        CHECK(text::PercentDecode("a%2Fb") == std::optional<std::string>("a/b"));
        CHECK(text::PercentDecode("%E2%9C%93") == std::optional<std::string>("\xE2\x9C\x93"));
        CHECK(text::PercentDecode("a+b") == std::optional<std::string>("a+b"));
        CHECK(text::PercentDecode("a+b", true) == std::optional<std::string>("a b"));
        CHECK_FALSE(text::PercentDecode("%").has_value());
        CHECK_FALSE(text::PercentDecode("%4").has_value());
        CHECK_FALSE(text::PercentDecode("%zz").has_value());
        CHECK(text::PercentDecode(text::PercentEncode("k/%\"é")) ==
              std::optional<std::string>("k/%\"é"));
    }

    TEST_CASE("ISO-8601 timestamps parse to Unix milliseconds") {
        struct Row {
            const char* in;
            std::optional<int64_t> ms;
        };
        Row rows[] = {
            {"1970-01-01T00:00:00Z", 0},
            {"2024-05-06T09:30:22.829Z", 1714987822829},
            {"2024-05-06T09:30:22Z", 1714987822000},
            {"2024-05-06T09:30:22.8Z", 1714987822800},
            {"2024-05-06T09:30:22.829123Z", 1714987822829},
            {"2024-05-06T11:30:22.829+02:00", 1714987822829},
            {"2024-05-06T08:30:22.829-0100", 1714987822829},
            {"2024-02-29T00:00:00Z", 1709164800000},
            {"2023-02-29T00:00:00Z", std::nullopt},
            {"2024-05-06T09:30:22", std::nullopt},
            {"2024-05-06", std::nullopt},
            {"2024-13-06T09:30:22Z", std::nullopt},
            {"2024-05-06T09:30:22.Z", std::nullopt},
            {"2024-05-06T09:30:22Zjunk", std::nullopt},
            {"not a date", std::nullopt},
            {"", std::nullopt},
        };
        for (const auto& r : rows) {
            CAPTURE(r.in);
            CHECK(text::ParseIso8601(r.in) == r.ms);
        }
        CHECK(text::FormatIso8601(1714987822829) == "2024-05-06T09:30:22.829Z");
        CHECK(text::ParseIso8601(text::FormatIso8601(-1)) == std::optional<int64_t>(-1));
    }

    TEST_CASE("HMAC-SHA1 matches the published test vector") {
        CHECK(crypto::HmacSha1Hex("key", "The quick brown fox jumps over the lazy dog") ==
              "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9");
        CHECK(crypto::Sha1Hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    TEST_CASE("secret comparison is exact") {
        CHECK(crypto::SecretEquals("abc", "abc"));
        CHECK_FALSE(crypto::SecretEquals("abc", "abd"));
        CHECK_FALSE(crypto::SecretEquals("abc", "abcd"));
        CHECK_FALSE(crypto::SecretEquals("", "a"));
        CHECK(crypto::RandomHex(8).size() == 16);
        CHECK(crypto::RandomHex(8) != crypto::RandomHex(8));
    }

    TEST_CASE("JSON parsing enforces depth, encoding and a single value") {
        rapidjson::Document doc;
        CHECK(json::Parse(R"({"a":[1,{"b":null}]})", doc, 3).ok());
        auto deep = json::Parse(R"({"a":[1,{"b":[]}]})", doc, 3);
        REQUIRE_FALSE(deep.ok());
        CHECK(deep.error().name == "too_deep");
        std::string nested(100000, '[');
        auto very_deep = json::Parse(nested, doc, 64);
        REQUIRE_FALSE(very_deep.ok());
        CHECK(very_deep.error().name == "too_deep");
        auto utf8 = json::Parse("{\"a\":\"\xff\"}", doc, 8);
        REQUIRE_FALSE(utf8.ok());
        CHECK(utf8.error().name == "invalid_utf8");
        auto trailing = json::Parse("{} {}", doc, 8);
        REQUIRE_FALSE(trailing.ok());
        CHECK(trailing.error().name == "malformed_json");
        CHECK(json::Parse("{} \n", doc, 8).ok());
        auto raw_nul = json::Parse(std::string("{\"a\":\"x\0y\"}", 11), doc, 8);
        CHECK_FALSE(raw_nul.ok());
        CHECK_FALSE(json::Parse("", doc, 8).ok());
        CHECK_FALSE(json::Parse("{\"a\":", doc, 8).ok());
    }

    TEST_CASE("escaped NUL survives parse and serialisation") {
        rapidjson::Document doc;
        REQUIRE(json::Parse(R"({"k":"a\u0000b"})", doc, 8).ok());
        auto v = json::FindString(doc, "k");
        REQUIRE(v.has_value());
        CHECK(v->size() == 3);
        CHECK(json::Serialize(doc) == R"({"k":"a\u0000b"})");
        std::string quoted;
        json::AppendQuoted(quoted, std::string("a\0\"\\\n", 5));
        CHECK(quoted == R"("a\u0000\"\\\n")");
    }

    TEST_CASE("typed lookups never read a member of the wrong type") {
        rapidjson::Document doc;
        REQUIRE(json::Parse(R"({"s":"x","n":1,"o":{},"z":null})", doc, 8).ok());
        bool bad = false;
        CHECK(json::FindString(doc, "s", &bad) == std::optional<std::string>("x"));
        CHECK_FALSE(bad);
        CHECK_FALSE(json::FindString(doc, "n", &bad).has_value());
        CHECK(bad);
        bad = false;
        CHECK_FALSE(json::FindString(doc, "z", &bad).has_value());
        CHECK_FALSE(bad);
        CHECK(json::FindObject(doc, "o") != nullptr);
        CHECK(json::FindObject(doc, "s") == nullptr);
        CHECK(json::Find(doc, "missing") == nullptr);
    }
}
