#include "audsync/cli/cli.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "audsync/admin/admin.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/config/config.hpp"
#include "audsync/http/server.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/segment/stream.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/queries.hpp"
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
    "  serve                         accept Segment events, sync, serve the API\n"
    "  migrate [--database PATH]     apply pending database migrations and exit\n"
    "  check [--destination ID]      verify each destination's credentials\n"
    "  segments list [--destination D] [--audience-key K]\n"
    "  segments show ID\n"
    "  segments members ID [--state included|excluded|pending|dead] [--limit N]\n"
    "  replay segments [--destination D] [--segment ID] [--dry-run] [--push-now]\n"
    "                                re-push current membership\n"
    "  replay events FILE|- [--destination D]\n"
    "                                feed captured events through the ingest path\n"
    "  dead-letters list [--segment ID] [--limit N]\n"
    "  dead-letters retry|discard (--segment ID | DEAD-LETTER-ID...)\n"
    "  version | help\n"
    "\n"
    "Every command but version and help reads the config from --config PATH, else\n"
    "$AUDSYNC_CONFIG. Add --json for machine-readable output. Exit codes: 0 ok,\n"
    "1 failed, 2 usage.\n";

int Usage(const std::string& problem) {
    if (!problem.empty()) std::cerr << "audsync: " << problem << "\n\n";
    std::cerr << kUsage;
    return kExitUsage;
}

int Fail(const std::string& message) {
    std::cerr << "audsync: " << message << "\n";
    return kExitFailed;
}

// Parsed "--flag value", "--switch" and positional arguments.
struct Args {
    std::map<std::string, std::string> values;
    std::set<std::string> switches;
    std::vector<std::string> positional;
    bool Has(const std::string& s) const { return switches.count(s) > 0; }
    std::optional<std::string> Get(const std::string& name) const {
        auto it = values.find(name);
        if (it == values.end()) return std::nullopt;
        return it->second;
    }
};

// `with_value` flags take a value; `switches` take none. "-" is a positional.
bool Parse(const std::vector<std::string>& in, const std::set<std::string>& with_value,
           const std::set<std::string>& switches, Args* out, std::string* problem) {
    for (size_t i = 0; i < in.size(); ++i) {
        const std::string& a = in[i];
        if (a.size() < 3 || a.rfind("--", 0) != 0) {
            out->positional.push_back(a);
            continue;
        }
        std::string name = a;
        std::optional<std::string> value;
        if (size_t eq = a.find('='); eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
        }
        if (switches.count(name)) {
            if (value) {
                *problem = name + " takes no value";
                return false;
            }
            out->switches.insert(name);
        } else if (with_value.count(name)) {
            if (!value) {
                if (i + 1 >= in.size()) {
                    *problem = "missing value for " + name;
                    return false;
                }
                value = in[++i];
            }
            out->values[name] = *value;
        } else {
            *problem = "unknown option " + name;
            return false;
        }
    }
    return true;
}

