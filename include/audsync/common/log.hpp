// One-line log records to stderr, with a level filter and a sink tests can capture.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace audsync::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// "debug", "info", "warn", "error"; nullopt for anything else.
std::optional<Level> ParseLevel(std::string_view name);

void SetLevel(Level level);

// How a record is written: "text" (`<time> <level> <message> key=value ...`) or "json"
// (one object per line: {"time","level","message","fields":{...}}).
enum class Format { kText, kJson };
std::optional<Format> ParseFormat(std::string_view name);
void SetFormat(Format format);
Format CurrentFormat();

// Named values of a record (an access log line's method, status, ...).
using Fields = std::vector<std::pair<std::string, std::string>>;

// One line to stderr: time, level, message (and fields). Callers never pass secrets.
// Thread-safe.
void Write(Level level, std::string_view message, const Fields& fields = {});

// One record as the current format writes it, without the newline (for tests).
std::string FormatRecord(int64_t unix_ms, Level level, std::string_view message,
                         const Fields& fields);

// Routes every line that passes the level filter to `sink` instead of stderr (the
// message only, without time and level); an empty function restores stderr. For tests.
void SetSinkForTesting(std::function<void(Level, std::string_view)> sink);

inline void Debug(std::string_view m) { Write(Level::kDebug, m); }
inline void Info(std::string_view m) { Write(Level::kInfo, m); }
inline void Info(std::string_view m, const Fields& fields) { Write(Level::kInfo, m, fields); }
inline void Warn(std::string_view m) { Write(Level::kWarn, m); }
inline void Error(std::string_view m) { Write(Level::kError, m); }

// The longest prefix of `text` of at most `max_bytes` bytes that does not end inside a
// UTF-8 character ("…" appended when cut), so that a cut line stays valid UTF-8.
std::string Clip(std::string_view text, size_t max_bytes);

}  // namespace audsync::log
