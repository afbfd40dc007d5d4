// One kept-alive libcurl handle for a target's requests: the HTTP plumbing every
// platform shares. Not thread-safe: one per target instance.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "audsync/targets/target.hpp"

namespace audsync::targets {

class CurlClient {
  public:
    // Keeps at most `max_body_bytes` of an answer's body (a few KiB is enough for errors;
    // a listing needs more).
    explicit CurlClient(int timeout_ms, size_t max_body_bytes = 4096);
    ~CurlClient();
    CurlClient(const CurlClient&) = delete;
    CurlClient& operator=(const CurlClient&) = delete;

    // Sends one request. `headers` are whole lines ("Name: value"); a User-Agent is
    // added. A body is sent for any method but GET and HEAD. The answer keeps at most a
    // max_body_bytes of body; Retry-After and X-Ratelimit-Reset fill the result's fields, and
    // every header (names lower-cased) goes to `answer_headers` when given.
    HttpResult Send(const std::string& method, const std::string& url,
                    const std::vector<std::string>& headers, const std::string& body,
                    std::map<std::string, std::string>* answer_headers = nullptr);

  private:
    void* curl_;
    int timeout_ms_;
    size_t max_body_bytes_;
};

// "no answer (<why>)" or "HTTP <status>", for check lines.
std::string Describe(const HttpResult& r);

}  // namespace audsync::targets
