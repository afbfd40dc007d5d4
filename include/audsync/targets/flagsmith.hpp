// The Flagsmith target: audience membership as a boolean trait on each identity, written
// with Flagsmith's bulk SDK calls (docs/platforms/flagsmith.md).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "audsync/config/config.hpp"
#include "audsync/targets/target.hpp"

namespace audsync::targets {

// Paths under the target's api_base.
constexpr const char* kFlagsmithEdgeBulkPath = "/api/v1/bulk-identities/";  // Edge API
constexpr const char* kFlagsmithCoreBulkPath = "/api/v1/traits/bulk/";      // Core API
constexpr const char* kFlagsmithFlagsPath = "/api/v1/flags/";
// The Edge API's bulk call takes at most this many identities.
constexpr size_t kFlagsmithEdgeMaxIdentities = 100;
// The Core API stores trait keys in a 200-character column.
constexpr size_t kFlagsmithCoreMaxTraitKey = 200;

// The trait that holds membership of an audience: trait_prefix + audience_key for the
// "user" context kind, trait_prefix + audience_key + ":" + context_kind for any other.
std::string FlagsmithTraitName(std::string_view trait_prefix, std::string_view audience_key,
                               std::string_view context_kind);

// Edge API body: {"data":[{"identifier":K,"traits":[{"trait_key":T,"trait_value":true}]},...]}
// one identity per member, in order, byte for byte.
std::string FlagsmithEdgeBody(std::string_view trait_prefix, const PushRequest& request);

// Core API body: [{"identity":{"identifier":K},"trait_key":T,"trait_value":true},...]
// one item per member, in order, byte for byte.
std::string FlagsmithCoreBody(std::string_view trait_prefix, const PushRequest& request);

// The credential check's line for the answer to GET /api/v1/flags/: "environment key: ok",
// "environment key: refused (HTTP 401)", "environment key: not verified (...)". It never
// holds the key.
std::string FlagsmithKeyCheckLine(const HttpResult& flags_answer);

class CurlClient;

// Flagsmith's bulk trait calls over libcurl, with a kept-alive connection: PUT
// /api/v1/bulk-identities/ (flagsmith_api "edge") or PUT /api/v1/traits/bulk/ ("core").
// Both update the identity and keep the traits the application set on it. Rate-limit
// answers carry only Retry-After (ratelimit_reset is never set).
// Not thread-safe: one instance per thread.
class FlagsmithTarget : public Target {
  public:
    explicit FlagsmithTarget(const config::Target& target);
    ~FlagsmithTarget() override;
    FlagsmithTarget(const FlagsmithTarget&) = delete;
    FlagsmithTarget& operator=(const FlagsmithTarget&) = delete;

    PushShape shape() const override { return PushShape::kDeltas; }
    // Refuses without a request (over_limit) a push of more than 100 identities to the
    // Edge API or a trait name over 200 characters to the Core API.
    HttpResult Push(const PushRequest& request) override;
    // GET /api/v1/flags/ with the environment key.
    CheckResult Check() override;

  private:
    const config::Target target_;
    std::unique_ptr<CurlClient> client_;
};

std::unique_ptr<Target> MakeFlagsmithTarget(const config::Target& target);

}  // namespace audsync::targets
