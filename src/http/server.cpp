// The audsync HTTP API: dispatch of each route to ingest or admin, over http::Transport.
#include "audsync/http/server.hpp"

#include <cstdio>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/http/routes.hpp"
#include "audsync/http/status_page.hpp"
#include "audsync/http/transport.hpp"
#include "audsync/segment/body.hpp"

namespace audsync::http {

int StatusFor(ErrorCode code) {
    switch (code) {
        case ErrorCode::kMalformedJson:
            return 400;
        case ErrorCode::kInvalidBody:
            return 400;
        case ErrorCode::kPayloadTooLarge:
            return 413;
        case ErrorCode::kUnauthorized:
            return 401;
        case ErrorCode::kNotFound:
            return 404;
        case ErrorCode::kMethodNotAllowed:
            return 405;
        case ErrorCode::kUnavailable:
            return 503;
        case ErrorCode::kInternal:
            return 500;
    }
    return 500;
}

std::string ErrorBody(const Error& error) {
    std::string out = "{\"error\":{\"code\":";
    json::AppendQuoted(out, error.name);
    out += ",\"message\":";
    json::AppendQuoted(out, error.message);
    out += "}}";
    return out;
}

namespace {

// Failed admin authentications per peer: after admin_auth_free_failures within a minute,
// each further refusal is answered later (doubling, up to kMaxPenaltyMs), so a token
// cannot be guessed at network speed. Thread-safe; bounded to kMaxPeers entries.
class FailedAuth {
  public:
    static constexpr int64_t kFailureWindowMs = 60000;
    static constexpr int64_t kMaxPenaltyMs = 5000;
    static constexpr size_t kMaxPeers = 10000;

    // Records a failure of `peer`; returns how long to hold its answer. The first failure
    // of a window past the free ones logs a warning (one a minute per peer at most).
    int64_t Fail(const std::string& peer, int64_t now_ms, int free_failures) {
        std::lock_guard<std::mutex> lock(mu_);
        if (peers_.size() >= kMaxPeers && peers_.count(peer) == 0) peers_.clear();
        Entry& e = peers_[peer];
        if (now_ms - e.window_start > kFailureWindowMs) e = Entry{now_ms, 0};
        ++e.failures;
        if (e.failures <= free_failures) return 0;
        if (e.failures == free_failures + 1) {
            log::Warn(
                "admin API: " + std::to_string(e.failures) + " failed authentications from " +
                peer +
                " within a minute; its further refusals are answered later (100 ms "
                "doubling to 5 s): a client with a stale admin_token, or someone guessing it");
        }
        const int doublings = std::min(e.failures - free_failures - 1, 16);
        return std::min<int64_t>(kMaxPenaltyMs, int64_t{100} << doublings);
    }

  private:
    struct Entry {
        int64_t window_start = 0;
        int failures = 0;
    };
    std::mutex mu_;
    std::map<std::string, Entry> peers_;
};

struct Shared {
    mutable std::mutex config_mu;  // guards config (swapped by a reload)
    std::shared_ptr<const config::Config> config;
    ingest::Service* ingest;
    admin::Rest* admin;
    std::function<std::optional<std::string>()> ready;
    mutable FailedAuth failed_auth;

