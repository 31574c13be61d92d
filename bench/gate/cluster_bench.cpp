// SPDX-License-Identifier: Apache-2.0
// The gateway's cluster session directory, end to end: gateway processes (gate_bench_node with a
// ClusterConf) on a real etcd started here (fsync on, as in production), a backend node in this
// process, and clients (ember::client) in this process too, so one steady clock times both ends.
//
//   logins_per_s        logins through one gateway, 64 at once: each is the login method and
//                       the claim of its UID in etcd before the Welcome
//   push_to_uid         a backend pushes to players by UID, at a steady rate, to the gateway
//                       that holds them (found through the backend's directory cache)
//   resume_elsewhere    1,000 resumable players' connections to one gateway drop at once; each
//                       resumes its session on the other gateway (handover through RpcResume,
//                       then the claim of its UID), timed from its drop to its Welcome
//   relogin_after_kill  a gateway killed with SIGKILL under 1,000 players; each logs in again on
//                       the other gateway as soon as its connection drops (a dead gateway's
//                       sessions cannot be resumed: their state died with it)
//
//   cluster_bench [--runs N] [--quick]   prints one JSON line per result and run
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ember/client.hpp>
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <fstream>
#include <functional>
#include <iterator>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cluster/etcd/etcd_client.hpp"
#include "gate_bench.pb.h"
#include "support/etcd_server.hpp"
#include "support/process.hpp"
#include "support/scratch_dir.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace client = ember::client;

constexpr const char* kCluster = "bench";

struct Settings {
  int runs = 3;
  int logins = 2000;
  int login_concurrency = 64;
  int push_clients = 200;
  double push_rate = 2000;  // per second
  double push_seconds = 3;
  int movers = 1000;
};

const char* commit() {
  const char* c = std::getenv("EMBER_COMMIT");
  return c != nullptr ? c : "unknown";
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// JSON has no NaN: a figure nothing was measured for is null.
std::string number(double value, int decimals) {
  if (std::isnan(value)) {
    return "null";
  }
  char out[64];
  std::snprintf(out, sizeof out, "%.*f", decimals, value);
  return out;
}

// Nearest rank: the smallest value that at least `p` of the samples do not exceed.
double percentile(std::vector<double> values, double p) {
  if (values.empty()) {
    return NAN;
  }
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

/// A gateway node of the cluster: the GateConf of scripts/bench_gate.sh (its limits out of the
/// way, so only the directory is measured), with the login method and the Bench service.
std::string yaml(const std::string& id, const std::string& etcd, int port) {
  return "NodeConf: {NodeId: " + id + ", WorkerThreads: 2, ShutdownTimeout: 2s}\n" +
         R"(SystemLogger: {Level: warn}
ClusterConf:
  Name: )" +
         kCluster +
         R"(
  Secret: s3cret
  ETCDConf: {Endpoints: [)" +
         etcd + R"(]}
  DiscoveryConf: {TTL: 2s}
GateConf:
  WebSocketAddr: 127.0.0.1:)" +
         std::to_string(port) + R"(
  Login: auth.RpcLogin
  Routes: [bench.*]
  IoThreads: 1
  MaxConnections: 1000000
  RequestsPerSecond: 1000000
  RequestBurst: 1000000
  MaxInFlight: 1024
  SendQueueBytes: 16777216
  HandshakeTimeout: 120s
  Heartbeat: 10m
  IdleTimeout: 1h
ServiceConf:
  StartServices:
    - {ClassName: Auth, ServiceName: auth}
    - {ClassName: Bench, ServiceName: bench}
)";
}

/// A gateway process (gate_bench_node) in the cluster, stopped by PID when it goes away.
class Gateway {
 public:
  Gateway() = default;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;
  ~Gateway() { stop(); }

