// Loading and validating the config file: defaults, ${VAR} expansion, paths, errors.
#include "audsync/config/config.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>
#include <vector>

#include "audsync/common/json.hpp"

namespace audsync::config {
namespace {

Error ConfigError(const std::string& field, const std::string& what) {
    return MakeError(ErrorCode::kInvalidBody, "invalid_config",
                     (field.empty() ? std::string("config") : field) + ": " + what);
}

// The contents of a `${file:PATH}` secret: the whole file but one trailing newline (a
// file written by `echo` or an editor), at most 64 KiB. An error names the path and the
// reason, never the contents.
Result<std::string> ReadSecretFile(const std::string& path, const std::string& field) {
    constexpr size_t kMaxSecretFileBytes = 64 * 1024;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return ConfigError(field,
                           "cannot read the secret file " + path + ": " + std::strerror(errno));
    }
    std::string value;
    char buffer[4096];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        value.append(buffer, static_cast<size_t>(in.gcount()));
        if (value.size() > kMaxSecretFileBytes) {
            return ConfigError(field, "the secret file " + path + " is over 64 KiB");
        }
    }
    if (in.bad()) return ConfigError(field, "cannot read the secret file " + path);
    if (!value.empty() && value.back() == '\n') value.pop_back();
    if (!value.empty() && value.back() == '\r') value.pop_back();
    return value;
}

// Expands `${VAR}`, `${file:PATH}` and `$$`. With `resolve` false only the syntax is checked and
// the result is empty: that is how secret fields are read when their values are not needed.
Result<std::string> Expand(std::string_view in, const std::string& field, const EnvLookup& env,
                           bool resolve = true) {
    std::string out;
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '$') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 1 < in.size() && in[i + 1] == '$') {
            out.push_back('$');
            ++i;
            continue;
        }
        if (i + 1 < in.size() && in[i + 1] == '{') {
            size_t close = in.find('}', i + 2);
            if (close == std::string_view::npos) {
                return ConfigError(field, "unterminated ${ in value");
            }
            std::string name(in.substr(i + 2, close - i - 2));
            if (name.empty()) return ConfigError(field, "empty ${} in value");
            const bool from_file = name.rfind("file:", 0) == 0;
            if (from_file && (name.size() == 5 || name[5] != '/')) {
                return ConfigError(field, "${file:PATH} needs an absolute path");
            }
            if (!resolve) {
                i = close;
                continue;
            }
            if (from_file) {
                // Read again at every load, so a SIGHUP takes a rotated secret.
                auto value = ReadSecretFile(name.substr(5), field);
                if (!value) return value.error();
                out += value.value();
                i = close;
                continue;
            }
            auto value = env(name);
            if (!value) {
                return ConfigError(field, "environment variable " + name + " is not set");
            }
            out += *value;
            i = close;
            continue;
        }
        out.push_back('$');
    }
    if (!resolve) out.clear();
    return out;
}

// Edit distance, for "did you mean" on unknown fields (names are short).
size_t Distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t above = row[j];
            bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// The known name nearest to `name`, when it is near enough to be a typo.
std::optional<std::string> Nearest(std::string_view name,
                                   const std::vector<std::string_view>& known) {
    std::optional<std::string> best;
    size_t best_distance = std::max<size_t>(1, std::min<size_t>(3, name.size() / 3)) + 1;
    for (std::string_view k : known) {
        size_t d = Distance(name, k);
        if (d < best_distance) {
            best_distance = d;
            best = std::string(k);
        }
    }
    return best;
}

// A JSON syntax error as "line L, column C: what", or nullopt when the text is JSON.
// Columns count characters (UTF-8 sequences), from 1.
std::optional<std::string> SyntaxError(std::string_view text) {
    constexpr unsigned kFlags = rapidjson::kParseIterativeFlag |
                                rapidjson::kParseValidateEncodingFlag |
                                rapidjson::kParseStopWhenDoneFlag;
    rapidjson::MemoryStream stream(text.data(), text.size());
    rapidjson::Reader reader;
    rapidjson::BaseReaderHandler<> ignore;
    rapidjson::ParseResult result = reader.Parse<kFlags>(stream, ignore);
    size_t offset = 0;
    std::string what;
    if (result.IsError()) {
        offset = result.Offset();
        what = rapidjson::GetParseError_En(result.Code());
    } else {
        while (stream.Peek() == ' ' || stream.Peek() == '\n' || stream.Peek() == '\r' ||
               stream.Peek() == '\t') {
            stream.Take();
        }
        if (stream.Tell() == text.size()) return std::nullopt;
        offset = stream.Tell();
        what = "text after the end of the JSON object.";
    }
    size_t line = 1;
    size_t column = 1;
    for (size_t i = 0; i < offset && i < text.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            ++line;
            column = 1;
        } else if ((c & 0xC0) != 0x80) {
            ++column;
        }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + what;
}

