// The ingest path: authentication, mapping and storing of Segment events.
#include "audsync/ingest/ingest.hpp"

#include <rapidjson/document.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/mapping/mapping.hpp"
#include "audsync/segment/body.hpp"

namespace audsync::ingest {
namespace {

Error Unauthorized(const std::string& message) {
    return MakeError(ErrorCode::kUnauthorized, "unauthorized", message);
}

// The token of "Bearer <token>" (the scheme in any case), if that is the header's scheme.
std::optional<std::string_view> BearerToken(std::string_view authorization) {
    constexpr std::string_view kScheme = "bearer ";
    if (authorization.size() <= kScheme.size()) return std::nullopt;
    for (size_t i = 0; i < kScheme.size(); ++i) {
        const char c = authorization[i];
        if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != kScheme[i]) {
            return std::nullopt;
        }
    }
    return authorization.substr(kScheme.size());
}

Error UnknownDestination(const std::string& id) {
    (void)id;  // never echoed: it is user input of any length
    return MakeError(ErrorCode::kNotFound, "unknown_destination", "no destination has that id");
}

std::string_view TypeOf(Route route) {
    switch (route) {
        case Route::kIdentify:
            return "identify";
        case Route::kTrack:
            return "track";
        default:
            return "";
    }
}

}  // namespace

std::string SummaryJson(const Summary& s) {
    std::string out = "{\"stored\":" + std::to_string(s.stored) +
                      ",\"not_applicable\":" + std::to_string(s.not_applicable) +
                      ",\"not_applicable_reasons\":{";
    bool first = true;
    for (const auto& [reason, n] : s.not_applicable_reasons) {
        if (!first) out += ',';
        first = false;
        json::AppendQuoted(out, reason);
        out += ':' + std::to_string(n);
    }
    out += "},\"rejected\":[";
    for (size_t i = 0; i < s.rejected.size(); ++i) {
        const Rejected& r = s.rejected[i];
        if (i > 0) out += ',';
        out += "{\"index\":" + std::to_string(r.index) + ",\"messageId\":";
        json::AppendQuoted(out, r.message_id);
        out += ",\"reason\":";
        json::AppendQuoted(out, r.reason);
        out += ",\"detail\":";
        json::AppendQuoted(out, r.detail);
        out += '}';
    }
    out += "]}";
    return out;
}

void Counters::AddRejected(const std::string& reason) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu_);
    ++rejected_by_reason_[reason];
}

std::map<std::string, uint64_t> Counters::RejectedByReason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_by_reason_;
}

void Counters::AddNotApplicable(const std::map<std::string, size_t>& by_reason) {
    if (by_reason.empty()) return;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [reason, n] : by_reason) not_applicable_by_reason_[reason] += n;
}

std::map<std::string, uint64_t> Counters::NotApplicableByReason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return not_applicable_by_reason_;
}

std::optional<std::string> RejectionLog::Observe(const std::string& destination,
                                                 const std::string& reason,
                                                 const std::string& message_id,
                                                 const std::string& detail, int64_t now_ms) {
    uint64_t more = 0;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto key = std::make_pair(destination, reason);
        auto it = spells_.find(key);
        if (it == spells_.end()) {
            if (spells_.size() >= max_) return std::nullopt;
            spells_.emplace(std::move(key), Spell{now_ms, 0});
        } else if (now_ms - it->second.logged_ms < interval_ms_) {
            ++it->second.since;
            return std::nullopt;
        } else {
            more = it->second.since;
            it->second = Spell{now_ms, 0};
        }
    }
    // A messageId and a detail come from the sender: quoted, and clipped, so that the
    // warning stays one line of bounded length.
    std::string out = "ingest rejected an event of destination ";
    json::AppendQuoted(out, destination);
    out += " (" + reason + "): messageId ";
    json::AppendQuoted(out, log::Clip(message_id, 256));
    out += ", ";
    json::AppendQuoted(out, log::Clip(detail, 512));
    if (more > 0) {
        out += "; " + std::to_string(more) + " more " + reason + " since the last such line";
    }
    out +=
        " (answered 200 with the item in \"rejected\"; counted in "
        "audsync_events_rejected_total{reason=\"" +
        reason +
        "\"}; at most one such line a "
        "minute per destination and reason)";
    return out;
}

