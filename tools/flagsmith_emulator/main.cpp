// audsync-flagsmith-emulator: a local Flagsmith for the demo and manual tests.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "emulator.hpp"
#include "serve.hpp"

namespace {

int UsageError(const std::string& problem) {
    std::cerr << "audsync-flagsmith-emulator: " << problem << "\n"
              << "usage: audsync-flagsmith-emulator [--listen HOST:PORT] "
                 "[--environment-key KEY] (--help for more)\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    audsync::flagsmith_emulator::Emulator::Options o;
    o.port = 8766;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << audsync::flagsmith_emulator::Usage();
            return 0;
        }
        if (a != "--listen" && a != "--environment-key") return UsageError("unknown option " + a);
        if (i + 1 >= argc) return UsageError(a + " needs a value");
        std::string v = argv[++i];
        if (a == "--listen") {
            auto listen = audsync::emulator_common::ParseListen(v);
            if (!listen) return UsageError("--listen takes HOST:PORT with a port from 0 to 65535");
            o.host = listen->first;
            o.port = listen->second;
        } else {
            if (v.empty()) return UsageError("--environment-key must not be empty");
            o.environment_key = v;
        }
    }
    audsync::flagsmith_emulator::Emulator e(o);
    return audsync::emulator_common::ServeUntilSignal(
        "audsync-flagsmith-emulator", e, o.host + ":" + std::to_string(o.port),
        "GET /_emulator/identities shows the identities and their traits");
}
