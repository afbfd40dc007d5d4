// dead-letters list|retry|discard: what a platform refused, and what to do about it.
#include "audsync/admin/render.hpp"
#include "audsync/cli/cli.hpp"
#include "common.hpp"
#include "text.hpp"

namespace audsync::cli {
namespace {

struct DeadLetterOptions {
    CommonOptions common;
    int64_t segment = 0;  // 0: not given
    int64_t limit = -1;
    std::vector<std::string> ids;
    std::string target;  // retry/discard: at this target only
};

int List(Invocation& inv, const DeadLetterOptions& o) {
    return WithService(inv, o.common, [&](admin::Service& s) {
        admin::DeadLetterQuery query;
        if (o.segment > 0) query.segment = o.segment;
        query.limit = admin::kMaxLimit;
        if (!o.common.json) text::PrintDeadLettersHeader(inv.out);
        int64_t printed = 0;
        for (;;) {
            auto page = s.ListDeadLetters(query);
            if (!page) return Fail(inv, page.error());
            for (const auto& m : page.value().dead_letters) {
                if (o.limit >= 0 && printed >= o.limit) return kExitOk;
                if (o.common.json) {
                    inv.out << admin::DeadLetterJson(m) << "\n";
                } else {
                    text::PrintDeadLetterRow(inv.out, m);
                }
                ++printed;
            }
            if (!page.value().next_cursor) return kExitOk;
            query.cursor = page.value().next_cursor;
        }
    });
}

int Change(Invocation& inv, const DeadLetterOptions& o, bool retry) {
    admin::DeadLetterSelection selection;
    if ((o.segment > 0) == !o.ids.empty()) {
        return UsageError(inv, "give --segment ID or dead-letter ids (SEGMENT:KEY), not both");
    }
    if (o.segment > 0) selection.segment = o.segment;
    if (!o.target.empty()) selection.target = o.target;
    for (const auto& id : o.ids) {
        auto parsed = admin::ParseDeadLetterId(id);
        if (!parsed) return UsageError(inv, parsed.error().message);
        selection.ids.push_back(parsed.value());
    }
    return WithService(inv, o.common, [&](admin::Service& s) {
        auto r = retry ? s.RetryDeadLetters(selection) : s.DiscardDeadLetters(selection);
        if (!r) return Fail(inv, r.error());
        if (o.common.json) {
            inv.out << admin::ToJson(r.value()) << "\n";
        } else {
            text::Print(inv.out, r.value());
        }
        // Naming a member that is no dead letter is a failure the operator must see.
        return r.value().not_found.empty() ? kExitOk : kExitFailed;
    });
}

}  // namespace

void AddDeadLetterCommands(CLI::App& app, Invocation& inv) {
    auto* dl = app.add_subcommand("dead-letters", "members a platform refused");
    dl->require_subcommand(1);
    {
        auto o = std::make_shared<DeadLetterOptions>();
        auto* c = dl->add_subcommand("list", "dead letters in (segment, key) order");
        AddConfigOption(c, o->common);
        AddJsonOption(c, o->common);
        c->add_option("--segment", o->segment, "only this segment's")->check(CLI::PositiveNumber);
        c->add_option("--limit", o->limit, "print at most N")
            ->check(CLI::Range(int64_t{1}, int64_t{1} << 62));
        c->callback([&inv, o] { inv.action = [&inv, o] { return List(inv, *o); }; });
    }
    for (bool retry : {true, false}) {
        auto o = std::make_shared<DeadLetterOptions>();
        auto* c = dl->add_subcommand(retry ? "retry" : "discard",
                                     retry ? "push dead letters again" : "give up on dead letters");
        AddConfigOption(c, o->common);
        AddJsonOption(c, o->common);
        c->add_option("--segment", o->segment, "every dead letter of this segment")
            ->check(CLI::PositiveNumber);
        c->add_option("--target", o->target, "only the dead letters at this target");
        c->add_option("IDS", o->ids, "dead-letter ids, SEGMENT:KEY");
        c->callback(
            [&inv, o, retry] { inv.action = [&inv, o, retry] { return Change(inv, *o, retry); }; });
    }
}

}  // namespace audsync::cli
