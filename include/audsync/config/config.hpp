// Configuration of audsync: the JSON config file, its defaults and its validation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/common/log.hpp"
#include "audsync/common/result.hpp"

namespace audsync::config {

// The five context-key priorities of Segment's LaunchDarkly Audiences destination.
enum class ContextKeyChoice {
    kUserIdOnly,
    kUserIdThenEmail,
    kUserIdThenAnonymousId,
    kUserIdThenEmailThenAnonymousId,
    kEmailOnly,
};
std::optional<ContextKeyChoice> ParseContextKeyChoice(std::string_view name);
std::string_view ToString(ContextKeyChoice choice);

// True for a LaunchDarkly context kind: [A-Za-z0-9._-]{1,256}, not "kind" nor "multi".
bool IsValidContextKind(std::string_view kind);

struct Limits {
    size_t tracking_max_request_bytes = 512000;  // Segment's 500 KB
    size_t tracking_max_events = 2500;
    size_t webhook_max_request_bytes = 4 * 1024 * 1024;
    size_t webhook_max_events = 4000;
    size_t max_event_bytes = 32768;  // Segment's 32 KB per event
    int max_json_depth = 64;
    size_t max_id_bytes = 256;           // messageId, audience id and key, destination id
    size_t max_key_bytes = 1024;         // context keys
    size_t max_pending_events = 100000;  // events queued for the writer at once
    size_t max_buffered_body_bytes = 128 * 1024 * 1024;  // request bodies held at once
    size_t max_connections = 0;                          // 0: the file descriptor limit less 64
    // An event dated later than this after its receipt is rejected (invalid_timestamp):
    // otherwise it would decide its member's state against every genuine event.
    int64_t max_future_skew_seconds = 86400;
    // Admission control: beyond either bound (events stored and not yet applied, or the
    // age of the oldest of them) ingest answers 503 overloaded with a Retry-After and
    // stores nothing of the request, instead of acknowledging what cannot be applied in
    // time. An operator's `replay events` waits instead.
    size_t max_backlog_events = 1000000;
    int64_t max_backlog_seconds = 120;
    // Each SQLite file's write-ahead log is checkpointed and truncated before it passes
    // this (a warning is logged when it does all the same).
    size_t max_wal_bytes = 256 * 1024 * 1024;
};

// Secrets shorter than this are refused (admin_token, webhook_token, audience_url_key)
// or warned about (shared_secret, whose value Segment's UI may impose).
inline constexpr size_t kMinSecretLength = 16;
// limits.max_future_skew_seconds: from a minute to 366 days.
inline constexpr size_t kMinFutureSkewSeconds = 60;
inline constexpr size_t kMaxFutureSkewSeconds = 366 * 86400;
// limits.max_backlog_events: at least two of the largest requests (a webhook batch of
// 4,000 events is admitted into an empty backlog whatever the bound), at most 100 M.
inline constexpr size_t kMinBacklogEvents = 10000;
inline constexpr size_t kMaxBacklogEvents = 100000000;
// limits.max_backlog_seconds: from 5 s to a day.
inline constexpr size_t kMinBacklogSeconds = 5;
inline constexpr size_t kMaxBacklogSeconds = 86400;
// limits.max_wal_bytes: from 16 MiB to 64 GiB.
inline constexpr size_t kMinWalBytes = size_t{16} * 1024 * 1024;
inline constexpr size_t kMaxWalBytes = size_t{64} * 1024 * 1024 * 1024;

// How a webhook batch (an array of several events) is authenticated when the
// destination has a shared_secret. Segment signs only the first element of a batch.
enum class WebhookSignature {
    // "require_header" (the default; "require_token" is its older name): X-Signature
    // alone covers a single event or a one-element array; a larger array also needs a
    // header credential: the webhook_token (Authorization: Bearer, or X-Audsync-Token)
    // or a write key (Basic auth).
    kRequireHeader,
    // X-Signature of the first element admits the whole array (Segment's own rule):
    // the rest of the array is unauthenticated. An explicit opt-in, warned at start.
    kFirstElement,
};
std::optional<WebhookSignature> ParseWebhookSignature(std::string_view name);
std::string_view ToString(WebhookSignature mode);

// One platform account/environment a destination's audiences are pushed to. The
// fields a platform does not use stay empty. Secrets: service_token, environment_key,
// api_password, api_token (empty when secrets are not resolved).
struct Target {
    std::string id = "launchdarkly";  // unique within its destination; names its state
    std::string platform =
        "launchdarkly";  // launchdarkly | flagsmith | configcat | unleash | statsig
    // The platform's API base, without a trailing '/':
    //   launchdarkly https://app.launchdarkly.com, flagsmith https://edge.api.flagsmith.com
    //   (requests go to <api_base>/api/v1/...), configcat https://api.configcat.com,
    //   unleash: required (requests go to <api_base>/api/admin/...), statsig
    //   https://statsigapi.net (requests go to <api_base>/console/v1/...).
    std::string api_base;
    // launchdarkly
    std::string service_token;
    std::string client_side_id;
    std::string clientsdk_base = "https://clientsdk.launchdarkly.com";
    // flagsmith: the server-side environment key (ser.…), the trait name's prefix, and
    // which bulk call: "edge" (PUT /bulk-identities/, Edge API) or "core"
    // (PUT /traits/bulk/, Core API and self-hosted). Default: edge when api_base is
    // Flagsmith's Edge host, else core.
    std::string environment_key;
    std::string trait_prefix;
    std::string flagsmith_api;
    // configcat: Public Management API credentials and the product owning the segments.
    std::string api_user;
    std::string api_password;
    std::string product_id;
    // Full-list platforms: the most members one list may hold (configcat: the plan's
    // limit on comparison values, 100 Free, 1,000 Pro, 15,000 Smart and up; unleash: the
    // server's segmentValuesLimit, 1,000 by default). An audience over it is refused
    // visibly, never truncated.
    int max_list_items = 1000;
    // unleash: the admin API token (sent raw in Authorization), the context field the
    // segment's constraint names, and the project the segments belong to (empty: global
    // segments). statsig: the Console API key (console-…) is api_token too, and id_type the
    // ID-list segments' ID type.
    std::string api_token;
    std::string context_name;
    std::string project;
    std::string id_type;
    // Delivery, defaulting to the destination's values (max_batch: the platform's
    // largest batch when the destination does not set one).
    int max_batch = 0;
    int max_in_flight = 4;
    int request_timeout_ms = 10000;
    int retry_base_ms = 500;
    int retry_max_ms = 300000;
    int auth_retry_ms = 120000;
};

// The platforms a target may name.
bool IsKnownPlatform(std::string_view platform);

// Segment's Tracking API limits for one /v1/batch request and one event.
inline constexpr size_t kSegmentBatchMaxBytes = 500 * 1000;
inline constexpr size_t kSegmentEventMaxBytes = 32 * 1000;
inline constexpr size_t kSegmentBatchMaxEvents = 2500;

// Reporting every synced change back into Segment: after a target acknowledges a
// membership change, one "Audience Membership Synced" track event per (profile,
// audience, target) goes to Segment's Tracking API (/v1/batch) with this write key.
struct SegmentReport {
    bool enabled = false;
    std::string write_key;  // secret; empty when secrets are not resolved
    std::string api_base = "https://api.segment.io";
    int max_batch = 100;  // events per request (Segment: at most 2,500 and 500 KB)
    int request_timeout_ms = 10000;
    int retry_base_ms = 1000;
    int retry_max_ms = 300000;
};

struct Destination;
// The LaunchDarkly target the flat fields of `d` stand for (id "launchdarkly"), with
// the destination's delivery settings: what LoadText makes of a destination without
// `targets`, for configs built in code.
Target ImplicitTarget(const Destination& d);

struct Destination {
    std::string id;
    std::string platform = "launchdarkly";
    std::string service_token;
    std::string client_side_id;
    std::string api_base = "https://app.launchdarkly.com";
    std::string clientsdk_base = "https://clientsdk.launchdarkly.com";
    std::string context_kind = "user";
    ContextKeyChoice context_key = ContextKeyChoice::kUserIdOnly;
    std::vector<std::string> write_keys;
    std::string shared_secret;  // empty: no X-Signature check
    // The value of the X-Audsync-Token header the operator adds in Segment's mapping
    // headers: authenticates a webhook request on its own (any body). Empty: none.
    std::string webhook_token;
    // The ?key= of the Webhook Audiences URLs. Empty: those URLs fall back to the write
    // keys (warned at start); the shared secret is never accepted there.
    std::string audience_url_key;
    // The next value of each, accepted beside it while a rotation is under way (empty:
    // none); each needs its current field.
    std::string shared_secret_next;
    std::string webhook_token_next;
    std::string audience_url_key_next;
    WebhookSignature webhook_signature = WebhookSignature::kRequireHeader;
    // How many write keys and whether a shared secret are configured: known even when the
    // secrets themselves were not resolved (LoadOptions), for redacted views.
    size_t write_key_count = 0;
    bool has_shared_secret = false;
    bool has_webhook_token = false;
    bool has_audience_url_key = false;
    bool has_shared_secret_next = false;
    bool has_webhook_token_next = false;
    bool has_audience_url_key_next = false;
    int max_batch = 1000;
    // Sync: requests in flight at once, per-request timeout, retry schedule.
    int max_in_flight = 4;
    int request_timeout_ms = 10000;
    int retry_base_ms = 500;     // first backoff after a 5xx, 409 or transport error
    int retry_max_ms = 300000;   // backoff cap
    int auth_retry_ms = 120000;  // retry period while the platform refuses the token
    // Per-audience context kind overrides, keyed by audience id (aud_...) or key.
    std::map<std::string, std::string> audience_context_kinds;
    // Where its audiences are pushed. The flat LaunchDarkly fields above are shorthand
    // for one LaunchDarkly target with the id "launchdarkly" (the id that a database
    // made before targets existed holds its delivery state under).
    std::vector<Target> targets;
    // Optional: report every acknowledged change to Segment (report.enabled).
    SegmentReport report;

