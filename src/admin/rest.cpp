// The admin REST API without HTTP: parameters parsed, the core called, results rendered.
#include "audsync/admin/rest.hpp"

#include <rapidjson/document.h>

#include "audsync/admin/render.hpp"
#include "audsync/common/json.hpp"

namespace audsync::admin {
namespace {

Error BadRequest(const std::string& message) {
    return MakeError(ErrorCode::kInvalidBody, "invalid_request", message);
}

template <typename T>
Result<std::string> Json(const Result<T>& r) {
    if (!r) return r.error();
    return ToJson(r.value());
}

// A segment id in a path: anything but a positive number names no segment.
Result<int64_t> SegmentIdOf(const std::string& id) {
    auto parsed = ParseId(id, "segment id");
    if (!parsed) return MakeError(ErrorCode::kNotFound, "not_found", "no segment has that id");
    return parsed;
}

std::optional<std::string> Get(const Query& q, const char* name) {
    auto it = q.find(name);
    if (it == q.end()) return std::nullopt;
    return it->second;
}

Result<int> LimitOf(const Query& q) {
    auto v = Get(q, "limit");
    if (!v) return kDefaultLimit;
    auto n = ParseId(*v, "limit");
    if (!n || n.value() > kMaxLimit) {
        return BadRequest("limit must be a number from 1 to " + std::to_string(kMaxLimit));
    }
    return static_cast<int>(n.value());
}

Result<PageQuery> PageOf(const Query& q) {
    PageQuery page;
    auto limit = LimitOf(q);
    if (!limit) return limit.error();
    page.limit = limit.value();
    page.cursor = Get(q, "cursor");
    return page;
}

Result<DeadLetterSelection> SelectionOf(std::string_view body) {
    rapidjson::Document doc;
    AUDSYNC_TRY(json::Parse(body, doc, 8));
    if (!doc.IsObject()) return BadRequest("body must be {\"ids\": [...]} or {\"segment\": id}");
    const rapidjson::Value* ids = json::Find(doc, "ids");
    const rapidjson::Value* segment = json::Find(doc, "segment");
    if ((ids == nullptr) == (segment == nullptr)) {
        return BadRequest("give exactly one of ids and segment");
    }
    DeadLetterSelection selection;
    if (const rapidjson::Value* target = json::Find(doc, "target")) {
        if (!target->IsString() || target->GetStringLength() == 0) {
            return BadRequest("target must be a target id");
        }
        selection.target = std::string(json::View(*target));
    }
    if (ids != nullptr) {
        if (!ids->IsArray() || ids->Empty() || ids->Size() > kMaxDeadLetterIds) {
            return BadRequest("ids must be an array of 1 to " + std::to_string(kMaxDeadLetterIds) +
                              " dead-letter ids");
        }
        for (const auto& v : ids->GetArray()) {
            if (!v.IsString()) return BadRequest("a dead-letter id is a string");
            auto id = ParseDeadLetterId(json::View(v));
            if (!id) return id.error();
            selection.ids.push_back(std::move(id).value());
        }
    } else {
        if (!segment->IsInt64() || segment->GetInt64() <= 0) {
            return BadRequest("segment must be a segment id");
        }
        selection.segment = segment->GetInt64();
    }
    return selection;
}

}  // namespace

Result<std::string> Rest::ListSegments(const Query& q) {
    store::SegmentFilter f;
    f.destination = Get(q, "destination");
    f.audience_key = Get(q, "audience_key");
    auto page = PageOf(q);
    if (!page) return page.error();
    return Json(service_.ListSegments(f, page.value()));
}

Result<std::string> Rest::GetSegment(const std::string& id) {
    auto sid = SegmentIdOf(id);
    if (!sid) return sid.error();
    return Json(service_.GetSegment(sid.value()));
}

Result<std::string> Rest::DeleteSegment(const std::string& id) {
    auto sid = SegmentIdOf(id);
    if (!sid) return sid.error();
    return Json(service_.DeleteSegment(sid.value()));
}

Result<std::string> Rest::ListMembers(const std::string& id, const Query& q) {
    MemberQuery query;
    auto limit = LimitOf(q);
    if (!limit) return limit.error();
    query.limit = limit.value();
    if (auto s = Get(q, "state")) {
        auto parsed = ParseMemberState(*s);
        if (!parsed) return BadRequest("state must be included, excluded, pending or dead");
        query.state = *parsed;
    }
    query.cursor = Get(q, "cursor");
    if (auto p = Get(q, "prefix")) {
        if (p->empty() || p->size() > kMaxKeyPrefixBytes) {
            return BadRequest("prefix must be 1 to " + std::to_string(kMaxKeyPrefixBytes) +
                              " bytes");
        }
        query.prefix = std::move(*p);
    }
    auto sid = SegmentIdOf(id);
    if (!sid) return sid.error();
    return Json(service_.ListMembers(sid.value(), query));
}

Result<std::string> Rest::GetMember(const std::string& id, const std::string& key) {
    auto sid = SegmentIdOf(id);
    if (!sid) return sid.error();
    return Json(service_.GetMember(sid.value(), key));
}

Result<std::string> Rest::Resync(const std::string& id, const Query& q) {
    bool dry_run = false;
    if (auto d = Get(q, "dry_run")) {
        if (*d != "true" && *d != "false") return BadRequest("dry_run must be true or false");
        dry_run = *d == "true";
    }
    std::optional<std::string> target;
    if (auto t = Get(q, "target")) {
        if (t->empty()) return BadRequest("target must not be empty");
        target = *t;
    }
    auto sid = SegmentIdOf(id);
    if (!sid) return sid.error();
    store::SegmentFilter f;
    f.id = sid.value();
    auto r = service_.ReplaySegments(f, dry_run, target);
    if (!r && r.error().code == ErrorCode::kNotFound) {
        return MakeError(ErrorCode::kNotFound, "not_found",
                         target ? "no segment has that id with an active target of that id"
                                : "no segment has that id");
    }
    return Json(r);
}

Result<std::string> Rest::Context(const std::string& key, const Query& q) {
    auto page = PageOf(q);
    if (!page) return page.error();
    return Json(service_.Context(key, page.value()));
}

Result<std::string> Rest::ListDestinations() { return Json(service_.ListDestinations()); }

Result<std::string> Rest::GetDestination(const std::string& id) {
    return Json(service_.GetDestination(id));
}

Result<std::string> Rest::ResumeDestination(const std::string& id, const Query& q) {
    return Json(service_.ResumeDestination(id, Get(q, "target")));
}

Result<std::string> Rest::DestinationReports(const std::string& id, const Query& q) {
    auto limit = LimitOf(q);
    if (!limit) return limit.error();
    return Json(service_.DestinationReports(id, limit.value()));
}

Result<std::string> Rest::ChangeDeadReports(const std::string& id, bool retry) {
    return Json(service_.ChangeDeadReports(id, retry));
}

Result<std::string> Rest::ListDeadLetters(const Query& q) {
    DeadLetterQuery query;
    auto limit = LimitOf(q);
    if (!limit) return limit.error();
    query.limit = limit.value();
    if (auto s = Get(q, "segment")) {
        auto sid = SegmentIdOf(*s);
        if (!sid) return sid.error();
        query.segment = sid.value();
    }
    query.cursor = Get(q, "cursor");
    return Json(service_.ListDeadLetters(query));
}

Result<std::string> Rest::RetryDeadLetters(std::string_view body) {
    auto selection = SelectionOf(body);
    if (!selection) return selection.error();
    return Json(service_.RetryDeadLetters(selection.value()));
}

Result<std::string> Rest::DiscardDeadLetters(std::string_view body) {
    auto selection = SelectionOf(body);
    if (!selection) return selection.error();
    return Json(service_.DiscardDeadLetters(selection.value()));
}

Result<std::string> Rest::ListPushes(const Query& q) {
    PushQuery query;
    auto limit = LimitOf(q);
    if (!limit) return limit.error();
    query.limit = limit.value();
    query.filter.destination = Get(q, "destination");
    query.filter.target = Get(q, "target");
    if (auto s = Get(q, "segment")) {
        auto sid = ParseId(*s, "segment");
        if (!sid) return BadRequest("segment must be a segment id");
        query.filter.segment_id = sid.value();
    }
    return Json(service_.ListPushes(query));
}

Result<std::string> Rest::Metrics() { return service_.Metrics(); }

}  // namespace audsync::admin
