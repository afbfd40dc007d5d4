// Pure routing of audsync's HTTP API: path and method to a route, and each route's body limit.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "audsync/config/config.hpp"

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
    // The status page (no credential: it holds no data; its script calls the admin API
    // with the token the operator enters) and its script and style sheet.
    kStatusPage,
    kStatusAsset,
    // Admin (bearer token):
    kSegments,
    kSegment,
    kSegmentDelete,
    kMembers,
    kMember,
    kResync,
    kContext,
    kDestinations,
    kDestination,
    kDestinationResume,
    kDestinationReports,
    kDestinationReportsRetry,
    kDestinationReportsDiscard,
    kDeadLetters,
    kDeadLettersRetry,
    kDeadLettersDiscard,
    kPushes,
    kMetrics,
    kNotFound,
    kMethodNotAllowed,
    kBadPath,  // a path segment with a malformed percent escape
};

struct RouteMatch {
    RouteId id = RouteId::kNotFound;
    std::string destination;  // percent-decoded {id} of /v1/destinations/{id}/...
    std::string segment;      // {id} of /v1/segments/{id}/...
    std::string key;          // percent-decoded context key; kStatusAsset: the file name
    std::string allow;        // for kMethodNotAllowed: the Allow header
};

// Pure routing: the path is the request target without the query.
RouteMatch MatchRoute(std::string_view method, std::string_view path);

// The route's path template ("/v1/segments/{id}"), what the access log names instead of
// the raw path; "(no route)" for kNotFound and kBadPath, "(method not allowed)" for
// kMethodNotAllowed.
std::string_view RouteTemplate(RouteId id);

// True for the routes that need the admin bearer token.
bool IsAdminRoute(RouteId id);

// True for the status page and its files: served where the admin API is (with
// admin_listen, only there), without a credential.
bool IsStatusPageRoute(RouteId id);

// The largest body a request may declare on that route, checked from the headers before
// the body is read: the Tracking or webhook request limit for ingest, 1 MiB for admin
// POSTs, 64 KiB for everything else (a body there is answered by the route's error).
size_t BodyLimit(const config::Limits& limits, RouteId id);

// Every route as "METHOD /path/{param}", for docs/api.md's test.
const std::vector<std::string>& RouteTable();

}  // namespace audsync::http
