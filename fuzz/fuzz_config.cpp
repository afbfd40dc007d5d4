// libFuzzer: the config loader never crashes and every error names a field.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "audsync/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "SET") return std::string("value");
        return std::nullopt;
    };
    auto c = audsync::config::LoadText(text, env);
    if (!c && c.error().message.find(": ") == std::string::npos) __builtin_trap();
    if (c) {
        for (const auto& d : c.value().destinations) {
            if (d.id.empty() || d.service_token.empty() || d.client_side_id.empty())
                __builtin_trap();
            if (d.write_keys.empty() && d.shared_secret.empty()) __builtin_trap();
        }
    }
    return 0;
}
