#include "audsync/cli/cli.hpp"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "audsync/common/log.hpp"
#include "audsync/config/config.hpp"
#include "audsync/http/server.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/sync/engine.hpp"
#include "audsync/targets/launchdarkly.hpp"

namespace audsync::cli {
namespace {

constexpr const char* kUsage =
    "usage: audsync <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve    [--config PATH]   accept Segment events and serve the API\n"
    "  migrate  [--config PATH | --database PATH]\n"
    "                             apply pending database migrations and exit\n"
    "  check    [--config PATH] [--destination ID]\n"
    "                             verify each destination's credentials with the platform\n"
    "  version                    print the version\n"
    "  help                       print this help\n"
    "\n"
    "The config file is --config PATH, else $AUDSYNC_CONFIG. See README.md.\n";

int Usage(const std::string& problem) {
    if (!problem.empty()) std::cerr << "audsync: " << problem << "\n\n";
    std::cerr << kUsage;
    return kExitUsage;
}

// Parses "--name value" pairs from `args`; anything else is a usage error.
bool ParseFlags(const std::vector<std::string>& args, const std::vector<std::string>& allowed,
                std::map<std::string, std::string>* out, std::string* problem) {
    for (size_t i = 0; i < args.size(); ++i) {
        std::string name = args[i];
        std::string value;
        size_t eq = name.find('=');
        if (name.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        } else if (i + 1 < args.size()) {
            value = args[++i];
        } else {
            *problem = "missing value for " + name;
            if (name.rfind("--", 0) != 0) *problem = "unexpected argument " + name;
            return false;
        }
        bool known = false;
        for (const auto& a : allowed) known = known || a == name;
        if (!known) {
            *problem = "unknown option " + name;
            return false;
        }
        (*out)[name] = value;
    }
    return true;
}

std::optional<std::string> ConfigPath(const std::map<std::string, std::string>& flags) {
    auto it = flags.find("--config");
    if (it != flags.end()) return it->second;
    if (const char* env = std::getenv("AUDSYNC_CONFIG")) return std::string(env);
    return std::nullopt;
}

Result<config::Config> LoadConfig(const std::map<std::string, std::string>& flags) {
    auto path = ConfigPath(flags);
    if (!path) {
        return MakeError(ErrorCode::kInvalidBody, "no_config",
                         "no config file: pass --config PATH or set AUDSYNC_CONFIG");
    }
    return config::LoadFile(*path, config::ProcessEnv());
}

int Migrate(const std::vector<std::string>& args) {
    std::map<std::string, std::string> flags;
    std::string problem;
    if (!ParseFlags(args, {"--config", "--database"}, &flags, &problem)) return Usage(problem);
    std::string database;
    if (flags.count("--database")) {
        database = flags["--database"];
    } else {
        auto c = LoadConfig(flags);
        if (!c) {
            std::cerr << "audsync: " << c.error().message << "\n";
            return kExitFailed;
        }
        database = c.value().database;
    }
    try {
        store::Database db(database, true);
        auto applied = store::Migrate(db, store::EmbeddedMigrations());
        if (!applied) {
            std::cerr << "audsync: " << applied.error().message << "\n";
            return kExitFailed;
        }
        if (applied.value().empty()) {
            std::cout << "database " << database << " is up to date (schema version "
                      << db.SchemaVersion() << ")\n";
        } else {
            for (int v : applied.value()) std::cout << "applied migration " << v << "\n";
        }
    } catch (const store::SqliteError& e) {
        std::cerr << "audsync: " << e.what() << "\n";
        return kExitFailed;
    }
    return kExitOk;
}

int Serve(const std::vector<std::string>& args) {
    std::map<std::string, std::string> flags;
    std::string problem;
    if (!ParseFlags(args, {"--config"}, &flags, &problem)) return Usage(problem);
    auto loaded = LoadConfig(flags);
    if (!loaded) {
        std::cerr << "audsync: " << loaded.error().message << "\n";
        return kExitFailed;
    }
    const config::Config config = std::move(loaded).value();

    // Every thread started below inherits this mask, so the signals reach sigwait only.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    try {
        store::Database reader(config.database, true);
        auto migrated = store::Migrate(reader, store::EmbeddedMigrations());
        if (!migrated) {
            std::cerr << "audsync: " << migrated.error().message << "\n";
            return kExitFailed;
        }
        const int newest = store::EmbeddedMigrations().back().version;
        ingest::AudienceRegistry audiences;
        for (const auto& a : store::LoadAudiences(reader)) {
            audiences.Put(a.destination, a.external_id, a.context_kind);
        }

        store::WriterOptions wopts;
        wopts.max_pending_weight = config.limits.max_pending_events;
        wopts.dedupe_window_ms = int64_t{config.dedupe_window_hours} * 3600 * 1000;
        store::Writer writer(config.database, wopts);
        for (const auto& d : config.destinations) {
            Status s = writer.Run([&](store::WriteStore& w) { w.EnsureDestination(d.id, 0); }, 1);
            if (!s) {
                std::cerr << "audsync: " << s.error().message << "\n";
                return kExitFailed;
            }
        }
        ingest::Service service(config, writer, audiences);
        sync::Engine engine(config, config.database, writer, targets::MakeTarget);
        writer.SetAfterCommit([&engine] { engine.Wake(); });
        engine.Start();
        std::mutex reader_mu;
        http::Server server(config, service, [&]() {
            std::lock_guard<std::mutex> lock(reader_mu);
            try {
                return reader.SchemaVersion() == newest;
            } catch (const store::SqliteError&) {
                return false;
            }
        });
        try {
            server.Start();
        } catch (const std::exception& e) {
            std::cerr << "audsync: cannot listen on " << config.listen_host << ":"
                      << config.listen_port << ": " << e.what() << "\n";
            return kExitFailed;
        }
        std::cout << "audsync " << AUDSYNC_VERSION << " listening on http://" << config.listen_host
                  << ":" << server.port() << " (database " << config.database << ", "
                  << config.destinations.size() << " destinations)" << std::endl;
        int sig = 0;
        sigwait(&signals, &sig);
        log::Info(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                  ", shutting down");
        server.Stop();
        writer.SetAfterCommit(nullptr);
        engine.Stop();
        writer.Stop();
    } catch (const store::SqliteError& e) {
        std::cerr << "audsync: " << e.what() << "\n";
        return kExitFailed;
    }
    return kExitOk;
}

int Check(const std::vector<std::string>& args) {
    std::map<std::string, std::string> flags;
    std::string problem;
    if (!ParseFlags(args, {"--config", "--destination"}, &flags, &problem)) return Usage(problem);
    auto loaded = LoadConfig(flags);
    if (!loaded) {
        std::cerr << "audsync: " << loaded.error().message << "\n";
        return kExitFailed;
    }
    const config::Config& config = loaded.value();
    std::vector<const config::Destination*> chosen;
    for (const auto& d : config.destinations) {
        if (!flags.count("--destination") || flags["--destination"] == d.id) chosen.push_back(&d);
    }
    if (chosen.empty()) {
        std::cerr << "audsync: "
                  << (flags.count("--destination") ? "no destination has that id"
                                                   : "the config has no destinations")
                  << "\n";
        return kExitFailed;
    }
    bool all_ok = true;
    for (const auto* d : chosen) {
        auto target = targets::MakeTarget(*d);
        targets::CheckResult r = target->Check();
        std::cout << d->id << ": " << (r.ok ? "ok" : "FAILED") << "\n";
        for (const auto& line : r.lines) std::cout << "  " << line << "\n";
        all_ok = all_ok && r.ok;
    }
    return all_ok ? kExitOk : kExitFailed;
}

}  // namespace

int Run(int argc, char** argv) {
    if (argc < 2) return Usage("");
    std::string command = argv[1];
    std::vector<std::string> args(argv + 2, argv + argc);
    if (command == "serve") return Serve(args);
    if (command == "migrate") return Migrate(args);
    if (command == "check") return Check(args);
    if (command == "version" || command == "--version") {
        if (!args.empty()) return Usage("version takes no arguments");
        std::cout << "audsync " << AUDSYNC_VERSION << "\n";
        return kExitOk;
    }
    if (command == "help" || command == "--help" || command == "-h") {
        std::cout << kUsage;
        return kExitOk;
    }
    return Usage("unknown command " + command);
}

}  // namespace audsync::cli
