// audsync-bench: measures ingest, sync and replay against the ceilings of the same
// machine, on realistic Engage traffic. Run through scripts/bench.
//
//   audsync-bench all --audsync PATH --out FILE.json [--seconds N] [--replay-members N]
//                     [--baseline-audsync PATH --baseline-bench PATH]
//   audsync-bench echo                (the HTTP transport with a handler that reads the body)
//
// With the baseline flags (an audsync and an audsync-bench built from an older revision,
// e.g. the last one served by Pistache), the same run also measures the HTTP echo ceiling
// with the baseline bench's `echo` and durable ingest against the baseline `audsync serve`,
// and reports them beside the current ones ("before" / "after"; JSON keys `baseline_`).
#include <curl/curl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audsync/common/json.hpp"
#include "audsync/common/text.hpp"
#include "audsync/config/config.hpp"
#include "audsync/http/transport.hpp"
#include "audsync/mapping/mapping.hpp"
#include "audsync/segment/body.hpp"
#include "audsync/store/database.hpp"
#include "audsync/store/store.hpp"
#include "emulator.hpp"
#include "support/store_access.hpp"

namespace {

using namespace audsync;
using Clock = std::chrono::steady_clock;

constexpr const char* kWriteKey = "bench-write-key";
constexpr const char* kToken = "bench-token";
constexpr const char* kClientSideId = "bench-cs";

// --- realistic Engage traffic -----------------------------------------------------

// Fresh Engage membership events: identify and track over 50,000 users x 5 audiences (one
// a journey step) in random order; emails and anonymous ids; enters and exits. Every
// messageId is unique (prefix + count) and every timestamp is the wall clock less up to
// 40 ms (local reordering), so an event is neither a duplicate nor, mostly, stale: it
// changes the membership it names, whatever ran before it on the same database. (Re-sent
// duplicates and old timestamps would let a store skip the work the bench should
// measure.)
class Generator {
  public:
    explicit Generator(uint64_t seed, std::string prefix)
        : rng_(seed), prefix_(std::move(prefix)) {}

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
                                       : "user_" + std::to_string(rng_() % 50000);
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
    pid_t pid = -1;
    std::string out_path;
};

Child Spawn(const std::vector<std::string>& argv_in) {
    Child c;
    c.out_path =
        "/tmp/audsync-bench-" + std::to_string(getpid()) + "-" + std::to_string(rand()) + ".out";
    c.pid = fork();
    if (c.pid == 0) {
        FILE* f = std::freopen(c.out_path.c_str(), "w", stdout);
        (void)f;
        FILE* e = std::freopen("/dev/null", "w", stderr);
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

uint16_t WaitPort(const Child& c) {
    for (int i = 0; i < 3000; ++i) {
        std::ifstream in(c.out_path);
        std::stringstream ss;
        ss << in.rdbuf();
        std::string s = ss.str();
        size_t at = s.find("http://");
        if (at != std::string::npos) {
            size_t colon = s.find(':', at + 7);
            return static_cast<uint16_t>(std::stoi(s.substr(colon + 1)));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("child did not report its port");
}

// The peak resident memory of a running process (VmHWM, reset by exec), in MB.
// ru_maxrss of a waited child is not used: it starts from the forking parent's peak.
double PeakRssMb(pid_t pid) {
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

// Stops a child with SIGTERM; returns its peak RSS in MB.
double StopChild(Child& c) {
    double peak = PeakRssMb(c.pid);
    kill(c.pid, SIGTERM);
    int status = 0;
    waitpid(c.pid, &status, 0);
    unlink(c.out_path.c_str());
    return peak;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

struct LoadResult {
    double events_per_s = 0;
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
    uint64_t requests = 0, errors = 0;
};

// Closed-loop load: `connections` keep-alive clients each send bodies for `seconds`.
LoadResult Load(const std::string& url, int connections, int batch, bool tracking, double seconds,
                const std::string& prefix) {
    std::atomic<uint64_t> events{0}, requests{0}, errors{0};
    std::mutex mu;
    std::vector<double> latencies;
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
            curl_easy_setopt(c, CURLOPT_URL, url.c_str());
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
            std::vector<double> mine;
            std::string body = gen.Body(batch, tracking);
            while (Clock::now() < end) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                                 static_cast<curl_off_t>(body.size()));
                auto t0 = Clock::now();
                CURLcode rc = curl_easy_perform(c);
                double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
                long status = 0;
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                if (rc != CURLE_OK || status != 200) {
                    ++errors;
                } else {
                    events += static_cast<uint64_t>(batch);
                    mine.push_back(ms);
                }
                ++requests;
                body = gen.Body(batch, tracking);  // next request's body, outside the timing
            }
            curl_slist_free_all(headers);
            curl_easy_cleanup(c);
            std::lock_guard<std::mutex> lock(mu);
            latencies.insert(latencies.end(), mine.begin(), mine.end());
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

// The same rows through the store's own statements, in transactions of `batch` events,
// with the shipped pragmas.
double StorageCeiling(int batch, double seconds, const std::string& dir) {
    std::string path = dir + "/storage-ceiling.db";
    std::remove(path.c_str());
    store::Database db(path, true);
    (void)store::Migrate(db, store::EmbeddedMigrations());
    store::WriteStore w(db);
    w.EnsureTargets("bench", store::ImplicitTargets(), 0);
    Generator gen(7, "storage");
    config::Limits limits;
    mapping::Rules rules;
    std::vector<std::pair<segment::Event, mapping::MembershipChange>> rows;
    for (int i = 0; i < 20; ++i) {
        auto parsed = segment::ParseWebhookBody(gen.Body(batch, false), limits);
        for (auto& item : parsed.value().items) {
            auto o = mapping::Resolve(*item.event, rules, text::NowMs());
            if (auto* c = std::get_if<mapping::MembershipChange>(&o))
                rows.emplace_back(*item.event, *c);
        }
    }
    uint64_t events = 0;
    uint64_t round = 0;
    auto start = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
        for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch)) {
            store::Transaction tx(db);
            for (size_t j = i; j < std::min(rows.size(), i + static_cast<size_t>(batch)); ++j) {
                auto& [event, change] = rows[j];
                w.Apply("bench", event.message_id + "#" + std::to_string(round), change, event.raw,
                        text::NowMs());
                ++events;
            }
            tx.Commit();
        }
        ++round;
    }
    double rate =
        static_cast<double>(events) / std::chrono::duration<double>(Clock::now() - start).count();
    std::remove(path.c_str());
    return rate;
}

// --- the audsync runs ----------------------------------------------------------------

// Accepted by the Pistache revision too (it refuses unknown fields; the admin token is
// long enough for the current one).
std::string WriteConfig(const std::string& dir, const std::string& db,
                        const std::string& emulator_url, int max_batch = 1000,
                        const std::string& name = "bench-config.json") {
    std::string path = dir + "/" + name;
    std::ofstream(path)
        << R"({"listen":"127.0.0.1:0","database":")" << db
        << R"(","admin_token":"bench-admin-token-0123","destinations":[{"id":"bench","service_token":")"
        << kToken << R"(","client_side_id":")" << kClientSideId << R"(","api_base":")"
        << emulator_url << R"(","clientsdk_base":")" << emulator_url << R"(","write_keys":[")"
        << kWriteKey << R"("],"max_batch":)" << max_batch << "}]}";
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
Runs IngestRuns(uint16_t port, double seconds, const std::string& prefix) {
    Runs runs;
    for (int batch : {100, 1000}) {
        std::string url = "http://127.0.0.1:" + std::to_string(port) +
                          (batch == 100 ? "/v1/batch" : "/v1/destinations/bench/events");
        for (int conns : {1, 8, 32}) {
            runs[{batch, conns}] =
                Load(url, conns, batch, batch == 100, seconds,
                     prefix + std::to_string(batch) + "-" + std::to_string(conns) + "-");
        }
    }
    return runs;
}

int All(const std::map<std::string, std::string>& flags) {
    const std::string audsync = flags.at("--audsync");
    const std::string self = flags.at("--self");
    const double seconds = flags.count("--seconds") ? std::stod(flags.at("--seconds")) : 5.0;
    const int replay_members =
        flags.count("--replay-members") ? std::stoi(flags.at("--replay-members")) : 1000000;
    const bool baseline = flags.count("--baseline-audsync") > 0;
    const std::string baseline_audsync = baseline ? flags.at("--baseline-audsync") : "";
    const std::string baseline_bench = baseline ? flags.at("--baseline-bench") : "";
    char tmpl[] = "/tmp/audsync-bench-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    std::string json = "{";
    auto add = [&](const std::string& key, double v) {
        json += (json.size() > 1 ? "," : "") + std::string("\"") + key + "\":" + Fmt(v, 3);
    };
    std::vector<std::vector<std::string>> table;

    // --only replay skips everything before the replay (for profiling it alone).
    const bool only_replay = flags.count("--only") && flags.at("--only") == "replay";
    Runs http, ingest;
    Runs baseline_http, baseline_ingest;  // with --baseline-*
    double parse100 = 0, parse1000 = 0, storage100 = 0, storage1000 = 0, server_rss = 0,
           coalescing = 0, baseline_server_rss = 0;
    double sync_p50 = 0, sync_p99 = 0;
    uint64_t sync_sent = 0;
    emulator::Emulator::Options eo;
    eo.service_token = kToken;
    eo.client_side_id = kClientSideId;
    if (!only_replay) {
        // Ceilings.
        std::cerr << "measuring ceilings...\n";
        parse100 = ParseCeiling(100, true, seconds);
        parse1000 = ParseCeiling(1000, false, seconds);
        storage100 = StorageCeiling(100, seconds, dir);
        storage1000 = StorageCeiling(1000, seconds, dir);
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
            ingest = IngestRuns(port, seconds, "ingest-");
            // Let the engine drain, then read what it pushed per accepted event.
            store::Database d(db, false);
            for (int i = 0; i < 600; ++i) {
                store::Statement s(
                    store::TestAccess::Handle(d),
                    "SELECT count(*) FROM deliveries WHERE pending = 1 AND dead = 0");
                s.Step();
                if (s.Int(0) == 0) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            store::Statement acc(store::TestAccess::Handle(d),
                                 "SELECT count(*) FROM events WHERE outcome = 'accepted'");
            acc.Step();
            accepted_total = static_cast<uint64_t>(acc.Int(0));
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
            baseline_ingest = IngestRuns(port, seconds, "baseline-ingest-");
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
    }  // !only_replay

    // Replay of one segment of `replay_members` members.
    std::cerr << "measuring replay of " << replay_members << " members...\n";
    emulator::Emulator::Options ro = eo;
    ro.on_apply = nullptr;
    emulator::Emulator replay_emu(ro);
    replay_emu.Start();
    double replay_rate = 0, replay_rss = 0;
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
                    w.Apply("bench", "r" + std::to_string(j), change, "{}", text::NowMs());
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
            std::cerr << "replay restored " << restored << " of " << replay_members << " members\n";
        }
    }
    replay_emu.Stop();

    // Report.
    double lowest100 = std::min({parse100, storage100, http[{100, 8}].events_per_s});
    double lowest1000 = std::min({parse1000, storage1000, http[{1000, 8}].events_per_s});
    add("parse_ceiling_100", parse100);
    add("parse_ceiling_1000", parse1000);
    add("storage_ceiling_100", storage100);
    add("storage_ceiling_1000", storage1000);
    std::printf("\n%-44s %14s %10s %10s %10s %8s\n", "run", "events/s", "p50 ms", "p99 ms",
                "max ms", "ratio");
    std::printf("%-44s %14s\n", "ceiling: parse (RapidJSON), batch 100", Fmt(parse100).c_str());
    std::printf("%-44s %14s\n", "ceiling: parse (RapidJSON), batch 1000", Fmt(parse1000).c_str());
    std::printf("%-44s %14s\n", "ceiling: storage (SQLite), tx of 100", Fmt(storage100).c_str());
    std::printf("%-44s %14s\n", "ceiling: storage (SQLite), tx of 1000", Fmt(storage1000).c_str());
    for (int batch : {100, 1000}) {
        for (int conns : {1, 8, 32}) {
            const auto& h = http[{batch, conns}];
            std::string name = "ceiling: HTTP echo, batch " + std::to_string(batch) + ", " +
                               std::to_string(conns) + " conn";
            std::printf("%-44s %14s %10s %10s %10s\n", name.c_str(), Fmt(h.events_per_s).c_str(),
                        Fmt(h.p50_ms, 2).c_str(), Fmt(h.p99_ms, 2).c_str(),
                        Fmt(h.max_ms, 2).c_str());
            std::string key = "http_ceiling_" + std::to_string(batch) + "_" + std::to_string(conns);
            add(key, h.events_per_s);
        }
    }
    for (int batch : {100, 1000}) {
        for (int conns : {1, 8, 32}) {
            const auto& r = ingest[{batch, conns}];
            double lowest =
                std::min(batch == 100 ? lowest100 : lowest1000, http[{batch, conns}].events_per_s);
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
    std::printf("%-44s %14s\n", "replay: members/s (push-now)", Fmt(replay_rate).c_str());
    std::printf("%-44s %14s\n", "RSS MB: server under ingest (peak)", Fmt(server_rss, 1).c_str());
    std::printf("%-44s %14s\n", "RSS MB: replay (peak)", Fmt(replay_rss, 1).c_str());
    if (baseline) {
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
    add("sync_p50_ms", sync_p50);
    add("sync_p99_ms", sync_p99);
    add("sync_entries_per_accepted_event", coalescing);
    add("replay_members_per_s", replay_rate);
    add("replay_members", replay_members);
    add("server_peak_rss_mb", server_rss);
    add("replay_peak_rss_mb", replay_rss);
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
               "[--replay-members N] [--baseline-audsync PATH --baseline-bench PATH] | echo\n";
        return 2;
    }
    std::map<std::string, std::string> flags;
    for (int i = 2; i + 1 < argc; i += 2) flags[argv[i]] = argv[i + 1];
    flags["--self"] = argv[0];
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
