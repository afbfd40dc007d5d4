// Text the list platforms (ConfigCat, Unleash) and Statsig build alike: the segment's
// name and description, the included keys of a push, and numbers and keys as messages
// show them. Header-only; pure.
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/targets/target.hpp"

namespace audsync::targets::shared {

// 1204 -> "1,204".
inline std::string Grouped(size_t n) {
    std::string digits = std::to_string(n);
    std::string out;
    for (size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

// At most 40 bytes of a key for a message, cut at a character boundary.
inline std::string Shown(std::string_view key) {
    if (key.size() <= 40) return std::string(key);
    size_t end = 40;
    while (end > 0 && (static_cast<unsigned char>(key[end]) & 0xC0) == 0x80) --end;
    return std::string(key.substr(0, end)) + "...";
}

// The included members' keys, in request order, each once.
inline std::vector<std::string_view> IncludedKeys(const PushRequest& request) {
    std::vector<std::string_view> keys;
    std::set<std::string_view> seen;
    for (const auto& m : request.members) {
        if (m.value && seen.insert(m.context_key).second) keys.push_back(m.context_key);
    }
    return keys;
}

// "<audience_key>", or "<audience_key>:<kind>" for a kind other than user.
inline std::string SegmentName(std::string_view audience_key, std::string_view context_kind) {
    std::string name(audience_key);
    if (context_kind != "user") {
        name += ':';
        name += context_kind;
    }
    return name;
}

// The description of a segment audsync manages.
inline std::string Description(const PushRequest& request) {
    return "Managed by audsync from Segment audience " + request.audience_id +
           "; edits are overwritten";
}

}  // namespace audsync::targets::shared
