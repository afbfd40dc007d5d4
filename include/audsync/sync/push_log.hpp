// The recent pushes of this process, kept in memory for GET /v1/pushes and the status
// page. Plain data and a small thread-safe ring; no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace audsync::sync {

// One request to a platform (or a list not sent for being over the platform's limit),
// as GET /v1/pushes and the status page show it.
struct PushRecord {
    int64_t at_ms = 0;  // when the answer came
    std::string destination;
    std::string target;
    std::string platform;
    int64_t segment_id = 0;
    std::string audience_key;
    std::string context_kind;
    size_t adds = 0;     // members sent as included (a full list: its length)
    size_t removes = 0;  // members sent as excluded
    int status = 0;      // HTTP status; 0: no answer (or nothing sent)
    // accepted | retry | rate_limited | auth_failed | refused | over_limit
    std::string outcome;
    std::string message;  // the platform's answer or the transport error, secrets removed
    int64_t duration_ms = 0;
};

// The most recent pushes of this process, newest last; at most kCapacity (the oldest go).
// Thread-safe.
class PushLog {
  public:
    static constexpr size_t kCapacity = 1000;
    void Add(PushRecord record);
    struct Filter {
        std::optional<std::string> destination;
        std::optional<std::string> target;
        std::optional<int64_t> segment_id;
    };
    // The newest first, at most `limit`, those matching every filter given.
    std::vector<PushRecord> Recent(const Filter& filter, size_t limit) const;
    size_t size() const;

  private:
    mutable std::mutex mu_;
    std::deque<PushRecord> records_;
};

}  // namespace audsync::sync