  /// Starts it and waits (bounded) until a client can log in through it; "" or why not.
  std::string start(const std::string& id, const std::string& etcd,
                    const ember::testing::ScratchDir& dir, client::Runtime& runtime) {
    log_ = (dir / (id + ".log")).string();
    const int port = ember::testing::free_port();
    const std::string config = (dir / (id + ".yaml")).string();
    std::ofstream(config) << yaml(id, etcd, port);
    if (const int rc =
            ember::testing::spawn_logged({GATE_BENCH_NODE_BIN, "--config", config}, log_, pid_);
        rc != 0) {
      pid_ = 0;
      return "cannot start " GATE_BENCH_NODE_BIN ": " + std::string(std::strerror(rc));
    }
    url_ = "ws://127.0.0.1:" + std::to_string(port) + "/ws";
    const auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = 0;
        return "gateway " + id + " exited:\n" + log_tail();
      }
      if (client::Client::connect(
              {.url = url_, .token = "probe-" + id, .timeout = 1s, .runtime = &runtime})) {
        return {};
      }
      std::this_thread::sleep_for(50ms);
    }
    return "gateway " + id + " accepts no login within 20 s:\n" + log_tail();
  }

  void kill_hard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = 0;
    }
  }
  void stop() {
    ember::testing::stop_process(pid_, 10s);
    pid_ = 0;
  }
  [[nodiscard]] const std::string& url() const { return url_; }
  [[nodiscard]] std::string log_tail() const {
    std::ifstream in(log_);
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
  }

 private:
  std::string url_;
  std::string log_;
  pid_t pid_ = 0;
};

struct Logins {
  std::vector<std::unique_ptr<client::Client>> clients;  // null where the login failed
  int failed = 0;
  std::string first_error;
  double seconds = 0;
};

/// Logs `uids` in through `url` from `concurrency` threads, each looping blocking connects, as
/// many players arriving at once would; bounded by `deadline` (the rest count as failed).
Logins login_all(client::Runtime& runtime, const std::string& url,
                 const std::vector<std::string>& uids, int concurrency, Clock::time_point deadline,
                 const std::function<void(client::Pushed&&)>& on_push = {}, bool resume = false) {
  Logins out;
  out.clients.resize(uids.size());
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      for (std::size_t i = next++; i < uids.size() && Clock::now() < deadline; i = next++) {
        auto c = client::Client::connect({.url = url,
                                          .token = uids[i],
                                          .timeout = 10s,
                                          .runtime = &runtime,
                                          .on_push = on_push,
                                          .resume = resume});
        if (c) {
          out.clients[i] = std::move(*c);
          continue;
        }
        std::lock_guard lock(mu);
        if (out.first_error.empty()) {
          out.first_error = c.error().to_string();
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  out.failed = static_cast<int>(std::count(out.clients.begin(), out.clients.end(), nullptr));
  return out;
}

std::vector<std::string> uids(const std::string& prefix, int count) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(prefix + std::to_string(i));
  }
  return out;
}

void report_failures(const char* scenario, int failed, const std::string& first_error) {
  if (failed > 0) {
    std::fprintf(stderr, "cluster_bench: %s: %d failed, the first: %s\n", scenario, failed,
                 first_error.c_str());
  }
}

void logins_per_s(const Settings& s, int run, client::Runtime& runtime, const Gateway& gateway) {
  // The clients stay logged in until the batch ends: a logout deletes its binding, and those
  // deletes would share etcd with the claims being measured.
  Logins done =
      login_all(runtime, gateway.url(), uids("r" + std::to_string(run) + "-login-", s.logins),
                s.login_concurrency, Clock::now() + 120s);
  if (done.failed > 0) {
    report_failures("logins_per_s", done.failed, done.first_error);
    std::fprintf(stderr, "%s\n", gateway.log_tail().c_str());
  }
  std::printf(
      "{\"suite\":\"gate\",\"commit\":\"%s\",\"scenario\":\"logins_per_s\",\"run\":%d,"
      "\"logins\":%d,\"failed\":%d,\"logins_per_s\":%.0f}\n",
      commit(), run, s.logins - done.failed, done.failed, (s.logins - done.failed) / done.seconds);
  std::fflush(stdout);
}

// What the push clients saw; shared with their callbacks, which run on the runtime's threads and
// may outlive this scenario by a late push.
struct Arrivals {
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::atomic<std::int64_t> measure_from{std::numeric_limits<std::int64_t>::max()};
};

