// Boost.Beast sessions, the accept loop and the two thread pools behind http::Transport.
#include "audsync/http/transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <thread>

#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"

namespace audsync::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

bool IEquals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

}  // namespace

std::optional<std::string> Request::Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (IEquals(k, name)) return v;
    }
    return std::nullopt;
}

std::string_view Request::Path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

std::string_view Request::Query() const {
    std::string_view t = target;
    size_t q = t.find('?');
    return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
}

std::string TransportErrorBody(std::string_view code, std::string_view message) {
    std::string out = "{\"error\":{\"code\":";
    json::AppendQuoted(out, std::string(code));
    out += ",\"message\":";
    json::AppendQuoted(out, std::string(message));
    out += "}}";
    return out;
}

namespace {

// The pipelined bytes a session may hold beyond the request it is reading.
constexpr size_t kReadBufferBytes = 64 * 1024;

// What every session of one transport shares.
struct Core {
    TransportOptions options;
    BodyLimitFn body_limit;
    HandlerFn handler;
    TransportStats stats;
    // Runs a handler job: on the handler pool, or inline in tests.
    std::function<void(std::function<void()>)> offload;
};

Response Handle(const Core& core, const Request& req) {
    try {
        return core.handler(req);
    } catch (const std::exception& e) {
        // The text of an exception never reaches the client.
        log::Error(std::string("http: request failed: ") + e.what());
    } catch (...) {
        log::Error("http: request failed");
    }
    Response r;
    r.status = 500;
    r.body = TransportErrorBody("internal", "internal error");
    return r;
}

void ShutdownSend(tcp::socket& s) {
    beast::error_code ignored;
    s.shutdown(tcp::socket::shutdown_send, ignored);
}
void ShutdownSend(beast::test::stream&) {}
void CloseStream(tcp::socket& s) {
    beast::error_code ignored;
    s.shutdown(tcp::socket::shutdown_both, ignored);
    s.close(ignored);
}
void CloseStream(beast::test::stream& s) { s.close(); }
// The client's address, for per-peer decisions (failed-authentication slowdown).
std::string PeerOf(tcp::socket& s) {
    beast::error_code ec;
    auto endpoint = s.remote_endpoint(ec);
    return ec ? std::string() : endpoint.address().to_string();
}
std::string PeerOf(beast::test::stream&) { return "test"; }

// One connection: read a head, choose the body limit, read the body, hand the request to
// a handler thread, write the answer, repeat. All of it on the stream's strand; one
// deadline timer bounds every phase.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  public:
    Session(Stream stream, std::shared_ptr<Core> core, bool counted)
        : stream_(std::move(stream)),
          timer_(stream_.get_executor()),
          core_(std::move(core)),
          buffer_(kReadBufferBytes + core_->options.max_header_bytes),
          counted_(counted),
          peer_(PeerOf(stream_)) {}

    ~Session() {
        Release();
        if (counted_) core_->stats.connections.fetch_sub(1);
    }

    void Start() { ReadHead(true); }

  private:
    using Self = Session<Stream>;

    // --- deadline: the timer fires at most once per phase and re-arms itself lazily.
    void Arm(int ms) {
        deadline_ = Clock::now() + std::chrono::milliseconds(ms);
        if (!waiting_) {
            waiting_ = true;
            timer_.expires_at(deadline_);
            timer_.async_wait(beast::bind_front_handler(&Self::OnTimer, this->shared_from_this()));
        } else if (timer_.expiry() > deadline_) {
            timer_.expires_at(deadline_);  // the pending wait ends and re-arms in OnTimer
        }
    }
    void Disarm() { deadline_ = Clock::time_point::max(); }

    void OnTimer(beast::error_code) {
        waiting_ = false;
        if (closed_ || deadline_ == Clock::time_point::max()) return;
        if (Clock::now() >= deadline_) {
            timed_out_ = true;
            Close();
            return;
        }
        waiting_ = true;
        timer_.expires_at(deadline_);
        timer_.async_wait(beast::bind_front_handler(&Self::OnTimer, this->shared_from_this()));
    }

    // --- budget of buffered body bytes, shared by all sessions
    bool Reserve(uint64_t n) {
        auto& total = core_->stats.buffered_body_bytes;
        uint64_t before = total.fetch_add(n);
        if (before + n > core_->options.max_buffered_body_bytes) {
            total.fetch_sub(n);
            return false;
        }
        reserved_ = n;
        return true;
    }
    void Release() {
        if (reserved_ > 0) core_->stats.buffered_body_bytes.fetch_sub(reserved_);
        reserved_ = 0;
    }

