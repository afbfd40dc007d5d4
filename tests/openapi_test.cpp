// docs/openapi.yaml against the router: the same routes, and each route documents the errors
// that the router and its class of route give. (tests/openapi/validate.mjs checks that the
// document is valid OpenAPI 3.1.)
#include <doctest/doctest.h>

#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/http/routes.hpp"

using namespace audsync;

namespace {

// One operation of the document: what this test reads of it.
struct Operation {
    std::set<std::string> responses;  // "200", "404", "default", ...
    bool has_security = false;        // a `security:` of its own
    std::set<std::string> security;   // scheme names; "{}" for "no credentials needed"
    bool has_request_body = false;
};

size_t Indent(const std::string& line) { return line.find_first_not_of(' '); }

bool EndsWith(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The key of "  key: value", "  key:" or "  \"key\":", unquoted.
std::string KeyOf(const std::string& line) {
    std::string key = line.substr(Indent(line));
    const size_t separator = key.find(": ");
    if (separator != std::string::npos) {
        key.resize(separator);
    } else if (EndsWith(key, ":")) {
        key.pop_back();
    }
    if (key.size() >= 2 && (key.front() == '"' || key.front() == '\'') &&
        key.back() == key.front()) {
        key = key.substr(1, key.size() - 2);
    }
    return key;
}

// Reads `paths:` of a block-style OpenAPI YAML by indentation: paths at 2 spaces, methods at
// 4, an operation's fields at 6, response codes and security requirements at 8. Block
// scalars (`|`, `>`) are skipped whole. Keys are "METHOD /path", the method upper-cased.
std::map<std::string, Operation> ReadOperations(const std::string& yaml) {
    static const std::set<std::string> kMethods = {"get",  "put",     "post",  "delete",
                                                   "head", "options", "patch", "trace"};
    std::map<std::string, Operation> ops;
    std::istringstream lines(yaml);
    bool in_paths = false;
    std::string path;
    Operation* op = nullptr;
    std::string field;                         // the operation's field being read
    size_t scalar_indent = std::string::npos;  // inside a block scalar under this indent
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const size_t indent = Indent(line);
        if (indent == std::string::npos || line[indent] == '#') continue;
        if (scalar_indent != std::string::npos) {
            if (indent > scalar_indent) continue;
            scalar_indent = std::string::npos;
        }
        std::string trimmed = line.substr(indent);
        for (const char* style : {": |", ": |-", ": |+", ": >", ": >-", ": >+"}) {
            if (EndsWith(trimmed, style)) scalar_indent = indent;
        }
        if (indent == 0) {
            in_paths = trimmed == "paths:";
            op = nullptr;
            continue;
        }
        if (!in_paths) continue;
        if (indent == 2) {
            path = KeyOf(line);
            op = nullptr;
        } else if (indent == 4) {
            std::string key = KeyOf(line);
            op = nullptr;
            if (kMethods.count(key) != 0) {
                std::string method;
                for (char c : key)
                    method += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                op = &ops[method + " " + path];
            }
        } else if (op != nullptr && indent == 6) {
            field = KeyOf(line);
            if (field == "security") op->has_security = true;
            if (field == "requestBody") op->has_request_body = true;
        } else if (op != nullptr && indent == 8 && field == "responses") {
            op->responses.insert(KeyOf(line));
        } else if (op != nullptr && indent == 8 && field == "security" &&
                   trimmed.rfind("- ", 0) == 0) {
            std::string scheme = trimmed.substr(2);
            op->security.insert(scheme == "{}" ? scheme : scheme.substr(0, scheme.find(':')));
        }
    }
    return ops;
}

std::string ReadDocument() {
    std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) + "/docs/openapi.yaml");
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The route of a "METHOD /path/{param}" entry, its parameters replaced by `value`.
http::RouteMatch Match(const std::string& route, const std::string& value) {
    size_t space = route.find(' ');
    std::string path = route.substr(space + 1);
    for (size_t open; (open = path.find('{')) != std::string::npos;) {
        path.replace(open, path.find('}', open) - open + 1, value);
    }
    return http::MatchRoute(route.substr(0, space), path);
}

}  // namespace