// Where a relative path in the config points: beside the config file when there is one.
std::string ResolvePath(const std::string& value, const std::string& base_dir) {
    if (base_dir.empty() || value == ":memory:") return value;
    std::filesystem::path p(value);
    if (p.is_absolute()) return value;
    return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

struct Context {
    const EnvLookup& env;
    bool resolve_secrets;
    std::string base_dir;  // empty: paths are kept as written
};

// Walks one JSON object, remembering which members were read so that the rest can be
// reported as unknown.
class ObjectReader {
  public:
    ObjectReader(const rapidjson::Value& v, std::string path, const Context& context,
                 std::vector<std::string_view> known)
        : v_(v), path_(std::move(path)), context_(context), known_(std::move(known)) {}

    // Called first, so that a typo is reported as such and not as a missing field.
    Status CheckUnknown() const {
        for (auto it = v_.MemberBegin(); it != v_.MemberEnd(); ++it) {
            std::string name(it->name.GetString(), it->name.GetStringLength());
            if (std::find(known_.begin(), known_.end(), name) != known_.end()) continue;
            std::string what = "unknown field";
            if (auto near = Nearest(name, known_)) what += " (did you mean \"" + *near + "\"?)";
            return ConfigError(Field(name.c_str()), what);
        }
        return Ok();
    }

    std::string Field(const char* name) const {
        return path_.empty() ? std::string(name) : path_ + "." + name;
    }

    const rapidjson::Value* Get(const char* name) {
        assert(std::find(known_.begin(), known_.end(), name) != known_.end());
        const rapidjson::Value* m = json::Find(v_, name);
        return (m == nullptr || m->IsNull()) ? nullptr : m;
    }

    Status String(const char* name, std::string* out, bool required) {
        const rapidjson::Value* m = Get(name);
        if (m == nullptr) {
            return required ? Status(ConfigError(Field(name), "required")) : Ok();
        }
        if (!m->IsString()) return ConfigError(Field(name), "must be a string");
        auto expanded = Expand(json::View(*m), Field(name), context_.env);
        if (!expanded) return expanded.error();
        if (required && expanded.value().empty()) {
            return ConfigError(Field(name), "must not be empty");
        }
        *out = std::move(expanded).value();
        return Ok();
    }

    // A credential. Unless secrets are resolved it is left empty, and only its
    // presence, type and ${} syntax are checked.
    Status Secret(const char* name, std::string* out, bool required) {
        if (context_.resolve_secrets) return String(name, out, required);
        const rapidjson::Value* m = Get(name);
        if (m == nullptr) {
            return required ? Status(ConfigError(Field(name), "required")) : Ok();
        }
        if (!m->IsString()) return ConfigError(Field(name), "must be a string");
        AUDSYNC_TRY(SecretText(json::View(*m), Field(name), required));
        out->clear();
        return Ok();
    }

    // An optional secret that must be at least kMinSecretLength characters once
    // resolved (unresolved, only its syntax is checked). `present` (optional) tells
    // whether the field is set, resolved or not.
    Status LongSecret(const char* name, std::string* out, bool* present) {
        const rapidjson::Value* m = Get(name);
        if (present != nullptr) *present = m != nullptr;
        AUDSYNC_TRY(Secret(name, out, false));
        if (m != nullptr && context_.resolve_secrets && out->size() < kMinSecretLength) {
            return ConfigError(Field(name), "must be at least " + std::to_string(kMinSecretLength) +
                                                " characters (it is a credential)");
        }
        return Ok();
    }

    // Checks one secret value that is not resolved: literal text must be non-empty
    // when required; a ${VAR} is not looked up.
    Status SecretText(std::string_view raw, const std::string& field, bool required) const {
        auto checked = Expand(raw, field, context_.env, false);
        if (!checked) return checked.error();
        if (required && raw.empty()) return ConfigError(field, "must not be empty");
        return Ok();
    }

    // A file path, resolved against the config file's directory.
    Status Path(const char* name, std::string* out) {
        std::string value = *out;
        AUDSYNC_TRY(String(name, &value, false));
        if (value.empty()) return ConfigError(Field(name), "must not be empty");
        *out = ResolvePath(value, context_.base_dir);
        return Ok();
    }

    Status Int(const char* name, int* out, int min, int max) {
        const rapidjson::Value* m = Get(name);
        if (m == nullptr) return Ok();
        if (!m->IsInt64() || m->GetInt64() < min || m->GetInt64() > max) {
            return ConfigError(Field(name), "must be an integer from " + std::to_string(min) +
                                                " to " + std::to_string(max));
        }
        *out = static_cast<int>(m->GetInt64());
        return Ok();
    }

    Status Size(const char* name, size_t* out, size_t min, size_t max) {
        int64_t v = static_cast<int64_t>(*out);
        const rapidjson::Value* m = Get(name);
        if (m == nullptr) return Ok();
        if (!m->IsInt64() || m->GetInt64() < static_cast<int64_t>(min) ||
            m->GetInt64() > static_cast<int64_t>(max)) {
            return ConfigError(Field(name), "must be an integer from " + std::to_string(min) +
                                                " to " + std::to_string(max));
        }
        v = m->GetInt64();
        *out = static_cast<size_t>(v);
        return Ok();
    }

    Status Bool(const char* name, bool* out) {
        const rapidjson::Value* m = Get(name);
        if (m == nullptr) return Ok();
        if (!m->IsBool()) return ConfigError(Field(name), "must be true or false");
        *out = m->GetBool();
        return Ok();
    }

    const Context& context() const { return context_; }

  private:
    const rapidjson::Value& v_;
    std::string path_;
    const Context& context_;
    std::vector<std::string_view> known_;
};

bool IsValidId(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) return false;
    }
    return true;
}

bool IsHttpUrl(std::string_view s) {
    return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0;
}

// The fields each platform's targets take, beside id, platform and the delivery ones.
const std::map<std::string, std::vector<std::string_view>>& PlatformFields() {
    static const std::map<std::string, std::vector<std::string_view>> fields = {
        {"launchdarkly", {"service_token", "client_side_id", "api_base", "clientsdk_base"}},
        {"flagsmith", {"environment_key", "api_base", "trait_prefix", "flagsmith_api"}},
        {"configcat", {"api_user", "api_password", "product_id", "api_base", "max_list_items"}},
        {"unleash", {"api_token", "api_base", "context_name", "project", "max_list_items"}},
        {"statsig", {"console_api_key", "api_base", "id_type"}},
    };
    return fields;
}

