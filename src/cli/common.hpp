// What every CLI command shares: its invocation, config loading, exits and the direct store.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "audsync/admin/admin.hpp"
#include "audsync/admin/render.hpp"
#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "text.hpp"

namespace audsync::cli {

// One run of the CLI: where it writes, and the action the parsed command chose.
struct Invocation {
    std::ostream& out;
    std::ostream& err;
    std::function<int()> action;  // set by the chosen command's parse callback
};

// Options most commands take.
struct CommonOptions {
    std::string config_path;  // --config, else $AUDSYNC_CONFIG
    bool json = false;        // --json
};

void AddConfigOption(CLI::App* command, CommonOptions& options);
void AddJsonOption(CLI::App* command, CommonOptions& options);

// Whether a command uses the config's secrets: reads and operator writes do not.
enum class Secrets { kNeeded, kNotNeeded };

// Loads the config of --config / $AUDSYNC_CONFIG, warning when the file is readable by
// others. Errors name the file and the field.
Result<std::shared_ptr<const config::Config>> LoadConfig(Invocation& inv,
                                                         const CommonOptions& options,
                                                         Secrets secrets);

// "audsync: <message>" on stderr; returns the exit code.
int Fail(Invocation& inv, const std::string& message);
int Fail(Invocation& inv, const Error& error);
int UsageError(Invocation& inv, const std::string& message);

// The operator core on the database of `config`, writing in transactions of its own
// (safe beside a running server). Refuses a missing database (nothing is created).
Result<std::unique_ptr<admin::Service>> OpenDirect(Invocation& inv, const CommonOptions& options,
                                                   std::shared_ptr<const config::Config> config);

// Loads the config without secrets and runs `f` on the operator core over its database
// (refusing a missing one); returns f's exit code, or 1 with the error printed.
template <typename F>
int WithService(Invocation& inv, const CommonOptions& o, F&& f) {
    auto config = LoadConfig(inv, o, Secrets::kNotNeeded);
    if (!config) return Fail(inv, config.error());
    auto service = OpenDirect(inv, o, config.value());
    if (!service) return Fail(inv, service.error());
    return f(*service.value());
}

// A result of the operator core, as JSON (--json, the REST rendering) or as text.
template <typename T>
void Print(Invocation& inv, const CommonOptions& o, const T& value) {
    if (o.json) {
        inv.out << admin::ToJson(value) << "\n";
    } else {
        text::Print(inv.out, value);
    }
}

// The same for a Result: an error exits 1.
template <typename T>
int Show(Invocation& inv, const CommonOptions& o, const Result<T>& r) {
    if (!r) return Fail(inv, r.error());
    Print(inv, o, r.value());
    return 0;
}

// A terminal on stderr gets progress lines; anything else gets none.
bool Terminal();
void Progress(const std::string& line);
void ProgressDone();
std::string Bar(double fraction, size_t width = 30);

// Command families (one file each).
void AddServerCommands(CLI::App& app, Invocation& inv);       // serve, migrate, check, backup
void AddSegmentCommands(CLI::App& app, Invocation& inv);      // segments ..., contexts
void AddDestinationCommands(CLI::App& app, Invocation& inv);  // destinations ...
void AddDeadLetterCommands(CLI::App& app, Invocation& inv);   // dead-letters ...
void AddReplayCommands(CLI::App& app, Invocation& inv);       // replay segments|events
void AddRepairCommands(CLI::App& app, Invocation& inv);       // repair future-times

}  // namespace audsync::cli
