// The shared libcurl plumbing of every target.
#include "curl_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <stdexcept>

namespace audsync::targets {
namespace {

struct Received {
    size_t max_body = 0;
    std::string body;
    std::map<std::string, std::string> headers;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
    auto* r = static_cast<Received*>(user);
    size_t len = size * n;
    if (r->body.size() < r->max_body)
        r->body.append(data, std::min(len, r->max_body - r->body.size()));
    return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
    auto* r = static_cast<Received*>(user);
    std::string line(data, size * n);
    size_t colon = line.find(':');
    if (colon == std::string::npos) return size * n;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    while (!value.empty() &&
           (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
        value.pop_back();
    }
    if (r->headers.size() < 64) r->headers[name] = value;
    return size * n;
}

void GlobalInit() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

CurlClient::CurlClient(int timeout_ms, size_t max_body_bytes)
    : timeout_ms_(timeout_ms), max_body_bytes_(max_body_bytes) {
    GlobalInit();
    curl_ = curl_easy_init();
    if (curl_ == nullptr) throw std::runtime_error("curl_easy_init failed");
}

CurlClient::~CurlClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult CurlClient::Send(const std::string& method, const std::string& url,
                            const std::vector<std::string>& headers, const std::string& body,
                            std::map<std::string, std::string>* answer_headers) {
    CURL* c = static_cast<CURL*>(curl_);
    curl_easy_reset(c);  // keeps the connection cache
    Received received;
    received.max_body = max_body_bytes_;
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    std::string agent = std::string("User-Agent: audsync/") + AUDSYNC_VERSION;
    list = curl_slist_append(list, agent.c_str());
    list = curl_slist_append(list, "Expect:");
    if (method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (method != "GET") {
        if (method == "POST") {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
        } else {
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &received);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &received);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    HttpResult result;
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
        result.transport_error = curl_easy_strerror(rc);
        return result;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    result.status = static_cast<int>(status);
    result.body = std::move(received.body);
    if (auto it = received.headers.find("retry-after"); it != received.headers.end()) {
        result.retry_after = it->second;
    }
    if (auto it = received.headers.find("x-ratelimit-reset"); it != received.headers.end()) {
        result.ratelimit_reset = it->second;
    }
    if (answer_headers != nullptr) *answer_headers = std::move(received.headers);
    return result;
}

std::string Describe(const HttpResult& r) {
    return r.status == 0 ? "no answer (" + r.transport_error + ")"
                         : "HTTP " + std::to_string(r.status);
}

}  // namespace audsync::targets
