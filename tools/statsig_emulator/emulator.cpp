// The Statsig emulator: its behaviour (served by emulator_common::Server).
#include "emulator.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

namespace audsync::statsig_emulator {
namespace {

constexpr int kMaxDepth = 16;
constexpr const char* kApiPrefix = "/console/v1/";
// Create Segment's constraints.
constexpr size_t kMinIdLength = 3;
constexpr size_t kMaxIdLength = 100;
constexpr size_t kMaxDescription = 1000;
constexpr size_t kLoggedRequests = 1000;
constexpr size_t kLoggedIds = 100;
constexpr size_t kDefaultPageSize = 10;

const char* const kSegmentTypes[] = {"id_list", "rule_based", "analysis_list",
                                     "user_store_id_list"};

Answer Json(int status, std::string body) {
    Answer a;
    a.status = status;
    a.body = std::move(body);
    a.headers["Content-Type"] = "application/json";
    return a;
}

// Statsig's error shape: {"status": 400, "message": "..."}.
Answer Error(int status, const std::string& message) {
    std::string body = "{\"status\":" + std::to_string(status) + ",\"message\":";
    json::AppendQuoted(body, message);
    return Json(status, body + "}");
}

// A success: {"message": "..."} and, when given, "data" (JSON text).
Answer Success(int status, const std::string& message, const std::string& data = "",
               const std::string& pagination = "") {
    std::string body = "{\"message\":";
    json::AppendQuoted(body, message);
    if (!data.empty()) body += ",\"data\":" + data;
    if (!pagination.empty()) body += ",\"pagination\":" + pagination;
    return Json(status, body + "}");
}

// The control routes' own error shape (as the other emulators').
Answer Problem(int status, const std::string& code, const std::string& message) {
    std::string body = "{\"code\":";
    json::AppendQuoted(body, code);
    body += ",\"message\":";
    json::AppendQuoted(body, message);
    return Json(status, body + "}");
}

std::string Header(const std::map<std::string, std::string>& h, const std::string& name) {
    auto it = h.find(name);
    return it == h.end() ? std::string() : it->second;
}

size_t CodePoints(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) {
        if ((c & 0xC0) != 0x80) ++n;
    }
    return n;
}

bool Matches(const std::string& s, bool space_allowed) {
    return std::all_of(s.begin(), s.end(), [&](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || (space_allowed && c == ' ');
    });
}

bool IsMutation(const std::string& method) {
    return method == "POST" || method == "PATCH" || method == "PUT" || method == "DELETE";
}

// A query parameter as a whole number >= 1, or `fallback`.
size_t QueryNumber(const std::string& query, const std::string& name, size_t fallback) {
    size_t start = 0;
    while (start < query.size()) {
        size_t end = query.find('&', start);
        if (end == std::string::npos) end = query.size();
        std::string pair = query.substr(start, end - start);
        if (pair.rfind(name + "=", 0) == 0) {
            std::string v = pair.substr(name.size() + 1);
            if (!v.empty() && v.size() <= 9 &&
                v.find_first_not_of("0123456789") == std::string::npos) {
                size_t n = std::strtoul(v.c_str(), nullptr, 10);
                if (n >= 1) return n;
            }
            return fallback;
        }
        start = end + 1;
    }
    return fallback;
}

std::string Pagination(size_t page, size_t limit, size_t total) {
    return "{\"itemsPerPage\":" + std::to_string(limit) +
           ",\"pageNumber\":" + std::to_string(page) + ",\"totalItems\":" + std::to_string(total) +
           ",\"hasNextPage\":" + (page * limit < total ? "true" : "false") + "}";
}

std::string SegmentJson(const Segment& s) {
    std::string out = "{\"id\":";
    json::AppendQuoted(out, s.id);
    out += ",\"name\":";
    json::AppendQuoted(out, s.name);
    out += ",\"description\":";
    json::AppendQuoted(out, s.description);
    out += ",\"type\":";
    json::AppendQuoted(out, s.type);
    out += ",\"idType\":";
    json::AppendQuoted(out, s.id_type);
    out += ",\"isEnabled\":true";
    if (s.type == "id_list") out += ",\"count\":" + std::to_string(s.ids.size());
    out +=
        ",\"tags\":[],\"createdTime\":" + std::to_string(s.created_ms) +
        ",\"creatorName\":\"CONSOLE API\",\"lastModifiedTime\":" + std::to_string(s.modified_ms) +
        ",\"lastModifierName\":\"CONSOLE API\"}";
    return out;
}

// The path's parts after /console/v1/, each percent-decoded.
std::optional<std::vector<std::string>> PathParts(const std::string& rest) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= rest.size()) {
        size_t slash = rest.find('/', start);
        auto decoded = text::PercentDecode(
            rest.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (!decoded) return std::nullopt;
        parts.push_back(*decoded);
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return parts;
}

// The "ids" of an add or remove body: every item a string, at most kMaxIdsPerCall.
std::optional<std::vector<std::string>> ParseIds(const std::string& body, std::string& error) {
    rapidjson::Document doc;
    const rapidjson::Value* ids = nullptr;
    if (json::Parse(body, doc, kMaxDepth).ok() && doc.IsObject()) ids = json::Find(doc, "ids");
    if (ids == nullptr || !ids->IsArray()) {
        error = "ids must be an array of strings";
        return std::nullopt;
    }
    if (ids->Size() > kMaxIdsPerCall) {
        error = "ids must contain no more than " + std::to_string(kMaxIdsPerCall) + " elements";
        return std::nullopt;
    }
    std::vector<std::string> out;
    out.reserve(ids->Size());
    for (const auto& v : ids->GetArray()) {
        if (!v.IsString()) {
            error = "ids must be an array of strings";
            return std::nullopt;
        }
        out.emplace_back(json::View(v));
    }
    return out;
}

}  // namespace

