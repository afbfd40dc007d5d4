#include <doctest/doctest.h>

#include <map>
#include <string>

#include "audsync/config/config.hpp"

using namespace audsync;

namespace {

config::EnvLookup Env(std::map<std::string, std::string> vars) {
    return [vars](const std::string& name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

const char* kMinimal =
    R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c","write_keys":["k"]}]})";

std::string ErrorOf(const std::string& text, std::map<std::string, std::string> env = {}) {
    auto c = config::LoadText(text, Env(env));
    return c.ok() ? std::string("ok") : c.error().message;
}

std::string WithDestination(const std::string& members) {
    return R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c",)"
           R"("write_keys":["k"])" +
           (members.empty() ? std::string() : "," + members) + "}]}";
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("defaults fill every optional value") {
        auto c = config::LoadText(kMinimal, Env({}));
        REQUIRE(c.ok());
        const auto& cfg = c.value();
        CHECK(cfg.listen_host == "127.0.0.1");
        CHECK(cfg.listen_port == 8080);
        CHECK(cfg.database == "audsync.db");
        CHECK(cfg.dedupe_window_hours == 168);
        CHECK(cfg.limits.tracking_max_request_bytes == 512000);
        CHECK(cfg.limits.tracking_max_events == 2500);
        CHECK(cfg.limits.webhook_max_request_bytes == 4194304);
        CHECK(cfg.limits.webhook_max_events == 4000);
        CHECK(cfg.limits.max_event_bytes == 32768);
        REQUIRE(cfg.destinations.size() == 1);
        const auto& d = cfg.destinations[0];
        CHECK(d.platform == "launchdarkly");
        CHECK(d.api_base == "https://app.launchdarkly.com");
        CHECK(d.clientsdk_base == "https://clientsdk.launchdarkly.com");
        CHECK(d.context_kind == "user");
        CHECK(d.context_key == config::ContextKeyChoice::kUserIdOnly);
        CHECK(d.max_batch == 1000);
        CHECK(d.shared_secret.empty());
    }

    TEST_CASE("the issue's example config loads with its environment") {
        const char* text = R"({
          "listen": "127.0.0.1:8080", "database": "audsync.db",
          "admin_token": "${AUDSYNC_ADMIN_TOKEN}",
          "destinations": [{
            "id": "ld-prod", "platform": "launchdarkly",
            "service_token": "${LD_SERVICE_TOKEN}", "client_side_id": "5f0c",
            "api_base": "https://app.launchdarkly.com/",
            "clientsdk_base": "https://clientsdk.launchdarkly.com",
            "context_kind": "user", "context_key": "user_id_only",
            "write_keys": ["${SEGMENT_WRITE_KEY}"],
            "shared_secret": "${SEGMENT_SHARED_SECRET}", "max_batch": 1000 }]})";
        auto c = config::LoadText(text, Env({{"AUDSYNC_ADMIN_TOKEN", "adm"},
                                             {"LD_SERVICE_TOKEN", "api-x"},
                                             {"SEGMENT_WRITE_KEY", "wk"},
                                             {"SEGMENT_SHARED_SECRET", "sh"}}));
        REQUIRE(c.ok());
        CHECK(c.value().admin_token == "adm");
        const auto& d = c.value().destinations[0];
        CHECK(d.service_token == "api-x");
        CHECK(d.write_keys == std::vector<std::string>{"wk"});
        CHECK(d.shared_secret == "sh");
        CHECK(d.api_base == "https://app.launchdarkly.com");  // trailing slash dropped
    }

    TEST_CASE("environment expansion") {
        auto c = config::LoadText(R"({"database":"${DIR}/a$$b-${NAME}.db","destinations":[]})",
                                  Env({{"DIR", "/var/lib"}, {"NAME", "x"}}));
        REQUIRE(c.ok());
        CHECK(c.value().database == "/var/lib/a$b-x.db");
        CHECK(ErrorOf(R"({"database":"${NOPE}","destinations":[]})") ==
              "database: environment variable NOPE is not set");
        CHECK(ErrorOf(R"({"database":"${OPEN","destinations":[]})") ==
              "database: unterminated ${ in value");
    }

    TEST_CASE("every error names its field") {
        struct Row {
            std::string text;
            std::string error;
        };
        Row rows[] = {
            {"[]", "config: must be a JSON object"},
            {"{", "config: body is not valid JSON: Missing a name for object member. (offset 1)"},
            {"{}", "destinations: required"},
            {R"({"destinations":{}})", "destinations: must be an array"},
            {R"({"destinations":[{"service_token":"t","client_side_id":"c","write_keys":["k"]}]})",
             "destinations[0].id: required"},
            {R"({"destinations":[{"id":"ld","client_side_id":"c","write_keys":["k"]}]})",
             "destinations[0].service_token: required"},
            {R"({"destinations":[{"id":"ld","service_token":"t","write_keys":["k"]}]})",
             "destinations[0].client_side_id: required"},
            {R"({"destinations":[{"id":"ld","service_token":"","client_side_id":"c","write_keys":["k"]}]})",
             "destinations[0].service_token: must not be empty"},
            {R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c"}]})",
             "destinations[0]: needs write_keys or a shared_secret, or no one could send to it"},
            {WithDestination(R"("context_key":"userId")"),
             "destinations[0].context_key: must be one of user_id_only, user_id_then_email, "
             "user_id_then_anonymousId, user_id_then_email_then_anonymousId, email_only"},
            {WithDestination(R"("context_kind":"multi")"),
             "destinations[0].context_kind: not a valid context kind"},
            {WithDestination(R"("max_batch":0)"),
             "destinations[0].max_batch: must be an integer from 1 to 10000"},
            {WithDestination(R"("platform":"optimizely")"),
             "destinations[0].platform: unsupported platform (supported: launchdarkly)"},
            {WithDestination(R"("api_base":"ftp://x")"),
             "destinations[0].api_base: must be an http(s) URL"},
            {WithDestination(R"("sevice_token":"x")"),
             "destinations[0].sevice_token: unknown field"},
            {R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c","write_keys":[1]}]})",
             "destinations[0].write_keys[0]: must be a string"},
            {WithDestination(R"("audience_context_kinds":{"aud_1":"kind"})"),
             "destinations[0].audience_context_kinds.aud_1: must be a valid context kind"},
            {R"({"listen":"8080","destinations":[]})",
             "listen: must be HOST:PORT, e.g. 127.0.0.1:8080"},
            {R"({"listen":"h:99999","destinations":[]})",
             "listen: port must be a number from 0 to 65535"},
            {R"({"http_threads":"4","destinations":[]})",
             "http_threads: must be an integer from 1 to 256"},
            {R"({"limits":{"max_event_bytes":10},"destinations":[]})",
             "limits.max_event_bytes: must be an integer from 256 to 16777216"},
            {R"({"limits":{"bogus":1},"destinations":[]})", "limits.bogus: unknown field"},
            {R"({"extra":1,"destinations":[]})", "extra: unknown field"},
            {R"({"destinations":[{"id":"a b","service_token":"t","client_side_id":"c","write_keys":["k"]}]})",
             "destinations[0].id: must be 1-64 characters of A-Z a-z 0-9 . _ -"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.text);
            CHECK(ErrorOf(r.text) == r.error);
        }
    }

    TEST_CASE("destination ids and write keys are unique") {
        std::string two_ids =
            R"({"destinations":[{"id":"a","service_token":"t","client_side_id":"c","write_keys":["k1"]},)"
            R"({"id":"a","service_token":"t","client_side_id":"c","write_keys":["k2"]}]})";
        CHECK(ErrorOf(two_ids) == "destinations[1].id: duplicate destination id a");
        std::string two_keys =
            R"({"destinations":[{"id":"a","service_token":"t","client_side_id":"c","write_keys":["k"]},)"
            R"({"id":"b","service_token":"t","client_side_id":"c","write_keys":["k"]}]})";
        CHECK(ErrorOf(two_keys) ==
              "destinations[1].write_keys: a write key is used by more than one destination");
    }

    TEST_CASE("the five context key choices round-trip") {
        for (const char* name : {"user_id_only", "user_id_then_email", "user_id_then_anonymousId",
                                 "user_id_then_email_then_anonymousId", "email_only"}) {
            auto choice = config::ParseContextKeyChoice(name);
            REQUIRE(choice.has_value());
            CHECK(config::ToString(*choice) == name);
        }
        CHECK_FALSE(config::ParseContextKeyChoice("email").has_value());
    }

    TEST_CASE("context kind validity") {
        CHECK(config::IsValidContextKind("user"));
        CHECK(config::IsValidContextKind("org.account-1_x"));
        CHECK_FALSE(config::IsValidContextKind(""));
        CHECK_FALSE(config::IsValidContextKind("kind"));
        CHECK_FALSE(config::IsValidContextKind("multi"));
        CHECK_FALSE(config::IsValidContextKind("a b"));
        CHECK_FALSE(config::IsValidContextKind(std::string(257, 'a')));
        CHECK(config::IsValidContextKind(std::string(256, 'a')));
    }

    TEST_CASE("a missing file is a clear error") {
        auto c = config::LoadFile("/nonexistent/audsync.json", Env({}));
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().message == "cannot read config file /nonexistent/audsync.json");
    }
}
