// The admin REST API without HTTP: query strings and bodies in, JSON bodies out.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "audsync/admin/admin.hpp"

namespace audsync::admin {

using Query = std::map<std::string, std::string>;  // decoded query parameters

// Parses each route's parameters into the operator core's types, calls it, and renders
// the result with the one JSON renderer. Thread-safe as the Service is.
class Rest {
  public:
    explicit Rest(Service& service) : service_(service) {}

    Result<std::string> ListSegments(const Query& q);
    Result<std::string> GetSegment(const std::string& id);
    Result<std::string> DeleteSegment(const std::string& id);
    Result<std::string> ListMembers(const std::string& id, const Query& q);
    Result<std::string> GetMember(const std::string& id, const std::string& key);
    // ?dry_run=true answers what would be re-pushed and changes nothing.
    Result<std::string> Resync(const std::string& id, const Query& q);
    Result<std::string> Context(const std::string& key, const Query& q);
    Result<std::string> ListDestinations();
    Result<std::string> GetDestination(const std::string& id);
    // ?target=ID resumes one target of the destination.
    Result<std::string> ResumeDestination(const std::string& id, const Query& query);
    // ?limit= dead reports shown (default 50).
    Result<std::string> DestinationReports(const std::string& id, const Query& query);
    Result<std::string> ChangeDeadReports(const std::string& id, bool retry);
    Result<std::string> ListDeadLetters(const Query& q);
    // Body: {"ids": ["<segment>:<key>", ...]} or {"segment": <id>}.
    Result<std::string> RetryDeadLetters(std::string_view body);
    Result<std::string> DiscardDeadLetters(std::string_view body);
    // Prometheus text format.
    Result<std::string> ListPushes(const Query& q);
    Result<std::string> Metrics();

  private:
    Service& service_;
};

}  // namespace audsync::admin
