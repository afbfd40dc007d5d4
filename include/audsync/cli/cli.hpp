// The audsync command line: subcommands, their exit codes, and an in-process entry point.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace audsync::cli {

// Exit codes of every subcommand.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Runs `audsync <subcommand> ...` and returns the process exit code.
int Run(int argc, char** argv);

// The same with the arguments after the program name and the streams to write to (tests
// call it in-process).
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace audsync::cli
