// An in-memory LaunchDarkly for tests, benchmarks and the demo.
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

#include "serve.hpp"

namespace audsync::emulator {

// One injected answer, used for the next `count` synced-segment requests.
struct Fault {
    int status = 0;                          // 0: answer normally (after delay_ms)
    std::optional<std::string> retry_after;  // Retry-After header
    std::optional<int64_t> reset_in_ms;      // X-Ratelimit-Reset = now + this (epoch ms)
    int delay_ms = 0;                        // wait before answering
    bool drop = false;                       // close the connection without answering
    int count = 1;
};

struct Segment {
    std::string key;  // segment-audiences-<cohortId>
    std::string cohort_id;
    std::string cohort_name;
    std::string context_kind;
    std::set<std::string> included;
};

struct Stats {
    uint64_t requests = 0;  // synced-segment requests
    std::map<int, uint64_t> by_status;
    uint64_t members = 0;  // members carried by accepted requests
    size_t max_batch = 0;
    std::string last_body;
    std::map<std::string, std::string> last_headers;  // lower-cased names
};

using Answer = emulator_common::Answer;

// An in-memory LaunchDarkly: the synced-segment endpoint and the two credential
// checks, validated as LaunchDarkly documents them, with fault injection and a
// control API (/_emulator/...). Thread-safe.
class Emulator {
  public:
    struct Options {
        std::string host = "127.0.0.1";
        uint16_t port = 0;  // 0: any free port
        std::string service_token = "emulator-token";
        std::string client_side_id = "emulator-client-side-id";
        int threads = 8;
        // Called (under the emulator's lock) for each member an accepted request applies.
        std::function<void(const std::string& key, bool included)> on_apply;
    };

    explicit Emulator(Options options);
    ~Emulator();
    Emulator(const Emulator&) = delete;
    Emulator& operator=(const Emulator&) = delete;

    void Start();
    uint16_t port() const;
    std::string base_url() const;
    void Stop();

    // The whole behaviour, without HTTP.
    Answer Handle(const std::string& method, const std::string& path,
                  const std::map<std::string, std::string>& headers, const std::string& body);

    void AddFault(Fault fault);
    void ClearFaults();
    void SetDelay(int ms);                        // every synced-segment request
    void RefuseKeys(std::set<std::string> keys);  // 400 for a batch holding any
    void SetRejectToken(bool reject);             // 401 to everything that needs the token
    void Reset();                                 // state, faults, refusals, stats

    std::map<std::string, Segment> Segments() const;
    std::set<std::string> Included(const std::string& cohort_id) const;
    Stats stats() const;

  private:
    Answer SyncedSegment(const std::map<std::string, std::string>& headers,
                         const std::string& body);
    Answer Control(const std::string& method, const std::string& path, const std::string& body);

    Options options_;
    mutable std::mutex mu_;
    std::map<std::string, Segment> segments_;
    std::deque<Fault> faults_;
    std::set<std::string> refused_;
    int delay_ms_ = 0;
    bool reject_token_ = false;
    Stats stats_;
    std::unique_ptr<emulator_common::Server> server_;
};

}  // namespace audsync::emulator
