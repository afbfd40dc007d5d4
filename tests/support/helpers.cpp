// Test helpers: temporary folders, Engage events and the test config.
#include "support/helpers.hpp"

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>

#include "audsync/common/json.hpp"

namespace audsync::testing {

TempDir::TempDir() {
    char tmpl[] = "/tmp/audsync-test-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::string EngageEvent::Json() const {
    auto q = [](const std::string& s) {
        std::string out;
        json::AppendQuoted(out, s);
        return out;
    };
    std::string values;
    if (!value.empty()) values = q(audience_key) + ":" + value;
    std::string out = "{\"type\":" + q(type);
    if (!message_id.empty()) out += ",\"messageId\":" + q(message_id);
    if (!user_id.empty()) out += ",\"userId\":" + q(user_id);
    if (!anonymous_id.empty()) out += ",\"anonymousId\":" + q(anonymous_id);
    if (!event_name.empty()) out += ",\"event\":" + q(event_name);
    std::string context_traits;
    if (type == "identify") {
        out += ",\"traits\":{" + (email.empty() ? std::string() : "\"email\":" + q(email)) +
               (email.empty() || values.empty() ? "" : ",") + values + "}";
    } else {
        out += ",\"properties\":{\"audience_key\":" + q(audience_key) +
               (values.empty() ? "" : "," + values) + "}";
        if (!email.empty()) context_traits = "\"traits\":{\"email\":" + q(email) + "},";
    }
    out += ",\"context\":{" + context_traits +
           "\"personas\":{\"computation_class\":" + q(computation_class) +
           ",\"computation_id\":" + q(audience_id) + ",\"computation_key\":" + q(audience_key) +
           ",\"space_id\":\"spa_1\"" + (extra_personas.empty() ? "" : "," + extra_personas) + "}}";
    if (!timestamp.empty()) out += ",\"timestamp\":" + q(timestamp);
    if (!extra_top.empty()) out += "," + extra_top;
    out += "}";
    return out;
}

std::string TestConfigJson(const std::string& db_path, const std::string& listen) {
    return R"({"listen":")" + listen + R"(","database":")" + db_path + R"(","admin_token":")" +
           kAdminToken +
           R"(","destinations":[{"id":"ld","service_token":"api-tok",)"
           R"("client_side_id":"cs-1","write_keys":["wk-ld"],"shared_secret":"s3cret",)"
           R"("context_key":"user_id_then_email_then_anonymousId"},)"
           R"({"id":"other","service_token":"api-2","client_side_id":"cs-2","write_keys":["wk-other"]}]})";
}

config::Config TestConfig(const std::string& db_path) {
    auto c = config::LoadText(TestConfigJson(db_path),
                              [](const std::string&) { return std::optional<std::string>(); });
    if (!c) throw std::runtime_error(c.error().message);
    return c.value();
}

}  // namespace audsync::testing
