// The ConfigCat emulator: its behaviour (served by emulator_common::Server).
#include "emulator.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

namespace audsync::configcat_emulator {
namespace {

// CreateSegmentModel / UpdateSegmentModel (the Public Management API's OpenAPI document).
constexpr size_t kMaxName = 255;
constexpr size_t kMaxDescription = 1000;
constexpr size_t kMaxAttribute = 1000;
// subscription-plan-limits: the same on every plan.
constexpr size_t kMaxComparisonValue = 65535;
constexpr size_t kMaxItem = 255;

const char* const kComparators[] = {
    "isOneOf",          "isNotOneOf",
    "contains",         "doesNotContain",
    "semVerIsOneOf",    "semVerIsNotOneOf",
    "semVerLess",       "semVerLessOrEquals",
    "semVerGreater",    "semVerGreaterOrEquals",
    "numberEquals",     "numberDoesNotEqual",
    "numberLess",       "numberLessOrEquals",
    "numberGreater",    "numberGreaterOrEquals",
    "sensitiveIsOneOf", "sensitiveIsNotOneOf",
};

// The comparators whose comparison value is a comma-separated list.
bool IsListComparator(const std::string& c) {
    return c == "isOneOf" || c == "isNotOneOf" || c == "sensitiveIsOneOf" ||
           c == "sensitiveIsNotOneOf" || c == "semVerIsOneOf" || c == "semVerIsNotOneOf";
}

bool IsComparator(const std::string& c) {
    return std::any_of(std::begin(kComparators), std::end(kComparators),
                       [&](const char* k) { return c == k; });
}

// String lengths as .NET counts them: UTF-16 code units.
size_t Utf16Length(const std::string& s) {
    size_t n = 0;
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if ((c & 0xC0) != 0x80) n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

std::string Trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n\v\f");
    if (b == std::string::npos) return "";
    size_t e = s.find_last_not_of(" \t\r\n\v\f");
    return s.substr(b, e - b + 1);
}

// The items of a list comparison value, as ConfigCat reads them: split at ',', trimmed.
std::vector<std::string> Items(const std::string& value) {
    std::vector<std::string> out;
    size_t start = 0;
    while (true) {
        size_t comma = value.find(',', start);
        out.push_back(Trim(
            value.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

Answer Json(int status, std::string body) {
    Answer a;
    a.status = status;
    a.body = std::move(body);
    a.headers["Content-Type"] = "application/json";
    return a;
}

// ConfigCat's error body: field name -> messages ("" for the request as a whole), the
// shape configcat/cli reads from every unsuccessful answer.
using Errors = std::map<std::string, std::vector<std::string>>;

Answer ErrorAnswer(int status, const Errors& errors) {
    std::string out = "{";
    bool first = true;
    for (const auto& [field, messages] : errors) {
        if (!first) out += ',';
        first = false;
        json::AppendQuoted(out, field);
        out += ":[";
        for (size_t i = 0; i < messages.size(); ++i) {
            if (i > 0) out += ',';
            json::AppendQuoted(out, messages[i]);
        }
        out += ']';
    }
    return Json(status, out + "}");
}

Answer Refusal(int status, const std::string& field, const std::string& message) {
    return ErrorAnswer(status, {{field, {message}}});
}

// The control routes' own error shape (as the LaunchDarkly emulator's).
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

// "2024-05-06T09:30:22.8290000Z": .NET's round-trip ("o") format.
std::string DotNetTime(int64_t ms) {
    std::string t = text::FormatIso8601(ms);
    if (!t.empty() && t.back() == 'Z' && t.find('.') != std::string::npos) {
        t.insert(t.size() - 1, "0000");
    }
    return t;
}

std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool JsonContentType(const std::string& content_type) {
    std::string t = Lower(Trim(content_type.substr(0, content_type.find(';'))));
    return t == "application/json" || t == "text/json" ||
           (t.rfind("application/", 0) == 0 && t.size() > 5 && t.substr(t.size() - 5) == "+json");
}

// The five fields of a segment body: absent and null are both nullopt.
struct Fields {
    std::optional<std::string> name, description, comparison_attribute, comparator,
        comparison_value;
};

// Parses a create or update body; `errors` collects what is wrong with it.
Fields ParseFields(const std::string& body, Errors& errors) {
    Fields f;
    rapidjson::Document doc;
    if (!json::Parse(body, doc, 8).ok() || !doc.IsObject()) {
        errors["$"].push_back("The request body must be a JSON object.");
        return f;
    }
    const std::map<std::string, std::optional<std::string>*> slots = {
        {"name", &f.name},
        {"description", &f.description},
        {"comparisonAttribute", &f.comparison_attribute},
        {"comparator", &f.comparator},
        {"comparisonValue", &f.comparison_value}};
    for (const auto& m : doc.GetObject()) {
        std::string key(json::View(m.name));
        auto slot = slots.find(key);
        if (slot == slots.end()) {
            errors[key].push_back("Unknown property.");
        } else if (m.value.IsString()) {
            *slot->second = std::string(json::View(m.value));
        } else if (!m.value.IsNull()) {
            errors[key].push_back("The value must be a string.");
        }
    }
    return f;
}

// Checks the fields against ConfigCat's limits. `create`: the required fields must be set.
void Validate(const Fields& f, bool create, size_t max_items, const std::string& old_comparator,
              Errors& errors) {
    auto check = [&](const char* field, const std::optional<std::string>& v, size_t max,
                     bool required) {
        if (!v) {
            if (required)
                errors[field].push_back("The " + std::string(field) + " field is required.");
            return;
        }
        size_t n = Utf16Length(*v);
        if (required && n == 0) {
            errors[field].push_back("The " + std::string(field) + " field must not be empty.");
        }
        if (n > max) {
            errors[field].push_back("The field " + std::string(field) +
                                    " must be a string with a maximum length of " +
                                    std::to_string(max) + ".");
        }
    };
    // An update leaves a null field as it is; an empty name, attribute or value is refused.
    check("name", f.name, kMaxName, create || f.name.has_value());
    check("description", f.description, kMaxDescription, false);
    check("comparisonAttribute", f.comparison_attribute, kMaxAttribute,
          create || f.comparison_attribute.has_value());
    check("comparisonValue", f.comparison_value, kMaxComparisonValue,
          create || f.comparison_value.has_value());
    if (f.comparator && !IsComparator(*f.comparator)) {
        errors["comparator"].push_back("invalid value '" + *f.comparator +
                                       "' for RolloutRuleComparator");
    } else if (create && !f.comparator) {
        errors["comparator"].push_back("The comparator field is required.");
    }
    const std::string comparator = f.comparator.value_or(old_comparator);
    if (f.comparison_value && IsListComparator(comparator)) {
        std::vector<std::string> items = Items(*f.comparison_value);
        if (items.size() > max_items) {
            errors["comparisonValue"].push_back(
                "The comparison value list may contain at most " + std::to_string(max_items) +
                " items on this plan; it has " + std::to_string(items.size()) + ".");
        }
        for (const auto& item : items) {
            if (Utf16Length(item) > kMaxItem) {
                errors["comparisonValue"].push_back(
                    "Each item of the comparison value may be at most " + std::to_string(kMaxItem) +
                    " characters long.");
                break;
            }
        }
    }
}

std::string ProductJson(const std::string& product_id) {
    std::string out = R"({"organization":{"organizationId":"00000000-0000-4000-8000-00000000c0c0",)"
                      R"("name":"Emulated organization"},"productId":)";
    json::AppendQuoted(out, product_id);
    return out +
           R"(,"name":"Emulated product","description":null,"order":0,"reasonRequired":false})";
}

// SegmentModel (full) or SegmentListModel (the list's items, without the condition).
std::string SegmentJson(const Segment& s, const std::string& product_id, bool full) {
    std::string out = "{\"product\":" + ProductJson(product_id) + ",\"segmentId\":";
    json::AppendQuoted(out, s.segment_id);
    out += ",\"name\":";
    json::AppendQuoted(out, s.name);
    out += ",\"description\":";
    json::AppendQuoted(out, s.description);
    out +=
        R"(,"creatorEmail":"emulator@example.com","creatorFullName":"audsync emulator","createdAt":)";
    json::AppendQuoted(out, DotNetTime(s.created_at_ms));
    out +=
        R"(,"lastUpdaterEmail":"emulator@example.com","lastUpdaterFullName":"audsync emulator","updatedAt":)";
    json::AppendQuoted(out, DotNetTime(s.updated_at_ms));
    if (full) {
        out += ",\"comparisonAttribute\":";
        json::AppendQuoted(out, s.comparison_attribute);
        out += ",\"comparator\":";
        json::AppendQuoted(out, s.comparator);
        out += ",\"comparisonValue\":";
        json::AppendQuoted(out, s.comparison_value);
    } else {
        out += ",\"usage\":0";
    }
    return out + "}";
}

// The path's parts: "/v1/segments/x" -> {"v1", "segments", "x"}, each percent-decoded.
std::optional<std::vector<std::string>> PathParts(const std::string& path) {
    std::vector<std::string> parts;
    size_t start = 1;
    while (start <= path.size()) {
        size_t slash = path.find('/', start);
        std::string raw =
            path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        auto decoded = text::PercentDecode(raw);
        if (!decoded) return std::nullopt;
        parts.push_back(*decoded);
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return parts;
}

}  // namespace

Emulator::Emulator(Options options)
    : options_(std::move(options)),
      rate_limit_(options_.rate_limit),
      rate_window_ms_(options_.rate_window_ms) {}

Emulator::~Emulator() { Stop(); }

void Emulator::Start() {
    server_ = std::make_unique<emulator_common::Server>(
        options_.host, options_.port, options_.threads, 4 * 1024 * 1024,
        [this](const std::string& method, const std::string& target,
               const std::map<std::string, std::string>& headers,
               const std::string& body) { return Handle(method, target, headers, body); },
        [] { return Problem(500, "internal", "emulator error"); });
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

void Emulator::SetRateLimit(int requests, int64_t window_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    rate_limit_ = std::max(0, requests);
    rate_window_ms_ = std::max<int64_t>(1, window_ms);
    window_requests_ = 0;
    window_start_ms_ = Now();
}

size_t Emulator::DeleteSegmentByName(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t before = segments_.size();
    segments_.erase(std::remove_if(segments_.begin(), segments_.end(),
                                   [&](const Segment& s) { return s.name == name; }),
                    segments_.end());
    return before - segments_.size();
}

void Emulator::Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    segments_.clear();
    faults_.clear();
    reject_credentials_ = false;
    rate_limit_ = options_.rate_limit;
    rate_window_ms_ = options_.rate_window_ms;
    window_requests_ = 0;
    window_start_ms_ = 0;
    stats_ = Stats{};
}

std::vector<Segment> Emulator::Segments() const {
    std::lock_guard<std::mutex> lock(mu_);
    return segments_;
}

std::optional<std::set<std::string>> Emulator::Values(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : segments_) {
        if (s.name != name) continue;
        std::set<std::string> out;
        for (auto& item : Items(s.comparison_value)) {
            if (!item.empty()) out.insert(std::move(item));
        }
        return out;
    }
    return std::nullopt;
}

Stats Emulator::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

Answer Emulator::Handle(const std::string& method, const std::string& path,
                        const std::map<std::string, std::string>& headers,
                        const std::string& body) {
    std::string p = path.substr(0, path.find('?'));
    if (p.rfind("/_emulator/", 0) == 0) return Control(method, p, body);
    return Api(method, p, headers, body);
}

Answer Emulator::Api(const std::string& method, const std::string& path,
                     const std::map<std::string, std::string>& headers, const std::string& body) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    stats_.last_method = method;
    stats_.last_path = path;
    stats_.last_body = body;
    stats_.last_headers = headers;
    const int64_t now = Now();
    auto finish = [&](Answer a) {
        ++stats_.by_status[a.drop ? 0 : a.status];
        return a;
    };
    int delay = 0;
    if (!faults_.empty()) {
        Fault& f = faults_.front();
        Fault fault = f;
        if (--f.count <= 0) faults_.pop_front();
        delay = fault.delay_ms;
        if (fault.drop) {
            Answer a;
            a.drop = true;
            a.delay_ms = delay;
            return finish(a);
        }
        if (fault.status != 0) {
            Answer a =
                Refusal(fault.status, "",
                        fault.status == 429 ? "Too many requests." : "Injected by the emulator.");
            if (fault.retry_after) a.headers["Retry-After"] = *fault.retry_after;
            if (fault.reset_in_ms) {
                a.headers["X-Rate-Limit-Remaining"] = "0";
                a.headers["X-Rate-Limit-Reset"] = DotNetTime(now + *fault.reset_in_ms);
            }
            a.delay_ms = delay;
            return finish(a);
        }
    }
    // The request budget: every API request counts, refused ones included.
    std::map<std::string, std::string> rate_headers;
    if (rate_limit_ > 0) {
        if (window_start_ms_ == 0 || now >= window_start_ms_ + rate_window_ms_) {
            window_start_ms_ = now;
            window_requests_ = 0;
        }
        ++window_requests_;
        const int64_t reset = window_start_ms_ + rate_window_ms_;
        rate_headers["X-Rate-Limit-Remaining"] =
            std::to_string(std::max(0, rate_limit_ - window_requests_));
        rate_headers["X-Rate-Limit-Reset"] = DotNetTime(reset);
        if (window_requests_ > rate_limit_) {
            Answer a = Refusal(429, "", "Too many requests.");
            a.headers = rate_headers;
            a.headers["Content-Type"] = "application/json";
            a.headers["Retry-After"] =
                std::to_string(std::max<int64_t>(1, (reset - now + 999) / 1000));
            a.delay_ms = delay;
            return finish(a);
        }
    }
    Answer a = Route(method, path, headers, body);
    for (const auto& [k, v] : rate_headers) a.headers[k] = v;
    a.delay_ms = delay;
    return finish(a);
}

// Called with mu_ held.
Answer Emulator::Route(const std::string& method, const std::string& path,
                       const std::map<std::string, std::string>& headers, const std::string& body) {
    const std::string expected =
        "Basic " + text::Base64Encode(options_.user + ":" + options_.password);
    if (reject_credentials_ || Header(headers, "authorization") != expected) {
        Answer a = Refusal(401, "", "Unauthorized.");
        a.headers["WWW-Authenticate"] = "Basic";
        return a;
    }
    auto parts = PathParts(path);
    if (!parts || parts->empty() || (*parts)[0] != "v1") return Refusal(404, "", "Not found.");
    const auto& v = *parts;
    auto method_not_allowed = [] { return Refusal(405, "", "Method not allowed."); };
    auto content_ok = [&] { return JsonContentType(Header(headers, "content-type")); };
    const int64_t now = Now();

    if (v.size() == 2 && v[1] == "me") {
        if (method != "GET") return method_not_allowed();
        return Json(200, R"({"email":"emulator@example.com","fullName":"audsync emulator"})");
    }
    if (v.size() == 4 && v[1] == "products" && v[3] == "segments") {
        if (v[2] != options_.product_id) return Refusal(404, "", "Product not found.");
        if (method == "GET") {
            std::string out = "[";
            for (size_t i = 0; i < segments_.size(); ++i) {
                if (i > 0) out += ',';
                out += SegmentJson(segments_[i], options_.product_id, false);
            }
            ++stats_.lists;
            return Json(200, out + "]");
        }
        if (method != "POST") return method_not_allowed();
        if (!content_ok()) return Refusal(415, "", "Unsupported media type.");
        Errors errors;
        Fields f = ParseFields(body, errors);
        if (errors.empty()) Validate(f, true, options_.max_items, "", errors);
        if (errors.empty() && segments_.size() >= options_.max_segments) {
            errors[""].push_back("The product has reached its limit of " +
                                 std::to_string(options_.max_segments) + " segments on this plan.");
        }
        if (!errors.empty()) return ErrorAnswer(400, errors);
        Segment s;
        char id[40];
        std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012llx",
                      static_cast<unsigned long long>(next_id_++));
        s.segment_id = id;
        s.name = *f.name;
        s.description = f.description.value_or("");
        s.comparison_attribute = *f.comparison_attribute;
        s.comparator = *f.comparator;
        s.comparison_value = *f.comparison_value;
        s.created_at_ms = s.updated_at_ms = now;
        segments_.push_back(s);
        ++stats_.creates;
        return Json(201, SegmentJson(s, options_.product_id, true));
    }
    if (v.size() == 3 && v[1] == "segments") {
        auto it = std::find_if(segments_.begin(), segments_.end(),
                               [&](const Segment& s) { return s.segment_id == v[2]; });
        if (it == segments_.end()) return Refusal(404, "", "Segment not found.");
        if (method == "GET") return Json(200, SegmentJson(*it, options_.product_id, true));
        if (method == "DELETE") {
            segments_.erase(it);
            ++stats_.deletes;
            Answer a;
            a.status = 204;
            return a;
        }
        if (method != "PUT") return method_not_allowed();
        if (!content_ok()) return Refusal(415, "", "Unsupported media type.");
        Errors errors;
        Fields f = ParseFields(body, errors);
        if (errors.empty()) Validate(f, false, options_.max_items, it->comparator, errors);
        if (!errors.empty()) return ErrorAnswer(400, errors);
        if (f.name) it->name = *f.name;
        if (f.description) it->description = *f.description;
        if (f.comparison_attribute) it->comparison_attribute = *f.comparison_attribute;
        if (f.comparator) it->comparator = *f.comparator;
        if (f.comparison_value) it->comparison_value = *f.comparison_value;
        it->updated_at_ms = now;
        ++stats_.updates;
        return Json(200, SegmentJson(*it, options_.product_id, true));
    }
    return Refusal(404, "", "Not found.");
}

Answer Emulator::Control(const std::string& method, const std::string& path,
                         const std::string& body) {
    auto object_body = [&](rapidjson::Document& doc) {
        return json::Parse(body, doc, 8).ok() && doc.IsObject();
    };
    if (path == "/_emulator/segments" && method == "GET") {
        std::string out = "{\"segments\":[";
        bool first = true;
        for (const auto& s : Segments()) {
            if (!first) out += ',';
            first = false;
            out += "{\"segmentId\":";
            json::AppendQuoted(out, s.segment_id);
            out += ",\"name\":";
            json::AppendQuoted(out, s.name);
            out += ",\"comparator\":";
            json::AppendQuoted(out, s.comparator);
            out += ",\"values\":[";
            bool f = true;
            for (const auto& item : Items(s.comparison_value)) {
                if (item.empty()) continue;
                if (!f) out += ',';
                f = false;
                json::AppendQuoted(out, item);
            }
            out += "]}";
        }
        return Json(200, out + "]}");
    }
    if (path == "/_emulator/stats" && method == "GET") {
        Stats s = stats();
        std::string out = "{\"requests\":" + std::to_string(s.requests) +
                          ",\"lists\":" + std::to_string(s.lists) +
                          ",\"creates\":" + std::to_string(s.creates) +
                          ",\"updates\":" + std::to_string(s.updates) +
                          ",\"deletes\":" + std::to_string(s.deletes) + ",\"by_status\":{";
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
        if (const auto* v = json::Find(doc, "reset_in_ms"); v && v->IsInt64())
            f.reset_in_ms = v->GetInt64();
        if (const auto* v = json::Find(doc, "drop"); v && v->IsBool()) f.drop = v->GetBool();
        f.retry_after = json::FindString(doc, "retry_after");
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
    if (path == "/_emulator/delete-segment" && method == "POST") {
        rapidjson::Document doc;
        std::optional<std::string> name;
        if (object_body(doc)) name = json::FindString(doc, "name");
        if (!name) return Problem(400, "invalid_request", "body must be {\"name\":\"...\"}");
        size_t n = DeleteSegmentByName(*name);
        if (n == 0) return Problem(404, "not_found", "no segment has that name");
        return Json(200, "{\"deleted\":" + std::to_string(n) + "}");
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

}  // namespace audsync::configcat_emulator
