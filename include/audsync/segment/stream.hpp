// Splitting a stream of captured Segment events (JSON array, NDJSON) into values.
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
//
// Outside an array, a line that cannot start an event is garbage: it is emitted whole
// as ONE value (which the caller then rejects) and splitting resumes on the next line.
// That covers a line not starting with '{' or '[', a string broken by a raw newline
// (never valid JSON), and an object left unclosed at the end of its line when the next
// line starts a new object (a value followed by '{' is never valid JSON either).
// Not thread-safe.
class ValueSplitter {
  public:
    // `value` is the raw bytes; `oversize` is set (and `value` empty) for a value
    // longer than the limit, which is skipped.
    using Emit = std::function<void(std::string_view value, bool oversize)>;

    explicit ValueSplitter(size_t max_value_bytes) : max_(max_value_bytes) {}

    // Errors: a stray closing bracket inside an array, or bytes after its closing ']'.
    [[nodiscard]] Status Feed(std::string_view chunk, const Emit& emit);
    // At the end of the input: error when an object or the array is unfinished.
    [[nodiscard]] Status Finish(const Emit& emit);

    size_t values() const { return values_; }
    // Inside Emit: the line (from 1) on which the emitted value started.
    size_t line() const { return emit_line_; }

  private:
    enum class Mode { kUnknown, kArray, kSequence, kArrayDone };
    [[nodiscard]] Status Step(char c, const Emit& emit);
    void StartValue(char c);
    void EndValue(const Emit& emit);
    // Emits the first `size` bytes of the current value (it ended at a line break).
    void EmitPrefix(size_t size, const Emit& emit);
    void Reset();
    void Append(char c);

    size_t max_;
    Mode mode_ = Mode::kUnknown;
    std::string current_;
    size_t current_size_ = 0;
    bool in_value_ = false;
    bool scalar_ = false;   // a top-level number, literal or string (in an array)
    bool garbage_ = false;  // a line that is not an event, taken up to its end
    int depth_ = 0;
    bool in_string_ = false;
    bool escape_ = false;
    char last_token_ = 0;      // last character outside strings in the current value
    bool line_break_ = false;  // a newline since last_token_
    size_t break_size_ = 0;    // current_size_ at that newline
    size_t values_ = 0;
    size_t line_ = 1;
    size_t value_line_ = 1;
    size_t emit_line_ = 0;
};

}  // namespace audsync::segment
