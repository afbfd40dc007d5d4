#include "audsync/http/server.hpp"

#include <pistache/endpoint.h>
#include <pistache/http.h>

#include <algorithm>
#include <stdexcept>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/http/routes.hpp"

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

using Pistache::Http::Code;
using Pistache::Http::ResponseWriter;

struct Shared {
    const config::Config* config;
    ingest::Service* ingest;
    admin::Rest* admin;
    std::function<bool()> ready;
};

struct Answer {
    int status = 200;
    std::string body;
    std::string content_type;  // empty: application/json
};

Answer FromResult(const Result<std::string>& r) {
    if (r) return {200, r.value(), ""};
    return {StatusFor(r.error().code), ErrorBody(r.error()), ""};
}

Answer FromError(const Error& e) { return {StatusFor(e.code), ErrorBody(e), ""}; }

std::optional<std::string> Header(const Pistache::Http::Request& req, const std::string& name) {
    if (auto raw = req.headers().tryGetRaw(name)) return raw->value();
    return std::nullopt;
}

std::optional<std::string> Authorization(const Pistache::Http::Request& req) {
    auto h = req.headers().tryGet<Pistache::Http::Header::Authorization>();
    if (h) return h->value();
    return Header(req, "Authorization");
}

std::optional<std::string> QueryKey(const Pistache::Http::Request& req) {
    auto v = req.query().get("key");
    if (!v) return std::nullopt;
    auto decoded = text::PercentDecode(*v, true);
    return decoded ? decoded : std::optional<std::string>(std::string());
}

admin::Query QueryOf(const Pistache::Http::Request& req) {
    admin::Query q;
    for (auto it = req.query().parameters_begin(); it != req.query().parameters_end(); ++it) {
        auto name = text::PercentDecode(it->first, true);
        auto value = text::PercentDecode(it->second, true);
        if (name && value) q[*name] = *value;
    }
    return q;
}

std::optional<Error> CheckAdmin(const Shared& s, const Pistache::Http::Request& req, RouteId id) {
    if (id == RouteId::kMetrics && s.config->metrics_public) return std::nullopt;
    if (s.config->admin_token.empty()) {
        return MakeError(ErrorCode::kUnauthorized, "unauthorized",
                         "the admin API is disabled: no admin_token is configured");
    }
    auto auth = Authorization(req);
    std::string_view given = auth ? std::string_view(*auth) : std::string_view();
    bool bearer =
        given.size() > 7 && (given.substr(0, 7) == "Bearer " || given.substr(0, 7) == "bearer ");
    if (!bearer || !crypto::SecretEquals(given.substr(7), s.config->admin_token)) {
        return MakeError(ErrorCode::kUnauthorized, "unauthorized",
                         "a valid admin token is required (Authorization: Bearer ...)");
    }
    return std::nullopt;
}

Answer DispatchAdmin(const Shared& s, const Pistache::Http::Request& req, const RouteMatch& m) {
    if (auto denied = CheckAdmin(s, req, m.id)) return FromError(*denied);
    admin::Rest& a = *s.admin;
    switch (m.id) {
        case RouteId::kSegments:
            return FromResult(a.ListSegments(QueryOf(req)));
        case RouteId::kSegment:
            return FromResult(a.GetSegment(m.segment));
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
        case RouteId::kDeadLetters:
            return FromResult(a.ListDeadLetters(QueryOf(req)));
        case RouteId::kDeadLettersRetry:
            return FromResult(a.RetryDeadLetters(req.body()));
        case RouteId::kDeadLettersDiscard:
            return FromResult(a.DiscardDeadLetters(req.body()));
        case RouteId::kMetrics: {
            auto r = a.Metrics();
            if (!r) return FromError(r.error());
            return {200, r.value(), "text/plain; version=0.0.4"};
        }
        default:
            return FromError(MakeError(ErrorCode::kInternal, "internal", "internal error"));
    }
}

