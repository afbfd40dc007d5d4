// The Statsig target: ID-list segments of the Console API over libcurl.
#include "audsync/targets/statsig.hpp"

#include <set>
#include <string>
#include <vector>

#include "audsync/common/crypto.hpp"
#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "shared/curl_client.hpp"
#include "shared/list_text.hpp"

namespace audsync::targets {
namespace {

using shared::Grouped;

constexpr size_t kHashDigits = 8;

bool IsWordChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool IsWord(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (!IsWordChar(c)) return false;
    }
    return true;
}

// Every character (a UTF-8 sequence counts once) outside A-Z a-z 0-9 _ becomes '_'.
std::string Sanitised(std::string_view s) {
    std::string out;
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: its lead byte counted
        out += IsWordChar(ch) ? ch : '_';
    }
    return out;
}

// At most `max` bytes of `s`, cut at a character boundary.
std::string CutUtf8(std::string s, size_t max) {
    if (s.size() <= max) return s;
    size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    s.resize(end);
    return s;
}

bool IsKeyChar(char c) { return IsWordChar(c) || c == '-'; }

std::string IdsBody(const std::vector<std::string>& ids) {
    std::string out = "{\"ids\":[";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out += ',';
        json::AppendQuoted(out, ids[i]);
    }
    out += "]}";
    return out;
}

bool Transient(int status) { return status == 0 || status == 429 || status >= 500; }

}  // namespace

std::string StatsigSegmentId(std::string_view audience_key, std::string_view context_kind) {
    const bool user = context_kind == "user";
    if (IsWord(audience_key) && (user || IsWord(context_kind))) {
        std::string id(audience_key);
        if (!user) {
            id += "--";
            id += context_kind;
        }
        if (id.size() >= kStatsigMinSegmentId && id.size() <= kStatsigMaxSegmentId) return id;
    }
    std::string name(audience_key);
    std::string prefix = Sanitised(audience_key);
    if (!user) {
        name += ':';
        name += context_kind;
        prefix += '_';
        prefix += Sanitised(context_kind);
    }
    if (prefix.size() > kStatsigMaxSegmentId - kHashDigits - 1) {
        prefix.resize(kStatsigMaxSegmentId - kHashDigits - 1);
    }
    return prefix + "-" + crypto::Sha1Hex(name).substr(0, kHashDigits);
}

std::string StatsigSegmentDescription(const PushRequest& request) {
    std::string out = "Managed by audsync: the members of Segment audience " +
                      request.audience_key + " (" + request.audience_id + ")";
    if (request.context_kind != "user") out += ", context kind " + request.context_kind;
    out += ". IDs are added and removed as members join and leave.";
    return CutUtf8(std::move(out), kStatsigMaxDescription);
}

std::string StatsigCreateBody(const PushRequest& request, std::string_view id_type) {
    const std::string id = StatsigSegmentId(request.audience_key, request.context_kind);
    std::string out = "{\"name\":";
    json::AppendQuoted(out, id);
    out += ",\"id\":";
    json::AppendQuoted(out, id);
    out += ",\"type\":\"id_list\",\"idType\":";
    json::AppendQuoted(out, id_type);
    out += ",\"description\":";
    json::AppendQuoted(out, StatsigSegmentDescription(request));
    out += '}';
    return out;
}

std::vector<std::string> StatsigIds(const PushRequest& request, bool included) {
    std::vector<std::string> ids;
    std::set<std::string_view> seen;
    for (const auto& m : request.members) {
        if (m.value == included && seen.insert(m.context_key).second) ids.push_back(m.context_key);
    }
    return ids;
}

std::string StatsigIdsBody(const PushRequest& request, bool included) {
    return IdsBody(StatsigIds(request, included));
}

std::optional<std::string> StatsigLimitViolation(const PushRequest& request) {
    for (bool included : {false, true}) {
        const size_t n = StatsigIds(request, included).size();
        if (n > kStatsigMaxIdsPerCall) {
            return Grouped(n) + " IDs to " + (included ? "add" : "remove") +
                   " in one call; Statsig takes at most " + Grouped(kStatsigMaxIdsPerCall) +
                   " IDs per call (lower max_batch)";
        }
    }
    return std::nullopt;
}