const char* Usage() {
    return R"(usage: audsync-statsig-emulator [--listen HOST:PORT] [--key KEY]
                               [--rate-limit N] [--rate-window-ms MS]

A local stand-in for the segments of Statsig's Console API (one project, in memory), for
the demo, manual runs and tests. Documented in docs/platforms/statsig.md.

options:
  --listen HOST:PORT    where to listen (default 127.0.0.1:8768; port 0: any free port)
  --key KEY             the Console API key it accepts (default console-emulator-key)
  --rate-limit N        mutations (POST, PATCH, PUT, DELETE) allowed per window, then 429
                        (default 100, the Console API's documented ~100 per 10 s; 0:
                        unlimited; the ID-list pages document 12 per 10 s)
  --rate-window-ms MS   the rate-limit window (default 10000)
  -h, --help            this text

Statsig routes (header STATSIG-API-KEY: KEY, else 401 {"status":401,"message":...}):
  GET    /console/v1/segments?limit=N&page=P   200 {"message","data":[segments],"pagination"}
  POST   /console/v1/segments                  creates: {"name","id","type","idType",
         "description"}; name 3-100 of A-Z a-z 0-9 _ - and space, id 3-100 of A-Z a-z
         0-9 _ - (default: the name), type id_list, rule_based, analysis_list or
         user_store_id_list, idType default userID, description up to 1000; 201
         {"message","data":segment}; 400 for anything else or an id that exists
  GET    /console/v1/segments/ID               200 {"message","data":segment}; 404 unknown
  DELETE /console/v1/segments/ID               200; 404 unknown
  GET    /console/v1/segments/ID/id_list       200 {"message","data":{"name","count",
                                               "ids"}}, paged by limit and page
  PATCH  /console/v1/segments/ID/id_list       adds {"ids":[...]} (at most 100000); 200
  DELETE /console/v1/segments/ID/id_list       removes {"ids":[...]}; 200
         both: 400 when the segment is not an id_list, the body is not {"ids":[strings]},
         it holds an ID refused with /_emulator/refuse, or the project would hold more
         than 10 million IDs; 404 unknown segment
  Over the mutation budget: 429 {"status":429,"message":...}, no header (Statsig
  documents none).

control routes (no key; answers are JSON):
  GET  /_emulator/segments        {"segments":[{"id","name","type","idType","ids":[...]}]}
  GET  /_emulator/requests        {"requests":[{"method","path","id_count","ids",
                                  "status"}]}: the last 1000 Console API requests
  GET  /_emulator/stats           {"requests","mutations","creates","adds","removes",
                                  "deletes","rate_limited","by_status":{"200":n}}
  POST /_emulator/reset           no body: forgets segments, faults, refused IDs, the
                                  credential refusal, the run-time rate limit, the
                                  request log and the stats; answers {}
  POST /_emulator/faults          queues an answer for the next Console API requests:
       {"status":503,"count":1,"delay_ms":0,"retry_after":"2","drop":false}   every
       member optional; status 0 answers normally after delay_ms
  POST /_emulator/credentials     {"reject":true}: 401 to every Console API request;
                                  {"reject":false} accepts the key again
  POST /_emulator/refuse          {"ids":["bad"]}: adds and removes holding any of these
                                  IDs answer 400; [] refuses none
  POST /_emulator/delete-segment  {"id":"..."}: deletes the segment, as an operator in
                                  Statsig's console would; 404 if none
  POST /_emulator/rate-limit      {"requests":N,"window_ms":M}: a new mutation budget (0:
                                  unlimited) and a new window
)";
}

