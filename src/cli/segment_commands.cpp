// segments list|show|members|member|delete and contexts: reading (and forgetting) segments.
#include <unistd.h>

#include <iostream>

#include "audsync/admin/render.hpp"
#include "audsync/cli/cli.hpp"
#include "common.hpp"
#include "push.hpp"
#include "text.hpp"

namespace audsync::cli {
namespace {

struct SegmentOptions {
    CommonOptions common;
    std::string destination;
    std::string audience_key;
    int64_t id = 0;
    std::string key;
    std::string state;
    std::string prefix;
    int64_t limit = -1;  // -1: every member
    bool yes = false;
    bool empty_on_platform = false;
};

// Loads the config without secrets and opens the operator core on its database.
int List(Invocation& inv, const SegmentOptions& o) {
    return WithService(inv, o.common, [&](admin::Service& s) {
        store::SegmentFilter f;
        if (!o.destination.empty()) f.destination = o.destination;
        if (!o.audience_key.empty()) f.audience_key = o.audience_key;
        // Every page, as one list: a table or one JSON object with no next cursor.
        admin::SegmentList all;
        admin::PageQuery page;
        page.limit = admin::kMaxLimit;
        for (;;) {
            auto r = s.ListSegments(f, page);
            if (!r) return Fail(inv, r.error());
            // The last page's backlog, bounds and storage (the newest figures).
            std::optional<std::string> next = r.value().next_cursor;
            std::vector<store::SegmentSummary> segments = std::move(all.segments);
            for (auto& seg : r.value().segments) segments.push_back(std::move(seg));
            all = std::move(r.value());
            all.segments = std::move(segments);
            all.next_cursor.reset();
            if (!next) break;
            page.cursor = std::move(next);
        }
        return Show(inv, o.common, Result<admin::SegmentList>(std::move(all)));
    });
}

int ShowSegment(Invocation& inv, const SegmentOptions& o) {
    return WithService(inv, o.common,
                       [&](admin::Service& s) { return Show(inv, o.common, s.GetSegment(o.id)); });
}

// Streams page by page: memory stays flat on millions of members. --json writes one
// member object a line.
int Members(Invocation& inv, const SegmentOptions& o) {
    admin::MemberQuery query;
    if (!o.state.empty()) {
        auto parsed = admin::ParseMemberState(o.state);
        if (!parsed) return UsageError(inv, "--state is included, excluded, pending or dead");
        query.state = *parsed;
    }
    if (!o.prefix.empty()) {
        if (o.prefix.size() > admin::kMaxKeyPrefixBytes) {
            return UsageError(inv, "--prefix takes at most " +
                                       std::to_string(admin::kMaxKeyPrefixBytes) + " bytes");
        }
        query.prefix = o.prefix;
    }
    return WithService(inv, o.common, [&](admin::Service& s) {
        query.limit = admin::kMaxLimit;
        int64_t printed = 0;
        bool header = false;
        for (;;) {
            auto page = s.ListMembers(o.id, query);
            if (!page) return Fail(inv, page.error());
            if (!o.common.json && !header) {
                text::PrintMembersHeader(inv.out);
                header = true;
            }
            for (const auto& m : page.value().members) {
                if (o.limit >= 0 && printed >= o.limit) return kExitOk;
                if (o.common.json) {
                    inv.out << admin::ToJson(m) << "\n";
                } else {
                    text::PrintMemberRow(inv.out, m);
                }
                ++printed;
            }
            if (!page.value().next_cursor) return kExitOk;
            query.cursor = page.value().next_cursor;
        }
    });
}

int Member(Invocation& inv, const SegmentOptions& o) {
    return WithService(inv, o.common, [&](admin::Service& s) {
        return Show(inv, o.common, s.GetMember(o.id, o.key));
    });
}

int Contexts(Invocation& inv, const SegmentOptions& o) {
    return WithService(inv, o.common, [&](admin::Service& s) {
        admin::ContextView all{o.key, {}, std::nullopt};
        admin::PageQuery page;
        page.limit = admin::kMaxLimit;
        for (;;) {
            auto r = s.Context(o.key, page);
            if (!r) return Fail(inv, r.error());
            for (auto& e : r.value().segments) all.segments.push_back(e);
            if (!r.value().next_cursor) break;
            page.cursor = r.value().next_cursor;
        }
        return Show(inv, o.common, Result<admin::ContextView>(std::move(all)));
    });
}

int Delete(Invocation& inv, const SegmentOptions& o) {
    // Emptying the platform may push from here: that needs the platform's credentials.
    auto loaded =
        LoadConfig(inv, o.common, o.empty_on_platform ? Secrets::kNeeded : Secrets::kNotNeeded);
    if (!loaded) return Fail(inv, loaded.error());
    std::shared_ptr<const config::Config> config = loaded.value();
    auto service = OpenDirect(inv, o.common, config);
    if (!service) return Fail(inv, service.error());
    return [&](admin::Service& s) {
        auto segment = s.GetSegment(o.id);
        if (!segment) return Fail(inv, segment.error());
        if (!o.yes) {
            if (isatty(STDIN_FILENO) != 1) {
                return UsageError(
                    inv, "segments delete forgets segment " + std::to_string(o.id) +
                             " and its members: pass --yes to confirm" +
                             (o.empty_on_platform
                                  ? ""
                                  : " (its members stay on the platforms; --empty-on-platform "
                                    "removes them there first)"));
            }
            const auto& seg = segment.value().segment;
            inv.err << "Forget segment " << seg.id << " (" << text::Safe(seg.audience_key) << ", "
                    << seg.included << " members) and its dead letters?"
                    << (o.empty_on_platform
                            ? " Its members are removed from the platforms first."
                            : " Its members stay on the platforms (--empty-on-platform removes "
                              "them there first).")
                    << " [y/N] " << std::flush;
            std::string answer;
            std::getline(std::cin, answer);
            if (answer != "y" && answer != "yes") {
                inv.err << "nothing deleted\n";
                return kExitUsage;
            }
        }
        bool emptied = false;
        if (o.empty_on_platform) {
            auto excluded = s.ExcludeAllMembers(o.id);
            if (!excluded) return Fail(inv, excluded.error());
            PushWait wait;
            wait.segments = {o.id};
            wait.destinations = {segment.value().segment.destination};
            wait.marked = excluded.value();
            wait.wait_for_server = true;
            admin::PushReport pushed;
            if (!PushAndWait(inv, o.common, config, s, wait, &pushed)) return kExitFailed;
            if (pushed.pending != 0) {
                for (const auto& p : pushed.paused) inv.err << p << "\n";
                return Fail(inv, std::to_string(pushed.pending) +
                                     " removals are not acknowledged by the platform yet; the "
                                     "segment is kept (its members are now excluded): run the "
                                     "command again once the platform takes pushes");
            }
            auto seg = s.GetSegment(o.id);
            if (seg && seg.value().segment.dead > 0) {
                return Fail(inv, "the platform refused " +
                                     std::to_string(seg.value().segment.dead) +
                                     " removals (audsync dead-letters list --segment " +
                                     std::to_string(o.id) + "); the segment is kept");
            }
            emptied = true;
        }
        auto deleted = s.DeleteSegment(o.id);
        if (deleted) deleted.value().emptied_on_platform = emptied;
        return Show(inv, o.common, deleted);
    }(*service.value());
}

CLI::App* Leaf(CLI::App* parent, const char* name, const char* description, Invocation& inv,
               std::shared_ptr<SegmentOptions> o, int (*run)(Invocation&, const SegmentOptions&)) {
    auto* c = parent->add_subcommand(name, description);
    AddConfigOption(c, o->common);
    AddJsonOption(c, o->common);
    c->callback([&inv, o, run] { inv.action = [&inv, o, run] { return run(inv, *o); }; });
    return c;
}

void AddId(CLI::App* c, SegmentOptions& o) {
    c->add_option("ID", o.id, "segment id")->required()->check(CLI::PositiveNumber);
}

}  // namespace

void AddSegmentCommands(CLI::App& app, Invocation& inv) {
    auto* segments = app.add_subcommand("segments", "inspect and forget synced segments");
    segments->require_subcommand(1);
    {
        auto o = std::make_shared<SegmentOptions>();
        auto* c = Leaf(segments, "list", "every segment with its counts and status", inv, o, List);
        c->add_option("--destination", o->destination, "only this destination's segments");
        c->add_option("--audience-key", o->audience_key, "only this audience key's segments");
    }
    {
        auto o = std::make_shared<SegmentOptions>();
        AddId(Leaf(segments, "show", "one segment with counts by state", inv, o, ShowSegment), *o);
    }
    {
        auto o = std::make_shared<SegmentOptions>();
        auto* c = Leaf(segments, "members", "a segment's members, in key order", inv, o, Members);
        AddId(c, *o);
        c->add_option("--state", o->state, "included, excluded, pending or dead");
        c->add_option("--prefix", o->prefix, "only the keys starting with PREFIX");
        c->add_option("--limit", o->limit, "print at most N members")
            ->check(CLI::Range(int64_t{1}, int64_t{1} << 62));
    }
    {
        auto o = std::make_shared<SegmentOptions>();
        auto* c = Leaf(segments, "member",
                       "why a key is (not) in a segment: state, deciding event, last push", inv, o,
                       Member);
        AddId(c, *o);
        c->add_option("KEY", o->key, "context key")->required();
    }
    {
        auto o = std::make_shared<SegmentOptions>();
        auto* c = Leaf(segments, "delete", "forget a segment, its members and dead letters", inv, o,
                       Delete);
        AddId(c, *o);
        c->add_flag("--yes", o->yes, "do not ask");
        c->add_flag("--empty-on-platform", o->empty_on_platform,
                    "first remove the included members on the platform");
    }
    {
        auto o = std::make_shared<SegmentOptions>();
        auto* c =
            Leaf(&app, "contexts", "every segment a context key is included in", inv, o, Contexts);
        c->add_option("KEY", o->key, "context key")->required();
    }
}

}  // namespace audsync::cli
