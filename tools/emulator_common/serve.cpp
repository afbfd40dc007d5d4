// The HTTP side every emulator shares.
#include "serve.hpp"

#include <cctype>
#include <cstdlib>
#include <exception>

#include "audsync/http/transport.hpp"

namespace audsync::emulator_common {

struct Server::Impl {
    std::string host;
    uint16_t port = 0;
    int threads = 8;
    size_t max_body_bytes = 0;
    Handler handler;
    std::function<Answer()> on_error;
    std::unique_ptr<http::Transport> transport;
};

Server::Server(std::string host, uint16_t port, int threads, size_t max_body_bytes, Handler handler,
               std::function<Answer()> on_error)
    : impl_(std::make_unique<Impl>()) {
    impl_->host = std::move(host);
    impl_->port = port;
    impl_->threads = threads;
    impl_->max_body_bytes = max_body_bytes;
    impl_->handler = std::move(handler);
    impl_->on_error = std::move(on_error);
}

Server::~Server() { Stop(); }

void Server::Start() {
    http::TransportOptions o;
    o.host = impl_->host;
    o.port = impl_->port;
    o.handler_threads = impl_->threads;
    o.keepalive_timeout_ms = 5000;
    const size_t limit = impl_->max_body_bytes;
    auto body_limit = [limit](const http::RequestHead&) { return limit; };
    Impl* impl = impl_.get();
    auto handler = [impl](const http::Request& req) {
        std::map<std::string, std::string> headers;
        for (const auto& [name, value] : req.headers) {
            std::string lower = name;
            for (char& c : lower)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            headers.emplace(lower, value);
        }
        Answer a;
        try {
            a = impl->handler(req.method, req.target, headers, req.body);
        } catch (const std::exception&) {
            a = impl->on_error();
        }
        http::Response r;
        r.status = a.status;
        r.body = std::move(a.body);
        r.drop = a.drop;  // close without an answer, as a crashed proxy would
        r.delay_ms = a.delay_ms;
        for (auto& [k, v] : a.headers) {
            if (k == "Content-Type") {
                r.content_type = v;
            } else {
                r.headers.emplace_back(k, v);
            }
        }
        return r;
    };
    impl_->transport = std::make_unique<http::Transport>(o, body_limit, handler);
    impl_->transport->Start();
}

uint16_t Server::port() const { return impl_->transport ? impl_->transport->port() : 0; }

std::string Server::base_url() const {
    return "http://" + impl_->host + ":" + std::to_string(port());
}

void Server::Stop() {
    if (impl_ && impl_->transport) {
        impl_->transport->Stop();
        impl_->transport.reset();
    }
}

std::optional<std::pair<std::string, uint16_t>> ParseListen(const std::string& value) {
    auto colon = value.rfind(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    std::string port = value.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    long p = std::strtol(port.c_str(), nullptr, 10);
    if (p > 65535) return std::nullopt;
    return std::make_pair(value.substr(0, colon), static_cast<uint16_t>(p));
}

std::optional<long> ParseCount(const std::string& value, long min) {
    if (value.empty() || value.size() > 10 ||
        value.find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    const long n = std::strtol(value.c_str(), nullptr, 10);
    if (n < min || n > 1000000000) return std::nullopt;
    return n;
}

}  // namespace audsync::emulator_common
