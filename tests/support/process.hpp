// Test helpers around processes: the audsync binary as a child, and a keep-alive client.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace audsync::testing {

// Runs the audsync binary to completion; returns exit code, stdout and stderr.
struct CommandResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};
CommandResult RunAudsync(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {});

// `audsync serve --config PATH` in a child process. Start() waits (with a deadline)
// for the "listening on" line and reads the port from it.
class ServerProcess {
  public:
    explicit ServerProcess(std::string config_path);
    ~ServerProcess();
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    // Returns false when the server exited or did not listen within the deadline.
    bool Start(int deadline_ms = 20000);
    // Before Start: the child's RLIMIT_NOFILE, soft and hard (for descriptor exhaustion).
    void SetFileLimit(long limit) { file_limit_ = limit; }
    uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string url(const std::string& path) const;
    // SIGTERM and wait: the exit code (non-zero when a sanitizer reported anything).
    int Stop();
    // SIGKILL and wait.
    void Kill();
    // What the server wrote to stderr so far (its log).
    std::string Log() const;
    // What it wrote to stdout until it listened (the "listening on" line).
    const std::string& Startup() const { return startup_; }

  private:
    std::string config_path_;
    std::string log_path_;
    pid_t pid_ = -1;
    uint16_t port_ = 0;
    long file_limit_ = 0;
    std::string startup_;
};

// CPU time (user + system) the process has used, in milliseconds; -1 when it is gone.
int64_t CpuTimeMs(pid_t pid);
// Resident set size of the process in KiB; 0 when it is gone.
int64_t RssKb(pid_t pid);

// A keep-alive HTTP client over libcurl (one connection, reused).
struct HttpResponse {
    long status = 0;
    std::string body;
    std::map<std::string, std::string> headers;  // lower-cased names
};

class HttpClient {
  public:
    HttpClient();
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    HttpResponse Request(const std::string& method, const std::string& url,
                         const std::string& body = "",
                         const std::vector<std::string>& headers = {});
    HttpResponse Post(const std::string& url, const std::string& body,
                      const std::vector<std::string>& headers = {}) {
        return Request("POST", url, body, headers);
    }
    HttpResponse Get(const std::string& url, const std::vector<std::string>& headers = {}) {
        return Request("GET", url, "", headers);
    }

  private:
    void* curl_;
};

// "Authorization: Basic base64(key:)", as Segment's clients send a write key.
std::string BasicAuth(const std::string& write_key);

}  // namespace audsync::testing
