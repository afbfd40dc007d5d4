// The sync engine's pure decisions: admission and outcome folding.
#include "audsync/sync/state.hpp"

#include <algorithm>

namespace audsync::sync {

std::string_view ToString(DestinationStatus status) {
    switch (status) {
        case DestinationStatus::kOk:
            return "ok";
        case DestinationStatus::kRetrying:
            return "retrying";
        case DestinationStatus::kRateLimited:
            return "rate_limited";
        case DestinationStatus::kAuthFailed:
            return "auth_failed";
    }
    return "ok";
}

std::optional<DestinationStatus> ParseDestinationStatus(std::string_view text) {
    for (auto s : {DestinationStatus::kOk, DestinationStatus::kRetrying,
                   DestinationStatus::kRateLimited, DestinationStatus::kAuthFailed}) {
        if (text == ToString(s)) return s;
    }
    return std::nullopt;
}

Admission Admit(SchedulerState state, const std::vector<store::DueSegment>& due,
                const config::Config& config, int64_t now_ms) {
    Admission out;
    for (size_t i = 0; i < due.size(); ++i) {
        const store::DueSegment& seg = due[i];
        const std::string key = store::TargetKey(seg.destination, seg.target);
        if (state.in_flight_segments.count({seg.id, key}) > 0) continue;
        const config::Destination* dest = config.FindDestination(seg.destination);
        if (dest == nullptr) continue;  // no longer configured: stays pending
        const config::Target* target = dest->FindTarget(seg.target);
        if (target == nullptr) continue;
        DestinationState& d = state.destinations[key];
        if (d.paused_until_ms > now_ms) {
            out.wake_at_ms = out.wake_at_ms == 0 ? d.paused_until_ms
                                                 : std::min(out.wake_at_ms, d.paused_until_ms);
            continue;
        }
        if (d.in_flight >= std::max(1, target->max_in_flight)) continue;  // a finish wakes us
        ++d.in_flight;
        state.in_flight_segments[{seg.id, key}] = 1;
        out.start.push_back(i);
    }
    out.state = std::move(state);
    return out;
}

SchedulerState Release(SchedulerState state, int64_t segment_id, const std::string& target_key) {
    auto lanes = state.in_flight_segments.find({segment_id, target_key});
    if (lanes != state.in_flight_segments.end() && --lanes->second <= 0) {
        state.in_flight_segments.erase(lanes);
    }
    auto it = state.destinations.find(target_key);
    if (it != state.destinations.end() && it->second.in_flight > 0) --it->second.in_flight;
    return state;
}

int LanesToRead(const DestinationState& d, int max_in_flight) {
    const int slots = std::max(1, max_in_flight);
    const int free = std::max(0, slots - d.in_flight);
    return std::min({1 + free, slots, kMaxLanes});
}

LaneAdmission AdmitLanes(SchedulerState state, const SegmentAtTarget& at, int max_in_flight,
                         size_t wanted, int64_t now_ms) {
    LaneAdmission out;
    auto lanes = state.in_flight_segments.find(at);
    auto dest = state.destinations.find(at.second);
    if (lanes != state.in_flight_segments.end() && dest != state.destinations.end()) {
        DestinationState& d = dest->second;
        while (out.started < wanted && d.paused_until_ms <= now_ms &&
               d.in_flight < std::max(1, max_in_flight) && lanes->second < kMaxLanes) {
            ++d.in_flight;
            ++lanes->second;
            ++out.started;
        }
    }
    out.state = std::move(state);
    return out;
}

Adoption AdoptStoredPauses(SchedulerState state, const std::map<std::string, int64_t>& stored) {
    Adoption out;
    for (const auto& [id, until] : stored) {
        auto seen = state.stored_pauses.find(id);
        if (seen != state.stored_pauses.end() && seen->second == until) continue;
        const bool first = seen == state.stored_pauses.end();
        state.stored_pauses[id] = until;
        DestinationState& d = state.destinations[id];
        if (until == 0 && !first && d.paused_until_ms != 0) out.resumed.push_back(id);
        d.paused_until_ms = until;
    }
    out.state = std::move(state);
    return out;
}

Fold FoldOutcome(const DestinationState& destination, bool segment_retrying,
                 const std::vector<Decision>& decisions, int64_t now_ms) {
    Fold f;
    f.destination = destination;
    bool any_retry = false;
    for (const auto& d : decisions) {
        switch (d.action) {
            case Action::kAcknowledge:
                ++f.acknowledged;
                break;
            case Action::kDeadLetter:
            case Action::kSplit:  // never left after bisection; counted as refused
                ++f.dead_letters;
                if (!f.dead) f.dead = d;
                break;
            case Action::kRetry:
                any_retry = true;
                if (!f.retry) f.retry = d;
                break;
            case Action::kRateLimited:
            case Action::kAuthFailed:
                // Refused credentials outrank a rate limit; the longest wait wins.
                if (!f.pause ||
                    (d.action == Action::kAuthFailed && f.pause->action != Action::kAuthFailed) ||
                    (d.action == f.pause->action && d.delay_ms > f.pause->delay_ms)) {
                    f.pause = d;
                }
                break;
        }
    }
    if (f.pause) {
        const DestinationStatus next = f.pause->action == Action::kAuthFailed
                                           ? DestinationStatus::kAuthFailed
                                           : DestinationStatus::kRateLimited;
        const int64_t until = now_ms + f.pause->delay_ms;
        // Once per transition: a new status, or the first refusal after a resume (which
        // clears the pause to 0; an expired pause keeps its old time).
        if (next != destination.status || destination.paused_until_ms == 0) {
            f.notes.push_back(Note::kDestinationPaused);
        }
        f.destination.status = next;
        f.destination.paused_until_ms = std::max(destination.paused_until_ms, until);
        f.write = DestinationWrite{next, f.destination.paused_until_ms,
                                   next == DestinationStatus::kAuthFailed
                                       ? std::optional<std::string>(f.pause->error)
                                       : std::nullopt,
                                   std::nullopt};
        if (f.acknowledged > 0) f.write->success_ms = now_ms;
    } else if (f.acknowledged > 0) {
        if (destination.status != DestinationStatus::kOk) {
            f.notes.push_back(Note::kDestinationRecovered);
        }
        f.destination.status = DestinationStatus::kOk;
        f.destination.paused_until_ms = 0;
        f.write = DestinationWrite{DestinationStatus::kOk, 0, std::nullopt, now_ms};
    } else if (any_retry && destination.status != DestinationStatus::kRetrying) {
        // Nothing accepted, nothing paused: the platform did not answer, timed out or
        // failed (5xx). The target shows it (with the error) until a push is accepted;
        // its members keep their own backoff, so nothing else is held. Written once per
        // transition.
        f.notes.push_back(Note::kTargetRetrying);
        f.destination.status = DestinationStatus::kRetrying;
        f.write = DestinationWrite{DestinationStatus::kRetrying, destination.paused_until_ms,
                                   f.retry->error, std::nullopt};
    }
    if (any_retry) {
        if (!segment_retrying) f.notes.push_back(Note::kSegmentRetrying);
        f.segment_retrying = true;
    } else if (f.pause) {
        f.segment_retrying = segment_retrying;  // held by the destination, not healed
    } else {
        if (segment_retrying && f.acknowledged > 0) f.notes.push_back(Note::kSegmentRecovered);
        f.segment_retrying = false;
    }
    if (f.dead_letters > 0) f.notes.push_back(Note::kDeadLetters);
    return f;
}

Fold FoldLaneOutcome(const DestinationState& destination, bool segment_retrying, int other_lanes,
                     const std::vector<Decision>& decisions, int64_t now_ms) {
    Fold f = FoldOutcome(destination, segment_retrying, decisions, now_ms);
    if (other_lanes > 0 && segment_retrying && !f.segment_retrying) {
        f.segment_retrying = true;
        f.notes.erase(std::remove(f.notes.begin(), f.notes.end(), Note::kSegmentRecovered),
                      f.notes.end());
    }
    return f;
}

bool SameTargetSettings(const config::Target& a, const config::Target& b) {
    return a.id == b.id && a.platform == b.platform && a.api_base == b.api_base &&
           a.service_token == b.service_token && a.client_side_id == b.client_side_id &&
           a.clientsdk_base == b.clientsdk_base && a.environment_key == b.environment_key &&
           a.trait_prefix == b.trait_prefix && a.flagsmith_api == b.flagsmith_api &&
           a.api_user == b.api_user && a.api_password == b.api_password &&
           a.product_id == b.product_id && a.max_list_items == b.max_list_items &&
           a.api_token == b.api_token && a.context_name == b.context_name &&
           a.project == b.project && a.id_type == b.id_type &&
           a.request_timeout_ms == b.request_timeout_ms;
}

}  // namespace audsync::sync
