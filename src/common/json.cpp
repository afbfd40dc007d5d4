// JSON helpers over RapidJSON: iterative, depth-limited, UTF-8-validating parsing and safe access.
#include "audsync/common/json.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace audsync::json {
namespace {

// Forwards SAX events to the document while counting nesting; stops the parse past
// the limit. The document is the handler that builds the tree.
class DepthLimiter {
  public:
    DepthLimiter(rapidjson::Document& doc, int max_depth) : doc_(doc), max_depth_(max_depth) {}

    bool Null() { return doc_.Null(); }
    bool Bool(bool b) { return doc_.Bool(b); }
    bool Int(int i) { return doc_.Int(i); }
    bool Uint(unsigned u) { return doc_.Uint(u); }
    bool Int64(int64_t i) { return doc_.Int64(i); }
    bool Uint64(uint64_t u) { return doc_.Uint64(u); }
    bool Double(double d) { return doc_.Double(d); }
    bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
        return doc_.RawNumber(s, n, copy);
    }
    bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc_.String(s, n, copy); }
    bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc_.Key(s, n, copy); }
    bool StartObject() { return Enter() && doc_.StartObject(); }
    bool EndObject(rapidjson::SizeType n) {
        --depth_;
        return doc_.EndObject(n);
    }
    bool StartArray() { return Enter() && doc_.StartArray(); }
    bool EndArray(rapidjson::SizeType n) {
        --depth_;
        return doc_.EndArray(n);
    }

    bool too_deep() const { return too_deep_; }

  private:
    bool Enter() {
        if (++depth_ > max_depth_) {
            too_deep_ = true;
            return false;
        }
        return true;
    }

    rapidjson::Document& doc_;
    int max_depth_;
    int depth_ = 0;
    bool too_deep_ = false;
};

}  // namespace

Status Parse(std::string_view text, rapidjson::Document& doc, int max_depth) {
    constexpr unsigned kFlags = rapidjson::kParseIterativeFlag |
                                rapidjson::kParseValidateEncodingFlag |
                                rapidjson::kParseStopWhenDoneFlag;
    rapidjson::ParseResult result;
    bool too_deep = false;
    bool trailing = false;
    auto generator = [&](rapidjson::Document& d) {
        rapidjson::MemoryStream stream(text.data(), text.size());
        rapidjson::Reader reader;
        DepthLimiter limiter(d, max_depth);
        result = reader.Parse<kFlags>(stream, limiter);
        too_deep = limiter.too_deep();
        if (!result.IsError()) {
            // kParseStopWhenDoneFlag lets us report trailing bytes ourselves; only
            // whitespace may follow the value.
            while (stream.Peek() == ' ' || stream.Peek() == '\n' || stream.Peek() == '\r' ||
                   stream.Peek() == '\t') {
                stream.Take();
            }
            trailing = stream.Tell() != text.size();
        }
        return !result.IsError();
    };
    doc.Populate(generator);
    if (too_deep) {
        return MakeError(ErrorCode::kMalformedJson, "too_deep",
                         "JSON nesting is deeper than " + std::to_string(max_depth) + " levels");
    }
    if (result.IsError()) {
        if (result.Code() == rapidjson::kParseErrorStringInvalidEncoding) {
            return MakeError(
                ErrorCode::kMalformedJson, "invalid_utf8",
                "body is not valid UTF-8 (offset " + std::to_string(result.Offset()) + ")");
        }
        return MakeError(ErrorCode::kMalformedJson, "malformed_json",
                         std::string("body is not valid JSON: ") +
                             rapidjson::GetParseError_En(result.Code()) + " (offset " +
                             std::to_string(result.Offset()) + ")");
    }
    if (trailing) {
        return MakeError(ErrorCode::kMalformedJson, "malformed_json",
                         "body is not valid JSON: unexpected bytes after the value");
    }
    return Ok();
}

const rapidjson::Value* Find(const rapidjson::Value& object, std::string_view name) {
    if (!object.IsObject()) return nullptr;
    auto it = object.FindMember(rapidjson::Value(
        rapidjson::StringRef(name.data(), static_cast<rapidjson::SizeType>(name.size()))));
    if (it == object.MemberEnd()) return nullptr;
    return &it->value;
}

const rapidjson::Value* FindObject(const rapidjson::Value& object, std::string_view name) {
    const rapidjson::Value* v = Find(object, name);
    return v != nullptr && v->IsObject() ? v : nullptr;
}

std::optional<std::string> FindString(const rapidjson::Value& object, std::string_view name,
                                      bool* bad) {
    const rapidjson::Value* v = Find(object, name);
    if (v == nullptr || v->IsNull()) return std::nullopt;
    if (!v->IsString()) {
        if (bad != nullptr) *bad = true;
        return std::nullopt;
    }
    return std::string(v->GetString(), v->GetStringLength());
}

std::string_view View(const rapidjson::Value& string_value) {
    return {string_value.GetString(), string_value.GetStringLength()};
}

std::string Serialize(const rapidjson::Value& value) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    value.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
}

void AppendQuoted(std::string& out, std::string_view s) {
    static const char* kHex = "0123456789abcdef";
    out.push_back('"');
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out.push_back(kHex[c >> 4]);
                    out.push_back(kHex[c & 15]);
                } else {
                    out.push_back(ch);
                }
        }
    }
    out.push_back('"');
}

}  // namespace audsync::json
