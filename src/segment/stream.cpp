// Delimiting JSON values in a stream of captured events, with line-based recovery.
#include "audsync/segment/stream.hpp"

#include <cctype>

namespace audsync::segment {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// A character that ends a JSON value: nothing but ',', ':' or a closing bracket may
// follow it.
bool EndsValue(char c) {
    return c == '}' || c == ']' || c == '"' || std::isalnum(static_cast<unsigned char>(c)) != 0;
}

Error StreamError(const std::string& message) {
    return MakeError(ErrorCode::kMalformedJson, "malformed_stream", message);
}

}  // namespace

void ValueSplitter::Append(char c) {
    ++current_size_;
    if (current_size_ <= max_) current_.push_back(c);
}

void ValueSplitter::Reset() {
    current_.clear();
    current_size_ = 0;
    in_value_ = false;
    scalar_ = false;
    garbage_ = false;
    depth_ = 0;
    in_string_ = false;
    escape_ = false;
    last_token_ = 0;
    line_break_ = false;
}

void ValueSplitter::EndValue(const Emit& emit) {
    bool oversize = current_size_ > max_;
    emit_line_ = value_line_;
    emit(oversize ? std::string_view() : std::string_view(current_), oversize);
    ++values_;
    Reset();
}

void ValueSplitter::EmitPrefix(size_t size, const Emit& emit) {
    bool oversize = size > max_;
    emit_line_ = value_line_;
    emit(oversize ? std::string_view() : std::string_view(current_).substr(0, size), oversize);
    ++values_;
    Reset();
}

void ValueSplitter::StartValue(char c) {
    in_value_ = true;
    value_line_ = line_;
    Append(c);
    if (c == '{' || c == '[') {
        depth_ = 1;
        last_token_ = c;
    } else if (mode_ == Mode::kSequence) {
        garbage_ = true;  // no event starts like this: the rest of the line goes with it
    } else {
        scalar_ = true;
        if (c == '"') in_string_ = true;
    }
}

Status ValueSplitter::Step(char c, const Emit& emit) {
    if (mode_ == Mode::kUnknown) {
        if (IsSpace(c)) return Ok();
        mode_ = c == '[' ? Mode::kArray : Mode::kSequence;
        if (mode_ == Mode::kArray) return Ok();
    }
    if (mode_ == Mode::kArrayDone) {
        if (!IsSpace(c)) return StreamError("bytes after the end of the array");
        return Ok();
    }
    if (garbage_) {
        if (c == '\n') {
            EndValue(emit);
        } else {
            Append(c);
        }
        return Ok();
    }
    if (!in_value_) {
        if (IsSpace(c) || c == ',') return Ok();
        if (mode_ == Mode::kArray && c == ']') {
            mode_ = Mode::kArrayDone;
            return Ok();
        }
        if (mode_ == Mode::kArray && c == '}') return StreamError("a '}' that closes nothing");
        StartValue(c);
        return Ok();
    }
    if (in_string_) {
        if (c == '\n' && mode_ == Mode::kSequence) {
            // A raw newline cannot be inside a JSON string: the line was broken.
            EndValue(emit);
            return Ok();
        }
        Append(c);
        if (escape_) {
            escape_ = false;
        } else if (c == '\\') {
            escape_ = true;
        } else if (c == '"') {
            in_string_ = false;
            last_token_ = '"';
            if (scalar_ && depth_ == 0) EndValue(emit);
        }
        return Ok();
    }
    if (scalar_) {
        // A top-level literal or number in an array ends at a delimiter.
        if (IsSpace(c) || c == ',' || c == ']') {
            EndValue(emit);
            if (c == ']') mode_ = Mode::kArrayDone;
            return Ok();
        }
        Append(c);
        return Ok();
    }
    if (c == '\n' && mode_ == Mode::kSequence && !line_break_) {
        line_break_ = true;
        break_size_ = current_size_;
    }
    if (!IsSpace(c)) {
        if ((c == '{' || c == '[') && line_break_ && EndsValue(last_token_)) {
            // The previous line left its object open; this line starts the next one.
            EmitPrefix(break_size_, emit);
            StartValue(c);
            return Ok();
        }
        line_break_ = false;
        last_token_ = c;
    }
    Append(c);
    if (c == '"') {
        in_string_ = true;
    } else if (c == '{' || c == '[') {
        ++depth_;
    } else if (c == '}' || c == ']') {
        if (--depth_ == 0) EndValue(emit);
    }
    return Ok();
}

Status ValueSplitter::Feed(std::string_view chunk, const Emit& emit) {
    for (char c : chunk) {
        AUDSYNC_TRY(Step(c, emit));
        if (c == '\n') ++line_;
    }
    return Ok();
}

Status ValueSplitter::Finish(const Emit& emit) {
    if (garbage_ || (in_value_ && scalar_ && !in_string_)) EndValue(emit);
    if (in_value_) return StreamError("the input ends inside a value");
    if (mode_ == Mode::kArray) return StreamError("the input ends before the array's ']'");
    return Ok();
}

}  // namespace audsync::segment
