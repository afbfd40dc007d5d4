// docs/api.md against the router: every documented route exists and every route is documented.
#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "audsync/http/routes.hpp"

using namespace audsync;

TEST_SUITE("api doc") {
    TEST_CASE("docs/api.md documents exactly the routes the server has") {
        std::ifstream in(std::string(AUDSYNC_SOURCE_DIR) + "/docs/api.md");
        REQUIRE(in.good());
        std::stringstream ss;
        ss << in.rdbuf();
        std::string doc = ss.str();
        std::set<std::string> documented;
        std::istringstream lines(doc);
        for (std::string line; std::getline(lines, line);) {
            // "### `METHOD /path`"
            if (line.rfind("### `", 0) != 0) continue;
            size_t end = line.find('`', 5);
            if (end != std::string::npos) documented.insert(line.substr(5, end - 5));
        }
        std::set<std::string> served(http::RouteTable().begin(), http::RouteTable().end());
        CHECK(documented == served);
    }

    TEST_CASE("every route in the table is matched by the router") {
        for (const auto& route : http::RouteTable()) {
            CAPTURE(route);
            size_t space = route.find(' ');
            std::string method = route.substr(0, space);
            std::string path = route.substr(space + 1);
            for (auto [param, value] :
                 {std::pair<std::string, std::string>{"{id}", "7"}, {"{contextKey}", "a%2Fb"}}) {
                for (size_t at; (at = path.find(param)) != std::string::npos;) {
                    path.replace(at, param.size(), value);
                }
            }
            auto m = http::MatchRoute(method, path);
            CHECK(m.id != http::RouteId::kNotFound);
            CHECK(m.id != http::RouteId::kMethodNotAllowed);
            CHECK(m.id != http::RouteId::kBadPath);
            if (route.find("{contextKey}") != std::string::npos) CHECK(m.key == "a/b");
            auto wrong = http::MatchRoute("PUT", path);  // no route takes PUT
            CHECK(wrong.id == http::RouteId::kMethodNotAllowed);
        }
    }

    TEST_CASE("route parameters are decoded exactly") {
        struct Row {
            const char* path;
            http::RouteId id;
            const char* key;
        };
        Row rows[] = {
            {"/v1/segments/3/members/%E2%9C%93%22%27", http::RouteId::kMember, "\xE2\x9C\x93\"'"},
            {"/v1/segments/3/members/a/b/c", http::RouteId::kMember, "a/b/c"},
            {"/v1/segments/3/members/100%25", http::RouteId::kMember, "100%"},
            {"/v1/segments/3/members/a+b", http::RouteId::kMember, "a+b"},
            {"/v1/contexts/u%2F1", http::RouteId::kContext, "u/1"},
            {"/v1/segments/3/members/%zz", http::RouteId::kBadPath, ""},
        };
        for (const auto& r : rows) {
            CAPTURE(r.path);
            auto m = http::MatchRoute("GET", r.path);
            CHECK(m.id == r.id);
            CHECK(m.key == r.key);
        }
        CHECK(http::MatchRoute("GET", "/v1/segments/3").segment == "3");
        CHECK(http::MatchRoute("GET", "/v1/nothing").id == http::RouteId::kNotFound);
        CHECK(http::IsAdminRoute(http::RouteId::kMetrics));
        CHECK_FALSE(http::IsAdminRoute(http::RouteId::kBatch));
    }
}