    const Target* FindTarget(std::string_view target_id) const;
};

// The level names of the log_level field: error, warn, info, debug.
std::optional<log::Level> ParseLogLevel(std::string_view name);
std::string_view ToString(log::Level level);

struct Config {
    std::string listen_host = "127.0.0.1";
    uint16_t listen_port = 8080;
    // Where the admin API and /metrics are served instead, when set: the public listener
    // then serves ingest and health only (keep this one on loopback).
    std::optional<std::pair<std::string, uint16_t>> admin_listen;
    // Relative paths in a config file are resolved against the file's directory.
    std::string database = "audsync.db";
    log::Level log_level = log::Level::kInfo;
    log::Format log_format = log::Format::kText;  // "text" | "json"
    // One info line per HTTP request (method, route template, status, duration, bytes,
    // destination); never a query string, header or body.
    bool access_log = true;
    std::string admin_token;       // empty: the admin API answers 401 to everything
    std::string admin_token_next;  // accepted beside admin_token during a rotation
    bool metrics_public = false;   // serve /metrics without the admin token
    // Failed admin authentications a peer may make in a minute before each further
    // refusal is answered later (doubling from 100 ms up to 5 s).
    int admin_auth_free_failures = 10;
    int http_threads = 8;
    int keepalive_timeout_ms = 5000;
    int header_timeout_ms = 10000;
    int body_timeout_ms = 30000;
    int dedupe_window_hours = 168;  // 7 days
    // How long an event's raw JSON stays in the inbox after it is applied (0: it goes
    // once applied). The member lookup shows the deciding event's payload while kept.
    int raw_retention_hours = 24;
    // /readyz answers 503 while the oldest event not yet applied is older than this.
    int ready_max_backlog_seconds = 60;
    int sync_linger_ms = 50;  // wait after a commit so bursts share a push
    int sync_workers = 4;     // threads pushing to platforms
    Limits limits;
    std::vector<Destination> destinations;
    // False when loaded with LoadOptions::resolve_secrets = false: every secret field
    // (admin_token, service_token, write_keys, shared_secret, webhook_token,
    // audience_url_key) is then empty, and such
    // a Config must not serve or push; it is for commands that only read the database.
    bool secrets_resolved = true;

