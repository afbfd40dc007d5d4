// The Unleash target: its pure functions, and its requests over HTTP to a scripted
// loopback server (the real Unleash is driven by tests/e2e/unleash/unleash_e2e.mjs).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audsync/config/config.hpp"
#include "audsync/targets/unleash.hpp"

using namespace audsync;
using targets::HttpResult;
using targets::PushRequest;
using targets::UnleashTarget;

namespace {

constexpr const char* kToken = "*:*.unleash-test-secret-0123";

PushRequest Request(const std::vector<std::string>& keys, const std::string& kind = "user",
                    const std::string& key = "vip") {
    PushRequest r;
    r.audience_id = "aud_1";
    r.audience_key = key;
    r.context_kind = kind;
    for (const auto& k : keys) r.members.push_back({k, true});
    return r;
}

std::vector<std::string> Keys(size_t n) {
    std::vector<std::string> keys;
    for (size_t i = 0; i < n; ++i) keys.push_back("u" + std::to_string(i));
    return keys;
}

std::string Repeat(const std::string& s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += s;
    return out;
}

// One request as the scripted server saw it.
struct Seen {
    std::string method;
    std::string path;
    std::string authorization;
    std::string body;
};

struct Answer {
    int status = 200;
    std::string body;
};

// An HTTP/1.1 server on an ephemeral loopback port that answers requests, in order, with
// the answers it was given (500 when none is left) and records what it was sent. It serves
// one connection at a time, kept alive, as a target's one libcurl handle uses it.
class ScriptedServer {
  public:
    explicit ScriptedServer(std::vector<Answer> answers)
        : answers_(answers.begin(), answers.end()) {
        listener_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        REQUIRE(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(listen(listener_, 8) == 0);
        REQUIRE(getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { Serve(); });
    }
    ~ScriptedServer() {
        stopping_ = true;
        thread_.join();
        close(listener_);
    }
    ScriptedServer(const ScriptedServer&) = delete;
    ScriptedServer& operator=(const ScriptedServer&) = delete;

    std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    std::vector<Seen> seen() const {
        std::lock_guard<std::mutex> lock(mu_);
        return seen_;
    }
    // "METHOD path" of every request, in order.
    std::vector<std::string> Lines() const {
        std::vector<std::string> out;
        for (const auto& s : seen()) out.push_back(s.method + " " + s.path);
        return out;
    }

  private:
    // Waits up to 50 ms for `fd` to be readable; false when it is not (yet).
    bool Readable(int fd) const {
        pollfd p{fd, POLLIN, 0};
        return poll(&p, 1, 50) > 0;
    }

    void Serve() {
        while (!stopping_) {
            if (!Readable(listener_)) continue;
            int fd = accept(listener_, nullptr, nullptr);
            if (fd < 0) continue;
            ServeConnection(fd);
            close(fd);
        }
    }

    void ServeConnection(int fd) {
        std::string in;
        char buffer[65536];
        while (!stopping_) {
            size_t head_end = in.find("\r\n\r\n");
            if (head_end != std::string::npos) {
                Seen s = ParseHead(in.substr(0, head_end));
                size_t length = ContentLength(in.substr(0, head_end));
                if (in.size() < head_end + 4 + length) {
                    if (!ReadMore(fd, in, buffer, sizeof buffer)) return;
                    continue;
                }
                s.body = in.substr(head_end + 4, length);
                in.erase(0, head_end + 4 + length);
                Answer a;
                {
                    std::lock_guard<std::mutex> lock(mu_);
                    seen_.push_back(s);
                    if (answers_.empty()) {
                        a = {500, R"({"message":"no answer scripted"})"};
                    } else {
                        a = answers_.front();
                        answers_.pop_front();
                    }
                }
                std::string out = "HTTP/1.1 " + std::to_string(a.status) +
                                  " Scripted\r\nContent-Type: application/json\r\n" +
                                  "Content-Length: " + std::to_string(a.body.size()) + "\r\n\r\n" +
                                  a.body;
                if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) !=
                    static_cast<ssize_t>(out.size())) {
                    return;
                }
                continue;
            }
            if (!ReadMore(fd, in, buffer, sizeof buffer)) return;
        }
    }

    // False when the peer closed or the server stops.
    bool ReadMore(int fd, std::string& in, char* buffer, size_t size) {
        while (!stopping_) {
            if (!Readable(fd)) continue;
            ssize_t n = recv(fd, buffer, size, 0);
            if (n <= 0) return false;
            in.append(buffer, static_cast<size_t>(n));
            return true;
        }
        return false;
    }

