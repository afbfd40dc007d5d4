// The Flagsmith target: membership as boolean traits, pushed with the bulk SDK calls.
#include "audsync/targets/flagsmith.hpp"

#include "audsync/common/json.hpp"
#include "shared/curl_client.hpp"

namespace audsync::targets {
namespace {

// Characters, as Flagsmith's Python code counts them: UTF-8 lead bytes.
size_t CodePoints(std::string_view s) {
    size_t n = 0;
    for (unsigned char c : s) {
        if ((c & 0xC0) != 0x80) ++n;
    }
    return n;
}

HttpResult Refused(std::string why) {
    HttpResult r;
    r.over_limit = std::move(why);
    return r;
}

}  // namespace

std::string FlagsmithTraitName(std::string_view trait_prefix, std::string_view audience_key,
                               std::string_view context_kind) {
    std::string out(trait_prefix);
    out += audience_key;
    if (context_kind != "user") {
        out += ':';
        out += context_kind;
    }
    return out;
}

std::string FlagsmithEdgeBody(std::string_view trait_prefix, const PushRequest& request) {
    std::string trait =
        FlagsmithTraitName(trait_prefix, request.audience_key, request.context_kind);
    std::string out = "{\"data\":[";
    for (size_t i = 0; i < request.members.size(); ++i) {
        if (i > 0) out += ',';
        out += "{\"identifier\":";
        json::AppendQuoted(out, request.members[i].context_key);
        out += ",\"traits\":[{\"trait_key\":";
        json::AppendQuoted(out, trait);
        out += request.members[i].value ? ",\"trait_value\":true}]}" : ",\"trait_value\":false}]}";
    }
    out += "]}";
    return out;
}

std::string FlagsmithCoreBody(std::string_view trait_prefix, const PushRequest& request) {
    std::string trait =
        FlagsmithTraitName(trait_prefix, request.audience_key, request.context_kind);
    std::string out = "[";
    for (size_t i = 0; i < request.members.size(); ++i) {
        if (i > 0) out += ',';
        out += "{\"identity\":{\"identifier\":";
        json::AppendQuoted(out, request.members[i].context_key);
        out += "},\"trait_key\":";
        json::AppendQuoted(out, trait);
        out += request.members[i].value ? ",\"trait_value\":true}" : ",\"trait_value\":false}";
    }
    out += "]";
    return out;
}

std::string FlagsmithKeyCheckLine(const HttpResult& flags_answer) {
    if (flags_answer.status == 200) return "environment key: ok";
    bool refused = flags_answer.status == 401 || flags_answer.status == 403;
    return "environment key: " + std::string(refused ? "refused" : "not verified") + " (" +
           Describe(flags_answer) + ")";
}

FlagsmithTarget::FlagsmithTarget(const config::Target& target)
    : target_(target), client_(std::make_unique<CurlClient>(target.request_timeout_ms)) {}

FlagsmithTarget::~FlagsmithTarget() = default;

HttpResult FlagsmithTarget::Push(const PushRequest& request) {
    const bool edge = target_.flagsmith_api == "edge";
    if (edge && request.members.size() > kFlagsmithEdgeMaxIdentities) {
        return Refused("Flagsmith's Edge API takes at most 100 identities per request (" +
                       std::to_string(request.members.size()) + " given)");
    }
    if (!edge) {
        std::string trait =
            FlagsmithTraitName(target_.trait_prefix, request.audience_key, request.context_kind);
        if (CodePoints(trait) > kFlagsmithCoreMaxTraitKey) {
            return Refused("the trait name is " + std::to_string(CodePoints(trait)) +
                           " characters; Flagsmith's Core API stores at most 200");
        }
    }
    // PUT in both APIs: it updates the identity and keeps its other traits (the Edge
    // API's POST would replace them, erasing what the application stored).
    HttpResult r = client_->Send(
        "PUT", target_.api_base + (edge ? kFlagsmithEdgeBulkPath : kFlagsmithCoreBulkPath),
        {"X-Environment-Key: " + target_.environment_key, "Content-Type: application/json",
         "Accept: application/json"},
        edge ? FlagsmithEdgeBody(target_.trait_prefix, request)
             : FlagsmithCoreBody(target_.trait_prefix, request));
    // Flagsmith throttles with 429 and Retry-After (seconds) only; an X-Ratelimit-Reset
    // from something in between would not mean LaunchDarkly's epoch milliseconds.
    r.ratelimit_reset.reset();
    // The Edge API answers 404 "Environment not found" for a key it does not know:
    // the environment key is wrong, not the members.
    if (edge && r.status == 404) r.credentials_refused = true;
    return r;
}

CheckResult FlagsmithTarget::Check() {
    HttpResult flags = client_->Send(
        "GET", target_.api_base + kFlagsmithFlagsPath,
        {"X-Environment-Key: " + target_.environment_key, "Accept: application/json"}, "");
    CheckResult out;
    out.ok = flags.status == 200;
    out.lines.push_back(FlagsmithKeyCheckLine(flags));
    return out;
}

std::unique_ptr<Target> MakeFlagsmithTarget(const config::Target& target) {
    return std::make_unique<FlagsmithTarget>(target);
}

}  // namespace audsync::targets