std::string RedactStatsigKeys(std::string_view body, std::string_view key) {
    std::string out(body);
    if (!key.empty()) {
        for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at)) {
            out.replace(at, key.size(), "[redacted]");
            at += 10;
        }
    }
    for (const char* prefix : {"console-", "secret-", "client-"}) {
        const std::string p = prefix;
        for (size_t at = out.find(p); at != std::string::npos; at = out.find(p, at + 1)) {
            size_t end = at + p.size();
            while (end < out.size() && IsKeyChar(out[end])) ++end;
            if (end > at + p.size()) out.replace(at + p.size(), end - at - p.size(), "[redacted]");
        }
    }
    return out;
}

bool IsStatsigWrongSegmentType(const HttpResult& result) {
    return result.status == 400 &&
           result.body.find("must be of type 'id_list'") != std::string::npos;
}

void NormaliseStatsigAnswer(HttpResult& result, std::string_view key) {
    result.body = RedactStatsigKeys(result.body, key);
    // CurlClient reads LaunchDarkly's X-Ratelimit-Reset (epoch ms): not Statsig's.
    result.ratelimit_reset.reset();
    if (result.status == 429) result.rate_limit_window_ms = kStatsigRateWindowMs;
    // Every ID of every batch would be refused the same way: the configuration (the
    // segment id is taken by a segment made by hand) is wrong, not the members.
    if (IsStatsigWrongSegmentType(result)) result.credentials_refused = true;
}

std::string StatsigKeyCheckLine(const HttpResult& list_answer) {
    if (list_answer.status == 200) return "console API key: ok";
    bool refused = list_answer.status == 401 || list_answer.status == 403;
    return "console API key: " + std::string(refused ? "refused" : "not verified") + " (" +
           Describe(list_answer) + ")";
}

StatsigTarget::StatsigTarget(const config::Target& target)
    : target_(target), client_(std::make_unique<CurlClient>(target.request_timeout_ms)) {}

StatsigTarget::~StatsigTarget() = default;

HttpResult StatsigTarget::Send(const std::string& method, const std::string& path,
                               const std::string& body) {
    std::vector<std::string> headers = {"STATSIG-API-KEY: " + target_.api_token,
                                        std::string("STATSIG-API-VERSION: ") + kStatsigApiVersion,
                                        "Accept: application/json"};
    if (method != "GET") headers.emplace_back("Content-Type: application/json");
    HttpResult r = client_->Send(method, target_.api_base + path, headers, body);
    NormaliseStatsigAnswer(r, target_.api_token);
    return r;
}

HttpResult StatsigTarget::ChangeIds(const std::string& method, const std::string& segment_id,
                                    const PushRequest& request, const std::string& body) {
    const std::string path =
        std::string(kStatsigSegmentsPath) + "/" + text::PercentEncode(segment_id) + "/id_list";
    HttpResult r = Send(method, path, body);
    if (r.status != 404) return r;
    // Not there yet (the first push of this audience), or deleted in Statsig since.
    HttpResult created =
        Send("POST", kStatsigSegmentsPath, StatsigCreateBody(request, target_.id_type));
    if (created.status >= 200 && created.status < 300) return Send(method, path, body);
    if (Transient(created.status) || created.status == 401 || created.status == 403) {
        return created;
    }
    // Refused: perhaps another worker created it meanwhile. Once more, then give up.
    r = Send(method, path, body);
    if (r.status != 404) return r;
    // Neither there nor creatable (an id_type Statsig refuses, a key without the right,
    // an api_base that is not Statsig's): no member is at fault, so pause.
    created.credentials_refused = true;
    return created;
}

HttpResult StatsigTarget::Push(const PushRequest& request) {
    if (auto why = StatsigLimitViolation(request)) {
        HttpResult refused;
        refused.over_limit = std::move(why);
        return refused;
    }
    const std::string id = StatsigSegmentId(request.audience_key, request.context_kind);
    HttpResult r;
    r.status = 204;  // nothing to send
    // Removals first: a member who left loses the flag no later than one who joined gains it.
    for (bool included : {false, true}) {
        std::vector<std::string> ids = StatsigIds(request, included);
        if (ids.empty()) continue;
        r = ChangeIds(included ? "PATCH" : "DELETE", id, request, IdsBody(ids));
        if (r.status < 200 || r.status >= 300) return r;
    }
    return r;
}

CheckResult StatsigTarget::Check() {
    HttpResult list = Send("GET", std::string(kStatsigSegmentsPath) + "?limit=1", "");
    CheckResult out;
    out.ok = list.status == 200;
    out.lines.push_back(StatsigKeyCheckLine(list));
    return out;
}

std::unique_ptr<Target> MakeStatsigTarget(const config::Target& target) {
    return std::make_unique<StatsigTarget>(target);
}

}  // namespace audsync::targets
