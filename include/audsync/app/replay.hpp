// Replays of captured Segment events through the ingest path (audsync replay events).
#pragma once

#include <cstdint>
#include <functional>
#include <istream>

#include "audsync/admin/replay.hpp"
#include "audsync/app/runtime.hpp"
#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"

namespace audsync::app {

struct EventReplayOptions {
    bool dry_run = false;
    // Called after each chunk read: bytes read so far, events seen so far.
    std::function<void(int64_t bytes, size_t events)> progress;
    // How long a real replay waits at the end for its events to be applied.
    int64_t apply_timeout_ms = 600000;
};

// Streams `input` (NDJSON, a JSON array, or Tracking API {"batch": [...]} objects) into
// `destination`, with the same de-duplication and ordering as live ingest; memory stays
// flat on an input of any size. A dry run classifies every event against the stored
// state and writes nothing: `runtime` may then be null (it must be set otherwise).
Result<admin::EventReplayReport> ReplayEvents(const config::Config& config,
                                              const config::Destination& destination,
                                              Runtime* runtime, std::istream& input,
                                              const EventReplayOptions& options);

}  // namespace audsync::app
