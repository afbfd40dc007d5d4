// replay segments|events: re-push stored membership, or feed captured events through ingest.
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "audsync/admin/render.hpp"
#include "audsync/app/replay.hpp"
#include "audsync/app/runtime.hpp"
#include "audsync/cli/cli.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "common.hpp"
#include "push.hpp"
#include "text.hpp"

namespace audsync::cli {
namespace {

struct ReplayOptions {
    CommonOptions common;
    std::string destination;
    int64_t segment = 0;
    std::string target;  // empty: every active target
    bool dry_run = false;
    bool push_now = false;
    std::string file;
};

std::string ConfigPathOf(const CommonOptions& o) {
    if (!o.config_path.empty()) return o.config_path;
    const char* env = std::getenv("AUDSYNC_CONFIG");
    return env != nullptr ? env : "";
}

int ReplaySegments(Invocation& inv, const ReplayOptions& o) {
    if (o.dry_run && o.push_now)
        return UsageError(inv, "--dry-run and --push-now exclude each other");
    auto config = LoadConfig(inv, o.common, o.push_now ? Secrets::kNeeded : Secrets::kNotNeeded);
    if (!config) return Fail(inv, config.error());
    if (!o.destination.empty() && config.value()->FindDestination(o.destination) == nullptr) {
        return Fail(inv, "no destination has the id " + o.destination);
    }
    auto service = OpenDirect(inv, o.common, config.value());
    if (!service) return Fail(inv, service.error());
    store::SegmentFilter f;
    if (!o.destination.empty()) f.destination = o.destination;
    if (o.segment > 0) f.id = o.segment;
    const std::optional<std::string> target =
        o.target.empty() ? std::nullopt : std::optional<std::string>(o.target);
    auto report = service.value()->ReplaySegments(f, o.dry_run, target);
    if (!report) return Fail(inv, report.error());
    if (!o.push_now) {
        Print(inv, o.common, report.value());
        return kExitOk;
    }
    PushWait wait;
    for (const auto& e : report.value().segments) {
        wait.segments.push_back(e.segment.id);
        wait.destinations.insert(e.segment.destination);
    }
    wait.marked = report.value().marked;
    admin::PushReport pushed;
    if (!PushAndWait(inv, o.common, config.value(), *service.value(), wait, &pushed)) {
        return kExitFailed;
    }
    if (pushed.pending < 0) return kExitOk;  // a running server pushes them
    Print(inv, o.common, pushed);
    return pushed.pending == 0 ? kExitOk : kExitFailed;
}

int ReplayEvents(Invocation& inv, const ReplayOptions& o) {
    auto loaded = LoadConfig(inv, o.common, Secrets::kNotNeeded);
    if (!loaded) return Fail(inv, loaded.error());
    std::shared_ptr<const config::Config> config = loaded.value();
    const config::Destination* destination = nullptr;
    if (!o.destination.empty()) {
        destination = config->FindDestination(o.destination);
        if (destination == nullptr) return Fail(inv, "no destination has the id " + o.destination);
    } else if (config->destinations.size() == 1) {
        destination = &config->destinations[0];
    } else {
        return UsageError(inv, "the config has several destinations: pass --destination ID");
    }
    std::ifstream file;
    std::istream* input = &std::cin;
    int64_t total_bytes = -1;
    if (o.file != "-") {
        file.open(o.file, std::ios::binary);
        if (!file) return Fail(inv, "cannot read " + o.file);
        input = &file;
        struct stat st {};
        if (stat(o.file.c_str(), &st) == 0 && S_ISREG(st.st_mode)) total_bytes = st.st_size;
    }
    if (Status s = app::RequireDatabase(config->database, ConfigPathOf(o.common)); !s) {
        return Fail(inv, s.error());
    }
    std::unique_ptr<app::Runtime> runtime;
    if (!o.dry_run) {
        app::RuntimeOptions options;
        options.config_path = ConfigPathOf(o.common);
        auto started = app::Runtime::Start(config, options);
        if (!started) return Fail(inv, started.error());
        runtime = std::move(started).value();
    }
    app::EventReplayOptions options;
    options.dry_run = o.dry_run;
    options.progress = [total_bytes](int64_t bytes, size_t events) {
        if (total_bytes > 0) {
            Progress("replay " +
                     Bar(static_cast<double>(bytes) / static_cast<double>(total_bytes)) + "  " +
                     std::to_string(events) + " events");
        } else {
            Progress("replay: " + std::to_string(events) + " events");
        }
    };
    auto report = app::ReplayEvents(*config, *destination, runtime.get(), *input, options);
    ProgressDone();
    if (runtime) runtime->Stop();
    if (!report) return Fail(inv, report.error());
    Print(inv, o.common, report.value());
    if (report.value().stream_error) {
        return Fail(inv, "the input stopped being JSON: " + *report.value().stream_error);
    }
    return kExitOk;
}

}  // namespace

void AddReplayCommands(CLI::App& app, Invocation& inv) {
    auto* replay = app.add_subcommand("replay", "re-push segments or replay captured events");
    replay->require_subcommand(1);
    {
        auto o = std::make_shared<ReplayOptions>();
        auto* c = replay->add_subcommand(
            "segments", "mark segments' members for re-push (a running server pushes them)");
        AddConfigOption(c, o->common);
        AddJsonOption(c, o->common);
        c->add_option("--destination", o->destination, "only this destination's segments");
        c->add_option("--segment", o->segment, "only this segment")->check(CLI::PositiveNumber);
        c->add_option("--target", o->target,
                      "only this target of the segments' destination (default: every one)");
        c->add_flag("--dry-run", o->dry_run, "print what would be re-pushed; change nothing");
        c->add_flag("--push-now", o->push_now, "push from here (when no server runs)");
        c->callback([&inv, o] { inv.action = [&inv, o] { return ReplaySegments(inv, *o); }; });
    }
    {
        auto o = std::make_shared<ReplayOptions>();
        auto* c = replay->add_subcommand(
            "events", "feed captured events (NDJSON, arrays, batch objects) through ingest");
        AddConfigOption(c, o->common);
        AddJsonOption(c, o->common);
        c->add_option("FILE", o->file, "the capture, or - for standard input")->required();
        c->add_option("--destination", o->destination, "the destination they were sent to");
        c->add_flag("--dry-run", o->dry_run,
                    "classify every event against the stored state; write nothing");
        c->callback([&inv, o] { inv.action = [&inv, o] { return ReplayEvents(inv, *o); }; });
    }
}

}  // namespace audsync::cli
