// Log records: level filter, formatting, and the test sink.
#include "audsync/common/log.hpp"

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

namespace audsync::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kText)};
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

std::optional<Format> ParseFormat(std::string_view name) {
    if (name == "text") return Format::kText;
    if (name == "json") return Format::kJson;
    return std::nullopt;
}

void SetFormat(Format format) { g_format = static_cast<int>(format); }

Format CurrentFormat() { return static_cast<Format>(g_format.load()); }

std::string FormatRecord(int64_t unix_ms, Level level, std::string_view message,
                         const Fields& fields) {
    std::string line;
    if (static_cast<Format>(g_format.load()) == Format::kJson) {
        line = "{\"time\":";
        json::AppendQuoted(line, text::FormatIso8601(unix_ms));
        line += ",\"level\":";
        json::AppendQuoted(line, Name(level));
        line += ",\"message\":";
        json::AppendQuoted(line, message);
        line += ",\"fields\":{";
        for (size_t i = 0; i < fields.size(); ++i) {
            if (i > 0) line += ',';
            json::AppendQuoted(line, fields[i].first);
            line += ':';
            json::AppendQuoted(line, fields[i].second);
        }
        line += "}}";
        return line;
    }
    line = text::FormatIso8601(unix_ms);
    line += ' ';
    line += Name(level);
    line += ' ';
    line.append(message);
    for (const auto& [k, v] : fields) {
        line += ' ';
        line += k;
        line += '=';
        line += v;
    }
    return line;
}

void SetSinkForTesting(std::function<void(Level, std::string_view)> sink) {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (sink) {
        g_sink =
            std::make_shared<const std::function<void(Level, std::string_view)>>(std::move(sink));
    } else {
        g_sink.reset();
    }
}

void Write(Level level, std::string_view message, const Fields& fields) {
    if (static_cast<int>(level) < g_level.load()) return;
    std::shared_ptr<const std::function<void(Level, std::string_view)>> sink;
    {
        std::lock_guard<std::mutex> lock(g_sink_mu);
        sink = g_sink;
    }
    if (sink) {
        if (fields.empty()) {
            (*sink)(level, message);
        } else {
            std::string with(message);
            for (const auto& [k, v] : fields) with += " " + k + "=" + v;
            (*sink)(level, with);
        }
        return;
    }
    std::string line = FormatRecord(text::NowMs(), level, message, fields);
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