Emulator::Emulator(Options options)
    : options_(std::move(options)),
      rate_limit_(options_.rate_limit),
      rate_window_ms_(options_.rate_window_ms) {}

Emulator::~Emulator() { Stop(); }

void Emulator::Start() {
    server_ = std::make_unique<emulator_common::Server>(
        options_.host, options_.port, options_.threads, 16 * 1024 * 1024,
        [this](const std::string& method, const std::string& target,
               const std::map<std::string, std::string>& headers,
               const std::string& body) { return Handle(method, target, headers, body); },
        [] { return Error(500, "emulator error"); });
    server_->Start();
}

uint16_t Emulator::port() const { return server_ ? server_->port() : 0; }

std::string Emulator::base_url() const {
    return "http://" + options_.host + ":" + std::to_string(port());
}

void Emulator::Stop() {
    if (server_) server_->Stop();
}

int64_t Emulator::Now() const { return options_.now_ms ? options_.now_ms() : text::NowMs(); }

void Emulator::AddFault(Fault fault) {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.push_back(std::move(fault));
}

void Emulator::ClearFaults() {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.clear();
}

void Emulator::SetRejectCredentials(bool reject) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_credentials_ = reject;
}

void Emulator::RefuseIds(std::set<std::string> ids) {
    std::lock_guard<std::mutex> lock(mu_);
    refused_ = std::move(ids);
}

void Emulator::SetRateLimit(int mutations, int64_t window_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    rate_limit_ = std::max(0, mutations);
    rate_window_ms_ = std::max<int64_t>(1, window_ms);
    window_mutations_ = 0;
    window_start_ms_ = -1;
}

bool Emulator::DeleteSegment(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return segments_.erase(id) > 0;
}

void Emulator::Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    segments_.clear();
    faults_.clear();
    refused_.clear();
    reject_credentials_ = false;
    rate_limit_ = options_.rate_limit;
    rate_window_ms_ = options_.rate_window_ms;
    window_start_ms_ = -1;
    window_mutations_ = 0;
    log_.clear();
    stats_ = Stats{};
}

std::vector<Segment> Emulator::Segments() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Segment> out;
    for (const auto& [id, s] : segments_) out.push_back(s);
    return out;
}

std::optional<std::set<std::string>> Emulator::Ids(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = segments_.find(id);
    if (it == segments_.end()) return std::nullopt;
    return it->second.ids;
}

std::vector<LoggedRequest> Emulator::Requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {log_.begin(), log_.end()};
}

Stats Emulator::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

size_t Emulator::ProjectIds() const {
    size_t n = 0;
    for (const auto& [id, s] : segments_) n += s.ids.size();
    return n;
}

Answer Emulator::Handle(const std::string& method, const std::string& target,
                        const std::map<std::string, std::string>& headers,
                        const std::string& body) {
    const size_t q = target.find('?');
    std::string path = target.substr(0, q);
    std::string query = q == std::string::npos ? "" : target.substr(q + 1);
    if (path.rfind("/_emulator/", 0) == 0) return Control(method, path, body);
    return Api(method, path, query, headers, body);
}