    // --- reading
    void ReadHead(bool first) {
        is_head_ = false;  // what an error answer before the next head needs
        version_ = 11;
        parser_.emplace();
        parser_->header_limit(static_cast<uint32_t>(core_->options.max_header_bytes));
        // Unbounded while the head is read (boost::none compares as exceeded in 1.74): the
        // route's limit is checked against Content-Length and set once the head is in.
        parser_->body_limit(std::numeric_limits<uint64_t>::max());
        const auto& o = core_->options;
        Arm(first || buffer_.size() > 0 ? o.header_timeout_ms : o.keepalive_timeout_ms);
        bhttp::async_read_header(
            stream_, buffer_, *parser_,
            beast::bind_front_handler(&Self::OnHead, this->shared_from_this()));
    }

    void OnHead(beast::error_code ec, size_t) {
        if (ec) return OnReadError(ec);
        const auto& head = parser_->get();
        version_ = head.version();
        started_ = Clock::now();
        method_.assign(head.method_string().data(), head.method_string().size());
        target_.assign(head.target().data(), head.target().size());
        bytes_in_ = 0;
        keep_alive_ = parser_->keep_alive();
        is_head_ = head.method() == bhttp::verb::head;
        const size_t limit = core_->body_limit(
            RequestHead{std::string_view(head.method_string().data(), head.method_string().size()),
                        std::string_view(head.target().data(), head.target().size())});
        const auto length = parser_->content_length();
        if (length && *length > limit) {
            return Fail(413, "payload_too_large",
                        "body is " + std::to_string(*length) +
                            " bytes; the limit for this route is " + std::to_string(limit));
        }
        const uint64_t reserve = length ? *length : (parser_->chunked() ? limit : 0);
        if (reserve > 0 && !Reserve(reserve)) {
            return Fail(503, "overloaded",
                        "the server holds too many request bodies at once; retry later");
        }
        parser_->body_limit(limit);
        auto expect = head.find(bhttp::field::expect);
        if (expect != head.end() &&
            IEquals(std::string_view(expect->value().data(), expect->value().size()),
                    "100-continue") &&
            !parser_->is_done()) {
            static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
            Arm(core_->options.body_timeout_ms);
            net::async_write(stream_, net::buffer(kContinue, sizeof kContinue - 1),
                             [self = this->shared_from_this()](beast::error_code e, size_t) {
                                 if (e) return self->Close();
                                 self->ReadBody();
                             });
            return;
        }
        ReadBody();
    }