Status Url(ObjectReader& r, const char* name, std::string* out) {
    AUDSYNC_TRY(r.String(name, out, false));
    if (!IsHttpUrl(*out)) return ConfigError(r.Field(name), "must be an http(s) URL");
    while (!out->empty() && out->back() == '/') out->pop_back();
    return Ok();
}

// The delivery settings a target shares with its destination's defaults.
Status LoadDelivery(ObjectReader& r, Target* t) {
    AUDSYNC_TRY(r.Int("max_batch", &t->max_batch, 1, 10000));
    AUDSYNC_TRY(r.Int("max_in_flight", &t->max_in_flight, 1, 64));
    AUDSYNC_TRY(r.Int("request_timeout_ms", &t->request_timeout_ms, 100, 600000));
    AUDSYNC_TRY(r.Int("retry_base_ms", &t->retry_base_ms, 1, 3600000));
    AUDSYNC_TRY(r.Int("retry_max_ms", &t->retry_max_ms, 1, 24 * 3600000));
    AUDSYNC_TRY(r.Int("auth_retry_ms", &t->auth_retry_ms, 1, 24 * 3600000));
    if (t->retry_max_ms < t->retry_base_ms) {
        return ConfigError(r.Field("retry_max_ms"), "must be at least retry_base_ms");
    }
    return Ok();
}

// The platform's own fields of a target (or of a destination's flat LaunchDarkly
// shorthand, where `r` reads the destination).
Status LoadPlatformFields(ObjectReader& r, Target* t) {
    if (t->platform == "launchdarkly") {
        t->api_base = "https://app.launchdarkly.com";
        AUDSYNC_TRY(r.Secret("service_token", &t->service_token, true));
        AUDSYNC_TRY(r.String("client_side_id", &t->client_side_id, true));
        AUDSYNC_TRY(Url(r, "api_base", &t->api_base));
        AUDSYNC_TRY(Url(r, "clientsdk_base", &t->clientsdk_base));
        if (t->max_batch == 0) t->max_batch = 1000;
    } else if (t->platform == "flagsmith") {
        t->api_base = "https://edge.api.flagsmith.com";
        AUDSYNC_TRY(r.Secret("environment_key", &t->environment_key, true));
        if (r.context().resolve_secrets && t->environment_key.rfind("ser.", 0) != 0) {
            return ConfigError(r.Field("environment_key"),
                               "must be a server-side environment key (it starts with \"ser.\"); "
                               "a client-side key cannot store traits");
        }
        AUDSYNC_TRY(Url(r, "api_base", &t->api_base));
        if (t->api_base.size() >= 7 &&
            t->api_base.compare(t->api_base.size() - 7, 7, "/api/v1") == 0) {
            return ConfigError(r.Field("api_base"),
                               "give the host only (e.g. https://edge.api.flagsmith.com); "
                               "audsync adds /api/v1");
        }
        AUDSYNC_TRY(r.String("trait_prefix", &t->trait_prefix, false));
        t->flagsmith_api = t->api_base == "https://edge.api.flagsmith.com" ? "edge" : "core";
        AUDSYNC_TRY(r.String("flagsmith_api", &t->flagsmith_api, false));
        if (t->flagsmith_api != "edge" && t->flagsmith_api != "core") {
            return ConfigError(r.Field("flagsmith_api"), "must be edge or core");
        }
        // Flagsmith's Edge bulk call takes at most 100 identities.
        if (t->max_batch == 0) t->max_batch = 100;
        if (t->flagsmith_api == "edge" && t->max_batch > 100) {
            return ConfigError(r.Field("max_batch"),
                               "Flagsmith's Edge API takes at most 100 identities per request");
        }
    } else if (t->platform == "configcat") {
        t->api_base = "https://api.configcat.com";
        AUDSYNC_TRY(r.Secret("api_user", &t->api_user, true));
        AUDSYNC_TRY(r.Secret("api_password", &t->api_password, true));
        AUDSYNC_TRY(r.String("product_id", &t->product_id, true));
        AUDSYNC_TRY(Url(r, "api_base", &t->api_base));
        AUDSYNC_TRY(r.Int("max_list_items", &t->max_list_items, 1, 100000));
        if (t->max_batch == 0) t->max_batch = 1000;
    } else if (t->platform == "unleash") {
        // Self-hosted or Unleash's cloud: no default host.
        AUDSYNC_TRY(r.Secret("api_token", &t->api_token, true));
        AUDSYNC_TRY(r.String("api_base", &t->api_base, true));
        AUDSYNC_TRY(Url(r, "api_base", &t->api_base));
        if (t->api_base.size() >= 4 &&
            t->api_base.compare(t->api_base.size() - 4, 4, "/api") == 0) {
            return ConfigError(r.Field("api_base"),
                               "give the server's base URL (e.g. https://unleash.example.com); "
                               "audsync adds /api/admin");
        }
        t->context_name = "userId";
        AUDSYNC_TRY(r.String("context_name", &t->context_name, false));
        if (t->context_name.empty() || t->context_name.size() > 100) {
            return ConfigError(r.Field("context_name"), "must be 1-100 characters");
        }
        AUDSYNC_TRY(r.String("project", &t->project, false));
        // Unleash's segmentValuesLimit (UNLEASH_SEGMENT_VALUES_LIMIT), 1,000 by default.
        AUDSYNC_TRY(r.Int("max_list_items", &t->max_list_items, 1, 1000000));
        if (t->max_batch == 0) t->max_batch = 1000;
    } else if (t->platform == "statsig") {
        t->api_base = "https://statsigapi.net";
        AUDSYNC_TRY(r.Secret("console_api_key", &t->api_token, true));
        if (r.context().resolve_secrets && t->api_token.rfind("console-", 0) != 0) {
            return ConfigError(r.Field("console_api_key"),
                               "must be a Console API key (it starts with \"console-\"); a "
                               "server or client SDK key cannot change segments");
        }
        AUDSYNC_TRY(Url(r, "api_base", &t->api_base));
        if (t->api_base.size() >= 11 &&
            t->api_base.compare(t->api_base.size() - 11, 11, "/console/v1") == 0) {
            return ConfigError(r.Field("api_base"),
                               "give the host only (e.g. https://statsigapi.net); audsync adds "
                               "/console/v1");
        }
        t->id_type = "userID";
        AUDSYNC_TRY(r.String("id_type", &t->id_type, false));
        if (t->id_type.empty() || t->id_type.size() > 100) {
            return ConfigError(r.Field("id_type"), "must be 1-100 characters");
        }
        // Statsig takes up to 100,000 IDs per call but allows few mutations per 10 s:
        // big batches.
        if (t->max_batch == 0) t->max_batch = 10000;
    }
    return Ok();
}

