// audsync-ld-emulator: a local LaunchDarkly for the demo, the benchmarks and manual tests.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "emulator.hpp"
#include "serve.hpp"

namespace {

const char* kUsage =
    R"(usage: audsync-ld-emulator [--listen HOST:PORT] [--token TOKEN] [--client-side-id ID]

A local stand-in for LaunchDarkly's synced-segment API, in memory, for the demo,
the benchmarks and manual tests. Documented in docs/emulator.md.

options:
  --listen HOST:PORT    where to listen (default 127.0.0.1:8765; port 0: any free port)
  --token TOKEN         the service token it accepts (default emulator-token)
  --client-side-id ID   the client-side ID it knows (default emulator-client-side-id)
  -h, --help            this text

LaunchDarkly routes (what audsync calls):
  POST /api/v2/segment-targets/segment-audiences   synced-segment update; needs
       Authorization: TOKEN, LD-API-Version: 20240415, Content-Type: application/json,
       body {"environmentId":ID,"contextKind":K,"batch":[{"userId","cohortId",
       "cohortName","value":true|false}]}; answers 204
  GET  /api/v2/versions                            checks the token (200 or 401)
  GET|HEAD /sdk/goals/ID                           checks the client-side ID (200 or 404)

control routes (no credentials; answers are JSON):
  GET  /_emulator/segments   the synced segments:
       {"segments":[{"key","cohortId","cohortName","contextKind","included":[keys]}]}
  GET  /_emulator/stats      {"requests","members","max_batch","by_status":{"204":n}}
  POST /_emulator/reset      no body: forgets segments, faults, refusals, the token
                             refusal and the stats; answers {}
  POST /_emulator/faults     queues an answer for the next synced-segment requests:
       {"status":503,"count":1,"delay_ms":0,"retry_after":"2","reset_in_ms":1000,
        "drop":false}   every member optional; status 0 answers normally after delay_ms
  POST /_emulator/refuse     {"keys":["k1","k2"]}: 400 to any batch holding one of them
                             (replaces the previous list; [] refuses none)
  POST /_emulator/token      {"reject":true}: 401 to everything that needs the token;
                             {"reject":false} accepts it again
)";

int UsageError(const std::string& problem) {
    std::cerr << "audsync-ld-emulator: " << problem << "\n"
              << "usage: audsync-ld-emulator [--listen HOST:PORT] [--token TOKEN] "
                 "[--client-side-id ID] (--help for more)\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    audsync::emulator::Emulator::Options o;
    o.port = 8765;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            return 0;
        }
        if (a != "--listen" && a != "--token" && a != "--client-side-id") {
            return UsageError("unknown option " + a);
        }
        if (i + 1 >= argc) return UsageError(a + " needs a value");
        std::string v = argv[++i];
        if (a == "--listen") {
            auto listen = audsync::emulator_common::ParseListen(v);
            if (!listen) return UsageError("--listen takes HOST:PORT with a port from 0 to 65535");
            o.host = listen->first;
            o.port = listen->second;
        } else if (a == "--token") {
            if (v.empty()) return UsageError("--token must not be empty");
            o.service_token = v;
        } else {
            if (v.empty()) return UsageError("--client-side-id must not be empty");
            o.client_side_id = v;
        }
    }
    audsync::emulator::Emulator e(o);
    return audsync::emulator_common::ServeUntilSignal(
        "audsync-ld-emulator", e, o.host + ":" + std::to_string(o.port),
        "GET /_emulator/segments shows the synced segments");
}
