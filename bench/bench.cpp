// audsync-bench: measures ingest, sync and replay against the ceilings of the same
// machine, on realistic Engage traffic. Run through scripts/bench.
//
//   audsync-bench all --audsync PATH --out FILE.json [--seconds N] [--replay-members N]
//                     [--applier-seconds N] [--burst-events N]
//                     [--growth-windows N] [--growth-window-seconds N]
//                     [--growth-drain-seconds N] [--growth-max-backlog-events N]
//                     [--growth-max-backlog-seconds N]
//                     [--overload-seconds N] [--overload-rate N]
//                     [--only ingest|replay|applier|burst|growth|overload[,...]]
//                     [--baseline-audsync PATH --baseline-bench PATH]
//   audsync-bench echo                (the HTTP transport with a handler that reads the body)
//
// Parts (all but `overload` by default; --only runs the listed ones): `ingest` (the
// ceilings, durable ingest, the baseline and sync latency), `replay`, `applier` (the inbox
// applier's sustained rate under a load faster than it), `burst` (a burst of
// --burst-events: how long after the last acknowledgement it is applied and pushed, and
// the disk it takes with raw_retention_hours 0), `growth` (consecutive windows of load as
// fast as it is taken over 1,000,000 users: what is acknowledged, refused and applied in
// each, the backlog, the files and RSS; then the drain and the WALs a minute later) and
// `overload` (a fixed offered rate for --overload-seconds: refused, applied and lost; only
// when named in --only, it takes 10 minutes by default). These read the server's /metrics
// with the admin token (the ingest part too, to wait for the server to drain); where a
// metric is missing (an audsync without the inbox) they say so in the label and measure
// what they can.
// Every figure is a figure: nothing here passes or fails.
//
// With the baseline flags (an audsync and an audsync-bench built from an older revision,
// e.g. the last one served by Pistache), the same run also measures the HTTP echo ceiling
// with the baseline bench's `echo` and durable ingest against the baseline `audsync serve`,
// and reports them beside the current ones ("before" / "after"; JSON keys `baseline_`).
#include <curl/curl.h>
#include <signal.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/config/config.hpp"
#include "audsync/http/transport.hpp"
#include "audsync/mapping/mapping.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/inbox.hpp"
#include "audsync/store/store.hpp"
#include "emulator.hpp"
#include "support/store_access.hpp"

namespace {

using namespace audsync;
using Clock = std::chrono::steady_clock;

constexpr const char* kWriteKey = "bench-write-key";
constexpr const char* kToken = "bench-token";
constexpr const char* kClientSideId = "bench-cs";
constexpr const char* kAdminToken = "bench-admin-token-0123";  // /metrics, the admin API

// --- realistic Engage traffic -----------------------------------------------------

// Fresh Engage membership events: identify and track over 50,000 users (or `users`) x 5
// audiences (one a journey step) in random order; emails and anonymous ids; enters and
// exits. Every
// messageId is unique (prefix + count) and every timestamp is the wall clock less up to
// 40 ms (local reordering), so an event is neither a duplicate nor, mostly, stale: it
// changes the membership it names, whatever ran before it on the same database. (Re-sent
// duplicates and old timestamps would let a store skip the work the bench should
// measure.)
class Generator {
  public:
    explicit Generator(uint64_t seed, std::string prefix, uint64_t users = 50000)
        : rng_(seed), prefix_(std::move(prefix)), users_(users) {}

    // One event; `unique_user` makes every key distinct (for latency tracing).
    std::string Event(bool unique_user = false, std::string* user_out = nullptr) {
        static const char* kAudiences[][2] = {
            {"aud_2g5VilffxpBYqelWk4K0yBzAuFl", "high_value_users"},
            {"aud_2g5VjkHHbqQ9cLmRDsn5Pq1ZMxA", "churn_risk"},
            {"aud_2g5VmB8Yd1uRqN7sLkXoPw3TeZc", "trial_converters"},
            {"aud_2g5VpQr5Ut2WxYz8AbCdEfGhIjK", "dormant_30d"},
            {"jou_2g5VsTuVw6XyZa9BcDeFgHiJkLm", "onboarding_step_2"}};
        ++count_;
        const auto& aud = kAudiences[rng_() % 5];
        bool journey = aud[0][0] == 'j';
        std::string user = unique_user ? prefix_ + "-u" + std::to_string(count_)
                                       : "user_" + std::to_string(rng_() % users_);
        if (user_out != nullptr) *user_out = user;
        bool enter = Uniform() < 0.7;
        bool identify = Uniform() < 0.5;
        int64_t ts = text::NowMs() - static_cast<int64_t>(rng_() % 40);  // local reordering
        std::string id = prefix_ + "-" + std::to_string(count_);
        std::string email = "\"" + user + "@example.com\"";
        std::string anon = "\"" + std::to_string(rng_()) + "-4f8a-9d2e-1f0c8b7a6e55\"";
        std::string e = "{\"type\":\"" + std::string(identify ? "identify" : "track") + "\"";
        e += ",\"messageId\":\"personas_" + id + "\"";
        e += ",\"userId\":\"" + user + "\",\"anonymousId\":" + anon;
        if (identify) {
            e += ",\"traits\":{\"email\":" + email + ",\"" + aud[1] +
                 "\":" + (enter ? "true" : "false") + "}";
        } else {
            e += std::string(",\"event\":\"") + (enter ? "Audience Entered" : "Audience Exited") +
                 "\"";
            e += ",\"properties\":{\"audience_key\":\"" + std::string(aud[1]) + "\",\"" + aud[1] +
                 "\":" + (enter ? "true" : "false") + "}";
        }
        e += ",\"context\":{\"library\":{\"name\":\"unknown\",\"version\":\"unknown\"},";
        if (!identify) e += "\"traits\":{\"email\":" + email + "},";
        e += "\"personas\":{\"computation_class\":\"" +
             std::string(journey ? "journey_step" : "audience") + "\",\"computation_id\":\"" +
             aud[0] + "\",\"computation_key\":\"" + aud[1] +
             "\",\"namespace\":\"spa_rHVbZsJXToWAwcmbgpfo36\",\"space_id\":\"spa_"
             "rHVbZsJXToWAwcmbgpfo36\"}}";
        e += ",\"integrations\":{\"All\":false,\"Webhooks\":true}";
        e += ",\"timestamp\":\"" + text::FormatIso8601(ts) + "\",\"receivedAt\":\"" +
             text::FormatIso8601(ts + 15000) + "\"}";
        return e;
    }

    // A Tracking API batch (batch <= 500 fits its 500 KB) or a webhook array.
    std::string Body(int events, bool tracking, std::vector<std::string>* users = nullptr,
                     bool unique_users = false) {
        std::string body = tracking ? "{\"batch\":[" : "[";
        for (int i = 0; i < events; ++i) {
            std::string user;
            if (i > 0) body += ',';
            body += Event(unique_users, &user);
            if (users != nullptr) users->push_back(user);
        }
        body += tracking ? std::string("],\"writeKey\":\"") + kWriteKey + "\",\"sentAt\":\"" +
                               text::FormatIso8601(text::NowMs()) + "\"}"
                         : "]";
        return body;
    }

  private:
    double Uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
    std::mt19937_64 rng_;
    std::string prefix_;
    uint64_t users_;
    uint64_t count_ = 0;
};

// --- helpers ---------------------------------------------------------------------

double Percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

struct Child {
    pid_t pid = -1;  // -1 once waited for
    std::string out_path;
    std::string err_path;  // empty: stderr went to /dev/null
};

std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// `keep_stderr` keeps the child's stderr in a file, to say why it did not start.
Child Spawn(const std::vector<std::string>& argv_in, bool keep_stderr = false) {
    Child c;
    std::string base =
        "/tmp/audsync-bench-" + std::to_string(getpid()) + "-" + std::to_string(rand());
    c.out_path = base + ".out";
    if (keep_stderr) c.err_path = base + ".err";
    c.pid = fork();
    if (c.pid == 0) {
        FILE* f = std::freopen(c.out_path.c_str(), "w", stdout);
        (void)f;
        FILE* e = std::freopen(keep_stderr ? c.err_path.c_str() : "/dev/null", "w", stderr);
        (void)e;
        std::vector<std::string> copy = argv_in;
        std::vector<char*> argv;
        for (auto& a : copy) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return c;
}

void RemoveOutput(const Child& c) {
    unlink(c.out_path.c_str());
    if (!c.err_path.empty()) unlink(c.err_path.c_str());
}

// The port the child prints ("http://host:port"). Throws when it exits first (with the
// last line of its stderr, when kept) or stays silent for 30 s.
uint16_t WaitPort(Child& c) {
    for (int i = 0; i < 3000; ++i) {
        std::string s = ReadFile(c.out_path);
        size_t at = s.find("http://");
        if (at != std::string::npos) {
            size_t colon = s.find(':', at + 7);
            return static_cast<uint16_t>(std::stoi(s.substr(colon + 1)));
        }
        int status = 0;
        if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
            c.pid = -1;
            std::string why = c.err_path.empty() ? "" : ReadFile(c.err_path);
            while (!why.empty() && why.back() == '\n') why.pop_back();
            why = why.substr(why.rfind('\n') + 1);  // the error comes last, after warnings
            RemoveOutput(c);
            throw std::runtime_error("child exited before reporting its port" +
                                     (why.empty() ? "" : ": " + why));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("child did not report its port");
}

// The peak resident memory of a running process (VmHWM, reset by exec), in MB.
// ru_maxrss of a waited child is not used: it starts from the forking parent's peak.
double PeakRssMb(pid_t pid) {
    if (pid <= 0) return 0;
    // Between fork and exec the child is still a copy of this process: wait for exec.
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name != "audsync") return 0;
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
    }
    return 0;
}

// Stops a child with SIGTERM, or SIGKILL if it has not exited within 60 s (then
// `*graceful` is false); returns its peak RSS in MB.
double StopChild(Child& c, bool* graceful = nullptr) {
    if (graceful != nullptr) *graceful = c.pid > 0;
    if (c.pid <= 0) return 0;
    double peak = PeakRssMb(c.pid);
    kill(c.pid, SIGTERM);
    int status = 0;
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (waitpid(c.pid, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
            std::cerr << "child " << c.pid << " did not stop within 60 s of SIGTERM: killed\n";
            kill(c.pid, SIGKILL);
            waitpid(c.pid, &status, 0);
            if (graceful != nullptr) *graceful = false;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling period
    }
    c.pid = -1;
    RemoveOutput(c);
    return peak;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

size_t Append(char* data, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
}

// What an ingest answer says it did with the events, in either shape: {"stored":N,...}
// (the inbox) or {"accepted":N,"duplicates":N,"stale":N,...} (before it).
struct AnswerCounts {
    uint64_t answers = 0;  // answers that parsed as one of the shapes
    uint64_t stored = 0;   // stored, or accepted + duplicates + stale
    uint64_t not_applicable = 0;
    uint64_t rejected = 0;
};

void CountAnswer(const std::string& body, AnswerCounts& counts) {
    rapidjson::Document doc;
    if (!json::Parse(body, doc, 8).ok() || !doc.IsObject()) return;
    auto number = [&](const char* name) -> std::optional<uint64_t> {
        auto it = doc.FindMember(name);
        if (it == doc.MemberEnd() || !it->value.IsUint64()) return std::nullopt;
        return it->value.GetUint64();
    };
    if (auto stored = number("stored")) {
        counts.stored += *stored;
    } else if (auto accepted = number("accepted")) {
        counts.stored += *accepted + number("duplicates").value_or(0) + number("stale").value_or(0);
    } else {
        return;
    }
    ++counts.answers;
    counts.not_applicable += number("not_applicable").value_or(0);
    auto rejected = doc.FindMember("rejected");
    if (rejected != doc.MemberEnd() && rejected->value.IsArray()) {
        counts.rejected += rejected->value.Size();
    }
}

struct LoadResult {
    double events_per_s = 0;
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
    uint64_t requests = 0, errors = 0;
    uint64_t events = 0;           // acknowledged (in requests answered 200)
    double last_ack_seconds = 0;   // from the start to the last 200 answer
    Clock::time_point last_ack{};  // when it came
    AnswerCounts answers;
};

// Closed-loop load: `connections` keep-alive clients each send bodies for `seconds`, or
// (with `max_events`) until that many events are sent, whichever comes first. A failed
// request is counted, not retried.
LoadResult Load(const std::string& url, int connections, int batch, bool tracking, double seconds,
                const std::string& prefix, uint64_t max_events = 0) {
    std::atomic<uint64_t> events{0}, requests{0}, errors{0}, claimed{0};
    const uint64_t max_requests =
        max_events == 0 ? 0 : (max_events + static_cast<uint64_t>(batch) - 1) / batch;
    std::mutex mu;
    std::vector<double> latencies;
    Clock::time_point last_ack{};
    AnswerCounts answers;
    auto start = Clock::now();
    auto end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<std::thread> threads;
    for (int t = 0; t < connections; ++t) {
        threads.emplace_back([&, t] {
            Generator gen(static_cast<uint64_t>(t) * 7919 + 1, prefix + std::to_string(t));
            CURL* c = curl_easy_init();
            curl_slist* headers = nullptr;
            headers = curl_slist_append(headers, "Content-Type: application/json");
            headers = curl_slist_append(headers, "Expect:");
            std::string auth = std::string("Authorization: Basic ") +
                               text::Base64Encode(std::string(kWriteKey) + ":");
            headers = curl_slist_append(headers, auth.c_str());
            std::string answer;
            curl_easy_setopt(c, CURLOPT_URL, url.c_str());
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
            std::vector<double> mine;
            AnswerCounts my_answers;
            Clock::time_point my_last_ack{};
            std::string body = gen.Body(batch, tracking);
            while (Clock::now() < end && (max_requests == 0 || claimed++ < max_requests)) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                                 static_cast<curl_off_t>(body.size()));
                answer.clear();
                auto t0 = Clock::now();
                CURLcode rc = curl_easy_perform(c);
                auto t1 = Clock::now();
                double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
                long status = 0;
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                if (rc != CURLE_OK || status != 200) {
                    ++errors;
                } else {
                    events += static_cast<uint64_t>(batch);
                    mine.push_back(ms);
                    my_last_ack = t1;
                    CountAnswer(answer, my_answers);
                }
                ++requests;
                body = gen.Body(batch, tracking);  // next request's body, outside the timing
            }
            curl_slist_free_all(headers);
            curl_easy_cleanup(c);
            std::lock_guard<std::mutex> lock(mu);
            latencies.insert(latencies.end(), mine.begin(), mine.end());
            last_ack = std::max(last_ack, my_last_ack);
            answers.answers += my_answers.answers;
            answers.stored += my_answers.stored;
            answers.not_applicable += my_answers.not_applicable;
            answers.rejected += my_answers.rejected;
        });
    }
    for (auto& t : threads) t.join();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    LoadResult r;
    r.events_per_s = static_cast<double>(events) / elapsed;
    r.p50_ms = Percentile(latencies, 0.50);
    r.p99_ms = Percentile(latencies, 0.99);
    r.max_ms = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
    r.requests = requests;
    r.errors = errors;
    r.events = events;
    r.last_ack = last_ack;
    r.last_ack_seconds = events > 0 ? std::chrono::duration<double>(last_ack - start).count() : 0;
    r.answers = answers;
    return r;
}

// --- ceilings ----------------------------------------------------------------------

int Echo() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    audsync::http::TransportOptions o;
    o.handler_threads = 8;
    audsync::http::Transport endpoint(
        o, [](const audsync::http::RequestHead&) -> size_t { return 8 << 20; },
        [](const audsync::http::Request& req) {
            volatile size_t n = req.body.size();
            (void)n;
            audsync::http::Response r;
            r.body = "{}";
            return r;
        });
    endpoint.Start();
    std::cout << "echo listening on http://127.0.0.1:" << endpoint.port() << " " << std::endl;
    int sig = 0;
    sigwait(&signals, &sig);
    endpoint.Stop();
    return 0;
}

