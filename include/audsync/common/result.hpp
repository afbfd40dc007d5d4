// Result<T>: a value or an Error with a stable code, for every expected failure.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace audsync {

// Stable error codes. Each one maps to exactly one HTTP status in http::StatusFor
// (src/http/server.cpp).
enum class ErrorCode {
    kMalformedJson,     // 400 body is not JSON (syntax, depth, encoding)
    kInvalidBody,       // 400 JSON of the wrong shape
    kPayloadTooLarge,   // 413 over a size or count limit
    kUnauthorized,      // 401 missing or wrong credentials
    kNotFound,          // 404 unknown route or resource
    kMethodNotAllowed,  // 405 known route, other method
    kUnavailable,       // 503 the store cannot take the work now
    kInternal,          // 500 a bug; never carries an exception text
};

// A failure a user may see: a stable machine code, a wire name and a readable message.
struct Error {
    ErrorCode code;
    std::string name;     // e.g. "malformed_json", "unknown_destination"
    std::string message;  // one sentence, never containing a secret
    int retry_after_s = 0;  // > 0: answered with Retry-After (503 overloaded)
};

// Value-or-error for expected failures (parsing, validation, I/O outcomes).
template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : data_(std::move(value)) {}      // NOLINT: implicit by design
    Result(Error error) : data_(std::move(error)) {}  // NOLINT

    bool ok() const { return data_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(data_); }
    const T& value() const& { return std::get<0>(data_); }
    T&& value() && { return std::get<0>(std::move(data_)); }
    const Error& error() const { return std::get<1>(data_); }

  private:
    std::variant<T, Error> data_;
};

struct Unit {};
using Status = Result<Unit>;

inline Status Ok() { return Unit{}; }

inline Error MakeError(ErrorCode code, std::string name, std::string message) {
    return Error{code, std::move(name), std::move(message), 0};
}

}  // namespace audsync

// Returns the error of a failed Result from the enclosing function.
#define AUDSYNC_TRY(expr)                                     \
    do {                                                      \
        auto audsync_status_ = (expr);                        \
        if (!audsync_status_) return audsync_status_.error(); \
    } while (0)
