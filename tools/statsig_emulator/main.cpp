// audsync-statsig-emulator: a local Statsig Console API for the demo and manual tests.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "emulator.hpp"
#include "serve.hpp"

namespace {

int UsageError(const std::string& problem) {
    std::cerr << "audsync-statsig-emulator: " << problem << "\n"
              << "usage: audsync-statsig-emulator [--listen HOST:PORT] [--key KEY] "
                 "[--rate-limit N] [--rate-window-ms MS] (--help for more)\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    audsync::statsig_emulator::Emulator::Options o;
    o.port = 8768;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << audsync::statsig_emulator::Usage();
            return 0;
        }
        if (a != "--listen" && a != "--key" && a != "--rate-limit" && a != "--rate-window-ms") {
            return UsageError("unknown option " + a);
        }
        if (i + 1 >= argc) return UsageError(a + " needs a value");
        std::string v = argv[++i];
        if (a == "--listen") {
            auto listen = audsync::emulator_common::ParseListen(v);
            if (!listen) return UsageError("--listen takes HOST:PORT with a port from 0 to 65535");
            o.host = listen->first;
            o.port = listen->second;
        } else if (a == "--key") {
            if (v.empty()) return UsageError("--key must not be empty");
            o.console_api_key = v;
        } else {
            const long min = a == "--rate-limit" ? 0 : 1;
            auto n = audsync::emulator_common::ParseCount(v, min);
            if (!n) {
                return UsageError(a + " takes a whole number from " + std::to_string(min) +
                                  " to 1000000000");
            }
            if (a == "--rate-limit") o.rate_limit = static_cast<int>(*n);
            if (a == "--rate-window-ms") o.rate_window_ms = *n;
        }
    }
    audsync::statsig_emulator::Emulator e(o);
    return audsync::emulator_common::ServeUntilSignal(
        "audsync-statsig-emulator", e, o.host + ":" + std::to_string(o.port),
        "GET /_emulator/segments shows the segments and their IDs");
}
