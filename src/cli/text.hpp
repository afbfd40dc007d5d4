// The CLI's text renderer: tables and key/value blocks for people (--json is admin/render).
#pragma once

#include <ostream>
#include <string>

#include "audsync/admin/admin.hpp"
#include "audsync/admin/replay.hpp"

namespace audsync::cli::text {

// A cell with control characters escaped (keys come from the internet) and cut to width.
std::string Cell(const std::string& s, size_t width);
// Control characters escaped as \xNN, so stored text cannot drive the terminal.
std::string Safe(const std::string& s);

void Print(std::ostream& out, const admin::SegmentList& list);
void Print(std::ostream& out, const admin::SegmentDetail& detail);
void PrintMembersHeader(std::ostream& out);
void PrintMemberRow(std::ostream& out, const store::MemberRow& m);
void Print(std::ostream& out, const admin::MemberDetail& detail);
void Print(std::ostream& out, const admin::ContextView& view);
void Print(std::ostream& out, const admin::DestinationList& list);
void Print(std::ostream& out, const admin::DestinationView& view);
void PrintDeadLettersHeader(std::ostream& out);
void PrintDeadLetterRow(std::ostream& out, const store::MemberRow& m);
void Print(std::ostream& out, const admin::DeadLetterChange& change);
void Print(std::ostream& out, const admin::ReplayReport& report);
void Print(std::ostream& out, const admin::PushReport& report);
void Print(std::ostream& out, const admin::SegmentDeletion& deletion);
void Print(std::ostream& out, const admin::Resumed& resumed);
void Print(std::ostream& out, const admin::ReportView& view);
void Print(std::ostream& out, const admin::ReportChange& change);
void Print(std::ostream& out, const admin::FutureTimesRepair& repair);
void Print(std::ostream& out, const admin::EventReplayReport& report);

}  // namespace audsync::cli::text