Result<config::Config> LoadConfig(const Args& args) {
    std::optional<std::string> path = args.Get("--config");
    if (!path) {
        if (const char* env = std::getenv("AUDSYNC_CONFIG"); env != nullptr && *env != '\0') {
            path = env;
        }
    }
    if (!path) {
        return MakeError(ErrorCode::kInvalidBody, "no_config",
                         "no config file: pass --config PATH or set AUDSYNC_CONFIG");
    }
    // The file may hold secrets when it does not take them from the environment.
    struct stat st {};
    if (stat(path->c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        log::Warn("config file " + *path + " is readable by other users (mode " + mode +
                  "); it may hold secrets: chmod 600 it, or take them from ${VARIABLES}");
    }
    return config::LoadFile(*path, config::ProcessEnv());
}

// Opens and migrates the database of a config, for the commands that work on it.
Status OpenDatabase(const config::Config& config) {
    try {
        store::Database db(config.database, true);
        auto migrated = store::Migrate(db, store::EmbeddedMigrations());
        if (!migrated) return migrated.error();
    } catch (const store::SqliteError& e) {
        return MakeError(ErrorCode::kUnavailable, "storage_unavailable", e.what());
    }
    return Ok();
}

// Writes in a transaction of the CLI's own; SQLite serialises it with a running server.
admin::WriteRunner DirectWriter(const std::string& path) {
    return [path](const std::function<void(store::WriteStore&)>& f) -> Status {
        return store::WriteDirect(path, f);
    };
}

std::string Cell(std::string s, size_t width) {
    if (s.size() > width) s = s.substr(0, width - 1) + "~";
    return s + std::string(width - s.size() + 2, ' ');
}

std::string Time(std::optional<int64_t> ms) { return ms ? text::FormatIso8601(*ms) : "-"; }

bool Terminal() { return isatty(STDERR_FILENO) == 1; }

void Progress(const std::string& line) {
    if (!Terminal()) return;
    std::cerr << "\r\033[K" << line << std::flush;
}

void ProgressDone() {
    if (Terminal()) std::cerr << "\r\033[K" << std::flush;
}

std::string Bar(double fraction, size_t width = 30) {
    fraction = std::max(0.0, std::min(1.0, fraction));
    size_t filled = static_cast<size_t>(fraction * static_cast<double>(width));
    return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " +
           std::to_string(static_cast<int>(fraction * 100)) + "%";
}

// --- serve, migrate, check -------------------------------------------------------

int Migrate(const std::vector<std::string>& in) {
    Args args;
    std::string problem;
    if (!Parse(in, {"--config", "--database"}, {}, &args, &problem)) return Usage(problem);
    if (!args.positional.empty()) return Usage("unexpected argument " + args.positional[0]);
    std::string database;
    if (auto d = args.Get("--database")) {
        database = *d;
    } else {
        auto c = LoadConfig(args);
        if (!c) return Fail(c.error().message);
        database = c.value().database;
    }
    try {
        store::Database db(database, true);
        auto applied = store::Migrate(db, store::EmbeddedMigrations());
        if (!applied) return Fail(applied.error().message);
        if (applied.value().empty()) {
            std::cout << "database " << database << " is up to date (schema version "
                      << db.SchemaVersion() << ")\n";
        } else {
            for (int v : applied.value()) std::cout << "applied migration " << v << "\n";
        }
    } catch (const store::SqliteError& e) {
        return Fail(e.what());
    }
    return kExitOk;
}

int Serve(const std::vector<std::string>& in) {
    Args args;
    std::string problem;
    if (!Parse(in, {"--config"}, {}, &args, &problem)) return Usage(problem);
    if (!args.positional.empty()) return Usage("unexpected argument " + args.positional[0]);
    auto loaded = LoadConfig(args);
    if (!loaded) return Fail(loaded.error().message);
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
        if (!migrated) return Fail(migrated.error().message);
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
            if (!s) return Fail(s.error().message);
        }
        ingest::Service service(config, writer, audiences);
        sync::Engine engine(std::make_shared<const config::Config>(config), config.database, writer,
                            targets::MakeTarget);
        writer.SetAfterCommit([&engine] { engine.Wake(); });
        engine.Start();
        admin::Service admin(
            config, config.database,
            [&writer](const std::function<void(store::WriteStore&)>& f) {
                return writer.Run([&](store::WriteStore& w) { f(w); }, 1);
            },
            &service.counters(), &engine.counters());
        std::mutex reader_mu;
        http::Server server(config, service, admin, [&]() {
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
            return Fail("cannot listen on " + config.listen_host + ":" +
                        std::to_string(config.listen_port) + ": " + e.what());
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
        return Fail(e.what());
    }
    return kExitOk;
}

int Check(const std::vector<std::string>& in) {
    Args args;
    std::string problem;
    if (!Parse(in, {"--config", "--destination"}, {}, &args, &problem)) return Usage(problem);
    if (!args.positional.empty()) return Usage("unexpected argument " + args.positional[0]);
    auto loaded = LoadConfig(args);
    if (!loaded) return Fail(loaded.error().message);
    const config::Config& config = loaded.value();
    std::vector<const config::Destination*> chosen;
    for (const auto& d : config.destinations) {
        if (!args.Get("--destination") || *args.Get("--destination") == d.id) chosen.push_back(&d);
    }
    if (chosen.empty()) {
        return Fail(args.Get("--destination") ? "no destination has that id"
                                              : "the config has no destinations");
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

// --- segments --------------------------------------------------------------------

int Segments(const std::vector<std::string>& in) {
    Args args;
    std::string problem;
    if (!Parse(in, {"--config", "--destination", "--audience-key", "--state", "--limit"},
               {"--json"}, &args, &problem)) {
        return Usage(problem);
    }
    if (args.positional.empty()) return Usage("segments needs list, show or members");
    const std::string verb = args.positional[0];
    auto loaded = LoadConfig(args);
    if (!loaded) return Fail(loaded.error().message);
    const config::Config& config = loaded.value();
    if (Status s = OpenDatabase(config); !s) return Fail(s.error().message);
    const bool as_json = args.Has("--json");
    try {
        store::Database db(config.database, false);
        if (verb == "list") {
            if (args.positional.size() != 1) return Usage("segments list takes no arguments");
            store::SegmentFilter f;
            f.destination = args.Get("--destination");
            f.audience_key = args.Get("--audience-key");
            auto rows = store::ListSegments(db, f);
            if (as_json) {
                std::cout << "{\"segments\":[";
                for (size_t i = 0; i < rows.size(); ++i) {
                    std::cout << (i ? "," : "") << admin::SegmentJson(rows[i], false);
                }
                std::cout << "]}\n";
                return kExitOk;
            }
            std::cout << Cell("ID", 6) << Cell("DESTINATION", 14) << Cell("AUDIENCE KEY", 28)
                      << Cell("KIND", 10) << Cell("MEMBERS", 9) << Cell("PENDING", 9)
                      << Cell("DEAD", 6) << Cell("STATUS", 12) << "LAST SYNCED\n";
            for (const auto& s : rows) {
                std::cout << Cell(std::to_string(s.id), 6) << Cell(s.destination, 14)
                          << Cell(s.audience_key, 28) << Cell(s.context_kind, 10)
                          << Cell(std::to_string(s.included), 9)
                          << Cell(std::to_string(s.pending), 9) << Cell(std::to_string(s.dead), 6)
                          << Cell(admin::SegmentStatus(s), 12) << Time(s.last_synced_ms) << "\n";
            }
            return kExitOk;
        }
        if (args.positional.size() != 2) return Usage("segments " + verb + " needs one segment ID");
        char* end = nullptr;
        long long id = std::strtoll(args.positional[1].c_str(), &end, 10);
        store::SegmentFilter f;
        f.id = id;
        auto rows = (*end == '\0' && id > 0) ? store::ListSegments(db, f)
                                             : std::vector<store::SegmentSummary>();
        if (rows.empty()) return Fail("no segment has the id " + args.positional[1]);
        const auto& s = rows[0];
        if (verb == "show") {
            if (as_json) {
                std::cout << admin::SegmentJson(s, true) << "\n";
                return kExitOk;
            }
            std::cout << "id:             " << s.id << "\n"
                      << "destination:    " << s.destination << "\n"
                      << "audience:       " << s.audience_key << " (" << s.audience_id << ")\n"
                      << "context kind:   " << s.context_kind << "\n"
                      << "status:         " << admin::SegmentStatus(s) << "\n"
                      << "included:       " << s.included << "\n"
                      << "excluded:       " << s.excluded << "\n"
                      << "pending:        " << s.pending << " (" << s.retrying << " retrying)\n"
                      << "dead letters:   " << s.dead << "\n"
                      << "last synced:    " << Time(s.last_synced_ms) << "\n"
                      << "next retry:     " << Time(s.next_retry_ms) << "\n"
                      << "last error:     " << s.last_error.value_or("-") << "\n";
            return kExitOk;
        }
        if (verb == "members") {
            store::MemberState state = store::MemberState::kAll;
            if (auto st = args.Get("--state")) {
                auto parsed = admin::ParseMemberState(*st);
                if (!parsed) return Usage("--state is included, excluded, pending or dead");
                state = *parsed;
            }
            int64_t limit = -1;
            if (auto l = args.Get("--limit")) {
                char* e = nullptr;
                limit = std::strtoll(l->c_str(), &e, 10);
                if (*e != '\0' || limit < 1) return Usage("--limit takes a positive number");
            }
            if (!as_json) {
                std::cout << Cell("CONTEXT KEY", 32) << Cell("STATE", 9) << Cell("ACKED", 9)
                          << Cell("PENDING", 8) << Cell("DEAD", 5) << Cell("DECIDED BY", 28)
                          << "EVENT TIME\n";
            }
            // Streams page by page: memory stays flat on millions of members.
            std::optional<std::string> after;
            int64_t printed = 0;
            for (;;) {
                auto page = store::ListMembers(db, s.id, state, after, 1000);
                for (const auto& m : page) {
                    if (limit >= 0 && printed >= limit) return kExitOk;
                    if (as_json) {
                        std::cout << admin::MemberJson(m) << "\n";
                    } else {
                        std::cout << Cell(m.context_key, 32)
                                  << Cell(m.desired ? "included" : "excluded", 9)
                                  << Cell(m.acked ? (*m.acked ? "included" : "excluded") : "-", 9)
                                  << Cell(m.pending() ? "yes" : "no", 8)
                                  << Cell(m.dead ? "yes" : "no", 5) << Cell(m.message_id, 28)
                                  << text::FormatIso8601(m.event_ms) << "\n";
                    }
                    ++printed;
                }
                if (page.size() < 1000) break;
                after = page.back().context_key;
            }
            return kExitOk;
        }
        return Usage("unknown segments command " + verb);
    } catch (const store::SqliteError& e) {
        return Fail(e.what());
    }
}

// --- dead letters ------------------------------------------------------------------

int DeadLetters(const std::vector<std::string>& in) {
    Args args;
    std::string problem;
    if (!Parse(in, {"--config", "--segment", "--limit"}, {"--json"}, &args, &problem)) {
        return Usage(problem);
    }
    if (args.positional.empty()) return Usage("dead-letters needs list, retry or discard");
    const std::string verb = args.positional[0];
    auto loaded = LoadConfig(args);
    if (!loaded) return Fail(loaded.error().message);
    const config::Config& config = loaded.value();
    if (Status s = OpenDatabase(config); !s) return Fail(s.error().message);
    admin::Service service(config, config.database, DirectWriter(config.database), nullptr,
                           nullptr);
    if (verb == "list") {
        if (args.positional.size() != 1) return Usage("dead-letters list takes no arguments");
        try {
            store::Database db(config.database, false);
            std::optional<int64_t> segment;
            if (auto s = args.Get("--segment")) segment = std::strtoll(s->c_str(), nullptr, 10);
            int64_t limit =
                args.Get("--limit") ? std::strtoll(args.Get("--limit")->c_str(), nullptr, 10) : -1;
            if (args.Get("--limit") && limit < 1) return Usage("--limit takes a positive number");
            if (!args.Has("--json")) {
                std::cout << Cell("ID", 36) << Cell("STATE", 9) << Cell("STATUS", 7) << "ERROR\n";
            }
            std::optional<std::pair<int64_t, std::string>> after;
            int64_t printed = 0;
            for (;;) {
                auto page = store::ListDeadLetters(db, segment, after, 1000);
                for (const auto& m : page) {
                    if (limit >= 0 && printed >= limit) return kExitOk;
                    if (args.Has("--json")) {
                        std::cout << admin::DeadLetterJson(m) << "\n";
                    } else {
                        std::cout << Cell(std::to_string(m.segment_id) + ":" + m.context_key, 36)
                                  << Cell(m.desired ? "included" : "excluded", 9)
                                  << Cell(m.last_status ? std::to_string(*m.last_status) : "-", 7)
                                  << m.last_error.value_or("-") << "\n";
                    }
                    ++printed;
                }
                if (page.size() < 1000) break;
                after = std::make_pair(page.back().segment_id, page.back().context_key);
            }
            return kExitOk;
        } catch (const store::SqliteError& e) {
            return Fail(e.what());
        }
    }
    if (verb != "retry" && verb != "discard") return Usage("unknown dead-letters command " + verb);
    std::string body;
    if (auto s = args.Get("--segment")) {
        char* end = nullptr;
        long long id = std::strtoll(s->c_str(), &end, 10);
        if (*end != '\0' || id < 1) return Usage("--segment takes a segment id");
        if (args.positional.size() > 1) return Usage("give --segment or dead-letter ids, not both");
        body = "{\"segment\":" + std::to_string(id) + "}";
    } else {
        if (args.positional.size() < 2)
            return Usage("dead-letters " + verb + " needs --segment ID or ids");
        body = "{\"ids\":[";
        for (size_t i = 1; i < args.positional.size(); ++i) {
            if (i > 1) body += ',';
            json::AppendQuoted(body, args.positional[i]);
        }
        body += "]}";
    }
    auto r = verb == "retry" ? service.RetryDeadLetters(body) : service.DiscardDeadLetters(body);
    if (!r) return Fail(r.error().message);
    if (args.Has("--json")) {
        std::cout << r.value() << "\n";
    } else {
        rapidjson::Document doc;
        (void)json::Parse(r.value(), doc, 4);
        const char* key = verb == "retry" ? "retried" : "discarded";
        std::cout << key << " " << doc[key].GetInt64() << " dead letters\n";
    }
    return kExitOk;
}

// --- replay ------------------------------------------------------------------------

int ReplaySegments(const config::Config& config, const Args& args) {
    store::SegmentFilter f;
    f.destination = args.Get("--destination");
    std::vector<store::SegmentSummary> segments;
    try {
        store::Database db(config.database, false);
        if (auto s = args.Get("--segment")) {
            char* end = nullptr;
            long long id = std::strtoll(s->c_str(), &end, 10);
            if (*end != '\0' || id < 1) return Usage("--segment takes a segment id");
            f.id = id;
        }
        segments = store::ListSegments(db, f);
        if (segments.empty()) return Fail("no segment matches");
        if (args.Has("--dry-run")) {
            int64_t adds = 0, removes = 0;
            std::string out = "{\"segments\":[";
            for (size_t i = 0; i < segments.size(); ++i) {
                const auto& s = segments[i];
                adds += s.included;
                removes += s.excluded;
                auto sample =
                    store::ListMembers(db, s.id, store::MemberState::kIncluded, std::nullopt, 5);
                if (args.Has("--json")) {
                    out += (i ? "," : "") + std::string("{\"segment\":") +
                           admin::SegmentJson(s, false) +
                           ",\"adds\":" + std::to_string(s.included) +
                           ",\"removes\":" + std::to_string(s.excluded) + ",\"sample\":[";
                    for (size_t j = 0; j < sample.size(); ++j) {
                        if (j) out += ',';
                        json::AppendQuoted(out, sample[j].context_key);
                    }
                    out += "]}";
                } else {
                    std::cout << "segment " << s.id << " (" << s.destination << ", "
                              << s.audience_key << ", " << s.context_kind << "): " << s.included
                              << " adds, " << s.excluded << " removes";
                    if (!sample.empty()) {
                        std::cout << "; e.g.";
                        for (const auto& m : sample) std::cout << " " << m.context_key;
                    }
                    std::cout << "\n";
                }
            }
            if (args.Has("--json")) {
                std::cout << out << "],\"adds\":" << adds << ",\"removes\":" << removes
                          << ",\"dry_run\":true}\n";
            } else {
                std::cout << "dry run: would re-push " << adds << " adds and " << removes
                          << " removes in " << segments.size() << " segments; nothing changed\n";
            }
            return kExitOk;
        }
    } catch (const store::SqliteError& e) {
        return Fail(e.what());
    }
    int64_t marked = 0;
    Status s = DirectWriter(config.database)([&](store::WriteStore& w) {
        for (const auto& seg : segments) marked += w.MarkForResync(seg.id);
    });
    if (!s) return Fail(s.error().message);
    if (!args.Has("--push-now")) {
        if (args.Has("--json")) {
            std::cout << "{\"marked\":" << marked << ",\"segments\":" << segments.size() << "}\n";
        } else {
            std::cout << "marked " << marked << " members of " << segments.size()
                      << " segments for re-push; a running audsync pushes them now\n";
        }
        return kExitOk;
    }
    // No server: push from here, with the same engine.
    try {
        store::Writer writer(config.database, store::WriterOptions{});
        sync::Engine engine(std::make_shared<const config::Config>(config), config.database, writer,
                            targets::MakeTarget);
        writer.SetAfterCommit([&engine] { engine.Wake(); });
        engine.Start();
        engine.Wake();
        store::Database db(config.database, false);
        auto pending = [&] {
            int64_t n = 0;
            for (const auto& seg : segments) n += store::CountPending(db, seg.id);
            return n;
        };
        int64_t last = -1;
        int64_t stalled_since = text::NowMs();
        constexpr int64_t kGiveUpMs = 60000;
        int64_t left = 0;
        for (;;) {
            left = pending();
            Progress(
                "replay " +
                Bar(marked ? 1.0 - static_cast<double>(left) / static_cast<double>(marked) : 1.0) +
                "  " + std::to_string(marked - left) + "/" + std::to_string(marked) + " members");
            if (left == 0) break;
            if (left != last) {
                last = left;
                stalled_since = text::NowMs();
            } else if (text::NowMs() - stalled_since > kGiveUpMs) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(500));  // progress poll
        }
        ProgressDone();
        writer.SetAfterCommit(nullptr);
        engine.Stop();
        writer.Stop();
        const auto& c = engine.counters();
        if (args.Has("--json")) {
            std::cout << "{\"marked\":" << marked << ",\"pushed\":" << c.members_acknowledged.load()
                      << ",\"pending\":" << left << ",\"dead_letters\":" << c.members_dead.load()
                      << "}\n";
        } else {
            std::cout << "replayed " << segments.size()
                      << " segments: " << c.members_acknowledged.load() << " members acknowledged, "
                      << left << " still pending, " << c.members_dead.load()
                      << " new dead letters\n";
        }
        return left == 0 ? kExitOk : kExitFailed;
    } catch (const store::SqliteError& e) {
        return Fail(e.what());
    }
}

int ReplayEvents(const config::Config& config, const Args& args) {
    if (args.positional.size() != 2) return Usage("replay events needs one FILE or -");
    const config::Destination* destination = nullptr;
    if (auto d = args.Get("--destination")) {
        destination = config.FindDestination(*d);
        if (destination == nullptr) return Fail("no destination has the id " + *d);
    } else if (config.destinations.size() == 1) {
        destination = &config.destinations[0];
    } else {
        return Usage("the config has several destinations: pass --destination ID");
    }
    const std::string& path = args.positional[1];
    std::ifstream file;
    std::istream* input = &std::cin;
    int64_t total_bytes = -1;
    if (path != "-") {
        file.open(path, std::ios::binary);
        if (!file) return Fail("cannot read " + path);
        input = &file;
        struct stat st {};
        if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) total_bytes = st.st_size;
    }
    try {
        store::Database reader(config.database, false);
        ingest::AudienceRegistry audiences;
        for (const auto& a : store::LoadAudiences(reader)) {
            audiences.Put(a.destination, a.external_id, a.context_kind);
        }
        store::Writer writer(config.database, store::WriterOptions{});
        ingest::Service service(config, writer, audiences);
        // Replayed batch objects may be larger than one live request.
        config::Limits limits = config.limits;
        limits.tracking_max_request_bytes = limits.webhook_max_request_bytes =
            std::max<size_t>(64 * 1024 * 1024, limits.webhook_max_request_bytes);
        limits.tracking_max_events = limits.webhook_max_events = 1000000;

        ingest::Summary total;
        std::map<std::string, size_t> reasons;
        std::vector<segment::Item> batch;
        size_t index = 0;  // of the next event in the whole input
        size_t batch_base = 0;
        Status stored = Ok();
        auto flush = [&]() {
            if (batch.empty() || !stored) return;
            auto r = service.Apply(*destination, batch, batch_base);
            if (!r) {
                stored = r.error();
                return;
            }
            total.accepted += r.value().accepted;
            total.duplicates += r.value().duplicates;
            total.stale += r.value().stale;
            total.not_applicable += r.value().not_applicable;
            for (auto& rej : r.value().rejected) ++reasons[rej.reason];
            batch.clear();
            batch_base = index;
        };
        auto reject = [&](const std::string& reason) {
            segment::Item item;
            item.error = segment::ItemError{reason, ""};
            batch.push_back(std::move(item));
            ++index;
        };
        segment::ValueSplitter splitter(limits.tracking_max_request_bytes);
        auto emit = [&](std::string_view value, bool oversize) {
            if (oversize) {
                reject("event_too_large");
            } else {
                // A Tracking API batch object, or one event.
                bool is_batch = value.find("\"batch\"") != std::string_view::npos;
                Result<segment::ParsedBody> parsed = segment::ParsedBody{};
                if (is_batch) {
                    parsed = segment::ParseTrackingBody(value, "", limits);
                    if (!parsed && parsed.error().name == "invalid_body") {
                        is_batch = false;  // an event that merely has a "batch" member
                    }
                }
                if (!is_batch) parsed = segment::ParseWebhookBody(value, limits);
                if (!parsed) {
                    reject(parsed.error().name);
                } else {
                    for (auto& item : parsed.value().items) {
                        batch.push_back(std::move(item));
                        ++index;
                    }
                }
            }
            if (batch.size() >= 500) flush();
        };
        std::vector<char> buffer(1 << 20);
        int64_t read_bytes = 0;
        Status stream = Ok();
        while (stream && stored && *input) {
            input->read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
            std::streamsize n = input->gcount();
            if (n <= 0) break;
            read_bytes += n;
            stream = splitter.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)), emit);
            if (total_bytes > 0) {
                Progress("replay " +
                         Bar(static_cast<double>(read_bytes) / static_cast<double>(total_bytes)) +
                         "  " + std::to_string(index) + " events");
            } else {
                Progress("replay: " + std::to_string(index) + " events");
            }
        }
        if (stream && stored) stream = splitter.Finish(emit);
        flush();
        ProgressDone();
        writer.Stop();
        if (!stored) return Fail(stored.error().message);
        size_t rejected = 0;
        for (const auto& [r, n] : reasons) rejected += n;
        if (args.Has("--json")) {
            std::string out = "{\"events\":" + std::to_string(index) +
                              ",\"accepted\":" + std::to_string(total.accepted) +
                              ",\"duplicates\":" + std::to_string(total.duplicates) +
                              ",\"stale\":" + std::to_string(total.stale) +
                              ",\"not_applicable\":" + std::to_string(total.not_applicable) +
                              ",\"rejected\":" + std::to_string(rejected) +
                              ",\"rejected_by_reason\":{";
            bool first = true;
            for (const auto& [r, n] : reasons) {
                if (!first) out += ',';
                first = false;
                json::AppendQuoted(out, r);
                out += ":" + std::to_string(n);
            }
            out += "}";
            if (!stream) {
                out += ",\"stream_error\":";
                json::AppendQuoted(out, stream.error().message);
            }
            std::cout << out << "}\n";
        } else {
            std::cout << "events:          " << index << "\n"
                      << "accepted:        " << total.accepted << "\n"
                      << "duplicates:      " << total.duplicates << "\n"
                      << "stale:           " << total.stale << "\n"
                      << "not applicable:  " << total.not_applicable << "\n"
                      << "rejected:        " << rejected << "\n";
            for (const auto& [r, n] : reasons) std::cout << "  " << r << ": " << n << "\n";
        }
        if (!stream) return Fail("the input stopped being JSON: " + stream.error().message);
        return kExitOk;
    } catch (const store::SqliteError& e) {
        return Fail(e.what());
    }
}

