// The Flagsmith emulator: its behaviour (served by emulator_common::Server).
#include "emulator.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"

namespace audsync::flagsmith_emulator {
namespace {

constexpr int kMaxDepth = 16;

Answer Json(int status, std::string body) {
    Answer a;
    a.status = status;
    a.body = std::move(body);
    a.headers["Content-Type"] = "application/json";
    return a;
}

// Django REST framework's error shape: {"detail": "..."}.
Answer Detail(int status, std::string_view detail) {
    std::string body = "{\"detail\":";
    json::AppendQuoted(body, detail);
    return Json(status, body + "}");
}

// The Edge API documents its bulk errors as plain text.
Answer Text(int status, std::string body) {
    Answer a;
    a.status = status;
    a.body = std::move(body);
    a.headers["Content-Type"] = "text/plain";
    return a;
}

std::string Header(const std::map<std::string, std::string>& h, const std::string& name) {
    auto it = h.find(name);
    return it == h.end() ? std::string() : it->second;
}

// `path` is `route` with or without its trailing '/'.
bool Is(std::string_view path, std::string_view route) {
    if (path == route) return true;
    return route.size() > 1 && route.back() == '/' && path == route.substr(0, route.size() - 1);
}

size_t CodePoints(std::string_view s) {
    size_t n = 0;
    for (unsigned char c : s) {
        if ((c & 0xC0) != 0x80) ++n;
    }
    return n;
}

// A trait value as Flagsmith stores it, as JSON text: booleans and numbers as they are,
// strings up to 2,000 characters, anything else as the string of its JSON (Flagsmith
// stringifies what it cannot store). Null is a deletion and is handled by the caller.
std::optional<std::string> StoredValue(const rapidjson::Value& v, std::string* error) {
    if (v.IsBool()) return std::string(v.GetBool() ? "true" : "false");
    if (v.IsNumber()) return json::Serialize(v);
    std::string text = v.IsString() ? std::string(json::View(v)) : json::Serialize(v);
    if (CodePoints(text) > kMaxTraitValueChars) {
        *error = "Value string is too long. Must be less than 2000 character";
        return std::nullopt;
    }
    std::string out;
    json::AppendQuoted(out, text);
    return out;
}

// One trait of a request: a key and a value (nullopt: delete).
struct TraitInput {
    std::string key;
    std::optional<std::string> value;
    bool transient = false;
};

// {"trait_key": ..., "trait_value": ...} of the Edge bulk and identities calls.
std::optional<TraitInput> ReadTrait(const rapidjson::Value& t, std::string* error) {
    if (!t.IsObject()) {
        *error = "each trait must be an object";
        return std::nullopt;
    }
    auto key = json::FindString(t, "trait_key");
    if (!key || key->empty()) {
        *error = "trait_key is required";
        return std::nullopt;
    }
    const rapidjson::Value* value = json::Find(t, "trait_value");
    if (value == nullptr) {
        *error = "trait_value is required";
        return std::nullopt;
    }
    TraitInput in;
    in.key = *key;
    if (const auto* tr = json::Find(t, "transient"); tr != nullptr && tr->IsBool()) {
        in.transient = tr->GetBool();
    }
    if (!value->IsNull()) {
        in.value = StoredValue(*value, error);
        if (!in.value) return std::nullopt;
    }
    return in;
}

// Flagsmith's update of an identity's traits: a value sets the trait, null deletes it,
// the traits not named stay.
void Merge(Identity& identity, const std::vector<TraitInput>& traits) {
    for (const auto& t : traits) {
        if (t.transient) continue;
        if (t.value) {
            identity.traits[t.key] = *t.value;
        } else {
            identity.traits.erase(t.key);
        }
    }
}

// {"identifier":K,"flags":[],"traits":[{"trait_key":T,"trait_value":V},...]}
std::string IdentityBody(const Identity& identity, const std::vector<TraitInput>& transient) {
    std::string out = "{\"identifier\":";
    json::AppendQuoted(out, identity.identifier);
    out += ",\"flags\":[],\"traits\":[";
    bool first = true;
    auto add = [&](const std::string& key, const std::string& value) {
        if (!first) out += ',';
        first = false;
        out += "{\"trait_key\":";
        json::AppendQuoted(out, key);
        out += ",\"trait_value\":" + value + "}";
    };
    for (const auto& [key, value] : identity.traits) add(key, value);
    for (const auto& t : transient) {
        if (t.transient && t.value) add(t.key, *t.value);
    }
    return out + "]}";
}

}  // namespace

const char* Usage() {
    return R"(usage: audsync-flagsmith-emulator [--listen HOST:PORT] [--environment-key KEY]

A local stand-in for Flagsmith's SDK API (one environment, in memory), for the demo,
manual runs and tests. Documented in docs/platforms/flagsmith.md.

options:
  --listen HOST:PORT       where to listen (default 127.0.0.1:8766; port 0: any free port)
  --environment-key KEY    the server-side environment key it accepts
                           (default ser.emulator-key)
  -h, --help               this text

Flagsmith routes (each needs X-Environment-Key: KEY; a missing or wrong key, or a key
refused through /_emulator/key, is answered 403 {"detail":"Invalid or missing
Environment Key"}):
  PUT  /api/v1/bulk-identities/   Edge API bulk update: {"data":[{"identifier":K,
       "traits":[{"trait_key":T,"trait_value":V}]}]}, at most 100 identities (400
       beyond); updates each identity, keeping its other traits; a null value deletes
       the trait; answers 202
  POST /api/v1/bulk-identities/   the same body; replaces each identity's traits with
       the ones given (the others are lost); answers 202
  PUT  /api/v1/traits/bulk/       Core API bulk update: [{"identity":{"identifier":K},
       "trait_key":T,"trait_value":V}]; null deletes; answers 200 with the items stored
  POST /api/v1/identities/        {"identifier":K,"traits":[...]}: updates the identity
       as PUT does and answers {"identifier","flags":[],"traits":[...]}
  GET  /api/v1/identities/?identifier=K   the identity's traits (the same answer)
  GET  /api/v1/flags/             the environment's flags: []
  String trait values over 2,000 characters are refused with 400.

control routes (no credentials; answers are JSON):
  GET  /_emulator/identities   {"identities":[{"identifier":K,"traits":{T:V}}]}
  GET  /_emulator/stats        {"requests","identities","max_batch","by_status":{"202":n}}
                               (bulk requests only)
  POST /_emulator/reset        no body: forgets identities, faults, refusals, the key
                               refusal and the stats; answers {}
  POST /_emulator/faults       queues an answer for the next bulk requests:
       {"status":429,"count":1,"delay_ms":0,"retry_after":"2","drop":false}
       every member optional; status 0 answers normally after delay_ms
  POST /_emulator/refuse       {"keys":["k1","k2"]}: 400 to any bulk request holding one
                               of those identifiers (replaces the previous list)
  POST /_emulator/key          {"reject":true}: 403 to everything that needs the key;
                               {"reject":false} accepts it again
)";
}

Emulator::Emulator(Options options) : options_(std::move(options)) {}

Emulator::~Emulator() { Stop(); }

void Emulator::Start() {
    server_ = std::make_unique<emulator_common::Server>(
        options_.host, options_.port, options_.threads, 16 * 1024 * 1024,
        [this](const std::string& method, const std::string& target,
               const std::map<std::string, std::string>& headers,
               const std::string& body) { return Handle(method, target, headers, body); },
        [] { return Detail(500, "emulator error"); });
    server_->Start();
}

uint16_t Emulator::port() const { return server_ ? server_->port() : 0; }

std::string Emulator::base_url() const {
    return "http://" + options_.host + ":" + std::to_string(port());
}

void Emulator::Stop() {
    if (server_) server_->Stop();
}

void Emulator::AddFault(Fault fault) {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.push_back(std::move(fault));
}

void Emulator::ClearFaults() {
    std::lock_guard<std::mutex> lock(mu_);
    faults_.clear();
    delay_ms_ = 0;
}

void Emulator::SetDelay(int ms) {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ms_ = ms;
}

void Emulator::RefuseKeys(std::set<std::string> keys) {
    std::lock_guard<std::mutex> lock(mu_);
    refused_ = std::move(keys);
}

void Emulator::SetRejectKey(bool reject) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_key_ = reject;
}

void Emulator::SetIdentityTrait(const std::string& identifier, const std::string& name,
                                const std::string& json_value) {
    rapidjson::Document doc;
    if (!json::Parse(json_value, doc, kMaxDepth).ok()) {
        throw std::invalid_argument("SetIdentityTrait: the value is not JSON");
    }
    TraitInput in;
    in.key = name;
    if (!doc.IsNull()) {
        std::string error;
        in.value = StoredValue(doc, &error);
        if (!in.value) throw std::invalid_argument("SetIdentityTrait: " + error);
    }
    std::lock_guard<std::mutex> lock(mu_);
    Identity& identity = identities_[identifier];
    identity.identifier = identifier;
    Merge(identity, {in});
}

void Emulator::Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    identities_.clear();
    faults_.clear();
    refused_.clear();
    delay_ms_ = 0;
    reject_key_ = false;
    stats_ = Stats{};
}

