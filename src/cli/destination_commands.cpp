// destinations list|show|resume|reports: where membership is pushed, lifting its pauses, and its
// reports to Segment.
#include "audsync/admin/render.hpp"
#include "audsync/cli/cli.hpp"
#include "common.hpp"
#include "text.hpp"

namespace audsync::cli {
namespace {

struct DestinationOptions {
    CommonOptions common;
    std::string id;
    std::string target;  // resume: one target only
    bool retry_dead = false;
    bool discard_dead = false;
    int limit = 50;
};

}  // namespace

void AddDestinationCommands(CLI::App& app, Invocation& inv) {
    auto* destinations =
        app.add_subcommand("destinations", "destinations, their targets and their pauses");
    destinations->require_subcommand(1);
    struct Verb {
        const char* name;
        const char* description;
        bool takes_id;
        int (*run)(Invocation&, const DestinationOptions&);
    };
    static const Verb kVerbs[] = {
        {"list", "every destination and target with its status, pause and last error", false,
         [](Invocation& inv, const DestinationOptions& o) {
             return WithService(inv, o.common, [&](admin::Service& s) {
                 return Show(inv, o.common, s.ListDestinations());
             });
         }},
        {"show", "one destination, secrets redacted", true,
         [](Invocation& inv, const DestinationOptions& o) {
             return WithService(inv, o.common, [&](admin::Service& s) {
                 return Show(inv, o.common, s.GetDestination(o.id));
             });
         }},
        {"resume", "clear auth and rate-limit pauses; pending members are pushed at once", true,
         [](Invocation& inv, const DestinationOptions& o) {
             return WithService(inv, o.common, [&](admin::Service& s) {
                 return Show(inv, o.common,
                             s.ResumeDestination(o.id, o.target.empty()
                                                           ? std::nullopt
                                                           : std::optional<std::string>(o.target)));
             });
         }},
        {"reports",
         "the destination's reports of synced changes to Segment, its dead reports, and "
         "retrying or discarding them",
         true,
         [](Invocation& inv, const DestinationOptions& o) {
             return WithService(inv, o.common, [&](admin::Service& s) {
                 if (o.retry_dead || o.discard_dead) {
                     return Show(inv, o.common, s.ChangeDeadReports(o.id, o.retry_dead));
                 }
                 return Show(inv, o.common, s.DestinationReports(o.id, o.limit));
             });
         }},
    };
    for (const Verb& verb : kVerbs) {
        auto o = std::make_shared<DestinationOptions>();
        auto* c = destinations->add_subcommand(verb.name, verb.description);
        AddConfigOption(c, o->common);
        AddJsonOption(c, o->common);
        if (verb.takes_id) c->add_option("ID", o->id, "destination id")->required();
        if (std::string(verb.name) == "resume") {
            c->add_option("--target", o->target, "resume only this target of the destination");
        }
        if (std::string(verb.name) == "reports") {
            auto* retry = c->add_flag("--retry-dead", o->retry_dead,
                                      "send the destination's dead reports again");
            auto* discard = c->add_flag("--discard-dead", o->discard_dead,
                                        "give up the destination's dead reports");
            retry->excludes(discard);
            c->add_option("--limit", o->limit, "dead reports shown (1-1000)")
                ->check(CLI::Range(1, 1000));
        }
        auto run = verb.run;
        c->callback([&inv, o, run] { inv.action = [&inv, o, run] { return run(inv, *o); }; });
    }
}

}  // namespace audsync::cli