    void ReadBody() {
        Arm(core_->options.body_timeout_ms);
        bhttp::async_read(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&Self::OnBody, this->shared_from_this()));
    }

    void OnBody(beast::error_code ec, size_t) {
        if (ec) return OnReadError(ec);
        Disarm();
        auto msg = parser_->release();
        parser_.reset();
        Request req;
        req.method = std::string(msg.method_string());
        req.target = std::string(msg.target());
        req.peer = peer_;
        for (const auto& f : msg) {
            req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
        }
        req.body = std::move(msg.body());
        bytes_in_ = req.body.size();
        auto self = this->shared_from_this();
        core_->offload([self, req = std::move(req)]() mutable {
            Response res = Handle(*self->core_, req);
            req = Request{};  // the body is freed before its budget is released
            net::post(self->stream_.get_executor(),
                      [self, res = std::move(res)]() mutable { self->OnAnswer(std::move(res)); });
        });
    }

    void OnReadError(beast::error_code ec) {
        if (closed_ || timed_out_) return Close();
        if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
            ec == bhttp::error::partial_message) {
            return Close();
        }
        if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
            std::string_view seen(static_cast<const char*>(buffer_.data().data()),
                                  buffer_.data().size());
            if (seen.find("\r\n") == std::string_view::npos) {
                return Fail(414, "request_line_too_long",
                            "the request line exceeds " +
                                std::to_string(core_->options.max_header_bytes) + " bytes");
            }
            return Fail(431, "headers_too_large",
                        "the request line and headers exceed " +
                            std::to_string(core_->options.max_header_bytes) + " bytes");
        }
        if (ec == bhttp::error::body_limit) {
            return Fail(413, "payload_too_large", "the body exceeds the limit for this route");
        }
        const beast::error_code http_error = bhttp::error::bad_target;
        if (ec.category() == http_error.category()) {
            return Fail(400, "malformed_request", "the request is not valid HTTP/1.1");
        }
        Close();  // a socket error
    }

    // --- answering
    void OnAnswer(Response res) {
        Release();
        if (closed_) return;
        if (res.drop) return Close();
        if (res.delay_ms > 0) {
            int ms = res.delay_ms;
            res.delay_ms = 0;
            delay_ = std::make_unique<net::steady_timer>(stream_.get_executor());
            delay_->expires_after(std::chrono::milliseconds(ms));
            delay_->async_wait([self = this->shared_from_this(), res = std::move(res)](
                                   beast::error_code) mutable { self->OnAnswer(std::move(res)); });
            return;
        }
        Write(std::move(res), false);
    }

    // An error found by the transport: answer, then close without reading what follows.
    void Fail(int status, const std::string& code, const std::string& message) {
        Release();
        parser_.reset();
        Response r;
        r.status = status;
        r.body = TransportErrorBody(code, message);
        r.close = true;
        Write(std::move(r), true);
    }

    void Write(Response res, bool error) {
        response_.emplace(static_cast<bhttp::status>(res.status), version_ ? version_ : 11);
        access_destination_ = std::move(res.access_destination);
        auto& out = *response_;
        out.set(bhttp::field::content_type, res.content_type);
        for (const auto& [k, v] : res.headers) out.set(k, v);
        if (is_head_) {
            out.content_length(res.body.size());
        } else {
            out.body() = std::move(res.body);
            out.prepare_payload();
        }
        out.keep_alive(keep_alive_ && !res.close && !error);
        Arm(core_->options.body_timeout_ms);
        bhttp::async_write(stream_, out,
                           beast::bind_front_handler(&Self::OnWritten, this->shared_from_this()));
    }

    void OnWritten(beast::error_code ec, size_t) {
        const bool keep = response_->keep_alive();
        const size_t bytes = response_->body().size();
        const unsigned status = response_->result_int();
        response_.reset();
        if (core_->options.on_access) {
            AccessRecord a;
            a.method = std::move(method_);
            a.target = std::move(target_);
            a.status = status;
            if (started_ != Clock::time_point{}) {
                a.duration_us =
                    std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_)
                        .count();
            }
            a.bytes_in = bytes_in_;
            a.bytes_out = bytes;
            a.sent = !ec;
            a.destination = std::move(access_destination_);
            core_->options.on_access(a);
        }
        access_destination_.clear();
        method_.clear();
        target_.clear();
        started_ = Clock::time_point{};
        bytes_in_ = 0;
        if (ec) {
            core_->stats.answers_failed.fetch_add(1);
            {
                log::Warn("http: could not send a " + std::to_string(bytes) + "-byte answer (" +
                          std::to_string(status) +
                          "): " + (timed_out_ ? std::string("timed out") : ec.message()) +
                          "; connection closed");
            }
            return Close();
        }
        if (!keep) return Linger();
        ReadHead(false);
    }

    // After the last answer: stop sending, discard what the client still sends for a
    // while, then close, so that the answer is not lost to a reset.
    void Linger() {
        ShutdownSend(stream_);
        buffer_.consume(buffer_.size());
        Arm(core_->options.linger_ms);
        Discard();
    }
    void Discard() {
        buffer_.consume(buffer_.size());
        stream_.async_read_some(buffer_.prepare(kReadBufferBytes),
                                [self = this->shared_from_this()](beast::error_code ec, size_t) {
                                    if (ec || self->closed_) return self->Close();
                                    self->Discard();
                                });
    }

    void Close() {
        if (closed_) return;
        closed_ = true;
        timer_.cancel();
        if (delay_) delay_->cancel();
        CloseStream(stream_);
    }

    Stream stream_;
    net::steady_timer timer_;
    std::shared_ptr<Core> core_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    std::optional<bhttp::response<bhttp::string_body>> response_;
    std::string access_destination_;  // of the answer being written, for the access log
    std::unique_ptr<net::steady_timer> delay_;
    Clock::time_point deadline_ = Clock::time_point::max();
    uint64_t reserved_ = 0;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool is_head_ = false;
    bool waiting_ = false;
    bool timed_out_ = false;
    bool closed_ = false;
    bool counted_;
    std::string peer_;
    // The request being answered, for the access log.
    std::string method_;
    std::string target_;
    Clock::time_point started_{};
    size_t bytes_in_ = 0;
};

size_t ConnectionCap(size_t configured) {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);  // best effort
        getrlimit(RLIMIT_NOFILE, &lim);
    }
    if (configured > 0) return configured;
    size_t fds = lim.rlim_cur == RLIM_INFINITY ? 1 << 20 : static_cast<size_t>(lim.rlim_cur);
    // Leave room for the database, the platform connections and the logs.
    return fds > 128 ? fds - 64 : fds / 2;
}

bool IsResourceError(const beast::error_code& ec) {
    return ec == net::error::no_descriptors || ec == net::error::no_buffer_space ||
           ec == net::error::no_memory || ec == boost::system::errc::too_many_files_open_in_system;
}

}  // namespace

struct Transport::Impl {
    std::shared_ptr<Core> core = std::make_shared<Core>();
    // Declared after the core so that sessions (destroyed with the io_context) see it.
    net::io_context ioc;
    std::optional<tcp::acceptor> acceptor;
    std::optional<net::steady_timer> backoff;
    std::unique_ptr<net::thread_pool> workers;
    std::vector<std::thread> threads;
    size_t max_connections = 0;
    uint16_t port = 0;
    bool started = false;
    bool stopped = false;
    int64_t last_backoff_log = 0;