Answer Emulator::Api(const std::string& method, const std::string& path, const std::string& query,
                     const std::map<std::string, std::string>& headers, const std::string& body) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    stats_.last_method = method;
    stats_.last_path = path;
    stats_.last_body = body;
    stats_.last_headers = headers;
    LoggedRequest logged;
    logged.method = method;
    logged.path = path;
    if (path.size() > 8 && path.compare(path.size() - 8, 8, "/id_list") == 0) {
        std::string ignored;
        if (auto ids = ParseIds(body, ignored)) {
            logged.id_count = ids->size();
            ids->resize(std::min(ids->size(), kLoggedIds));
            logged.ids = std::move(*ids);
        }
    }
    int delay = 0;
    auto finish = [&](Answer a) {
        a.delay_ms = delay;
        logged.status = a.drop ? 0 : a.status;
        ++stats_.by_status[logged.status];
        log_.push_back(std::move(logged));
        if (log_.size() > kLoggedRequests) log_.pop_front();
        return a;
    };
    if (!faults_.empty()) {
        Fault& f = faults_.front();
        Fault fault = f;
        if (--f.count <= 0) faults_.pop_front();
        delay = fault.delay_ms;
        if (fault.drop) {
            Answer a;
            a.drop = true;
            return finish(a);
        }
        if (fault.status != 0) {
            Answer a = Error(fault.status, fault.status == 429 ? "Too many requests."
                                                               : "Injected by the emulator.");
            if (fault.retry_after) a.headers["Retry-After"] = *fault.retry_after;
            return finish(a);
        }
    }
    const std::string key = Header(headers, "statsig-api-key");
    if (reject_credentials_ || key != options_.console_api_key) {
        // As Statsig documents it, the answer quotes the key it was sent.
        return finish(Error(401,
                            "This endpoint only accepts an active CONSOLE key, but an invalid "
                            "key was sent. Key: " +
                                key));
    }
    if (IsMutation(method)) {
        ++stats_.mutations;
        if (rate_limit_ > 0) {
            const int64_t now = Now();
            if (window_start_ms_ < 0 || now >= window_start_ms_ + rate_window_ms_) {
                window_start_ms_ = now;
                window_mutations_ = 0;
            }
            if (++window_mutations_ > rate_limit_) {
                ++stats_.rate_limited;
                return finish(Error(429, "Too many requests, please try again later."));
            }
        }
    }
    return finish(Route(method, path, query, body));
}

