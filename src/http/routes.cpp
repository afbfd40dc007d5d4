#include "audsync/http/routes.hpp"

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

}  // namespace

RouteMatch MatchRoute(std::string_view method, std::string_view path) {
    auto parts = Split(path);
    if (parts.size() == 1) {
        if (parts[0] == "healthz") return Only(method, "GET", RouteId::kHealthz);
        if (parts[0] == "readyz") return Only(method, "GET", RouteId::kReadyz);
    }
    if (parts.empty() || parts[0] != "v1") return {};
    if (parts.size() == 2) {
        if (parts[1] == "batch") return Only(method, "POST", RouteId::kBatch);
        if (parts[1] == "identify") return Only(method, "POST", RouteId::kIdentify);
        if (parts[1] == "track") return Only(method, "POST", RouteId::kTrack);
        if (parts[1] == "import") return Only(method, "POST", RouteId::kImport);
        return {};
    }
    if (parts.size() >= 4 && parts[1] == "destinations") {
        RouteMatch m;
        if (parts.size() == 4 && parts[3] == "events") {
            m = Only(method, "POST", RouteId::kWebhookEvents);
        } else if (parts.size() == 4 && parts[3] == "audiences") {
            m = Only(method, "POST", RouteId::kAudienceCreate);
        } else if (parts.size() == 5 && parts[3] == "audiences" && parts[4] == "lookup") {
            m = Only(method, "POST", RouteId::kAudienceLookup);
        } else {
            return {};
        }
        auto id = text::PercentDecode(parts[2]);
        if (!id) return RouteMatch{RouteId::kBadPath, "", ""};
        m.destination = std::move(*id);
        return m;
    }
    return {};
}

}  // namespace audsync::http
