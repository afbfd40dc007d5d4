// Segment's Tracking API /v1/batch over libcurl.
#include "audsync/targets/segment.hpp"

#include <vector>

#include "audsync/common/text.hpp"
#include "shared/curl_client.hpp"

namespace audsync::targets {

TrackingClient::TrackingClient(const config::SegmentReport& report)
    : url_(report.api_base + "/v1/batch"),
      authorization_("Authorization: Basic " + text::Base64Encode(report.write_key + ":")),
      client_(std::make_unique<CurlClient>(report.request_timeout_ms)) {}

TrackingClient::~TrackingClient() = default;

HttpResult TrackingClient::SendBatch(const std::string& body) {
    std::vector<std::string> headers = {authorization_, "Content-Type: application/json",
                                        "Accept: application/json"};
    return client_->Send("POST", url_, headers, body);
}

}  // namespace audsync::targets