std::optional<std::string> KindConflictWatch::Observe(const std::string& destination,
                                                      const std::string& audience_id,
                                                      const std::string& audience_key,
                                                      const std::string& context_kind) {
    std::string first_kind;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto key = std::make_pair(destination, audience_id);
        auto it = seen_.find(key);
        if (it == seen_.end()) {
            if (seen_.size() < max_) seen_.emplace(std::move(key), Seen{context_kind, false});
            return std::nullopt;
        }
        if (it->second.warned || it->second.kind == context_kind) return std::nullopt;
        it->second.warned = true;
        first_kind = it->second.kind;
    }
    // Ids and kinds were validated by the mapping; quoting still keeps one line.
    std::string out = "destination ";
    json::AppendQuoted(out, destination);
    out += ": audience ";
    json::AppendQuoted(out, audience_id);
    out += " (";
    json::AppendQuoted(out, audience_key);
    out += ") arrived with two context kinds, ";
    json::AppendQuoted(out, first_kind);
    out += " and then ";
    json::AppendQuoted(out, context_kind);
    out +=
        " (e.g. one Webhook Audiences event carried external_audience_id and another did "
        "not); a LaunchDarkly segment holds one kind, so its members are split. Fix: set "
        "destinations[].audience_context_kinds in the config, e.g. {";
    json::AppendQuoted(out, audience_id);
    out += ": ";
    json::AppendQuoted(out, first_kind);
    out += "}";
    return out;
}

size_t KindConflictWatch::watched() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.size();
}

void AudienceRegistry::Put(const std::string& destination, const std::string& external_id,
                           std::optional<std::string> context_kind) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    kinds_[{destination, external_id}] = std::move(context_kind);
}

bool AudienceRegistry::Contains(const std::string& destination,
                                const std::string& external_id) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return kinds_.count({destination, external_id}) > 0;
}

std::optional<std::string> AudienceRegistry::ContextKind(const std::string& destination,
                                                         const std::string& external_id) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = kinds_.find({destination, external_id});
    return it == kinds_.end() ? std::nullopt : it->second;
}

Service::Service(std::shared_ptr<const config::Config> config, store::Writer& writer,
                 store::InboxWriter& inbox, AudienceRegistry& audiences, Admission* admission)
    : config_(std::move(config)),
      writer_(writer),
      inbox_(inbox),
      audiences_(audiences),
      admission_(admission) {}

void Service::SetConfig(std::shared_ptr<const config::Config> config) {
    std::lock_guard<std::mutex> lock(config_mu_);
    config_ = std::move(config);
}

std::shared_ptr<const config::Config> Service::Snapshot() const {
    std::lock_guard<std::mutex> lock(config_mu_);
    return config_;
}

const config::Destination* Service::DestinationForWriteKey(const config::Config& config,
                                                           std::string_view key) const {
    const config::Destination* found = nullptr;
    // Every key is compared, so the time taken does not tell which one matched.
    for (const auto& d : config.destinations) {
        for (const auto& k : d.write_keys) {
            if (crypto::SecretEquals(k, key) && found == nullptr) found = &d;
        }
    }
    return found;
}

std::optional<Error> Service::RefuseEarly(const config::Limits& limits) {
    // Past the backlog's bounds before this request's events are even counted: refused
    // before its body is parsed. Senders that retry at once (a load generator, a client
    // ignoring Retry-After) then cost little of the CPU the applier needs to catch up.
    // Only once the request is authenticated: a stranger learns nothing of the load.
    if (admission_ == nullptr) return std::nullopt;
    const BacklogLimits bounds{static_cast<int64_t>(limits.max_backlog_events),
                               limits.max_backlog_seconds};
    Status admitted = admission_->Admit(0, bounds);  // admitted: nothing in flight to undo
    if (admitted) return std::nullopt;
    return admitted.error();
}

