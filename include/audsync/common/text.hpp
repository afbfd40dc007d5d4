// Text helpers: base64, percent-encoding, ISO-8601 times and the clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace audsync::text {

// Standard base64 (padding optional); nullopt on any invalid character.
std::optional<std::string> Base64Decode(std::string_view in);
std::string Base64Encode(std::string_view in);

// Percent-decoding of one URL path segment or query value ('+' is kept as is in
// paths and means a space in queries). nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view in, bool plus_is_space = false);
std::string PercentEncode(std::string_view in);

// ISO-8601 date-time ("2024-05-06T09:30:22.829Z", any fraction, Z or ±hh:mm) to Unix
// milliseconds; nullopt when it is not one.
std::optional<int64_t> ParseIso8601(std::string_view in);
std::string FormatIso8601(int64_t unix_ms);

// Milliseconds since the Unix epoch, from the system clock.
int64_t NowMs();

}  // namespace audsync::text
