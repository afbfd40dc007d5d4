// The ConfigCat target: segments of the Public Management API over libcurl.
#include "audsync/targets/configcat.hpp"

#include <rapidjson/document.h>

#include <set>
#include <string>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "shared/curl_client.hpp"
#include "shared/list_text.hpp"

namespace audsync::targets {
namespace {

using shared::Description;
using shared::Grouped;
using shared::IncludedKeys;
using shared::Shown;

// How much of an answer's body the client keeps: a segment list of a product at the
// largest plan's 1,000 segments (about 550 bytes each) fits well.
constexpr size_t kCurlBodyKept = 8 * 1024 * 1024;
// Enough depth for a segment list: array > segment > product > organization.
constexpr int kListDepth = 8;

bool IsSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string Basic(const config::Target& target) {
    return "Authorization: Basic " +
           text::Base64Encode(target.api_user + ":" + target.api_password);
}

}  // namespace

std::string ConfigCatSegmentName(std::string_view audience_key, std::string_view context_kind) {
    return shared::SegmentName(audience_key, context_kind);
}

std::string ConfigCatComparisonValue(const PushRequest& request) {
    std::vector<std::string_view> keys = IncludedKeys(request);
    if (keys.empty()) return kConfigCatEmptyListValue;
    std::string out;
    for (size_t i = 0; i < keys.size(); ++i) {
        if (i > 0) out += ',';
        out += keys[i];
    }
    return out;
}

std::string ConfigCatSegmentBody(const PushRequest& request) {
    std::string out = "{\"name\":";
    json::AppendQuoted(out, ConfigCatSegmentName(request.audience_key, request.context_kind));
    out += ",\"description\":";
    json::AppendQuoted(out, Description(request));
    out +=
        R"(,"comparisonAttribute":"Identifier","comparator":"sensitiveIsOneOf","comparisonValue":)";
    json::AppendQuoted(out, ConfigCatComparisonValue(request));
    out += '}';
    return out;
}

size_t Utf16Length(std::string_view utf8) {
    size_t units = 0;
    for (char ch : utf8) {
        auto c = static_cast<unsigned char>(ch);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte
        units += c >= 0xF0 ? 2 : 1;        // a 4-byte sequence is a surrogate pair
    }
    return units;
}

std::optional<std::string> ConfigCatLimitViolation(const PushRequest& request, int max_list_items) {
    const std::string name = ConfigCatSegmentName(request.audience_key, request.context_kind);
    if (size_t n = Utf16Length(name); n > kConfigCatMaxSegmentName) {
        return "segment name \"" + Shown(name) + "\" has " + Grouped(n) +
               " characters; ConfigCat allows " + Grouped(kConfigCatMaxSegmentName) +
               " characters per segment name";
    }
    std::vector<std::string_view> keys = IncludedKeys(request);
    const size_t limit = max_list_items > 0 ? static_cast<size_t>(max_list_items) : 0;
    if (keys.size() > limit) {
        return "audience has " + Grouped(keys.size()) + " members; ConfigCat allows " +
               Grouped(limit) + " comparison values per segment on this plan (max_list_items)";
    }
    size_t total = keys.empty() ? 0 : keys.size() - 1;  // the commas
    for (std::string_view key : keys) {
        const size_t n = Utf16Length(key);
        if (n == 0) {
            return std::string(
                "a member key is empty; ConfigCat cannot list an empty comparison "
                "value item");
        }
        if (n > kConfigCatMaxItemLength) {
            return "member key \"" + Shown(key) + "\" has " + Grouped(n) +
                   " characters; ConfigCat allows " + Grouped(kConfigCatMaxItemLength) +
                   " characters per comparison value item";
        }
        if (key.find(',') != std::string_view::npos) {
            return "member key \"" + Shown(key) +
                   "\" contains ','; ConfigCat's comparison value is a comma-separated list, so "
                   "the key would be split";
        }
        if (IsSpace(key.front()) || IsSpace(key.back())) {
            return "member key \"" + Shown(key) +
                   "\" starts or ends with white space; ConfigCat trims comparison value items, "
                   "so the key would never match";
        }
        total += n;
    }
    if (total > kConfigCatMaxComparisonValue) {
        return "comparison value of " + Grouped(keys.size()) + " members has " + Grouped(total) +
               " characters; ConfigCat allows " + Grouped(kConfigCatMaxComparisonValue) +
               " characters per comparison value";
    }
    return std::nullopt;
}

std::optional<int64_t> ParseConfigCatRateLimitReset(std::string_view value, int64_t now_ms) {
    if (value.empty()) return std::nullopt;
    if (value.find_first_not_of("0123456789") == std::string_view::npos) {
        if (value.size() > 15) return std::nullopt;  // beyond any plausible time
        const int64_t n = std::stoll(std::string(value));
        if (n >= 1'000'000'000'000) return n;     // epoch milliseconds
        if (n >= 1'000'000'000) return n * 1000;  // epoch seconds
        return now_ms + n * 1000;                 // seconds from now
    }
    return text::ParseIso8601(value);
}

void NormaliseConfigCatRateLimit(HttpResult& result,
                                 const std::map<std::string, std::string>& headers,
                                 int64_t now_ms) {
    // CurlClient reads LaunchDarkly's X-Ratelimit-Reset (epoch ms); ConfigCat's header is
    // X-Rate-Limit-Reset, in another format.
    result.ratelimit_reset.reset();
    if (result.status != 429 || result.retry_after) return;
    auto it = headers.find("x-rate-limit-reset");
    if (it == headers.end()) return;
    if (auto ms = ParseConfigCatRateLimitReset(it->second, now_ms)) {
        result.ratelimit_reset = std::to_string(*ms);
    }
}

ConfigCatTarget::ConfigCatTarget(const config::Target& target)
    : target_(target),
      authorization_(Basic(target)),
      client_(std::make_unique<CurlClient>(target.request_timeout_ms, kCurlBodyKept)) {}

ConfigCatTarget::~ConfigCatTarget() = default;

std::optional<std::string> ConfigCatTarget::CachedSegmentId(const std::string& name) const {
    auto it = segment_ids_.find(name);
    if (it == segment_ids_.end()) return std::nullopt;
    return it->second;
}

HttpResult ConfigCatTarget::Send(const std::string& method, const std::string& path,
                                 const std::string& body) {
    std::vector<std::string> headers = {authorization_, "Accept: application/json"};
    if (method == "POST" || method == "PUT") headers.emplace_back("Content-Type: application/json");
    std::map<std::string, std::string> answer_headers;
    HttpResult r = client_->Send(method, target_.api_base + path, headers, body, &answer_headers);
    NormaliseConfigCatRateLimit(r, answer_headers, text::NowMs());
    return r;
}

HttpResult ConfigCatTarget::FindSegment(const std::string& name, std::optional<std::string>& id) {
    id.reset();
    HttpResult r =
        Send("GET", "/v1/products/" + text::PercentEncode(target_.product_id) + "/segments", "");
    if (r.status != 200) return r;
    rapidjson::Document doc;
    if (!json::Parse(r.body, doc, kListDepth).ok() || !doc.IsArray()) {
        // Not knowing the segments must not create a second one of the same name.
        HttpResult failed;
        failed.transport_error =
            r.body.size() >= kCurlBodyKept
                ? "ConfigCat's segment list is longer than the " + Grouped(kCurlBodyKept) +
                      " bytes audsync reads of an answer; cannot find segment \"" + Shown(name) +
                      "\""
                : "ConfigCat's segment list is not a JSON array";
        return failed;
    }
    for (const auto& segment : doc.GetArray()) {
        auto n = json::FindString(segment, "name");
        auto segment_id = json::FindString(segment, "segmentId");
        if (n && *n == name && segment_id && !segment_id->empty()) {
            id = *segment_id;
            break;
        }
    }
    return r;
}

HttpResult ConfigCatTarget::CreateSegment(const std::string& body, std::optional<std::string>& id) {
    id.reset();
    HttpResult r =
        Send("POST", "/v1/products/" + text::PercentEncode(target_.product_id) + "/segments", body);
    if (r.status != 201) return r;
    rapidjson::Document doc;
    if (json::Parse(r.body, doc, kListDepth).ok() && doc.IsObject()) {
        auto segment_id = json::FindString(doc, "segmentId");
        if (segment_id && !segment_id->empty()) id = *segment_id;
    }
    // Without the id the next push lists the segments and finds it by name.
    return r;
}

HttpResult ConfigCatTarget::Push(const PushRequest& request) {
    if (auto why = ConfigCatLimitViolation(request, target_.max_list_items)) {
        HttpResult refused;
        refused.over_limit = std::move(why);
        return refused;
    }
    const std::string name = ConfigCatSegmentName(request.audience_key, request.context_kind);
    const std::string body = ConfigCatSegmentBody(request);
    HttpResult r;
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::optional<std::string> id = CachedSegmentId(name);
        if (!id) {
            r = FindSegment(name, id);
            if (r.status != 200) return r;
        }
        if (!id) {
            // The create carries the whole condition: no update is needed after it.
            r = CreateSegment(body, id);
            if (id) segment_ids_[name] = *id;
            return r;
        }
        segment_ids_[name] = *id;
        r = Send("PUT", "/v1/segments/" + text::PercentEncode(*id), body);
        if (r.status != 404) return r;
        // Deleted in ConfigCat since it was cached or listed: create it again.
        segment_ids_.erase(name);
    }
    return r;
}

CheckResult ConfigCatTarget::Check() {
    CheckResult out;
    out.ok = true;
    HttpResult me = Send("GET", "/v1/me", "");
    if (me.status == 200) {
        out.lines.push_back("API credentials: ok");
    } else {
        out.ok = false;
        bool refused = me.status == 401 || me.status == 403;
        out.lines.push_back(
            "API credentials: " + std::string(refused ? "refused" : "not verified") + " (" +
            Describe(me) + ")");
    }
    HttpResult product =
        Send("GET", "/v1/products/" + text::PercentEncode(target_.product_id) + "/segments", "");
    if (product.status == 200) {
        out.lines.push_back("product: ok");
    } else {
        out.ok = false;
        // A product id that is not a UUID can be answered 400 as well as 404.
        bool unknown = product.status == 404 || product.status == 400;
        out.lines.push_back("product: " + std::string(unknown ? "unknown" : "not verified") + " (" +
                            Describe(product) + ")");
    }
    return out;
}

std::unique_ptr<Target> MakeConfigCatTarget(const config::Target& target) {
    return std::make_unique<ConfigCatTarget>(target);
}

}  // namespace audsync::targets