// Called with mu_ held, the key accepted.
Answer Emulator::Route(const std::string& method, const std::string& path, const std::string& query,
                       const std::string& body) {
    if (path.rfind(kApiPrefix, 0) != 0) return Error(404, "Not found.");
    auto parts = PathParts(path.substr(std::string(kApiPrefix).size()));
    if (!parts || parts->empty() || (*parts)[0] != "segments") return Error(404, "Not found.");
    const auto& v = *parts;
    const int64_t now = Now();
    auto method_not_allowed = [] { return Error(405, "Method not allowed."); };

    if (v.size() == 1) {
        if (method == "GET") {
            const size_t limit = QueryNumber(query, "limit", kDefaultPageSize);
            const size_t page = QueryNumber(query, "page", 1);
            std::string data = "[";
            size_t i = 0;
            for (const auto& [id, s] : segments_) {
                if (i >= (page - 1) * limit && i < page * limit) {
                    if (data.size() > 1) data += ',';
                    data += SegmentJson(s);
                }
                ++i;
            }
            return Success(200, "Segments listed successfully.", data + "]",
                           Pagination(page, limit, segments_.size()));
        }
        if (method != "POST") return method_not_allowed();
        rapidjson::Document doc;
        if (!json::Parse(body, doc, kMaxDepth).ok() || !doc.IsObject()) {
            return Error(400, "Invalid request body: a JSON object is expected.");
        }
        bool bad = false;
        auto field = [&](const char* name) {
            bool wrong = false;
            auto s = json::FindString(doc, name, &wrong);
            bad = bad || wrong;
            return s;
        };
        auto name = field("name");
        auto id = field("id");
        auto description = field("description");
        auto type = field("type");
        auto id_type = field("idType");
        if (bad) return Error(400, "name, id, description, type and idType must be strings.");
        if (!name) return Error(400, "name is required.");
        const size_t name_length = CodePoints(*name);
        if (name_length < kMinIdLength || name_length > kMaxIdLength || !Matches(*name, true)) {
            return Error(400,
                         "name must be 3-100 characters of letters, digits, '_', '-' and spaces.");
        }
        const std::string segment_id = id.value_or(*name);
        if (segment_id.size() < kMinIdLength || segment_id.size() > kMaxIdLength ||
            !Matches(segment_id, false)) {
            return Error(400, "id must be 3-100 characters of letters, digits, '_' and '-'.");
        }
        if (description && CodePoints(*description) > kMaxDescription) {
            return Error(400, "description must be at most 1000 characters.");
        }
        if (!type || std::none_of(std::begin(kSegmentTypes), std::end(kSegmentTypes),
                                  [&](const char* t) { return *type == t; })) {
            return Error(400,
                         "type must be one of id_list, rule_based, analysis_list, "
                         "user_store_id_list.");
        }
        if (id_type && id_type->empty()) return Error(400, "idType must not be empty.");
        if (segments_.count(segment_id) > 0) {
            return Error(400, "A segment with id " + segment_id + " already exists.");
        }
        Segment s;
        s.id = segment_id;
        s.name = *name;
        s.description = description.value_or("");
        s.type = *type;
        s.id_type = id_type.value_or("userID");
        s.created_ms = s.modified_ms = now;
        segments_[segment_id] = s;
        ++stats_.creates;
        return Success(201, "Segment created successfully.", SegmentJson(s));
    }
    auto it = segments_.find(v[1]);
    if (v.size() == 2) {
        if (method != "GET" && method != "DELETE") return method_not_allowed();
        if (it == segments_.end()) return Error(404, "Segment not found.");
        if (method == "GET")
            return Success(200, "Segment read successfully.", SegmentJson(it->second));
        segments_.erase(it);
        ++stats_.deletes;
        return Success(200, "Segment deleted successfully.");
    }
    if (v.size() != 3 || v[2] != "id_list") return Error(404, "Not found.");
    if (method != "GET" && method != "PATCH" && method != "DELETE") return method_not_allowed();
    if (it == segments_.end()) return Error(404, "Segment not found.");
    Segment& s = it->second;
    if (s.type != "id_list") {
        return Error(400, "Segment must be of type 'id_list' to be modified on this endpoint");
    }
    if (method == "GET") {
        const size_t limit = QueryNumber(query, "limit", kDefaultPageSize);
        const size_t page = QueryNumber(query, "page", 1);
        std::string data = "{\"name\":";
        json::AppendQuoted(data, s.name);
        data += ",\"count\":" + std::to_string(s.ids.size()) + ",\"ids\":[";
        size_t i = 0;
        bool first = true;
        for (const auto& id : s.ids) {
            if (i >= (page - 1) * limit && i < page * limit) {
                if (!first) data += ',';
                first = false;
                json::AppendQuoted(data, id);
            }
            ++i;
        }
        return Success(200, "IDs read successfully", data + "]}",
                       Pagination(page, limit, s.ids.size()));
    }
    std::string error;
    auto ids = ParseIds(body, error);
    if (!ids) return Error(400, error);
    for (const auto& id : *ids) {
        if (refused_.count(id) > 0) return Error(400, "ID refused by the emulator: " + id);
    }
    if (method == "PATCH") {
        size_t added = 0;
        for (const auto& id : *ids) added += s.ids.count(id) == 0 ? 1 : 0;
        if (ProjectIds() + added > options_.max_project_ids) {
            return Error(400, "The project's ID lists may hold at most " +
                                  std::to_string(options_.max_project_ids) + " IDs.");
        }
        s.ids.insert(ids->begin(), ids->end());
        ++stats_.adds;
    } else {
        for (const auto& id : *ids) s.ids.erase(id);
        ++stats_.removes;
    }
    s.modified_ms = now;
    return Success(200, method == "PATCH" ? "IDs successfully added to Segment ID List"
                                          : "IDs successfully removed from Segment ID List");
}

