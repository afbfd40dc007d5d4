// Tests of config loading: defaults, expansion, paths, secrets, errors.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
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
        CHECK(cfg.raw_retention_hours == 24);
        CHECK(cfg.ready_max_backlog_seconds == 60);
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
        CHECK(d.webhook_token.empty());
        CHECK(d.audience_url_key.empty());
        CHECK(d.webhook_signature == config::WebhookSignature::kRequireHeader);
        CHECK(cfg.limits.max_future_skew_seconds == 86400);
        CHECK(cfg.admin_token.empty());  // absent: the admin API is off
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
        auto c = config::LoadText(text, Env({{"AUDSYNC_ADMIN_TOKEN", "adm-0123456789abcdef"},
                                             {"LD_SERVICE_TOKEN", "api-x"},
                                             {"SEGMENT_WRITE_KEY", "wk"},
                                             {"SEGMENT_SHARED_SECRET", "sh"}}));
        REQUIRE(c.ok());
        CHECK(c.value().admin_token == "adm-0123456789abcdef");
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
            {"{", "config: not valid JSON at line 1, column 2: Missing a name for object member."},
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
             "destinations[0]: needs write_keys, a shared_secret or a webhook_token, or no one "
             "could "
             "send to it"},
            {WithDestination(R"("context_key":"userId")"),
             "destinations[0].context_key: must be one of user_id_only, user_id_then_email, "
             "user_id_then_anonymousId, user_id_then_email_then_anonymousId, email_only"},
            {WithDestination(R"("context_kind":"multi")"),
             "destinations[0].context_kind: not a valid context kind"},
            {WithDestination(R"("max_batch":0)"),
             "destinations[0].max_batch: must be an integer from 1 to 10000"},
            {WithDestination(R"("platform":"optimizely")"),
             "destinations[0].platform: the flat fields are LaunchDarkly's; list other platforms "
             "under targets"},
            {WithDestination(R"("api_base":"ftp://x")"),
             "destinations[0].api_base: must be an http(s) URL"},
            {WithDestination(R"("sevice_token":"x")"),
             "destinations[0].sevice_token: unknown field (did you mean \"service_token\"?)"},
            {R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c","write_keys":[1]}]})",
             "destinations[0].write_keys[0]: must be a string"},
            {WithDestination(R"("audience_context_kinds":{"aud_1":"kind"})"),
             "destinations[0].audience_context_kinds.aud_1: must be a valid context kind"},
            {R"({"listen":"8080","destinations":[]})",
             "listen: must be HOST:PORT, e.g. 127.0.0.1:8080"},
            {R"({"listen":"h:99999","destinations":[]})",
             "listen: port must be a number from 0 to 65535"},
            {R"({"admin_listen":"8081","destinations":[]})",
             "admin_listen: must be HOST:PORT, e.g. 127.0.0.1:8080"},
            {R"({"admin_listen":"127.0.0.1:70000","destinations":[]})",
             "admin_listen: port must be a number from 0 to 65535"},
            {R"({"admin_auth_free_failures":0,"destinations":[]})",
             "admin_auth_free_failures: must be an integer from 1 to 1000000"},
            {R"({"http_threads":"4","destinations":[]})",
             "http_threads: must be an integer from 1 to 256"},
            {R"({"raw_retention_hours":-1,"destinations":[]})",
             "raw_retention_hours: must be an integer from 0 to 8784"},
            {R"({"ready_max_backlog_seconds":0,"destinations":[]})",
             "ready_max_backlog_seconds: must be an integer from 1 to 604800"},
            {R"({"limits":{"max_event_bytes":10},"destinations":[]})",
             "limits.max_event_bytes: must be an integer from 256 to 16777216"},
            {R"({"limits":{"bogus":1},"destinations":[]})", "limits.bogus: unknown field"},
            {R"({"log_level":"verbose","destinations":[]})",
             "log_level: must be one of error, warn, info, debug"},
            {R"({"log_level":3,"destinations":[]})", "log_level: must be a string"},
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

namespace {

// A directory of its own under the system temp dir, removed at the end of the test.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        path = std::filesystem::temp_directory_path() /
               ("audsync-config-test-" + std::to_string(::getpid()) + "-" +
                std::to_string(reinterpret_cast<uintptr_t>(this)));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string File(const std::string& name) const { return (path / name).string(); }
    std::string Write(const std::string& name, const std::string& text) const {
        std::filesystem::path p = path / name;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << text;
        return p.string();
    }
};

// A config with every secret field taken from the environment.
const char* kSecretConfig = R"({
  "database": "${DB_DIR}/a.db",
  "admin_token": "${AUDSYNC_ADMIN_TOKEN}",
  "destinations": [{
    "id": "ld", "service_token": "${LD_TOKEN}", "client_side_id": "${CLIENT_ID}",
    "write_keys": ["${WRITE_KEY}", "literal-key"], "shared_secret": "${SHARED}" }]})";

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("relative paths are resolved against the config file's directory") {
        TempDir dir;
        std::string file = dir.Write("etc/audsync.json", WithDestination(""));
        auto c = config::LoadFile(file, Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().database == (dir.path / "etc" / "audsync.db").string());

        file = dir.Write("etc/b.json", R"({"database":"../var/x.db","destinations":[]})");
        c = config::LoadFile(file, Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().database == (dir.path / "var" / "x.db").string());

        file = dir.Write("etc/c.json", R"({"database":"/srv/abs.db","destinations":[]})");
        c = config::LoadFile(file, Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().database == "/srv/abs.db");

        // A variable that expands to an absolute path stays absolute.
        file = dir.Write("etc/d.json", R"({"database":"${D}/y.db","destinations":[]})");
        c = config::LoadFile(file, Env({{"D", "/data"}}));
        REQUIRE(c.ok());
        CHECK(c.value().database == "/data/y.db");
    }

    TEST_CASE("a relative config path is made absolute, so a later chdir changes nothing") {
        TempDir dir;
        dir.Write("sub/audsync.json", R"({"database":"db/a.db","destinations":[]})");
        std::filesystem::path before = std::filesystem::current_path();
        std::filesystem::current_path(dir.path);
        auto c = config::LoadFile("sub/audsync.json", Env({}));
        std::filesystem::current_path(before);
        REQUIRE(c.ok());
        CHECK(c.value().database == (dir.path / "sub" / "db" / "a.db").string());
        CHECK(std::filesystem::path(c.value().database).is_absolute());
    }

    TEST_CASE("LoadText keeps paths as written") {
        auto c = config::LoadText(R"({"database":"rel/a.db","destinations":[]})", Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().database == "rel/a.db");
        CHECK(ErrorOf(R"({"database":"","destinations":[]})") == "database: must not be empty");
    }

    TEST_CASE("JSON syntax errors name a line and a column") {
        struct Row {
            std::string text;
            std::string error;
        };
        Row rows[] = {
            {"{\n  \"listen\": \"a:1\",\n  \"database\" \"x\"\n}",
             "config: not valid JSON at line 3, column 14: Missing a colon after a name of "
             "object member."},
            {"{\"destinations\":[]}\n\n  x",
             "config: not valid JSON at line 3, column 3: text after the end of the JSON "
             "object."},
            // Columns count characters, not bytes.
            {"{\"database\":\"\xc3\xa9\xc3\xa9\",,}",
             "config: not valid JSON at line 1, column 18: Missing a name for object member."},
            {"", "config: not valid JSON at line 1, column 1: The document is empty."},
            {"{\"a\":\"\xff\"}",
             "config: not valid JSON at line 1, column 7: Invalid encoding in string."},
        };
        for (const auto& r : rows) {
            CAPTURE(r.text);
            CHECK(ErrorOf(r.text) == r.error);
        }
        // Nesting past the limit is still refused, without a stack overflow.
        std::string deep = std::string(100000, '[') + std::string(100000, ']');
        CHECK(ErrorOf(deep) == "config: JSON nesting is deeper than 32 levels");
    }

    TEST_CASE("unknown fields suggest the nearest known name at every level") {
        struct Row {
            std::string text;
            std::string error;
        };
        Row rows[] = {
            {R"({"databse":"x","destinations":[]})",
             R"(databse: unknown field (did you mean "database"?))"},
            // Reported before a required field that the typo hides.
            {R"({"destinatons":[]})",
             R"(destinatons: unknown field (did you mean "destinations"?))"},
            {R"({"Log_Level":"info","destinations":[]})",
             R"(Log_Level: unknown field (did you mean "log_level"?))"},
            {R"({"limits":{"max_event_byte":300},"destinations":[]})",
             R"(limits.max_event_byte: unknown field (did you mean "max_event_bytes"?))"},
            {R"({"sync":{"worker":2},"destinations":[]})",
             R"(sync.worker: unknown field (did you mean "workers"?))"},
            {WithDestination(R"("write_key":["x"])"),
             R"(destinations[0].write_key: unknown field (did you mean "write_keys"?))"},
            {R"({"destinations":[{"id":"ld","servce_tokn":"t","client_side_id":"c","write_keys":["k"]}]})",
             R"(destinations[0].servce_tokn: unknown field (did you mean "service_token"?))"},
            // Nothing near enough: no suggestion.
            {R"({"colour":"red","destinations":[]})", "colour: unknown field"},
            {R"({"sync":{"x":1},"destinations":[]})", "sync.x: unknown field"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.text);
            CHECK(ErrorOf(r.text) == r.error);
        }
    }

    TEST_CASE("log_level accepts the four levels and defaults to info") {
        auto c = config::LoadText(kMinimal, Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().log_level == log::Level::kInfo);
        struct Row {
            const char* name;
            log::Level level;
        };
        for (Row r : {Row{"error", log::Level::kError}, Row{"warn", log::Level::kWarn},
                      Row{"info", log::Level::kInfo}, Row{"debug", log::Level::kDebug}}) {
            CAPTURE(r.name);
            auto l = config::LoadText(
                std::string(R"({"log_level":")") + r.name + R"(","destinations":[]})", Env({}));
            REQUIRE(l.ok());
            CHECK(l.value().log_level == r.level);
            CHECK(config::ToString(r.level) == r.name);
        }
        auto env = config::LoadText(R"({"log_level":"${LVL}","destinations":[]})",
                                    Env({{"LVL", "debug"}}));
        REQUIRE(env.ok());
        CHECK(env.value().log_level == log::Level::kDebug);
        CHECK(ErrorOf(R"({"log_level":"INFO","destinations":[]})") ==
              "log_level: must be one of error, warn, info, debug");
    }

    TEST_CASE("secrets are resolved by default and a missing one is an error") {
        std::map<std::string, std::string> env = {
            {"DB_DIR", "/d"},    {"AUDSYNC_ADMIN_TOKEN", "adm-0123456789abcdef"},
            {"LD_TOKEN", "api"}, {"CLIENT_ID", "cid"},
            {"WRITE_KEY", "wk"}, {"SHARED", "sh"}};
        auto c = config::LoadText(kSecretConfig, Env(env));
        REQUIRE(c.ok());
        CHECK(c.value().secrets_resolved);
        CHECK(c.value().admin_token == "adm-0123456789abcdef");
        CHECK(c.value().destinations[0].write_keys ==
              std::vector<std::string>{"wk", "literal-key"});
        env.erase("AUDSYNC_ADMIN_TOKEN");
        CHECK(ErrorOf(kSecretConfig, env) ==
              "admin_token: environment variable AUDSYNC_ADMIN_TOKEN is not set");
    }

    TEST_CASE("without resolve_secrets, secrets need no environment and stay empty") {
        config::LoadOptions options;
        options.resolve_secrets = false;
        // Only the variables of the fields that are not secrets.
        auto c =
            config::LoadText(kSecretConfig, Env({{"DB_DIR", "/d"}, {"CLIENT_ID", "cid"}}), options);
        REQUIRE(c.ok());
        const auto& cfg = c.value();
        CHECK_FALSE(cfg.secrets_resolved);
        CHECK(cfg.database == "/d/a.db");
        CHECK(cfg.admin_token.empty());
        REQUIRE(cfg.destinations.size() == 1);
        const auto& d = cfg.destinations[0];
        CHECK(d.client_side_id == "cid");
        CHECK(d.service_token.empty());
        CHECK(d.shared_secret.empty());
        // Even a literal key is not handed out: the caller asked for no secrets.
        CHECK(d.write_keys.empty());

        auto err = [&](const std::string& text, std::map<std::string, std::string> vars) {
            auto r = config::LoadText(text, Env(std::move(vars)), options);
            return r.ok() ? std::string("ok") : r.error().message;
        };
        // Other fields are still expanded and validated as usual.
        CHECK(err(kSecretConfig, {{"CLIENT_ID", "cid"}}) ==
              "database: environment variable DB_DIR is not set");
        CHECK(err(R"({"log_level":"loud","admin_token":"${T}","destinations":[]})", {}) ==
              "log_level: must be one of error, warn, info, debug");
        // A secret field's shape is still checked.
        CHECK(err(R"({"admin_token":"${T","destinations":[]})", {}) ==
              "admin_token: unterminated ${ in value");
        CHECK(err(R"({"admin_token":5,"destinations":[]})", {}) == "admin_token: must be a string");
        CHECK(err(R"({"destinations":[{"id":"ld","client_side_id":"c","write_keys":["k"]}]})",
                  {}) == "destinations[0].service_token: required");
        CHECK(
            err(R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c","write_keys":[""]}]})",
                {}) == "destinations[0].write_keys[0]: must not be empty");
        CHECK(
            err(R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c"}]})", {}) ==
            "destinations[0]: needs write_keys, a shared_secret or a webhook_token, or no one "
            "could "
            "send to it");
        // A destination with only an unresolved shared secret is still addressable.
        CHECK(
            err(R"({"destinations":[{"id":"ld","service_token":"${T}","client_side_id":"c","shared_secret":"${S}"}]})",
                {}) == "ok");
        // The same key written twice is a duplicate, resolved or not.
        CHECK(
            err(R"({"destinations":[{"id":"a","service_token":"t","client_side_id":"c","write_keys":["${K}"]},)"
                R"({"id":"b","service_token":"t","client_side_id":"c","write_keys":["${K}"]}]})",
                {}) ==
            "destinations[1].write_keys: a write key is used by more than one destination");
    }

    TEST_CASE("LoadFile passes the load options on") {
        TempDir dir;
        std::string file = dir.Write("a.json", kSecretConfig);
        config::LoadOptions options;
        options.resolve_secrets = false;
        auto c = config::LoadFile(file, Env({{"DB_DIR", "/d"}, {"CLIENT_ID", "c"}}), options);
        REQUIRE(c.ok());
        CHECK_FALSE(c.value().secrets_resolved);
        auto strict = config::LoadFile(file, Env({{"DB_DIR", "/d"}, {"CLIENT_ID", "c"}}));
        REQUIRE_FALSE(strict.ok());
        CHECK(strict.error().message ==
              "admin_token: environment variable AUDSYNC_ADMIN_TOKEN is not set");
    }

    TEST_CASE("admin_token needs 16 characters, counted after expansion") {
        const std::string sixteen(16, 'a');
        CHECK(ErrorOf(R"({"admin_token":")" + sixteen + R"(","destinations":[]})") == "ok");
        const char* short_error =
            "admin_token: must be at least 16 characters (it is a credential)";
        CHECK(ErrorOf(R"({"admin_token":")" + sixteen.substr(1) + R"(","destinations":[]})") ==
              short_error);
        CHECK(ErrorOf(R"({"admin_token":"adm1n","destinations":[]})") == short_error);
        CHECK(ErrorOf(R"({"admin_token":"","destinations":[]})") == short_error);
        CHECK(ErrorOf(R"({"admin_token":"${T}","destinations":[]})", {{"T", "short"}}) ==
              short_error);
        CHECK(ErrorOf(R"({"admin_token":"${T}","destinations":[]})", {{"T", sixteen}}) == "ok");
        // The message never carries the value.
        CHECK(ErrorOf(R"({"admin_token":"${T}","destinations":[]})", {{"T", "s3cr3t"}})
                  .find("s3cr3t") == std::string::npos);
        // Unresolved (commands that only read), the length is not known and not checked.
        config::LoadOptions options;
        options.resolve_secrets = false;
        CHECK(
            config::LoadText(R"({"admin_token":"${T}","destinations":[]})", Env({}), options).ok());
    }

    TEST_CASE("${file:PATH} reads a secret from a file, again at every load") {
        TempDir dir;
        const std::string path = dir.File("token");
        std::ofstream(path) << "admin-0123456789abcdef\n";
        const std::string text = R"({"admin_token":"${file:)" + path + R"(}","destinations":[]})";
        auto first = config::LoadText(text, Env({}));
        REQUIRE(first.ok());
        CHECK(first.value().admin_token == "admin-0123456789abcdef");  // the newline dropped
        std::ofstream(path) << "admin-rotated-0123456789\r\n";
        auto again = config::LoadText(text, Env({}));
        REQUIRE(again.ok());
        CHECK(again.value().admin_token == "admin-rotated-0123456789");
        // Inside a longer value, and with the variables beside it.
        std::ofstream(dir.File("part")) << "xyz";
        auto mixed = config::LoadText(WithDestination(R"("webhook_token":"a-${file:)" +
                                                      dir.File("part") + R"(}-${V}-0123456789")"),
                                      Env({{"V", "v"}}));
        REQUIRE(mixed.ok());
        CHECK(mixed.value().destinations[0].webhook_token == "a-xyz-v-0123456789");
        // A missing file names its path and the reason; a relative path is refused; a file
        // over 64 KiB too; the contents never appear in an error.
        CHECK(ErrorOf(R"({"admin_token":"${file:)" + dir.File("missing") +
                      R"(}","destinations":[]})") == "admin_token: cannot read the secret file " +
                                                         dir.File("missing") +
                                                         ": No such file or directory");
        CHECK(ErrorOf(R"({"admin_token":"${file:token}","destinations":[]})") ==
              "admin_token: ${file:PATH} needs an absolute path");
        std::ofstream(dir.File("big")) << std::string(64 * 1024 + 1, 's');
        CHECK(
            ErrorOf(R"({"admin_token":"${file:)" + dir.File("big") + R"(}","destinations":[]})") ==
            "admin_token: the secret file " + dir.File("big") + " is over 64 KiB");
        std::ofstream(dir.File("short")) << "s3cr3t\n";
        const std::string short_error =
            ErrorOf(R"({"admin_token":"${file:)" + dir.File("short") + R"(}","destinations":[]})");
        CHECK(short_error == "admin_token: must be at least 16 characters (it is a credential)");
        CHECK(short_error.find("s3cr3t") == std::string::npos);
        // Unresolved (commands that only read), the file is not read, its syntax is checked.
        config::LoadOptions options;
        options.resolve_secrets = false;
        CHECK(config::LoadText(
                  R"({"admin_token":"${file:)" + dir.File("missing") + R"(}","destinations":[]})",
                  Env({}), options)
                  .ok());
        CHECK_FALSE(
            config::LoadText(R"({"admin_token":"${file:rel}","destinations":[]})", Env({}), options)
                .ok());
    }

    TEST_CASE("the _next value of each credential Segment or an operator presents") {
        const std::string key(16, 'k');
        const std::string next(16, 'n');
        auto c = config::LoadText(
            R"({"admin_token":")" + key + R"(","admin_token_next":")" + next +
                R"(","destinations":[{"id":"ld","service_token":"t","client_side_id":"c",)"
                R"("shared_secret":"s1","shared_secret_next":"s2","webhook_token":")" +
                key + R"(","webhook_token_next":")" + next + R"(","audience_url_key":")" + key +
                R"(","audience_url_key_next":")" + next + R"("}]})",
            Env({}));
        REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
        CHECK(c.value().admin_token_next == next);
        const auto& d = c.value().destinations[0];
        CHECK(d.shared_secret_next == "s2");
        CHECK(d.webhook_token_next == next);
        CHECK(d.audience_url_key_next == next);
        CHECK(d.has_shared_secret_next);
        CHECK(d.has_webhook_token_next);
        CHECK(d.has_audience_url_key_next);
        // Short next values: refused as their current fields are, a short secret warned.
        CHECK(ErrorOf(R"({"admin_token":")" + key +
                      R"(","admin_token_next":"short",)"
                      R"("destinations":[]})") ==
              "admin_token_next: must be at least 16 characters (it is a credential)");
        CHECK(ErrorOf(WithDestination(R"("webhook_token":")" + key +
                                      R"(","webhook_token_next":"short")")) ==
              "destinations[0].webhook_token_next: must be at least 16 characters (it is a "
              "credential)");
        bool warned = false;
        for (const auto& w : config::StartupWarnings(c.value())) {
            warned = warned || w.find("shared_secret_next: shorter than 16") != std::string::npos;
        }
        CHECK(warned);
        // A next value without its current one is a mistake, not a rotation.
        CHECK(ErrorOf(R"({"admin_token_next":")" + next + R"(","destinations":[]})") ==
              "admin_token_next: is the next value of admin_token, which is not set: set "
              "admin_token instead");
        for (const char* field : {"shared_secret", "webhook_token", "audience_url_key"}) {
            CAPTURE(field);
            CHECK(
                ErrorOf(WithDestination("\"" + std::string(field) + "_next\":\"" + next + "\"")) ==
                "destinations[0]." + std::string(field) + "_next: is the next value of " + field +
                    ", which is not set: set " + field + " instead");
        }
    }

    TEST_CASE("webhook_token and audience_url_key: secrets of 16 characters or more") {
        const std::string key(16, 'k');
        for (const char* field : {"webhook_token", "audience_url_key"}) {
            CAPTURE(field);
            CHECK(ErrorOf(WithDestination("\"" + std::string(field) + "\":\"" + key + "\"")) ==
                  "ok");
            CHECK(ErrorOf(WithDestination("\"" + std::string(field) + "\":\"" + key.substr(1) +
                                          "\"")) ==
                  "destinations[0]." + std::string(field) +
                      ": must be at least 16 characters (it is a credential)");
            CHECK(ErrorOf(WithDestination("\"" + std::string(field) + "\":5")) ==
                  "destinations[0]." + std::string(field) + ": must be a string");
        }
        auto c = config::LoadText(
            WithDestination(R"("webhook_token":"${TOKEN}","audience_url_key":"${URLKEY}")"),
            Env({{"TOKEN", "token-0123456789ab"}, {"URLKEY", "urlkey-0123456789"}}));
        REQUIRE(c.ok());
        const auto& d = c.value().destinations[0];
        CHECK(d.webhook_token == "token-0123456789ab");
        CHECK(d.audience_url_key == "urlkey-0123456789");
        CHECK(d.has_webhook_token);
        CHECK(d.has_audience_url_key);
        // Not needed for reads: unresolved, no variable is looked up and both stay empty.
        config::LoadOptions options;
        options.resolve_secrets = false;
        auto unresolved = config::LoadText(
            WithDestination(R"("webhook_token":"${TOKEN}","audience_url_key":"${URLKEY}")"),
            Env({}), options);
        REQUIRE(unresolved.ok());
        const auto& u = unresolved.value().destinations[0];
        CHECK(u.webhook_token.empty());
        CHECK(u.audience_url_key.empty());
        CHECK(u.has_webhook_token);
        CHECK(u.has_audience_url_key);
        // A webhook_token alone makes a destination addressable.
        CHECK(ErrorOf(R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c",)"
                      R"("webhook_token":")" +
                      key + R"("}]})") == "ok");
    }

    TEST_CASE("webhook_signature: require_header by default, first_element needs a secret") {
        auto secret = [](const std::string& extra) {
            return R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c",)"
                   R"("shared_secret":"0123456789abcdef")" +
                   extra + "}]}";
        };
        auto c = config::LoadText(secret(R"(,"webhook_signature":"first_element")"), Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().destinations[0].webhook_signature ==
              config::WebhookSignature::kFirstElement);
        CHECK(ErrorOf(secret(R"(,"webhook_signature":"require_header")")) == "ok");
        // require_token is require_header's older name: configs written for it still load.
        auto older = config::LoadText(secret(R"(,"webhook_signature":"require_token")"), Env({}));
        REQUIRE(older.ok());
        CHECK(older.value().destinations[0].webhook_signature ==
              config::WebhookSignature::kRequireHeader);
        CHECK(ErrorOf(secret(R"(,"webhook_signature":"all")")) ==
              "destinations[0].webhook_signature: must be require_header or first_element");
        CHECK(ErrorOf(WithDestination(R"("webhook_signature":"first_element")")) ==
              "destinations[0].webhook_signature: first_element needs a shared_secret (it is "
              "about X-Signature)");
        CHECK(config::ParseWebhookSignature("first_element") ==
              config::WebhookSignature::kFirstElement);
        CHECK(config::ToString(config::WebhookSignature::kRequireHeader) == "require_header");
    }

    TEST_CASE("limits.max_future_skew_seconds: from a minute to 366 days") {
        auto with = [](const std::string& v) {
            return R"({"limits":{"max_future_skew_seconds":)" + v + R"(},"destinations":[]})";
        };
        const char* range =
            "limits.max_future_skew_seconds: must be an integer from 60 to 31622400";
        CHECK(ErrorOf(with("60")) == "ok");
        CHECK(ErrorOf(with("31622400")) == "ok");
        CHECK(ErrorOf(with("59")) == range);
        CHECK(ErrorOf(with("31622401")) == range);
        CHECK(ErrorOf(with("\"1\"")) == range);
        auto c = config::LoadText(with("3600"), Env({}));
        REQUIRE(c.ok());
        CHECK(c.value().limits.max_future_skew_seconds == 3600);
    }

    TEST_CASE("StartupWarnings: short shared secret, first_element, audience URLs on write keys") {
        auto load = [](const std::string& members) {
            auto c = config::LoadText(
                R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c",)" +
                    members + "}]}",
                Env({{"SECRET", "short-secret"}}));
            REQUIRE(c.ok());
            return c.value();
        };
        // Quiet: a long secret, a dedicated URL key.
        CHECK(
            config::StartupWarnings(load(R"("write_keys":["k"],"shared_secret":"0123456789abcdef",)"
                                         R"("audience_url_key":"0123456789abcdef")"))
                .empty());
        CHECK(config::StartupWarnings(load(R"("shared_secret":"0123456789abcdef")")).empty());

        auto short_secret = config::StartupWarnings(load(R"("shared_secret":"${SECRET}")"));
        REQUIRE(short_secret.size() == 1);
        CHECK(short_secret[0].rfind("destinations[0].shared_secret: shorter than 16", 0) == 0);
        CHECK(short_secret[0].find("short-secret") == std::string::npos);

        auto first = config::StartupWarnings(
            load(R"("shared_secret":"0123456789abcdef","webhook_signature":"first_element")"));
        REQUIRE(first.size() == 1);
        CHECK(first[0].rfind("destinations[0].webhook_signature: first_element", 0) == 0);

        auto url = config::StartupWarnings(load(R"("write_keys":["k"])"));
        REQUIRE(url.size() == 1);
        CHECK(url[0].rfind("destinations[0].audience_url_key: not set", 0) == 0);

        // Unresolved secrets have no known length: no warning about it.
        config::LoadOptions options;
        options.resolve_secrets = false;
        auto unresolved = config::LoadText(
            R"({"destinations":[{"id":"ld","service_token":"t","client_side_id":"c","shared_secret":"${S}"}]})",
            Env({}), options);
        REQUIRE(unresolved.ok());
        CHECK(config::StartupWarnings(unresolved.value()).empty());
    }
}

