// An in-memory Statsig Console API (segments and their ID lists) for tests and the demo.
// Routes and their sources: docs/platforms/statsig.md.
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

namespace audsync::statsig_emulator {

// Add / Remove IDs take at most this many IDs per call (more: 400).
constexpr size_t kMaxIdsPerCall = 100000;

// One injected answer, used for the next `count` Console API requests (control routes
// excepted), before the key is checked.
struct Fault {
    int status = 0;                          // 0: answer normally (after delay_ms)
    std::optional<std::string> retry_after;  // Retry-After header (Statsig documents none)
    int delay_ms = 0;                        // wait before answering
    bool drop = false;                       // close the connection without answering
    int count = 1;
};

struct Segment {
    std::string id;
    std::string name;
    std::string description;
    std::string type;  // id_list, rule_based, analysis_list, user_store_id_list
    std::string id_type;
    std::set<std::string> ids;  // the ID list (id_list segments)
    int64_t created_ms = 0;
    int64_t modified_ms = 0;
};

// One Console API request, as the request log keeps it.
struct LoggedRequest {
    std::string method;
    std::string path;              // without the query
    std::vector<std::string> ids;  // the body's "ids", at most the first 100
    size_t id_count = 0;           // how many the body held
    int status = 0;                // 0: dropped
};

struct Stats {
    uint64_t requests = 0;              // Console API requests, control routes excepted
    std::map<int, uint64_t> by_status;  // 0: dropped
    uint64_t mutations = 0;             // POST, PATCH, PUT and DELETE with the right key
    uint64_t creates = 0;               // POST /console/v1/segments answered 201
    uint64_t adds = 0;                  // PATCH .../id_list answered 200
    uint64_t removes = 0;               // DELETE .../id_list answered 200
    uint64_t deletes = 0;               // DELETE /console/v1/segments/{id} answered 200
    uint64_t rate_limited = 0;          // mutations answered 429 by the window (faults excepted)
    std::string last_method;
    std::string last_path;
    std::string last_body;
    std::map<std::string, std::string> last_headers;  // lower-cased names
};

using Answer = emulator_common::Answer;

// The emulator's --help text: options, Statsig routes and control routes.
const char* Usage();

// An in-memory Statsig project: the Console API's segment routes (list, create, get,
// delete) and ID-list routes (get, add, remove) behind the STATSIG-API-KEY header, with
// the validation and limits Statsig documents, a mutation budget per window answered 429,
// refused IDs, fault injection and a control API (/_emulator/...). Thread-safe.
class Emulator {
  public:
    struct Options {
        std::string host = "127.0.0.1";
        uint16_t port = 0;  // 0: any free port
        std::string console_api_key = "console-emulator-key";
        // The mutation budget: at most `rate_limit` POST/PATCH/PUT/DELETE per window
        // (0: unlimited); the Console API documents ~100 per 10 seconds.
        int rate_limit = 100;
        int64_t rate_window_ms = 10000;
        // IDs across every ID list of the project (Statsig: a hard limit of 10 million).
        size_t max_project_ids = 10000000;
        int threads = 8;
        // The clock of the rate-limit window and the segments' times.
        std::function<int64_t()> now_ms;  // empty: the system clock
    };

    explicit Emulator(Options options);
    ~Emulator();
    Emulator(const Emulator&) = delete;
    Emulator& operator=(const Emulator&) = delete;

    // Throws std::runtime_error when it cannot listen.
    void Start();
    uint16_t port() const;
    std::string base_url() const;  // http://host:port, the target's api_base
    void Stop();

    // The whole behaviour, without HTTP. `headers` have lower-cased names; `target` is the
    // path with its query.
    Answer Handle(const std::string& method, const std::string& target,
                  const std::map<std::string, std::string>& headers, const std::string& body);

    void AddFault(Fault fault);
    void ClearFaults();
    void SetRejectCredentials(bool reject);  // 401 to every Console API request
    // 400 to an add or remove whose IDs hold any of these (replaces the last set).
    void RefuseIds(std::set<std::string> ids);
    // A new budget of `mutations` per `window_ms` (0: unlimited); starts a new window.
    void SetRateLimit(int mutations, int64_t window_ms);
    // Deletes the segment, as an operator would in Statsig's console. False if none.
    bool DeleteSegment(const std::string& id);
    // Forgets segments, faults, refusals, the credential refusal, the rate limit set at run
    // time, the request log and the stats.
    void Reset();

    std::vector<Segment> Segments() const;  // sorted by id
    // The ID list of the segment; nullopt when there is no segment of that id.
    std::optional<std::set<std::string>> Ids(const std::string& id) const;
    std::vector<LoggedRequest> Requests() const;  // the last 1,000, oldest first
    Stats stats() const;

  private:
    Answer Api(const std::string& method, const std::string& path, const std::string& query,
               const std::map<std::string, std::string>& headers, const std::string& body);
    Answer Route(const std::string& method, const std::string& path, const std::string& query,
                 const std::string& body);
    Answer Control(const std::string& method, const std::string& path, const std::string& body);
    int64_t Now() const;
    size_t ProjectIds() const;  // under mu_

    Options options_;
    mutable std::mutex mu_;
    std::map<std::string, Segment> segments_;  // Protected by mu_ (as is all below)
    std::deque<Fault> faults_;
    std::set<std::string> refused_;
    bool reject_credentials_ = false;
    int rate_limit_ = 0;
    int64_t rate_window_ms_ = 10000;
    int64_t window_start_ms_ = -1;  // -1: no window yet
    int window_mutations_ = 0;
    std::deque<LoggedRequest> log_;
    Stats stats_;
    std::unique_ptr<emulator_common::Server> server_;
};

}  // namespace audsync::statsig_emulator
