// Replays of captured Segment events through the ingest path, streaming.
#include "audsync/app/replay.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "audsync/ingest/dry_run.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/segment/stream.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"

namespace audsync::app {
namespace {

constexpr size_t kBatchEvents = 500;
constexpr size_t kReadBytes = 1 << 20;

}  // namespace

Result<admin::EventReplayReport> ReplayEvents(const config::Config& config,
                                              const config::Destination& destination,
                                              Runtime* runtime, std::istream& input,
                                              const EventReplayOptions& options) {
    admin::EventReplayReport report;
    report.dry_run = options.dry_run;
    // Replayed batch objects may be larger than one live request.
    config::Limits limits = config.limits;
    limits.tracking_max_request_bytes = limits.webhook_max_request_bytes =
        std::max<size_t>(64 * 1024 * 1024, limits.webhook_max_request_bytes);
    limits.tracking_max_events = limits.webhook_max_events = 1000000;

    std::unique_ptr<store::Database> reader;
    ingest::AudienceRegistry dry_audiences;
    std::unique_ptr<ingest::DryRun> dry;
    try {
        if (options.dry_run) {
            reader = std::make_unique<store::Database>(config.database, false);
            for (const auto& a : store::LoadAudiences(*reader)) {
                dry_audiences.Put(a.destination, a.external_id, a.context_kind);
            }
            dry = std::make_unique<ingest::DryRun>(config, *reader, dry_audiences);
        }
    } catch (const store::SqliteError& e) {
        return MakeError(ErrorCode::kUnavailable, "storage_unavailable", e.what());
    }

    std::vector<segment::Item> batch;
    std::vector<size_t> lines;  // the input line of each item of `batch`
    size_t batch_base = 0;      // index of batch[0] in the whole input
    Status stored = Ok();
    int64_t last_seq = 0;
    auto flush = [&]() {
        if (batch.empty() || !stored) return;
        Result<ingest::Summary> r = ingest::Summary{};
        try {
            r = dry ? Result<ingest::Summary>(dry->Classify(destination, batch, batch_base))
                    : runtime->ingest().Apply(destination, batch, batch_base,
                                             ingest::Service::WhenOverloaded::kWait);
        } catch (const store::SqliteError& e) {
            r = MakeError(ErrorCode::kUnavailable, "storage_unavailable", e.what());
        }
        if (!r) {
            stored = r.error();
            return;
        }
        const ingest::Summary& s = r.value();
        report.stored += s.stored;
        last_seq = std::max(last_seq, s.last_seq);
        report.accepted += s.accepted;
        report.duplicates += s.duplicates;
        report.stale += s.stale;
        report.not_applicable += s.not_applicable;
        for (const auto& [reason, n] : s.not_applicable_reasons) {
            report.not_applicable_reasons[reason] += n;
        }
        for (const auto& rej : s.rejected) {
            ++report.rejected;
            ++report.rejected_by_reason[rej.reason];
            if (report.first_rejections.size() < admin::EventReplayReport::kMaxListedRejections) {
                report.first_rejections.push_back({lines[rej.index - batch_base], rej.index,
                                                   rej.message_id, rej.reason, rej.detail});
            }
        }
        batch_base += batch.size();
        batch.clear();
        lines.clear();
    };
    auto reject = [&](const std::string& reason, const std::string& detail, size_t line) {
        segment::Item item;
        item.error = segment::ItemError{reason, detail};
        batch.push_back(std::move(item));
        lines.push_back(line);
    };
    segment::ValueSplitter splitter(limits.tracking_max_request_bytes);
    auto emit = [&](std::string_view value, bool oversize) {
        const size_t line = splitter.line();
        if (oversize) {
            reject("event_too_large", "the value is over the replay limit", line);
        } else {
            auto parsed = segment::ParseReplayValue(value, limits);
            if (!parsed) {
                reject(parsed.error().name, parsed.error().message, line);
            } else {
                for (auto& item : parsed.value().items) {
                    batch.push_back(std::move(item));
                    lines.push_back(line);
                }
            }
        }
        if (batch.size() >= kBatchEvents) flush();
    };
    std::vector<char> buffer(kReadBytes);
    int64_t read_bytes = 0;
    Status stream = Ok();
    while (stream && stored && input) {
        input.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        std::streamsize n = input.gcount();
        if (n <= 0) break;
        read_bytes += n;
        stream = splitter.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)), emit);
        if (options.progress) options.progress(read_bytes, batch_base + batch.size());
    }
    if (stream && stored) stream = splitter.Finish(emit);
    report.events = batch_base + batch.size();
    flush();
    if (!stored) return stored.error();
    if (!stream) report.stream_error = stream.error().message;
    // Returns once the applier (this process's or a running server's) has applied every
    // stored event, so that what the replay did is visible when it ends.
    if (runtime != nullptr && !options.dry_run) {
        report.applied =
            last_seq == 0 || runtime->applier().WaitApplied(last_seq, options.apply_timeout_ms);
    }
    return report;
}

}  // namespace audsync::app
