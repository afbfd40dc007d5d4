// What the ingest path would do with events, read-only (semantics rules 1-7).
#include "audsync/ingest/dry_run.hpp"

#include <limits>

#include "audsync/common/text.hpp"
#include "audsync/mapping/mapping.hpp"
#include "audsync/store/store.hpp"

namespace audsync::ingest {

DryRun::DryRun(const config::Config& config, store::Database& reader,
               const AudienceRegistry& audiences)
    : config_(config), reader_(reader), audiences_(audiences) {}

Summary DryRun::Classify(const config::Destination& destination, std::vector<segment::Item>& items,
                         size_t index_base) {
    const int64_t received_ms = text::NowMs();
    const mapping::Rules rules = mapping::RulesFor(destination, config_.limits);
    const std::string& dest = destination.id;
    mapping::AudienceKindLookup kind_lookup = [&](const std::string& external_id) {
        return audiences_.ContextKind(dest, external_id);
    };
    Summary summary;
    for (size_t i = 0; i < items.size(); ++i) {
        auto& item = items[i];
        if (!item.event) {
            summary.rejected.push_back(
                {index_base + i, item.message_id, item.error.reason, item.error.detail});
            continue;
        }
        mapping::Outcome outcome = mapping::Resolve(*item.event, rules, received_ms, kind_lookup);
        if (const auto* na = std::get_if<mapping::NotApplicable>(&outcome)) {
            ++summary.not_applicable;
            ++summary.not_applicable_reasons[na->reason];
            continue;
        }
        if (const auto* r = std::get_if<mapping::Rejection>(&outcome)) {
            summary.rejected.push_back({index_base + i, item.message_id, r->reason, r->detail});
            continue;
        }
        const auto& change = std::get<mapping::MembershipChange>(outcome);
        const std::string& message_id = item.event->message_id;
        if (!seen_.insert({dest, message_id}).second ||
            store::HasEvent(reader_, dest, message_id)) {
            ++summary.duplicates;
            continue;
        }
        // Rule 6: the newest event time wins; on equal times the later arrival.
        auto member =
            std::make_tuple(dest, change.audience_id, change.context_kind, change.context_key);
        auto it = decided_.find(member);
        int64_t current = std::numeric_limits<int64_t>::min();
        if (it != decided_.end()) {
            current = it->second;
        } else if (auto stored = store::FindMembership(reader_, dest, change.audience_id,
                                                       change.context_kind, change.context_key)) {
            current = stored->event_ms;
        }
        if (change.event_time_ms < current) {
            ++summary.stale;
            continue;
        }
        decided_[member] = change.event_time_ms;
        ++summary.accepted;
    }
    return summary;
}

}  // namespace audsync::ingest
