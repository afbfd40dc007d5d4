#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/queries.hpp"
#include "audsync/store/store.hpp"

namespace audsync::ingest {
struct Counters;
}
namespace audsync::sync {
struct SyncCounters;
}

namespace audsync::admin {

// "in_sync", "syncing", "retrying" or "auth_failed".
std::string SegmentStatus(const store::SegmentSummary& s);

// "included", "excluded", "pending" or "dead"; nullopt for anything else.
std::optional<store::MemberState> ParseMemberState(std::string_view name);

// JSON renderings shared by the REST API and the CLI's --json.
std::string SegmentJson(const store::SegmentSummary& s, bool detail);
std::string MemberJson(const store::MemberRow& m);
std::string DeadLetterJson(const store::MemberRow& m);
std::string DestinationJson(const config::Destination& d, const store::DestinationRow* row);

// Opaque keyset cursors (base64url).
std::string EncodeCursor(std::string_view raw);
std::optional<std::string> DecodeCursor(std::string_view cursor);

// Runs a write in a transaction: the Writer's when a server runs, the CLI's own
// (store::WriteDirect) otherwise. The function receives the store to write with.
using WriteRunner = std::function<Status(const std::function<void(store::WriteStore&)>&)>;

using Query = std::map<std::string, std::string>;  // decoded query parameters

// The operator API without HTTP: each method returns the JSON body or an Error.
// Thread-safe: every call opens its own read connection.
class Service {
  public:
    Service(const config::Config& config, std::string db_path, WriteRunner write,
            const ingest::Counters* ingest_counters, const sync::SyncCounters* sync_counters);

    Result<std::string> ListSegments(const Query& q);
    Result<std::string> GetSegment(const std::string& id);
    Result<std::string> ListMembers(const std::string& id, const Query& q);
    Result<std::string> GetMember(const std::string& id, const std::string& key);
    Result<std::string> Context(const std::string& key);
    Result<std::string> ListDestinations();
    Result<std::string> GetDestination(const std::string& id);
    Result<std::string> ListDeadLetters(const Query& q);
    // Body: {"ids": ["<segment>:<key>", ...]} or {"segment": <id>}.
    Result<std::string> RetryDeadLetters(std::string_view body);
    Result<std::string> DiscardDeadLetters(std::string_view body);
    Result<std::string> Resync(const std::string& id);
    // Prometheus text format.
    Result<std::string> Metrics();

  private:
    Result<int64_t> SegmentId(const std::string& id, store::Database& db);
    Result<std::string> ChangeDeadLetters(std::string_view body, bool retry);

    const config::Config& config_;
    std::string db_path_;
    WriteRunner write_;
    const ingest::Counters* ingest_counters_;
    const sync::SyncCounters* sync_counters_;
};

}  // namespace audsync::admin