void push_to_uid(const Settings& s, int run, client::Runtime& runtime, ember::Node& backend,
                 const Gateway& gateway) {
  auto arrivals = std::make_shared<Arrivals>();
  auto on_push = [arrivals](client::Pushed&& p) {
    const std::int64_t now = Clock::now().time_since_epoch().count();
    gatebench::Blob blob;
    if (!blob.ParseFromString(p.payload) || blob.data().empty()) {
      return;
    }
    const std::int64_t sent = std::stoll(blob.data());
    if (sent < arrivals->measure_from.load()) {
      return;  // a warm-up push
    }
    std::lock_guard lock(arrivals->mu);
    arrivals->latencies_ms.push_back(static_cast<double>(now - sent) / 1e6);
  };
  const std::vector<std::string> players =
      uids("r" + std::to_string(run) + "-push-", s.push_clients);
  Logins logged = login_all(runtime, gateway.url(), players, 16, Clock::now() + 60s, on_push);
  if (logged.failed > 0) {
    report_failures("push_to_uid logins", logged.failed, logged.first_error);
    return;
  }
  auto push = [&](const std::string& uid) {
    gatebench::Blob blob;
    blob.set_data(std::to_string(Clock::now().time_since_epoch().count()));
    return ember::gate::push_to_uid(backend, uid, "bench.OnPush", blob);
  };
  // One push to every player fills this node's directory cache, as a backend that has run a
  // while has it; the backend may also not know the new gateway yet, hence the retries.
  const auto warm_deadline = Clock::now() + 15s;
  for (const std::string& uid : players) {
    while (!push(uid) && Clock::now() < warm_deadline) {
      std::this_thread::sleep_for(20ms);
    }
  }
  if (Clock::now() >= warm_deadline) {
    std::fprintf(stderr, "cluster_bench: push_to_uid: the warm-up did not finish in 15 s\n");
    return;
  }

  // An open schedule: push i is due at start + i / rate whatever the others took. push_to_uid
  // blocks until the gateway took the push, so a few threads share the schedule.
  const int total = static_cast<int>(s.push_rate * s.push_seconds);
  const auto period = std::chrono::duration<double>(1.0 / s.push_rate);
  const auto start = Clock::now();
  arrivals->measure_from = start.time_since_epoch().count();
  std::atomic<int> next{0};
  std::atomic<int> sent{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(run * 100 + t));
      std::uniform_int_distribution<std::size_t> pick(0, players.size() - 1);
      for (int i = next++; i < total; i = next++) {
        std::this_thread::sleep_until(start +
                                      std::chrono::duration_cast<Clock::duration>(period * i));
        if (auto pushed = push(players[pick(random)])) {
          sent.fetch_add(1);
        } else {
          failed.fetch_add(1);
          std::lock_guard lock(mu);
          if (first_error.empty()) {
            first_error = pushed.error().to_string();
          }
        }
      }
    });
  }
  for (auto& t : senders) {
    t.join();
  }
  const double sending_s = std::chrono::duration<double>(Clock::now() - start).count();
  auto arrived = [&] {
    std::lock_guard lock(arrivals->mu);
    return static_cast<int>(arrivals->latencies_ms.size());
  };
  const auto arrival_deadline = Clock::now() + 5s;
  while (arrived() < sent.load() && Clock::now() < arrival_deadline) {
    std::this_thread::sleep_for(1ms);
  }
  report_failures("push_to_uid", failed.load(), first_error);
  std::vector<double> latencies;
  {
    std::lock_guard lock(arrivals->mu);
    latencies = arrivals->latencies_ms;
  }
  const int lost = sent.load() - static_cast<int>(latencies.size());
  if (lost > 0) {
    std::fprintf(stderr, "cluster_bench: push_to_uid: %d of %d pushes did not arrive in 5 s\n",
                 lost, sent.load());
  }
  std::printf(
      "{\"suite\":\"gate\",\"commit\":\"%s\",\"scenario\":\"push_to_uid\",\"run\":%d,"
      "\"count\":%zu,\"failed\":%d,\"lost\":%d,\"pushes_per_s\":%.0f,\"p50_ms\":%s,"
      "\"p99_ms\":%s}\n",
      commit(), run, latencies.size(), failed.load(), lost, total / sending_s,
      number(percentile(latencies, 0.5), 3).c_str(),
      number(percentile(latencies, 0.99), 3).c_str());
  std::fflush(stdout);
}