Result<std::string> Service::Ingest(const Request& request, std::string* destination_id) {
    // One config for the whole request, however a reload swaps it meanwhile.
    const auto snapshot = Snapshot();
    const config::Config& config = *snapshot;
    counters_.requests.fetch_add(1, std::memory_order_relaxed);
    const config::Limits& limits = config.limits;
    const config::Destination* destination = nullptr;
    std::optional<std::string> basic_user;
    if (request.authorization) basic_user = segment::BasicAuthUser(*request.authorization);

    Result<segment::ParsedBody> parsed = segment::ParsedBody{};
    if (request.route == Route::kWebhook) {
        destination = config.FindDestination(request.destination_id);
        if (destination == nullptr) return UnknownDestination(request.destination_id);
        // Size first: an oversize body is refused before any work on it.
        if (request.body.size() > limits.webhook_max_request_bytes) {
            return segment::ParseWebhookBody(request.body, limits).error();
        }
        // A write key or the webhook token covers the whole body; a signature covers
        // only what Segment signed: the body, or the first element of an array.
        bool whole_body = false;
        // The webhook_token (or, during a rotation, webhook_token_next) as X-Audsync-Token,
        // or as a bearer token: Segment's webhook settings add either header.
        for (const std::string* token :
             {&destination->webhook_token, &destination->webhook_token_next}) {
            if (token->empty() || whole_body) continue;
            if (request.token) whole_body = crypto::SecretEquals(*token, *request.token);
            if (!whole_body && request.authorization) {
                if (auto bearer = BearerToken(*request.authorization)) {
                    whole_body = crypto::SecretEquals(*token, *bearer);
                }
            }
        }
        if (!whole_body && basic_user) {
            whole_body = DestinationForWriteKey(config, *basic_user) == destination;
        }
        bool signed_first = false;
        for (const std::string* secret :
             {&destination->shared_secret, &destination->shared_secret_next}) {
            if (whole_body || signed_first || secret->empty() || !request.signature) continue;
            signed_first = segment::VerifySignature(request.body, *secret, *request.signature);
        }
        if (!whole_body && !signed_first) {
            return Unauthorized(destination->shared_secret.empty()
                                    ? "a valid write key (Basic auth) or webhook_token "
                                      "(Authorization: Bearer, or X-Audsync-Token) is required"
                                    : "a valid X-Signature, webhook_token (Authorization: "
                                      "Bearer, or X-Audsync-Token) or write key is required");
        }
        if (destination_id != nullptr) *destination_id = destination->id;
        if (auto refused = RefuseEarly(limits)) return *refused;
        parsed = segment::ParseWebhookBody(request.body, limits);
        if (!parsed) return parsed.error();
        if (!whole_body && parsed.value().items.size() > 1 &&
            destination->webhook_signature != config::WebhookSignature::kFirstElement) {
            // Segment signs only the first element: the others could be anyone's.
            return Unauthorized(
                "X-Signature covers only the first event of a batch: a batch of several "
                "events also needs the destination's webhook_token (Authorization: Bearer, "
                "or X-Audsync-Token) or a write key");
        }
    } else {
        if (basic_user) {
            destination = DestinationForWriteKey(config, *basic_user);
            if (destination == nullptr) return Unauthorized("the write key is not valid");
            if (destination_id != nullptr) *destination_id = destination->id;
            if (auto refused = RefuseEarly(limits)) return *refused;
        }
        parsed = segment::ParseTrackingBody(request.body, TypeOf(request.route), limits);
        if (!parsed) return parsed.error();
        if (destination == nullptr) {
            if (!parsed.value().write_key) {
                return Unauthorized("a write key is required (Basic auth or writeKey)");
            }
            destination = DestinationForWriteKey(config, *parsed.value().write_key);
            if (destination == nullptr) return Unauthorized("the write key is not valid");
            if (destination_id != nullptr) *destination_id = destination->id;
        }
    }

    auto summary = Apply(*destination, parsed.value().items);
    if (!summary) return summary.error();
    return SummaryJson(summary.value());
}