std::map<std::string, Identity> Emulator::Identities() const {
    std::lock_guard<std::mutex> lock(mu_);
    return identities_;
}

std::optional<std::string> Emulator::Trait(const std::string& identifier,
                                           const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = identities_.find(identifier);
    if (it == identities_.end()) return std::nullopt;
    auto t = it->second.traits.find(name);
    if (t == it->second.traits.end()) return std::nullopt;
    return t->second;
}

std::optional<bool> Emulator::BoolTrait(const std::string& identifier,
                                        const std::string& name) const {
    auto v = Trait(identifier, name);
    if (v == "true") return true;
    if (v == "false") return false;
    return std::nullopt;
}

Stats Emulator::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

bool Emulator::KeyAccepted(const std::map<std::string, std::string>& headers) const {
    return !reject_key_ && Header(headers, "x-environment-key") == options_.environment_key;
}

Answer Emulator::Handle(const std::string& method, const std::string& target,
                        const std::map<std::string, std::string>& headers,
                        const std::string& body) {
    size_t q = target.find('?');
    std::string p = target.substr(0, q);
    std::string query = q == std::string::npos ? std::string() : target.substr(q + 1);
    if (p.rfind("/_emulator/", 0) == 0) return Control(method, p, body);
    auto not_allowed = [&] { return Detail(405, "Method \"" + method + "\" not allowed."); };
    const bool edge = Is(p, "/api/v1/bulk-identities/");
    if (edge || Is(p, "/api/v1/traits/bulk/")) {
        if (method != "PUT" && !(edge && method == "POST")) return not_allowed();
        return Bulk(method, p, headers, body);
    }
    const bool identities = Is(p, "/api/v1/identities/");
    const bool flags = Is(p, "/api/v1/flags/");
    if (!identities && !flags) return Detail(404, "Not found.");
    if ((flags && method != "GET") || (method != "GET" && method != "POST")) return not_allowed();
    {
        std::lock_guard<std::mutex> lock(mu_);
        // Flagsmith words the two cases differently.
        if (Header(headers, "x-environment-key").empty()) {
            return Detail(403, "Invalid or missing Environment key");
        }
        if (!KeyAccepted(headers)) return Detail(403, "Invalid or missing Environment Key");
    }
    if (flags) return Json(200, "[]");
    return method == "GET" ? IdentitiesGet(query) : IdentitiesPost(body);
}

