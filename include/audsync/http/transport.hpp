// The HTTP/1.1 transport (Boost.Beast behind this header): framing, limits, timeouts, threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace audsync::http {

// A request as the transport hands it to a handler: complete, body included.
struct Request {
    std::string method;                                        // as sent, e.g. "POST"
    std::string target;                                        // path and query, as sent
    std::vector<std::pair<std::string, std::string>> headers;  // names as sent
    std::string body;
    std::string peer;  // the client's IP address (empty when unknown)

    // The first header of that name (case-insensitive), if any.
    std::optional<std::string> Header(std::string_view name) const;
    // The target without the query.
    std::string_view Path() const;
    // The raw (not decoded) query, without '?'.
    std::string_view Query() const;
};

// What the handler answers. Content-Length, Connection and keep-alive are the transport's.
struct Response {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers
    bool close = false;  // close the connection after this answer
    bool drop = false;   // close without answering (fault injection)
    int delay_ms = 0;    // wait before answering, without holding a thread (fault injection)
    // For the access log only: the destination the handler found the caller to be (a
    // /v1/batch request names it by its write key, not its path); empty: none.
    std::string access_destination;
};

// The head of a request, before its body is read: enough to choose the body limit.
struct RequestHead {
    std::string_view method;
    std::string_view target;
};

// What the access log says of one answered request. `target` is the raw request target
// (with its query): the receiver maps it to a route template and never logs it raw.
struct AccessRecord {
    std::string method;  // empty when the request line was not read
    std::string target;
    unsigned status = 0;
    int64_t duration_us = 0;  // from the end of the headers (or the first byte) to the answer sent
    size_t bytes_in = 0;      // body bytes read
    size_t bytes_out = 0;     // answer body bytes
    bool sent = true;         // false: the answer could not be sent
    std::string destination;  // Response::access_destination
};

struct TransportOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 0;                    // 0: any free port
    int io_threads = 2;                   // run the sockets; never block
    int handler_threads = 8;              // run the handlers, which may block
    size_t max_header_bytes = 16 * 1024;  // request line + headers: 414 / 431 beyond
    size_t default_body_limit = 64 * 1024;
    // Body bytes held by all connections at once (declared lengths are reserved before the
    // body is read): 503 and close beyond.
    size_t max_buffered_body_bytes = 128 * 1024 * 1024;
    // Live connections; 0: the file descriptor limit (raised to its hard limit) less 64.
    size_t max_connections = 0;
    int header_timeout_ms = 10000;    // first byte to end of headers
    int body_timeout_ms = 30000;      // end of headers to end of body; also each answer
    int keepalive_timeout_ms = 5000;  // idle between requests
    int linger_ms = 2000;             // after an error answer, discard what the client sends
    int accept_backoff_ms = 100;      // after EMFILE/ENFILE
    // Called once per answer written (or failed to write), on an I/O thread: keep it cheap.
    std::function<void(const AccessRecord&)> on_access;
};

// Chooses the body limit for a request from its head: the route's limit.
using BodyLimitFn = std::function<size_t(const RequestHead&)>;
// Answers one request. Runs on a handler thread; may block; exceptions become a 500.
using HandlerFn = std::function<Response(const Request&)>;

// Counters for tests and metrics. Thread-safe.
struct TransportStats {
    std::atomic<uint64_t> connections{0};  // live
    std::atomic<uint64_t> accepted{0};
    std::atomic<uint64_t> refused{0};  // over the connection cap
    std::atomic<uint64_t> accept_errors{0};
    std::atomic<uint64_t> buffered_body_bytes{0};
    std::atomic<uint64_t> answers_failed{0};  // answers that could not be sent (logged)
};

// An HTTP/1.1 server: keep-alive by default, pipelined requests answered in order, one
// request per connection at a time, every error answered with a JSON body and a close.
// Thread-safety: Start/Stop from one thread; the handler runs on handler threads.
class Transport {
  public:
    Transport(TransportOptions options, BodyLimitFn body_limit, HandlerFn handler);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    // Binds and starts serving. Throws std::runtime_error when it cannot bind.
    void Start();
    uint16_t port() const;
    // Stops accepting, closes every connection, waits for the threads. Idempotent.
    void Stop();
    const TransportStats& stats() const;

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// The transport's JSON error body: {"error":{"code":...,"message":...}}.
std::string TransportErrorBody(std::string_view code, std::string_view message);

// Serves `input` as the bytes one client sends on a connection (then half-closes), through
// the same session code as the server but in-process, with no socket and the handler run
// inline. Returns every byte written back. For the fuzzer and framing tests.
std::string ServeBytesForTesting(const TransportOptions& options, const BodyLimitFn& body_limit,
                                 const HandlerFn& handler, std::string_view input);

}  // namespace audsync::http