    void Accept() {
        acceptor->async_accept(
            net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
                if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
                if (ec) {
                    core->stats.accept_errors.fetch_add(1);
                    if (IsResourceError(ec)) {
                        // Out of descriptors: wait instead of spinning on a ready listener.
                        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                       Clock::now().time_since_epoch())
                                       .count();
                        if (now - last_backoff_log > 10000) {
                            last_backoff_log = now;
                            log::Warn("http: cannot accept (" + ec.message() + "); backing off");
                        }
                        backoff->expires_after(
                            std::chrono::milliseconds(core->options.accept_backoff_ms));
                        backoff->async_wait([this](beast::error_code e) {
                            if (!e) Accept();
                        });
                        return;
                    }
                    return Accept();
                }
                core->stats.accepted.fetch_add(1);
                if (core->stats.connections.load() >= max_connections) {
                    core->stats.refused.fetch_add(1);
                    Refuse(socket);
                    return Accept();
                }
                core->stats.connections.fetch_add(1);
                beast::error_code ignored;
                socket.set_option(tcp::no_delay(true), ignored);
                auto strand = socket.get_executor();
                auto session = std::make_shared<Session<tcp::socket>>(std::move(socket), core,
                                                                      /*counted=*/true);
                net::dispatch(strand, [session] { session->Start(); });
                Accept();
            });
    }

    static void Refuse(tcp::socket& socket) {
        static const std::string kAnswer = [] {
            std::string body =
                TransportErrorBody("overloaded", "too many connections; retry later");
            return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                   "Content-Length: " +
                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        }();
        beast::error_code ignored;
        socket.non_blocking(true, ignored);
        socket.write_some(net::buffer(kAnswer), ignored);
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
    }
};

Transport::Transport(TransportOptions options, BodyLimitFn body_limit, HandlerFn handler)
    : impl_(std::make_shared<Impl>()) {
    impl_->core->options = std::move(options);
    impl_->core->body_limit = std::move(body_limit);
    impl_->core->handler = std::move(handler);
}

Transport::~Transport() { Stop(); }

void Transport::Start() {
    Impl& im = *impl_;
    if (im.started) throw std::logic_error("Transport::Start called twice");
    const TransportOptions& o = im.core->options;
    im.max_connections = ConnectionCap(o.max_connections);
    beast::error_code ec;
    auto address = net::ip::make_address(o.host, ec);
    if (ec) throw std::runtime_error("invalid listen address " + o.host + ": " + ec.message());
    tcp::endpoint endpoint(address, o.port);
    im.acceptor.emplace(im.ioc);
    im.acceptor->open(endpoint.protocol(), ec);
    if (!ec) im.acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) im.acceptor->bind(endpoint, ec);
    if (!ec) im.acceptor->listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(ec.message());
    im.port = im.acceptor->local_endpoint().port();
    im.backoff.emplace(im.ioc);
    im.workers = std::make_unique<net::thread_pool>(std::max(1, o.handler_threads));
    net::thread_pool* pool = im.workers.get();
    im.core->offload = [pool](std::function<void()> job) { net::post(*pool, std::move(job)); };
    im.started = true;
    net::post(im.ioc, [&im] { im.Accept(); });
    for (int i = 0; i < std::max(1, o.io_threads); ++i) {
        im.threads.emplace_back([&im] { im.ioc.run(); });
    }
}

uint16_t Transport::port() const { return impl_->port; }

const TransportStats& Transport::stats() const { return impl_->core->stats; }

void Transport::Stop() {
    Impl& im = *impl_;
    if (!im.started || im.stopped) return;
    im.stopped = true;
    net::post(im.ioc, [&im] {
        beast::error_code ignored;
        im.acceptor->close(ignored);
        im.backoff->cancel();
    });
    im.ioc.stop();
    for (auto& t : im.threads) t.join();
    im.threads.clear();
    // Handlers in progress finish (their answers are never written); then the sessions go
    // with the io_context.
    im.workers->join();
}

std::string ServeBytesForTesting(const TransportOptions& options, const BodyLimitFn& body_limit,
                                 const HandlerFn& handler, std::string_view input) {
    auto core = std::make_shared<Core>();
    core->options = options;
    core->body_limit = body_limit;
    core->handler = handler;
    core->offload = [](std::function<void()> job) { job(); };
    net::io_context ioc;
    beast::test::stream server(ioc);
    beast::test::stream client(ioc);
    server.connect(client);
    server.append(beast::string_view(input.data(), input.size()));
    server.close_remote();
    std::make_shared<Session<beast::test::stream>>(std::move(server), core, false)->Start();
    ioc.run();
    auto out = client.str();
    return std::string(out.data(), out.size());
}

}  // namespace audsync::http
