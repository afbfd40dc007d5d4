// audsync-ld-emulator: a local LaunchDarkly for the demo, the benchmarks and manual
// tests. Usage: audsync-ld-emulator [--listen HOST:PORT] [--token T] [--client-side-id ID]
#include <signal.h>

#include <cstring>
#include <iostream>
#include <string>

#include "emulator.hpp"

int main(int argc, char** argv) {
    audsync::emulator::Emulator::Options o;
    o.port = 8765;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) {
            std::cerr << "usage: audsync-ld-emulator [--listen HOST:PORT] [--token T] "
                         "[--client-side-id ID]\n";
            return 2;
        }
        std::string v = argv[++i];
        if (a == "--listen") {
            auto colon = v.rfind(':');
            if (colon == std::string::npos) {
                std::cerr << "--listen takes HOST:PORT\n";
                return 2;
            }
            o.host = v.substr(0, colon);
            o.port = static_cast<uint16_t>(std::stoi(v.substr(colon + 1)));
        } else if (a == "--token") {
            o.service_token = v;
        } else if (a == "--client-side-id") {
            o.client_side_id = v;
        } else {
            std::cerr << "unknown option " << a << "\n";
            return 2;
        }
    }
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    audsync::emulator::Emulator e(o);
    try {
        e.Start();
    } catch (const std::exception& ex) {
        std::cerr << "audsync-ld-emulator: cannot listen: " << ex.what() << "\n";
        return 1;
    }
    std::cout << "audsync-ld-emulator listening on " << e.base_url()
              << " (GET /_emulator/segments shows the synced segments)" << std::endl;
    int sig = 0;
    sigwait(&signals, &sig);
    e.Stop();
    return 0;
}
