#include "audsync/common/log.hpp"

#include <atomic>
#include <cstdio>
#include <string>

#include "audsync/common/text.hpp"

namespace audsync::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
const char* Name(Level l) {
    switch (l) {
        case Level::kDebug:
            return "debug";
        case Level::kInfo:
            return "info";
        case Level::kWarn:
            return "warn";
        case Level::kError:
            return "error";
    }
    return "?";
}
}  // namespace

void SetLevel(Level level) { g_level = static_cast<int>(level); }

void Write(Level level, std::string_view message) {
    if (static_cast<int>(level) < g_level.load()) return;
    std::string line = text::FormatIso8601(text::NowMs());
    line += ' ';
    line += Name(level);
    line += ' ';
    line.append(message);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace audsync::log
