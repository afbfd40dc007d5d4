// Segment's Tracking API as a sink: POST <api_base>/v1/batch with a write key, for the
// reports of synced changes (report_to_segment; docs/platforms/segment.md).
#pragma once

#include <memory>
#include <string>

#include "audsync/config/config.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::targets {

class CurlClient;

// One kept-alive connection to Segment's Tracking API. Not thread-safe.
class TrackingClient {
  public:
    explicit TrackingClient(const config::SegmentReport& report);
    ~TrackingClient();
    TrackingClient(const TrackingClient&) = delete;
    TrackingClient& operator=(const TrackingClient&) = delete;

    // Sends one /v1/batch body (Basic auth: the write key as user, no password).
    HttpResult SendBatch(const std::string& body);

  private:
    const std::string url_;
    const std::string authorization_;  // never logged
    std::unique_ptr<CurlClient> client_;
};

}  // namespace audsync::targets
