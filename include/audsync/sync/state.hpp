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
    kRetrying,     // the last push failed transiently (no answer, timeout, 5xx): retried
    kRateLimited,  // the platform asked to wait until paused_until_ms
    kAuthFailed,   // the platform refused the token; slow retries until then
};

// The one conversion to and from the store's text: "ok", "retrying", "rate_limited",
// "auth_failed".
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
    // Pushes ("lanes") running per segment and target, each holding disjoint members;
    // a segment is present only while at least one runs. Each lane also holds one of
    // its target's in_flight slots.
    std::map<SegmentAtTarget, int> in_flight_segments;
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

// Which due segments may start at `now_ms`: no lane of the segment in flight at that
// target (so a scan never reads members a running push holds), the target still
// configured (else the segment stays pending), not paused, and under the target's
// max_in_flight. Each admitted segment starts with one lane.
Admission Admit(SchedulerState state, const std::vector<store::DueSegment>& due,
                const config::Config& config, int64_t now_ms);

// A push (one lane) has ended, or had nothing to send: its slot is free again, and the
// segment once its last lane has ended.
SchedulerState Release(SchedulerState state, int64_t segment_id, const std::string& target_key);

// The most lanes one segment may have in flight at one target, whatever max_in_flight.
inline constexpr int kMaxLanes = 8;

// How many batches a delta push admitted at target `d` (its own slot already counted in
// d.in_flight) reads: its own and one per slot still free, at most max(1, max_in_flight)
// and kMaxLanes. Only an upper bound: the slots may be taken before the lanes start
// (AdmitLanes decides), and a batch without a lane stays pending.
int LanesToRead(const DestinationState& d, int max_in_flight);

struct LaneAdmission {
    SchedulerState state;  // with the started lanes in flight
    size_t started = 0;    // how many of the `wanted` lanes start now
};

// Starts up to `wanted` extra lanes of segment `at`, whose first lane Admit started and
// which is still in flight (else none start: a segment not held could be read by a
// scan meanwhile), while the target is not paused at `now_ms` and has a free slot
// (in_flight < max(1, max_in_flight)), and the segment stays within kMaxLanes.
LaneAdmission AdmitLanes(SchedulerState state, const SegmentAtTarget& at, int max_in_flight,
                         size_t wanted, int64_t now_ms);

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
    kDestinationRecovered,  // retrying / rate limited / auth failed -> accepted again
    kTargetRetrying,        // ok -> nothing accepted, a transient failure (unreachable, 5xx)
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

// FoldOutcome for one lane of a segment while `other_lanes` other lanes of it are in
// flight (started, their outcome not yet recorded). Failures count at once: the first
// lane to fail reports kSegmentRetrying, and a lane failing after it sees the segment
// retrying already. An outcome that would end "retrying" (members accepted, or refused
// for good; a success reports kSegmentRecovered) ends it only when no other lane is in
// flight; until then the segment stays retrying. So lanes that started together report
// "recovered" at most once, and never while one of them may still fail. As for batches
// pushed one after another, "recovered" means that a push of the segment was accepted
// after one failed; the members that failed go out again after their backoff.
Fold FoldLaneOutcome(const DestinationState& destination, bool segment_retrying, int other_lanes,
                     const std::vector<Decision>& decisions, int64_t now_ms);

// Whether a target built for `a` would talk to the platform as one built for `b` does
// (same platform, credentials, IDs, bases, settings, timeout): if not, it is rebuilt on
// reload.
bool SameTargetSettings(const config::Target& a, const config::Target& b);

}  // namespace audsync::sync