Answer Emulator::Bulk(const std::string& method, const std::string& path,
                      const std::map<std::string, std::string>& headers, const std::string& body) {
    std::unique_lock<std::mutex> lock(mu_);
    ++stats_.requests;
    stats_.last_method = method;
    stats_.last_path = path;
    stats_.last_body = body;
    stats_.last_headers = headers;
    int delay = delay_ms_;
    auto finish = [&](Answer a) {
        a.delay_ms = delay;
        ++stats_.by_status[a.drop ? 0 : a.status];
        return a;
    };
    if (!faults_.empty()) {
        Fault& f = faults_.front();
        Fault now = f;
        if (--f.count <= 0) faults_.pop_front();
        delay += now.delay_ms;
        if (now.drop) {
            Answer a;
            a.drop = true;
            return finish(a);
        }
        if (now.status != 0) {
            Answer a;
            if (now.status == 429) {
                // Django REST framework's throttling answer.
                a = Detail(429, "Request was throttled. Expected available in " +
                                    now.retry_after.value_or("1") + " seconds.");
            } else {
                a = Detail(now.status, "injected by the emulator");
            }
            if (now.retry_after) a.headers["Retry-After"] = *now.retry_after;
            return finish(a);
        }
    }
    if (Header(headers, "x-environment-key").empty()) {
        return finish(Detail(403, "Invalid or missing Environment key"));
    }
    if (!KeyAccepted(headers)) return finish(Detail(403, "Invalid or missing Environment Key"));
    if (Is(path, "/api/v1/bulk-identities/")) return finish(EdgeBulk(method == "POST", body));
    return finish(CoreBulk(body));
}

