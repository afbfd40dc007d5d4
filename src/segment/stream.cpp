#include "audsync/segment/stream.hpp"

namespace audsync::segment {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

Error StreamError(const std::string& message) {
    return MakeError(ErrorCode::kMalformedJson, "malformed_stream", message);
}

}  // namespace

void ValueSplitter::Append(char c) {
    ++current_size_;
    if (current_size_ <= max_) current_.push_back(c);
}

void ValueSplitter::EndValue(const Emit& emit) {
    bool oversize = current_size_ > max_;
    emit(oversize ? std::string_view() : std::string_view(current_), oversize);
    ++values_;
    current_.clear();
    current_size_ = 0;
    in_value_ = false;
    scalar_ = false;
}

Status ValueSplitter::Feed(std::string_view chunk, const Emit& emit) {
    for (char c : chunk) {
        if (mode_ == Mode::kUnknown) {
            if (IsSpace(c)) continue;
            mode_ = c == '[' ? Mode::kArray : Mode::kSequence;
            if (mode_ == Mode::kArray) continue;
        }
        if (mode_ == Mode::kArrayDone) {
            if (!IsSpace(c)) return StreamError("bytes after the end of the array");
            continue;
        }
        // Inside a value (or between values).
        if (in_value_) {
            if (in_string_) {
                Append(c);
                if (escape_) {
                    escape_ = false;
                } else if (c == '\\') {
                    escape_ = true;
                } else if (c == '"') {
                    in_string_ = false;
                    if (scalar_ && depth_ == 0) EndValue(emit);
                }
                continue;
            }
            if (scalar_) {
                // A top-level literal or number ends at a delimiter.
                if (IsSpace(c) || c == ',' || (c == ']' && mode_ == Mode::kArray)) {
                    EndValue(emit);
                    if (c == ']') mode_ = Mode::kArrayDone;
                    continue;
                }
                Append(c);
                continue;
            }
            Append(c);
            if (c == '"') {
                in_string_ = true;
            } else if (c == '{' || c == '[') {
                ++depth_;
            } else if (c == '}' || c == ']') {
                if (--depth_ == 0) EndValue(emit);
            }
            continue;
        }
        // Between values.
        if (IsSpace(c) || c == ',') continue;
        if (c == ']') {
            if (mode_ != Mode::kArray) return StreamError("a ']' that closes nothing");
            mode_ = Mode::kArrayDone;
            continue;
        }
        if (c == '}') return StreamError("a '}' that closes nothing");
        in_value_ = true;
        Append(c);
        if (c == '{' || c == '[') {
            depth_ = 1;
        } else {
            scalar_ = true;
            if (c == '"') in_string_ = true;
        }
    }
    return Ok();
}

Status ValueSplitter::Finish(const Emit& emit) {
    if (in_value_ && scalar_ && !in_string_) EndValue(emit);
    if (in_value_) return StreamError("the input ends inside a value");
    if (mode_ == Mode::kArray) return StreamError("the input ends before the array's ']'");
    return Ok();
}

}  // namespace audsync::segment
