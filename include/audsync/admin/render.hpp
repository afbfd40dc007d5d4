// The one JSON rendering of each operator type, shared by the REST API and the CLI's --json.
#pragma once

#include <string>

#include "audsync/admin/admin.hpp"
#include "audsync/admin/replay.hpp"

namespace audsync::admin {

std::string ToJson(const store::SegmentSummary& segment);  // a list row
std::string ToJson(const SegmentList& list);
std::string ToJson(const SegmentDetail& detail);
std::string ToJson(const store::MemberRow& member);  // one line of a member listing
std::string ToJson(const MemberPage& page);
std::string ToJson(const MemberDetail& detail);
std::string ToJson(const ContextView& view);
std::string ToJson(const DestinationView& view);
std::string ToJson(const DestinationList& list);
std::string DeadLetterJson(const store::MemberRow& dead_letter);
std::string ToJson(const DeadLetterPage& page);
std::string ToJson(const DeadLetterChange& change);
std::string ToJson(const ReplayReport& report);
std::string ToJson(const PushReport& report);
std::string ToJson(const SegmentDeletion& deletion);
std::string ToJson(const Resumed& resumed);
std::string ToJson(const ReportView& view);
std::string ToJson(const ReportChange& change);
std::string ToJson(const PushList& list);
std::string ToJson(const FutureTimesRepair& repair);
std::string ToJson(const EventReplayReport& report);

}  // namespace audsync::admin