// Under mu_.
Answer Emulator::EdgeBulk(bool overwrite, const std::string& body) {
    rapidjson::Document doc;
    if (!json::Parse(body, doc, kMaxDepth).ok() || !doc.IsObject()) {
        return Text(400, "Request body must be a JSON object");
    }
    const rapidjson::Value* data = json::Find(doc, "data");
    if (data == nullptr || !data->IsArray()) return Text(400, "data must be a list of identities");
    if (data->Size() > kMaxBulkIdentities) {
        return Text(400, "Number of identities must not be more than 100");
    }
    std::vector<std::pair<std::string, std::vector<TraitInput>>> updates;
    for (const auto& item : data->GetArray()) {
        std::optional<std::string> identifier =
            item.IsObject() ? json::FindString(item, "identifier") : std::nullopt;
        if (!identifier || identifier->empty()) {
            return Text(400, "each identity needs a non-empty identifier");
        }
        if (refused_.count(*identifier) > 0) {
            return Text(400, "identifier refused by the emulator: " + *identifier);
        }
        std::vector<TraitInput> traits;
        if (const auto* list = json::Find(item, "traits"); list != nullptr && !list->IsNull()) {
            if (!list->IsArray()) return Text(400, "traits must be a list");
            for (const auto& t : list->GetArray()) {
                std::string error;
                auto in = ReadTrait(t, &error);
                if (!in) return Text(400, error);
                traits.push_back(std::move(*in));
            }
        }
        updates.emplace_back(*identifier, std::move(traits));
    }
    // Every identity is valid: apply them all.
    for (auto& [identifier, traits] : updates) {
        Identity& identity = identities_[identifier];
        identity.identifier = identifier;
        if (overwrite) identity.traits.clear();
        Merge(identity, traits);
    }
    stats_.identities += updates.size();
    stats_.max_batch = std::max(stats_.max_batch, updates.size());
    return Text(202, "");
}

