// Process-wide logging: one line per message to stderr, filtered by level.
#pragma once

#include <functional>
#include <string_view>

namespace audsync::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void SetLevel(Level level);
// One line to stderr: time, level, message. Callers never pass secrets.
void Write(Level level, std::string_view message);

// Tests only: lines that pass the level go to `sink` instead of stderr; an empty
// function restores stderr.
void SetSinkForTesting(std::function<void(Level, std::string_view)> sink);

inline void Info(std::string_view m) { Write(Level::kInfo, m); }
inline void Warn(std::string_view m) { Write(Level::kWarn, m); }
inline void Error(std::string_view m) { Write(Level::kError, m); }

}  // namespace audsync::log
