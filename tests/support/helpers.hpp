// Test helpers: temporary folders, Engage events and the test config.
#pragma once

#include <string>

#include "audsync/config/config.hpp"

namespace audsync::testing {

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string File(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

// An Engage audience event as Segment sends it. `value` is "true", "false" or "" (no
// boolean at the audience key).
struct EngageEvent {
    std::string type = "identify";
    std::string message_id = "m1";
    std::string user_id = "u1";
    std::string anonymous_id;
    std::string email;
    std::string value = "true";
    std::string timestamp = "2024-05-06T09:30:22.829Z";
    std::string audience_id = "aud_1";
    std::string audience_key = "high_value_users";
    std::string computation_class = "audience";
    std::string event_name;      // track: Audience Entered / Audience Exited
    std::string extra_personas;  // raw JSON members appended to context.personas
    std::string extra_top;       // raw JSON members appended to the event
    std::string Json() const;
};

// The admin token of the test configs (admin_token needs 16 characters or more).
inline constexpr const char* kAdminToken = "adm1n-test-token-0123";

// A config with one destination "ld" (write key "wk-ld", shared secret "s3cret"), and a
// database in `dir`.
config::Config TestConfig(const std::string& db_path);
std::string TestConfigJson(const std::string& db_path, const std::string& listen = "127.0.0.1:0");

}  // namespace audsync::testing