Answer Dispatch(const Shared& s, const Pistache::Http::Request& req) {
    const std::string method = Pistache::Http::methodString(req.method());
    std::string_view path = req.resource();
    size_t q = path.find('?');
    if (q != std::string_view::npos) path = path.substr(0, q);
    RouteMatch m = MatchRoute(method, path);
    if (IsAdminRoute(m.id)) return DispatchAdmin(s, req, m);
    ingest::Request in;
    switch (m.id) {
        case RouteId::kHealthz:
            return {200, "{\"status\":\"ok\"}", ""};
        case RouteId::kReadyz:
            if (s.ready()) return {200, "{\"status\":\"ready\"}", ""};
            return FromError(MakeError(ErrorCode::kUnavailable, "not_ready",
                                       "the database is not open or not migrated"));
        case RouteId::kNotFound:
            return FromError(MakeError(ErrorCode::kNotFound, "not_found", "no such route"));
        case RouteId::kBadPath:
            return FromError(MakeError(ErrorCode::kInvalidBody, "invalid_path",
                                       "the path has a malformed percent escape"));
        case RouteId::kMethodNotAllowed:
            // Pistache 0.0.5 does not write an Allow header; the message names the method.
            return FromError(MakeError(ErrorCode::kMethodNotAllowed, "method_not_allowed",
                                       "this route takes " + m.allow));
        case RouteId::kAudienceCreate:
            return FromResult(s.ingest->CreateAudience(m.destination, QueryKey(req), req.body()));
        case RouteId::kAudienceLookup:
            return FromResult(s.ingest->LookupAudience(m.destination, QueryKey(req), req.body()));
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
    in.body = req.body();
    in.authorization = Authorization(req);
    in.signature = Header(req, "X-Signature");
    return FromResult(s.ingest->Ingest(in));
}

class Handler : public Pistache::Http::Handler {
  public:
    HTTP_PROTOTYPE(Handler)

    explicit Handler(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

    void onRequest(const Pistache::Http::Request& req, ResponseWriter response) override {
        Answer a;
        try {
            a = Dispatch(*shared_, req);
        } catch (const std::exception& e) {
            // The text of an exception never reaches the client.
            log::Error(std::string("request failed: ") + e.what());
            a = FromError(MakeError(ErrorCode::kInternal, "internal", "internal error"));
        } catch (...) {
            a = FromError(MakeError(ErrorCode::kInternal, "internal", "internal error"));
        }
        if (a.content_type.empty()) {
            response.headers().add<Pistache::Http::Header::ContentType>(MIME(Application, Json));
        } else {
            response.headers().add<Pistache::Http::Header::ContentType>(
                Pistache::Http::Mime::MediaType::fromString(a.content_type));
        }
        response.send(static_cast<Code>(a.status), a.body);
    }

  private:
    std::shared_ptr<Shared> shared_;
};

}  // namespace

struct Server::Impl {
    std::shared_ptr<Shared> shared;
    std::unique_ptr<Pistache::Http::Endpoint> endpoint;
    const config::Config* config;
};

Server::Server(const config::Config& config, ingest::Service& ingest, admin::Rest& admin,
               std::function<bool()> ready)
    : impl_(std::make_unique<Impl>()) {
    impl_->config = &config;
    impl_->shared = std::make_shared<Shared>(Shared{&config, &ingest, &admin, std::move(ready)});
}

Server::~Server() { Stop(); }

void Server::Start() {
    const config::Config& c = *impl_->config;
    Pistache::Address addr(c.listen_host, Pistache::Port(c.listen_port));
    impl_->endpoint = std::make_unique<Pistache::Http::Endpoint>(addr);
    // Pistache counts headers in maxRequestSize: leave room for them above the largest
    // body a route accepts; bodies within it get our own JSON 413.
    size_t max_body =
        std::max(c.limits.webhook_max_request_bytes, c.limits.tracking_max_request_bytes);
    auto opts = Pistache::Http::Endpoint::options()
                    .threads(c.http_threads)
                    .flags(Pistache::Tcp::Options::ReuseAddr)
                    .maxRequestSize(max_body + 64 * 1024)
                    .maxResponseSize(1024 * 1024)
                    .headerTimeout(std::chrono::milliseconds(c.header_timeout_ms))
                    .bodyTimeout(std::chrono::milliseconds(c.body_timeout_ms))
                    .keepaliveTimeout(std::chrono::milliseconds(c.keepalive_timeout_ms));
    impl_->endpoint->init(opts);
    impl_->endpoint->setHandler(std::make_shared<Handler>(impl_->shared));
    impl_->endpoint->serveThreaded();
}

uint16_t Server::port() const {
    return impl_->endpoint ? static_cast<uint16_t>(impl_->endpoint->getPort()) : 0;
}

void Server::Stop() {
    if (!impl_ || !impl_->endpoint) return;
    impl_->endpoint->shutdown();
    // Destroying the endpoint joins its workers before the objects they use go away.
    impl_->endpoint.reset();
}

}  // namespace audsync::http
