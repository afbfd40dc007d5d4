// Pushing from the CLI (or waiting for a running server's pushes), with progress and pauses.
#include "push.hpp"

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
    std::set<std::string> destinations;
    for (int64_t id : wait.segments) {
        auto s = direct.GetSegment(id);
        if (s) destinations.insert(s.value().segment.destination);
    }
    auto pending = [&]() -> int64_t {
        int64_t n = 0;
        for (int64_t id : wait.segments) {
            auto s = direct.GetSegment(id);
            if (s) n += s.value().segment.pending;
        }
        return n;
    };
    report->segments = static_cast<int64_t>(wait.segments.size());
    report->marked = wait.marked;
    int64_t last = -1;
    int64_t stalled_since = audsync::text::NowMs();
    for (;;) {
        report->pending = pending();
        const double done = report->marked ? 1.0 - static_cast<double>(report->pending) /
                                                       static_cast<double>(report->marked)
                                           : 1.0;
        Progress("push " + Bar(done) + "  " + std::to_string(report->marked - report->pending) +
                 "/" + std::to_string(report->marked) + " members");
        if (report->pending == 0) break;
        const int64_t now = audsync::text::NowMs();
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
