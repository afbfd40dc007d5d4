// The LaunchDarkly and Statsig emulators' command lines: --help lists every control route, bad
// options exit 2.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace {

struct Run {
    int exit_code = -1;
    std::string out;
};

// The emulator binary sits beside audsync in the build directory.
std::string EmulatorBinary() {
    std::string audsync = AUDSYNC_BINARY;
    return audsync.substr(0, audsync.rfind('/') + 1) + "audsync-ld-emulator";
}

std::string StatsigEmulatorBinary() {
    std::string audsync = AUDSYNC_BINARY;
    return audsync.substr(0, audsync.rfind('/') + 1) + "audsync-statsig-emulator";
}

Run RunBinary(const std::string& binary, const std::string& args) {
    Run r;
    FILE* p = popen((binary + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    char buffer[4096];
    size_t n = 0;
    while ((n = fread(buffer, 1, sizeof buffer, p)) > 0) r.out.append(buffer, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

Run RunEmulator(const std::string& args) { return RunBinary(EmulatorBinary(), args); }

std::string ReadSource(const std::string& path) {
    std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) + "/" + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every "/_emulator/..." route the emulator's code answers.
std::set<std::string> ControlRoutes(const std::string& source = "tools/ld_emulator/emulator.cpp") {
    std::string code = ReadSource(source);
    std::set<std::string> routes;
    for (size_t at = code.find("\"/_emulator/"); at != std::string::npos;
         at = code.find("\"/_emulator/", at + 1)) {
        size_t end = code.find('"', at + 1);
        std::string route = code.substr(at + 1, end - at - 1);
        if (route != "/_emulator/") routes.insert(route);
    }
    return routes;
}

}  // namespace

TEST_SUITE("emulator cli") {
    TEST_CASE("--help exits 0 and names every control route") {
        std::ifstream binary(EmulatorBinary());
        REQUIRE_MESSAGE(binary.good(), "build the audsync-ld-emulator target first");
        auto routes = ControlRoutes();
        CHECK(routes.size() >= 6);
        for (const char* flag : {"--help", "-h"}) {
            auto r = RunEmulator(flag);
            CHECK(r.exit_code == 0);
            CHECK(r.out.find("usage: audsync-ld-emulator") == 0);
            for (const auto& route : routes) {
                CAPTURE(route);
                CHECK(r.out.find(route) != std::string::npos);
            }
        }
    }

    TEST_CASE("docs/emulator.md documents every control route") {
        std::string doc = ReadSource("docs/emulator.md");
        REQUIRE_FALSE(doc.empty());
        for (const auto& route : ControlRoutes()) {
            CAPTURE(route);
            CHECK(doc.find(" " + route + "`") != std::string::npos);
        }
    }

    TEST_CASE("the Statsig emulator's --help exits 0 and names every control route") {
        std::ifstream binary(StatsigEmulatorBinary());
        REQUIRE_MESSAGE(binary.good(), "build the audsync-statsig-emulator target first");
        auto routes = ControlRoutes("tools/statsig_emulator/emulator.cpp");
        CHECK(routes.size() >= 9);
        for (const char* flag : {"--help", "-h"}) {
            auto r = RunBinary(StatsigEmulatorBinary(), flag);
            CHECK(r.exit_code == 0);
            CHECK(r.out.find("usage: audsync-statsig-emulator") == 0);
            for (const auto& route : routes) {
                CAPTURE(route);
                CHECK(r.out.find(route) != std::string::npos);
            }
        }
    }

    TEST_CASE("the Statsig emulator's unknown options and bad values exit 2") {
        for (const char* args :
             {"--bogus", "--listen", "--listen 8768", "--listen h:70000", "--key", "--key ''",
              "--rate-limit -1", "--rate-limit x", "--rate-window-ms 0", "-x 1", "extra"}) {
            CAPTURE(args);
            auto r = RunBinary(StatsigEmulatorBinary(), args);
            CHECK(r.exit_code == 2);
            CHECK(r.out.find("usage:") != std::string::npos);
        }
    }

    TEST_CASE("unknown options and bad values exit 2") {
        for (const char* args : {"--bogus", "--listen", "--listen 8765", "--listen h:70000",
                                 "--listen h:x", "--token", "-x 1", "extra"}) {
            CAPTURE(args);
            auto r = RunEmulator(args);
            CHECK(r.exit_code == 2);
            CHECK(r.out.find("usage:") != std::string::npos);
        }
    }
}