// Under mu_. As Flagsmith's Core API does it: the null-valued items are deleted first,
// then the others are validated (400 with one error object per item) and stored.
Answer Emulator::CoreBulk(const std::string& body) {
    rapidjson::Document doc;
    if (!json::Parse(body, doc, kMaxDepth).ok() || !doc.IsArray()) {
        return Detail(400, "Invalid request data");
    }
    struct Item {
        std::string identifier;
        std::optional<TraitInput> trait;
        std::string errors;  // a JSON object's members
    };
    std::vector<Item> items;
    for (const auto& v : doc.GetArray()) {
        if (!v.IsObject()) return Detail(400, "Invalid request data");
        Item item;
        const rapidjson::Value* identity = json::FindObject(v, "identity");
        auto identifier = identity ? json::FindString(*identity, "identifier") : std::nullopt;
        if (identifier) item.identifier = *identifier;
        if (refused_.count(item.identifier) > 0) {
            return Detail(400, "identifier refused by the emulator: " + item.identifier);
        }
        auto add_error = [&](const char* field, std::string_view message) {
            if (!item.errors.empty()) item.errors += ',';
            json::AppendQuoted(item.errors, field);
            item.errors += ":[";
            json::AppendQuoted(item.errors, message);
            item.errors += ']';
        };
        if (!identifier || identifier->empty()) add_error("identity", "identifier is required");
        std::string error;
        const rapidjson::Value* value = json::Find(v, "trait_value");
        if (value != nullptr && !value->IsNull()) {
            item.trait = ReadTrait(v, &error);
            if (!item.trait) {
                add_error(error.rfind("trait_key", 0) == 0 ? "trait_key" : "trait_value", error);
            }
        } else {
            auto key = json::FindString(v, "trait_key");
            item.trait = TraitInput{key.value_or(""), std::nullopt};
        }
        items.push_back(std::move(item));
    }
    for (const auto& item : items) {
        if (item.trait && !item.trait->value && !item.identifier.empty()) {
            auto it = identities_.find(item.identifier);
            if (it != identities_.end()) it->second.traits.erase(item.trait->key);
        }
    }
    std::string errors = "[";
    bool failed = false;
    size_t stored = 0;
    for (const auto& item : items) {
        if (item.trait && !item.trait->value && item.errors.empty()) continue;  // deleted
        if (stored++ > 0) errors += ',';
        errors += "{" + item.errors + "}";
        failed = failed || !item.errors.empty();
    }
    if (failed) return Json(400, errors + "]");
    std::string out = "[";
    bool first = true;
    for (const auto& item : items) {
        if (!item.trait || !item.trait->value) continue;
        Identity& identity = identities_[item.identifier];
        identity.identifier = item.identifier;
        Merge(identity, {*item.trait});
        if (!first) out += ',';
        first = false;
        out += "{\"identity\":{\"identifier\":";
        json::AppendQuoted(out, item.identifier);
        out += "},\"trait_value\":" + *item.trait->value + ",\"trait_key\":";
        json::AppendQuoted(out, item.trait->key);
        out += '}';
    }
    stats_.identities += items.size();
    stats_.max_batch = std::max(stats_.max_batch, items.size());
    return Json(200, out + "]");
}

Answer Emulator::IdentitiesGet(const std::string& query) {
    std::optional<std::string> identifier;
    size_t at = 0;
    while (at <= query.size()) {
        size_t end = query.find('&', at);
        if (end == std::string::npos) end = query.size();
        std::string_view pair(query.data() + at, end - at);
        if (pair.rfind("identifier=", 0) == 0) {
            identifier = text::PercentDecode(pair.substr(11), true);
            if (!identifier) return Detail(400, "malformed query");
        }
        at = end + 1;
    }
    // Flagsmith answers a missing identifier with 200 and this detail.
    if (!identifier || identifier->empty()) return Json(200, "{\"detail\":\"Missing identifier\"}");
    std::lock_guard<std::mutex> lock(mu_);
    Identity& identity = identities_[*identifier];  // created on first sight, as Flagsmith does
    identity.identifier = *identifier;
    return Json(200, IdentityBody(identity, {}));
}

