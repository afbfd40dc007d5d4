// repair future-times: undoes what events dated far in the future did to member ordering.
#include "audsync/cli/cli.hpp"
#include "common.hpp"

namespace audsync::cli {
namespace {

struct RepairOptions {
    CommonOptions common;
    bool dry_run = false;
};

int FutureTimes(Invocation& inv, const RepairOptions& o) {
    return WithService(inv, o.common, [&](admin::Service& s) {
        return Show(inv, o.common, s.RepairFutureTimes(o.dry_run));
    });
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
