// What every CLI command shares: config loading, exits, progress and the direct store.
#include "common.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "audsync/app/runtime.hpp"
#include "audsync/common/log.hpp"
#include "audsync/store/writer.hpp"

namespace audsync::cli {

void AddConfigOption(CLI::App* command, CommonOptions& options) {
    command->add_option("--config", options.config_path, "config file (default: $AUDSYNC_CONFIG)");
}

void AddJsonOption(CLI::App* command, CommonOptions& options) {
    command->add_flag("--json", options.json, "machine-readable JSON output");
}

Result<std::shared_ptr<const config::Config>> LoadConfig(Invocation& inv,
                                                         const CommonOptions& options,
                                                         Secrets secrets) {
    (void)inv;
    std::string path = options.config_path;
    if (path.empty()) {
        if (const char* env = std::getenv("AUDSYNC_CONFIG"); env != nullptr && *env != '\0') {
            path = env;
        }
    }
    if (path.empty()) {
        return MakeError(ErrorCode::kInvalidBody, "no_config",
                         "no config file: pass --config PATH or set AUDSYNC_CONFIG");
    }
    config::LoadOptions load;
    load.resolve_secrets = secrets == Secrets::kNeeded;
    auto loaded = config::LoadFile(path, config::ProcessEnv(), load);
    if (!loaded) return loaded.error();
    // From here on the config's log format holds (a JSON log is JSON from its first line).
    log::SetFormat(loaded.value().log_format);
    // The file may hold secrets when it does not take them from the environment. Group
    // access is the service's own when the group is this process's (the Debian package
    // installs the config root:audsync 0640 for the service user audsync): no warning.
    struct stat st {};
    if (stat(path.c_str(), &st) == 0 &&
        ((st.st_mode & 007) != 0 || ((st.st_mode & 070) != 0 && st.st_gid != getegid()))) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        log::Warn("config file " + path + " is readable by other users (mode " + mode +
                  "); it may hold secrets: chmod 600 it, or take them from ${VARIABLES}");
    }
    return std::shared_ptr<const config::Config>(
        std::make_shared<config::Config>(std::move(loaded).value()));
}

int Fail(Invocation& inv, const std::string& message) {
    inv.err << "audsync: " << message << "\n";
    return 1;
}

int Fail(Invocation& inv, const Error& error) { return Fail(inv, error.message); }

int UsageError(Invocation& inv, const std::string& message) {
    inv.err << "audsync: " << message << "\n";
    return 2;
}

Result<std::unique_ptr<admin::Service>> OpenDirect(Invocation& inv, const CommonOptions& options,
                                                   std::shared_ptr<const config::Config> config) {
    (void)inv;
    std::string config_path = options.config_path;
    if (config_path.empty()) {
        if (const char* env = std::getenv("AUDSYNC_CONFIG")) config_path = env;
    }
    AUDSYNC_TRY(app::RequireDatabase(config->database, config_path));
    const std::string db = config->database;
    return std::make_unique<admin::Service>(
        std::move(config), db,
        [db](const std::function<void(store::WriteStore&)>& f) {
            return store::WriteDirect(db, f);
        },
        nullptr, nullptr);
}

bool Terminal() { return isatty(STDERR_FILENO) == 1; }

void Progress(const std::string& line) {
    if (!Terminal()) return;
    std::cerr << "\r\033[K" << line << std::flush;
}

void ProgressDone() {
    if (Terminal()) std::cerr << "\r\033[K" << std::flush;
}

std::string Bar(double fraction, size_t width) {
    fraction = std::max(0.0, std::min(1.0, fraction));
    size_t filled = static_cast<size_t>(fraction * static_cast<double>(width));
    return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " +
           std::to_string(static_cast<int>(fraction * 100)) + "%";
}

}  // namespace audsync::cli
