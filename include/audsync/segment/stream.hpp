#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "audsync/common/result.hpp"

namespace audsync::segment {

// Splits a stream of captured Segment events into JSON values without holding more
// than one value in memory: a JSON array is split into its elements; anything else
// (NDJSON, concatenated objects) into its top-level values. Values are not parsed or
// validated here, only delimited (strings and escapes respected).
// Not thread-safe.
class ValueSplitter {
  public:
    // `value` is the raw bytes; `oversize` is set (and `value` empty) for a value
    // longer than the limit, which is skipped.
    using Emit = std::function<void(std::string_view value, bool oversize)>;

    explicit ValueSplitter(size_t max_value_bytes) : max_(max_value_bytes) {}

    // Errors: a stray closing bracket, or bytes after the closing ']' of an array.
    [[nodiscard]] Status Feed(std::string_view chunk, const Emit& emit);
    // At the end of the input: error when a value or the array is unfinished.
    [[nodiscard]] Status Finish(const Emit& emit);

    size_t values() const { return values_; }

  private:
    enum class Mode { kUnknown, kArray, kSequence, kArrayDone };
    void EndValue(const Emit& emit);
    void Append(char c);

    size_t max_;
    Mode mode_ = Mode::kUnknown;
    std::string current_;
    size_t current_size_ = 0;
    bool in_value_ = false;
    bool scalar_ = false;  // a top-level number, literal or string
    int depth_ = 0;
    bool in_string_ = false;
    bool escape_ = false;
    size_t values_ = 0;
};

}  // namespace audsync::segment
