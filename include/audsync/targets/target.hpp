// The Target interface every flag platform implements, and its HTTP results.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace audsync::targets {

// One member of a push: the context key and whether it is included.
struct PushMember {
    std::string context_key;
    bool value = false;
};

// One request to a flag platform: one audience, one context kind (semantics rule 10).
struct PushRequest {
    std::string audience_id;   // cohortId
    std::string audience_key;  // cohortName is derived from it
    std::string context_kind;
    std::vector<PushMember> members;
};

// What the platform answered. status 0 means no HTTP answer (connection refused,
// dropped, timed out); `transport_error` then says what happened.
struct HttpResult {
    int status = 0;
    std::string body;                            // at most a few KiB, for dead letters and errors
    std::optional<std::string> retry_after;      // Retry-After
    std::optional<std::string> ratelimit_reset;  // X-Ratelimit-Reset (epoch ms)
    std::string transport_error;
};

// The verdict of a credential check, one line per part.
struct CheckResult {
    bool ok = false;
    std::vector<std::string> lines;
};

// A flag platform. One instance is used by one thread at a time (it may hold a
// connection); the engine creates one per worker.
class Target {
  public:
    virtual ~Target() = default;
    virtual HttpResult Push(const PushRequest& request) = 0;
    virtual CheckResult Check() = 0;
};

}  // namespace audsync::targets
