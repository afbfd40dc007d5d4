// The ingest path without HTTP: authenticate, parse, map, store and summarise events.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/ingest/admission.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/store/writer.hpp"

namespace audsync::ingest {

enum class Route { kBatch, kIdentify, kTrack, kImport, kWebhook };

// The header carrying a destination's webhook_token. The operator adds it in
// Segment's mapping headers; it authenticates a webhook request whatever its body.
inline constexpr const char* kTokenHeader = "X-Audsync-Token";

// Webhook route authentication (destination with a shared_secret):
// - a write key (Basic auth), or the webhook_token as Authorization: Bearer or as
//   X-Audsync-Token, admits any body;
// - X-Signature alone admits one event or a one-element array (Segment signs only the
//   first element of a batch); a longer array is refused 401 (webhook_signature
//   "require_header", the default) unless the destination opts in with "first_element".
// A refused request stores nothing.
struct Request {
    Route route = Route::kBatch;
    std::string destination_id;  // kWebhook only: from the path
    std::string_view body;
    std::optional<std::string> authorization;  // Authorization header
    std::optional<std::string> signature;      // X-Signature header
    std::optional<std::string> token;          // X-Audsync-Token header (kTokenHeader)
};

// Context kinds of Webhook Audiences audiences by (destination, externalId), kept in
// memory for the mapping of every event. Thread-safe.
class AudienceRegistry {
  public:
    void Put(const std::string& destination, const std::string& external_id,
             std::optional<std::string> context_kind);
    bool Contains(const std::string& destination, const std::string& external_id) const;
    std::optional<std::string> ContextKind(const std::string& destination,
                                           const std::string& external_id) const;

  private:
    mutable std::shared_mutex mu_;
    std::map<std::pair<std::string, std::string>, std::optional<std::string>> kinds_;
};

// What became of the items of one request (or one replay batch).
struct Rejected {
    size_t index = 0;
    std::string message_id;
    std::string reason;
    std::string detail;
};

struct Summary {
    // Membership events appended to the inbox and committed: the applier decides later
    // whether each one changes a membership, is a duplicate or is stale (metrics, member
    // lookup). `last_seq`: the inbox position of the last one (0: none stored).
    size_t stored = 0;
    int64_t last_seq = 0;
    // A dry run's prediction against the applied state (a live request leaves them 0).
    size_t accepted = 0;
    size_t duplicates = 0;
    size_t stale = 0;
    size_t not_applicable = 0;
    // Why items were not applicable: counts by mapping::NotApplicable::reason
    // (not_identify_or_track, not_engage, not_membership_class, no_audience_id).
    // The counts add up to not_applicable.
    std::map<std::string, size_t> not_applicable_reasons;
    std::vector<Rejected> rejected;
};

// Notices an audience whose events resolve to two context kinds at one destination
// (e.g. one Webhook Audiences event carried external_audience_id and the next did
// not), which splits it between LaunchDarkly segments of different kinds. Returns a
// warning the first time per (destination, audience) and nothing after. Remembers at
// most `max_audiences` audiences; later ones are not watched. Thread-safe.
class KindConflictWatch {
  public:
    static constexpr size_t kDefaultMaxAudiences = 10000;
    explicit KindConflictWatch(size_t max_audiences = kDefaultMaxAudiences) : max_(max_audiences) {}

    std::optional<std::string> Observe(const std::string& destination,
                                       const std::string& audience_id,
                                       const std::string& audience_key,
                                       const std::string& context_kind);
    size_t watched() const;

  private:
    struct Seen {
        std::string kind;
        bool warned = false;
    };
    size_t max_;
    mutable std::mutex mu_;
    std::map<std::pair<std::string, std::string>, Seen> seen_;  // Protected by mu_
};

// Turns rejected events into warnings an operator sees: the first rejection of a
// (destination, reason) logs at once with its messageId and detail as an example; the
// next ones within `interval_ms` are only counted, and the first one after the interval
// logs again, saying how many came since. Remembers at most `max_keys` pairs (reasons are
// a fixed set; destinations come from the config). Thread-safe.
class RejectionLog {
  public:
    explicit RejectionLog(int64_t interval_ms = 60000, size_t max_keys = 1000)
        : interval_ms_(interval_ms), max_(max_keys) {}
    std::optional<std::string> Observe(const std::string& destination, const std::string& reason,
                                       const std::string& message_id, const std::string& detail,
                                       int64_t now_ms);