TEST_SUITE("openapi") {
    TEST_CASE("openapi YAML reader: operations, responses and security by indentation") {
        const std::string yaml =
            "openapi: 3.1.0\n"
            "paths:\n"
            "  /v1/things/{id}:\n"
            "    parameters:\n"
            "      - name: id\n"
            "    get:\n"
            "      description: |\n"
            "        get:\n"
            "          \"999\": not a response\n"
            "      security:\n"
            "        - adminBearer: []\n"
            "        - {}\n"
            "      responses:\n"
            "        \"200\":\n"
            "          description: ok\n"
            "        '404':\n"
            "          description: \"a: b\"\n"
            "        default:\n"
            "          $ref: x\n"
            "    post:\n"
            "      requestBody:\n"
            "        required: true\n"
            "      responses:\n"
            "        \"413\":\n"
            "  \"/healthz\":\n"
            "    get:\n"
            "      security: []\n"
            "      responses:\n"
            "        \"200\":\n"
            "components:\n"
            "  schemas:\n"
            "    get:\n"
            "      responses:\n";
        auto ops = ReadOperations(yaml);
        REQUIRE(ops.size() == 3);
        const Operation& get = ops.at("GET /v1/things/{id}");
        CHECK(get.responses == std::set<std::string>{"200", "404", "default"});
        CHECK(get.has_security);
        CHECK(get.security == std::set<std::string>{"adminBearer", "{}"});
        CHECK_FALSE(get.has_request_body);
        const Operation& post = ops.at("POST /v1/things/{id}");
        CHECK(post.has_request_body);
        CHECK(post.responses == std::set<std::string>{"413"});
        CHECK_FALSE(post.has_security);
        const Operation& health = ops.at("GET /healthz");
        CHECK(health.has_security);
        CHECK(health.security.empty());
    }

    TEST_CASE("docs/openapi.yaml documents exactly the routes of RouteTable") {
        auto ops = ReadOperations(ReadDocument());
        std::set<std::string> documented;
        for (const auto& [route, op] : ops) {
            if (route.rfind("HEAD ", 0) != 0) documented.insert(route);
        }
        std::set<std::string> served(http::RouteTable().begin(), http::RouteTable().end());
        CHECK(documented == served);
        for (const auto& route : documented) {
            CAPTURE(route);
            CHECK(served.count(route) == 1);
        }
        for (const auto& route : served) {
            CAPTURE(route);
            CHECK(documented.count(route) == 1);
        }
    }

    TEST_CASE("docs/openapi.yaml: each route documents the answers its class of route gets") {
        const config::Limits limits;
        constexpr size_t kSmallBodyLimit = 64 * 1024;  // routes that read no body
        for (const auto& [route, op] : ReadOperations(ReadDocument())) {
            CAPTURE(route);
            const http::RouteMatch m = Match(route, "7");
            REQUIRE(m.id != http::RouteId::kNotFound);
            REQUIRE(m.id != http::RouteId::kMethodNotAllowed);
            const auto has = [&](const char* code) { return op.responses.count(code) == 1; };
            // Every answer: the success and the HTTP layer's errors (Error schema).
            CHECK(has("200"));
            CHECK(has("default"));
            // Credentials: admin routes the bearer token, ingest routes a write key, a
            // signature, a token or a URL key, health routes none.
            CHECK(op.has_security);
            const bool under_v1 = route.find(" /v1/") != std::string::npos;
            if (http::IsAdminRoute(m.id)) {
                CHECK(has("401"));
                CHECK(op.security.count("adminBearer") == 1);
                // Every admin answer reads or writes the database, but for the recent
                // pushes, kept in memory.
                if (m.id != http::RouteId::kPushes) CHECK(has("503"));
            } else if (under_v1) {
                CHECK(has("401"));
                CHECK(op.security.count("adminBearer") == 0);
                CHECK_FALSE(op.security.empty());
            } else {
                CHECK(op.security.empty());
                CHECK_FALSE(has("401"));
            }
            // Bodies: the transport refuses one over the route's limit before reading it;
            // a route that reads a body refuses one it cannot parse.
            const bool reads_body = http::BodyLimit(limits, m.id) > kSmallBodyLimit;
            if (route.rfind("POST ", 0) == 0 || reads_body) CHECK(has("413"));
            if (reads_body || op.has_request_body) {
                CHECK(has("400"));
                CHECK(has("413"));
            }
            // Path parameters: an unknown segment or destination id is a 404 (to a known
            // caller), a malformed percent escape in a decoded parameter a 400.
            if (route.find("{id}") != std::string::npos) CHECK(has("404"));
            if (Match(route, "%zz").id == http::RouteId::kBadPath) CHECK(has("400"));
            if (m.id == http::RouteId::kReadyz) CHECK(has("503"));
        }
    }
}
