// The LaunchDarkly target: synced-segment pushes and credential checks over libcurl.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "audsync/config/config.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::targets {

constexpr const char* kLdApiVersion = "20240415";
constexpr const char* kLdSyncedSegmentPath = "/api/v2/segment-targets/segment-audiences";

// "high_value_users" -> "High value users": first letter upper-cased, '_' -> ' '.
std::string CohortName(std::string_view audience_key);

// The synced-segment request body, byte for byte as LaunchDarkly documents it.
std::string SyncedSegmentBody(std::string_view client_side_id, const PushRequest& request);

class CurlClient;

// LaunchDarkly's synced-segment API over libcurl, with a kept-alive connection.
// Not thread-safe: one instance per thread.
class LaunchDarklyTarget : public Target {
  public:
    explicit LaunchDarklyTarget(const config::Target& target);
    ~LaunchDarklyTarget() override;
    LaunchDarklyTarget(const LaunchDarklyTarget&) = delete;
    LaunchDarklyTarget& operator=(const LaunchDarklyTarget&) = delete;

    PushShape shape() const override { return PushShape::kDeltas; }
    HttpResult Push(const PushRequest& request) override;
    // Segment's "test connection": HEAD clientsdk/sdk/goals/{id}, GET api/v2/versions.
    CheckResult Check() override;

  private:
    const config::Target target_;
    std::unique_ptr<CurlClient> client_;
};

}  // namespace audsync::targets
