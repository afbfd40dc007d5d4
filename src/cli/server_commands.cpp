// serve, migrate, check and backup: the commands that run or look after a server.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>

#include "audsync/app/runtime.hpp"
#include "audsync/cli/cli.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/targets/launchdarkly.hpp"
#include "audsync/targets/segment.hpp"
#include "common.hpp"

namespace audsync::cli {
namespace {

std::string ConfigPathOf(const CommonOptions& o) {
    if (!o.config_path.empty()) return o.config_path;
    const char* env = std::getenv("AUDSYNC_CONFIG");
    return env != nullptr ? env : "";
}

// A start-up line on stdout (a supervisor waits for "listening on"): plain text, or one
// JSON record like every log line when log_format is json.
void StartupLine(std::ostream& out, const std::string& message, const log::Fields& fields) {
    if (log::CurrentFormat() == log::Format::kJson) {
        out << log::FormatRecord(::audsync::text::NowMs(), log::Level::kInfo, message, fields)
            << std::endl;
    } else {
        out << message << std::endl;
    }
}

int Serve(Invocation& inv, const CommonOptions& o) {
    auto loaded = LoadConfig(inv, o, Secrets::kNeeded);
    if (!loaded) return Fail(inv, loaded.error());
    std::shared_ptr<const config::Config> config = loaded.value();
    log::SetLevel(config->log_level);
    log::SetFormat(config->log_format);

    // Every thread started below inherits this mask, so the signals reach sigwait only.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    app::RuntimeOptions options;
    options.create_database = true;
    options.exclusive = true;
    options.sync = true;
    options.http = true;
    options.config_path = ConfigPathOf(o);
    auto runtime = app::Runtime::Start(config, options);
    if (!runtime) return Fail(inv, runtime.error());
    app::Runtime& rt = *runtime.value();
    const size_t n = config->destinations.size();
    // Before the "listening on" line, which tells a supervisor that everything is up.
    if (config->admin_listen) {
        const std::string admin =
            config->admin_listen->first + ":" + std::to_string(rt.admin_port());
        StartupLine(inv.out, "admin API and metrics on http://" + admin, {{"admin_listen", admin}});
    }
    const std::string listen = config->listen_host + ":" + std::to_string(rt.port());
    StartupLine(inv.out,
                std::string("audsync ") + AUDSYNC_VERSION + " listening on http://" + listen +
                    " (database " + config->database + ", " + std::to_string(n) +
                    (n == 1 ? " destination)" : " destinations)"),
                {{"version", AUDSYNC_VERSION},
                 {"listen", listen},
                 {"database", config->database},
                 {"destinations", std::to_string(n)}});
    for (;;) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig == SIGHUP) {
            // A config that does not load is refused; the running one stays in force.
            auto next = LoadConfig(inv, o, Secrets::kNeeded);
            if (!next) {
                log::Error("SIGHUP: the config was not reloaded, the running one stays: " +
                           next.error().message);
                continue;
            }
            for (const auto& w : rt.Reload(next.value())) log::Warn("SIGHUP: " + w);
            log::Info("SIGHUP: config reloaded (secrets, destinations, log level)");
            continue;
        }
        log::Info(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                  ", shutting down");
        break;
    }
    rt.Stop();
    return kExitOk;
}

int Migrate(Invocation& inv, const CommonOptions& o, const std::string& database_flag) {
    std::string database = database_flag;
    if (database.empty()) {
        auto c = LoadConfig(inv, o, Secrets::kNotNeeded);
        if (!c) return Fail(inv, c.error());
        database = c.value()->database;
    }
    try {
        store::Database db(database, true);
        auto applied = store::Migrate(db, store::EmbeddedMigrations());
        if (!applied) return Fail(inv, applied.error());
        if (applied.value().empty()) {
            inv.out << "database " << database << " is up to date (schema version "
                    << db.SchemaVersion() << ")\n";
        } else {
            for (int v : applied.value()) inv.out << "applied migration " << v << "\n";
        }
    } catch (const store::SqliteError& e) {
        return Fail(inv, e.what());
    }
    return kExitOk;
}

