// A raw TCP client for HTTP tests: requests curl would refuse to send, and what comes back.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "audsync/common/text.hpp"

namespace audsync::testing {

// A plain TCP connection to 127.0.0.1, for requests curl would refuse to send.
class RawConnection {
  public:
    explicit RawConnection(uint16_t port) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            close(fd_);
            fd_ = -1;
        }
    }
    ~RawConnection() {
        if (fd_ >= 0) close(fd_);
    }
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;

    bool ok() const { return fd_ >= 0; }

    bool Send(const std::string& bytes) {
        size_t sent = 0;
        while (sent < bytes.size()) {
            ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) return false;
            sent += static_cast<size_t>(n);
        }
        return true;
    }

    // Reads until the peer closes, a full response (by Content-Length) is in, or the
    // deadline passes. Bytes after that response are kept for the next read.
    std::string ReadResponse(int deadline_ms = 10000) {
        auto one = ReadResponses(1, deadline_ms);
        if (!one.empty()) return one[0];
        std::string partial;
        partial.swap(pending_);
        return partial;
    }

    // Reads until `count` complete responses (by Content-Length) are in, the peer closes,
    // or the deadline passes; returns the responses found, in order.
    std::vector<std::string> ReadResponses(size_t count, int deadline_ms = 10000) {
        std::vector<std::string> out;
        const int64_t deadline = text::NowMs() + deadline_ms;
        auto split = [&] {
            while (out.size() < count) {
                size_t end = pending_.find("\r\n\r\n");
                if (end == std::string::npos) return;
                size_t cl = pending_.find("Content-Length: ");
                size_t length =
                    cl != std::string::npos && cl < end ? std::stoul(pending_.substr(cl + 16)) : 0;
                if (pending_.size() < end + 4 + length) return;
                out.push_back(pending_.substr(0, end + 4 + length));
                pending_.erase(0, end + 4 + length);
            }
        };
        split();
        while (out.size() < count && text::NowMs() < deadline) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 50) > 0) {
                char buf[65536];
                ssize_t n = recv(fd_, buf, sizeof buf, 0);
                if (n <= 0) break;
                pending_.append(buf, static_cast<size_t>(n));
                split();
            }
        }
        return out;
    }

    // Reads until `marker` has arrived, the peer closes, or the deadline passes.
    std::string ReadUntil(const std::string& marker, int deadline_ms = 10000) {
        std::string out;
        out.swap(pending_);
        const int64_t deadline = text::NowMs() + deadline_ms;
        while (out.find(marker) == std::string::npos && text::NowMs() < deadline) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 50) > 0) {
                char buf[65536];
                ssize_t n = recv(fd_, buf, sizeof buf, 0);
                if (n <= 0) break;
                out.append(buf, static_cast<size_t>(n));
            }
        }
        return out;
    }

    // The value of a response header (exact name), or "" when absent.
    static std::string HeaderOf(const std::string& response, const std::string& name) {
        size_t end = response.find("\r\n\r\n");
        size_t at = response.find("\r\n" + name + ": ");
        if (at == std::string::npos || at > end) return "";
        at += name.size() + 4;
        return response.substr(at, response.find("\r\n", at) - at);
    }

    // True once the peer has closed the connection (polls until the deadline).
    bool ClosedByPeer(int deadline_ms) {
        pending_.clear();
        const int64_t deadline = text::NowMs() + deadline_ms;
        while (text::NowMs() < deadline) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 50) > 0) {
                char buf[4096];
                ssize_t n = recv(fd_, buf, sizeof buf, 0);
                if (n <= 0) return true;
            }
        }
        return false;
    }

    static int Status(const std::string& response) {
        if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
        return std::atoi(response.c_str() + 9);
    }

    static std::string Body(const std::string& response) {
        size_t end = response.find("\r\n\r\n");
        return end == std::string::npos ? std::string() : response.substr(end + 4);
    }

  private:
    int fd_ = -1;
    std::string pending_;  // received, not yet returned
};

}  // namespace audsync::testing