    const Destination* FindDestination(std::string_view id) const;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment.
EnvLookup ProcessEnv();

struct LoadOptions {
    // false: secret fields are not expanded (a `${VAR}` there needs no variable) and
    // are left empty; every other field is expanded and validated as usual, and the
    // Config says secrets_resolved = false.
    bool resolve_secrets = true;
};

// Parses a config document. `${VAR}` in any string is replaced from `env` (`$$` is a
// literal `$`). Every error names the field, e.g. "destinations[0].client_side_id:
// required"; a JSON syntax error names its line and column. Unknown fields are errors,
// with the nearest known name suggested, so typos do not pass silently. Paths are kept
// as written.
Result<Config> LoadText(std::string_view text, const EnvLookup& env,
                        const LoadOptions& options = {});
// As LoadText, resolving relative paths (`database`) against the directory of `path`.
Result<Config> LoadFile(const std::string& path, const EnvLookup& env,
                        const LoadOptions& options = {});

// What an operator should hear about a valid config at start, one line each, naming
// the field and never a secret's value: a shared_secret shorter than kMinSecretLength,
// webhook_signature "first_element" (batches beyond their first element are then
// unauthenticated), and Webhook Audiences URLs that fall back to write keys for want of
// an audience_url_key. Pure; the runtime logs each line as a warning.
std::vector<std::string> StartupWarnings(const Config& config);

}  // namespace audsync::config
