// The command line: CLI11 parses, each command family lives in its own file.
#include "audsync/cli/cli.hpp"

#include <iostream>

#include "common.hpp"

namespace audsync::cli {
namespace {

constexpr const char* kFooter =
    "Every command but version and help reads the config from --config PATH, else\n"
    "$AUDSYNC_CONFIG. `audsync COMMAND --help` describes a command. Exit codes: 0 ok,\n"
    "1 failed, 2 usage.";

// The innermost subcommand the user named, for its --help hint.
std::string CommandPath(const CLI::App& app) {
    std::string path = "audsync";
    const CLI::App* at = &app;
    for (;;) {
        auto chosen = at->get_subcommands();
        if (chosen.empty()) break;
        at = chosen.front();
        path += " " + at->get_name();
    }
    return path;
}

}  // namespace

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    Invocation inv{out, err, nullptr};
    CLI::App app{"audsync: a self-hosted audience-sync destination for Twilio Segment", "audsync"};
    app.footer(kFooter);
    app.require_subcommand(1);
    app.fallthrough(false);
    AddServerCommands(app, inv);
    AddSegmentCommands(app, inv);
    AddDestinationCommands(app, inv);
    AddDeadLetterCommands(app, inv);
    AddReplayCommands(app, inv);
    AddRepairCommands(app, inv);
    app.add_subcommand("version", "print the version")->callback([&inv] {
        inv.action = [&inv] {
            inv.out << "audsync " << AUDSYNC_VERSION << "\n";
            return kExitOk;
        };
    });
    app.add_subcommand("help", "print this help")->callback([&inv, &app] {
        inv.action = [&inv, &app] {
            // app.help() would describe the chosen subcommand, "help" itself.
            inv.out << app.get_formatter()->make_help(&app, "audsync", CLI::AppFormatMode::Normal);
            return kExitOk;
        };
    });
    app.set_version_flag("--version", std::string("audsync ") + AUDSYNC_VERSION);

    if (args.empty()) {
        err << app.help();
        return kExitUsage;
    }
    // CLI11 takes the arguments in reverse order.
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        out << app.help();  // the chosen subcommand's help
        return kExitOk;
    } catch (const CLI::CallForAllHelp&) {
        out << app.help("", CLI::AppFormatMode::All);
        return kExitOk;
    } catch (const CLI::CallForVersion& e) {
        out << e.what() << "\n";
        return kExitOk;
    } catch (const CLI::ParseError& e) {
        // "A subcommand is required" hides the word the user typed: name it instead.
        std::string what = e.what();
        const CLI::App* at = &app;
        while (!at->get_subcommands().empty()) at = at->get_subcommands().front();
        if (at->get_require_subcommand_min() > 0 && !at->remaining().empty() &&
            at->remaining().front().rfind("-", 0) != 0) {
            what = "unknown command " + at->remaining().front();
        } else if (at->get_require_subcommand_min() > 0 && at->remaining().empty()) {
            what = CommandPath(app).substr(8) + " needs one of:";  // after "audsync "
            for (const CLI::App* sub : at->get_subcommands([](const CLI::App*) { return true; })) {
                what += " " + sub->get_name();
            }
        }
        err << "audsync: " << what << "\n"
            << "run `" << CommandPath(app) << " --help` for usage\n";
        return kExitUsage;
    }
    if (!inv.action) {
        err << "audsync: " << CommandPath(app) << " needs a command\n"
            << "run `" << CommandPath(app) << " --help` for usage\n";
        return kExitUsage;
    }
    return inv.action();
}

int Run(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    return Run(args, std::cout, std::cerr);
}

}  // namespace audsync::cli