    static std::string Lower(std::string s) {
        for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    }

    static std::string Header(const std::string& head, const std::string& name) {
        size_t at = Lower(head).find("\r\n" + name + ":");
        if (at == std::string::npos) return "";
        size_t begin = head.find_first_not_of(' ', at + 3 + name.size());
        size_t end = head.find("\r\n", begin);
        return head.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    }

    static size_t ContentLength(const std::string& head) {
        std::string v = Header(head, "content-length");
        return v.empty() ? 0 : static_cast<size_t>(std::stoul(v));
    }

    static Seen ParseHead(const std::string& head) {
        Seen s;
        size_t space = head.find(' ');
        size_t space2 = head.find(' ', space + 1);
        s.method = head.substr(0, space);
        s.path = head.substr(space + 1, space2 - space - 1);
        s.authorization = Header(head, "authorization");
        return s;
    }

    int listener_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
    mutable std::mutex mu_;
    std::deque<Answer> answers_;  // Protected by mu_
    std::vector<Seen> seen_;      // Protected by mu_
};

config::Target Config(const std::string& base) {
    config::Target t;
    t.id = "unleash";
    t.platform = "unleash";
    t.api_base = base;
    t.api_token = kToken;
    t.context_name = "userId";
    t.max_list_items = 1000;
    t.request_timeout_ms = 3000;
    return t;
}

const char* kEmptyList = R"({"segments":[]})";

std::string Created(int id, const std::string& name = "vip") {
    return "{\"id\":" + std::to_string(id) + ",\"name\":\"" + name +
           R"(","description":"d","constraints":[]})";
}

}  // namespace