double ParseCeiling(int batch, bool tracking, double seconds) {
    Generator gen(99, "parse");
    std::vector<std::string> bodies;
    for (int i = 0; i < 50; ++i) bodies.push_back(gen.Body(batch, tracking));
    config::Limits limits;
    uint64_t events = 0;
    auto start = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
        for (const auto& b : bodies) {
            rapidjson::Document doc;
            if (json::Parse(b, doc, limits.max_json_depth).ok())
                events += static_cast<uint64_t>(batch);
        }
    }
    return static_cast<double>(events) /
           std::chrono::duration<double>(Clock::now() - start).count();
}

// Fresh rows resolved as ingest resolves them (50,000 users x 5 audiences, random).
std::vector<store::InboxEntry> ResolvedRows(int count, const char* seed_name) {
    Generator gen(7, seed_name);
    config::Limits limits;
    mapping::Rules rules;
    std::vector<store::InboxEntry> rows;
    while (static_cast<int>(rows.size()) < count) {
        auto parsed = segment::ParseWebhookBody(gen.Body(100, false), limits);
        for (auto& item : parsed.value().items) {
            auto o = mapping::Resolve(*item.event, rules, text::NowMs());
            auto* c = std::get_if<mapping::MembershipChange>(&o);
            if (c == nullptr) continue;
            store::InboxEntry e;
            e.destination = "bench";
            e.message_id = item.event->message_id;
            e.received_ms = text::NowMs();
            e.audience_id = c->audience_id;
            e.audience_key = c->audience_key;
            e.context_kind = c->context_kind;
            e.context_key = c->context_key;
            e.included = c->included;
            e.event_ms = c->event_time_ms;
            e.raw = item.event->raw;
            rows.push_back(std::move(e));
        }
    }
    return rows;
}

// What an acknowledgement costs: appends of fresh events to an inbox file, in
// transactions of `batch`, with the shipped pragmas.
double StorageCeiling(int batch, double seconds, const std::string& dir) {
    std::string path = dir + "/storage-ceiling.db-inbox";
    std::remove(path.c_str());
    store::Database db(path, true);
    store::PrepareInbox(db);
    store::InboxStore inbox(db);
    auto rows = ResolvedRows(4000, "storage");
    uint64_t events = 0;
    auto start = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
        for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch)) {
            store::Transaction tx(db);
            for (size_t j = i; j < std::min(rows.size(), i + static_cast<size_t>(batch)); ++j) {
                inbox.Append(rows[j]);
                ++events;
            }
            tx.Commit();
        }
    }
    double rate =
        static_cast<double>(events) / std::chrono::duration<double>(Clock::now() - start).count();
    std::remove(path.c_str());
    return rate;
}

// What the applier can do in this process: folds of `batch` fresh events (unique
// messageIds over 50,000 users x 5 audiences), one transaction each.
double FoldCeiling(int batch, double seconds, const std::string& dir) {
    std::string path = dir + "/fold-ceiling.db";
    std::remove(path.c_str());
    double rate = 0;
    {
        store::Database db(path, true);
        (void)store::Migrate(db, store::EmbeddedMigrations());
        store::WriteStore w(db);
        w.EnsureTargets("bench", store::ImplicitTargets(), 0);
        auto rows = ResolvedRows(batch * 10, "fold");
        uint64_t events = 0;
        int64_t seq = 0;
        int round = 0;
        auto start = Clock::now();
        while (std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
            for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch)) {
                std::vector<store::InboxEntry> part(
                    rows.begin() + static_cast<long>(i),
                    rows.begin() + static_cast<long>(std::min(rows.size(), i + batch)));
                for (auto& e : part) {
                    e.message_id += "#" + std::to_string(round);
                    e.seq = ++seq;
                }
                store::Transaction tx(db);
                w.Fold(part);
                tx.Commit();
                events += part.size();
            }
            ++round;
        }
        rate = static_cast<double>(events) /
               std::chrono::duration<double>(Clock::now() - start).count();
    }
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    return rate;
}

// The fold at a large workspace's scale (`--only fold`): `users` x 5 audiences already
// applied and acknowledged, then rounds of fresh events (70 % included) at random members,
// folded four ways in turn: in the inbox's order, `batch` a transaction; `chunks` such
// batches read together, sorted by segment and key, each key range its own transaction of
// `batch` events; one plan of `chunks` batches as the applier folds it (checks in hash
// order, then members in key order, `batch` a part); and one plan of `plan_chunks`
// batches. All write transactions of the same size (what the WAL bound allows) and fold
// `plan_chunks` batches a round. Figures only.
struct FoldScaleRun {
    int64_t users = 0, memberships = 0;
    double populate_s = 0;
    double inbox_order_per_s = 0, inbox_order_pages = 0;  // pages per event
    double key_chunks_per_s = 0, key_chunks_pages = 0;
    double parts_per_s = 0, parts_pages = 0;        // the applier's way: WriteStore::PlanFold
    double big_plan_per_s = 0, big_plan_pages = 0;  // the same, one plan of plan_chunks
    int plan_chunks = 0;
    int64_t events_each = 0;
};

FoldScaleRun MeasureFoldAtScale(int64_t users, int batch, int chunks, int plan_chunks, int rounds,
                                const std::string& dir) {
    FoldScaleRun run;
    run.users = users;
    std::string path = dir + "/fold-scale.db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    {
        store::Database db(path, true);
        (void)store::Migrate(db, store::EmbeddedMigrations());
        store::WriteStore w(db);
        w.EnsureTargets("bench", store::ImplicitTargets(), 0);
        int64_t seq = 0;
        auto event = [&](int64_t user, int audience, bool included, const std::string& tag) {
            store::InboxEntry e;
            e.destination = "bench";
            e.message_id = tag + "-" + std::to_string(++seq);
            e.received_ms = text::NowMs();
            e.audience_id = "aud" + std::to_string(audience);
            e.audience_key = "audience_" + std::to_string(audience);
            e.context_kind = "user";
            // Scattered over the key space, as real user ids are.
            e.context_key =
                "user-" + std::to_string(user * 2654435761LL % 100000007LL) + "@example.com";
            e.included = included;
            e.event_ms = e.received_ms;
            e.seq = seq;
            return e;
        };
        auto start = Clock::now();
        const int64_t step = 50000;
        for (int64_t u0 = 0; u0 < users; u0 += step) {
            std::vector<store::InboxEntry> rows;
            for (int a = 0; a < 5; ++a) {
                for (int64_t u = u0; u < std::min(users, u0 + step); ++u) {
                    rows.push_back(event(u, a, true, "populate"));
                }
            }
            store::Transaction tx(db);
            w.Fold(rows);
            tx.Commit();
            db.Checkpoint(store::Database::CheckpointMode::kTruncate);
        }
        {
            store::Transaction tx(db);
            store::TestAccess::Exec(db,
                                    "UPDATE deliveries SET pending = 0, acked = 1, "
                                    "acked_version = 1");
            tx.Commit();
        }
        db.Checkpoint(store::Database::CheckpointMode::kTruncate);
        run.populate_s = std::chrono::duration<double>(Clock::now() - start).count();
        run.memberships = store::TestAccess::Int(db, "SELECT count(*) FROM memberships");
        std::mt19937_64 rng(24);
        std::uniform_int_distribution<int64_t> pick_user(0, users - 1);
        std::uniform_int_distribution<int> pick_audience(0, 4);
        std::bernoulli_distribution pick_included(0.7);
        double seconds[4] = {0, 0, 0, 0};
        int64_t pages[4] = {0, 0, 0, 0};
        // Every way folds the same events per round: `plan_chunks` batches, in groups of
        // `chunks` batches for the first three ways and as one plan for the fourth.
        const int group_of[4] = {chunks, chunks, chunks, plan_chunks};
        auto plan_fold = [&](std::vector<store::InboxEntry>& rows) {
            // As the applier folds a large batch: one plan over all the events in the
            // inbox's order, its window checks in parts of `batch` in hash order, then
            // its members in parts of `batch` in key order.
            store::FoldPlan plan = store::WriteStore::PlanFold(rows);
            while (plan.checked < plan.checks.size()) {
                store::Transaction tx(db);
                w.Dedupe(plan, plan.checked + static_cast<size_t>(batch));
                tx.Commit();
            }
            while (plan.folded < plan.order.size()) {
                store::Transaction tx(db);
                w.FoldMembers(plan, plan.folded + static_cast<size_t>(batch));
                tx.Commit();
            }
        };
        (void)w.TakePagesWritten();
        // Alternating, so that the database's growth falls on every way alike.
        for (int r = 0; r < rounds; ++r) {
            for (int way = 0; way < 4; ++way) {
                const int64_t group = int64_t{batch} * group_of[way];
                for (int64_t g = 0; g < int64_t{plan_chunks} / group_of[way]; ++g) {
                    std::vector<store::InboxEntry> all;
                    for (int64_t i = 0; i < group; ++i) {
                        all.push_back(event(pick_user(rng), pick_audience(rng), pick_included(rng),
                                            "fold-" + std::to_string(r)));
                    }
                    if (way == 1) {
                        std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
                            return std::tie(a.audience_id, a.context_key) <
                                   std::tie(b.audience_id, b.context_key);
                        });
                    }
                    auto t0 = Clock::now();
                    if (way >= 2) plan_fold(all);
                    for (int c = 0; way < 2 && c < chunks; ++c) {
                        std::vector<store::InboxEntry> part(all.begin() + int64_t{c} * batch,
                                                            all.begin() + int64_t{c + 1} * batch);
                        store::Transaction tx(db);
                        w.Fold(part);
                        tx.Commit();
                    }
                    seconds[way] += std::chrono::duration<double>(Clock::now() - t0).count();
                    pages[way] += w.TakePagesWritten();
                    db.Checkpoint(store::Database::CheckpointMode::kTruncate);
                }
            }
        }
        run.events_each = int64_t{rounds} * batch * plan_chunks;
        const double n = static_cast<double>(run.events_each);
        run.inbox_order_per_s = n / seconds[0];
        run.inbox_order_pages = static_cast<double>(pages[0]) / n;
        run.key_chunks_per_s = n / seconds[1];
        run.key_chunks_pages = static_cast<double>(pages[1]) / n;
        run.parts_per_s = n / seconds[2];
        run.parts_pages = static_cast<double>(pages[2]) / n;
        run.big_plan_per_s = n / seconds[3];
        run.big_plan_pages = static_cast<double>(pages[3]) / n;
        run.plan_chunks = plan_chunks;
    }
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    return run;
}

// --- the audsync runs ----------------------------------------------------------------

// Accepted by the Pistache revision too (it refuses unknown fields; the admin token is
// long enough for the current one).
// `top_level` (e.g. `"raw_retention_hours":0,`) is put first in the object, as is.
std::string WriteConfig(const std::string& dir, const std::string& db,
                        const std::string& emulator_url, int max_batch = 1000,
                        const std::string& name = "bench-config.json",
                        const std::string& top_level = "") {
    std::string path = dir + "/" + name;
    std::ofstream(path) << "{" << top_level << R"("listen":"127.0.0.1:0","database":")" << db
                        << R"(","admin_token":")" << kAdminToken
                        << R"(","destinations":[{"id":"bench","service_token":")" << kToken
                        << R"(","client_side_id":")" << kClientSideId << R"(","api_base":")"
                        << emulator_url << R"(","clientsdk_base":")" << emulator_url
                        << R"(","write_keys":[")" << kWriteKey << R"("],"max_batch":)" << max_batch
                        << "}]}";
    // It holds secrets: readable by others, audsync warns on stderr.
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return path;
}

