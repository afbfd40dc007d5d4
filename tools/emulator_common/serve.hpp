// What every platform emulator shares: its answer type, serving a handler over
// http::Transport, and the --listen option of its binary.
#pragma once

#include <signal.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace audsync::emulator_common {

// One answer of an emulator.
struct Answer {
    int status = 200;
    std::string body;
    std::map<std::string, std::string> headers;  // "Content-Type" sets the content type
    bool drop = false;                           // close without answering
    int delay_ms = 0;                            // wait before answering
};

// method, target (path and query), headers with lower-cased names, body.
using Handler =
    std::function<Answer(const std::string&, const std::string&,
                         const std::map<std::string, std::string>&, const std::string&)>;

// Serves `handler` on http::Transport. An exception from the handler is answered by
// `on_error()` (each platform's own error shape). Start() throws when it cannot listen.
class Server {
  public:
    Server(std::string host, uint16_t port, int threads, size_t max_body_bytes, Handler handler,
           std::function<Answer()> on_error);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    void Start();
    uint16_t port() const;  // 0 before Start and after Stop
    std::string base_url() const;
    void Stop();  // idempotent

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// "HOST:PORT" with a port from 0 to 65535; nullopt for anything else.
std::optional<std::pair<std::string, uint16_t>> ParseListen(const std::string& value);

// A whole number from `min` to 10^9 written in decimal digits, or nullopt (an option's
// value: --rate-limit, --max-items, ...).
std::optional<long> ParseCount(const std::string& value, long min);

// The life of an emulator binary: blocks SIGINT and SIGTERM (before Start makes any
// thread, so that they reach sigwait), starts `emulator`, prints "<name> listening on
// <url> (<hint>)", waits for either signal and stops it. Returns the exit status: 0, or 1
// (with the reason on stderr) when it cannot listen on `where`.
template <typename Emulator>
int ServeUntilSignal(const std::string& name, Emulator& emulator, const std::string& where,
                     const std::string& hint) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    try {
        emulator.Start();
    } catch (const std::exception& ex) {
        std::cerr << name << ": cannot listen on " << where << ": " << ex.what() << "\n";
        return 1;
    }
    std::cout << name << " listening on " << emulator.base_url() << " (" << hint << ")"
              << std::endl;
    int sig = 0;
    sigwait(&signals, &sig);
    emulator.Stop();
    return 0;
}

}  // namespace audsync::emulator_common
