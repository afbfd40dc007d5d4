// Table tests of the sync engine's pure decisions: admission, lanes, folding, stored pauses.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "audsync/sync/state.hpp"

using namespace audsync;
using sync::Action;
using sync::Decision;
using sync::DestinationState;
using sync::DestinationStatus;
using sync::Note;

namespace {

config::Config TwoDestinations(int cap_a, int cap_b) {
    config::Config c;
    config::Destination a;
    a.id = "a";
    a.max_in_flight = cap_a;
    a.targets = {config::ImplicitTarget(a)};
    config::Destination b;
    b.id = "b";
    b.max_in_flight = cap_b;
    b.targets = {config::ImplicitTarget(b)};
    c.destinations = {a, b};
    return c;
}

store::DueSegment Due(int64_t id, const std::string& destination) {
    store::DueSegment s;
    s.id = id;
    s.destination = destination;
    s.audience_id = "aud_" + std::to_string(id);
    s.target = "launchdarkly";
    return s;
}

Decision Made(Action action, int status = 0, int64_t delay_ms = 0) {
    Decision d;
    d.action = action;
    d.status = status;
    d.delay_ms = delay_ms;
    d.error = "HTTP " + std::to_string(status);
    return d;
}

std::vector<Decision> Repeat(const Decision& d, size_t n) { return std::vector<Decision>(n, d); }

}  // namespace

