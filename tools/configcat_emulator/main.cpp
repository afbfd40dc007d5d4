// audsync-configcat-emulator: a local ConfigCat for the demo and manual tests.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "emulator.hpp"
#include "serve.hpp"

namespace {

const char* kUsage =
    R"(usage: audsync-configcat-emulator [--listen HOST:PORT] [--user U] [--password P]
                                  [--product ID] [--max-items N] [--max-segments N]
                                  [--rate-limit N] [--rate-window-ms MS]

A local stand-in for the segments of ConfigCat's Public Management API, in memory,
for the demo and manual tests. Documented in docs/platforms/configcat.md.

options:
  --listen HOST:PORT    where to listen (default 127.0.0.1:8767; port 0: any free port)
  --user U              the Public API user it accepts (default emulator-user)
  --password P          the Public API password it accepts (default emulator-password)
  --product ID          the one product it knows (default emulator-product)
  --max-items N         items a list comparison value may hold (default 1000, the Pro
                        plan; Free 100, Smart and up 15000)
  --max-segments N      segments the product may hold (default 3, the Pro plan; Free 2,
                        Smart 500, Enterprise 1000)
  --rate-limit N        API requests allowed per window, then 429 (default 0: unlimited)
  --rate-window-ms MS   the rate-limit window (default 60000)
  -h, --help            this text

ConfigCat routes (what audsync calls; HTTP Basic auth with U:P, else 401):
  GET    /v1/me                              200 {"email","fullName"}
  GET    /v1/products/ID/segments            200 [segments without their condition];
                                             404 for another product
  POST   /v1/products/ID/segments            creates: Content-Type: application/json,
         {"name","description","comparisonAttribute","comparator","comparisonValue"};
         201 with the segment and its segmentId; 400 {"field":["message"]} for a
         missing or too long field, an unknown comparator, more items than
         --max-items, an item over 255 or a value over 65535 characters, or a product
         at --max-segments
  GET    /v1/segments/SEGMENT_ID             200 the segment; 404 unknown
  PUT    /v1/segments/SEGMENT_ID             replaces the fields given (null or absent:
                                             unchanged); 200, 400 as above, 404 unknown
  DELETE /v1/segments/SEGMENT_ID             204; 404 unknown
  Over the rate limit: 429 with Retry-After (seconds); every answer then carries
  X-Rate-Limit-Remaining and X-Rate-Limit-Reset (ISO 8601).

control routes (no credentials; answers are JSON):
  GET  /_emulator/segments        {"segments":[{"segmentId","name","comparator",
                                  "values":[items]}]}
  GET  /_emulator/stats           {"requests","lists","creates","updates","deletes",
                                  "by_status":{"200":n}}
  POST /_emulator/reset           no body: forgets segments, faults, the credential
                                  refusal, the rate limit set at run time and the
                                  stats; answers {}
  POST /_emulator/faults          queues an answer for the next API requests:
       {"status":503,"count":1,"delay_ms":0,"retry_after":"2","reset_in_ms":1000,
        "drop":false}   every member optional; status 0 answers normally after delay_ms
  POST /_emulator/credentials     {"reject":true}: 401 to every API request;
                                  {"reject":false} accepts the credentials again
  POST /_emulator/delete-segment  {"name":"..."}: deletes the segments of that name, as
                                  an operator in ConfigCat's dashboard would; 404 if none
  POST /_emulator/rate-limit      {"requests":N,"window_ms":M}: a new budget (0:
                                  unlimited) and a new window
)";

int UsageError(const std::string& problem) {
    std::cerr << "audsync-configcat-emulator: " << problem << "\n"
              << "usage: audsync-configcat-emulator [--listen HOST:PORT] [--user U] "
                 "[--password P] [--product ID] [--max-items N] (--help for more)\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    audsync::configcat_emulator::Emulator::Options o;
    o.port = 8767;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            return 0;
        }
        if (a != "--listen" && a != "--user" && a != "--password" && a != "--product" &&
            a != "--max-items" && a != "--max-segments" && a != "--rate-limit" &&
            a != "--rate-window-ms") {
            return UsageError("unknown option " + a);
        }
        if (i + 1 >= argc) return UsageError(a + " needs a value");
        std::string v = argv[++i];
        if (a == "--listen") {
            auto listen = audsync::emulator_common::ParseListen(v);
            if (!listen) return UsageError("--listen takes HOST:PORT with a port from 0 to 65535");
            o.host = listen->first;
            o.port = listen->second;
        } else if (a == "--user" || a == "--password" || a == "--product") {
            if (v.empty()) return UsageError(a + " must not be empty");
            (a == "--user" ? o.user : a == "--password" ? o.password : o.product_id) = v;
        } else {
            const long min = a == "--rate-limit" ? 0 : 1;
            auto n = audsync::emulator_common::ParseCount(v, min);
            if (!n) {
                return UsageError(a + " takes a whole number from " + std::to_string(min) +
                                  " to 1000000000");
            }
            if (a == "--max-items") o.max_items = static_cast<size_t>(*n);
            if (a == "--max-segments") o.max_segments = static_cast<size_t>(*n);
            if (a == "--rate-limit") o.rate_limit = static_cast<int>(*n);
            if (a == "--rate-window-ms") o.rate_window_ms = *n;
        }
    }
    audsync::configcat_emulator::Emulator e(o);
    return audsync::emulator_common::ServeUntilSignal(
        "audsync-configcat-emulator", e, o.host + ":" + std::to_string(o.port),
        "product " + o.product_id + "; GET /_emulator/segments shows the segments");
}
