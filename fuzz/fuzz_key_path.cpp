// libFuzzer: request paths and member keys. Routing never crashes; percent-encoding
// round-trips any key; a key encoded into a member path comes back verbatim.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "audsync/common/text.hpp"
#include "audsync/http/routes.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    (void)audsync::http::MatchRoute("GET", input);
    (void)audsync::http::MatchRoute("POST", input);
    (void)audsync::text::PercentDecode(input, true);
    std::string key(input);
    auto decoded = audsync::text::PercentDecode(audsync::text::PercentEncode(key));
    if (!decoded || *decoded != key) __builtin_trap();
    if (!key.empty()) {
        auto m = audsync::http::MatchRoute(
            "GET", "/v1/segments/3/members/" + audsync::text::PercentEncode(key));
        if (m.id != audsync::http::RouteId::kMember || m.key != key) __builtin_trap();
    }
    return 0;
}