std::string Fmt(double v, int decimals = 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

using Runs = std::map<std::pair<int, int>, LoadResult>;  // (batch, connections) -> result

// Durable ingest against a running `audsync serve`: batches of 100 as Tracking API bodies
// to /v1/batch, of 1,000 as webhook arrays, at 1, 8 and 32 connections.
// `server`: the audsync process under load; its peak RSS so far is printed after each
// cell, so that a peak can be traced to its load.
Runs IngestRuns(uint16_t port, double seconds, const std::string& prefix, pid_t server) {
    Runs runs;
    for (int batch : {100, 1000}) {
        std::string url = "http://127.0.0.1:" + std::to_string(port) +
                          (batch == 100 ? "/v1/batch" : "/v1/destinations/bench/events");
        for (int conns : {1, 8, 32}) {
            runs[{batch, conns}] =
                Load(url, conns, batch, batch == 100, seconds,
                     prefix + std::to_string(batch) + "-" + std::to_string(conns) + "-");
            std::cerr << "  batch " << batch << ", " << conns << " conn: server peak RSS so far "
                      << Fmt(PeakRssMb(server), 1) << " MB\n";
        }
    }
    return runs;
}

// --- the server's /metrics -----------------------------------------------------------

// GET /metrics of a running audsync with the admin token (Bearer), on one keep-alive
// connection. Not thread-safe: one per thread.
class MetricsClient {
  public:
    explicit MetricsClient(uint16_t port)
        : url_("http://127.0.0.1:" + std::to_string(port) + "/metrics"), curl_(curl_easy_init()) {
        auth_ = curl_slist_append(nullptr,
                                  (std::string("Authorization: Bearer ") + kAdminToken).c_str());
        curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
        curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, auth_);
        curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, Append);
        curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body_);
        curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 5000L);
    }
    ~MetricsClient() {
        curl_slist_free_all(auth_);
        curl_easy_cleanup(curl_);
    }
    MetricsClient(const MetricsClient&) = delete;
    MetricsClient& operator=(const MetricsClient&) = delete;

    // The Prometheus text, or nullopt unless the server answers 200 within 5 s.
    std::optional<std::string> Fetch() {
        body_.clear();
        if (curl_easy_perform(curl_) != CURLE_OK) return std::nullopt;
        long status = 0;
        curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
        if (status != 200) return std::nullopt;
        return body_;
    }

  private:
    std::string url_;
    CURL* curl_;
    curl_slist* auth_ = nullptr;
    std::string body_;
};

// The sum of the samples of metric `name`, with or without labels, in Prometheus text;
// nullopt when there is none.
std::optional<double> MetricValue(const std::string& text, const std::string& name) {
    std::optional<double> sum;
    for (size_t at = 0; at < text.size();) {
        size_t eol = std::min(text.find('\n', at), text.size());
        if (text.compare(at, name.size(), name) == 0 && at + name.size() < eol) {
            size_t value = at + name.size();
            if (text[value] == '{') value = std::min(text.find('}', value), eol - 1) + 1;
            if (text[value] == ' ') {
                char* parsed_end = nullptr;
                double v = std::strtod(text.c_str() + value, &parsed_end);
                if (parsed_end != text.c_str() + value) sum = sum.value_or(0) + v;
            }
        }
        at = eol + 1;
    }
    return sum;
}

constexpr const char* kAppliedMetric = "audsync_inbox_applied_total";
constexpr const char* kBacklogMetric = "audsync_inbox_backlog_events";
constexpr const char* kBacklogAgeMetric = "audsync_inbox_backlog_age_seconds";
constexpr const char* kPendingMetric = "audsync_pending_members";

// One reading of the inbox and sync gauges; a metric the server does not expose stays
// nullopt.
struct InboxSample {
    double t = 0;           // seconds since the origin, when the answer came
    bool answered = false;  // /metrics answered 200
    std::optional<double> applied, backlog, backlog_age, pending;
};

InboxSample ReadInbox(MetricsClient& metrics, Clock::time_point origin) {
    InboxSample s;
    auto text = metrics.Fetch();
    s.t = std::chrono::duration<double>(Clock::now() - origin).count();
    if (!text) return s;
    s.answered = true;
    s.applied = MetricValue(*text, kAppliedMetric);
    s.backlog = MetricValue(*text, kBacklogMetric);
    s.backlog_age = MetricValue(*text, kBacklogAgeMetric);
    s.pending = MetricValue(*text, kPendingMetric);
    return s;
}

// Waits until the server has applied everything it acknowledged (backlog 0; a server
// without the inbox metric applies before it acknowledges) and its targets acknowledged
// every change (pending 0), polling every 100 ms. Returns the time it was seen, or nullopt
// at `deadline`, or at once when /metrics has no pending gauge (`*why` says which).
std::optional<Clock::time_point> WaitSettled(MetricsClient& metrics, Clock::time_point deadline,
                                             bool* backlog_metric, std::string* why) {
    *backlog_metric = false;
    for (auto tick = Clock::now();; tick += std::chrono::milliseconds(100)) {
        InboxSample s = ReadInbox(metrics, tick);
        if (s.answered) {
            *backlog_metric = *backlog_metric || s.backlog.has_value();
            if (!s.pending) {
                *why = std::string("no ") + kPendingMetric + " in /metrics";
                return std::nullopt;
            }
            if (s.backlog.value_or(0) == 0 && *s.pending == 0) return Clock::now();
        }
        if (Clock::now() >= deadline) {
            *why = s.answered ? "not settled by the deadline" : "/metrics did not answer";
            return std::nullopt;
        }
        std::this_thread::sleep_until(tick + std::chrono::milliseconds(100));  // polling period
    }
}

// The applier's sustained rate, from samples taken once a second during and after a load.
struct ApplierRate {
    double events_per_s = 0;
    double busy_seconds = 0;  // the intervals counted (backlog_window)
    std::string method;
    // "backlog_window": applied / time over the intervals whose both ends show a backlog
    //     (the applier had work throughout);
    // "kept_up": no such interval, the load was not faster than the applier: applied /
    //     time over all samples, a lower bound;
    // "no_metric": no audsync_inbox_applied_total: acknowledged events / load time.
};

ApplierRate AppliedRate(const std::vector<InboxSample>& samples, uint64_t acknowledged,
                        double load_seconds) {
    ApplierRate r;
    std::vector<const InboxSample*> read;
    for (const auto& s : samples) {
        if (s.applied) read.push_back(&s);
    }
    if (read.size() < 2) {
        r.method = "no_metric";
        r.events_per_s = load_seconds > 0 ? static_cast<double>(acknowledged) / load_seconds : 0;
        return r;
    }
    double applied = 0;
    for (size_t i = 0; i + 1 < read.size(); ++i) {
        if (read[i]->backlog.value_or(0) > 0 && read[i + 1]->backlog.value_or(0) > 0) {
            applied += *read[i + 1]->applied - *read[i]->applied;
            r.busy_seconds += read[i + 1]->t - read[i]->t;
        }
    }
    if (r.busy_seconds > 0) {
        r.method = "backlog_window";
        r.events_per_s = applied / r.busy_seconds;
        return r;
    }
    r.method = "kept_up";
    double span = read.back()->t - read.front()->t;
    r.events_per_s = span > 0 ? (*read.back()->applied - *read.front()->applied) / span : 0;
    return r;
}

std::string Thousands(uint64_t n) {
    std::string digits = std::to_string(n), out;
    for (size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

// --- the applier and the burst ----------------------------------------------------------

struct ApplierRun {
    LoadResult load;
    ApplierRate rate;
    size_t samples = 0;
    double peak_backlog = 0, peak_backlog_age = 0;
    bool backlog_metric = false;  // /metrics had audsync_inbox_backlog_events
    double backlog_at_load_end = 0;
    double drain_seconds = -1;  // load end to a backlog of 0, to the second; -1: not seen
    double rss_mb = 0;
};

// The applier under a load faster than it (fresh Engage batches of 100 at 8 connections
// for `seconds`), the destination syncing to an emulator as in production. /metrics is
// sampled once a second during the load, and after it until the backlog is 0 (at most
// 60 s more).
ApplierRun MeasureApplier(const std::string& audsync, const std::string& dir,
                          emulator::Emulator::Options eo, double seconds) {
    ApplierRun run;
    eo.on_apply = nullptr;
    emulator::Emulator emu(eo);
    emu.Start();
    std::string cfg =
        WriteConfig(dir, dir + "/applier.db", emu.base_url(), 1000, "applier-config.json");
    Child server = Spawn({audsync, "serve", "--config", cfg}, true);
    uint16_t port = WaitPort(server);

    std::mutex mu;
    std::vector<InboxSample> samples;  // guarded by mu
    std::atomic<bool> stop{false};
    const auto origin = Clock::now();
    std::thread sampler([&] {
        MetricsClient metrics(port);
        for (auto tick = origin; !stop; tick += std::chrono::seconds(1)) {
            std::this_thread::sleep_until(tick);  // sampling period
            InboxSample s = ReadInbox(metrics, origin);
            std::lock_guard<std::mutex> lock(mu);
            samples.push_back(s);
        }
    });
    run.load = Load("http://127.0.0.1:" + std::to_string(port) + "/v1/batch", 8, 100, true, seconds,
                    "applier-");
    const double load_end = std::chrono::duration<double>(Clock::now() - origin).count();
    const auto drain_deadline = Clock::now() + std::chrono::seconds(60);
    bool end_read = false;
    while (Clock::now() < drain_deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling period
        std::lock_guard<std::mutex> lock(mu);
        if (samples.empty()) continue;
        const InboxSample& last = samples.back();
        if (last.t <= load_end || !last.answered) continue;
        if (!end_read) {
            run.backlog_at_load_end = last.backlog.value_or(0);
            end_read = true;
        }
        if (last.backlog.value_or(0) == 0) {
            if (last.backlog) run.drain_seconds = last.t - load_end;
            break;
        }
    }
    stop = true;
    sampler.join();
    run.rss_mb = StopChild(server);
    emu.Stop();
    for (const auto& s : samples) {
        run.peak_backlog = std::max(run.peak_backlog, s.backlog.value_or(0));
        run.peak_backlog_age = std::max(run.peak_backlog_age, s.backlog_age.value_or(0));
        run.backlog_metric = run.backlog_metric || s.backlog.has_value();
    }
    run.samples = samples.size();
    run.rate = AppliedRate(samples, run.load.events, run.load.last_ack_seconds);
    return run;
}

// The burst is sent for at most this long (a slow server gets a smaller burst, said so).
constexpr double kBurstSendSeconds = 120;

struct BurstRun {
    uint64_t events = 0;  // asked for
    LoadResult load;
    bool retention_zero = false;    // the server took raw_retention_hours 0
    std::string retention_refused;  // else why
    bool settled = false;
    double settle_seconds = -1;   // last acknowledgement to backlog 0 and pending 0
    bool backlog_metric = false;  // /metrics had audsync_inbox_backlog_events
    std::string not_settled;      // why not
    double rss_mb = 0;
    bool graceful = false;
    // Bytes of each file after the server stopped; nullopt: no such file.
    std::vector<std::pair<std::string, std::optional<uintmax_t>>> files;
    uintmax_t disk_bytes = 0;
};

// A burst of `events` fresh events as fast as they are taken (batches of 100, 8
// connections; for kBurstSendSeconds at most) to a server with raw_retention_hours 0
// whose destination syncs to an emulator; then how long after the last acknowledgement
// everything is applied and pushed (deadline 300 s), and the files left after a graceful
// stop.
BurstRun MeasureBurst(const std::string& audsync, const std::string& dir,
                      emulator::Emulator::Options eo, uint64_t events) {
    BurstRun run;
    run.events = events;
    eo.on_apply = nullptr;
    emulator::Emulator emu(eo);
    emu.Start();
    const std::string db = dir + "/burst.db";
    const std::vector<std::string> suffixes = {"", "-wal", "-inbox", "-inbox-wal"};
    auto remove_db = [&] {
        for (const char* extra : {"", "-wal", "-shm", "-inbox", "-inbox-wal", "-inbox-shm"}) {
            std::filesystem::remove(db + extra);
        }
    };
    Child server;
    uint16_t port = 0;
    try {
        std::string cfg = WriteConfig(dir, db, emu.base_url(), 1000, "burst-config.json",
                                      R"("raw_retention_hours":0,)");
        server = Spawn({audsync, "serve", "--config", cfg}, true);
        port = WaitPort(server);
        run.retention_zero = true;
    } catch (const std::exception& e) {
        // An audsync before the inbox refuses the key: measure it with its own retention.
        run.retention_refused = e.what();
        std::cerr << "raw_retention_hours 0 refused (" << e.what()
                  << "); the burst runs without it\n";
        StopChild(server);
        remove_db();
        std::string cfg = WriteConfig(dir, db, emu.base_url(), 1000, "burst-config.json");
        server = Spawn({audsync, "serve", "--config", cfg}, true);
        port = WaitPort(server);
    }
    run.load = Load("http://127.0.0.1:" + std::to_string(port) + "/v1/batch", 8, 100, true,
                    kBurstSendSeconds, "burst-", events);
    if (run.load.events > 0) {
        MetricsClient metrics(port);
        auto settled = WaitSettled(metrics, run.load.last_ack + std::chrono::seconds(300),
                                   &run.backlog_metric, &run.not_settled);
        if (settled) {
            run.settled = true;
            run.settle_seconds =
                std::chrono::duration<double>(*settled - run.load.last_ack).count();
        }
    } else {
        run.not_settled = "nothing was acknowledged";
    }
    run.rss_mb = StopChild(server, &run.graceful);
    emu.Stop();
    for (const auto& suffix : suffixes) {
        std::error_code ec;
        uintmax_t size = std::filesystem::file_size(db + suffix, ec);
        run.files.emplace_back(suffix, ec ? std::nullopt : std::optional<uintmax_t>(size));
        if (!ec) run.disk_bytes += size;
    }
    remove_db();
    return run;
}

// --- growth and overload ------------------------------------------------------------------

// The user pool of the growth and overload parts (x 5 audiences).
constexpr uint64_t kLargeUserPool = 1000000;
// After the growth part's drain, the WALs are measured again this long after.
constexpr double kGrowthAfterSeconds = 60;

// A database's files, in this order, and their names in the JSON (as in /metrics'
// audsync_storage_bytes{file=...}).
constexpr std::array<const char*, 6> kDbSuffixes = {"",       "-wal",       "-shm",
                                                    "-inbox", "-inbox-wal", "-inbox-shm"};
constexpr std::array<const char*, 6> kDbFileNames = {"database", "database-wal", "database-shm",
                                                     "inbox",    "inbox-wal",    "inbox-shm"};
using FileSizes = std::array<uintmax_t, 6>;  // bytes, kDbSuffixes' order; missing: 0

FileSizes StatFiles(const std::string& db) {
    FileSizes sizes{};
    for (size_t i = 0; i < kDbSuffixes.size(); ++i) {
        std::error_code ec;
        uintmax_t size = std::filesystem::file_size(db + kDbSuffixes[i], ec);
        sizes[i] = ec ? 0 : size;
    }
    return sizes;
}

void RemoveDatabase(const std::string& db) {
    for (const char* suffix : kDbSuffixes) {
        std::error_code ec;
        std::filesystem::remove(db + suffix, ec);
    }
}

// A field of /proc/<pid>/status given in kB ("VmRSS:", "VmHWM:"), in MB; 0 when unreadable.
double ProcStatusMb(pid_t pid, const char* field) {
    if (pid <= 0) return 0;
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    const size_t n = std::strlen(field);
    for (std::string line; std::getline(in, line);) {
        if (line.compare(0, n, field) == 0) return std::atof(line.c_str() + n) / 1024.0;
    }
    return 0;
}

// A curl header callback: sets the bool at `flag` when the answer has a Retry-After header.
size_t SeeRetryAfter(char* data, size_t size, size_t n, void* flag) {
    static const char kName[] = "retry-after:";
    const size_t length = size * n;
    if (length >= sizeof kName - 1 && strncasecmp(data, kName, sizeof kName - 1) == 0) {
        *static_cast<bool*>(flag) = true;
    }
    return length;
}

// What a BackgroundLoad has done since it started.
struct LoadCounts {
    uint64_t requests = 0;      // sent, answered or not
    uint64_t events_sent = 0;   // in every request sent: the offered load
    uint64_t acknowledged = 0;  // events in the requests answered 200
    uint64_t acknowledged_requests = 0;
    uint64_t stored = 0;               // what those answers said they stored (CountAnswer)
    uint64_t refused = 0;              // requests answered 503
    uint64_t refused_retry_after = 0;  // of which with a Retry-After header
    uint64_t errors = 0;               // any other answer, or none (timeout, reset)
    uint64_t late = 0;                 // paced requests whose time had passed (sent at once)
};

// Fresh Engage batches of `batch` (Tracking API bodies) to `url` from `connections`
// keep-alive clients in threads of their own, from Start to Stop, over `users` users.
// `rate` 0: each client sends its next batch as soon as the last is answered; otherwise the
// clients together offer `rate` events/s, each sending its next batch at its scheduled
// time, at once (no pacing) when that time has passed. A refused or failed request is
// counted, not retried.
class BackgroundLoad {
  public:
    BackgroundLoad(std::string url, int connections, int batch, uint64_t users, std::string prefix,
                   double rate = 0)
        : url_(std::move(url)),
          connections_(connections),
          batch_(batch),
          users_(users),
          prefix_(std::move(prefix)),
          rate_(rate) {}
    ~BackgroundLoad() { Stop(); }
    BackgroundLoad(const BackgroundLoad&) = delete;
    BackgroundLoad& operator=(const BackgroundLoad&) = delete;

    void Start() {
        start_ = Clock::now();
        for (int t = 0; t < connections_; ++t) threads_.emplace_back([this, t] { Run(t); });
    }

    // Stops sending; returns once the requests in flight are answered (30 s at most).
    void Stop() {
        if (threads_.empty()) return;
        stop_ = true;
        for (auto& t : threads_) t.join();
        threads_.clear();
        stopped_ = Clock::now();
    }

    Clock::time_point started() const { return start_; }
    Clock::time_point stopped() const { return stopped_; }

    // The counts so far; `latencies` (if given) gets the milliseconds of the requests
    // answered 200 since the previous call that took them.
    LoadCounts Counts(std::vector<double>* latencies = nullptr) {
        LoadCounts c;
        c.requests = requests_;
        c.events_sent = events_sent_;
        c.acknowledged = acknowledged_;
        c.acknowledged_requests = acknowledged_requests_;
        c.stored = stored_;
        c.refused = refused_;
        c.refused_retry_after = refused_retry_after_;
        c.errors = errors_;
        c.late = late_;
        if (latencies != nullptr) {
            std::lock_guard<std::mutex> lock(mu_);
            *latencies = std::move(latencies_);
            latencies_.clear();
        }
        return c;
    }

  private:
    void Run(int t) {
        Generator gen(static_cast<uint64_t>(t) * 7919 + 1, prefix_ + std::to_string(t), users_);
        CURL* c = curl_easy_init();
        curl_slist* headers = nullptr;
        headers = curl_slist_append(headers, "Content-Type: application/json");
        headers = curl_slist_append(headers, "Expect:");
        std::string auth =
            std::string("Authorization: Basic ") + text::Base64Encode(std::string(kWriteKey) + ":");
        headers = curl_slist_append(headers, auth.c_str());
        std::string answer;
        bool retry_after = false;
        curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, SeeRetryAfter);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &retry_after);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
        // Paced: one batch every `interval` per client, the clients spread over it.
        const auto interval =
            rate_ > 0 ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                            static_cast<double>(connections_) * batch_ / rate_))
                      : Clock::duration::zero();
        auto next = start_ + interval * t / connections_;
        std::string body = gen.Body(batch_, true);
        while (!stop_) {
            if (rate_ > 0) {
                if (Clock::now() > next + std::chrono::milliseconds(1)) {
                    ++late_;  // behind: sent at once
                } else {
                    while (!stop_ && Clock::now() < next) {
                        std::this_thread::sleep_until(
                            std::min(next, Clock::now() + std::chrono::milliseconds(100)));
                    }
                    if (stop_) break;
                }
                next += interval;
            }
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
            answer.clear();
            retry_after = false;
            auto t0 = Clock::now();
            CURLcode rc = curl_easy_perform(c);
            double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            long status = 0;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (rc == CURLE_OK && status == 200) {
                AnswerCounts counts;
                CountAnswer(answer, counts);
                acknowledged_ += static_cast<uint64_t>(batch_);
                ++acknowledged_requests_;
                stored_ += counts.stored;
                std::lock_guard<std::mutex> lock(mu_);
                latencies_.push_back(ms);
            } else if (rc == CURLE_OK && status == 503) {
                ++refused_;
                if (retry_after) ++refused_retry_after_;
            } else {
                ++errors_;
            }
            ++requests_;
            events_sent_ += static_cast<uint64_t>(batch_);
            body = gen.Body(batch_, true);  // the next request's body, outside the timing
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
    }

    const std::string url_;
    const int connections_, batch_;
    const uint64_t users_;
    const std::string prefix_;
    const double rate_;
    Clock::time_point start_{}, stopped_{};
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> requests_{0}, events_sent_{0}, acknowledged_{0},
        acknowledged_requests_{0}, stored_{0}, refused_{0}, refused_retry_after_{0}, errors_{0},
        late_{0};
    std::mutex mu_;
    std::vector<double> latencies_;  // guarded by mu_
    std::vector<std::thread> threads_;
};

