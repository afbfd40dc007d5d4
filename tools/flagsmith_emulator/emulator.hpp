// An in-memory Flagsmith (the SDK endpoints audsync and applications call) for tests, the
// demo and manual runs. Routes and their sources: docs/platforms/flagsmith.md.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "serve.hpp"

namespace audsync::flagsmith_emulator {

// The most identities one Edge bulk request may carry (more: 400).
constexpr size_t kMaxBulkIdentities = 100;
// The longest string trait value, in characters (longer: 400).
constexpr size_t kMaxTraitValueChars = 2000;

// One injected answer, used for the next `count` bulk requests (edge or core).
struct Fault {
    int status = 0;                          // 0: answer normally (after delay_ms)
    std::optional<std::string> retry_after;  // Retry-After header
    int delay_ms = 0;                        // wait before answering
    bool drop = false;                       // close the connection without answering
    int count = 1;
};

// An identity of the environment: its traits by name, each value as JSON text
// (true, false, 42, 1.5, "text").
struct Identity {
    std::string identifier;
    std::map<std::string, std::string> traits;
};

struct Stats {
    uint64_t requests = 0;  // bulk requests (edge PUT/POST, core PUT), faults included
    std::map<int, uint64_t> by_status;
    uint64_t identities = 0;  // identity entries (edge) or trait items (core) applied
    size_t max_batch = 0;     // most entries in one accepted bulk request
    std::string last_method;
    std::string last_path;
    std::string last_body;
    std::map<std::string, std::string> last_headers;  // lower-cased names
};

using Answer = emulator_common::Answer;

// The emulator's --help text: options, Flagsmith routes and control routes.
const char* Usage();

// An in-memory Flagsmith environment with one server-side key: the Edge API's bulk
// identities call (PUT merges, POST overwrites), the Core API's bulk traits call, the
// identities and flags SDK calls, fault injection and a control API (/_emulator/...).
// Bulk calls are applied before the answer (the real Edge API applies them later).
// Thread-safe.
class Emulator {
  public:
    struct Options {
        std::string host = "127.0.0.1";
        uint16_t port = 0;  // 0: any free port
        std::string environment_key = "ser.emulator-key";
        int threads = 8;
    };

    explicit Emulator(Options options);
    ~Emulator();
    Emulator(const Emulator&) = delete;
    Emulator& operator=(const Emulator&) = delete;

    // Throws std::runtime_error when it cannot listen.
    void Start();
    uint16_t port() const;
    std::string base_url() const;  // http://host:port, the target's api_base
    void Stop();

    // The whole behaviour, without HTTP. `headers` have lower-cased names; `target` is the
    // path with its query.
    Answer Handle(const std::string& method, const std::string& target,
                  const std::map<std::string, std::string>& headers, const std::string& body);

    void AddFault(Fault fault);
    void ClearFaults();
    void SetDelay(int ms);                        // every bulk request
    void RefuseKeys(std::set<std::string> keys);  // 400 to a bulk request holding any
    void SetRejectKey(bool reject);               // 403 to everything that needs the key
    // A trait as the application would set it. `json_value` is JSON text (true, "pro",
    // 42); null deletes the trait. Creates the identity.
    void SetIdentityTrait(const std::string& identifier, const std::string& name,
                          const std::string& json_value);
    void Reset();  // identities, faults, refusals, the key refusal, stats

    std::map<std::string, Identity> Identities() const;
    // The trait's value as JSON text; nullopt when the identity or trait is absent.
    std::optional<std::string> Trait(const std::string& identifier, const std::string& name) const;
    // The trait's value when it is a boolean.
    std::optional<bool> BoolTrait(const std::string& identifier, const std::string& name) const;
    Stats stats() const;

  private:
    Answer Bulk(const std::string& method, const std::string& path,
                const std::map<std::string, std::string>& headers, const std::string& body);
    Answer EdgeBulk(bool overwrite, const std::string& body);
    Answer CoreBulk(const std::string& body);
    Answer IdentitiesGet(const std::string& query);
    Answer IdentitiesPost(const std::string& body);
    bool KeyAccepted(const std::map<std::string, std::string>& headers) const;  // under mu_
    Answer Control(const std::string& method, const std::string& path, const std::string& body);

    Options options_;
    mutable std::mutex mu_;
    std::map<std::string, Identity> identities_;  // Protected by mu_ (as is all below)
    std::deque<Fault> faults_;
    std::set<std::string> refused_;
    int delay_ms_ = 0;
    bool reject_key_ = false;
    Stats stats_;
    std::unique_ptr<emulator_common::Server> server_;
};

}  // namespace audsync::flagsmith_emulator
