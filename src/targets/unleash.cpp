// The Unleash target: segments of the Admin API over libcurl.
#include "audsync/targets/unleash.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/log.hpp"
#include "audsync/common/text.hpp"
#include "audsync/targets/configcat.hpp"  // Utf16Length
#include "shared/curl_client.hpp"
#include "shared/list_text.hpp"

namespace audsync::targets {
namespace {

using shared::Description;
using shared::Grouped;
using shared::IncludedKeys;
using shared::Shown;

// How much of an answer's body the client keeps. The segment list carries every
// segment's values: Unleash's default 300 segments of 1,000 UUIDs are about 12 MB.
constexpr size_t kCurlBodyKept = 32 * 1024 * 1024;
// Enough depth for the segment list: object > segments > segment > constraints >
// constraint > values > value.
constexpr int kListDepth = 8;
// An error body is {"name","message","details":[{"message"}]}.
constexpr int kErrorDepth = 4;
constexpr size_t kMaxErrorMessage = 1024;
// The tail of the message of a failed request validation (src/lib/error/bad-data-error.ts).
constexpr std::string_view kReferToDetails = " Refer to the `details` list for more information.";

// Replaces every occurrence of `secret` in `text`: no answer may carry the token into a
// log, a dead letter or the API.
void Redact(std::string& text, const std::string& secret) {
    if (secret.empty()) return;
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 10)) {
        text.replace(at, secret.size(), "[redacted]");
    }
}

// A segment's id as Unleash sends it (a number), as text.
std::optional<std::string> IdText(const rapidjson::Value& segment) {
    const rapidjson::Value* id = json::Find(segment, "id");
    if (id == nullptr) return std::nullopt;
    if (id->IsUint64()) return std::to_string(id->GetUint64());
    if (id->IsString() && id->GetStringLength() > 0) return std::string(json::View(*id));
    return std::nullopt;
}

}  // namespace

std::string UnleashSegmentName(std::string_view audience_key, std::string_view context_kind) {
    return shared::SegmentName(audience_key, context_kind);
}

std::string UnleashSegmentBody(const PushRequest& request, std::string_view context_name,
                               std::string_view project) {
    std::string out = "{\"name\":";
    json::AppendQuoted(out, UnleashSegmentName(request.audience_key, request.context_kind));
    out += ",\"description\":";
    json::AppendQuoted(out, Description(request));
    out += ",\"project\":";
    if (project.empty()) {
        out += "null";
    } else {
        json::AppendQuoted(out, project);
    }
    out += ",\"constraints\":[{\"contextName\":";
    json::AppendQuoted(out, context_name);
    out += R"(,"operator":"IN","values":[)";
    std::vector<std::string_view> keys = IncludedKeys(request);
    if (keys.empty()) keys.emplace_back(kUnleashEmptyListValue);
    for (size_t i = 0; i < keys.size(); ++i) {
        if (i > 0) out += ',';
        json::AppendQuoted(out, keys[i]);
    }
    out += R"(],"inverted":false,"caseInsensitive":false}]})";
    return out;
}

std::optional<std::string> UnleashLimitViolation(const PushRequest& request, int max_list_items) {
    std::vector<std::string_view> keys = IncludedKeys(request);
    const size_t limit = max_list_items > 0 ? static_cast<size_t>(max_list_items) : 0;
    if (keys.size() > limit) {
        return "audience has " + Grouped(keys.size()) + " members; Unleash allows " +
               Grouped(limit) + " values per segment (segmentValuesLimit, max_list_items)";
    }
    for (std::string_view key : keys) {
        const size_t n = Utf16Length(key);
        if (n == 0) {
            return std::string("a member key is empty; Unleash refuses an empty constraint value");
        }
        if (n > kUnleashMaxValueLength) {
            return "member key \"" + Shown(key) + "\" has " + Grouped(n) +
                   " characters; Unleash allows " + Grouped(kUnleashMaxValueLength) +
                   " characters per constraint value";
        }
    }
    return std::nullopt;
}

std::string UnleashErrorBody(std::string_view body) {
    rapidjson::Document doc;
    if (!json::Parse(body, doc, kErrorDepth).ok() || !doc.IsObject()) return std::string(body);
    std::optional<std::string> message = json::FindString(doc, "message");
    const rapidjson::Value* details = json::Find(doc, "details");
    if (!message || details == nullptr || !details->IsArray()) return std::string(body);
    std::string text = *message;
    if (text.size() >= kReferToDetails.size() &&
        text.compare(text.size() - kReferToDetails.size(), kReferToDetails.size(),
                     kReferToDetails) == 0) {
        text.resize(text.size() - kReferToDetails.size());
        if (!text.empty() && text.back() == '.') text.pop_back();
    }
    bool first = true;
    for (const auto& detail : details->GetArray()) {
        if (!detail.IsObject()) continue;
        std::optional<std::string> m = json::FindString(detail, "message");
        if (!m || m->empty() || text.find(*m) != std::string::npos) continue;
        text += first ? ": " : "; ";
        text += *m;
        first = false;
    }
    std::string out = "{\"name\":";
    json::AppendQuoted(out, json::FindString(doc, "name").value_or("Error"));
    out += ",\"message\":";
    json::AppendQuoted(out, log::Clip(text, kMaxErrorMessage));
    out += '}';
    return out;
}

std::optional<long long> UnleashSegmentValuesLimit(std::string_view ui_config_body) {
    rapidjson::Document doc;
    // ui-config is shallow, but its flags and links nest a few levels.
    if (!json::Parse(ui_config_body, doc, 16).ok() || !doc.IsObject()) return std::nullopt;
    const rapidjson::Value* limits = json::FindObject(doc, "resourceLimits");
    if (limits == nullptr) return std::nullopt;
    const rapidjson::Value* values = json::Find(*limits, "segmentValues");
    if (values == nullptr || !values->IsInt64() || values->GetInt64() <= 0) return std::nullopt;
    return values->GetInt64();
}