// The maxima of a Sampler's readings.
struct SampledMaxima {
    size_t samples = 0;
    FileSizes files{};            // each file's largest size
    bool backlog_metric = false;  // /metrics had audsync_inbox_backlog_events
    double backlog = 0, backlog_age = 0;
    double rss_mb = 0;  // VmRSS
};

// Once a second, in a thread of its own from Start to Stop: the sizes of the database's
// files (stat), the inbox gauges (/metrics) and the server's VmRSS; keeps each maximum.
class Sampler {
  public:
    Sampler(uint16_t port, std::string db, pid_t pid)
        : port_(port), db_(std::move(db)), pid_(pid) {}
    ~Sampler() { Stop(); }
    Sampler(const Sampler&) = delete;
    Sampler& operator=(const Sampler&) = delete;

    void Start() {
        thread_ = std::thread([this] { Run(); });
    }
    void Stop() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        wake_.notify_all();
        if (thread_.joinable()) thread_.join();
    }
    SampledMaxima Maxima() {
        std::lock_guard<std::mutex> lock(mu_);
        return max_;
    }

  private:
    void Run() {
        MetricsClient metrics(port_);
        const auto origin = Clock::now();
        for (auto tick = origin;; tick += std::chrono::seconds(1)) {
            FileSizes files = StatFiles(db_);
            InboxSample s = ReadInbox(metrics, origin);
            double rss = ProcStatusMb(pid_, "VmRSS:");
            std::unique_lock<std::mutex> lock(mu_);
            ++max_.samples;
            for (size_t i = 0; i < files.size(); ++i) {
                max_.files[i] = std::max(max_.files[i], files[i]);
            }
            max_.backlog_metric = max_.backlog_metric || s.backlog.has_value();
            max_.backlog = std::max(max_.backlog, s.backlog.value_or(0));
            max_.backlog_age = std::max(max_.backlog_age, s.backlog_age.value_or(0));
            max_.rss_mb = std::max(max_.rss_mb, rss);
            // Sampling period.
            if (wake_.wait_until(lock, tick + std::chrono::seconds(1), [this] { return stop_; })) {
                return;
            }
        }
    }

    const uint16_t port_;
    const std::string db_;
    const pid_t pid_;
    std::mutex mu_;
    std::condition_variable wake_;
    bool stop_ = false;  // guarded by mu_
    SampledMaxima max_;  // guarded by mu_
    std::thread thread_;
};

// Polls /metrics once a second (a scrape walks every pending change, so polling faster
// would take a core from the applier that a Prometheus at its 15 s does not) until
// audsync_inbox_backlog_events is 0. Returns when that
// was seen, or nullopt at `deadline` or at once when the metric is missing (`*why` says
// which); `*last` is the last reading that answered.
std::optional<Clock::time_point> WaitBacklogEmpty(MetricsClient& metrics,
                                                  Clock::time_point deadline, std::string* why,
                                                  InboxSample* last) {
    constexpr auto kPeriod = std::chrono::seconds(1);
    for (auto tick = Clock::now();; tick += kPeriod) {
        InboxSample s = ReadInbox(metrics, tick);
        if (s.answered) {
            *last = s;
            if (!s.backlog) {
                *why = std::string("no ") + kBacklogMetric + " in /metrics";
                return std::nullopt;
            }
            if (*s.backlog == 0) return Clock::now();
        }
        if (Clock::now() >= deadline) {
            *why = s.answered ? "backlog not 0 by the deadline" : "/metrics did not answer";
            return std::nullopt;
        }
        std::this_thread::sleep_until(tick + kPeriod);  // polling period
    }
}

// Counters read once from /metrics; nullopt: this audsync does not expose them.
struct ServerCounts {
    std::optional<double> applied;            // audsync_inbox_applied_total
    std::optional<double> decided;            // audsync_events_total accepted+duplicate+stale
    std::optional<double> overloaded;         // audsync_ingest_overloaded_total, every limit
    std::optional<double> overloaded_events;  // audsync_ingest_overloaded_events_total
};

ServerCounts ReadServerCounts(MetricsClient& metrics) {
    ServerCounts c;
    auto text = metrics.Fetch();
    if (!text) return c;
    c.applied = MetricValue(*text, kAppliedMetric);
    for (const char* outcome : {"accepted", "duplicate", "stale"}) {
        auto v =
            MetricValue(*text, std::string("audsync_events_total{outcome=\"") + outcome + "\"}");
        if (v) c.decided = c.decided.value_or(0) + *v;
    }
    c.overloaded = MetricValue(*text, "audsync_ingest_overloaded_total");
    c.overloaded_events = MetricValue(*text, "audsync_ingest_overloaded_events_total");
    return c;
}

// limits.max_backlog_events / max_backlog_seconds for the growth and overload servers.
// Unset: not written (the server's defaults; an audsync without them accepts the config).
struct BacklogLimits {
    std::optional<uint64_t> events, seconds;

    // `"limits":{...},` for WriteConfig's top level, or "".
    std::string Json() const {
        if (!events && !seconds) return "";
        std::string fields;
        if (events) fields += "\"max_backlog_events\":" + std::to_string(*events);
        if (seconds) {
            fields += std::string(fields.empty() ? "" : ",") +
                      "\"max_backlog_seconds\":" + std::to_string(*seconds);
        }
        return "\"limits\":{" + fields + "},";
    }
    std::string Describe() const {
        if (!events && !seconds) return "the server's default limits";
        std::string s;
        if (events) s += "max_backlog_events " + std::to_string(*events);
        if (seconds)
            s += (s.empty() ? "" : ", ") + std::string("max_backlog_seconds ") +
                 std::to_string(*seconds);
        return s;
    }
};

BacklogLimits BacklogLimitsFrom(const std::map<std::string, std::string>& flags) {
    BacklogLimits l;
    if (flags.count("--growth-max-backlog-events")) {
        l.events = std::stoull(flags.at("--growth-max-backlog-events"));
    }
    if (flags.count("--growth-max-backlog-seconds")) {
        l.seconds = std::stoull(flags.at("--growth-max-backlog-seconds"));
    }
    return l;
}

// A fresh `audsync serve` on `db` (its files removed first) whose destination syncs to
// `emulator_url`, with `limits`; `*port` gets its port.
Child ServeFresh(const std::string& audsync, const std::string& dir, const std::string& db,
                 const std::string& emulator_url, const std::string& config_name,
                 const BacklogLimits& limits, uint16_t* port) {
    RemoveDatabase(db);
    std::string cfg = WriteConfig(dir, db, emulator_url, 1000, config_name, limits.Json());
    Child server = Spawn({audsync, "serve", "--config", cfg}, true);
    *port = WaitPort(server);
    return server;
}

struct GrowthOptions {
    int windows = 6;
    double window_seconds = 10;
    double drain_seconds = 600;  // the deadline of the drain (the overload's too)
    BacklogLimits limits;
};

GrowthOptions GrowthOptionsFrom(const std::map<std::string, std::string>& flags) {
    GrowthOptions o;
    if (flags.count("--growth-windows")) o.windows = std::stoi(flags.at("--growth-windows"));
    if (flags.count("--growth-window-seconds")) {
        o.window_seconds = std::stod(flags.at("--growth-window-seconds"));
    }
    if (flags.count("--growth-drain-seconds")) {
        o.drain_seconds = std::stod(flags.at("--growth-drain-seconds"));
    }
    o.limits = BacklogLimitsFrom(flags);
    return o;
}

// One window of the growth part: rates over it, the rest at its end.
struct GrowthWindow {
    double seconds = 0;         // as measured
    uint64_t acknowledged = 0;  // events answered 200
    double acknowledged_per_s = 0;
    uint64_t refused = 0, refused_retry_after = 0, errors = 0;  // requests
    std::optional<double> applied_per_s;  // nullopt: no audsync_inbox_applied_total
    std::optional<double> backlog, backlog_age;
    double p99_ms = 0;  // of the requests answered 200 in it
    FileSizes files{};
    double rss_mb = 0, peak_rss_mb = 0;  // VmRSS, VmHWM
};