int Check(Invocation& inv, const CommonOptions& o, const std::string& only) {
    auto loaded = LoadConfig(inv, o, Secrets::kNeeded);
    if (!loaded) return Fail(inv, loaded.error());
    const config::Config& config = *loaded.value();
    std::vector<const config::Destination*> chosen;
    for (const auto& d : config.destinations) {
        if (only.empty() || only == d.id) chosen.push_back(&d);
    }
    if (chosen.empty()) {
        return Fail(inv, only.empty() ? "the config has no destinations"
                                      : "no destination has the id " + only);
    }
    bool all_ok = true;
    for (const auto* d : chosen) {
        for (const auto& t : d->targets) {
            auto target = targets::MakeTarget(t);
            targets::CheckResult r = target->Check();
            inv.out << d->id << "/" << t.id << " (" << t.platform
                    << "): " << (r.ok ? "ok" : "FAILED") << "\n";
            for (const auto& line : r.lines) inv.out << "  " << line << "\n";
            all_ok = all_ok && r.ok;
        }
        if (d->report.enabled) {
            // An empty batch: Segment answers 200 whatever the write key, so this proves
            // only that the Tracking API is reachable.
            targets::TrackingClient client(d->report);
            targets::HttpResult r = client.SendBatch(R"({"batch":[]})");
            const bool reached = r.status >= 200 && r.status < 500 && r.status != 401 &&
                                 r.status != 403 && r.status != 404;
            inv.out << d->id << "/report_to_segment: " << (reached ? "ok" : "FAILED") << "\n"
                    << "  Tracking API " << d->report.api_base << ": "
                    << (r.status == 0 ? "no answer (" + r.transport_error + ")"
                                      : "HTTP " + std::to_string(r.status))
                    << "\n  Segment accepts any write key here: see the source's debugger in "
                       "Segment for the reports arriving\n";
            all_ok = all_ok && reached;
        }
    }
    return all_ok ? kExitOk : kExitFailed;
}

int Backup(Invocation& inv, const CommonOptions& o, const std::string& file) {
    auto loaded = LoadConfig(inv, o, Secrets::kNotNeeded);
    if (!loaded) return Fail(inv, loaded.error());
    const config::Config& config = *loaded.value();
    if (Status s = app::RequireDatabase(config.database, ConfigPathOf(o)); !s) {
        return Fail(inv, s.error());
    }
    // The inbox first: what the database has applied by its later snapshot is in it,
    // and every event the inbox snapshot holds beyond that is applied after a restore.
    const std::string inbox = store::InboxPath(config.database);
    struct stat st {};
    const bool has_inbox = ::stat(inbox.c_str(), &st) == 0;
    if (has_inbox) {
        if (Status s = store::Backup(inbox, store::InboxPath(file)); !s) {
            return Fail(inv, s.error());
        }
    }
    if (Status s = store::Backup(config.database, file); !s) {
        if (has_inbox) ::unlink(store::InboxPath(file).c_str());
        return Fail(inv, s.error());
    }
    inv.out << "backed up " << config.database << " to " << file;
    if (has_inbox) inv.out << " and its inbox to " << store::InboxPath(file);
    inv.out << " (mode 0600)\n";
    return kExitOk;
}

}  // namespace

void AddServerCommands(CLI::App& app, Invocation& inv) {
    {
        auto o = std::make_shared<CommonOptions>();
        auto* c = app.add_subcommand("serve", "accept Segment events, sync, serve the API");
        AddConfigOption(c, *o);
        c->callback([&inv, o] { inv.action = [&inv, o] { return Serve(inv, *o); }; });
    }
    {
        auto o = std::make_shared<CommonOptions>();
        auto database = std::make_shared<std::string>();
        auto* c = app.add_subcommand("migrate", "apply pending database migrations and exit");
        AddConfigOption(c, *o);
        c->add_option("--database", *database, "the database file (instead of the config's)");
        c->callback([&inv, o, database] {
            inv.action = [&inv, o, database] { return Migrate(inv, *o, *database); };
        });
    }
    {
        auto o = std::make_shared<CommonOptions>();
        auto only = std::make_shared<std::string>();
        auto* c = app.add_subcommand("check", "verify each destination's credentials");
        AddConfigOption(c, *o);
        c->add_option("--destination", *only, "check only this destination");
        c->callback(
            [&inv, o, only] { inv.action = [&inv, o, only] { return Check(inv, *o, *only); }; });
    }
    {
        auto o = std::make_shared<CommonOptions>();
        auto file = std::make_shared<std::string>();
        auto* c = app.add_subcommand(
            "backup", "write a consistent copy of the database (safe beside a running server)");
        AddConfigOption(c, *o);
        c->add_option("FILE", *file, "the copy to write (must not exist)")->required();
        c->callback(
            [&inv, o, file] { inv.action = [&inv, o, file] { return Backup(inv, *o, *file); }; });
    }
}

}  // namespace audsync::cli
