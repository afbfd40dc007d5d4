// Pushing from the CLI (or waiting for a running server's pushes), with progress and pauses.
#pragma once

#include <memory>
#include <set>
#include <vector>

#include "audsync/admin/admin.hpp"
#include "common.hpp"

namespace audsync::cli {

struct PushWait {
    std::vector<int64_t> segments;       // whose pending members to wait for
    std::set<std::string> destinations;  // theirs: whose pauses end the wait
    int64_t marked = 0;                  // members made due, for the progress bar
    // When another audsync holds the database: wait for its pushes (true), or leave them
    // to it and return at once (false).
    bool wait_for_server = false;
};

// Runs the sync engine here when no server holds the database (else relies on that
// server), until the chosen segments have nothing pending, a destination is paused in a
// way waiting will not end (a refused token, a long rate limit: named with the command
// that lifts it), or a minute passes without progress. `report` gets the outcome.
// Returns false with the error printed when the engine cannot start.
bool PushAndWait(Invocation& inv, const CommonOptions& options,
                 std::shared_ptr<const config::Config> config, admin::Service& direct,
                 const PushWait& wait, admin::PushReport* report);

}  // namespace audsync::cli
