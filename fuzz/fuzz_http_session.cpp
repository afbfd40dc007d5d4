// libFuzzer: raw bytes as one client's side of a connection, through the real session code.
// Every answer is well-formed; the handler never sees a body over the limit; one answer per
// handled request, in order; nothing follows an error answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "audsync/http/transport.hpp"

namespace {

constexpr size_t kLimit = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    audsync::http::TransportOptions o;
    o.max_header_bytes = 1024;
    std::vector<bool> heads;  // per handled request: was it a HEAD (an answer without body)
    auto limit = [](const audsync::http::RequestHead& head) -> size_t {
        return head.method == "POST" ? kLimit : kLimit / 2;
    };
    auto handler = [&heads](const audsync::http::Request& req) {
        heads.push_back(req.method == "HEAD");
        if (req.body.size() > kLimit) __builtin_trap();
        audsync::http::Response r;
        r.body = "ok";
        r.content_type = "text/plain";
        return r;
    };
    std::string out = audsync::http::ServeBytesForTesting(o, limit, handler, input);
    // Walk the answers: each a status line, headers with Content-Length, and that many bytes.
    size_t at = 0;
    size_t ok = 0;
    bool error_seen = false;
    while (at < out.size()) {
        if (error_seen) __builtin_trap();  // nothing may follow an error answer
        if (out.compare(at, 9, "HTTP/1.1 ") != 0 && out.compare(at, 9, "HTTP/1.0 ") != 0) {
            __builtin_trap();
        }
        int status = std::atoi(out.c_str() + at + 9);
        size_t end = out.find("\r\n\r\n", at);
        if (end == std::string::npos) __builtin_trap();
        if (status == 100) {
            at = end + 4;
            continue;
        }
        size_t cl = out.find("Content-Length: ", at);
        if (cl == std::string::npos || cl > end) __builtin_trap();
        size_t length = std::strtoul(out.c_str() + cl + 16, nullptr, 10);
        bool head = false;  // a HEAD answer announces a body it does not carry
        if (status == 200) {
            if (ok >= heads.size()) __builtin_trap();
            head = heads[ok++];
        } else if (status >= 400) {
            error_seen = true;
            // The last answer. The answer to a HEAD request has no body (RFC 9110), also
            // when it is an error about that request's own framing.
            if (end + 4 == out.size()) {
                at = end + 4;
                continue;
            }
        } else {
            __builtin_trap();
        }
        at = end + 4 + (head ? 0 : length);
    }
    if (at != out.size() || ok != heads.size()) __builtin_trap();
    return 0;
}