    std::shared_ptr<const config::Config> Config() const {
        std::lock_guard<std::mutex> lock(config_mu);
        return config;
    }
};

struct Answer {
    int status = 200;
    std::string body;
    std::string content_type;  // empty: application/json
    int delay_ms = 0;          // hold the answer (failed authentication)
    std::vector<std::pair<std::string, std::string>> headers = {};  // extra headers
    std::string destination = {};  // the caller's destination, for the access log
};

Answer FromError(const Error& e) {
    Answer a{StatusFor(e.code), ErrorBody(e), ""};
    if (e.retry_after_s > 0) a.headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
    return a;
}

Answer FromResult(const Result<std::string>& r) {
    if (r) return {200, r.value(), ""};
    return FromError(r.error());
}

// The raw value of the first `name` parameter of a query, if any.
std::optional<std::string> QueryRaw(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            return std::string(eq == std::string_view::npos ? std::string_view()
                                                            : pair.substr(eq + 1));
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

std::optional<std::string> QueryKey(const Request& req) {
    auto v = QueryRaw(req.Query(), "key");
    if (!v) return std::nullopt;
    auto decoded = text::PercentDecode(*v, true);
    return decoded ? decoded : std::optional<std::string>(std::string());
}

admin::Query QueryOf(const Request& req) {
    admin::Query q;
    std::string_view query = req.Query();
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        size_t eq = pair.find('=');
        if (!pair.empty()) {
            auto name = text::PercentDecode(pair.substr(0, eq), true);
            auto value = text::PercentDecode(
                eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
            if (name && value) q[*name] = *value;
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return q;
}

bool ValidAdminToken(const config::Config& c, const Request& req) {
    if (c.admin_token.empty()) return false;
    auto auth = req.Header("Authorization");
    std::string_view given = auth ? std::string_view(*auth) : std::string_view();
    bool bearer =
        given.size() > 7 && (given.substr(0, 7) == "Bearer " || given.substr(0, 7) == "bearer ");
    // The next token too, while a rotation is under way.
    return bearer && (crypto::SecretEquals(given.substr(7), c.admin_token) ||
                      (!c.admin_token_next.empty() &&
                       crypto::SecretEquals(given.substr(7), c.admin_token_next)));
}

// A caller holding the admin token or any destination's write key (Basic auth): the only
// callers told that a route or destination does not exist.
bool KnownCaller(const config::Config& c, const Request& req, RouteId id) {
    if (ValidAdminToken(c, req)) return true;
    auto auth = req.Header("Authorization");
    auto user = auth ? segment::BasicAuthUser(*auth) : std::nullopt;
    // The Webhook Audiences calls carry their key in the URL.
    if (id == RouteId::kAudienceCreate || id == RouteId::kAudienceLookup) user = QueryKey(req);
    if (!user || user->empty()) return false;
    bool found = false;
    for (const auto& d : c.destinations) {
        for (const auto& k : d.write_keys) found = crypto::SecretEquals(*user, k) || found;
        if (d.has_audience_url_key) {
            found = crypto::SecretEquals(*user, d.audience_url_key) || found;
        }
    }
    return found;
}

Error Stranger() {
    return MakeError(ErrorCode::kUnauthorized, "unauthorized",
                     "credentials are required: an admin token (Bearer) or a write key");
}

std::optional<Error> CheckAdmin(const config::Config& c, const Request& req, RouteId id) {
    if (id == RouteId::kMetrics && c.metrics_public) return std::nullopt;
    if (c.admin_token.empty()) {
        return MakeError(ErrorCode::kUnauthorized, "unauthorized",
                         "the admin API is disabled: no admin_token is configured");
    }
    if (!ValidAdminToken(c, req)) {
        return MakeError(ErrorCode::kUnauthorized, "unauthorized",
                         "a valid admin token is required (Authorization: Bearer ...)");
    }
    return std::nullopt;
}

Answer DispatchAdmin(const Shared& s, const config::Config& c, const Request& req,
                     const RouteMatch& m) {
    if (auto denied = CheckAdmin(c, req, m.id)) {
        Answer a = FromError(*denied);
        a.delay_ms = static_cast<int>(
            s.failed_auth.Fail(req.peer, text::NowMs(), c.admin_auth_free_failures));
        return a;
    }
    admin::Rest& a = *s.admin;
    switch (m.id) {
        case RouteId::kSegments:
            return FromResult(a.ListSegments(QueryOf(req)));
        case RouteId::kSegment:
            return FromResult(a.GetSegment(m.segment));
        case RouteId::kSegmentDelete:
            return FromResult(a.DeleteSegment(m.segment));
        case RouteId::kMembers:
            return FromResult(a.ListMembers(m.segment, QueryOf(req)));
        case RouteId::kMember:
            return FromResult(a.GetMember(m.segment, m.key));
        case RouteId::kResync:
            return FromResult(a.Resync(m.segment, QueryOf(req)));
        case RouteId::kContext:
            return FromResult(a.Context(m.key, QueryOf(req)));
        case RouteId::kDestinations:
            return FromResult(a.ListDestinations());
        case RouteId::kDestination:
            return FromResult(a.GetDestination(m.destination));
        case RouteId::kDestinationResume:
            return FromResult(a.ResumeDestination(m.destination, QueryOf(req)));
        case RouteId::kDestinationReports:
            return FromResult(a.DestinationReports(m.destination, QueryOf(req)));
        case RouteId::kDestinationReportsRetry:
            return FromResult(a.ChangeDeadReports(m.destination, true));
        case RouteId::kDestinationReportsDiscard:
            return FromResult(a.ChangeDeadReports(m.destination, false));
        case RouteId::kDeadLetters:
            return FromResult(a.ListDeadLetters(QueryOf(req)));
        case RouteId::kDeadLettersRetry:
            return FromResult(a.RetryDeadLetters(req.body));
        case RouteId::kDeadLettersDiscard:
            return FromResult(a.DiscardDeadLetters(req.body));
        case RouteId::kPushes:
            return FromResult(a.ListPushes(QueryOf(req)));
        case RouteId::kMetrics: {
            auto r = a.Metrics();
            if (!r) return FromError(r.error());
            return {200, r.value(), "text/plain; version=0.0.4"};
        }
        default:
            return FromError(MakeError(ErrorCode::kInternal, "internal", "internal error"));
    }
}

// The status page or one of its files, with headers that confine what the page may do.
Answer StatusPage(const RouteMatch& m) {
    auto file = StatusPageFile(m.id == RouteId::kStatusPage ? std::string_view("index.html")
                               : m.key == "index.html"      ? std::string_view()
                                                            : std::string_view(m.key));
    if (!file) return FromError(MakeError(ErrorCode::kNotFound, "not_found", "no such file"));
    Answer a{200, std::string(file->body), std::string(file->content_type), 0, {}};
    a.headers = {{"Content-Security-Policy", kStatusPageCsp},
                 {"X-Content-Type-Options", "nosniff"},
                 {"X-Frame-Options", "DENY"},
                 {"Referrer-Policy", "no-referrer"},
                 {"Cache-Control", "no-cache"}};
    return a;
}

// Route -> ingest or admin call -> answer. Knows nothing of the transport.
// Which routes a listener serves: all of them, or (with admin_listen) the public side's
// ingest and health, and the admin side's admin routes and health.
enum class Side { kAll, kPublic, kAdmin };

bool Serves(Side side, RouteId id) {
    if (side == Side::kAll) return true;
    const bool health = id == RouteId::kHealthz || id == RouteId::kReadyz;
    const bool admin = IsAdminRoute(id);
    const bool no_route =
        id == RouteId::kNotFound || id == RouteId::kMethodNotAllowed || id == RouteId::kBadPath;
    if (health || no_route) return true;
    if (IsStatusPageRoute(id)) return side == Side::kAdmin;
    return side == Side::kAdmin ? admin : !admin;
}

RouteMatch MatchOn(Side side, const Request& req) {
    RouteMatch m = MatchRoute(req.method, req.Path());
    if (!Serves(side, m.id)) return RouteMatch{};  // as if it did not exist here
    return m;
}

Answer Dispatch(const Shared& s, Side side, const Request& req) {
    RouteMatch m = MatchOn(side, req);
    // One config for the whole request, however a reload swaps it meanwhile.
    const auto snapshot = s.Config();
    const config::Config& c = *snapshot;
    // Authentication before routing: strangers learn nothing of the routes under /v1/ or
    // of which destination ids exist.
    const bool under_v1 = req.Path().substr(0, 4) == "/v1/";
    const bool no_route = m.id == RouteId::kNotFound || m.id == RouteId::kMethodNotAllowed ||
                          m.id == RouteId::kBadPath;
    const bool unknown_destination = !m.destination.empty() && !IsAdminRoute(m.id) &&
                                     c.FindDestination(m.destination) == nullptr;
    if (under_v1 && (no_route || unknown_destination) && !KnownCaller(c, req, m.id)) {
        return FromError(Stranger());
    }
    if (IsAdminRoute(m.id)) return DispatchAdmin(s, c, req, m);
    if (IsStatusPageRoute(m.id)) return StatusPage(m);
    ingest::Request in;
    switch (m.id) {
        case RouteId::kHealthz:
            return {200, "{\"status\":\"ok\"}", ""};
        case RouteId::kReadyz:
            if (auto why = s.ready()) {
                return FromError(MakeError(ErrorCode::kUnavailable, "not_ready", *why));
            }
            return {200, "{\"status\":\"ready\"}", ""};
        case RouteId::kNotFound:
            return FromError(MakeError(ErrorCode::kNotFound, "not_found", "no such route"));
        case RouteId::kBadPath:
            return FromError(MakeError(ErrorCode::kInvalidBody, "invalid_path",
                                       "the path has a malformed percent escape"));
        case RouteId::kMethodNotAllowed:
            return FromError(MakeError(ErrorCode::kMethodNotAllowed, "method_not_allowed",
                                       "this route takes " + m.allow));
        case RouteId::kAudienceCreate:
            return FromResult(s.ingest->CreateAudience(m.destination, QueryKey(req), req.body));
        case RouteId::kAudienceLookup:
            return FromResult(s.ingest->LookupAudience(m.destination, QueryKey(req), req.body));
        case RouteId::kBatch:
            in.route = ingest::Route::kBatch;
            break;
        case RouteId::kIdentify:
            in.route = ingest::Route::kIdentify;
            break;
        case RouteId::kTrack:
            in.route = ingest::Route::kTrack;
            break;
        case RouteId::kImport:
            in.route = ingest::Route::kImport;
            break;
        case RouteId::kWebhookEvents:
            in.route = ingest::Route::kWebhook;
            in.destination_id = m.destination;
            break;
        default:  // admin routes were dispatched above
            return FromError(MakeError(ErrorCode::kInternal, "internal", "internal error"));
    }
    in.body = req.body;
    in.authorization = req.Header("Authorization");
    in.signature = req.Header("X-Signature");
    in.token = req.Header(ingest::kTokenHeader);
    std::string destination;
    Answer a = FromResult(s.ingest->Ingest(in, &destination));
    a.destination = std::move(destination);
    return a;
}

Response ToResponse(Answer a, const RouteMatch& m) {
    Response r;
    r.status = a.status;
    r.body = std::move(a.body);
    if (!a.content_type.empty()) r.content_type = std::move(a.content_type);
    r.delay_ms = a.delay_ms;
    r.headers = std::move(a.headers);
    r.access_destination = std::move(a.destination);
    if (m.id == RouteId::kMethodNotAllowed) r.headers.emplace_back("Allow", m.allow);
    return r;
}

}  // namespace

struct Server::Impl {
    std::shared_ptr<Shared> shared;
    std::unique_ptr<Transport> transport;
    std::unique_ptr<Transport> admin_transport;  // admin_listen
};

Server::Server(std::shared_ptr<const config::Config> config, ingest::Service& ingest,
               admin::Rest& admin, std::function<std::optional<std::string>()> ready)
    : impl_(std::make_unique<Impl>()) {
    impl_->shared = std::make_shared<Shared>();
    impl_->shared->config = std::move(config);
    impl_->shared->ingest = &ingest;
    impl_->shared->admin = &admin;
    impl_->shared->ready = std::move(ready);
}

void Server::SetConfig(std::shared_ptr<const config::Config> config) {
    std::lock_guard<std::mutex> lock(impl_->shared->config_mu);
    impl_->shared->config = std::move(config);
}

Server::~Server() { Stop(); }

void Server::Start() {
    const auto snapshot = impl_->shared->Config();
    const config::Config& c = *snapshot;
    TransportOptions o;
    o.host = c.listen_host;
    o.port = c.listen_port;
    o.handler_threads = c.http_threads;
    o.header_timeout_ms = c.header_timeout_ms;
    o.body_timeout_ms = c.body_timeout_ms;
    o.keepalive_timeout_ms = c.keepalive_timeout_ms;
    o.max_buffered_body_bytes = c.limits.max_buffered_body_bytes;
    o.max_connections = c.limits.max_connections;
    const config::Limits limits = c.limits;
    auto body_limit = [limits](const RequestHead& head) {
        std::string_view path = head.target.substr(0, head.target.find('?'));
        return BodyLimit(limits, MatchRoute(head.method, path).id);
    };
    std::shared_ptr<Shared> shared = impl_->shared;
    auto handler_for = [shared](Side side) {
        return [shared, side](const Request& req) {
            return ToResponse(Dispatch(*shared, side, req), MatchOn(side, req));
        };
    };
    o.on_access = [shared](const AccessRecord& a) {
        if (!shared->Config()->access_log) return;
        RouteMatch m;
        if (!a.method.empty()) {
            m = MatchRoute(a.method, std::string_view(a.target).substr(0, a.target.find('?')));
        }
        // The destination the handler authenticated (a /v1/batch request's write key), else
        // the one its path names, when it looks like an id (a path is the caller's text).
        const std::string& named = a.destination.empty() ? m.destination : a.destination;
        std::string destination = "-";
        if (!named.empty() && named.size() <= 64 &&
            named.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789._-") == std::string::npos) {
            destination = named;
        }
        const bool known_method =
            a.method.size() <= 10 &&
            a.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") == std::string::npos;
        char duration[32];
        std::snprintf(duration, sizeof duration, "%.3f",
                      static_cast<double>(a.duration_us) / 1000.0);
        log::Info(
            "http: access",
            {{"method", a.method.empty() ? std::string("-")
                        : known_method   ? a.method
                                         : std::string("?")},
             {"route", std::string(a.method.empty() ? std::string_view("-") : RouteTemplate(m.id))},
             {"status", std::to_string(a.status)},
             {"duration_ms", duration},
             {"bytes_in", std::to_string(a.bytes_in)},
             {"bytes_out", std::to_string(a.bytes_out)},
             {"destination", destination},
             {"sent", a.sent ? "true" : "false"}});
    };
    const Side public_side = c.admin_listen ? Side::kPublic : Side::kAll;
    impl_->transport = std::make_unique<Transport>(o, body_limit, handler_for(public_side));
    impl_->transport->Start();
    if (c.admin_listen) {
        TransportOptions a = o;
        a.host = c.admin_listen->first;
        a.port = c.admin_listen->second;
        a.handler_threads = 2;  // operators, not Segment
        impl_->admin_transport =
            std::make_unique<Transport>(a, body_limit, handler_for(Side::kAdmin));
        impl_->admin_transport->Start();
    }
}

uint16_t Server::port() const { return impl_->transport ? impl_->transport->port() : 0; }

uint16_t Server::admin_port() const {
    return impl_->admin_transport ? impl_->admin_transport->port() : 0;
}

void Server::Stop() {
    if (!impl_) return;
    // Destroying a transport joins its threads before the objects they use go away.
    for (auto* t : {&impl_->transport, &impl_->admin_transport}) {
        if (*t) {
            (*t)->Stop();
            t->reset();
        }
    }
}

}  // namespace audsync::http