struct GrowthRun {
    GrowthOptions options;
    std::vector<GrowthWindow> windows;
    LoadCounts load;          // the totals
    double load_seconds = 0;  // first request to the load's stop
    bool drained = false;
    double drain_seconds = -1;      // the load's stop to a backlog of 0
    std::string not_drained;        // why not
    std::optional<double> applied;  // audsync_inbox_applied_total at the drain's end, less before
    double sustained_per_s = 0;     // applied / (first request to the drain's end)
    double ack_ratio = 0;           // the last window's acknowledged rate over the first's
    SampledMaxima max;              // once a second over the whole run
    FileSizes minute_after{};       // kGrowthAfterSeconds after the drain
    ServerCounts server;            // at the end
    double peak_rss_mb = 0;
    bool graceful = false;
};

// Growth: fresh Engage batches of 100 over 1,000,000 users x 5 audiences at 8 connections,
// as fast as they are taken, for `windows` windows of `window_seconds` against one server
// on a fresh database whose destination syncs to an emulator; then the load stops, the
// backlog drains (deadline `drain_seconds`) and the WALs are measured a minute later.
GrowthRun MeasureGrowth(const std::string& audsync, const std::string& dir,
                        emulator::Emulator::Options eo, const GrowthOptions& options) {
    GrowthRun run;
    run.options = options;
    eo.on_apply = nullptr;
    emulator::Emulator emu(eo);
    emu.Start();
    const std::string db = dir + "/growth.db";
    uint16_t port = 0;
    Child server =
        ServeFresh(audsync, dir, db, emu.base_url(), "growth-config.json", options.limits, &port);
    MetricsClient metrics(port);
    const auto origin = Clock::now();
    const InboxSample before = ReadInbox(metrics, origin);
    Sampler sampler(port, db, server.pid);
    sampler.Start();
    BackgroundLoad load("http://127.0.0.1:" + std::to_string(port) + "/v1/batch", 8, 100,
                        kLargeUserPool, "growth-");
    load.Start();
    LoadCounts previous;
    auto previous_at = load.started();
    InboxSample previous_inbox = before;
    const auto window = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(options.window_seconds));
    for (int i = 0; i < options.windows; ++i) {
        std::this_thread::sleep_until(load.started() + window * (i + 1));  // the window's end
        std::vector<double> latencies;
        LoadCounts now = load.Counts(&latencies);
        const auto at = Clock::now();
        InboxSample inbox = ReadInbox(metrics, origin);
        GrowthWindow w;
        w.seconds = std::chrono::duration<double>(at - previous_at).count();
        w.acknowledged = now.acknowledged - previous.acknowledged;
        w.acknowledged_per_s = static_cast<double>(w.acknowledged) / w.seconds;
        w.refused = now.refused - previous.refused;
        w.refused_retry_after = now.refused_retry_after - previous.refused_retry_after;
        w.errors = now.errors - previous.errors;
        if (inbox.applied && previous_inbox.applied && inbox.t > previous_inbox.t) {
            w.applied_per_s =
                (*inbox.applied - *previous_inbox.applied) / (inbox.t - previous_inbox.t);
        }
        w.backlog = inbox.backlog;
        w.backlog_age = inbox.backlog_age;
        w.p99_ms = Percentile(latencies, 0.99);
        w.files = StatFiles(db);
        w.rss_mb = ProcStatusMb(server.pid, "VmRSS:");
        w.peak_rss_mb = ProcStatusMb(server.pid, "VmHWM:");
        std::cerr << "  growth window " << i + 1 << ": " << Fmt(w.acknowledged_per_s)
                  << " acknowledged/s, " << w.refused << " refused, backlog "
                  << (w.backlog ? Fmt(*w.backlog) : "n/a") << "\n";
        run.windows.push_back(w);
        previous = now;
        previous_at = at;
        if (inbox.answered) previous_inbox = inbox;
    }
    load.Stop();
    run.load = load.Counts();
    run.load_seconds = std::chrono::duration<double>(load.stopped() - load.started()).count();
    if (run.windows.size() >= 1 && run.windows.front().acknowledged_per_s > 0) {
        run.ack_ratio =
            run.windows.back().acknowledged_per_s / run.windows.front().acknowledged_per_s;
    }

    InboxSample last = previous_inbox;
    auto drained =
        WaitBacklogEmpty(metrics,
                         load.stopped() + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(options.drain_seconds)),
                         &run.not_drained, &last);
    const auto drain_end = drained ? *drained : Clock::now();
    if (drained) {
        run.drained = true;
        run.drain_seconds = std::chrono::duration<double>(*drained - load.stopped()).count();
    }
    if (last.applied && before.applied) run.applied = *last.applied - *before.applied;
    const double span = std::chrono::duration<double>(drain_end - load.started()).count();
    if (run.applied && span > 0) run.sustained_per_s = *run.applied / span;

    std::cerr << "  growth: " << (run.drained ? "drained" : "not drained: " + run.not_drained)
              << "; measuring the WALs " << Fmt(kGrowthAfterSeconds) << " s later\n";
    std::this_thread::sleep_for(std::chrono::duration<double>(kGrowthAfterSeconds));
    run.minute_after = StatFiles(db);
    sampler.Stop();
    run.max = sampler.Maxima();
    run.server = ReadServerCounts(metrics);
    run.peak_rss_mb = std::max(StopChild(server, &run.graceful), run.max.rss_mb);
    emu.Stop();
    RemoveDatabase(db);
    return run;
}

struct OverloadOptions {
    double seconds = 600;
    double rate = 60000;  // events/s offered
    double drain_seconds = 600;
    BacklogLimits limits;
};

OverloadOptions OverloadOptionsFrom(const std::map<std::string, std::string>& flags) {
    OverloadOptions o;
    if (flags.count("--overload-seconds")) o.seconds = std::stod(flags.at("--overload-seconds"));
    if (flags.count("--overload-rate")) o.rate = std::stod(flags.at("--overload-rate"));
    if (flags.count("--growth-drain-seconds")) {
        o.drain_seconds = std::stod(flags.at("--growth-drain-seconds"));
    }
    o.limits = BacklogLimitsFrom(flags);
    return o;
}

struct OverloadRun {
    OverloadOptions options;
    LoadCounts load;
    double load_seconds = 0;        // first request to the load's stop
    double p50_ms = 0, p99_ms = 0;  // of the requests answered 200
    SampledMaxima max;              // once a second over the load and the drain
    bool drained = false;
    double drain_seconds = -1;  // the load's stop to a backlog of 0
    std::string not_drained;    // why not
    ServerCounts server;        // after the drain
    double peak_rss_mb = 0;
    bool graceful = false;
};

// Overload: `seconds` of fresh Engage batches of 100 over 1,000,000 users x 5 audiences,
// offered at `rate` events/s by 8 paced connections, against one server on a fresh
// database; then the drain, and what the applier decided against what was acknowledged.
OverloadRun MeasureOverload(const std::string& audsync, const std::string& dir,
                            emulator::Emulator::Options eo, const OverloadOptions& options) {
    OverloadRun run;
    run.options = options;
    eo.on_apply = nullptr;
    emulator::Emulator emu(eo);
    emu.Start();
    const std::string db = dir + "/overload.db";
    uint16_t port = 0;
    Child server =
        ServeFresh(audsync, dir, db, emu.base_url(), "overload-config.json", options.limits, &port);
    MetricsClient metrics(port);
    Sampler sampler(port, db, server.pid);
    sampler.Start();
    BackgroundLoad load("http://127.0.0.1:" + std::to_string(port) + "/v1/batch", 8, 100,
                        kLargeUserPool, "overload-", options.rate);
    load.Start();
    const auto end = load.started() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(options.seconds));
    for (auto progress = load.started() + std::chrono::seconds(60); Clock::now() < end;
         progress += std::chrono::seconds(60)) {
        std::this_thread::sleep_until(std::min(progress, end));
        if (Clock::now() >= end) break;
        LoadCounts c = load.Counts();
        SampledMaxima m = sampler.Maxima();
        std::cerr << "  overload: "
                  << Fmt(std::chrono::duration<double>(Clock::now() - load.started()).count())
                  << " s, " << Thousands(c.acknowledged) << " acknowledged, " << c.refused
                  << " refused, max backlog " << Fmt(m.backlog) << "\n";
    }
    std::this_thread::sleep_until(end);
    load.Stop();
    std::vector<double> latencies;
    run.load = load.Counts(&latencies);
    run.load_seconds = std::chrono::duration<double>(load.stopped() - load.started()).count();
    run.p50_ms = Percentile(latencies, 0.50);
    run.p99_ms = Percentile(latencies, 0.99);
    InboxSample last;
    auto drained =
        WaitBacklogEmpty(metrics,
                         load.stopped() + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(options.drain_seconds)),
                         &run.not_drained, &last);
    if (drained) {
        run.drained = true;
        run.drain_seconds = std::chrono::duration<double>(*drained - load.stopped()).count();
    }
    sampler.Stop();
    run.max = sampler.Maxima();
    run.server = ReadServerCounts(metrics);
    run.peak_rss_mb = std::max(StopChild(server, &run.graceful), run.max.rss_mb);
    emu.Stop();
    RemoveDatabase(db);
    return run;
}

// --- reporting the growth and overload parts -----------------------------------------------

// Adds `"key":raw_value` to the JSON report.
using JsonAdd = std::function<void(const std::string& key, const std::string& raw_value)>;

std::string JsonNumber(std::optional<double> v) { return v ? Fmt(*v, 3) : "null"; }

std::string JsonText(const std::string& v) {
    std::string quoted;
    json::AppendQuoted(quoted, v);
    return quoted;
}

std::string Mb(uintmax_t bytes) { return Fmt(static_cast<double>(bytes) / 1e6, 1); }

// A table row as the inbox rows are printed: a 78-column label, then up to three values.
void Row(const std::string& name, const std::string& value, const std::string& p50 = "",
         const std::string& p99 = "") {
    std::string row(512, '\0');
    row.resize(
        static_cast<size_t>(std::snprintf(row.data(), row.size(), "%-78s %14s %10s %10s",
                                          name.c_str(), value.c_str(), p50.c_str(), p99.c_str())));
    row.erase(row.find_last_not_of(' ') + 1);
    std::printf("%s\n", row.c_str());
}

// "a / b / c" of the six files' sizes in MB.
std::string FilesMb(const FileSizes& files) {
    std::string s;
    for (uintmax_t bytes : files) s += (s.empty() ? "" : " / ") + Mb(bytes);
    return s;
}

// {"database":N,...} in bytes.
std::string FilesJson(const FileSizes& files) {
    std::string s = "{";
    for (size_t i = 0; i < files.size(); ++i) {
        s += std::string(i ? "," : "") + "\"" + kDbFileNames[i] + "\":" + std::to_string(files[i]);
    }
    return s + "}";
}

// `who`: "growth", or "baseline growth" for the older audsync (its JSON keys then start
// with "baseline_").
void ReportGrowth(const GrowthRun& g, const JsonAdd& add_key, const std::string& who) {
    const std::string key_prefix = who == "growth" ? "" : "baseline_";
    const JsonAdd add = [&](const std::string& key, const std::string& raw) {
        add_key(key_prefix + key, raw);
    };
    const GrowthOptions& o = g.options;
    std::printf(
        "\n%s: batches of 100 over %s users x 5 audiences, 8 conn, %d windows of %s s "
        "(%s)\n",
        who.c_str(), Thousands(kLargeUserPool).c_str(), o.windows, Fmt(o.window_seconds, 1).c_str(),
        o.limits.Describe().c_str());
    std::printf("%4s %11s %12s %6s %12s %10s %7s %8s %8s %8s %6s %8s %9s %9s %7s %7s\n", "win",
                "acked ev/s", "503 (R-A)", "errors", "applied ev/s", "backlog", "age s", "p99 ms",
                "db MB", "-wal", "-shm", "inbox", "-inb-wal", "-inb-shm", "RSS MB", "HWM MB");
    std::string windows = "[";
    for (size_t i = 0; i < g.windows.size(); ++i) {
        const GrowthWindow& w = g.windows[i];
        std::string refused =
            std::to_string(w.refused) + " (" + std::to_string(w.refused_retry_after) + ")";
        std::printf("%4zu %11s %12s %6llu %12s %10s %7s %8s %8s %8s %6s %8s %9s %9s %7s %7s\n",
                    i + 1, Fmt(w.acknowledged_per_s).c_str(), refused.c_str(),
                    static_cast<unsigned long long>(w.errors),
                    w.applied_per_s ? Fmt(*w.applied_per_s).c_str() : "n/a",
                    w.backlog ? Fmt(*w.backlog).c_str() : "n/a",
                    w.backlog_age ? Fmt(*w.backlog_age, 1).c_str() : "n/a",
                    Fmt(w.p99_ms, 1).c_str(), Mb(w.files[0]).c_str(), Mb(w.files[1]).c_str(),
                    Mb(w.files[2]).c_str(), Mb(w.files[3]).c_str(), Mb(w.files[4]).c_str(),
                    Mb(w.files[5]).c_str(), Fmt(w.rss_mb, 1).c_str(),
                    Fmt(w.peak_rss_mb, 1).c_str());
        windows += std::string(i ? "," : "") + "{\"seconds\":" + Fmt(w.seconds, 3) +
                   ",\"acknowledged_events\":" + std::to_string(w.acknowledged) +
                   ",\"acknowledged_per_s\":" + Fmt(w.acknowledged_per_s, 3) +
                   ",\"refused_requests\":" + std::to_string(w.refused) +
                   ",\"refused_with_retry_after\":" + std::to_string(w.refused_retry_after) +
                   ",\"errors\":" + std::to_string(w.errors) +
                   ",\"applied_per_s\":" + JsonNumber(w.applied_per_s) +
                   ",\"backlog_events\":" + JsonNumber(w.backlog) +
                   ",\"backlog_age_seconds\":" + JsonNumber(w.backlog_age) +
                   ",\"p99_ms\":" + Fmt(w.p99_ms, 3) + ",\"file_bytes\":" + FilesJson(w.files) +
                   ",\"rss_mb\":" + Fmt(w.rss_mb, 3) + ",\"peak_rss_mb\":" + Fmt(w.peak_rss_mb, 3) +
                   "}";
    }
    windows += "]";
    Row(who + ": sustained (events applied/s, first request to drained)",
        g.applied ? Fmt(g.sustained_per_s) : "n/a");
    if (!g.applied) {
        std::printf("    (no %s in /metrics: nothing to count applied events by)\n",
                    kAppliedMetric);
    }
    Row(who + ": acknowledged rate, last window / first", Fmt(g.ack_ratio, 2));
    Row(who + ": events acknowledged / applied",
        Thousands(g.load.acknowledged) + " / " +
            (g.applied ? Thousands(static_cast<uint64_t>(*g.applied)) : std::string("n/a")));
    Row(who + ": requests refused 503 (with Retry-After) / other errors",
        std::to_string(g.load.refused) + " (" + std::to_string(g.load.refused_retry_after) +
            ") / " + std::to_string(g.load.errors));
    if (g.server.overloaded) {
        Row(who + ": refused as counted by the server (audsync_ingest_overloaded_total)",
            Fmt(*g.server.overloaded));
    }
    Row(who + ": backlog drained (s after the load stopped)",
        g.drained ? Fmt(g.drain_seconds, 1) : "-");
    if (!g.drained) std::printf("    (not drained: %s)\n", g.not_drained.c_str());
    Row(who + ": max MB: db / -wal / -shm / -inbox / -inbox-wal / -inbox-shm",
        FilesMb(g.max.files));
    Row(who + ": WAL MB a minute after the drain: -wal / -inbox-wal",
        Mb(g.minute_after[1]) + " / " + Mb(g.minute_after[4]));
    Row("RSS MB: server under " + who + " (peak)", Fmt(g.peak_rss_mb, 1));
    if (!g.graceful) std::printf("    (the server did not stop within 60 s of SIGTERM: killed)\n");

    add("growth_windows", windows);
    add("growth_window_seconds", Fmt(o.window_seconds, 3));
    add("growth_window_count", std::to_string(o.windows));
    add("growth_users", std::to_string(kLargeUserPool));
    add("growth_limits", JsonText(o.limits.Describe()));
    add("growth_load_seconds", Fmt(g.load_seconds, 3));
    add("growth_acknowledged_events", std::to_string(g.load.acknowledged));
    add("growth_applied_events", JsonNumber(g.applied));
    add("growth_refused_requests", std::to_string(g.load.refused));
    add("growth_refused_with_retry_after", std::to_string(g.load.refused_retry_after));
    add("growth_errors", std::to_string(g.load.errors));
    add("growth_server_overloaded_requests", JsonNumber(g.server.overloaded));
    add("growth_server_overloaded_events", JsonNumber(g.server.overloaded_events));
    add("growth_sustained_events_per_s", g.applied ? Fmt(g.sustained_per_s, 3) : "null");
    add("growth_ack_rate_last_over_first", Fmt(g.ack_ratio, 3));
    add("growth_drained", g.drained ? "1" : "0");
    add("growth_drain_seconds", g.drained ? Fmt(g.drain_seconds, 3) : "null");
    add("growth_not_drained_reason", JsonText(g.not_drained));
    add("growth_max_file_bytes", FilesJson(g.max.files));
    add("growth_minute_after_file_bytes", FilesJson(g.minute_after));
    add("growth_max_backlog_events", g.max.backlog_metric ? Fmt(g.max.backlog, 3) : "null");
    add("growth_max_backlog_age_seconds",
        g.max.backlog_metric ? Fmt(g.max.backlog_age, 3) : "null");
    add("growth_server_peak_rss_mb", Fmt(g.peak_rss_mb, 3));
    add("growth_stopped_gracefully", g.graceful ? "1" : "0");
}

