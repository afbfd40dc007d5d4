// The audsync HTTP server: its routes served by http::Transport (Boost.Beast).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "audsync/admin/rest.hpp"
#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/ingest/ingest.hpp"

namespace audsync::http {

// HTTP status and the JSON error body for an Error: the one place where error codes
// become HTTP.
int StatusFor(ErrorCode code);
std::string ErrorBody(const Error& error);

// The endpoint serving ingest, admin and health routes. Every request is answered exactly
// once, on a handler thread (http_threads of them); exceptions become a generic 500.
// `ready` answers /readyz: nothing when ready, or why not (503 not_ready with it).
// Thread-safety: Start/Stop from one thread; handlers run on the transport's threads.
class Server {
  public:
    Server(std::shared_ptr<const config::Config> config, ingest::Service& ingest,
           admin::Rest& admin, std::function<std::optional<std::string>()> ready);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and starts serving. Throws std::runtime_error when it cannot bind.
    void Start();
    // The bound port (the real one when the config asked for port 0).
    uint16_t port() const;
    // The admin listener's bound port (0 without admin_listen).
    uint16_t admin_port() const;
    // A reloaded config (SIGHUP): the admin token, write keys and destinations of every
    // request from now on. Listening address, limits and timeouts stay as started.
    void SetConfig(std::shared_ptr<const config::Config> config);
    // Stops accepting and waits for the workers. Idempotent.
    void Stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace audsync::http
