// repair future-times: undoes what events dated far in the future did to member ordering.
#include <cstdlib>

#include "audsync/app/runtime.hpp"
#include "audsync/cli/cli.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "audsync/store/writer.hpp"
#include "common.hpp"

namespace audsync::cli {
namespace {

struct RepairOptions {
    CommonOptions common;
    bool dry_run = false;
};

int FutureTimes(Invocation& inv, const RepairOptions& o) {
    auto config = LoadConfig(inv, o.common, Secrets::kNotNeeded);
    if (!config) return Fail(inv, config.error());
    const config::Config& c = *config.value();
    std::string config_path = o.common.config_path;
    if (config_path.empty()) {
        if (const char* env = std::getenv("AUDSYNC_CONFIG")) config_path = env;
    }
    if (auto exists = app::RequireDatabase(c.database, config_path); !exists) {
        return Fail(inv, exists.error());
    }
    const int64_t skew_seconds = c.limits.max_future_skew_seconds;
    const int64_t skew_ms = skew_seconds * 1000;
    const std::string what = " dated more than " + std::to_string(skew_seconds) +
                             " s (limits.max_future_skew_seconds) after they were received";
    if (o.dry_run) {
        int64_t count = 0;
        try {
            store::Database db(c.database, false);
            count = store::CountFutureDated(db, skew_ms);
        } catch (const store::SqliteError& e) {
            return Fail(inv, std::string("cannot read the database: ") + e.what());
        }
        if (o.common.json) {
            inv.out << "{\"dry_run\":true,\"members\":" << count << "}\n";
        } else {
            inv.out << count << " member(s) decided by events" << what
                    << "; nothing changed (--dry-run)\n";
        }
        return kExitOk;
    }
    int64_t repaired = 0;
    Status written = store::WriteDirect(
        c.database, [&](store::WriteStore& store) { repaired = store.RepairFutureTimes(skew_ms); });
    if (!written) return Fail(inv, written.error());
    if (o.common.json) {
        inv.out << "{\"dry_run\":false,\"members\":" << repaired << "}\n";
    } else {
        inv.out << "repaired " << repaired << " member(s) decided by events" << what
                << ": their ordering time is now their receive time\n";
    }
    return kExitOk;
}

}  // namespace

void AddRepairCommands(CLI::App& app, Invocation& inv) {
    auto* repair = app.add_subcommand("repair", "fix a database damaged by bad input");
    repair->require_subcommand(1);
    auto o = std::make_shared<RepairOptions>();
    auto* c = repair->add_subcommand(
        "future-times",
        "members decided by an event dated beyond limits.max_future_skew_seconds after its "
        "receipt: order them by their receive time instead (safe beside a running server)");
    AddConfigOption(c, o->common);
    AddJsonOption(c, o->common);
    c->add_flag("--dry-run", o->dry_run, "count them and change nothing");
    c->callback([&inv, o] { inv.action = [&inv, o] { return FutureTimes(inv, *o); }; });
}

}  // namespace audsync::cli