Answer Emulator::Control(const std::string& method, const std::string& path,
                         const std::string& body) {
    auto object_body = [&](rapidjson::Document& doc) {
        return json::Parse(body, doc, kMaxDepth).ok() && doc.IsObject();
    };
    if (path == "/_emulator/segments" && method == "GET") {
        std::string out = "{\"segments\":[";
        bool first = true;
        for (const auto& s : Segments()) {
            if (!first) out += ',';
            first = false;
            out += "{\"id\":";
            json::AppendQuoted(out, s.id);
            out += ",\"name\":";
            json::AppendQuoted(out, s.name);
            out += ",\"type\":";
            json::AppendQuoted(out, s.type);
            out += ",\"idType\":";
            json::AppendQuoted(out, s.id_type);
            out += ",\"ids\":[";
            bool f = true;
            for (const auto& id : s.ids) {
                if (!f) out += ',';
                f = false;
                json::AppendQuoted(out, id);
            }
            out += "]}";
        }
        return Json(200, out + "]}");
    }
    if (path == "/_emulator/requests" && method == "GET") {
        std::string out = "{\"requests\":[";
        bool first = true;
        for (const auto& r : Requests()) {
            if (!first) out += ',';
            first = false;
            out += "{\"method\":";
            json::AppendQuoted(out, r.method);
            out += ",\"path\":";
            json::AppendQuoted(out, r.path);
            out += ",\"id_count\":" + std::to_string(r.id_count) + ",\"ids\":[";
            for (size_t i = 0; i < r.ids.size(); ++i) {
                if (i > 0) out += ',';
                json::AppendQuoted(out, r.ids[i]);
            }
            out += "],\"status\":" + std::to_string(r.status) + "}";
        }
        return Json(200, out + "]}");
    }
    if (path == "/_emulator/stats" && method == "GET") {
        Stats s = stats();
        std::string out =
            "{\"requests\":" + std::to_string(s.requests) +
            ",\"mutations\":" + std::to_string(s.mutations) +
            ",\"creates\":" + std::to_string(s.creates) + ",\"adds\":" + std::to_string(s.adds) +
            ",\"removes\":" + std::to_string(s.removes) +
            ",\"deletes\":" + std::to_string(s.deletes) +
            ",\"rate_limited\":" + std::to_string(s.rate_limited) + ",\"by_status\":{";
        bool first = true;
        for (const auto& [status, n] : s.by_status) {
            out += (first ? "\"" : ",\"") + std::to_string(status) + "\":" + std::to_string(n);
            first = false;
        }
        return Json(200, out + "}}");
    }
    if (path == "/_emulator/reset" && method == "POST") {
        Reset();
        return Json(200, "{}");
    }
    if (path == "/_emulator/faults" && method == "POST") {
        rapidjson::Document doc;
        if (!object_body(doc)) return Problem(400, "invalid_request", "body must be a JSON object");
        Fault f;
        if (const auto* v = json::Find(doc, "status"); v && v->IsInt()) f.status = v->GetInt();
        if (const auto* v = json::Find(doc, "count"); v && v->IsInt()) f.count = v->GetInt();
        if (const auto* v = json::Find(doc, "delay_ms"); v && v->IsInt()) f.delay_ms = v->GetInt();
        if (const auto* v = json::Find(doc, "drop"); v && v->IsBool()) f.drop = v->GetBool();
        if (const auto* v = json::Find(doc, "retry_after"); v && v->IsInt()) {
            f.retry_after = std::to_string(v->GetInt());
        } else {
            f.retry_after = json::FindString(doc, "retry_after");
        }
        AddFault(f);
        return Json(200, "{}");
    }
    if (path == "/_emulator/credentials" && method == "POST") {
        rapidjson::Document doc;
        const rapidjson::Value* reject = object_body(doc) ? json::Find(doc, "reject") : nullptr;
        if (reject == nullptr || !reject->IsBool()) {
            return Problem(400, "invalid_request", "body must be {\"reject\":true|false}");
        }
        SetRejectCredentials(reject->GetBool());
        return Json(200, "{}");
    }
    if (path == "/_emulator/refuse" && method == "POST") {
        rapidjson::Document doc;
        const rapidjson::Value* ids = object_body(doc) ? json::Find(doc, "ids") : nullptr;
        if (ids == nullptr || !ids->IsArray()) {
            return Problem(400, "invalid_request", "body must be {\"ids\":[...]}");
        }
        std::set<std::string> refused;
        for (const auto& id : ids->GetArray()) {
            if (id.IsString()) refused.insert(std::string(json::View(id)));
        }
        RefuseIds(std::move(refused));
        return Json(200, "{}");
    }
    if (path == "/_emulator/delete-segment" && method == "POST") {
        rapidjson::Document doc;
        std::optional<std::string> id;
        if (object_body(doc)) id = json::FindString(doc, "id");
        if (!id) return Problem(400, "invalid_request", "body must be {\"id\":\"...\"}");
        if (!DeleteSegment(*id)) return Problem(404, "not_found", "no segment has that id");
        return Json(200, "{}");
    }
    if (path == "/_emulator/rate-limit" && method == "POST") {
        rapidjson::Document doc;
        const bool parsed = object_body(doc);
        const rapidjson::Value* requests = parsed ? json::Find(doc, "requests") : nullptr;
        const rapidjson::Value* window = parsed ? json::Find(doc, "window_ms") : nullptr;
        if (requests == nullptr || !requests->IsInt() || requests->GetInt() < 0 ||
            (window != nullptr && (!window->IsInt64() || window->GetInt64() < 1))) {
            return Problem(400, "invalid_request",
                           "body must be {\"requests\":N,\"window_ms\":M} (N >= 0, M >= 1)");
        }
        SetRateLimit(requests->GetInt(), window ? window->GetInt64() : options_.rate_window_ms);
        return Json(200, "{}");
    }
    return Problem(404, "not_found", "no such control route");
}

}  // namespace audsync::statsig_emulator