Result<Target> LoadTarget(const rapidjson::Value& v, const std::string& path,
                          const Context& context, const Target& defaults) {
    if (!v.IsObject()) return ConfigError(path, "must be an object");
    std::string platform;
    if (const auto* p = json::Find(v, "platform"); p != nullptr && p->IsString()) {
        platform = std::string(json::View(*p));
    }
    std::vector<std::string_view> known = {"id",
                                           "platform",
                                           "max_batch",
                                           "max_in_flight",
                                           "request_timeout_ms",
                                           "retry_base_ms",
                                           "retry_max_ms",
                                           "auth_retry_ms"};
    auto fields = PlatformFields().find(platform);
    if (fields != PlatformFields().end()) {
        known.insert(known.end(), fields->second.begin(), fields->second.end());
    }
    ObjectReader r(v, path, context, known);
    Target t = defaults;
    AUDSYNC_TRY(r.String("platform", &t.platform, true));
    if (!IsKnownPlatform(t.platform)) {
        return ConfigError(
            r.Field("platform"),
            "unsupported platform \"" + t.platform +
                "\" (supported: launchdarkly, flagsmith, configcat, unleash, statsig)");
    }
    AUDSYNC_TRY(r.CheckUnknown());
    AUDSYNC_TRY(r.String("id", &t.id, true));
    if (!IsValidId(t.id)) {
        return ConfigError(r.Field("id"), "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    AUDSYNC_TRY(LoadDelivery(r, &t));
    AUDSYNC_TRY(LoadPlatformFields(r, &t));
    return t;
}

// A destination's report_to_segment object.
Status LoadSegmentReport(const rapidjson::Value& v, const std::string& path, const Context& context,
                         SegmentReport* out) {
    if (!v.IsObject()) return ConfigError(path, "must be an object");
    ObjectReader r(v, path, context,
                   {"write_key", "api_base", "max_batch", "request_timeout_ms", "retry_base_ms",
                    "retry_max_ms"});
    AUDSYNC_TRY(r.CheckUnknown());
    SegmentReport report;
    report.enabled = true;
    AUDSYNC_TRY(r.Secret("write_key", &report.write_key, true));
    AUDSYNC_TRY(Url(r, "api_base", &report.api_base));
    if (report.api_base.size() >= 3 &&
        report.api_base.compare(report.api_base.size() - 3, 3, "/v1") == 0) {
        return ConfigError(r.Field("api_base"),
                           "give the host only (e.g. https://api.segment.io); audsync adds "
                           "/v1/batch");
    }
    AUDSYNC_TRY(r.Int("max_batch", &report.max_batch, 1, static_cast<int>(kSegmentBatchMaxEvents)));
    AUDSYNC_TRY(r.Int("request_timeout_ms", &report.request_timeout_ms, 100, 600000));
    AUDSYNC_TRY(r.Int("retry_base_ms", &report.retry_base_ms, 1, 3600000));
    AUDSYNC_TRY(r.Int("retry_max_ms", &report.retry_max_ms, 1, 24 * 3600000));
    if (report.retry_max_ms < report.retry_base_ms) {
        return ConfigError(r.Field("retry_max_ms"), "must be at least retry_base_ms");
    }
    *out = std::move(report);
    return Ok();
}

// `raw_write_keys` receives the write keys as written, for the uniqueness check when
// secrets are not resolved.
Result<Destination> LoadDestination(const rapidjson::Value& v, const std::string& path,
                                    const Context& context,
                                    std::vector<std::string>* raw_write_keys) {
    if (!v.IsObject()) return ConfigError(path, "must be an object");
    ObjectReader r(v, path, context,
                   {"id",
                    "platform",
                    "service_token",
                    "client_side_id",
                    "api_base",
                    "clientsdk_base",
                    "context_kind",
                    "context_key",
                    "write_keys",
                    "shared_secret",
                    "shared_secret_next",
                    "webhook_token",
                    "webhook_token_next",
                    "audience_url_key_next",
                    "audience_url_key",
                    "webhook_signature",
                    "max_batch",
                    "max_in_flight",
                    "request_timeout_ms",
                    "retry_base_ms",
                    "retry_max_ms",
                    "auth_retry_ms",
                    "audience_context_kinds",
                    "targets",
                    "report_to_segment"});
    AUDSYNC_TRY(r.CheckUnknown());
    Destination d;
    AUDSYNC_TRY(r.String("id", &d.id, true));
    if (!IsValidId(d.id)) {
        return ConfigError(r.Field("id"), "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    AUDSYNC_TRY(r.String("context_kind", &d.context_kind, false));
    if (!IsValidContextKind(d.context_kind)) {
        return ConfigError(r.Field("context_kind"), "not a valid context kind");
    }
    std::string key_choice(ToString(d.context_key));
    AUDSYNC_TRY(r.String("context_key", &key_choice, false));
    auto choice = ParseContextKeyChoice(key_choice);
    if (!choice) {
        return ConfigError(r.Field("context_key"),
                           "must be one of user_id_only, user_id_then_email, "
                           "user_id_then_anonymousId, user_id_then_email_then_anonymousId, "
                           "email_only");
    }
    d.context_key = *choice;
    size_t write_key_count = 0;
    if (const rapidjson::Value* keys = r.Get("write_keys")) {
        if (!keys->IsArray()) return ConfigError(r.Field("write_keys"), "must be an array");
        for (rapidjson::SizeType i = 0; i < keys->Size(); ++i) {
            std::string field = r.Field("write_keys") + "[" + std::to_string(i) + "]";
            const auto& k = (*keys)[i];
            if (!k.IsString()) return ConfigError(field, "must be a string");
            ++write_key_count;
            raw_write_keys->emplace_back(json::View(k));
            if (!context.resolve_secrets) {
                AUDSYNC_TRY(r.SecretText(json::View(k), field, true));
                continue;
            }
            auto expanded = Expand(json::View(k), field, context.env);
            if (!expanded) return expanded.error();
            if (expanded.value().empty()) return ConfigError(field, "must not be empty");
            d.write_keys.push_back(std::move(expanded).value());
        }
    }
    bool has_secret = false;
    if (const rapidjson::Value* m = r.Get("shared_secret")) {
        has_secret = m->IsString() && m->GetStringLength() > 0;
    }
    AUDSYNC_TRY(r.Secret("shared_secret", &d.shared_secret, false));
    if (context.resolve_secrets) has_secret = !d.shared_secret.empty();
    bool has_token = false;
    AUDSYNC_TRY(r.LongSecret("webhook_token", &d.webhook_token, &has_token));
    bool has_url_key = false;
    AUDSYNC_TRY(r.LongSecret("audience_url_key", &d.audience_url_key, &has_url_key));
    // The next value of each credential Segment presents, accepted beside the current one
    // while a rotation is under way (docs/operations.md, "Rotating credentials").
    AUDSYNC_TRY(r.Secret("shared_secret_next", &d.shared_secret_next, false));
    d.has_shared_secret_next = r.Get("shared_secret_next") != nullptr;
    AUDSYNC_TRY(
        r.LongSecret("webhook_token_next", &d.webhook_token_next, &d.has_webhook_token_next));
    AUDSYNC_TRY(r.LongSecret("audience_url_key_next", &d.audience_url_key_next,
                             &d.has_audience_url_key_next));
    for (const auto& [next, has_next, current, has_current] :
         {std::tuple{"shared_secret_next", d.has_shared_secret_next, "shared_secret", has_secret},
          std::tuple{"webhook_token_next", d.has_webhook_token_next, "webhook_token", has_token},
          std::tuple{"audience_url_key_next", d.has_audience_url_key_next, "audience_url_key",
                     has_url_key}}) {
        if (has_next && !has_current) {
            return ConfigError(r.Field(next), std::string("is the next value of ") + current +
                                                  ", which is not set: set " + current +
                                                  " instead");
        }
    }
    // What is configured, whether or not the secrets were resolved (for redacted views).
    d.write_key_count = write_key_count;
    d.has_shared_secret = has_secret;
    d.has_webhook_token = has_token;
    d.has_audience_url_key = has_url_key;
    if (write_key_count == 0 && !has_secret && !has_token) {
        return ConfigError(path,
                           "needs write_keys, a shared_secret or a webhook_token, or no one could "
                           "send to it");
    }
    std::string signature(ToString(d.webhook_signature));
    AUDSYNC_TRY(r.String("webhook_signature", &signature, false));
    auto mode = ParseWebhookSignature(signature);
    if (!mode) {
        return ConfigError(r.Field("webhook_signature"), "must be require_header or first_element");
    }
    d.webhook_signature = *mode;
    if (d.webhook_signature == WebhookSignature::kFirstElement && !has_secret) {
        return ConfigError(r.Field("webhook_signature"),
                           "first_element needs a shared_secret (it is about X-Signature)");
    }
    // The destination's delivery settings are its targets' defaults.
    Target defaults;
    defaults.max_batch = 0;
    AUDSYNC_TRY(LoadDelivery(r, &defaults));
    d.max_batch = defaults.max_batch == 0 ? d.max_batch : defaults.max_batch;
    d.max_in_flight = defaults.max_in_flight;
    d.request_timeout_ms = defaults.request_timeout_ms;
    d.retry_base_ms = defaults.retry_base_ms;
    d.retry_max_ms = defaults.retry_max_ms;
    d.auth_retry_ms = defaults.auth_retry_ms;
    if (const rapidjson::Value* list = r.Get("targets")) {
        for (const char* flat :
             {"platform", "service_token", "client_side_id", "api_base", "clientsdk_base"}) {
            if (r.Get(flat) != nullptr) {
                return ConfigError(r.Field(flat),
                                   "set on a target when the destination lists targets (the flat "
                                   "LaunchDarkly fields are shorthand for a destination without "
                                   "targets)");
            }
        }
        if (!list->IsArray() || list->Empty()) {
            return ConfigError(r.Field("targets"), "must be a non-empty array");
        }
        std::set<std::string> target_ids;
        for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
            std::string tpath = r.Field("targets") + "[" + std::to_string(i) + "]";
            auto t = LoadTarget((*list)[i], tpath, context, defaults);
            if (!t) return t.error();
            if (!target_ids.insert(t.value().id).second) {
                return ConfigError(tpath + ".id", "duplicate target id " + t.value().id);
            }
            d.targets.push_back(std::move(t).value());
        }
    } else {
        // Shorthand: the flat fields make one LaunchDarkly target named "launchdarkly".
        AUDSYNC_TRY(r.String("platform", &d.platform, false));
        if (d.platform != "launchdarkly") {
            return ConfigError(r.Field("platform"),
                               "the flat fields are LaunchDarkly's; list other platforms under "
                               "targets");
        }
        Target t = defaults;
        AUDSYNC_TRY(LoadPlatformFields(r, &t));
        d.service_token = t.service_token;
        d.client_side_id = t.client_side_id;
        d.api_base = t.api_base;
        d.clientsdk_base = t.clientsdk_base;
        d.targets.push_back(std::move(t));
    }
    if (const rapidjson::Value* kinds = r.Get("audience_context_kinds")) {
        if (!kinds->IsObject()) {
            return ConfigError(r.Field("audience_context_kinds"), "must be an object");
        }
        for (auto it = kinds->MemberBegin(); it != kinds->MemberEnd(); ++it) {
            std::string name(it->name.GetString(), it->name.GetStringLength());
            std::string field = r.Field("audience_context_kinds") + "." + name;
            if (!it->value.IsString() || !IsValidContextKind(json::View(it->value))) {
                return ConfigError(field, "must be a valid context kind");
            }
            d.audience_context_kinds[name] = std::string(json::View(it->value));
        }
    }
    if (const rapidjson::Value* report = r.Get("report_to_segment")) {
        AUDSYNC_TRY(LoadSegmentReport(*report, r.Field("report_to_segment"), context, &d.report));
    }
    return d;
}

}  // namespace

std::optional<log::Level> ParseLogLevel(std::string_view name) {
    if (name == "error") return log::Level::kError;
    if (name == "warn") return log::Level::kWarn;
    if (name == "info") return log::Level::kInfo;
    if (name == "debug") return log::Level::kDebug;
    return std::nullopt;
}

std::string_view ToString(log::Level level) {
    switch (level) {
        case log::Level::kError:
            return "error";
        case log::Level::kWarn:
            return "warn";
        case log::Level::kInfo:
            return "info";
        case log::Level::kDebug:
            return "debug";
    }
    return "info";
}

std::optional<WebhookSignature> ParseWebhookSignature(std::string_view name) {
    // "require_token" is the older name of require_header, kept so configs keep loading.
    if (name == "require_header" || name == "require_token") {
        return WebhookSignature::kRequireHeader;
    }
    if (name == "first_element") return WebhookSignature::kFirstElement;
    return std::nullopt;
}

std::string_view ToString(WebhookSignature mode) {
    return mode == WebhookSignature::kFirstElement ? "first_element" : "require_header";
}

std::optional<ContextKeyChoice> ParseContextKeyChoice(std::string_view name) {
    if (name == "user_id_only") return ContextKeyChoice::kUserIdOnly;
    if (name == "user_id_then_email") return ContextKeyChoice::kUserIdThenEmail;
    if (name == "user_id_then_anonymousId") return ContextKeyChoice::kUserIdThenAnonymousId;
    if (name == "user_id_then_email_then_anonymousId") {
        return ContextKeyChoice::kUserIdThenEmailThenAnonymousId;
    }
    if (name == "email_only") return ContextKeyChoice::kEmailOnly;
    return std::nullopt;
}

std::string_view ToString(ContextKeyChoice choice) {
    switch (choice) {
        case ContextKeyChoice::kUserIdOnly:
            return "user_id_only";
        case ContextKeyChoice::kUserIdThenEmail:
            return "user_id_then_email";
        case ContextKeyChoice::kUserIdThenAnonymousId:
            return "user_id_then_anonymousId";
        case ContextKeyChoice::kUserIdThenEmailThenAnonymousId:
            return "user_id_then_email_then_anonymousId";
        case ContextKeyChoice::kEmailOnly:
            return "email_only";
    }
    return "user_id_only";
}

bool IsValidContextKind(std::string_view kind) {
    if (kind.empty() || kind.size() > 256 || kind == "kind" || kind == "multi") return false;
    for (char c : kind) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) return false;
    }
    return true;
}

