// Log records: level filter, formatting, and the test sink.
#include "audsync/common/log.hpp"

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "audsync/common/text.hpp"

namespace audsync::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_sink_mu;
std::shared_ptr<const std::function<void(Level, std::string_view)>> g_sink;  // by g_sink_mu

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

std::optional<Level> ParseLevel(std::string_view name) {
    for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
        if (name == Name(l)) return l;
    }
    return std::nullopt;
}

void SetLevel(Level level) { g_level = static_cast<int>(level); }

void SetSinkForTesting(std::function<void(Level, std::string_view)> sink) {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (sink) {
        g_sink =
            std::make_shared<const std::function<void(Level, std::string_view)>>(std::move(sink));
    } else {
        g_sink.reset();
    }
}

void Write(Level level, std::string_view message) {
    if (static_cast<int>(level) < g_level.load()) return;
    std::shared_ptr<const std::function<void(Level, std::string_view)>> sink;
    {
        std::lock_guard<std::mutex> lock(g_sink_mu);
        sink = g_sink;
    }
    if (sink) {
        (*sink)(level, message);
        return;
    }
    std::string line = text::FormatIso8601(text::NowMs());
    line += ' ';
    line += Name(level);
    line += ' ';
    line.append(message);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
}

std::string Clip(std::string_view text, size_t max_bytes) {
    if (text.size() <= max_bytes) return std::string(text);
    size_t end = max_bytes;
    // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    std::string out(text.substr(0, end));
    out += "\xE2\x80\xA6";  // …
    return out;
}

}  // namespace audsync::log