void ReportOverload(const OverloadRun& r, const JsonAdd& add) {
    const OverloadOptions& o = r.options;
    const LoadCounts& l = r.load;
    const double secs = r.load_seconds > 0 ? r.load_seconds : 1;
    std::printf(
        "\noverload: %s s offered at %s events/s, batches of 100 over %s users x 5 "
        "audiences, 8 conn (%s)\n",
        Fmt(o.seconds).c_str(), Fmt(o.rate).c_str(), Thousands(kLargeUserPool).c_str(),
        o.limits.Describe().c_str());
    std::printf("%-78s %14s %10s %10s\n", "", "value", "p50 ms", "p99 ms");
    Row("overload: offered (events/s)", Fmt(static_cast<double>(l.events_sent) / secs));
    if (l.late > 0) {
        std::printf("    (%s of %s requests sent after their time: the clients fell behind)\n",
                    Thousands(l.late).c_str(), Thousands(l.requests).c_str());
    }
    Row("overload: acknowledged (events/s)", Fmt(static_cast<double>(l.acknowledged) / secs),
        Fmt(r.p50_ms, 2), Fmt(r.p99_ms, 2));
    Row("overload: requests refused 503 with Retry-After / without",
        Thousands(l.refused_retry_after) + " / " + Thousands(l.refused - l.refused_retry_after));
    Row("overload: other errors (requests)", Thousands(l.errors));
    if (r.server.overloaded) {
        Row("overload: refused as counted by the server (audsync_ingest_overloaded_total)",
            Fmt(*r.server.overloaded));
    }
    Row("overload: max backlog (events) / max backlog age (s), sampled each second",
        r.max.backlog_metric ? Fmt(r.max.backlog) + " / " + Fmt(r.max.backlog_age, 1)
                             : std::string("n/a"));
    Row("overload: max MB: db / -wal / -shm / -inbox / -inbox-wal / -inbox-shm",
        FilesMb(r.max.files));
    Row("overload: backlog drained (s after the load stopped)",
        r.drained ? Fmt(r.drain_seconds, 1) : "-");
    if (!r.drained) std::printf("    (not drained: %s)\n", r.not_drained.c_str());
    const std::optional<double> lost =
        r.server.decided
            ? std::optional<double>(static_cast<double>(l.acknowledged) - *r.server.decided)
            : std::nullopt;
    Row("overload: events acknowledged / applied (accepted+duplicate+stale) / lost",
        Thousands(l.acknowledged) + " / " +
            (r.server.decided ? Thousands(static_cast<uint64_t>(*r.server.decided)) : "n/a") +
            " / " + (lost ? Fmt(*lost) : "n/a"));
    if (l.stored != l.acknowledged) {
        std::printf("    (the 200 answers said %s events stored)\n", Thousands(l.stored).c_str());
    }
    Row("RSS MB: server under overload (peak)", Fmt(r.peak_rss_mb, 1));
    if (!r.graceful) std::printf("    (the server did not stop within 60 s of SIGTERM: killed)\n");

    add("overload_seconds", Fmt(o.seconds, 3));
    add("overload_rate_events_per_s", Fmt(o.rate, 3));
    add("overload_limits", JsonText(o.limits.Describe()));
    add("overload_load_seconds", Fmt(r.load_seconds, 3));
    add("overload_offered_events", std::to_string(l.events_sent));
    add("overload_offered_events_per_s", Fmt(static_cast<double>(l.events_sent) / secs, 3));
    add("overload_requests", std::to_string(l.requests));
    add("overload_requests_late", std::to_string(l.late));
    add("overload_acknowledged_events", std::to_string(l.acknowledged));
    add("overload_acknowledged_events_per_s", Fmt(static_cast<double>(l.acknowledged) / secs, 3));
    add("overload_stored_per_answers", std::to_string(l.stored));
    add("overload_p50_ms", Fmt(r.p50_ms, 3));
    add("overload_p99_ms", Fmt(r.p99_ms, 3));
    add("overload_refused_requests", std::to_string(l.refused));
    add("overload_refused_with_retry_after", std::to_string(l.refused_retry_after));
    add("overload_refused_without_retry_after", std::to_string(l.refused - l.refused_retry_after));
    add("overload_errors", std::to_string(l.errors));
    add("overload_server_overloaded_requests", JsonNumber(r.server.overloaded));
    add("overload_server_overloaded_events", JsonNumber(r.server.overloaded_events));
    add("overload_max_backlog_events", r.max.backlog_metric ? Fmt(r.max.backlog, 3) : "null");
    add("overload_max_backlog_age_seconds",
        r.max.backlog_metric ? Fmt(r.max.backlog_age, 3) : "null");
    add("overload_max_file_bytes", FilesJson(r.max.files));
    add("overload_drained", r.drained ? "1" : "0");
    add("overload_drain_seconds", r.drained ? Fmt(r.drain_seconds, 3) : "null");
    add("overload_not_drained_reason", JsonText(r.not_drained));
    add("overload_applied_events", JsonNumber(r.server.decided));
    add("overload_lost_events", JsonNumber(lost));
    add("overload_server_peak_rss_mb", Fmt(r.peak_rss_mb, 3));
    add("overload_stopped_gracefully", r.graceful ? "1" : "0");
}

