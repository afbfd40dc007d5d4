// Test helpers around processes: spawning audsync, reading its state, a libcurl client.
#include "support/process.hpp"

#include <cstdlib>

#include <rapidjson/document.h>
#include <atomic>
#include <set>

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "audsync/common/text.hpp"

namespace audsync::testing {
namespace {

std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string TempPath(const char* stem) {
    char tmpl[64];
    std::snprintf(tmpl, sizeof tmpl, "/tmp/audsync-%s-XXXXXX", stem);
    int fd = mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    close(fd);
    return tmpl;
}

// Everything the child needs is made before fork(): in the child of a process with
// threads (the emulators serving), only async-signal-safe calls are allowed, and an
// allocation there can deadlock on a lock another thread held at the fork.
pid_t Spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path, long file_limit = 0) {
    std::string binary = AUDSYNC_BINARY;
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    argv.push_back(binary.data());
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string entry(*e);
        std::string name = entry.substr(0, entry.find('='));
        if (env.count(name) == 0) environment.push_back(std::move(entry));
    }
    for (const auto& [k, v] : env) environment.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);
    const rlimit lim{static_cast<rlim_t>(file_limit), static_cast<rlim_t>(file_limit)};
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        int out = open(out_path.c_str(), O_WRONLY | O_TRUNC);
        int err = open(err_path.c_str(), O_WRONLY | O_TRUNC);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        if (file_limit > 0) setrlimit(RLIMIT_NOFILE, &lim);
        execve(binary.c_str(), argv.data(), envp.data());
        _exit(127);
    }
    return pid;
}

int WaitExit(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

size_t Collect(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* user) {
    std::string line(data, size * n);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
        while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
        (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
    }
    return size * n;
}

}  // namespace

CommandResult RunAudsync(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env) {
    std::string out = TempPath("out");
    std::string err = TempPath("err");
    CommandResult r;
    r.exit_code = WaitExit(Spawn(args, env, out, err));
    r.out = ReadFile(out);
    r.err = ReadFile(err);
    unlink(out.c_str());
    unlink(err.c_str());
    return r;
}

ServerProcess::ServerProcess(std::string config_path) : config_path_(std::move(config_path)) {}

namespace {

// The secret values of a config (what its server must never log): every string under a
// secret field's name, at any depth, that is not a ${VARIABLE} reference.
void CollectSecrets(const rapidjson::Value& v, bool secret, std::vector<std::string>& out) {
    static const std::set<std::string> kNames = {
        "admin_token",   "service_token", "write_keys",       "write_key",
        "shared_secret", "webhook_token", "audience_url_key", "environment_key",
        "api_user",      "api_password",  "api_token",        "console_api_key"};
    if (v.IsString()) {
        std::string s(v.GetString(), v.GetStringLength());
        if (secret && s.size() >= 4 && s.find("${") == std::string::npos) out.push_back(s);
    } else if (v.IsArray()) {
        for (const auto& e : v.GetArray()) CollectSecrets(e, secret, out);
    } else if (v.IsObject()) {
        for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
            CollectSecrets(it->value, kNames.count(it->name.GetString()) > 0, out);
        }
    }
}

std::vector<std::string> ConfigSecrets(const std::string& config) {
    rapidjson::Document doc;
    doc.Parse(config.c_str());
    std::vector<std::string> out;
    if (!doc.HasParseError()) CollectSecrets(doc, false, out);
    return out;
}

}  // namespace

ServerProcess::~ServerProcess() {
    if (pid_ > 0) Kill();
    if (log_path_.empty()) return;
    // Kept for the suite's last test, which searches every server's log for secrets.
    if (const char* keep = std::getenv("AUDSYNC_TEST_LOG_DIR"); keep != nullptr && *keep != 0) {
        static std::atomic<int> n{0};
        const std::string to = std::string(keep) + "/serve-" + std::to_string(getpid()) + "-" +
                               std::to_string(n++) + ".log";
        std::ofstream(to, std::ios::binary) << ReadFile(log_path_);
        std::ofstream secrets(to + ".secrets", std::ios::binary);
        for (const auto& secret : ConfigSecrets(ReadFile(config_path_))) secrets << secret << "\n";
    }
    unlink(log_path_.c_str());
}

bool ServerProcess::Start(int deadline_ms) {
    std::string out = TempPath("serve-out");
    if (log_path_.empty()) log_path_ = TempPath("serve-log");
    pid_ = Spawn({"serve", "--config", config_path_}, {}, out, log_path_, file_limit_);
    const int64_t deadline = text::NowMs() + deadline_ms;
    bool ok = false;
    while (text::NowMs() < deadline) {
        std::string text = ReadFile(out);
        size_t at = text.find("listening on http://");
        size_t end = text.find(' ', at == std::string::npos ? 0 : at + 20);
        if (at != std::string::npos && end != std::string::npos) {
            std::string hostport = text.substr(at + 20, end - at - 20);
            port_ = static_cast<uint16_t>(std::stoi(hostport.substr(hostport.rfind(':') + 1)));
            startup_ = text;
            ok = true;
            break;
        }
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval
    }
    unlink(out.c_str());
    return ok;
}

std::string ServerProcess::url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
}

int ServerProcess::Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int code = WaitExit(pid_);
    pid_ = -1;
    return code;
}

void ServerProcess::Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    WaitExit(pid_);
    pid_ = -1;
}

int64_t CpuTimeMs(pid_t pid) {
    std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) return -1;
    std::istringstream fields(stat.substr(paren + 2));
    std::string field;
    int64_t utime = 0, stime = 0;
    // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) utime = std::atoll(field.c_str());
        if (i == 15) stime = std::atoll(field.c_str());
    }
    return (utime + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

int64_t RssKb(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
    }
    return 0;
}

std::string ServerProcess::Log() const { return log_path_.empty() ? "" : ReadFile(log_path_); }

HttpClient::HttpClient() : curl_(curl_easy_init()) {
    if (curl_ == nullptr) throw std::runtime_error("curl_easy_init failed");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResponse HttpClient::Request(const std::string& method, const std::string& url,
                                 const std::string& body, const std::vector<std::string>& headers) {
    CURL* c = static_cast<CURL*>(curl_);
    HttpResponse r;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_NOBODY, method == "HEAD" ? 1L : 0L);
    if (method == "GET" || method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method == "HEAD" ? nullptr : method.c_str());
        curl_easy_setopt(c, CURLOPT_NOBODY, method == "HEAD" ? 1L : 0L);
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    struct curl_slist* list = nullptr;
    list = curl_slist_append(list, "Content-Type: application/json");
    list = curl_slist_append(list, "Expect:");  // one round trip per request
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, CollectHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
        r.status = 0;
        r.body = curl_easy_strerror(rc);
        return r;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

std::string BasicAuth(const std::string& write_key) {
    return "Authorization: Basic " + text::Base64Encode(write_key + ":");
}

}  // namespace audsync::testing