bool IsKnownPlatform(std::string_view platform) {
    return platform == "launchdarkly" || platform == "flagsmith" || platform == "configcat" ||
           platform == "unleash" || platform == "statsig";
}

Target ImplicitTarget(const Destination& d) {
    Target t;
    t.service_token = d.service_token;
    t.client_side_id = d.client_side_id;
    t.api_base = d.api_base;
    t.clientsdk_base = d.clientsdk_base;
    t.max_batch = d.max_batch;
    t.max_in_flight = d.max_in_flight;
    t.request_timeout_ms = d.request_timeout_ms;
    t.retry_base_ms = d.retry_base_ms;
    t.retry_max_ms = d.retry_max_ms;
    t.auth_retry_ms = d.auth_retry_ms;
    return t;
}

const Target* Destination::FindTarget(std::string_view target_id) const {
    for (const auto& t : targets) {
        if (t.id == target_id) return &t;
    }
    return nullptr;
}

const Destination* Config::FindDestination(std::string_view id) const {
    for (const auto& d : destinations) {
        if (d.id == id) return &d;
    }
    return nullptr;
}

EnvLookup ProcessEnv() {
    return [](const std::string& name) -> std::optional<std::string> {
        const char* v = std::getenv(name.c_str());
        if (v == nullptr) return std::nullopt;
        return std::string(v);
    };
}

