// The LaunchDarkly target: synced-segment pushes and credential checks over libcurl.
#include "audsync/targets/launchdarkly.hpp"

#include <curl/curl.h>

#include <cctype>
#include <mutex>
#include <stdexcept>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

namespace audsync::targets {
namespace {

constexpr size_t kMaxBodyKept = 4096;

struct Received {
    std::string body;
    std::optional<std::string> retry_after;
    std::optional<std::string> ratelimit_reset;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
    auto* r = static_cast<Received*>(user);
    size_t len = size * n;
    if (r->body.size() < kMaxBodyKept)
        r->body.append(data, std::min(len, kMaxBodyKept - r->body.size()));
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
    if (name == "retry-after") r->retry_after = value;
    if (name == "x-ratelimit-reset") r->ratelimit_reset = value;
    return size * n;
}

void GlobalInit() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string CohortName(std::string_view audience_key) {
    std::string out(audience_key);
    for (char& c : out) {
        if (c == '_') c = ' ';
    }
    if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
    return out;
}

std::string SyncedSegmentBody(std::string_view client_side_id, const PushRequest& request) {
    std::string name = CohortName(request.audience_key);
    std::string out = "{\"environmentId\":";
    json::AppendQuoted(out, client_side_id);
    out += ",\"contextKind\":";
    json::AppendQuoted(out, request.context_kind);
    out += ",\"batch\":[";
    for (size_t i = 0; i < request.members.size(); ++i) {
        if (i > 0) out += ',';
        out += "{\"userId\":";
        json::AppendQuoted(out, request.members[i].context_key);
        out += ",\"cohortName\":";
        json::AppendQuoted(out, name);
        out += ",\"cohortId\":";
        json::AppendQuoted(out, request.audience_id);
        out += request.members[i].value ? ",\"value\":true}" : ",\"value\":false}";
    }
    out += "]}";
    return out;
}

LaunchDarklyTarget::LaunchDarklyTarget(const config::Destination& destination)
    : destination_(destination) {
    GlobalInit();
    curl_ = curl_easy_init();
    if (curl_ == nullptr) throw std::runtime_error("curl_easy_init failed");
}

LaunchDarklyTarget::~LaunchDarklyTarget() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult LaunchDarklyTarget::Send(const std::string& method, const std::string& url,
                                    const std::string& body, bool with_token) {
    CURL* c = static_cast<CURL*>(curl_);
    curl_easy_reset(c);  // keeps the connection cache
    Received received;
    curl_slist* headers = nullptr;
    std::string auth = "Authorization: " + destination_.service_token;
    std::string version = std::string("LD-API-Version: ") + kLdApiVersion;
    std::string agent = std::string("User-Agent: audsync/") + AUDSYNC_VERSION;
    if (with_token) headers = curl_slist_append(headers, auth.c_str());
    headers = curl_slist_append(headers, version.c_str());
    headers = curl_slist_append(headers, agent.c_str());
    headers = curl_slist_append(headers, "Expect:");
    if (method == "POST") {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    } else if (method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    }
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &received);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &received);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(destination_.request_timeout_ms));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    HttpResult result;
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
        result.transport_error = curl_easy_strerror(rc);
        return result;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    result.status = static_cast<int>(status);
    result.body = std::move(received.body);
    result.retry_after = std::move(received.retry_after);
    result.ratelimit_reset = std::move(received.ratelimit_reset);
    return result;
}

HttpResult LaunchDarklyTarget::Push(const PushRequest& request) {
    return Send("POST", destination_.api_base + kLdSyncedSegmentPath,
                SyncedSegmentBody(destination_.client_side_id, request), true);
}

CheckResult LaunchDarklyTarget::Check() {
    CheckResult out;
    out.ok = true;
    auto describe = [](const HttpResult& r) {
        return r.status == 0 ? "no answer (" + r.transport_error + ")"
                             : "HTTP " + std::to_string(r.status);
    };
    HttpResult goals = Send("HEAD",
                            destination_.clientsdk_base + "/sdk/goals/" +
                                text::PercentEncode(destination_.client_side_id),
                            "", false);
    if (goals.status == 200) {
        out.lines.push_back("client-side ID: ok");
    } else {
        out.ok = false;
        out.lines.push_back(
            "client-side ID: " +
            std::string(goals.status == 404 ? "unknown to LaunchDarkly" : "not verified") + " (" +
            describe(goals) + ")");
    }
    HttpResult versions = Send("GET", destination_.api_base + "/api/v2/versions", "", true);
    if (versions.status == 200) {
        out.lines.push_back("service token: ok");
    } else {
        out.ok = false;
        bool refused = versions.status == 401 || versions.status == 403;
        out.lines.push_back("service token: " + std::string(refused ? "refused" : "not verified") +
                            " (" + describe(versions) + ")");
    }
    return out;
}

std::unique_ptr<Target> MakeTarget(const config::Destination& destination) {
    return std::make_unique<LaunchDarklyTarget>(destination);
}

}  // namespace audsync::targets
