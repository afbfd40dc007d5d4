#pragma once

#include <string>
#include <string_view>

namespace audsync::http {

enum class RouteId {
    kBatch,
    kIdentify,
    kTrack,
    kImport,
    kWebhookEvents,
    kAudienceCreate,
    kAudienceLookup,
    kHealthz,
    kReadyz,
    kNotFound,
    kMethodNotAllowed,
    kBadPath,  // a path segment with a malformed percent escape
};

struct RouteMatch {
    RouteId id = RouteId::kNotFound;
    std::string destination;  // percent-decoded {id} of /v1/destinations/{id}/...
    std::string allow;        // for kMethodNotAllowed: the Allow header
};

// Pure routing: the path is the request target without the query.
RouteMatch MatchRoute(std::string_view method, std::string_view path);

}  // namespace audsync::http