namespace {

std::string WithTargets(const std::string& targets) {
    return R"({"destinations":[{"id":"engage","write_keys":["k"],"targets":[)" + targets + "]}]}";
}

}  // namespace

TEST_SUITE("config targets") {
    TEST_CASE("the issue's example: one destination, four targets on three platforms") {
        auto c = config::LoadText(
            R"({"destinations":[{"id": "engage", "write_keys": ["${SEGMENT_WRITE_KEY}"],
                "context_key": "user_id_only", "max_in_flight": 2, "targets": [
   {"id": "ld-prod", "platform": "launchdarkly", "service_token": "${LD_TOKEN}", "client_side_id": "p"},
   {"id": "ld-staging", "platform": "launchdarkly", "service_token": "${LD_TOKEN}", "client_side_id": "s", "max_in_flight": 1},
   {"id": "fs", "platform": "flagsmith", "environment_key": "${FLAGSMITH_SERVER_KEY}", "api_base": "https://edge.api.flagsmith.com"},
   {"id": "cc", "platform": "configcat", "api_user": "${CONFIGCAT_USER}", "api_password": "${CONFIGCAT_PASSWORD}", "product_id": "prod-1"}]}]})",
            Env({{"SEGMENT_WRITE_KEY", "wk"},
                 {"LD_TOKEN", "api-1"},
                 {"FLAGSMITH_SERVER_KEY", "ser.abc"},
                 {"CONFIGCAT_USER", "u"},
                 {"CONFIGCAT_PASSWORD", "p"}}));
        REQUIRE_MESSAGE(c.ok(), c.error().message);
        const auto& d = c.value().destinations.at(0);
        REQUIRE(d.targets.size() == 4);
        CHECK(d.targets[0].id == "ld-prod");
        CHECK(d.targets[0].service_token == "api-1");
        CHECK(d.targets[0].api_base == "https://app.launchdarkly.com");
        CHECK(d.targets[0].max_batch == 1000);
        CHECK(d.targets[0].max_in_flight == 2);  // the destination's, as a default
        CHECK(d.targets[1].max_in_flight == 1);  // the target's own
        CHECK(d.targets[2].platform == "flagsmith");
        CHECK(d.targets[2].environment_key == "ser.abc");
        CHECK(d.targets[2].flagsmith_api == "edge");
        CHECK(d.targets[2].max_batch == 100);
        CHECK(d.targets[3].platform == "configcat");
        CHECK(d.targets[3].api_base == "https://api.configcat.com");
        CHECK(d.targets[3].max_list_items == 1000);
        CHECK(d.FindTarget("cc") == &d.targets[3]);
        CHECK(d.FindTarget("nope") == nullptr);
    }

    TEST_CASE("the flat LaunchDarkly fields are one target named launchdarkly") {
        auto c = config::LoadText(WithDestination(R"("max_batch":50)"), Env({}));
        REQUIRE(c.ok());
        const auto& d = c.value().destinations.at(0);
        REQUIRE(d.targets.size() == 1);
        CHECK(d.targets[0].id == "launchdarkly");
        CHECK(d.targets[0].platform == "launchdarkly");
        CHECK(d.targets[0].service_token == "t");
        CHECK(d.targets[0].client_side_id == "c");
        CHECK(d.targets[0].max_batch == 50);
    }

    TEST_CASE("a self-hosted Flagsmith uses the Core API unless told otherwise") {
        auto c = config::LoadText(
            WithTargets(R"({"id":"fs","platform":"flagsmith","environment_key":"ser.x",)"
                        R"("api_base":"https://flags.example.com/","trait_prefix":"seg_"})"),
            Env({}));
        REQUIRE(c.ok());
        const auto& t = c.value().destinations[0].targets[0];
        CHECK(t.flagsmith_api == "core");
        CHECK(t.api_base == "https://flags.example.com");
        CHECK(t.trait_prefix == "seg_");
    }

    TEST_CASE("Unleash and Statsig targets: their fields and defaults") {
        auto c = config::LoadText(
            WithTargets(
                R"({"id":"un","platform":"unleash","api_token":"${UNLEASH_TOKEN}",)"
                R"("api_base":"http://127.0.0.1:4242/"},)"
                R"({"id":"un2","platform":"unleash","api_token":"t","api_base":"https://u.example",)"
                R"("context_name":"accountId","project":"web","max_list_items":5000},)"
                R"({"id":"st","platform":"statsig","console_api_key":"${STATSIG_KEY}"})"),
            Env({{"UNLEASH_TOKEN", "*:*.secret"}, {"STATSIG_KEY", "console-abc"}}));
        REQUIRE_MESSAGE(c.ok(), c.error().message);
        const auto& d = c.value().destinations.at(0);
        REQUIRE(d.targets.size() == 3);
        CHECK(d.targets[0].api_token == "*:*.secret");
        CHECK(d.targets[0].api_base == "http://127.0.0.1:4242");
        CHECK(d.targets[0].context_name == "userId");
        CHECK(d.targets[0].project.empty());
        CHECK(d.targets[0].max_list_items == 1000);
        CHECK(d.targets[1].context_name == "accountId");
        CHECK(d.targets[1].project == "web");
        CHECK(d.targets[1].max_list_items == 5000);
        CHECK(d.targets[2].api_token == "console-abc");
        CHECK(d.targets[2].api_base == "https://statsigapi.net");
        CHECK(d.targets[2].id_type == "userID");
        CHECK(d.targets[2].max_batch == 10000);
    }

    TEST_CASE("every target error names its field") {
        struct Row {
            std::string text;
            std::string error;
        };
        const std::string ld = R"({"id":"a","platform":"launchdarkly","service_token":"t",)"
                               R"("client_side_id":"c"})";
        std::vector<Row> rows = {
            {WithTargets(""), "destinations[0].targets: must be a non-empty array"},
            {WithTargets(R"({"id":"a"})"), "destinations[0].targets[0].platform: required"},
            {WithTargets(R"({"id":"a","platform":"optimizely"})"),
             "destinations[0].targets[0].platform: unsupported platform \"optimizely\" "
             "(supported: launchdarkly, flagsmith, configcat, unleash, statsig)"},
            {WithTargets(R"({"platform":"launchdarkly","service_token":"t","client_side_id":"c"})"),
             "destinations[0].targets[0].id: required"},
            {WithTargets(ld + "," + ld), "destinations[0].targets[1].id: duplicate target id a"},
            {WithTargets(R"({"id":"f","platform":"flagsmith","environment_key":"ser.x",)"
                         R"("service_token":"t"})"),
             "destinations[0].targets[0].service_token: unknown field"},
            {WithTargets(R"({"id":"f","platform":"flagsmith","environment_key":"x"})"),
             "destinations[0].targets[0].environment_key: must be a server-side environment key "
             "(it starts with \"ser.\"); a client-side key cannot store traits"},
            {WithTargets(R"({"id":"f","platform":"flagsmith","environment_key":"ser.x",)"
                         R"("api_base":"https://edge.api.flagsmith.com/api/v1"})"),
             "destinations[0].targets[0].api_base: give the host only (e.g. "
             "https://edge.api.flagsmith.com); audsync adds /api/v1"},
            {WithTargets(R"({"id":"f","platform":"flagsmith","environment_key":"ser.x",)"
                         R"("max_batch":101})"),
             "destinations[0].targets[0].max_batch: Flagsmith's Edge API takes at most 100 "
             "identities per request"},
            {WithTargets(R"({"id":"f","platform":"flagsmith","environment_key":"ser.x",)"
                         R"("flagsmith_api":"v2"})"),
             "destinations[0].targets[0].flagsmith_api: must be edge or core"},
            {WithTargets(R"({"id":"c","platform":"configcat","api_user":"u","api_password":"p"})"),
             "destinations[0].targets[0].product_id: required"},
            {WithTargets(R"({"id":"c","platform":"configcat","api_user":"u","api_password":"p",)"
                         R"("product_id":"x","max_list_items":0})"),
             "destinations[0].targets[0].max_list_items: must be an integer from 1 to 100000"},
            {WithTargets(R"({"id":"u","platform":"unleash","api_token":"t"})"),
             "destinations[0].targets[0].api_base: required"},
            {WithTargets(R"({"id":"u","platform":"unleash","api_base":"http://x"})"),
             "destinations[0].targets[0].api_token: required"},
            {WithTargets(R"({"id":"u","platform":"unleash","api_token":"t",)"
                         R"("api_base":"http://x/api"})"),
             "destinations[0].targets[0].api_base: give the server's base URL (e.g. "
             "https://unleash.example.com); audsync adds /api/admin"},
            {WithTargets(R"({"id":"u","platform":"unleash","api_token":"t","api_base":"http://x",)"
                         R"("context_name":""})"),
             "destinations[0].targets[0].context_name: must be 1-100 characters"},
            {WithTargets(R"({"id":"s","platform":"statsig","console_api_key":"secret-x"})"),
             "destinations[0].targets[0].console_api_key: must be a Console API key (it starts "
             "with \"console-\"); a server or client SDK key cannot change segments"},
            {WithTargets(R"({"id":"s","platform":"statsig","console_api_key":"console-x",)"
                         R"("api_base":"https://statsigapi.net/console/v1"})"),
             "destinations[0].targets[0].api_base: give the host only (e.g. "
             "https://statsigapi.net); audsync adds /console/v1"},
            {WithTargets(R"({"id":"s","platform":"statsig","console_api_key":"console-x",)"
                         R"("api_token":"y"})"),
             "destinations[0].targets[0].api_token: unknown field"},
            {R"({"destinations":[{"id":"d","write_keys":["k"],"service_token":"t","targets":[)" +
                 ld + "]}]}",
             "destinations[0].service_token: set on a target when the destination lists targets "
             "(the flat LaunchDarkly fields are shorthand for a destination without targets)"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.text);
            CHECK(ErrorOf(r.text) == r.error);
        }
    }

    TEST_CASE("target secrets stay unresolved for commands that only read") {
        config::LoadOptions o;
        o.resolve_secrets = false;
        auto c = config::LoadText(
            WithTargets(R"({"id":"f","platform":"flagsmith","environment_key":"${FS_KEY}"},)"
                        R"({"id":"c","platform":"configcat","api_user":"${U}",)"
                        R"("api_password":"${P}","product_id":"x"})"),
            Env({}), o);
        REQUIRE_MESSAGE(c.ok(), c.error().message);
        CHECK(c.value().destinations[0].targets[0].environment_key.empty());
        CHECK(c.value().destinations[0].targets[1].api_password.empty());
    }
}
