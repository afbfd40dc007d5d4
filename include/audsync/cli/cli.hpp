#pragma once

namespace audsync::cli {

// Exit codes of every subcommand.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Runs `audsync <subcommand> ...` and returns the process exit code.
int Run(int argc, char** argv);

}  // namespace audsync::cli
