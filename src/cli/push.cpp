// Pushing from the CLI (or waiting for a running server's pushes), with progress and pauses.
#include "push.hpp"

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "audsync/app/runtime.hpp"
#include "audsync/common/text.hpp"

namespace audsync::cli {
namespace {

constexpr int64_t kGiveUpMs = 60000;  // a minute without progress

// "destination ld is paused (auth_failed) until ...; audsync destinations resume ld", for
// each chosen destination whose pause lasts beyond `beyond_ms` (a refused token always).
std::vector<std::string> Pauses(admin::Service& service, const std::set<std::string>& ids,
                                int64_t beyond_ms) {
    std::vector<std::string> out;
    auto list = service.ListDestinations();
    if (!list) return out;
    for (const auto& v : list.value().destinations) {
        if (!ids.count(v.destination.id) || !v.state) continue;
        const bool auth = v.state->status == "auth_failed";
        if (!auth && v.state->paused_until_ms <= beyond_ms) continue;
        out.push_back("destination " + v.destination.id + " is paused (" + v.state->status +
                      ") until " + audsync::text::FormatIso8601(v.state->paused_until_ms) +
                      "; audsync destinations resume " + v.destination.id);
    }
    return out;
}

}  // namespace

bool PushAndWait(Invocation& inv, const CommonOptions& options,
                 std::shared_ptr<const config::Config> config, admin::Service& direct,
                 const PushWait& wait, admin::PushReport* report) {
    app::RuntimeOptions runtime_options;
    runtime_options.exclusive = true;
    runtime_options.sync = true;
    runtime_options.config_path = options.config_path;
    auto runtime = app::Runtime::Start(config, runtime_options);
    if (!runtime) {
        if (runtime.error().name != "database_locked") {
            Fail(inv, runtime.error());
            return false;
        }
        inv.err << "audsync: " << runtime.error().message << "\n";
        if (!wait.wait_for_server) {
            inv.err << "the members are marked: that server pushes them\n";
            report->segments = static_cast<int64_t>(wait.segments.size());
            report->marked = wait.marked;
            report->pending = -1;  // not known: left to the server
            return true;
        }
        inv.err << "waiting for that server to push them\n";
    }
    const std::set<std::string>& destinations = wait.destinations;
    auto pending = [&]() -> int64_t {
        int64_t n = 0;
        for (int64_t id : wait.segments) {
            auto c = direct.CountPending(id);
            if (c) n += c.value();
        }
        return n;
    };
    report->segments = static_cast<int64_t>(wait.segments.size());
    report->marked = wait.marked;
    // Counting pending members reads every one of them: on a large replay it would take
    // the CPU the pushes need. Pushing here, the engine's counters give the progress,
    // and the database is counted every few seconds and when they say it is done.
    sync::Engine* engine = runtime ? runtime.value()->engine() : nullptr;
    auto finished = [engine]() -> int64_t {
        return static_cast<int64_t>(engine->counters().members_acknowledged.load() +
                                    engine->counters().members_dead.load());
    };
    const int64_t finished_before = engine != nullptr ? finished() : 0;
    const int64_t exact_every_ms = engine != nullptr ? 5000 : 1000;
    // Pushing here, the first figure is what was marked: counting a large replay's
    // members again would only delay its first push.
    int64_t next_exact =
        engine != nullptr && report->marked > 0 ? audsync::text::NowMs() + exact_every_ms : 0;
    int64_t last = -1;
    int64_t stalled_since = audsync::text::NowMs();
    for (;;) {
        int64_t now = audsync::text::NowMs();
        bool exact = now >= next_exact;
        if (!exact && engine == nullptr) {
            // Waiting for a server: nothing to show between counts.
            std::this_thread::sleep_for(std::chrono::milliseconds(200));  // progress poll
            continue;
        }
        if (!exact) {
            const int64_t estimate =
                std::max<int64_t>(0, report->marked - (finished() - finished_before));
            if (estimate == 0) {
                exact = true;
            } else {
                report->pending = std::max<int64_t>(estimate, 1);
            }
        }
        if (exact) {
            report->pending = pending();
            next_exact = now + exact_every_ms;
        }
        const double done = report->marked ? 1.0 - static_cast<double>(report->pending) /
                                                       static_cast<double>(report->marked)
                                           : 1.0;
        Progress("push " + Bar(std::max(0.0, done)) + "  " +
                 std::to_string(std::max<int64_t>(0, report->marked - report->pending)) + "/" +
                 std::to_string(report->marked) + " members");
        if (exact) {
            if (report->pending == 0) break;
            now = audsync::text::NowMs();
            // A refused token, or a pause longer than we would wait, will not end by waiting.
            report->paused = Pauses(direct, destinations, now + kGiveUpMs);
            if (!report->paused.empty()) break;
            if (report->pending != last) {
                last = report->pending;
                stalled_since = now;
            } else if (now - stalled_since > kGiveUpMs) {
                report->paused = Pauses(direct, destinations, now);
                break;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // progress poll
    }
    ProgressDone();
    if (runtime) {
        app::Runtime& rt = *runtime.value();
        rt.Stop();
        report->acknowledged =
            static_cast<int64_t>(rt.engine()->counters().members_acknowledged.load());
        report->dead_letters = static_cast<int64_t>(rt.engine()->counters().members_dead.load());
    }
    return true;
}

}  // namespace audsync::cli