void relogin_after_kill(const Settings& s, int run, client::Runtime& runtime, Gateway& dying,
                        const Gateway& survivor) {
  const std::vector<std::string> players = uids("r" + std::to_string(run) + "-move-", s.movers);
  Logins on_dying =
      login_all(runtime, dying.url(), players, s.login_concurrency, Clock::now() + 60s);
  if (on_dying.failed > 0) {
    report_failures("relogin_after_kill logins", on_dying.failed, on_dying.first_error);
    return;
  }
  // One thread per player: each reacts to its own connection closing, as a real client does,
  // and tries again (briefly paused) until it is welcomed or the deadline passes. Refusals are
  // expected until the killed gateway's registration expires: the survivor picks the login
  // service's instance by hash over the whole cluster, the dead node's too.
  std::latch ready(static_cast<std::ptrdiff_t>(players.size()));
  std::vector<std::optional<Clock::time_point>> welcomed(players.size());
  std::vector<std::unique_ptr<client::Client>> moved(players.size());
  std::atomic<int> retries{0};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < players.size(); ++i) {
    threads.emplace_back([&, i] {
      ready.count_down();
      if (!on_dying.clients[i]->wait_closed(30s)) {
        return;
      }
      const auto deadline = Clock::now() + 30s;
      while (Clock::now() < deadline) {
        auto c = client::Client::connect(
            {.url = survivor.url(), .token = players[i], .timeout = 10s, .runtime = &runtime});
        if (c) {
          welcomed[i] = Clock::now();
          moved[i] = std::move(*c);
          return;
        }
        retries.fetch_add(1);
        {
          std::lock_guard lock(mu);
          if (first_error.empty()) {
            first_error = c.error().to_string();
          }
        }
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  ready.wait();
  const auto killed = Clock::now();
  dying.kill_hard();
  for (auto& t : threads) {
    t.join();
  }
  std::vector<double> back;
  for (const auto& w : welcomed) {
    if (w) {
      back.push_back(ms_between(killed, *w));
    }
  }
  const int failed = static_cast<int>(players.size() - back.size());
  report_failures("relogin_after_kill", failed, first_error);
  if (retries.load() > 0) {
    std::fprintf(stderr, "cluster_bench: relogin_after_kill: %d attempts refused, the first: %s\n",
                 retries.load(), first_error.c_str());
  }
  std::printf(
      "{\"suite\":\"gate\",\"commit\":\"%s\",\"scenario\":\"relogin_after_kill\",\"run\":%d,"
      "\"players\":%zu,\"failed\":%d,\"retries\":%d,\"p50_ms\":%s,\"p99_ms\":%s,"
      "\"all_back_ms\":%s}\n",
      commit(), run, back.size(), failed, retries.load(), number(percentile(back, 0.5), 1).c_str(),
      number(percentile(back, 0.99), 1).c_str(),
      number(back.empty() ? NAN : *std::max_element(back.begin(), back.end()), 1).c_str());
  std::fflush(stdout);
}

void resume_elsewhere(const Settings& s, int run, client::Runtime& runtime, const Gateway& from,
                      const Gateway& to) {
  const std::vector<std::string> players = uids("r" + std::to_string(run) + "-resume-", s.movers);
  Logins on_from =
      login_all(runtime, from.url(), players, s.login_concurrency, Clock::now() + 60s, {}, true);
  if (on_from.failed > 0) {
    report_failures("resume_elsewhere logins", on_from.failed, on_from.first_error);
    return;
  }
  // Every player at once, as when a network path to one gateway fails.
  std::latch start(static_cast<std::ptrdiff_t>(players.size()) + 1);
  std::vector<double> took(players.size(), NAN);
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < players.size(); ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      const auto dropped = Clock::now();
      auto resumed = on_from.clients[i]->resume(to.url());
      if (resumed) {
        took[i] = ms_between(dropped, Clock::now());
        return;
      }
      std::lock_guard lock(mu);
      if (first_error.empty()) {
        first_error = resumed.error().to_string();
      }
    });
  }
  const auto began = Clock::now();
  start.arrive_and_wait();
  for (auto& t : threads) {
    t.join();
  }
  const double all_ms = ms_between(began, Clock::now());
  std::vector<double> back;
  std::copy_if(took.begin(), took.end(), std::back_inserter(back),
               [](double v) { return !std::isnan(v); });
  const int failed = static_cast<int>(players.size() - back.size());
  report_failures("resume_elsewhere", failed, first_error);
  std::printf(
      "{\"suite\":\"gate\",\"commit\":\"%s\",\"scenario\":\"resume_elsewhere\",\"run\":%d,"
      "\"players\":%zu,\"failed\":%d,\"p50_ms\":%s,\"p99_ms\":%s,\"all_back_ms\":%s}\n",
      commit(), run, back.size(), failed, number(percentile(back, 0.5), 1).c_str(),
      number(percentile(back, 0.99), 1).c_str(), number(all_ms, 1).c_str());
  std::fflush(stdout);
}

