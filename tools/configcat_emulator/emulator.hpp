// An in-memory ConfigCat Public Management API (segments) for tests and the demo.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <vector>
#include "serve.hpp"

namespace audsync::configcat_emulator {

// One injected answer, used for the next `count` API requests (control routes excepted).
struct Fault {
    int status = 0;                          // 0: answer normally (after delay_ms)
    std::optional<std::string> retry_after;  // Retry-After header
    std::optional<int64_t> reset_in_ms;      // X-Rate-Limit-Reset = now + this (ISO 8601)
    int delay_ms = 0;                        // wait before answering
    bool drop = false;                       // close the connection without answering
    int count = 1;
};

struct Segment {
    std::string segment_id;  // a UUID
    std::string name;
    std::string description;
    std::string comparison_attribute;
    std::string comparator;
    std::string comparison_value;  // as sent
    int64_t created_at_ms = 0;
    int64_t updated_at_ms = 0;
};

struct Stats {
    uint64_t requests = 0;              // API requests, control routes excepted
    std::map<int, uint64_t> by_status;  // 0: dropped
    uint64_t lists = 0;                 // GET /v1/products/{productId}/segments answered 200
    uint64_t creates = 0;               // POST answered 201
    uint64_t updates = 0;               // PUT answered 200
    uint64_t deletes = 0;               // DELETE answered 204
    std::string last_method;
    std::string last_path;
    std::string last_body;
    std::map<std::string, std::string> last_headers;  // lower-cased names
};

using Answer = emulator_common::Answer;

// An in-memory ConfigCat: the segment routes of the Public Management API and GET /v1/me,
// with HTTP Basic authentication, the validation and limits ConfigCat documents, a
// request budget per window answered 429, fault injection and a control API
// (/_emulator/...). Thread-safe.
class Emulator {
  public:
    struct Options {
        std::string host = "127.0.0.1";
        uint16_t port = 0;  // 0: any free port
        std::string user = "emulator-user";
        std::string password = "emulator-password";
        std::string product_id = "emulator-product";
        // The plan's limits; the defaults are the Pro plan's.
        size_t max_items = 1000;  // comparison value list length
        size_t max_segments = 3;  // segments per product
        // Rate limit: at most `rate_limit` API requests per window; 0: unlimited.
        int rate_limit = 0;
        int64_t rate_window_ms = 60000;
        int threads = 8;
        // The clock of the rate-limit window, timestamps and X-Rate-Limit-Reset.
        std::function<int64_t()> now_ms;  // empty: the system clock
    };

    explicit Emulator(Options options);
    ~Emulator();
    Emulator(const Emulator&) = delete;
    Emulator& operator=(const Emulator&) = delete;

    void Start();
    uint16_t port() const;
    std::string base_url() const;
    void Stop();

    // The whole behaviour, without HTTP. `headers` have lower-cased names.
    Answer Handle(const std::string& method, const std::string& path,
                  const std::map<std::string, std::string>& headers, const std::string& body);

    void AddFault(Fault fault);
    void ClearFaults();
    void SetRejectCredentials(bool reject);  // 401 to every API request
    // A new budget of `requests` per `window_ms` (0: unlimited); starts a new window.
    void SetRateLimit(int requests, int64_t window_ms);
    // Deletes every segment of that name, as an operator would in ConfigCat's dashboard.
    // Returns how many were deleted.
    size_t DeleteSegmentByName(const std::string& name);
    void Reset();  // segments, faults, credential refusal, rate limit (to Options), stats

    std::vector<Segment> Segments() const;  // in creation order
    // The items of the comparison value of the segment of that name, split at ',' and
    // trimmed as ConfigCat reads them; nullopt when no segment has the name.
    std::optional<std::set<std::string>> Values(const std::string& name) const;
    Stats stats() const;

  private:
    Answer Api(const std::string& method, const std::string& path,
               const std::map<std::string, std::string>& headers, const std::string& body);
    Answer Route(const std::string& method, const std::string& path,
                 const std::map<std::string, std::string>& headers, const std::string& body);
    Answer Control(const std::string& method, const std::string& path, const std::string& body);
    int64_t Now() const;

    Options options_;
    mutable std::mutex mu_;
    std::vector<Segment> segments_;  // Protected by mu_
    std::deque<Fault> faults_;       // Protected by mu_
    bool reject_credentials_ = false;
    int rate_limit_ = 0;
    int64_t rate_window_ms_ = 60000;
    int64_t window_start_ms_ = 0;
    int window_requests_ = 0;
    uint64_t next_id_ = 1;  // never reset, so that an id is never reused
    Stats stats_;
    std::unique_ptr<emulator_common::Server> server_;
};

}  // namespace audsync::configcat_emulator
