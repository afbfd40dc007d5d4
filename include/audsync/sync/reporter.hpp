// The reporter: sends the reports of synced changes (queued with each acknowledgement,
// store/reports.hpp) to Segment's Tracking API, for destinations with report_to_segment.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/store/reports.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/targets/segment.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::sync {

// The track event of one report, as sent in a batch:
// {"type":"track","event":"Audience Membership Synced","userId",
//  "messageId","timestamp","properties":{audience_key, audience_id, included, platform,
//  target, context_kind, synced_at, deciding_message_id},"context":{"integration":
//  {"name":"audsync","version"}}}.
std::string ReportEvent(const store::ReportRow& row);

// A /v1/batch body of already-rendered events: {"batch":[...],"sentAt":...}.
std::string ReportBatch(const std::vector<const std::string*>& events, int64_t now_ms);

// Counters since start (exported as metrics).
struct ReporterCounters {
    std::atomic<uint64_t> sent{0};  // reports Segment accepted
    std::atomic<uint64_t> dead{0};  // reports Segment refused alone (or over 32 KB)
    std::atomic<uint64_t> requests_ok{0};
    std::atomic<uint64_t> requests_failed{0};
};

// Sends what is pending, one destination after the other, in queue order: batches of
// at most report.max_batch events and Segment's 500 KB, each event at most 32 KB.
// A 2xx marks the batch sent; 5xx and no answer retry with backoff; 429 waits for
// Retry-After; 401/403 pause the destination's reports; another 4xx is bisected until
// the refused report stands alone, which becomes a dead report (`audsync destinations
// reports`). The state is kept in SQLite, so nothing is lost across restarts.
// One thread. Wake() and Reload() are thread-safe.
class Reporter {
  public:
    using Send =
        std::function<targets::HttpResult(const config::SegmentReport&, const std::string& body)>;
    // `send`: default, Segment's Tracking API over libcurl (one connection per destination).
    Reporter(std::shared_ptr<const config::Config> config, std::string db_path,
             store::Writer& writer, Send send = nullptr);
    ~Reporter();
    Reporter(const Reporter&) = delete;
    Reporter& operator=(const Reporter&) = delete;

    void Start();
    void Stop();  // lets a request in flight finish; idempotent
    void Wake();  // something may have been queued
    void Reload(std::shared_ptr<const config::Config> config);
    const ReporterCounters& counters() const { return counters_; }

  private:
    struct DestinationState {
        int attempts = 0;
        int64_t next_ms = 0;
        std::string status = "ok";
    };
    void Run();
    // Sends the destination's pending reports until none is left or a failure makes
    // the destination wait (st.next_ms).
    void Drain(const config::Destination& d, store::ReportReader& reader, DestinationState& st);
    // Sends `rows` (already within the limits); bisects on a refusal. Returns false when
    // the destination must wait (retry, rate limit, auth).
    bool SendRows(const config::Destination& d, const std::vector<store::ReportRow>& rows,
                  const std::vector<std::string>& events, size_t begin, size_t end,
                  DestinationState& st);
    void SetStatus(const std::string& destination, DestinationState& st, const std::string& status,
                   int64_t paused_until_ms, const std::optional<std::string>& error,
                   std::optional<int64_t> success_ms);

    struct Client {
        std::unique_ptr<targets::TrackingClient> client;
        std::string api_base;
        std::string write_key;
    };

    store::Writer& writer_;
    const std::string db_path_;
    std::map<std::string, Client> clients_;  // by destination; the reporter thread's
    Send send_;
    ReporterCounters counters_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::shared_ptr<const config::Config> config_;  // by mu_
    bool stopping_ = false;                         // by mu_
    bool woken_ = false;                            // by mu_
    std::thread thread_;
};

}  // namespace audsync::sync