TEST_SUITE("unleash target") {
    TEST_CASE("unleash segment names: the audience key for user, key:kind otherwise") {
        CHECK(targets::UnleashSegmentName("vip", "user") == "vip");
        CHECK(targets::UnleashSegmentName("vip", "account") == "vip:account");
        CHECK(targets::UnleashSegmentName("high_value_users", "org.team") ==
              "high_value_users:org.team");
    }

    TEST_CASE("the unleash segment body is byte-exact") {
        PushRequest r = Request({"u1", "u\"2", "\xc3\xa9t\xc3\xa9"});
        CHECK(targets::UnleashSegmentBody(r, "userId", "") ==
              R"({"name":"vip","description":"Managed by audsync from Segment audience aud_1)"
              R"(; edits are overwritten","project":null,"constraints":[{"contextName":"userId",)"
              R"("operator":"IN","values":["u1","u\"2","été"],"inverted":false,)"
              R"("caseInsensitive":false}]})");
        PushRequest account = Request({"a1"}, "account");
        CHECK(targets::UnleashSegmentBody(account, "accountId", "growth") ==
              R"({"name":"vip:account","description":"Managed by audsync from Segment audience )"
              R"(aud_1; edits are overwritten","project":"growth","constraints":[{"contextName":)"
              R"("accountId","operator":"IN","values":["a1"],"inverted":false,)"
              R"("caseInsensitive":false}]})");
    }

    TEST_CASE("the unleash values keep order, drop repeats and non-members") {
        PushRequest r = Request({"b", "a", "b", "c"});
        r.members.push_back({"gone", false});
        CHECK(targets::UnleashSegmentBody(r, "userId", "").find(R"("values":["b","a","c"])") !=
              std::string::npos);
    }

    TEST_CASE("an empty unleash audience is the one placeholder value") {
        PushRequest only_removed = Request({});
        only_removed.members.push_back({"gone", false});
        for (const PushRequest& r : {Request({}), only_removed}) {
            CHECK(targets::UnleashSegmentBody(r, "userId", "")
                      .find(R"("values":["audsync:no-members"])") != std::string::npos);
        }
        CHECK(targets::UnleashLimitViolation(Request({}), 1) == std::nullopt);
    }

    TEST_CASE("unleash limits: exactly max_list_items passes, one more is refused and named") {
        CHECK(targets::UnleashLimitViolation(Request(Keys(3)), 3) == std::nullopt);
        CHECK(targets::UnleashLimitViolation(Request(Keys(3)), 4) == std::nullopt);
        auto over = targets::UnleashLimitViolation(Request(Keys(4)), 3);
        REQUIRE(over.has_value());
        CHECK(*over ==
              "audience has 4 members; Unleash allows 3 values per segment "
              "(segmentValuesLimit, max_list_items)");
        CHECK(targets::UnleashLimitViolation(Request(Keys(1000)), 1000) == std::nullopt);
        auto big = targets::UnleashLimitViolation(Request(Keys(1204)), 1000);
        REQUIRE(big.has_value());
        CHECK(*big ==
              "audience has 1,204 members; Unleash allows 1,000 values per segment "
              "(segmentValuesLimit, max_list_items)");
        // Repeats and members with value false are not values.
        PushRequest r = Request({"a", "b", "c", "a"});
        r.members.push_back({"d", false});
        CHECK(targets::UnleashLimitViolation(r, 3) == std::nullopt);
    }

    TEST_CASE("unleash limits: a value is 1 to 100 UTF-16 code units") {
        CHECK(targets::UnleashLimitViolation(Request({std::string(100, 'x')}), 10) == std::nullopt);
        auto long_key = targets::UnleashLimitViolation(Request({std::string(101, 'x')}), 10);
        REQUIRE(long_key.has_value());
        CHECK(*long_key == "member key \"" + std::string(40, 'x') +
                               "...\" has 101 characters; Unleash allows 100 characters per "
                               "constraint value");
        // 100 é are 200 bytes but 100 characters; 51 emoji are 102 (surrogate pairs).
        CHECK(targets::UnleashLimitViolation(Request({Repeat("\xc3\xa9", 100)}), 10) ==
              std::nullopt);
        auto emoji = targets::UnleashLimitViolation(Request({Repeat("\xf0\x9f\x98\x80", 51)}), 10);
        REQUIRE(emoji.has_value());
        CHECK(emoji->find("has 102 characters; Unleash allows 100") != std::string::npos);
        auto empty = targets::UnleashLimitViolation(Request({"a", ""}), 10);
        REQUIRE(empty.has_value());
        CHECK(*empty == "a member key is empty; Unleash refuses an empty constraint value");
        // A key that is no longer a member is not sent, whatever its length.
        PushRequest r = Request({"a"});
        r.members.push_back({std::string(200, 'x'), false});
        CHECK(targets::UnleashLimitViolation(r, 10) == std::nullopt);
    }

    TEST_CASE("unleash error bodies carry the details' text in their message") {
        CHECK(targets::UnleashErrorBody(
                  R"({"name":"BadDataError","message":"Request validation failed: your request )"
                  R"(body or params contain invalid data. Refer to the `details` list for more )"
                  R"(information.","details":[{"message":"\"constraints[0].values[0]\" is not )"
                  R"(allowed to be empty."}]})") ==
              R"({"name":"BadDataError","message":"Request validation failed: your request body )"
              R"(or params contain invalid data: \"constraints[0].values[0]\" is not allowed to )"
              R"(be empty."})");
        // A detail the message already says is not repeated.
        CHECK(targets::UnleashErrorBody(
                  R"({"name":"BadDataError","message":"Request validation failed: your request )"
                  R"(body or params contain invalid data: Segments may not have more than 1000 )"
                  R"(values","details":[{"message":"Segments may not have more than 1000 )"
                  R"(values"}]})") ==
              R"({"name":"BadDataError","message":"Request validation failed: your request body )"
              R"(or params contain invalid data: Segments may not have more than 1000 values"})");
        CHECK(targets::UnleashErrorBody(
                  R"({"id":"x","name":"NameExistsError","message":"Segment name already exists",)"
                  R"("details":[{"message":"Segment name already exists"}]})") ==
              R"({"name":"NameExistsError","message":"Segment name already exists"})");
        CHECK(targets::UnleashErrorBody(R"({"message":"a","details":[{"message":"b"},)"
                                        R"({"message":"c"},7]})") ==
              R"({"name":"Error","message":"a: b; c"})");
        // Anything else is kept as it is.
        CHECK(targets::UnleashErrorBody("Bad Gateway") == "Bad Gateway");
        CHECK(targets::UnleashErrorBody(R"({"message":"no details"})") ==
              R"({"message":"no details"})");
        CHECK(targets::UnleashErrorBody("") == "");
    }

    TEST_CASE("the unleash segment values limit is read from ui-config") {
        CHECK(
            targets::UnleashSegmentValuesLimit(
                R"({"version":"7.5.1","resourceLimits":{"segmentValues":1000,"segments":300}})") ==
            1000);
        CHECK(targets::UnleashSegmentValuesLimit(R"({"resourceLimits":{"segmentValues":2}})") == 2);
        CHECK(targets::UnleashSegmentValuesLimit(R"({"version":"5.0.0"})") == std::nullopt);
        CHECK(targets::UnleashSegmentValuesLimit(R"({"resourceLimits":{"segmentValues":"9"}})") ==
              std::nullopt);
        CHECK(targets::UnleashSegmentValuesLimit(R"({"resourceLimits":{"segmentValues":0}})") ==
              std::nullopt);
        CHECK(targets::UnleashSegmentValuesLimit("not json") == std::nullopt);
    }

    TEST_CASE("the unleash factory makes a full-list target") {
        config::Target t;
        t.platform = "unleash";
        t.api_base = "http://127.0.0.1:1";
        auto target = targets::MakeTarget(t);
        REQUIRE(target != nullptr);
        CHECK(target->shape() == targets::PushShape::kFullList);
    }
}

