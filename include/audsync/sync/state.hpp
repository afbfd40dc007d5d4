// The sync engine's decisions as pure functions: admission of due segments, and the
// folding of a push's outcome into the destination's state, its pause and the log.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/store/store.hpp"
#include "audsync/sync/policy.hpp"

namespace audsync::sync {

// A target's health as the engine sees it (and stores it, as text). Each target of a
// destination has its own: one paused never holds another back.
enum class DestinationStatus {
    kOk,           // pushes go out
    kRateLimited,  // the platform asked to wait until paused_until_ms
    kAuthFailed,   // the platform refused the token; slow retries until then
};

// The one conversion to and from the store's text: "ok", "rate_limited", "auth_failed".
std::string_view ToString(DestinationStatus status);
std::optional<DestinationStatus> ParseDestinationStatus(std::string_view text);

struct DestinationState {
    DestinationStatus status = DestinationStatus::kOk;
    int64_t paused_until_ms = 0;  // no push starts before this
    int in_flight = 0;            // pushes running now
};

// A segment at one target, "<destination>/<target>" (store::TargetKey).
using SegmentAtTarget = std::pair<int64_t, std::string>;

// What the scheduler knows between scans. Plain data; the engine guards it. The
// "destinations" map is keyed by target ("<destination>/<target>").
struct SchedulerState {
    std::set<SegmentAtTarget> in_flight_segments;   // one push per segment and target
    std::set<SegmentAtTarget> retrying_segments;    // for "starts retrying" / "recovered"
    std::set<SegmentAtTarget> over_limit_segments;  // for "over the limit" / "fits again"
    std::map<std::string, DestinationState> destinations;
    std::map<std::string, int64_t> stored_pauses;  // the database's pauses at the last scan
};

struct Admission {
    SchedulerState state;       // with the admitted segments in flight
    std::vector<size_t> start;  // indices into `due` of the segments to push now, in order
    int64_t wake_at_ms = 0;     // the earliest pause end that held a segment back (0: none)
};

// Which due segments may start at `now_ms`: not already in flight at that target, the
// target still configured (else the segment stays pending), not paused, and under the
// target's max_in_flight.
Admission Admit(SchedulerState state, const std::vector<store::DueSegment>& due,
                const config::Config& config, int64_t now_ms);

// A push has ended (or had nothing to send): the segment and a slot are free again.
SchedulerState Release(SchedulerState state, int64_t segment_id, const std::string& target_key);

struct Adoption {
    SchedulerState state;
    std::vector<std::string> resumed;  // pauses cleared in the database by someone else
};

// Takes the pauses that changed in the database since the last scan (`stored`, read each
// scan): another process (the CLI) may have resumed or paused a destination. A pause
// that did not change there is left as the engine holds it, so a pause the engine has
// just decided is not undone by a scan that ran before it was committed.
Adoption AdoptStoredPauses(SchedulerState state, const std::map<std::string, int64_t>& stored);

// The destination row to store after a push.
struct DestinationWrite {
    DestinationStatus status = DestinationStatus::kOk;
    int64_t paused_until_ms = 0;
    std::optional<std::string> error;
    std::optional<int64_t> success_ms;  // set when the platform accepted something
};

// Log-worthy transitions, each reported once, not per attempt.
enum class Note {
    kDestinationPaused,     // a new pause status, or the first refusal after a resume
    kDestinationRecovered,  // rate limited / auth failed -> accepted again
    kSegmentRetrying,       // the segment's pushes started failing transiently
    kSegmentRecovered,      // they are accepted again
    kDeadLetters,           // members became dead letters
};

struct Fold {
    DestinationState destination;   // next state (in_flight unchanged)
    bool segment_retrying = false;  // next state of the segment
    std::optional<DestinationWrite> write;
    std::vector<Note> notes;
    std::optional<Decision> pause;  // the decision behind a pause
    std::optional<Decision> retry;  // the first transient failure
    std::optional<Decision> dead;   // the first dead letter
    size_t acknowledged = 0;
    size_t dead_letters = 0;
};

// Folds the per-member decisions of one push into the destination's next state.
// `segment_retrying` is whether the segment was already retrying.
Fold FoldOutcome(const DestinationState& destination, bool segment_retrying,
                 const std::vector<Decision>& decisions, int64_t now_ms);

// Whether a target built for `a` would talk to the platform as one built for `b` does
// (same platform, credentials, IDs, bases, settings, timeout): if not, it is rebuilt on
// reload.
bool SameTargetSettings(const config::Target& a, const config::Target& b);

}  // namespace audsync::sync
