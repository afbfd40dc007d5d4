// The LaunchDarkly emulator: its behaviour (served by emulator_common::Server).
#include "emulator.hpp"

#include <rapidjson/document.h>

#include <cctype>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/config/config.hpp"

namespace audsync::emulator {
namespace {

Answer Json(int status, std::string body) {
    Answer a;
    a.status = status;
    a.body = std::move(body);
    a.headers["Content-Type"] = "application/json";
    return a;
}

Answer Problem(int status, const std::string& code, const std::string& message) {
    std::string body = "{\"code\":";
    json::AppendQuoted(body, code);
    body += ",\"message\":";
    json::AppendQuoted(body, message);
    body += "}";
    return Json(status, body);
}

std::string Header(const std::map<std::string, std::string>& h, const std::string& name) {
    auto it = h.find(name);
    return it == h.end() ? std::string() : it->second;
}

}  // namespace

Emulator::Emulator(Options options) : options_(std::move(options)) {}

Emulator::~Emulator() { Stop(); }

void Emulator::Start() {
    server_ = std::make_unique<emulator_common::Server>(
        options_.host, options_.port, options_.threads, 16 * 1024 * 1024,
        [this](const std::string& method, const std::string& target,
               const std::map<std::string, std::string>& headers,
               const std::string& body) { return Handle(method, target, headers, body); },
        [] { return Problem(500, "internal", "emulator error"); });
    server_->Start();
}

uint16_t Emulator::port() const { return server_ ? server_->port() : 0; }

std::string Emulator::base_url() const {
    return "http://" + options_.host + ":" + std::to_string(port());
}

void Emulator::Stop() {
    if (server_) server_->Stop();
}

void Emulator::AddFault(Fault fault) {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.push_back(std::move(fault));
}

void Emulator::ClearFaults() {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.clear();
    delay_ms_ = 0;
}

void Emulator::SetDelay(int ms) {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ms_ = ms;
}

void Emulator::RefuseKeys(std::set<std::string> keys) {
    std::lock_guard<std::mutex> lock(mu_);
    refused_ = std::move(keys);
}

void Emulator::SetRejectToken(bool reject) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_token_ = reject;
}

void Emulator::Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    segments_.clear();
    faults_.clear();
    refused_.clear();
    delay_ms_ = 0;
    reject_token_ = false;
    stats_ = Stats{};
}

std::map<std::string, Segment> Emulator::Segments() const {
    std::lock_guard<std::mutex> lock(mu_);
    return segments_;
}

std::set<std::string> Emulator::Included(const std::string& cohort_id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = segments_.find("segment-audiences-" + cohort_id);
    return it == segments_.end() ? std::set<std::string>() : it->second.included;
}

Stats Emulator::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

Answer Emulator::Handle(const std::string& method, const std::string& path,
                        const std::map<std::string, std::string>& headers,
                        const std::string& body) {
    std::string p = path.substr(0, path.find('?'));
    if (p.rfind("/_emulator/", 0) == 0) return Control(method, p, body);
    if (p == "/api/v2/segment-targets/segment-audiences") {
        if (method != "POST") return Problem(405, "method_not_allowed", "use POST");
        return SyncedSegment(headers, body);
    }
    if (p.rfind("/sdk/goals/", 0) == 0 && (method == "HEAD" || method == "GET")) {
        auto id = text::PercentDecode(p.substr(11));
        return Json(id && *id == options_.client_side_id ? 200 : 404, method == "HEAD" ? "" : "[]");
    }
    if (p == "/api/v2/versions" && method == "GET") {
        std::lock_guard<std::mutex> lock(mu_);
        if (reject_token_ || Header(headers, "authorization") != options_.service_token) {
            return Problem(401, "unauthorized", "invalid access token");
        }
        return Json(200,
                    R"({"validVersions":[20191212,20220603,20240415],"latestVersion":20240415})");
    }
    return Problem(404, "not_found", "no such resource in the emulator");
}