int Replay(const std::vector<std::string>& in) {
    Args args;
    std::string problem;
    if (!Parse(in, {"--config", "--destination", "--segment"},
               {"--json", "--dry-run", "--push-now"}, &args, &problem)) {
        return Usage(problem);
    }
    if (args.positional.empty()) return Usage("replay needs segments or events");
    const std::string what = args.positional[0];
    if (what != "segments" && what != "events") return Usage("unknown replay command " + what);
    if (what == "segments" && args.positional.size() != 1) {
        return Usage("replay segments takes no arguments");
    }
    auto loaded = LoadConfig(args);
    if (!loaded) return Fail(loaded.error().message);
    const config::Config& config = loaded.value();
    if (Status s = OpenDatabase(config); !s) return Fail(s.error().message);
    return what == "segments" ? ReplaySegments(config, args) : ReplayEvents(config, args);
}

}  // namespace

int Run(int argc, char** argv) {
    if (argc < 2) return Usage("");
    std::string command = argv[1];
    std::vector<std::string> args(argv + 2, argv + argc);
    if (command == "serve") return Serve(args);
    if (command == "migrate") return Migrate(args);
    if (command == "check") return Check(args);
    if (command == "segments") return Segments(args);
    if (command == "replay") return Replay(args);
    if (command == "dead-letters") return DeadLetters(args);
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
