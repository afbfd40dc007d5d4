#pragma once

#include <string_view>

namespace audsync::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void SetLevel(Level level);
// One line to stderr: time, level, message. Callers never pass secrets.
void Write(Level level, std::string_view message);

inline void Info(std::string_view m) { Write(Level::kInfo, m); }
inline void Warn(std::string_view m) { Write(Level::kWarn, m); }
inline void Error(std::string_view m) { Write(Level::kError, m); }

}  // namespace audsync::log
