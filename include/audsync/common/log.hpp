// One-line log records to stderr, with a level filter and a sink tests can capture.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace audsync::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// "debug", "info", "warn", "error"; nullopt for anything else.
std::optional<Level> ParseLevel(std::string_view name);

void SetLevel(Level level);
// One line to stderr: time, level, message. Callers never pass secrets.
// Thread-safe.
void Write(Level level, std::string_view message);

// Routes every line that passes the level filter to `sink` instead of stderr (the
// message only, without time and level); an empty function restores stderr. For tests.
void SetSinkForTesting(std::function<void(Level, std::string_view)> sink);

inline void Debug(std::string_view m) { Write(Level::kDebug, m); }
inline void Info(std::string_view m) { Write(Level::kInfo, m); }
inline void Warn(std::string_view m) { Write(Level::kWarn, m); }
inline void Error(std::string_view m) { Write(Level::kError, m); }

// The longest prefix of `text` of at most `max_bytes` bytes that does not end inside a
// UTF-8 character ("…" appended when cut), so that a cut line stays valid UTF-8.
std::string Clip(std::string_view text, size_t max_bytes);

}  // namespace audsync::log
