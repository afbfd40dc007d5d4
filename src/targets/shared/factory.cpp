// The one place that maps a platform name to its target.
#include <stdexcept>

#include "audsync/targets/configcat.hpp"
#include "audsync/targets/flagsmith.hpp"
#include "audsync/targets/launchdarkly.hpp"
#include "audsync/targets/statsig.hpp"
#include "audsync/targets/target.hpp"
#include "audsync/targets/unleash.hpp"

namespace audsync::targets {

std::unique_ptr<Target> MakeTarget(const config::Target& target) {
    if (target.platform == "launchdarkly") return std::make_unique<LaunchDarklyTarget>(target);
    if (target.platform == "flagsmith") return MakeFlagsmithTarget(target);
    if (target.platform == "configcat") return MakeConfigCatTarget(target);
    if (target.platform == "unleash") return MakeUnleashTarget(target);
    if (target.platform == "statsig") return MakeStatsigTarget(target);
    // config::LoadText refuses any other platform.
    throw std::invalid_argument("unknown platform " + target.platform);
}

}  // namespace audsync::targets