TEST_SUITE("sync state") {
    TEST_CASE("destination status text converts in one place, both ways") {
        for (auto s : {DestinationStatus::kOk, DestinationStatus::kRetrying,
                       DestinationStatus::kRateLimited, DestinationStatus::kAuthFailed}) {
            CHECK(sync::ParseDestinationStatus(sync::ToString(s)) == s);
        }
        CHECK(sync::ToString(DestinationStatus::kRetrying) == "retrying");
        CHECK(sync::ToString(DestinationStatus::kAuthFailed) == "auth_failed");
        CHECK(sync::ToString(DestinationStatus::kRateLimited) == "rate_limited");
        CHECK(sync::ToString(DestinationStatus::kOk) == "ok");
        CHECK_FALSE(sync::ParseDestinationStatus("OK").has_value());
        CHECK_FALSE(sync::ParseDestinationStatus("").has_value());
    }

    TEST_CASE("admission: caps, one push per segment, pauses, removed destinations") {
        const int64_t now = 10000;
        struct Row {
            const char* name;
            std::vector<store::DueSegment> due;
            std::map<sync::SegmentAtTarget, int> in_flight;
            std::map<std::string, DestinationState> destinations;
            std::vector<size_t> start;
            int64_t wake_at_ms;
        };
        const config::Config config = TwoDestinations(2, 1);
        std::vector<Row> rows = {
            {"everything free", {Due(1, "a"), Due(2, "b")}, {}, {}, {0, 1}, 0},
            {"per-destination cap",
             {Due(1, "a"), Due(2, "a"), Due(3, "a"), Due(4, "b"), Due(5, "b")},
             {},
             {},
             {0, 1, 3},
             0},
            {"cap counts pushes already running",
             {Due(1, "a"), Due(2, "a")},
             {{{9, "a/launchdarkly"}, 1}},
             {{"a/launchdarkly", {DestinationStatus::kOk, 0, 1}}},
             {0},
             0},
            {"a segment in flight is not pushed twice",
             {Due(1, "a"), Due(2, "b")},
             {{{1, "a/launchdarkly"}, 1}, {{7, "a/launchdarkly"}, 1}},
             {{"a/launchdarkly", {DestinationStatus::kOk, 0, 1}},
              {"b/launchdarkly", {DestinationStatus::kOk, 0, 0}}},
             {1},
             0},
            {"paused destination holds and sets the wake-up",
             {Due(1, "a"), Due(2, "b")},
             {},
             {{"a/launchdarkly", {DestinationStatus::kAuthFailed, now + 500, 0}}},
             {1},
             now + 500},
            {"earliest pause end wins",
             {Due(1, "a"), Due(2, "b")},
             {},
             {{"a/launchdarkly", {DestinationStatus::kRateLimited, now + 900, 0}},
              {"b/launchdarkly", {DestinationStatus::kRateLimited, now + 300, 0}}},
             {},
             now + 300},
            {"a pause that ended lets pushes go",
             {Due(1, "a")},
             {},
             {{"a/launchdarkly", {DestinationStatus::kRateLimited, now, 0}}},
             {0},
             0},
            {"a destination no longer configured stays pending",
             {Due(1, "gone"), Due(2, "a")},
             {},
             {},
             {1},
             0},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            sync::SchedulerState state;
            state.in_flight_segments = r.in_flight;
            state.destinations = r.destinations;
            auto admission = sync::Admit(state, r.due, config, now);
            CHECK(admission.start == r.start);
            CHECK(admission.wake_at_ms == r.wake_at_ms);
            for (size_t i : admission.start) {
                CHECK(admission.state.in_flight_segments.at(
                          {r.due[i].id, r.due[i].destination + "/launchdarkly"}) == 1);
            }
            CHECK(admission.state.destinations.count("gone") == 0);
            for (const auto& [id, d] : admission.state.destinations) {
                CHECK(d.in_flight <=
                      config.FindDestination(id.substr(0, id.find('/')))->max_in_flight);
            }
        }
    }

    TEST_CASE("admission then release frees the segment and the slot") {
        const config::Config config = TwoDestinations(1, 1);
        auto first = sync::Admit({}, {Due(1, "a"), Due(2, "a")}, config, 0);
        REQUIRE(first.start == std::vector<size_t>{0});
        auto again = sync::Admit(first.state, {Due(1, "a"), Due(2, "a")}, config, 0);
        CHECK(again.start.empty());
        auto released = sync::Release(first.state, 1, "a/launchdarkly");
        CHECK(released.in_flight_segments.count({1, "a/launchdarkly"}) == 0);
        CHECK(released.destinations["a/launchdarkly"].in_flight == 0);
        auto after = sync::Admit(released, {Due(2, "a")}, config, 0);
        CHECK(after.start == std::vector<size_t>{0});
        // Releasing what is not in flight never goes negative.
        CHECK(
            sync::Release(released, 1, "a/launchdarkly").destinations["a/launchdarkly"].in_flight ==
            0);
    }

    TEST_CASE("lanes: how many batches an admitted delta push reads") {
        struct Row {
            const char* name;
            int max_in_flight;
            int in_flight;  // after its own admission
            int lanes;
        };
        Row rows[] = {
            {"alone at its target: one batch per slot", 4, 1, 4},
            {"other pushes hold slots", 4, 3, 2},
            {"every slot taken: its own batch only", 4, 4, 1},
            {"more in flight than the cap (lowered by a reload)", 2, 5, 1},
            {"max_in_flight 1: never more than one", 1, 1, 1},
            {"max_in_flight 0 counts as 1", 0, 1, 1},
            {"capped at kMaxLanes", 20, 1, sync::kMaxLanes},
            {"capped at max_in_flight", 3, 0, 3},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            DestinationState d;
            d.in_flight = r.in_flight;
            CHECK(sync::LanesToRead(d, r.max_in_flight) == r.lanes);
        }
    }

    TEST_CASE("lanes: extra lanes start only on free slots of a segment held in flight") {
        const int64_t now = 10000;
        const sync::SegmentAtTarget at{1, "a/launchdarkly"};
        struct Row {
            const char* name;
            int max_in_flight;
            std::map<sync::SegmentAtTarget, int> in_flight;
            DestinationState destination;
            size_t wanted;
            size_t started;
        };
        const std::map<sync::SegmentAtTarget, int> held = {{at, 1}};
        std::vector<Row> rows = {
            {"free slots: every batch gets a lane", 4, held, {DestinationStatus::kOk, 0, 1}, 3, 3},
            {"fewer slots than batches", 4, held, {DestinationStatus::kOk, 0, 2}, 3, 2},
            {"no slot left", 4, held, {DestinationStatus::kOk, 0, 4}, 3, 0},
            {"nothing wanted", 4, held, {DestinationStatus::kOk, 0, 1}, 0, 0},
            {"max_in_flight 1", 1, held, {DestinationStatus::kOk, 0, 1}, 3, 0},
            {"max_in_flight 0 counts as 1", 0, held, {DestinationStatus::kOk, 0, 1}, 3, 0},
            {"at most kMaxLanes per segment",
             64,
             held,
             {DestinationStatus::kOk, 0, 1},
             20,
             static_cast<size_t>(sync::kMaxLanes - 1)},
            {"the segment is not held: a scan could read it",
             4,
             {},
             {DestinationStatus::kOk, 0, 1},
             3,
             0},
            {"another segment is held, not this one",
             4,
             {{{2, "a/launchdarkly"}, 1}},
             {DestinationStatus::kOk, 0, 1},
             3,
             0},
            {"the target was paused meanwhile",
             4,
             held,
             {DestinationStatus::kRateLimited, now + 1, 1},
             3,
             0},
            {"a pause that ended lets lanes start",
             4,
             held,
             {DestinationStatus::kRateLimited, now, 1},
             3,
             3},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            sync::SchedulerState state;
            state.in_flight_segments = r.in_flight;
            state.destinations["a/launchdarkly"] = r.destination;
            auto admitted = sync::AdmitLanes(state, at, r.max_in_flight, r.wanted, now);
            CHECK(admitted.started == r.started);
            const DestinationState& d = admitted.state.destinations.at("a/launchdarkly");
            CHECK(d.in_flight == r.destination.in_flight + static_cast<int>(r.started));
            if (r.started > 0) CHECK(d.in_flight <= std::max(1, r.max_in_flight));
            auto lanes = admitted.state.in_flight_segments.find(at);
            const int before = r.in_flight.count(at) > 0 ? r.in_flight.at(at) : 0;
            const int after = lanes == admitted.state.in_flight_segments.end() ? 0 : lanes->second;
            CHECK(after == before + static_cast<int>(r.started));
            CHECK(after <= sync::kMaxLanes);
        }
        // A target no scan has seen has no slots to give.
        sync::SchedulerState unknown;
        unknown.in_flight_segments = held;
        CHECK(sync::AdmitLanes(unknown, at, 4, 3, now).started == 0);
    }

    TEST_CASE("lanes: a segment is not admitted while any lane runs, and is free after the last") {
        config::Config config = TwoDestinations(4, 1);
        const std::vector<store::DueSegment> due = {Due(1, "a"), Due(2, "a")};
        const sync::SegmentAtTarget one{1, "a/launchdarkly"};
        auto first = sync::Admit({}, {Due(1, "a")}, config, 0);
        REQUIRE(first.start == std::vector<size_t>{0});
        auto lanes = sync::AdmitLanes(first.state, one, 4, 2, 0);
        REQUIRE(lanes.started == 2);
        CHECK(lanes.state.in_flight_segments.at(one) == 3);
        CHECK(lanes.state.destinations["a/launchdarkly"].in_flight == 3);

        // Segment 1 waits for its lanes; segment 2 takes the last slot.
        auto scan = sync::Admit(lanes.state, due, config, 0);
        CHECK(scan.start == std::vector<size_t>{1});
        sync::SchedulerState state = sync::Release(scan.state, 2, "a/launchdarkly");

        // Lanes end one by one: the segment stays held until the last one.
        for (int running = 3; running > 0; --running) {
            CAPTURE(running);
            CHECK(state.in_flight_segments.at(one) == running);
            CHECK(sync::Admit(state, {Due(1, "a")}, config, 0).start.empty());
            state = sync::Release(state, 1, "a/launchdarkly");
        }
        CHECK(state.in_flight_segments.count(one) == 0);
        CHECK(state.destinations["a/launchdarkly"].in_flight == 0);
        CHECK(sync::Admit(state, {Due(1, "a")}, config, 0).start == std::vector<size_t>{0});
        // Releasing what is not in flight changes nothing.
        state = sync::Release(state, 1, "a/launchdarkly");
        CHECK(state.in_flight_segments.count(one) == 0);
        CHECK(state.destinations["a/launchdarkly"].in_flight == 0);
    }

    TEST_CASE("folding outcomes: successful") {
        const int64_t now = 5000;
        struct Row {
            const char* name;
            DestinationState before;
            bool retrying;
            std::vector<Note> notes;
        };
        Row rows[] = {
            {"steady", {}, false, {}},
            {"after a rate limit",
             {DestinationStatus::kRateLimited, 4000, 0},
             false,
             {Note::kDestinationRecovered}},
            {"after refused credentials",
             {DestinationStatus::kAuthFailed, 4000, 0},
             true,
             {Note::kDestinationRecovered, Note::kSegmentRecovered}},
            {"segment had been retrying", {}, true, {Note::kSegmentRecovered}},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            auto f = sync::FoldOutcome(r.before, r.retrying,
                                       Repeat(Made(Action::kAcknowledge, 204), 3), now);
            CHECK(f.notes == r.notes);
            CHECK(f.destination.status == DestinationStatus::kOk);
            CHECK(f.destination.paused_until_ms == 0);
            CHECK_FALSE(f.segment_retrying);
            REQUIRE(f.write.has_value());
            CHECK(f.write->status == DestinationStatus::kOk);
            CHECK(f.write->success_ms == std::optional<int64_t>(now));
            CHECK(f.acknowledged == 3);
        }
    }

    TEST_CASE("folding outcomes: recoverable") {
        const int64_t now = 5000;
        struct Row {
            const char* name;
            DestinationState before;
            bool retrying;
            std::vector<Decision> decisions;
            DestinationStatus status;
            int64_t paused_until;
            bool segment_retrying;
            std::vector<Note> notes;
            bool writes;
        };
        const Decision retry = Made(Action::kRetry, 500, 300);
        const Decision limited = Made(Action::kRateLimited, 429, 2000);
        const Decision refused = Made(Action::kAuthFailed, 401, 120000);
        std::vector<Row> rows = {
            {"first transient failure: the target shows it",
             {},
             false,
             {retry},
             DestinationStatus::kRetrying,
             0,
             true,
             {Note::kTargetRetrying, Note::kSegmentRetrying},
             true},
            {"still failing: no new line, nothing written",
             {DestinationStatus::kRetrying, 0, 0},
             true,
             {retry, retry},
             DestinationStatus::kRetrying,
             0,
             true,
             {},
             false},
            {"another segment's first failure at a failing target: its own line only",
             {DestinationStatus::kRetrying, 0, 0},
             false,
             {retry},
             DestinationStatus::kRetrying,
             0,
             true,
             {Note::kSegmentRetrying},
             false},
            {"a failing target accepts again",
             {DestinationStatus::kRetrying, 0, 0},
             true,
             {Made(Action::kAcknowledge, 204)},
             DestinationStatus::kOk,
             0,
             false,
             {Note::kDestinationRecovered, Note::kSegmentRecovered},
             true},
            {"after a rate limit, a transient failure",
             {DestinationStatus::kRateLimited, 4000, 0},
             false,
             {retry},
             DestinationStatus::kRetrying,
             4000,
             true,
             {Note::kTargetRetrying, Note::kSegmentRetrying},
             true},
            {"partly accepted, partly failing",
             {},
             true,
             {Made(Action::kAcknowledge, 204), retry},
             DestinationStatus::kOk,
             0,
             true,
             {},
             true},
            {"rate limited",
             {},
             false,
             {limited},
             DestinationStatus::kRateLimited,
             now + 2000,
             false,
             {Note::kDestinationPaused},
             true},
            {"rate limited again: no new line",
             {DestinationStatus::kRateLimited, 4000, 0},
             false,
             {limited},
             DestinationStatus::kRateLimited,
             now + 2000,
             false,
             {},
             true},
            {"a pause never shortens",
             {DestinationStatus::kRateLimited, now + 9000, 0},
             false,
             {limited},
             DestinationStatus::kRateLimited,
             now + 9000,
             false,
             {},
             true},
            {"refused again after the pause: no new line",
             {DestinationStatus::kAuthFailed, 4000, 0},
             false,
             {refused},
             DestinationStatus::kAuthFailed,
             now + 120000,
             false,
             {},
             true},
            {"refused again after a resume: a new line",
             {DestinationStatus::kAuthFailed, 0, 0},
             false,
             {refused},
             DestinationStatus::kAuthFailed,
             now + 120000,
             false,
             {Note::kDestinationPaused},
             true},
            {"credentials refused",
             {},
             true,
             {refused},
             DestinationStatus::kAuthFailed,
             now + 120000,
             true,
             {Note::kDestinationPaused},
             true},
            {"refusal outranks a rate limit",
             {DestinationStatus::kRateLimited, 0, 0},
             false,
             {limited, refused},
             DestinationStatus::kAuthFailed,
             now + 120000,
             false,
             {Note::kDestinationPaused},
             true},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            auto f = sync::FoldOutcome(r.before, r.retrying, r.decisions, now);
            CHECK(f.destination.status == r.status);
            CHECK(f.destination.paused_until_ms == r.paused_until);
            CHECK(f.segment_retrying == r.segment_retrying);
            CHECK(f.notes == r.notes);
            CHECK(f.write.has_value() == r.writes);
            if (f.write) {
                CHECK(f.write->status == r.status);
                CHECK(f.write->paused_until_ms == r.paused_until);
                CHECK(f.write->error.has_value() == (r.status == DestinationStatus::kAuthFailed ||
                                                     r.status == DestinationStatus::kRetrying));
            }
            CHECK(f.dead_letters == 0);
        }
    }

    TEST_CASE("folding outcomes: permanent") {
        const int64_t now = 5000;
        const Decision dead = Made(Action::kDeadLetter, 409);
        auto f = sync::FoldOutcome({}, true, {dead, dead, Made(Action::kAcknowledge, 204)}, now);
        CHECK(f.dead_letters == 2);
        CHECK(f.acknowledged == 1);
        REQUIRE(f.dead.has_value());
        CHECK(f.dead->status == 409);
        CHECK(f.notes == std::vector<Note>{Note::kSegmentRecovered, Note::kDeadLetters});
        CHECK_FALSE(f.segment_retrying);

        auto only_dead = sync::FoldOutcome({}, true, {dead}, now);
        CHECK(only_dead.notes == std::vector<Note>{Note::kDeadLetters});
        CHECK_FALSE(only_dead.segment_retrying);  // nothing of it is retried any more
        CHECK_FALSE(only_dead.write.has_value());
        CHECK(only_dead.destination.status == DestinationStatus::kOk);
    }

    TEST_CASE("folding outcomes: concurrent lanes of one segment") {
        const int64_t now = 5000;
        const Decision ok = Made(Action::kAcknowledge, 204);
        const Decision retry = Made(Action::kRetry, 503, 300);
        const Decision dead = Made(Action::kDeadLetter, 400);
        const Decision limited = Made(Action::kRateLimited, 429, 2000);
        struct Row {
            const char* name;
            bool retrying;
            int other_lanes;
            std::vector<Decision> decisions;
            bool segment_retrying;
            std::vector<Note> notes;
            DestinationStatus before = DestinationStatus::kOk;  // the target's, as the lane ends
        };
        std::vector<Row> rows = {
            {"first lane to fail reports it",
             false,
             3,
             {retry},
             true,
             {Note::kTargetRetrying, Note::kSegmentRetrying}},
            {"a lane failing after another: no new line",
             true,
             2,
             {retry},
             true,
             {},
             DestinationStatus::kRetrying},
            {"a success while other lanes run: still retrying, no line", true, 2, {ok}, true, {}},
            {"dead letters while other lanes run: still retrying",
             true,
             1,
             {dead},
             true,
             {Note::kDeadLetters}},
            {"the last lane's success ends it, once",
             true,
             0,
             {ok},
             false,
             {Note::kSegmentRecovered}},
            {"a success, nothing failing: nothing to say", false, 3, {ok}, false, {}},
            {"a pause leaves retrying as it was",
             true,
             1,
             {limited},
             true,
             {Note::kDestinationPaused}},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            const DestinationState before{r.before, 0, 0};
            auto f = sync::FoldLaneOutcome(before, r.retrying, r.other_lanes, r.decisions, now);
            CHECK(f.segment_retrying == r.segment_retrying);
            CHECK(f.notes == r.notes);
            // Everything but the segment's retrying state is the lane's own outcome.
            auto alone = sync::FoldOutcome(before, r.retrying, r.decisions, now);
            CHECK(f.destination.status == alone.destination.status);
            CHECK(f.destination.paused_until_ms == alone.destination.paused_until_ms);
            CHECK(f.write.has_value() == alone.write.has_value());
            CHECK(f.acknowledged == alone.acknowledged);
            CHECK(f.dead_letters == alone.dead_letters);
            if (r.other_lanes == 0) CHECK(f.notes == alone.notes);
        }

        // Four lanes started together: two fail, two succeed, in an interleaving where a
        // success comes between the failures and the last lane succeeds.
        // The target's state goes from lane to lane as the engine keeps it.
        bool retrying = false;
        DestinationState target;
        int running = 4;
        std::vector<Note> said;
        for (const auto& decisions :
             std::vector<std::vector<Decision>>{{retry}, {ok, ok}, {retry, ok}, {ok}}) {
            auto f = sync::FoldLaneOutcome(target, retrying, running - 1, decisions, now);
            retrying = f.segment_retrying;
            target = f.destination;
            said.insert(said.end(), f.notes.begin(), f.notes.end());
            --running;
        }
        CHECK(said == std::vector<Note>{Note::kTargetRetrying, Note::kSegmentRetrying,
                                        Note::kDestinationRecovered, Note::kSegmentRecovered});
        CHECK(target.status == DestinationStatus::kOk);
        CHECK_FALSE(retrying);
    }

    TEST_CASE("pauses stored by another process are adopted when they change") {
        sync::SchedulerState state;
        auto first = sync::AdoptStoredPauses(state, {{"a", 9000}, {"b", 0}});
        CHECK(first.resumed.empty());  // a restart resumes the stored pause, silently
        CHECK(first.state.destinations["a"].paused_until_ms == 9000);

        // The engine pauses b itself; the scan still reads the old row: b stays paused.
        first.state.destinations["b"] = {DestinationStatus::kRateLimited, 7000, 0};
        auto same = sync::AdoptStoredPauses(first.state, {{"a", 9000}, {"b", 0}});
        CHECK(same.state.destinations["b"].paused_until_ms == 7000);
        CHECK(same.resumed.empty());

        // Someone resumed a (the CLI): cleared in the database, so cleared here.
        same.state.destinations["a"].status = DestinationStatus::kAuthFailed;
        auto resumed = sync::AdoptStoredPauses(same.state, {{"a", 0}, {"b", 7000}});
        CHECK(resumed.resumed == std::vector<std::string>{"a"});
        CHECK(resumed.state.destinations["a"].paused_until_ms == 0);
        CHECK(resumed.state.destinations["a"].status == DestinationStatus::kAuthFailed);
        CHECK(resumed.state.destinations["b"].paused_until_ms == 7000);

        // A pause set in the database by another process is honoured too.
        auto paused = sync::AdoptStoredPauses(resumed.state, {{"a", 12000}, {"b", 7000}});
        CHECK(paused.state.destinations["a"].paused_until_ms == 12000);
    }

    TEST_CASE("targets are rebuilt only when what they talk with changes") {
        config::Target a;
        a.id = "ld";
        a.service_token = "t1";
        config::Target b = a;
        b.max_batch = 5;
        b.retry_max_ms = 1;
        CHECK(sync::SameTargetSettings(a, b));
        for (auto change : std::vector<std::function<void(config::Target&)>>{
                 [](config::Target& d) { d.service_token = "t2"; },
                 [](config::Target& d) { d.client_side_id = "other"; },
                 [](config::Target& d) { d.api_base = "http://x"; },
                 [](config::Target& d) { d.clientsdk_base = "http://y"; },
                 [](config::Target& d) { d.request_timeout_ms = 1; },
                 [](config::Target& d) { d.platform = "other"; },
                 [](config::Target& d) { d.environment_key = "ser.other"; },
                 [](config::Target& d) { d.trait_prefix = "seg_"; },
                 [](config::Target& d) { d.api_password = "other"; },
                 [](config::Target& d) { d.product_id = "other"; },
                 [](config::Target& d) { d.max_list_items = 7; }}) {
            config::Target c = a;
            change(c);
            CHECK_FALSE(sync::SameTargetSettings(a, c));
        }
    }
}
