// JSON helpers over RapidJSON: iterative, depth-limited, UTF-8-validating parsing and safe access.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "audsync/common/result.hpp"

namespace audsync::json {

// Parses `text` into `doc` iteratively (no recursion), validating UTF-8 and refusing
// nesting deeper than `max_depth`. Errors: malformed_json, invalid_utf8, too_deep.
// Only documents accepted here may be serialised (Writer is recursive).
[[nodiscard]] Status Parse(std::string_view text, rapidjson::Document& doc, int max_depth);

// Typed access that never touches a member of the wrong type.
const rapidjson::Value* Find(const rapidjson::Value& object, std::string_view name);
const rapidjson::Value* FindObject(const rapidjson::Value& object, std::string_view name);

// The string at `name`: nullopt when absent or null; `bad` is set when present with
// another type.
std::optional<std::string> FindString(const rapidjson::Value& object, std::string_view name,
                                      bool* bad = nullptr);

std::string_view View(const rapidjson::Value& string_value);

// Compact serialisation of a value from a depth-limited document.
std::string Serialize(const rapidjson::Value& value);

// Appends `s` to `out` as a JSON string literal (quotes included).
void AppendQuoted(std::string& out, std::string_view s);

}  // namespace audsync::json