TEST_SUITE("unleash target over HTTP") {
    TEST_CASE("unleash pushes over a limit send nothing") {
        ScriptedServer server({});
        config::Target c = Config(server.base_url());
        c.max_list_items = 3;
        UnleashTarget target(c);
        CHECK(target.Push(Request(Keys(3))).status == 500);  // sent: the server answers 500
        HttpResult over = target.Push(Request(Keys(4)));
        CHECK(over.status == 0);
        CHECK(over.transport_error.empty());
        REQUIRE(over.over_limit.has_value());
        CHECK(*over.over_limit ==
              "audience has 4 members; Unleash allows 3 values per segment "
              "(segmentValuesLimit, max_list_items)");
        HttpResult key = target.Push(Request({std::string(101, 'k')}));
        CHECK(key.status == 0);
        REQUIRE(key.over_limit.has_value());
        CHECK(server.Lines() == std::vector<std::string>{"GET /api/admin/segments"});
    }

    TEST_CASE("the first unleash push creates the segment, the next replaces it by id") {
        ScriptedServer server(
            {{200, R"({"segments":[{"id":1,"name":"other"}]})"}, {201, Created(12)}, {204, ""}});
        UnleashTarget target(Config(server.base_url()));
        HttpResult first = target.Push(Request({"u1", "u2"}));
        CHECK(first.status == 201);
        CHECK(target.CachedSegmentId("vip") == "12");
        HttpResult second = target.Push(Request({"u2", "u3"}));
        CHECK(second.status == 204);
        CHECK(server.Lines() == std::vector<std::string>{"GET /api/admin/segments",
                                                         "POST /api/admin/segments",
                                                         "PUT /api/admin/segments/12"});
        auto seen = server.seen();
        for (const auto& s : seen) CHECK(s.authorization == kToken);  // raw, no Bearer
        CHECK(seen[1].body == targets::UnleashSegmentBody(Request({"u1", "u2"}), "userId", ""));
        CHECK(seen[2].body == targets::UnleashSegmentBody(Request({"u2", "u3"}), "userId", ""));
    }

    TEST_CASE("a fresh unleash target finds the segment by name instead of making another") {
        ScriptedServer server(
            {{200,
              R"({"segments":[{"id":4,"name":"vip:account"},{"id":5,"name":"vip","constraints":[)"
              R"({"contextName":"userId","operator":"IN","values":["x"]}]}]})"},
             {204, ""}});
        UnleashTarget target(Config(server.base_url()));
        CHECK(target.Push(Request({"u1"})).status == 204);
        CHECK(server.Lines() ==
              std::vector<std::string>{"GET /api/admin/segments", "PUT /api/admin/segments/5"});
    }

    TEST_CASE("an unleash segment deleted in the UI is created again in the same push") {
        ScriptedServer server({{200, kEmptyList},
                               {201, Created(3)},
                               {404, R"({"name":"NotFoundError","message":"No segment exists with )"
                                     R"(ID \"3\"","details":[{"message":"gone"}]})"},
                               {200, kEmptyList},
                               {201, Created(8)}});
        UnleashTarget target(Config(server.base_url()));
        REQUIRE(target.Push(Request({"u1"})).status == 201);
        HttpResult again = target.Push(Request({"u1", "u2"}));
        CHECK(again.status == 201);
        CHECK(target.CachedSegmentId("vip") == "8");
        CHECK(server.Lines() ==
              std::vector<std::string>{"GET /api/admin/segments", "POST /api/admin/segments",
                                       "PUT /api/admin/segments/3", "GET /api/admin/segments",
                                       "POST /api/admin/segments"});
    }

    TEST_CASE("an unleash create answered 409 lists again and replaces the segment") {
        ScriptedServer server({{200, kEmptyList},
                               {409, R"({"name":"NameExistsError","message":"Segment name already )"
                                     R"(exists","details":[{"message":"Segment name already )"
                                     R"(exists"}]})"},
                               {200, R"({"segments":[{"id":21,"name":"vip"}]})"},
                               {204, ""}});
        UnleashTarget target(Config(server.base_url()));
        CHECK(target.Push(Request({"u1"})).status == 204);
        CHECK(target.CachedSegmentId("vip") == "21");
        CHECK(server.Lines() ==
              std::vector<std::string>{"GET /api/admin/segments", "POST /api/admin/segments",
                                       "GET /api/admin/segments", "PUT /api/admin/segments/21"});
    }

    TEST_CASE("unleash refusals come back with the server's text and never the token") {
        const std::string echo = std::string(R"({"name":"BadDataError","message":"Request )") +
                                 R"(validation failed: your request body or params contain )" +
                                 R"(invalid data. Refer to the `details` list for more )" +
                                 R"(information.","details":[{"message":"token )" + kToken +
                                 R"( is odd"}]})";
        ScriptedServer server({{200, R"({"segments":[{"id":2,"name":"vip"}]})"},
                               {400, echo},
                               {400, "not json " + std::string(kToken)},
                               {200, "{\"segments\": 7}"}});
        {
            UnleashTarget target(Config(server.base_url()));
            HttpResult bad = target.Push(Request({"u1"}));
            CHECK(bad.status == 400);
            CHECK(
                bad.body ==
                R"({"name":"BadDataError","message":"Request validation failed: your request body )"
                R"(or params contain invalid data: token [redacted] is odd"})");
            HttpResult plain = target.Push(Request({"u1"}));
            CHECK(plain.status == 400);
            CHECK(plain.body == "not json [redacted]");
        }  // the scripted server serves one connection at a time
        // A list audsync cannot read creates nothing.
        UnleashTarget fresh(Config(server.base_url()));
        HttpResult unreadable = fresh.Push(Request({"u1"}));
        CHECK(unreadable.status == 0);
        CHECK(unreadable.transport_error.find("\"segments\" array") != std::string::npos);
        CHECK(server.Lines().size() == 4);
    }

    TEST_CASE("unleash checks: the token, and the server's segment values limit") {
        ScriptedServer server(
            {{200, R"({"version":"7.5.1","resourceLimits":{"segmentValues":1000}})"},
             {200, R"({"version":"7.5.1","resourceLimits":{"segmentValues":500}})"},
             {200, R"({"version":"5.0.0"})"},
             {401, R"({"name":"UnauthorizedError","message":"You must log in to use Unleash.",)"
                   R"("details":[{"message":"You must log in to use Unleash."}]})"}});
        config::Target c = Config(server.base_url());
        UnleashTarget target(c);
        auto ok = target.Check();
        CHECK(ok.ok);
        CHECK(ok.lines ==
              std::vector<std::string>{"API token: ok",
                                       "segment values limit: ok (Unleash allows 1,000, "
                                       "max_list_items is 1,000)"});
        auto low = target.Check();
        CHECK_FALSE(low.ok);
        CHECK(low.lines ==
              std::vector<std::string>{
                  "API token: ok",
                  "segment values limit: Unleash allows 500 values per segment "
                  "(resourceLimits.segmentValues) but max_list_items is 1,000; set "
                  "max_list_items to 500 so that longer lists are refused before they are sent"});
        auto old = target.Check();
        CHECK(old.ok);
        CHECK(old.lines.at(1) ==
              "segment values limit: not reported by Unleash; max_list_items is 1,000");
        auto refused = target.Check();
        CHECK_FALSE(refused.ok);
        CHECK(refused.lines == std::vector<std::string>{"API token: refused (HTTP 401)"});
        for (const auto& s : server.seen()) CHECK(s.path == "/api/admin/ui-config");

        UnleashTarget nobody(Config("http://127.0.0.1:1"));  // no server at all
        auto none = nobody.Check();
        CHECK_FALSE(none.ok);
        CHECK(none.lines.at(0).rfind("API token: not verified (no answer", 0) == 0);
        CHECK(none.lines.at(0).find(kToken) == std::string::npos);
    }
}
