// What the ingest path would do with events, read-only: the engine of a dry replay.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/store/database.hpp"

namespace audsync::ingest {

// Classifies items as Service::Apply would (accepted, duplicate, stale, not applicable,
// rejected by reason) against the stored state and the items it saw before, writing
// nothing. Memory grows with the distinct messageIds and members it sees.
// Not thread-safe. Throws store::SqliteError.
class DryRun {
  public:
    DryRun(const config::Config& config, store::Database& reader,
           const AudienceRegistry& audiences);

    Summary Classify(const config::Destination& destination, std::vector<segment::Item>& items,
                     size_t index_base);

  private:
    const config::Config& config_;
    store::Database& reader_;
    const AudienceRegistry& audiences_;
    std::set<std::pair<std::string, std::string>> seen_;  // (destination, messageId)
    // (destination, audience id, kind, key) -> the deciding event time seen in this run
    std::map<std::tuple<std::string, std::string, std::string, std::string>, int64_t> decided_;
};

}  // namespace audsync::ingest