namespace {

// "HOST:PORT" (an IPv6 host in brackets) for the field `name`.
Status ParseHostPort(const char* name, const std::string& text, std::string* host, uint16_t* port) {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
        return ConfigError(name, "must be HOST:PORT, e.g. 127.0.0.1:8080");
    }
    *host = text.substr(0, colon);
    if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
        *host = host->substr(1, host->size() - 2);
    }
    std::string digits = text.substr(colon + 1);
    char* end = nullptr;
    long p = std::strtol(digits.c_str(), &end, 10);
    if (digits.empty() || *end != '\0' || p < 0 || p > 65535) {
        return ConfigError(name, "port must be a number from 0 to 65535");
    }
    *port = static_cast<uint16_t>(p);
    return Ok();
}

Result<Config> Load(std::string_view text, const Context& context) {
    if (auto syntax = SyntaxError(text)) return ConfigError("", "not valid JSON at " + *syntax);
    rapidjson::Document doc;
    auto parsed = json::Parse(text, doc, 32);
    if (!parsed) return ConfigError("", parsed.error().message);
    if (!doc.IsObject()) return ConfigError("", "must be a JSON object");
    Config c;
    c.secrets_resolved = context.resolve_secrets;
    ObjectReader r(doc, "", context,
                   {"listen",
                    "admin_listen",
                    "database",
                    "log_level",
                    "log_format",
                    "access_log",
                    "admin_token",
                    "admin_token_next",
                    "metrics_public",
                    "admin_auth_free_failures",
                    "http_threads",
                    "keepalive_timeout_ms",
                    "header_timeout_ms",
                    "body_timeout_ms",
                    "dedupe_window_hours",
                    "raw_retention_hours",
                    "ready_max_backlog_seconds",
                    "sync",
                    "limits",
                    "destinations"});
    AUDSYNC_TRY(r.CheckUnknown());
    std::string listen = c.listen_host + ":" + std::to_string(c.listen_port);
    AUDSYNC_TRY(r.String("listen", &listen, false));
    AUDSYNC_TRY(ParseHostPort("listen", listen, &c.listen_host, &c.listen_port));
    std::string admin_listen;
    AUDSYNC_TRY(r.String("admin_listen", &admin_listen, false));
    if (!admin_listen.empty()) {
        std::string host;
        uint16_t port = 0;
        AUDSYNC_TRY(ParseHostPort("admin_listen", admin_listen, &host, &port));
        c.admin_listen = std::make_pair(host, port);
    }
    AUDSYNC_TRY(r.Path("database", &c.database));
    std::string level(ToString(c.log_level));
    AUDSYNC_TRY(r.String("log_level", &level, false));
    auto parsed_level = ParseLogLevel(level);
    if (!parsed_level) {
        return ConfigError("log_level", "must be one of error, warn, info, debug");
    }
    c.log_level = *parsed_level;
    std::string format = c.log_format == log::Format::kJson ? "json" : "text";
    AUDSYNC_TRY(r.String("log_format", &format, false));
    auto parsed_format = log::ParseFormat(format);
    if (!parsed_format) return ConfigError("log_format", "must be text or json");
    c.log_format = *parsed_format;
    AUDSYNC_TRY(r.Bool("access_log", &c.access_log));
    // Absent, the admin API is off; present, it must be long enough to resist guessing.
    bool has_admin_token = false;
    AUDSYNC_TRY(r.LongSecret("admin_token", &c.admin_token, &has_admin_token));
    bool has_admin_token_next = false;
    AUDSYNC_TRY(r.LongSecret("admin_token_next", &c.admin_token_next, &has_admin_token_next));
    if (has_admin_token_next && !has_admin_token) {
        return ConfigError("admin_token_next",
                           "is the next value of admin_token, which is not set: set admin_token "
                           "instead");
    }
    AUDSYNC_TRY(r.Bool("metrics_public", &c.metrics_public));
    AUDSYNC_TRY(r.Int("admin_auth_free_failures", &c.admin_auth_free_failures, 1, 1000000));
    AUDSYNC_TRY(r.Int("http_threads", &c.http_threads, 1, 256));
    AUDSYNC_TRY(r.Int("keepalive_timeout_ms", &c.keepalive_timeout_ms, 100, 3600000));
    AUDSYNC_TRY(r.Int("header_timeout_ms", &c.header_timeout_ms, 100, 3600000));
    AUDSYNC_TRY(r.Int("body_timeout_ms", &c.body_timeout_ms, 100, 3600000));
    AUDSYNC_TRY(r.Int("dedupe_window_hours", &c.dedupe_window_hours, 1, 24 * 366));
    AUDSYNC_TRY(r.Int("raw_retention_hours", &c.raw_retention_hours, 0, 24 * 366));
    AUDSYNC_TRY(r.Int("ready_max_backlog_seconds", &c.ready_max_backlog_seconds, 1, 86400 * 7));
    if (const rapidjson::Value* sync = r.Get("sync")) {
        if (!sync->IsObject()) return ConfigError("sync", "must be an object");
        ObjectReader sr(*sync, "sync", context, {"linger_ms", "workers"});
        AUDSYNC_TRY(sr.CheckUnknown());
        AUDSYNC_TRY(sr.Int("linger_ms", &c.sync_linger_ms, 0, 60000));
        AUDSYNC_TRY(sr.Int("workers", &c.sync_workers, 1, 64));
    }
    if (const rapidjson::Value* limits = r.Get("limits")) {
        if (!limits->IsObject()) return ConfigError("limits", "must be an object");
        ObjectReader l(*limits, "limits", context,
                       {"tracking_max_request_bytes", "tracking_max_events",
                        "webhook_max_request_bytes", "webhook_max_events", "max_event_bytes",
                        "max_json_depth", "max_id_bytes", "max_key_bytes", "max_pending_events",
                        "max_future_skew_seconds", "max_buffered_body_bytes", "max_connections",
                        "max_backlog_events", "max_backlog_seconds", "max_wal_bytes"});
        AUDSYNC_TRY(l.CheckUnknown());
        Limits& L = c.limits;
        AUDSYNC_TRY(l.Size("tracking_max_request_bytes", &L.tracking_max_request_bytes, 1024,
                           64 * 1024 * 1024));
        AUDSYNC_TRY(l.Size("tracking_max_events", &L.tracking_max_events, 1, 100000));
        AUDSYNC_TRY(l.Size("webhook_max_request_bytes", &L.webhook_max_request_bytes, 1024,
                           64 * 1024 * 1024));
        AUDSYNC_TRY(l.Size("webhook_max_events", &L.webhook_max_events, 1, 100000));
        AUDSYNC_TRY(l.Size("max_event_bytes", &L.max_event_bytes, 256, 16 * 1024 * 1024));
        AUDSYNC_TRY(l.Int("max_json_depth", &L.max_json_depth, 8, 1000));
        AUDSYNC_TRY(l.Size("max_id_bytes", &L.max_id_bytes, 16, 4096));
        AUDSYNC_TRY(l.Size("max_key_bytes", &L.max_key_bytes, 16, 65536));
        AUDSYNC_TRY(l.Size("max_pending_events", &L.max_pending_events, 1, 10000000));
        AUDSYNC_TRY(l.Size("max_buffered_body_bytes", &L.max_buffered_body_bytes, 1024 * 1024,
                           size_t{64} * 1024 * 1024 * 1024));
        AUDSYNC_TRY(l.Size("max_connections", &L.max_connections, 0, 10000000));
        size_t skew = static_cast<size_t>(L.max_future_skew_seconds);
        AUDSYNC_TRY(
            l.Size("max_future_skew_seconds", &skew, kMinFutureSkewSeconds, kMaxFutureSkewSeconds));
        L.max_future_skew_seconds = static_cast<int64_t>(skew);
        AUDSYNC_TRY(l.Size("max_backlog_events", &L.max_backlog_events, kMinBacklogEvents,
                           kMaxBacklogEvents));
        size_t backlog_seconds = static_cast<size_t>(L.max_backlog_seconds);
        AUDSYNC_TRY(l.Size("max_backlog_seconds", &backlog_seconds, kMinBacklogSeconds,
                           kMaxBacklogSeconds));
        L.max_backlog_seconds = static_cast<int64_t>(backlog_seconds);
        AUDSYNC_TRY(l.Size("max_wal_bytes", &L.max_wal_bytes, kMinWalBytes, kMaxWalBytes));
    }
    const rapidjson::Value* dests = r.Get("destinations");
    if (dests == nullptr) return ConfigError("destinations", "required");
    if (!dests->IsArray()) return ConfigError("destinations", "must be an array");
    std::set<std::string> ids;
    std::set<std::string> write_keys;
    for (rapidjson::SizeType i = 0; i < dests->Size(); ++i) {
        std::string path = "destinations[" + std::to_string(i) + "]";
        std::vector<std::string> raw_keys;
        auto d = LoadDestination((*dests)[i], path, context, &raw_keys);
        if (!d) return d.error();
        if (!ids.insert(d.value().id).second) {
            return ConfigError(path + ".id", "duplicate destination id " + d.value().id);
        }
        // Unresolved, the keys are compared as written: equal text means equal keys.
        for (const auto& k : context.resolve_secrets ? d.value().write_keys : raw_keys) {
            if (!write_keys.insert(k).second) {
                // The write key selects the destination, so it must be unique.
                return ConfigError(path + ".write_keys",
                                   "a write key is used by more than one destination");
            }
        }
        c.destinations.push_back(std::move(d).value());
    }
    return c;
}

}  // namespace