Answer Emulator::IdentitiesPost(const std::string& body) {
    rapidjson::Document doc;
    if (!json::Parse(body, doc, kMaxDepth).ok() || !doc.IsObject()) {
        return Detail(400, "JSON parse error");
    }
    auto identifier = json::FindString(doc, "identifier");
    if (!identifier || identifier->empty()) {
        return Json(400, "{\"identifier\":[\"This field is required.\"]}");
    }
    std::vector<TraitInput> traits;
    if (const auto* list = json::Find(doc, "traits"); list != nullptr && !list->IsNull()) {
        if (!list->IsArray()) return Json(400, "{\"traits\":[\"Expected a list of items.\"]}");
        for (const auto& t : list->GetArray()) {
            std::string error;
            auto in = ReadTrait(t, &error);
            if (!in) {
                std::string out = "{\"traits\":[";
                json::AppendQuoted(out, error);
                return Json(400, out + "]}");
            }
            traits.push_back(std::move(*in));
        }
    }
    bool transient = false;
    if (const auto* t = json::Find(doc, "transient"); t != nullptr && t->IsBool()) {
        transient = t->GetBool();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (transient) {
        Identity temporary;
        temporary.identifier = *identifier;
        for (auto& t : traits) t.transient = true;
        return Json(200, IdentityBody(temporary, traits));
    }
    Identity& identity = identities_[*identifier];
    identity.identifier = *identifier;
    Merge(identity, traits);
    return Json(200, IdentityBody(identity, traits));
}

Answer Emulator::Control(const std::string& method, const std::string& path,
                         const std::string& body) {
    auto bad = [](const std::string& message) {
        std::string out = "{\"error\":";
        json::AppendQuoted(out, message);
        return Json(400, out + "}");
    };
    if (path == "/_emulator/identities" && method == "GET") {
        std::string out = "{\"identities\":[";
        bool first = true;
        for (const auto& [identifier, identity] : Identities()) {
            if (!first) out += ',';
            first = false;
            out += "{\"identifier\":";
            json::AppendQuoted(out, identifier);
            out += ",\"traits\":{";
            bool f = true;
            for (const auto& [name, value] : identity.traits) {
                if (!f) out += ',';
                f = false;
                json::AppendQuoted(out, name);
                out += ':' + value;
            }
            out += "}}";
        }
        return Json(200, out + "]}");
    }
    if (path == "/_emulator/stats" && method == "GET") {
        Stats s = stats();
        std::string out = "{\"requests\":" + std::to_string(s.requests) +
                          ",\"identities\":" + std::to_string(s.identities) +
                          ",\"max_batch\":" + std::to_string(s.max_batch) + ",\"by_status\":{";
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
        if (!json::Parse(body, doc, 8).ok() || !doc.IsObject()) {
            return bad("body must be a JSON object");
        }
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
    if (path == "/_emulator/refuse" && method == "POST") {
        rapidjson::Document doc;
        const rapidjson::Value* keys = nullptr;
        if (json::Parse(body, doc, 8).ok() && doc.IsObject()) keys = json::Find(doc, "keys");
        if (keys == nullptr || !keys->IsArray()) return bad("body must be {\"keys\":[...]}");
        std::set<std::string> refused;
        for (const auto& k : keys->GetArray()) {
            if (k.IsString()) refused.insert(std::string(json::View(k)));
        }
        RefuseKeys(std::move(refused));
        return Json(200, "{}");
    }
    if (path == "/_emulator/key" && method == "POST") {
        rapidjson::Document doc;
        const rapidjson::Value* reject = nullptr;
        if (json::Parse(body, doc, 8).ok() && doc.IsObject()) reject = json::Find(doc, "reject");
        if (reject == nullptr || !reject->IsBool()) {
            return bad("body must be {\"reject\":true|false}");
        }
        SetRejectKey(reject->GetBool());
        return Json(200, "{}");
    }
    std::string out = "{\"error\":\"no such control route\"}";
    return Json(404, out);
}

}  // namespace audsync::flagsmith_emulator
