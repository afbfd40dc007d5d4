// The one place that assembles config -> database -> writer -> engine -> HTTP server.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audsync/admin/admin.hpp"
#include "audsync/admin/rest.hpp"
#include "audsync/common/result.hpp"
#include "audsync/config/config.hpp"
#include "audsync/ingest/ingest.hpp"
#include "audsync/store/applier.hpp"
#include "audsync/store/writer.hpp"
#include "audsync/sync/engine.hpp"
#include "audsync/sync/reporter.hpp"

namespace audsync::http {
class Server;
}

namespace audsync::app {

// "no database at /x/audsync.db (config /etc/audsync/audsync.json)" unless the file
// exists. Only serve and migrate create a database; everything else refuses.
[[nodiscard]] Status RequireDatabase(const std::string& database, const std::string& config_path);

// The server lock of a database: `<database>.lock` held with flock, the holder's pid
// inside. One `audsync serve` (or CLI push) per database. Released on destruction.
class DatabaseLock {
  public:
    // Errors: kUnavailable "database_locked" naming the database and the holder's pid.
    static Result<std::unique_ptr<DatabaseLock>> Acquire(const std::string& database);
    ~DatabaseLock();
    DatabaseLock(const DatabaseLock&) = delete;
    DatabaseLock& operator=(const DatabaseLock&) = delete;

  private:
    explicit DatabaseLock(int fd) : fd_(fd) {}
    int fd_;
};

struct RuntimeOptions {
    bool create_database = false;        // serve: create and migrate a missing database
    bool exclusive = false;              // hold the database's server lock (serve, pushes)
    bool sync = false;                   // run the sync engine
    bool http = false;                   // serve HTTP
    std::string config_path;             // named in messages
    sync::TargetFactory target_factory;  // default: the platforms' own targets
};

// A running audsync: the inbox writer (ingest's appends), the database's writer with
// the applier folding the inbox, the ingest service, the admin service and, as asked,
// the sync engine and the HTTP server. Stop() (or destruction) stops them in order:
// HTTP first, then the engine, then the writers, so nothing acknowledged is lost.
// Thread-safety: Start/Reload/Stop from one thread; the services are thread-safe.
class Runtime {
  public:
    static Result<std::unique_ptr<Runtime>> Start(std::shared_ptr<const config::Config> config,
                                                  RuntimeOptions options);
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    const config::Config& config() const { return *config_; }
    store::Writer& writer() { return *writer_; }
    store::InboxWriter& inbox_writer() { return *inbox_writer_; }
    store::Applier& applier() { return *applier_; }
    ingest::AudienceRegistry& audiences() { return audiences_; }
    ingest::Service& ingest() { return *ingest_; }
    ingest::Admission& admission() { return *admission_; }
    store::Checkpointer& checkpointer() { return *checkpointer_; }
    admin::Service& admin() { return *admin_; }
    sync::Engine* engine() { return engine_.get(); }
    sync::Reporter* reporter() { return reporter_.get(); }
    // The bound HTTP port (0 without HTTP).
    uint16_t port() const;
    // The admin listener's port (0 without admin_listen or HTTP).
    uint16_t admin_port() const;

    // Applies a re-read config (SIGHUP): secrets, destination settings and the log level
    // take effect in place. Fields that need a restart (listen, database, threads,
    // timeouts, limits, dedupe window) keep their running value; the returned warnings
    // name each one.
    std::vector<std::string> Reload(std::shared_ptr<const config::Config> next);

    void Stop();

  private:
    Runtime() = default;
    Status Open(const RuntimeOptions& options);

    std::shared_ptr<const config::Config> config_;
    std::unique_ptr<DatabaseLock> lock_;
    std::unique_ptr<store::Database> reader_;  // readiness checks
    std::mutex reader_mu_;
    ingest::AudienceRegistry audiences_;
    // Destroyed in reverse: the applier outlives both writers (the inbox writer may
    // still run a prune job of the applier's while it stops).
    std::unique_ptr<store::Applier> applier_;
    std::unique_ptr<store::InboxWriter> inbox_writer_;
    std::unique_ptr<store::Writer> writer_;
    std::unique_ptr<store::Checkpointer> checkpointer_;
    // The backlog gate of ingest; its reader's connections are its own (guarded by the
    // gate's lock).
    std::unique_ptr<store::BacklogReader> backlog_reader_;
    std::unique_ptr<ingest::Admission> admission_;
    std::unique_ptr<ingest::Service> ingest_;
    std::unique_ptr<sync::Engine> engine_;
    std::unique_ptr<sync::Reporter> reporter_;
    std::unique_ptr<admin::Service> admin_;
    std::unique_ptr<admin::Rest> rest_;
    std::unique_ptr<http::Server> server_;
    bool stopped_ = false;
};

}  // namespace audsync::app
