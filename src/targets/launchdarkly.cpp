// The LaunchDarkly target: synced-segment pushes and credential checks over libcurl.
#include "audsync/targets/launchdarkly.hpp"

#include <cctype>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "shared/curl_client.hpp"

namespace audsync::targets {

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

LaunchDarklyTarget::LaunchDarklyTarget(const config::Target& target)
    : target_(target), client_(std::make_unique<CurlClient>(target.request_timeout_ms)) {}

LaunchDarklyTarget::~LaunchDarklyTarget() = default;

HttpResult LaunchDarklyTarget::Push(const PushRequest& request) {
    return client_->Send(
        "POST", target_.api_base + kLdSyncedSegmentPath,
        {"Authorization: " + target_.service_token, std::string("LD-API-Version: ") + kLdApiVersion,
         "Content-Type: application/json"},
        SyncedSegmentBody(target_.client_side_id, request));
}

CheckResult LaunchDarklyTarget::Check() {
    CheckResult out;
    out.ok = true;
    HttpResult goals = client_->Send(
        "HEAD",
        target_.clientsdk_base + "/sdk/goals/" + text::PercentEncode(target_.client_side_id), {},
        "");
    if (goals.status == 200) {
        out.lines.push_back("client-side ID: ok");
    } else {
        out.ok = false;
        out.lines.push_back(
            "client-side ID: " +
            std::string(goals.status == 404 ? "unknown to LaunchDarkly" : "not verified") + " (" +
            Describe(goals) + ")");
    }
    HttpResult versions = client_->Send("GET", target_.api_base + "/api/v2/versions",
                                        {"Authorization: " + target_.service_token,
                                         std::string("LD-API-Version: ") + kLdApiVersion},
                                        "");
    if (versions.status == 200) {
        out.lines.push_back("service token: ok");
    } else {
        out.ok = false;
        bool refused = versions.status == 401 || versions.status == 403;
        out.lines.push_back("service token: " + std::string(refused ? "refused" : "not verified") +
                            " (" + Describe(versions) + ")");
    }
    return out;
}

}  // namespace audsync::targets