Result<Summary> Service::Apply(const config::Destination& destination_ref,
                               std::vector<segment::Item>& items, size_t index_base,
                               WhenOverloaded when_overloaded) {
    const auto snapshot = Snapshot();
    const config::Config& config = *snapshot;
    const config::Limits& limits = config.limits;
    const config::Destination* destination = &destination_ref;
    const int64_t received_ms = text::NowMs();
    const mapping::Rules rules = mapping::RulesFor(*destination, limits);
    const std::string& dest_id = destination->id;
    mapping::AudienceKindLookup kind_lookup = [&](const std::string& external_id) {
        return audiences_.ContextKind(dest_id, external_id);
    };

    struct Change {
        size_t index;
        segment::Event* event;
        mapping::MembershipChange change;
    };
    std::vector<Change> changes;
    Summary summary;
    std::vector<Rejected>& rejected = summary.rejected;
    size_t not_applicable = 0;
    changes.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        auto& item = items[i];
        if (!item.event) {
            rejected.push_back(
                {index_base + i, item.message_id, item.error.reason, item.error.detail});
            continue;
        }
        mapping::Outcome outcome = mapping::Resolve(*item.event, rules, received_ms, kind_lookup);
        if (auto* change = std::get_if<mapping::MembershipChange>(&outcome)) {
            // Consecutive events of one audience and kind (the usual batch) are
            // checked once.
            if (changes.empty() || changes.back().change.audience_id != change->audience_id ||
                changes.back().change.context_kind != change->context_kind) {
                if (auto warning = kind_watch_.Observe(
                        dest_id, change->audience_id, change->audience_key, change->context_kind)) {
                    log::Warn(*warning);
                }
            }
            changes.push_back({i, &*item.event, std::move(*change)});
        } else if (auto* na = std::get_if<mapping::NotApplicable>(&outcome)) {
            ++not_applicable;
            ++summary.not_applicable_reasons[na->reason];
        } else {
            const auto& r = std::get<mapping::Rejection>(outcome);
            rejected.push_back({index_base + i, item.message_id, r.reason, r.detail});
        }
    }

    if (!changes.empty()) {
        std::vector<store::InboxEntry> entries(changes.size());
        for (size_t i = 0; i < changes.size(); ++i) {
            store::InboxEntry& e = entries[i];
            mapping::MembershipChange& c = changes[i].change;
            e.destination = dest_id;
            e.message_id = changes[i].event->message_id;
            e.received_ms = received_ms;
            e.audience_id = std::move(c.audience_id);
            e.audience_key = std::move(c.audience_key);
            e.context_kind = std::move(c.context_kind);
            e.context_key = std::move(c.context_key);
            e.included = c.included;
            e.event_ms = c.event_time_ms;
            // Moved, not copied: the request's events are not read again, and a copy
            // held each raw event twice while the request waited for its commit.
            e.raw = std::move(changes[i].event->raw);
        }
        if (admission_ != nullptr) {
            const BacklogLimits bounds{static_cast<int64_t>(limits.max_backlog_events),
                                       limits.max_backlog_seconds};
            bool waited = false;
            for (;;) {
                Status admitted = admission_->Admit(entries.size(), bounds);
                if (admitted) break;
                if (when_overloaded == WhenOverloaded::kRefuse) {
                    // Nothing of the request is stored, and its items count nowhere: the
                    // sender retries the whole request.
                    return admitted.error();
                }
                if (!waited) {
                    waited = true;
                    admission_->CountWait();
                    log::Info("replay: waiting for the applier (" + admitted.error().message + ")");
                }
                // An operator's replay is never refused: it waits for room, looking again
                // at the rate the backlog is read.
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
        int64_t last_seq = 0;
        Status stored = inbox_.Run(
            [&](store::InboxStore& inbox) {
                for (const auto& e : entries) last_seq = inbox.Append(e);
            },
            entries.size());
        if (admission_ != nullptr) admission_->Done(entries.size(), stored ? entries.size() : 0);
        if (!stored) return stored.error();
        summary.stored = entries.size();
        summary.last_seq = last_seq;
    }
    summary.not_applicable = not_applicable;
    counters_.events_received.fetch_add(items.size(), std::memory_order_relaxed);
    counters_.stored.fetch_add(summary.stored, std::memory_order_relaxed);
    counters_.not_applicable.fetch_add(not_applicable, std::memory_order_relaxed);
    counters_.AddNotApplicable(summary.not_applicable_reasons);
    for (const auto& r : rejected) {
        counters_.AddRejected(r.reason);
        if (auto line =
                rejection_log_.Observe(dest_id, r.reason, r.message_id, r.detail, received_ms)) {
            log::Warn(*line);
        }
    }
    return summary;
}

Result<const config::Destination*> Service::AuthenticateUrlKey(
    const config::Config& config, const std::string& destination_id,
    const std::optional<std::string>& key) const {
    const config::Destination* destination = config.FindDestination(destination_id);
    if (destination == nullptr) return UnknownDestination(destination_id);
    const bool url_key = !destination->audience_url_key.empty();
    if (!key || key->empty()) {
        return Unauthorized(url_key ? "the URL needs ?key=<audience_url_key>: Segment sends "
                                      "these calls without any other credential"
                                    : "the URL needs ?key=<write key> (or set an "
                                      "audience_url_key): Segment sends these calls without "
                                      "any other credential");
    }
    // The shared secret is never accepted: it would sit in every proxy log, and with
    // it anyone can sign events. Without a dedicated key, write keys still work so that
    // URLs set up before audience_url_key existed keep working (warned at start).
    bool ok = url_key ? crypto::SecretEquals(destination->audience_url_key, *key) ||
                            (!destination->audience_url_key_next.empty() &&
                             crypto::SecretEquals(destination->audience_url_key_next, *key))
                      : DestinationForWriteKey(config, *key) == destination;
    if (!ok) return Unauthorized("the key in the URL is not valid for this destination");
    return destination;
}

Result<std::string> Service::CreateAudience(const std::string& destination_id,
                                            const std::optional<std::string>& key,
                                            std::string_view body) {
    const auto snapshot = Snapshot();
    const config::Config& config = *snapshot;
    auto auth = AuthenticateUrlKey(config, destination_id, key);
    if (!auth) return auth.error();
    const config::Destination* destination = auth.value();
    if (body.size() > config.limits.max_event_bytes) {
        return MakeError(ErrorCode::kPayloadTooLarge, "payload_too_large",
                         "body is over the limit of " +
                             std::to_string(config.limits.max_event_bytes) + " bytes");
    }
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(body, doc, config.limits.max_json_depth));
    if (!doc.IsObject()) {
        return MakeError(ErrorCode::kInvalidBody, "invalid_body", "body must be a JSON object");
    }
    bool bad = false;
    auto name = json::FindString(doc, "audienceName", &bad);
    if (bad || !name || name->empty() || name->size() > config.limits.max_id_bytes) {
        return MakeError(ErrorCode::kInvalidBody, "invalid_body",
                         "audienceName must be a non-empty string of at most " +
                             std::to_string(config.limits.max_id_bytes) + " bytes");
    }
    auto kind = json::FindString(doc, "contextKind", &bad);
    if (bad || (kind && !config::IsValidContextKind(*kind))) {
        return MakeError(ErrorCode::kInvalidBody, "invalid_body",
                         "contextKind must be a valid LaunchDarkly context kind");
    }
    doc.RemoveMember("audienceName");
    std::string extras = json::Serialize(doc);
    std::string external_id;
    const int64_t now = text::NowMs();
    Status stored = writer_.Run(
        [&](store::WriteStore& store) {
            store.EnsureDestination(destination->id, now);
            external_id = store.UpsertAudience(destination->id, *name, extras, kind, now);
        },
        1);
    if (!stored) return stored.error();
    audiences_.Put(destination->id, external_id, kind);
    std::string out = "{\"externalId\":";
    json::AppendQuoted(out, external_id);
    out += '}';
    return out;
}

