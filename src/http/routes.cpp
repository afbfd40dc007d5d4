// Pure routing: method and path to a RouteId, and the body limit of each route.
#include "audsync/http/routes.hpp"

#include <optional>
#include <vector>

#include "audsync/common/text.hpp"

namespace audsync::http {
namespace {

std::vector<std::string_view> Split(std::string_view path) {
    std::vector<std::string_view> parts;
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    if (!path.empty() && path.back() == '/') path.remove_suffix(1);
    while (!path.empty()) {
        size_t slash = path.find('/');
        parts.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return parts;
}

RouteMatch Only(std::string_view method, std::string_view allowed, RouteId id) {
    RouteMatch m;
    if (method == allowed || (allowed == "GET" && method == "HEAD")) {
        m.id = id;
    } else {
        m.id = RouteId::kMethodNotAllowed;
        m.allow = std::string(allowed);
    }
    return m;
}

// One path, two methods (GET and another): the Allow header names both.
RouteMatch Either(std::string_view method, RouteId get, std::string_view other_method,
                  RouteId other) {
    if (method == other_method) return RouteMatch{other, "", "", "", ""};
    RouteMatch m = Only(method, "GET", get);
    if (m.id == RouteId::kMethodNotAllowed) m.allow = "GET, " + std::string(other_method);
    return m;
}

// Decodes parts[from..] joined by '/': a context key may hold '/' sent raw or as %2F.
std::optional<std::string> Tail(const std::vector<std::string_view>& parts, size_t from) {
    std::string out;
    for (size_t i = from; i < parts.size(); ++i) {
        auto d = text::PercentDecode(parts[i]);
        if (!d) return std::nullopt;
        if (i > from) out += '/';
        out += *d;
    }
    return out;
}

}  // namespace

bool IsAdminRoute(RouteId id) {
    switch (id) {
        case RouteId::kSegments:
        case RouteId::kSegment:
        case RouteId::kSegmentDelete:
        case RouteId::kMembers:
        case RouteId::kMember:
        case RouteId::kResync:
        case RouteId::kContext:
        case RouteId::kDestinations:
        case RouteId::kDestination:
        case RouteId::kDestinationResume:
        case RouteId::kDestinationReports:
        case RouteId::kDestinationReportsRetry:
        case RouteId::kDestinationReportsDiscard:
        case RouteId::kDeadLetters:
        case RouteId::kDeadLettersRetry:
        case RouteId::kDeadLettersDiscard:
        case RouteId::kPushes:
        case RouteId::kMetrics:
            return true;
        default:
            return false;
    }
}

bool IsStatusPageRoute(RouteId id) {
    return id == RouteId::kStatusPage || id == RouteId::kStatusAsset;
}

std::string_view RouteTemplate(RouteId id) {
    switch (id) {
        case RouteId::kBatch:
            return "/v1/batch";
        case RouteId::kIdentify:
            return "/v1/identify";
        case RouteId::kTrack:
            return "/v1/track";
        case RouteId::kImport:
            return "/v1/import";
        case RouteId::kWebhookEvents:
            return "/v1/destinations/{id}/events";
        case RouteId::kAudienceCreate:
            return "/v1/destinations/{id}/audiences";
        case RouteId::kAudienceLookup:
            return "/v1/destinations/{id}/audiences/lookup";
        case RouteId::kHealthz:
            return "/healthz";
        case RouteId::kReadyz:
            return "/readyz";
        case RouteId::kStatusPage:
            return "/";
        case RouteId::kStatusAsset:
            return "/status/{file}";
        case RouteId::kSegments:
            return "/v1/segments";
        case RouteId::kSegment:
        case RouteId::kSegmentDelete:
            return "/v1/segments/{id}";
        case RouteId::kMembers:
            return "/v1/segments/{id}/members";
        case RouteId::kMember:
            return "/v1/segments/{id}/members/{contextKey}";
        case RouteId::kResync:
            return "/v1/segments/{id}/resync";
        case RouteId::kContext:
            return "/v1/contexts/{contextKey}";
        case RouteId::kDestinations:
            return "/v1/destinations";
        case RouteId::kDestination:
            return "/v1/destinations/{id}";
        case RouteId::kDestinationResume:
            return "/v1/destinations/{id}/resume";
        case RouteId::kDestinationReports:
            return "/v1/destinations/{id}/reports";
        case RouteId::kDestinationReportsRetry:
            return "/v1/destinations/{id}/reports/retry";
        case RouteId::kDestinationReportsDiscard:
            return "/v1/destinations/{id}/reports/discard";
        case RouteId::kDeadLetters:
            return "/v1/dead-letters";
        case RouteId::kDeadLettersRetry:
            return "/v1/dead-letters/retry";
        case RouteId::kDeadLettersDiscard:
            return "/v1/dead-letters/discard";
        case RouteId::kPushes:
            return "/v1/pushes";
        case RouteId::kMetrics:
            return "/metrics";
        case RouteId::kMethodNotAllowed:
            return "(method not allowed)";
        case RouteId::kNotFound:
        case RouteId::kBadPath:
            break;
    }
    return "(no route)";
}

size_t BodyLimit(const config::Limits& limits, RouteId id) {
    switch (id) {
        case RouteId::kBatch:
        case RouteId::kIdentify:
        case RouteId::kTrack:
        case RouteId::kImport:
        case RouteId::kAudienceCreate:
        case RouteId::kAudienceLookup:
            return limits.tracking_max_request_bytes;
        case RouteId::kWebhookEvents:
            return limits.webhook_max_request_bytes;
        case RouteId::kResync:
        case RouteId::kDeadLettersRetry:
        case RouteId::kDeadLettersDiscard:
            return 1024 * 1024;
        default:
            return 64 * 1024;
    }
}

const std::vector<std::string>& RouteTable() {
    static const std::vector<std::string> kRoutes = {
        "POST /v1/batch",
        "POST /v1/identify",
        "POST /v1/track",
        "POST /v1/import",
        "POST /v1/destinations/{id}/events",
        "POST /v1/destinations/{id}/audiences",
        "POST /v1/destinations/{id}/audiences/lookup",
        "GET /healthz",
        "GET /readyz",
        "GET /",
        "GET /status/{file}",
        "GET /v1/segments",
        "GET /v1/segments/{id}",
        "DELETE /v1/segments/{id}",
        "GET /v1/segments/{id}/members",
        "GET /v1/segments/{id}/members/{contextKey}",
        "POST /v1/segments/{id}/resync",
        "GET /v1/contexts/{contextKey}",
        "GET /v1/destinations",
        "GET /v1/destinations/{id}",
        "POST /v1/destinations/{id}/resume",
        "GET /v1/destinations/{id}/reports",
        "POST /v1/destinations/{id}/reports/retry",
        "POST /v1/destinations/{id}/reports/discard",
        "GET /v1/dead-letters",
        "POST /v1/dead-letters/retry",
        "POST /v1/dead-letters/discard",
        "GET /v1/pushes",
        "GET /metrics",
    };
    return kRoutes;
}

RouteMatch MatchRoute(std::string_view method, std::string_view path) {
    if (path == "/") return Only(method, "GET", RouteId::kStatusPage);
    auto parts = Split(path);
    if (parts.size() == 2 && parts[0] == "status") {
        RouteMatch m = Only(method, "GET", RouteId::kStatusAsset);
        m.key = std::string(parts[1]);
        return m;
    }
    if (parts.size() == 1) {
        if (parts[0] == "healthz") return Only(method, "GET", RouteId::kHealthz);
        if (parts[0] == "readyz") return Only(method, "GET", RouteId::kReadyz);
        if (parts[0] == "metrics") return Only(method, "GET", RouteId::kMetrics);
    }
    if (parts.empty() || parts[0] != "v1") return {};
    if (parts.size() >= 2 && parts[1] == "segments") {
        RouteMatch m;
        if (parts.size() == 2) return Only(method, "GET", RouteId::kSegments);
        if (parts.size() == 3) {
            m = Either(method, RouteId::kSegment, "DELETE", RouteId::kSegmentDelete);
        } else if (parts.size() == 4 && parts[3] == "members") {
            m = Only(method, "GET", RouteId::kMembers);
        } else if (parts.size() == 4 && parts[3] == "resync") {
            m = Only(method, "POST", RouteId::kResync);
        } else if (parts.size() >= 5 && parts[3] == "members") {
            m = Only(method, "GET", RouteId::kMember);
            auto key = Tail(parts, 4);
            if (!key) return RouteMatch{RouteId::kBadPath, "", "", "", ""};
            m.key = std::move(*key);
        } else {
            return {};
        }
        m.segment = std::string(parts[2]);
        return m;
    }
    if (parts.size() >= 3 && parts[1] == "contexts") {
        RouteMatch m = Only(method, "GET", RouteId::kContext);
        auto key = Tail(parts, 2);
        if (!key) return RouteMatch{RouteId::kBadPath, "", "", "", ""};
        m.key = std::move(*key);
        return m;
    }
    if (parts.size() >= 2 && parts[1] == "dead-letters") {
        if (parts.size() == 2) return Only(method, "GET", RouteId::kDeadLetters);
        if (parts.size() == 3 && parts[2] == "retry")
            return Only(method, "POST", RouteId::kDeadLettersRetry);
        if (parts.size() == 3 && parts[2] == "discard") {
            return Only(method, "POST", RouteId::kDeadLettersDiscard);
        }
        return {};
    }
    if (parts.size() == 2 && parts[1] == "destinations") {
        return Only(method, "GET", RouteId::kDestinations);
    }
    if (parts.size() == 2 && parts[1] == "pushes") return Only(method, "GET", RouteId::kPushes);
    if (parts.size() == 3 && parts[1] == "destinations") {
        RouteMatch m = Only(method, "GET", RouteId::kDestination);
        auto id = text::PercentDecode(parts[2]);
        if (!id) return RouteMatch{RouteId::kBadPath, "", "", "", ""};
        m.destination = std::move(*id);
        return m;
    }
    if (parts.size() == 2) {
        if (parts[1] == "batch") return Only(method, "POST", RouteId::kBatch);
        if (parts[1] == "identify") return Only(method, "POST", RouteId::kIdentify);
        if (parts[1] == "track") return Only(method, "POST", RouteId::kTrack);
        if (parts[1] == "import") return Only(method, "POST", RouteId::kImport);
        return {};
    }
    if (parts.size() >= 4 && parts[1] == "destinations") {
        RouteMatch m;
        if (parts.size() == 4 && parts[3] == "resume") {
            m = Only(method, "POST", RouteId::kDestinationResume);
        } else if (parts.size() == 4 && parts[3] == "reports") {
            m = Only(method, "GET", RouteId::kDestinationReports);
        } else if (parts.size() == 5 && parts[3] == "reports" && parts[4] == "retry") {
            m = Only(method, "POST", RouteId::kDestinationReportsRetry);
        } else if (parts.size() == 5 && parts[3] == "reports" && parts[4] == "discard") {
            m = Only(method, "POST", RouteId::kDestinationReportsDiscard);
        } else if (parts.size() == 4 && parts[3] == "events") {
            m = Only(method, "POST", RouteId::kWebhookEvents);
        } else if (parts.size() == 4 && parts[3] == "audiences") {
            m = Only(method, "POST", RouteId::kAudienceCreate);
        } else if (parts.size() == 5 && parts[3] == "audiences" && parts[4] == "lookup") {
            m = Only(method, "POST", RouteId::kAudienceLookup);
        } else {
            return {};
        }
        auto id = text::PercentDecode(parts[2]);
        if (!id) return RouteMatch{RouteId::kBadPath, "", "", "", ""};
        m.destination = std::move(*id);
        return m;
    }
    return {};
}

}  // namespace audsync::http