Answer Emulator::SyncedSegment(const std::map<std::string, std::string>& headers,
                               const std::string& body) {
    std::unique_lock<std::mutex> lock(mu_);
    ++stats_.requests;
    stats_.last_body = body;
    stats_.last_headers = headers;
    auto finish = [&](Answer a) {
        ++stats_.by_status[a.drop ? 0 : a.status];
        return a;
    };
    int delay = delay_ms_;
    if (!faults_.empty()) {
        Fault& f = faults_.front();
        Fault now = f;
        if (--f.count <= 0) faults_.pop_front();
        delay += now.delay_ms;
        if (now.drop) {
            Answer a;
            a.drop = true;
            a.delay_ms = delay;
            return finish(a);
        }
        if (now.status != 0) {
            Answer a = Problem(now.status, now.status == 429 ? "rate_limited" : "injected",
                               "injected by the emulator");
            if (now.retry_after) a.headers["Retry-After"] = *now.retry_after;
            if (now.reset_in_ms) {
                a.headers["X-Ratelimit-Reset"] = std::to_string(text::NowMs() + *now.reset_in_ms);
            }
            a.delay_ms = delay;
            return finish(a);
        }
    }
    auto fail = [&](int status, const std::string& code, const std::string& message) {
        Answer a = Problem(status, code, message);
        a.delay_ms = delay;
        return finish(a);
    };
    if (reject_token_ || Header(headers, "authorization") != options_.service_token) {
        return fail(401, "unauthorized", "invalid access token");
    }
    if (Header(headers, "ld-api-version") != "20240415") {
        return fail(400, "invalid_request", "LD-API-Version must be 20240415");
    }
    if (Header(headers, "content-type").rfind("application/json", 0) != 0) {
        return fail(400, "invalid_request", "Content-Type must be application/json");
    }
    rapidjson::Document doc;
    if (!json::Parse(body, doc, 16).ok() || !doc.IsObject()) {
        return fail(400, "invalid_request", "body could not be parsed");
    }
    auto env = json::FindString(doc, "environmentId");
    auto kind = json::FindString(doc, "contextKind");
    const rapidjson::Value* batch = json::Find(doc, "batch");
    if (!env || *env != options_.client_side_id) {
        return fail(400, "invalid_request", "environmentId is not a known client-side ID");
    }
    if (!kind || !config::IsValidContextKind(*kind)) {
        return fail(400, "invalid_request", "contextKind is missing or invalid");
    }
    if (batch == nullptr || !batch->IsArray() || batch->Empty()) {
        return fail(400, "invalid_request", "batch must be a non-empty array");
    }
    std::optional<std::string> cohort_id;
    std::optional<std::string> cohort_name;
    std::vector<std::pair<std::string, bool>> members;
    for (const auto& item : batch->GetArray()) {
        auto user = json::FindString(item, "userId");
        auto id = json::FindString(item, "cohortId");
        auto name = json::FindString(item, "cohortName");
        const rapidjson::Value* value = json::Find(item, "value");
        if (!user || user->empty() || !id || id->empty() || !name || value == nullptr ||
            !value->IsBool()) {
            return fail(400, "invalid_request",
                        "each batch item needs userId, cohortId, cohortName and a boolean value");
        }
        if (!cohort_id) {
            cohort_id = *id;
            cohort_name = *name;
        }
        if (refused_.count(*user) > 0) {
            return fail(400, "invalid_request", "context key refused: " + *user);
        }
        members.emplace_back(*user, value->GetBool());
    }
    std::string key = "segment-audiences-" + *cohort_id;
    auto it = segments_.find(key);
    if (it != segments_.end() && it->second.context_kind != *kind) {
        return fail(409, "conflict", "the segment holds another context kind");
    }
    // LaunchDarkly reads the cohort from batch[0] and applies every member to it.
    Segment& seg = segments_[key];
    seg.key = key;
    seg.cohort_id = *cohort_id;
    seg.cohort_name = *cohort_name;
    seg.context_kind = *kind;
    for (const auto& [user, included] : members) {
        if (included) {
            seg.included.insert(user);
        } else {
            seg.included.erase(user);
        }
        if (options_.on_apply) options_.on_apply(user, included);
    }
    stats_.members += members.size();
    stats_.max_batch = std::max(stats_.max_batch, members.size());
    Answer a;
    a.status = 204;
    a.delay_ms = delay;
    return finish(a);
}