UnleashTarget::UnleashTarget(const config::Target& target)
    : target_(target),
      authorization_("Authorization: " + target.api_token),
      client_(std::make_unique<CurlClient>(target.request_timeout_ms, kCurlBodyKept)) {}

UnleashTarget::~UnleashTarget() = default;

std::optional<std::string> UnleashTarget::CachedSegmentId(const std::string& name) const {
    auto it = segment_ids_.find(name);
    if (it == segment_ids_.end()) return std::nullopt;
    return it->second;
}

HttpResult UnleashTarget::Send(const std::string& method, const std::string& path,
                               const std::string& body) {
    std::vector<std::string> headers = {authorization_, "Accept: application/json"};
    if (method == "POST" || method == "PUT") headers.emplace_back("Content-Type: application/json");
    HttpResult r = client_->Send(method, target_.api_base + path, headers, body);
    if (r.status >= 400) r.body = UnleashErrorBody(r.body);
    Redact(r.body, target_.api_token);
    Redact(r.transport_error, target_.api_token);
    return r;
}

HttpResult UnleashTarget::FindSegment(const std::string& name, std::optional<std::string>& id) {
    id.reset();
    HttpResult r = Send("GET", "/api/admin/segments", "");
    if (r.status != 200) return r;
    rapidjson::Document doc;
    const rapidjson::Value* segments = nullptr;
    if (json::Parse(r.body, doc, kListDepth).ok() && doc.IsObject()) {
        segments = json::Find(doc, "segments");
    }
    if (segments == nullptr || !segments->IsArray()) {
        // Not knowing the segments must not create a second one of the same name.
        HttpResult failed;
        failed.transport_error =
            r.body.size() >= kCurlBodyKept
                ? "Unleash's segment list is longer than the " + Grouped(kCurlBodyKept) +
                      " bytes audsync reads of an answer; cannot find segment \"" + Shown(name) +
                      "\""
                : "Unleash's segment list is not a JSON object with a \"segments\" array";
        return failed;
    }
    for (const auto& segment : segments->GetArray()) {
        if (!segment.IsObject()) continue;
        auto n = json::FindString(segment, "name");
        if (!n || *n != name) continue;
        if (auto segment_id = IdText(segment)) {
            id = std::move(segment_id);
            break;
        }
    }
    return r;
}

HttpResult UnleashTarget::CreateSegment(const std::string& body, std::optional<std::string>& id) {
    id.reset();
    HttpResult r = Send("POST", "/api/admin/segments", body);
    if (r.status != 201) return r;
    rapidjson::Document doc;
    if (json::Parse(r.body, doc, kListDepth).ok() && doc.IsObject()) id = IdText(doc);
    // Without the id the next push lists the segments and finds it by name.
    return r;
}

HttpResult UnleashTarget::Push(const PushRequest& request) {
    if (auto why = UnleashLimitViolation(request, target_.max_list_items)) {
        HttpResult refused;
        refused.over_limit = std::move(why);
        return refused;
    }
    const std::string name = UnleashSegmentName(request.audience_key, request.context_kind);
    const std::string body = UnleashSegmentBody(request, target_.context_name, target_.project);
    HttpResult r;
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::optional<std::string> id = CachedSegmentId(name);
        if (!id) {
            r = FindSegment(name, id);
            if (r.status != 200) return r;
        }
        if (!id) {
            // The create carries the whole segment: no update is needed after it.
            r = CreateSegment(body, id);
            if (id) segment_ids_[name] = *id;
            // 409: made since the list was read; list again and replace it.
            if (r.status == 409) continue;
            return r;
        }
        segment_ids_[name] = *id;
        r = Send("PUT", "/api/admin/segments/" + text::PercentEncode(*id), body);
        if (r.status != 404) return r;
        // Deleted in Unleash since it was cached or listed: create it again.
        segment_ids_.erase(name);
    }
    return r;
}

CheckResult UnleashTarget::Check() {
    CheckResult out;
    out.ok = true;
    HttpResult ui = Send("GET", "/api/admin/ui-config", "");
    if (ui.status != 200) {
        out.ok = false;
        bool refused = ui.status == 401 || ui.status == 403;
        out.lines.push_back("API token: " + std::string(refused ? "refused" : "not verified") +
                            " (" + Describe(ui) + ")");
        return out;
    }
    out.lines.push_back("API token: ok");
    const std::string mine = Grouped(static_cast<size_t>(std::max(0, target_.max_list_items)));
    std::optional<long long> limit = UnleashSegmentValuesLimit(ui.body);
    if (!limit) {
        out.lines.push_back("segment values limit: not reported by Unleash; max_list_items is " +
                            mine);
    } else if (*limit < target_.max_list_items) {
        out.ok = false;
        const std::string theirs = Grouped(static_cast<size_t>(*limit));
        out.lines.push_back("segment values limit: Unleash allows " + theirs +
                            " values per segment (resourceLimits.segmentValues) but "
                            "max_list_items is " +
                            mine + "; set max_list_items to " + theirs +
                            " so that longer lists are refused before they are sent");
    } else {
        out.lines.push_back("segment values limit: ok (Unleash allows " +
                            Grouped(static_cast<size_t>(*limit)) + ", max_list_items is " + mine +
                            ")");
    }
    return out;
}

std::unique_ptr<Target> MakeUnleashTarget(const config::Target& target) {
    return std::make_unique<UnleashTarget>(target);
}

}  // namespace audsync::targets