std::vector<std::string> StartupWarnings(const Config& config) {
    std::vector<std::string> out;
    for (size_t i = 0; i < config.destinations.size(); ++i) {
        const Destination& d = config.destinations[i];
        const std::string field = "destinations[" + std::to_string(i) + "]";
        // Unresolved secrets are empty: their length is unknown, so nothing is said.
        if (config.secrets_resolved && d.has_shared_secret &&
            d.shared_secret.size() < kMinSecretLength) {
            out.push_back(field + ".shared_secret: shorter than " +
                          std::to_string(kMinSecretLength) +
                          " characters; it is the HMAC key of X-Signature: use a long random "
                          "value");
        }
        if (config.secrets_resolved && d.has_shared_secret_next &&
            d.shared_secret_next.size() < kMinSecretLength) {
            out.push_back(field + ".shared_secret_next: shorter than " +
                          std::to_string(kMinSecretLength) +
                          " characters; it is the HMAC key of X-Signature: use a long random "
                          "value");
        }
        if (d.webhook_signature == WebhookSignature::kFirstElement) {
            out.push_back(field +
                          ".webhook_signature: first_element: Segment signs only the first "
                          "event of a batch, so every other event of a signed batch is "
                          "accepted unauthenticated; set a webhook_token and send it in an "
                          "Authorization: Bearer header instead");
        }
        if (!d.has_audience_url_key && d.write_key_count > 0) {
            out.push_back(field +
                          ".audience_url_key: not set, so the Webhook Audiences URLs accept a "
                          "write key as ?key=, where proxy logs keep it; set a dedicated "
                          "audience_url_key and use it in those URLs");
        }
    }
    return out;
}

Result<Config> LoadText(std::string_view text, const EnvLookup& env, const LoadOptions& options) {
    return Load(text, Context{env, options.resolve_secrets, ""});
}

Result<Config> LoadFile(const std::string& path, const EnvLookup& env, const LoadOptions& options) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return MakeError(ErrorCode::kNotFound, "config_unreadable",
                         "cannot read config file " + path);
    }
    std::stringstream ss;
    ss << in.rdbuf();
    // Absolute, so that the paths stay right whatever the working directory becomes.
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
    if (ec) dir = std::filesystem::path(path).parent_path();
    return Load(ss.str(), Context{env, options.resolve_secrets, dir.lexically_normal().string()});
}

}  // namespace audsync::config