/// Waits (bounded) until node `id` is out of the cluster's registry. A gateway killed with
/// SIGKILL stays registered until its lease expires, and a gateway started meanwhile would send
/// some of its logins to the dead node's login service.
bool wait_left(ember::etcd::Client& etcd, const std::string& id) {
  const std::string key = std::string("/ember/") + kCluster + "/nodes/" + id;
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    if (auto held = etcd.get(key); held && held->kvs.empty()) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--runs" && i + 1 < argc) {
      s.runs = std::atoi(argv[++i]);
    } else if (flag == "--quick") {
      s.logins = 500;
      s.push_seconds = 1;
    } else {
      std::fprintf(stderr, "cluster_bench: unknown argument %s\n", flag.c_str());
      return 2;
    }
  }
  ember::testing::ScratchDir dir("ember-gate-cluster-bench");
  ember::testing::EtcdServer etcd;
  etcd.set_durable(true);
  if (std::string why = etcd.start(); !why.empty()) {
    std::fprintf(stderr, "cluster_bench: etcd: %s\n", why.c_str());
    return 1;
  }
  (void)ember::configure_logging(ember::LogLevel::warn);  // the JSON lines stand out on a terminal
  ember::NodeConfig c;
  c.node_id = "backend";
  c.worker_threads = 2;
  c.cluster.enabled = true;
  c.cluster.name = kCluster;
  c.cluster.secret = "s3cret";
  c.cluster.etcd_endpoints = {etcd.endpoint()};
  c.cluster.ttl = 2s;
  auto registry = ember::etcd::Client::connect({.endpoints = {etcd.endpoint()}});
  if (!registry) {
    std::fprintf(stderr, "cluster_bench: %s\n", registry.error().to_string().c_str());
    return 1;
  }
  ember::Node backend(std::move(c));
  if (auto started = backend.start(); !started) {
    std::fprintf(stderr, "cluster_bench: the backend: %s\n", started.error().to_string().c_str());
    return 1;
  }
  client::Runtime runtime(2);  // every client is gone before it (they live in the scenarios)
  int status = 0;
  for (int run = 1; run <= s.runs && status == 0; ++run) {
    // New node ids every run: a killed gateway's registration lingers for the TTL.
    Gateway first;
    Gateway second;
    const std::string suffix = "-r" + std::to_string(run);
    if (std::string why = first.start("gate-a" + suffix, etcd.endpoint(), dir, runtime);
        !why.empty()) {
      std::fprintf(stderr, "cluster_bench: %s\n", why.c_str());
      status = 1;
      break;
    }
    logins_per_s(s, run, runtime, first);
    push_to_uid(s, run, runtime, backend, first);
    if (std::string why = second.start("gate-b" + suffix, etcd.endpoint(), dir, runtime);
        !why.empty()) {
      std::fprintf(stderr, "cluster_bench: %s\n", why.c_str());
      status = 1;
      break;
    }
    resume_elsewhere(s, run, runtime, first, second);
    relogin_after_kill(s, run, runtime, first, second);
    second.stop();
    for (const std::string& id : {"gate-a" + suffix, "gate-b" + suffix}) {
      if (!wait_left(**registry, id)) {
        std::fprintf(stderr, "cluster_bench: %s is still registered after 10 s\n", id.c_str());
      }
    }
  }
  (void)backend.stop();
  etcd.stop();
  return status;
}