  private:
    struct Spell {
        int64_t logged_ms = 0;
        uint64_t since = 0;  // rejections not logged since logged_ms
    };
    int64_t interval_ms_;
    size_t max_;
    std::mutex mu_;
    std::map<std::pair<std::string, std::string>, Spell> spells_;  // Protected by mu_
};

// {"stored","not_applicable","not_applicable_reasons":{reason: count},
// "rejected":[{"index","messageId","reason","detail"}]}
std::string SummaryJson(const Summary& summary);

// Counters since start, exported by GET /metrics.
struct Counters {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> events_received{0};
    std::atomic<uint64_t> stored{0};
    std::atomic<uint64_t> not_applicable{0};
    std::atomic<uint64_t> rejected{0};

    void AddRejected(const std::string& reason);
    std::map<std::string, uint64_t> RejectedByReason() const;
    void AddNotApplicable(const std::map<std::string, size_t>& by_reason);
    std::map<std::string, uint64_t> NotApplicableByReason() const;

  private:
    mutable std::mutex mu_;
    std::map<std::string, uint64_t> rejected_by_reason_;        // Protected by mu_
    std::map<std::string, uint64_t> not_applicable_by_reason_;  // Protected by mu_
};

// The ingest path without HTTP: authenticate, parse, map, store, summarise.
// Thread-safe: called concurrently from every HTTP worker; appends are serialised by
// the inbox writer, audience registrations by the database's writer.
class Service {
  public:
    // `admission`: the backlog gate in front of the inbox (none: every request is
    // admitted).
    Service(std::shared_ptr<const config::Config> config, store::Writer& writer,
            store::InboxWriter& inbox, AudienceRegistry& audiences, Admission* admission = nullptr);

    // A reloaded config (SIGHUP): requests already being handled keep the one they began
    // with. Thread-safe.
    void SetConfig(std::shared_ptr<const config::Config> config);

    // Returns the JSON summary of a request whose membership events are all appended to
    // the inbox and committed, or the error to answer with (nothing stored).
    // `destination`, when given, is set to the caller's destination id once it is
    // authenticated (for the access log: a /v1/batch request names it by its write key).
    Result<std::string> Ingest(const Request& request, std::string* destination = nullptr);

    // The ingest path after authentication and parsing: maps every item and appends
    // the membership changes to the inbox in one job (shared by HTTP ingest and replays).
    // `index_base` offsets the reported indexes. Logs one warning per (destination,
    // audience) whose events resolve to two context kinds (see KindConflictWatch).
    // With the backlog past its limits, a live request (kRefuse) is answered 503
    // overloaded with nothing stored; a replay (kWait) waits until it is admitted.
    enum class WhenOverloaded { kRefuse, kWait };
    Result<Summary> Apply(const config::Destination& destination, std::vector<segment::Item>& items,
                          size_t index_base = 0,
                          WhenOverloaded when_overloaded = WhenOverloaded::kRefuse);

    // Webhook Audiences createAudienceUrl / getAudienceUrl. `key` is the ?key= value:
    // the destination's audience_url_key, or, when it has none, one of its write keys.
    // Never the shared secret (a URL ends up in proxy logs; the secret signs events).
    Result<std::string> CreateAudience(const std::string& destination_id,
                                       const std::optional<std::string>& key,
                                       std::string_view body);
    Result<std::string> LookupAudience(const std::string& destination_id,
                                       const std::optional<std::string>& key,
                                       std::string_view body);

    const Counters& counters() const { return counters_; }

  private:
    // The 503 overloaded a request gets before its body is parsed, when the backlog is
    // past its bounds already (nullopt: go on; Apply decides with the request's events).
    std::optional<Error> RefuseEarly(const config::Limits& limits);
    // The destination one of whose write keys equals `key` (constant-time compares).
    std::shared_ptr<const config::Config> Snapshot() const;
    const config::Destination* DestinationForWriteKey(const config::Config& config,
                                                      std::string_view key) const;
    Result<const config::Destination*> AuthenticateUrlKey(
        const config::Config& config, const std::string& destination_id,
        const std::optional<std::string>& key) const;

    mutable std::mutex config_mu_;  // guards config_
    std::shared_ptr<const config::Config> config_;
    store::Writer& writer_;
    store::InboxWriter& inbox_;
    AudienceRegistry& audiences_;
    Admission* admission_;
    Counters counters_;
    KindConflictWatch kind_watch_;
    RejectionLog rejection_log_;
};

}  // namespace audsync::ingest