Answer Emulator::Control(const std::string& method, const std::string& path,
                         const std::string& body) {
    if (path == "/_emulator/segments" && method == "GET") {
        std::string out = "{\"segments\":[";
        bool first = true;
        for (const auto& [key, seg] : Segments()) {
            if (!first) out += ',';
            first = false;
            out += "{\"key\":";
            json::AppendQuoted(out, key);
            out += ",\"cohortId\":";
            json::AppendQuoted(out, seg.cohort_id);
            out += ",\"cohortName\":";
            json::AppendQuoted(out, seg.cohort_name);
            out += ",\"contextKind\":";
            json::AppendQuoted(out, seg.context_kind);
            out += ",\"included\":[";
            bool f = true;
            for (const auto& k : seg.included) {
                if (!f) out += ',';
                f = false;
                json::AppendQuoted(out, k);
            }
            out += "]}";
        }
        return Json(200, out + "]}");
    }
    if (path == "/_emulator/stats" && method == "GET") {
        Stats s = stats();
        std::string out = "{\"requests\":" + std::to_string(s.requests) +
                          ",\"members\":" + std::to_string(s.members) +
                          ",\"max_batch\":" + std::to_string(s.max_batch) + ",\"by_status\":{";
        bool first = true;
        for (const auto& [status, n] : s.by_status) {
            out += (first ? "\"" : ",\"") + std::to_string(status) + "\":" + std::to_string(n);
            first = false;
        }
        return Json(200, out + "}}");
    }
    if (path == "/_emulator/reset" && method == "POST") {
        Reset();
        return Json(200, "{}");
    }
    if (path == "/_emulator/faults" && method == "POST") {
        rapidjson::Document doc;
        if (!json::Parse(body, doc, 8).ok() || !doc.IsObject()) {
            return Problem(400, "invalid_request", "body must be a JSON object");
        }
        Fault f;
        if (const auto* v = json::Find(doc, "status"); v && v->IsInt()) f.status = v->GetInt();
        if (const auto* v = json::Find(doc, "count"); v && v->IsInt()) f.count = v->GetInt();
        if (const auto* v = json::Find(doc, "delay_ms"); v && v->IsInt()) f.delay_ms = v->GetInt();
        if (const auto* v = json::Find(doc, "reset_in_ms"); v && v->IsInt64())
            f.reset_in_ms = v->GetInt64();
        if (const auto* v = json::Find(doc, "drop"); v && v->IsBool()) f.drop = v->GetBool();
        f.retry_after = json::FindString(doc, "retry_after");
        AddFault(f);
        return Json(200, "{}");
    }
    if (path == "/_emulator/refuse" && method == "POST") {
        rapidjson::Document doc;
        if (!json::Parse(body, doc, 8).ok() || !doc.IsObject() || !json::Find(doc, "keys") ||
            !doc["keys"].IsArray()) {
            return Problem(400, "invalid_request", "body must be {\"keys\":[...]}");
        }
        std::set<std::string> keys;
        for (const auto& k : doc["keys"].GetArray()) {
            if (k.IsString()) keys.insert(std::string(json::View(k)));
        }
        RefuseKeys(std::move(keys));
        return Json(200, "{}");
    }
    if (path == "/_emulator/token" && method == "POST") {
        rapidjson::Document doc;
        if (!json::Parse(body, doc, 8).ok() || !json::Find(doc, "reject") ||
            !doc["reject"].IsBool()) {
            return Problem(400, "invalid_request", "body must be {\"reject\":true|false}");
        }
        SetRejectToken(doc["reject"].GetBool());
        return Json(200, "{}");
    }
    return Problem(404, "not_found", "no such control route");
}

}  // namespace audsync::emulator