int All(const std::map<std::string, std::string>& flags) {
    const std::string audsync = flags.at("--audsync");
    const std::string self = flags.at("--self");
    const double seconds = flags.count("--seconds") ? std::stod(flags.at("--seconds")) : 5.0;
    const int replay_members =
        flags.count("--replay-members") ? std::stoi(flags.at("--replay-members")) : 1000000;
    const double applier_seconds =
        flags.count("--applier-seconds") ? std::stod(flags.at("--applier-seconds")) : 15.0;
    const uint64_t burst_events =
        flags.count("--burst-events") ? std::stoull(flags.at("--burst-events")) : 1000000;
    const bool baseline = flags.count("--baseline-audsync") > 0;
    const std::string baseline_audsync = baseline ? flags.at("--baseline-audsync") : "";
    const std::string baseline_bench = baseline ? flags.at("--baseline-bench") : "";
    char tmpl[] = "/tmp/audsync-bench-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    std::string json = "{";
    auto add_raw = [&](const std::string& key, const std::string& value) {
        json += (json.size() > 1 ? "," : "") + std::string("\"") + key + "\":" + value;
    };
    auto add = [&](const std::string& key, double v) { add_raw(key, Fmt(v, 3)); };
    auto add_text = [&](const std::string& key, const std::string& v) {
        std::string quoted;
        json::AppendQuoted(quoted, v);
        add_raw(key, quoted);
    };
    std::vector<std::vector<std::string>> table;

    // --only ingest,replay,applier,burst,growth,overload,fold (any of them) runs those parts
    // alone; overload and fold run only when named.
    std::set<std::string> only;
    if (flags.count("--only")) {
        std::stringstream list(flags.at("--only"));
        for (std::string part; std::getline(list, part, ',');) only.insert(part);
    }
    auto run_part = [&](const std::string& part) { return only.empty() || only.count(part); };
    const bool run_ingest = run_part("ingest");
    Runs http, ingest;
    Runs baseline_http, baseline_ingest;  // with --baseline-*
    double parse100 = 0, parse1000 = 0, storage100 = 0, storage1000 = 0, fold10000 = 0,
           server_rss = 0, coalescing = 0, baseline_server_rss = 0;
    double sync_p50 = 0, sync_p99 = 0;
    uint64_t sync_sent = 0;
    emulator::Emulator::Options eo;
    eo.service_token = kToken;
    eo.client_side_id = kClientSideId;
    if (run_ingest) {
        // Ceilings.
        std::cerr << "measuring ceilings...\n";
        parse100 = ParseCeiling(100, true, seconds);
        parse1000 = ParseCeiling(1000, false, seconds);
        storage100 = StorageCeiling(100, seconds, dir);
        storage1000 = StorageCeiling(1000, seconds, dir);
        fold10000 = FoldCeiling(10000, seconds, dir);
        Child echo = Spawn({self, "echo"});
        uint16_t echo_port = WaitPort(echo);
        // The baseline's echo (its own HTTP server) runs beside it, idle in turn; each load
        // is measured on one, then the same load on the other, so that a change in the
        // machine's load between the two is as small as it can be.
        Child baseline_echo;
        uint16_t baseline_echo_port = 0;
        if (baseline) {
            baseline_echo = Spawn({baseline_bench, "echo"});
            baseline_echo_port = WaitPort(baseline_echo);
        }
        for (int batch : {100, 1000}) {
            for (int conns : {1, 8, 32}) {
                http[{batch, conns}] = Load("http://127.0.0.1:" + std::to_string(echo_port) + "/",
                                            conns, batch, batch == 100, seconds, "echo");
                if (baseline) {
                    baseline_http[{batch, conns}] =
                        Load("http://127.0.0.1:" + std::to_string(baseline_echo_port) + "/", conns,
                             batch, batch == 100, seconds, "echo");
                }
            }
        }
        StopChild(echo);
        if (baseline) StopChild(baseline_echo);

        // Ingest, with the sync engine pushing to the emulator as in production.
        std::cerr << "measuring ingest...\n";
        std::atomic<uint64_t> applied{0};
        eo.on_apply = [&](const std::string&, bool) { ++applied; };
        emulator::Emulator emu(eo);
        emu.Start();
        uint64_t accepted_total = 0;
        {
            std::string db = dir + "/ingest.db";
            std::string cfg = WriteConfig(dir, db, emu.base_url());
            Child server = Spawn({audsync, "serve", "--config", cfg});
            uint16_t port = WaitPort(server);
            ingest = IngestRuns(port, seconds, "ingest-", server.pid);
            // Let the server apply and the engine push everything (60 s at most), then read
            // what it pushed per accepted event.
            {
                MetricsClient metrics(port);
                bool backlog_metric = false;
                std::string why;
                if (!WaitSettled(metrics, Clock::now() + std::chrono::seconds(60), &backlog_metric,
                                 &why)) {
                    std::cerr << "ingest: not drained before the coalescing count: " << why << "\n";
                }
            }
            std::cerr << "  drained: server peak RSS " << Fmt(PeakRssMb(server.pid), 1) << " MB\n";
            {
                // What the applier found to change a membership (not duplicates, not stale).
                MetricsClient metrics(port);
                auto text = metrics.Fetch();
                auto accepted =
                    text ? MetricValue(*text, "audsync_events_total{outcome=\"accepted\"}")
                         : std::nullopt;
                if (accepted) {
                    accepted_total = static_cast<uint64_t>(*accepted);
                } else {
                    std::cerr << "ingest: accepted events not counted (no metric)\n";
                }
            }
            server_rss = StopChild(server);
        }
        coalescing = accepted_total ? static_cast<double>(emu.stats().members) /
                                          static_cast<double>(accepted_total)
                                    : 0;

        // The same ingest against the baseline audsync: a fresh database and emulator, its
        // sync engine pushing meanwhile, started once this one has drained and stopped.
        if (baseline) {
            std::cerr << "measuring ingest against the baseline...\n";
            emulator::Emulator::Options bo = eo;
            bo.on_apply = nullptr;
            emulator::Emulator baseline_emu(bo);
            baseline_emu.Start();
            std::string db = dir + "/baseline-ingest.db";
            std::string cfg =
                WriteConfig(dir, db, baseline_emu.base_url(), 1000, "baseline-config.json");
            Child server = Spawn({baseline_audsync, "serve", "--config", cfg});
            uint16_t port = WaitPort(server);
            baseline_ingest = IngestRuns(port, seconds, "baseline-ingest-", server.pid);
            baseline_server_rss = StopChild(server);
            baseline_emu.Stop();
        }

        // Sync latency at a steady 5,000 events/s: commit (ingest answered) to acknowledged.
        std::cerr << "measuring sync latency...\n";
        emu.Stop();
        std::mutex trace_mu;
        std::map<std::string, int64_t> committed_at;
        std::vector<double> sync_latencies;
        emulator::Emulator::Options so = eo;
        so.on_apply = [&](const std::string& key, bool) {
            int64_t now = text::NowMs();
            std::lock_guard<std::mutex> lock(trace_mu);
            auto it = committed_at.find(key);
            if (it != committed_at.end()) {
                sync_latencies.push_back(
                    static_cast<double>(std::max<int64_t>(0, now - it->second)));
                committed_at.erase(it);
            }
        };
        emulator::Emulator sync_emu(so);
        sync_emu.Start();
        {
            std::string db = dir + "/sync.db";
            std::string cfg = WriteConfig(dir, db, sync_emu.base_url());
            Child server = Spawn({audsync, "serve", "--config", cfg});
            uint16_t port = WaitPort(server);
            Generator gen(4242, "sync");
            CURL* c = curl_easy_init();
            curl_slist* headers = nullptr;
            headers = curl_slist_append(headers, "Content-Type: application/json");
            headers = curl_slist_append(headers, "Expect:");
            std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/batch";
            curl_easy_setopt(c, CURLOPT_URL, url.c_str());
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
            // 50 requests of 100 events per second.
            auto start = Clock::now();
            const int total_requests = static_cast<int>(seconds * 50);
            for (int i = 0; i < total_requests; ++i) {
                std::this_thread::sleep_until(start + std::chrono::milliseconds(20 * i));  // pacing
                std::vector<std::string> users;
                std::string body = gen.Body(100, true, &users, true);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                                 static_cast<curl_off_t>(body.size()));
                {
                    // Registered before sending; the commit time is set on the answer.
                    std::lock_guard<std::mutex> lock(trace_mu);
                    for (const auto& u : users) committed_at[u] = INT64_MAX / 2;
                }
                if (curl_easy_perform(c) == CURLE_OK) {
                    int64_t now = text::NowMs();
                    std::lock_guard<std::mutex> lock(trace_mu);
                    for (const auto& u : users) {
                        auto it = committed_at.find(u);
                        if (it != committed_at.end()) it->second = now;
                    }
                    sync_sent += 100;
                }
            }
            for (int i = 0; i < 300; ++i) {
                {
                    std::lock_guard<std::mutex> lock(trace_mu);
                    if (committed_at.empty()) break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            curl_slist_free_all(headers);
            curl_easy_cleanup(c);
            StopChild(server);
            std::lock_guard<std::mutex> lock(trace_mu);
            sync_p50 = Percentile(sync_latencies, 0.5);
            sync_p99 = Percentile(sync_latencies, 0.99);
        }
        sync_emu.Stop();
    }  // run_ingest

    // Replay of one segment of `replay_members` members.
    double replay_rate = 0, replay_rss = 0;
    if (run_part("replay")) {
        std::cerr << "measuring replay of " << replay_members << " members...\n";
        emulator::Emulator::Options ro = eo;
        ro.on_apply = nullptr;
        emulator::Emulator replay_emu(ro);
        replay_emu.Start();
        {
            std::string db = dir + "/replay.db";
            {
                store::Database d(db, true);
                (void)store::Migrate(d, store::EmbeddedMigrations());
                store::WriteStore w(d);
                w.EnsureTargets("bench", store::ImplicitTargets(), 0);
                mapping::MembershipChange change;
                change.audience_id = "aud_replay";
                change.audience_key = "replayed_audience";
                change.context_kind = "user";
                change.included = true;
                change.event_time_ms = 1;
                for (int i = 0; i < replay_members; i += 20000) {
                    store::Transaction tx(d);
                    for (int j = i; j < std::min(replay_members, i + 20000); ++j) {
                        change.context_key = "member-" + std::to_string(j);
                        w.Apply("bench", "r" + std::to_string(j), change, text::NowMs());
                    }
                    tx.Commit();
                }
                store::TestAccess::Exec(
                    d,
                    "UPDATE deliveries AS d SET acked = m.desired, acked_version = m.version, "
                    "pending = 0 FROM memberships AS m WHERE m.segment_id = d.segment_id AND "
                    "m.context_key = d.context_key");
            }
            std::string cfg = WriteConfig(dir, db, replay_emu.base_url());
            auto start = Clock::now();
            Child replay = Spawn({audsync, "replay", "segments", "--push-now", "--config", cfg});
            int status = 0;
            while (waitpid(replay.pid, &status, WNOHANG) == 0) {
                replay_rss = std::max(replay_rss, PeakRssMb(replay.pid));
                std::this_thread::sleep_for(std::chrono::milliseconds(50));  // sampling period
            }
            double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
            unlink(replay.out_path.c_str());
            size_t restored = replay_emu.Included("aud_replay").size();
            replay_rate = static_cast<double>(restored) / elapsed;
            if (restored != static_cast<size_t>(replay_members)) {
                std::cerr << "replay restored " << restored << " of " << replay_members
                          << " members\n";
            }
        }
        replay_emu.Stop();
    }

    // The inbox: the applier's sustained rate, then a burst applied and pushed and the disk
    // it takes.
    std::optional<ApplierRun> applier;
    if (run_part("applier")) {
        std::cerr << "measuring the applier (" << applier_seconds << " s of load)...\n";
        applier = MeasureApplier(audsync, dir, eo, applier_seconds);
    }
    std::optional<BurstRun> burst;
    if (run_part("burst")) {
        std::cerr << "measuring a burst of " << burst_events << " events...\n";
        burst = MeasureBurst(audsync, dir, eo, burst_events);
    }
    // Growth over consecutive windows; overload (long) only when named in --only.
    std::optional<GrowthRun> growth;
    if (run_part("growth")) {
        std::cerr << "measuring growth...\n";
        growth = MeasureGrowth(audsync, dir, eo, GrowthOptionsFrom(flags));
    }
    // The same load on the older audsync (its defaults: it may know none of the limits).
    std::optional<GrowthRun> baseline_growth;
    if (baseline && run_part("growth")) {
        std::cerr << "measuring growth on the baseline...\n";
        GrowthOptions bo = GrowthOptionsFrom(flags);
        bo.limits = {};
        baseline_growth = MeasureGrowth(baseline_audsync, dir, eo, bo);
    }
    std::optional<FoldScaleRun> fold_scale;
    if (only.count("fold")) {
        const int64_t users =
            flags.count("--fold-users") ? std::stoll(flags.at("--fold-users")) : 1000000;
        const int batch = flags.count("--fold-batch") ? std::stoi(flags.at("--fold-batch")) : 11000;
        const int plan_batches =
            flags.count("--fold-plan-batches") ? std::stoi(flags.at("--fold-plan-batches")) : 32;
        std::cerr << "measuring the fold on " << users << " users x 5 audiences...\n";
        fold_scale = MeasureFoldAtScale(users, batch, 8, plan_batches, 2, dir);
    }
    std::optional<OverloadRun> overload;
    if (only.count("overload")) {
        std::cerr << "measuring overload...\n";
        overload = MeasureOverload(audsync, dir, eo, OverloadOptionsFrom(flags));
    }

    // Report.
    double lowest100 = std::min({parse100, storage100, http[{100, 8}].events_per_s});
    double lowest1000 = std::min({parse1000, storage1000, http[{1000, 8}].events_per_s});
    if (run_ingest || run_part("replay")) {
        std::printf("\n%-44s %14s %10s %10s %10s %8s\n", "run", "events/s", "p50 ms", "p99 ms",
                    "max ms", "ratio");
    }
    if (run_ingest) {
        add("parse_ceiling_100", parse100);
        add("parse_ceiling_1000", parse1000);
        add("storage_ceiling_100", storage100);
        add("storage_ceiling_1000", storage1000);
        add("fold_ceiling_10000", fold10000);
        std::printf("%-44s %14s\n", "ceiling: parse (RapidJSON), batch 100", Fmt(parse100).c_str());
        std::printf("%-44s %14s\n", "ceiling: parse (RapidJSON), batch 1000",
                    Fmt(parse1000).c_str());
        std::printf("%-44s %14s\n", "ceiling: inbox append (SQLite), tx of 100",
                    Fmt(storage100).c_str());
        std::printf("%-44s %14s\n", "ceiling: inbox append (SQLite), tx of 1000",
                    Fmt(storage1000).c_str());
        std::printf("%-44s %14s\n", "ceiling: applier fold (SQLite), 10,000 a tx",
                    Fmt(fold10000).c_str());
        for (int batch : {100, 1000}) {
            for (int conns : {1, 8, 32}) {
                const auto& h = http[{batch, conns}];
                std::string name = "ceiling: HTTP echo, batch " + std::to_string(batch) + ", " +
                                   std::to_string(conns) + " conn";
                std::printf("%-44s %14s %10s %10s %10s\n", name.c_str(),
                            Fmt(h.events_per_s).c_str(), Fmt(h.p50_ms, 2).c_str(),
                            Fmt(h.p99_ms, 2).c_str(), Fmt(h.max_ms, 2).c_str());
                std::string key =
                    "http_ceiling_" + std::to_string(batch) + "_" + std::to_string(conns);
                add(key, h.events_per_s);
            }
        }
        for (int batch : {100, 1000}) {
            for (int conns : {1, 8, 32}) {
                const auto& r = ingest[{batch, conns}];
                double lowest = std::min(batch == 100 ? lowest100 : lowest1000,
                                         http[{batch, conns}].events_per_s);
                std::string name = "audsync ingest, batch " + std::to_string(batch) + ", " +
                                   std::to_string(conns) + " conn";
                std::printf("%-44s %14s %10s %10s %10s %8s\n", name.c_str(),
                            Fmt(r.events_per_s).c_str(), Fmt(r.p50_ms, 2).c_str(),
                            Fmt(r.p99_ms, 2).c_str(), Fmt(r.max_ms, 2).c_str(),
                            Fmt(r.events_per_s / lowest, 2).c_str());
                std::string key = "ingest_" + std::to_string(batch) + "_" + std::to_string(conns);
                add(key + "_events_per_s", r.events_per_s);
                add(key + "_p50_ms", r.p50_ms);
                add(key + "_p99_ms", r.p99_ms);
                add(key + "_max_ms", r.max_ms);
                add(key + "_ratio_to_lowest_ceiling", r.events_per_s / lowest);
                add(key + "_errors", static_cast<double>(r.errors));
            }
        }
        std::printf("%-44s %14s %10s %10s\n", "sync: commit to acknowledged @5000 ev/s",
                    Fmt(static_cast<double>(sync_sent) / seconds).c_str(), Fmt(sync_p50, 1).c_str(),
                    Fmt(sync_p99, 1).c_str());
        std::printf("%-44s %14s\n", "sync: pushed entries per accepted event",
                    Fmt(coalescing, 3).c_str());
        std::printf("%-44s %14s\n", "RSS MB: server under ingest (peak)",
                    Fmt(server_rss, 1).c_str());
    }
    if (run_part("replay")) {
        std::printf("%-44s %14s\n", "replay: members/s (push-now)", Fmt(replay_rate).c_str());
        std::printf("%-44s %14s\n", "RSS MB: replay (peak)", Fmt(replay_rss, 1).c_str());
    }
    if (run_ingest && baseline) {
        // Before / after: the HTTP echo ceiling and durable ingest of both builds, measured
        // in this run. "change" is after over before.
        std::printf("\n%-50s %14s %10s %10s %10s %8s\n", "baseline (BENCH_BASELINE) / current",
                    "events/s", "p50 ms", "p99 ms", "max ms", "change");
        auto row = [](const std::string& name, const LoadResult& r, const std::string& change) {
            std::printf("%-50s %14s %10s %10s %10s %8s\n", name.c_str(),
                        Fmt(r.events_per_s).c_str(), Fmt(r.p50_ms, 2).c_str(),
                        Fmt(r.p99_ms, 2).c_str(), Fmt(r.max_ms, 2).c_str(), change.c_str());
        };
        for (const char* what : {"HTTP echo", "ingest"}) {
            bool echo = std::string(what) == "HTTP echo";
            for (int batch : {100, 1000}) {
                for (int conns : {1, 8, 32}) {
                    const auto& before = (echo ? baseline_http : baseline_ingest)[{batch, conns}];
                    const auto& after = (echo ? http : ingest)[{batch, conns}];
                    std::string cell = std::string(what) + ", batch " + std::to_string(batch) +
                                       ", " + std::to_string(conns) + " conn";
                    row("baseline: " + cell, before, "");
                    row("current:  " + cell, after,
                        before.events_per_s > 0
                            ? Fmt(after.events_per_s / before.events_per_s, 2) + "x"
                            : "");
                    std::string key = std::to_string(batch) + "_" + std::to_string(conns);
                    if (echo) {
                        add("baseline_http_ceiling_" + key, before.events_per_s);
                        add("baseline_http_ceiling_" + key + "_p50_ms", before.p50_ms);
                        add("baseline_http_ceiling_" + key + "_p99_ms", before.p99_ms);
                        add("http_ceiling_" + key + "_p50_ms", after.p50_ms);
                        add("http_ceiling_" + key + "_p99_ms", after.p99_ms);
                    } else {
                        add("baseline_ingest_" + key + "_events_per_s", before.events_per_s);
                        add("baseline_ingest_" + key + "_p50_ms", before.p50_ms);
                        add("baseline_ingest_" + key + "_p99_ms", before.p99_ms);
                        add("baseline_ingest_" + key + "_max_ms", before.max_ms);
                        add("baseline_ingest_" + key + "_errors",
                            static_cast<double>(before.errors));
                    }
                }
            }
        }
        std::printf("%-50s %14s\n", "baseline: RSS MB, server under ingest",
                    Fmt(baseline_server_rss, 1).c_str());
        std::printf("%-50s %14s\n", "current:  RSS MB, server under ingest",
                    Fmt(server_rss, 1).c_str());
        add("baseline_server_peak_rss_mb", baseline_server_rss);
    }
    if (applier || burst) {
        // Figures, never thresholds; a label says when the server lacked a metric.
        std::printf("\n%-78s %14s %10s %10s\n", "inbox and applier", "value", "p50 ms", "p99 ms");
    }
    auto line = [](const std::string& name, const std::string& value, const std::string& p50 = "",
                   const std::string& p99 = "") {
        std::string row(256, '\0');
        row.resize(static_cast<size_t>(std::snprintf(row.data(), row.size(), "%-78s %14s %10s %10s",
                                                     name.c_str(), value.c_str(), p50.c_str(),
                                                     p99.c_str())));
        row.erase(row.find_last_not_of(' ') + 1);
        std::printf("%s\n", row.c_str());
    };
    // What a figure is when the server lacked what it is meant from, under its row.
    auto note = [](const std::string& text) {
        if (!text.empty()) std::printf("    (%s)\n", text.c_str());
    };
    auto number_or_null = [](bool present, double v) { return present ? Fmt(v, 3) : "null"; };
    if (applier) {
        const ApplierRun& a = *applier;
        line("applier: ingest meanwhile (events/s), batch 100, 8 conn", Fmt(a.load.events_per_s),
             Fmt(a.load.p50_ms, 2), Fmt(a.load.p99_ms, 2));
        // Did the load outrun the applier: a backlog of at least a second of its work.
        const bool outran =
            a.backlog_metric && a.rate.events_per_s > 0 && a.peak_backlog >= a.rate.events_per_s;
        std::string label = "applier sustained (events/s)";
        if (a.rate.method == "backlog_window") {
            label += ", backlog > 0 for " + Fmt(a.rate.busy_seconds) + " s";
            line(label, Fmt(a.rate.events_per_s));
            if (!outran) {
                note(
                    "the backlog never reached one second of the applier's work: the load may "
                    "not have outrun it, so this may be the ingest rate, a lower bound");
            }
        } else if (a.rate.method == "kept_up") {
            line(label + ", FALLBACK applied/time", Fmt(a.rate.events_per_s));
            note(
                "the backlog never stayed > 0 from one sample to the next: the load was not "
                "faster than the applier, so this is a lower bound");
        } else {
            line(label + ", FALLBACK acked/time", Fmt(a.rate.events_per_s));
            note(std::string("no ") + kAppliedMetric +
                 " in /metrics: events acknowledged / load time");
        }
        line("applier: peak backlog (events)", a.backlog_metric ? Fmt(a.peak_backlog) : "n/a");
        line("applier: backlog drained (s after the load ended, +-1)",
             a.drain_seconds >= 0 ? Fmt(a.drain_seconds)
                                  : (a.backlog_metric ? "not in 60 s" : "n/a"));
        line("RSS MB: server under the applier load (peak)", Fmt(a.rss_mb, 1));
        add("applier_ingest_events_per_s", a.load.events_per_s);
        add("applier_ingest_p50_ms", a.load.p50_ms);
        add("applier_ingest_p99_ms", a.load.p99_ms);
        add("applier_ingest_errors", static_cast<double>(a.load.errors));
        add("applier_load_seconds", applier_seconds);
        add("applier_sustained_events_per_s", a.rate.events_per_s);
        add_text("applier_sustained_method", a.rate.method);
        add("applier_busy_seconds", a.rate.busy_seconds);
        add("applier_load_outran_it", outran ? 1 : 0);
        add_raw("applier_peak_backlog_events", number_or_null(a.backlog_metric, a.peak_backlog));
        add_raw("applier_peak_backlog_age_seconds",
                number_or_null(a.backlog_metric, a.peak_backlog_age));
        add_raw("applier_backlog_at_load_end_events",
                number_or_null(a.backlog_metric, a.backlog_at_load_end));
        add_raw("applier_drain_seconds", number_or_null(a.drain_seconds >= 0, a.drain_seconds));
        add("applier_samples", static_cast<double>(a.samples));
        add("applier_server_peak_rss_mb", a.rss_mb);
    }
    if (burst) {
        const BurstRun& b = *burst;
        const std::string name = "burst of " + Thousands(b.events) + " events";
        const double ingest_rate =
            b.load.last_ack_seconds > 0
                ? static_cast<double>(b.load.events) / b.load.last_ack_seconds
                : 0;
        line(name + ": ingest (events/s), batch 100, 8 conn", Fmt(ingest_rate),
             Fmt(b.load.p50_ms, 2), Fmt(b.load.p99_ms, 2));
        if (b.load.events + b.load.errors * 100 < b.events) {
            note("only " + Thousands(b.load.events) + " events acknowledged within the " +
                 Fmt(kBurstSendSeconds) + " s the burst may take; the rows below are for them");
        }
        if (b.load.errors > 0 || b.load.answers.rejected > 0) {
            line(name + ": failed requests / rejected events",
                 std::to_string(b.load.errors) + " / " + std::to_string(b.load.answers.rejected));
        }
        std::string label = name + ": applied and pushed (s after last ack)";
        if (!b.backlog_metric) label += ", PUSHED ONLY";
        line(label, b.settled ? Fmt(b.settle_seconds, 1) : "-");
        if (!b.backlog_metric) {
            note(std::string("no ") + kBacklogMetric + " in /metrics: waited for " +
                 kPendingMetric + " 0 alone");
        }
        if (!b.settled) note("not measured: " + b.not_settled);
        const double per_event = b.load.events > 0 ? static_cast<double>(b.disk_bytes) /
                                                         static_cast<double>(b.load.events)
                                                   : 0;
        line(std::string("disk per event (bytes), ") +
                 (b.retention_zero ? "raw_retention_hours 0" : "DEFAULT RETENTION"),
             Fmt(per_event));
        if (!b.retention_zero) note("raw_retention_hours 0 refused: " + b.retention_refused);
        if (!b.graceful) note("the server did not stop within 60 s of SIGTERM and was killed");
        std::string sizes;
        for (const auto& [suffix, size] : b.files) {
            sizes += (sizes.empty() ? "" : " / ") +
                     (size ? Fmt(static_cast<double>(*size) / 1e6, 1) : std::string("-"));
        }
        line("disk MB: database / -wal / -inbox / -inbox-wal (- absent)", sizes);
        line("RSS MB: server under the burst (peak)", Fmt(b.rss_mb, 1));
        add("burst_events", static_cast<double>(b.events));
        add("burst_events_acknowledged", static_cast<double>(b.load.events));
        add_raw("burst_events_stored", number_or_null(b.load.answers.answers > 0,
                                                      static_cast<double>(b.load.answers.stored)));
        add("burst_events_rejected", static_cast<double>(b.load.answers.rejected));
        add("burst_requests_failed", static_cast<double>(b.load.errors));
        add("burst_ingest_events_per_s", ingest_rate);
        add("burst_ingest_seconds", b.load.last_ack_seconds);
        add("burst_ingest_p50_ms", b.load.p50_ms);
        add("burst_ingest_p99_ms", b.load.p99_ms);
        add_raw("burst_applied_and_pushed_seconds_after_last_ack",
                number_or_null(b.settled, b.settle_seconds));
        add_text("burst_not_settled_reason", b.not_settled);
        add("burst_backlog_metric", b.backlog_metric ? 1 : 0);
        add("burst_server_peak_rss_mb", b.rss_mb);
        add("burst_stopped_gracefully", b.graceful ? 1 : 0);
        add("disk_raw_retention_hours_zero", b.retention_zero ? 1 : 0);
        const char* keys[] = {"disk_database_bytes", "disk_database_wal_bytes", "disk_inbox_bytes",
                              "disk_inbox_wal_bytes"};
        for (size_t i = 0; i < b.files.size(); ++i) {
            const auto& size = b.files[i].second;
            add_raw(keys[i],
                    number_or_null(size.has_value(), static_cast<double>(size.value_or(0))));
        }
        add("disk_total_bytes", static_cast<double>(b.disk_bytes));
        add("disk_bytes_per_event", per_event);
    }
    if (growth) ReportGrowth(*growth, add_raw, "growth");
    if (baseline_growth) ReportGrowth(*baseline_growth, add_raw, "baseline growth");
    if (overload) ReportOverload(*overload, add_raw);
    if (fold_scale) {
        const FoldScaleRun& f = *fold_scale;
        std::printf(
            "\nfold on %lld memberships (%lld users x 5, populated in %.0f s), %lld "
            "events each way\n",
            static_cast<long long>(f.memberships), static_cast<long long>(f.users), f.populate_s,
            static_cast<long long>(f.events_each));
        std::printf("%-60s %12s %14s\n", "way", "events/s", "pages/event");
        std::printf("%-60s %12s %14.2f\n", "inbox order, one transaction per batch",
                    Fmt(f.inbox_order_per_s).c_str(), f.inbox_order_pages);
        std::printf("%-60s %12s %14.2f\n", "8 batches sorted together, a key range per transaction",
                    Fmt(f.key_chunks_per_s).c_str(), f.key_chunks_pages);
        std::printf("%-60s %12s %14.2f\n",
                    "one plan of 8 batches: checks by hash, then members by key",
                    Fmt(f.parts_per_s).c_str(), f.parts_pages);
        std::printf(
            "%-60s %12s %14.2f\n",
            ("one plan of " + std::to_string(f.plan_chunks) + " batches, the same way").c_str(),
            Fmt(f.big_plan_per_s).c_str(), f.big_plan_pages);
        add("fold_scale_users", static_cast<double>(f.users));
        add("fold_scale_memberships", static_cast<double>(f.memberships));
        add("fold_scale_events_each_way", static_cast<double>(f.events_each));
        add("fold_scale_populate_s", f.populate_s);
        add("fold_scale_inbox_order_per_s", f.inbox_order_per_s);
        add("fold_scale_inbox_order_pages_per_event", f.inbox_order_pages);
        add("fold_scale_key_chunks_per_s", f.key_chunks_per_s);
        add("fold_scale_key_chunks_pages_per_event", f.key_chunks_pages);
        add("fold_scale_parts_per_s", f.parts_per_s);
        add("fold_scale_parts_pages_per_event", f.parts_pages);
        add("fold_scale_plan_batches", static_cast<double>(f.plan_chunks));
        add("fold_scale_big_plan_per_s", f.big_plan_per_s);
        add("fold_scale_big_plan_pages_per_event", f.big_plan_pages);
    }
    if (run_ingest) {
        add("sync_p50_ms", sync_p50);
        add("sync_p99_ms", sync_p99);
        add("sync_entries_per_accepted_event", coalescing);
        add("server_peak_rss_mb", server_rss);
    }
    if (run_part("replay")) {
        add("replay_members_per_s", replay_rate);
        add("replay_members", replay_members);
        add("replay_peak_rss_mb", replay_rss);
    }
    add("seconds_per_run", seconds);
    add("cores", static_cast<double>(std::thread::hardware_concurrency()));
    json += "}";
    if (flags.count("--out")) std::ofstream(flags.at("--out")) << json << "\n";
    std::filesystem::remove_all(dir);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc >= 2 && std::string(argv[1]) == "echo") return Echo();
    if (argc >= 2 &&
        std::string(argv[1]) == "storage") {  // the storage ceiling alone, for profiling
        std::cout << StorageCeiling(argc >= 3 ? std::stoi(argv[2]) : 100, 5, "/tmp")
                  << " events/s\n";
        return 0;
    }
    if (argc < 2 || std::string(argv[1]) != "all") {
        std::cerr
            << "usage: audsync-bench all --audsync PATH [--out FILE] [--seconds N] "
               "[--replay-members N] [--applier-seconds N] [--burst-events N] "
               "[--growth-windows N] [--growth-window-seconds N] "
               "[--growth-drain-seconds N] [--growth-max-backlog-events N] "
               "[--growth-max-backlog-seconds N] [--overload-seconds N] "
               "[--overload-rate N] [--fold-users N] [--fold-batch N] [--fold-plan-batches N] "
               "[--only ingest|replay|applier|burst|growth|overload|fold[,...]] "
               "[--baseline-audsync PATH --baseline-bench PATH] | echo\n";
        return 2;
    }
    std::map<std::string, std::string> flags;
    for (int i = 2; i + 1 < argc; i += 2) flags[argv[i]] = argv[i + 1];
    flags["--self"] = argv[0];
    if (flags.count("--only")) {
        std::stringstream list(flags.at("--only"));
        for (std::string part; std::getline(list, part, ',');) {
            if (part != "ingest" && part != "replay" && part != "applier" && part != "burst" &&
                part != "growth" && part != "overload" && part != "fold") {
                std::cerr << "--only: unknown part " << part
                          << " (ingest, replay, applier, burst, growth, overload, fold)\n";
                return 2;
            }
        }
    }
    for (const char* flag : {"--fold-users", "--fold-batch"}) {
        if (flags.count(flag) && std::atoll(flags.at(flag).c_str()) < 1) {
            std::cerr << flag << " must be a whole number of at least 1\n";
            return 2;
        }
    }
    if (flags.count("--fold-plan-batches") &&
        (std::atoll(flags.at("--fold-plan-batches").c_str()) < 8 ||
         std::atoll(flags.at("--fold-plan-batches").c_str()) % 8 != 0)) {
        std::cerr << "--fold-plan-batches must be a multiple of 8 (the other ways' groups)\n";
        return 2;
    }
    if (!flags.count("--audsync")) {
        std::cerr << "--audsync PATH is required\n";
        return 2;
    }
    if (flags.count("--baseline-audsync") != flags.count("--baseline-bench")) {
        std::cerr << "--baseline-audsync and --baseline-bench go together\n";
        return 2;
    }
    try {
        return All(flags);
    } catch (const std::exception& e) {
        std::cerr << "audsync-bench: " << e.what() << "\n";
        return 1;
    }
}