Result<std::string> Service::LookupAudience(const std::string& destination_id,
                                            const std::optional<std::string>& key,
                                            std::string_view body) {
    const auto snapshot = Snapshot();
    const config::Config& config = *snapshot;
    auto auth = AuthenticateUrlKey(config, destination_id, key);
    if (!auth) return auth.error();
    if (body.size() > config.limits.max_event_bytes) {
        return MakeError(ErrorCode::kPayloadTooLarge, "payload_too_large",
                         "body is over the limit of " +
                             std::to_string(config.limits.max_event_bytes) + " bytes");
    }
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(body, doc, config.limits.max_json_depth));
    bool bad = false;
    auto external_id = doc.IsObject() ? json::FindString(doc, "externalId", &bad) : std::nullopt;
    if (!doc.IsObject() || bad || !external_id || external_id->empty()) {
        return MakeError(ErrorCode::kInvalidBody, "invalid_body",
                         "body must be an object with an externalId string");
    }
    if (!audiences_.Contains(auth.value()->id, *external_id)) {
        return MakeError(ErrorCode::kNotFound, "unknown_audience",
                         "no audience with that externalId was created at this destination");
    }
    std::string out = "{\"externalId\":";
    json::AppendQuoted(out, *external_id);
    out += '}';
    return out;
}

}  // namespace audsync::ingest
