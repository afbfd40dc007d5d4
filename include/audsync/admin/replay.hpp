// The report of a replay of captured events (audsync replay events).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace audsync::admin {

struct EventReplayReport {
    struct Rejection {
        size_t line = 0;   // where the value started in the input (1-based)
        size_t index = 0;  // of the event in the whole input
        std::string message_id;
        std::string reason;
        std::string detail;
    };
    bool dry_run = false;
    size_t events = 0;
    // A real replay: membership events stored in the inbox, and whether the applier
    // had applied all of them when the replay returned.
    size_t stored = 0;
    bool applied = false;
    // A dry run: what the events would do against the applied state.
    size_t accepted = 0;
    size_t duplicates = 0;
    size_t stale = 0;
    size_t not_applicable = 0;
    std::map<std::string, size_t> not_applicable_reasons;
    size_t rejected = 0;
    std::map<std::string, size_t> rejected_by_reason;
    std::vector<Rejection> first_rejections;  // the first kMaxListedRejections, in order
    std::optional<std::string> stream_error;  // the input stopped being JSON

    static constexpr size_t kMaxListedRejections = 100;
};

}  // namespace audsync::admin
