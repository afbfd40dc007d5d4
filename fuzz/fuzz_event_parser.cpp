// libFuzzer: the Segment body parsers and the mapping rules never crash, and what they
// accept is consistent.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "audsync/mapping/mapping.hpp"
#include "audsync/segment/body.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);
    audsync::config::Limits limits;
    limits.max_event_bytes = 4096;
    audsync::mapping::Rules rules;
    for (auto choice : {audsync::config::ContextKeyChoice::kUserIdThenEmailThenAnonymousId,
                        audsync::config::ContextKeyChoice::kEmailOnly}) {
        rules.key_choice = choice;
        for (int route = 0; route < 3; ++route) {
            auto parsed = route == 0   ? audsync::segment::ParseWebhookBody(body, limits)
                          : route == 1 ? audsync::segment::ParseTrackingBody(body, "", limits)
                                       : audsync::segment::ParseTrackingBody(body, "track", limits);
            if (!parsed) continue;
            for (const auto& item : parsed.value().items) {
                if (!item.event) continue;
                if (item.event->message_id.empty()) __builtin_trap();
                if (item.event->raw.size() > limits.max_event_bytes) __builtin_trap();
                auto outcome = audsync::mapping::Resolve(*item.event, rules, 0);
                if (auto* c = std::get_if<audsync::mapping::MembershipChange>(&outcome)) {
                    if (c->context_key.empty() || c->audience_id.empty()) __builtin_trap();
                }
            }
        }
    }
    return 0;
}
