// Process-wide logging: one line per message to stderr, filtered by level.
#include "audsync/common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "audsync/common/text.hpp"

namespace audsync::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_sink_mu;
std::function<void(Level, std::string_view)> g_sink;  // Protected by g_sink_mu
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

void SetSinkForTesting(std::function<void(Level, std::string_view)> sink) {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    g_sink = std::move(sink);
}

void Write(Level level, std::string_view message) {
    if (static_cast<int>(level) < g_level.load()) return;
    {
        std::lock_guard<std::mutex> lock(g_sink_mu);
        if (g_sink) {
            g_sink(level, message);
            return;
        }
    }
    std::string line = text::FormatIso8601(text::NowMs());
    line += ' ';
    line += Name(level);
    line += ' ';
    line.append(message);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace audsync::log
