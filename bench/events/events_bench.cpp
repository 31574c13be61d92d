// SPDX-License-Identifier: Apache-2.0
//
// Cluster event fan-out: one event to 10,000 subscribing services spread over 3 nodes, for each
// event backend, next to plain NATS publish/subscribe measured in the same run. The three nodes
// are three ember::Node instances in this process (one worker thread each); between them events
// cross real loopback TCP ("cluster") or a real nats-server ("nats"), both started here on free
// ports together with etcd. Scenarios are interleaved over the repetitions; medians go to a table
// and to one JSON object per metric, appended to --out.
//
//   ember_events_bench [--quick] [--reps N] [--events N] [--subscribers N] [--out FILE]
//                      [--only SCENARIO]
//
// Scenarios (100-byte payload):
//   local           10,000 subscribers on one node (3 worker threads), no cluster: the floor
//   cluster         the "cluster" backend: 1/3 of the subscribers on the publishing node, 1/3 on
//                   each of two others, reached with one frame per node
//   nats            the "nats" backend, same layout, one NATS message per node
//   nats_plain_10k  plain NATS (nats.c): 10,000 subscriptions on the same subject over three
//                   connections, one publisher connection
//   nats_plain      plain NATS: three subscriber connections, one subscription each
// Metrics: deliveries/s for a burst of --events events (each delivered to every subscriber),
// and for the Ember scenarios the p50 time until one event reached all subscribers.
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ember/ember.hpp>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "events.pb.h"
#include "report.hpp"
#include "support/etcd_server.hpp"
#include "support/nats_server.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using ember::bench::commit_id;
using ember::bench::json_number;
using ember::bench::median;

constexpr ember::EventType kTick = 1;

struct Settings {
  bool quick = false;
  int reps = 5;
  int events = 200;
  int subscribers = 10'000;
  int latency_rounds = 21;
  std::string out = "bench-results-events.jsonl";
  std::string only;  // run one scenario (profiling)
};

/// Counts deliveries; one instance per node, shared by its subscribers.
struct Counter {
  std::atomic<std::uint64_t> n{0};
};

class Sub : public ember::Service {
 public:
  explicit Sub(Counter* counter) : counter_(counter) {}
  ember::Status on_init() override {
    auto sub = subscribe<ebench::Tick>(kTick, [c = counter_](const ebench::Tick&) {
      c->n.fetch_add(1, std::memory_order_relaxed);
    });
    return sub ? ember::Status{} : ember::Status{sub.error()};
  }

 private:
  Counter* counter_;
};

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(50us);
  }
  return true;
}

ebench::Tick tick() {
  ebench::Tick t;
  t.set_data(std::string(100, 'x'));
  return t;
}

struct Result {
  double deliveries_per_s = -1;
  double latency_p50_ms = -1;
};

/// Builds `nodes` nodes with the subscribers spread evenly, measures, stops them.
class EmberFanout {
 public:
  EmberFanout(const Settings& s, ember::EventBackend backend, int nodes, const std::string& etcd,
              const std::string& nats)
      : settings_(s) {
    for (int i = 0; i < nodes; ++i) {
      ember::NodeConfig c;
      c.node_id = "n" + std::to_string(i);
      // The same number of worker threads in every layout: 3 nodes x 1, or 1 node x 3.
      c.worker_threads = nodes == 1 ? 3 : 1;
      c.events.backend = backend;
      if (backend == ember::EventBackend::cluster) {
        c.cluster.enabled = true;
        c.cluster.name = "events-bench";
        c.cluster.secret = "bench";
        c.cluster.etcd_endpoints = {etcd};
      } else if (backend == ember::EventBackend::nats) {
        c.events.nats.endpoints = {nats};
      }
      counters_.push_back(std::make_unique<Counter>());
      nodes_.push_back(std::make_unique<ember::Node>(c));
    }
    for (int i = 0; i < s.subscribers; ++i) {
      const auto node = static_cast<std::size_t>(i % nodes);
      ember::ServiceConfig sc;
      sc.name = "sub";
      sc.id = std::to_string(i);
      (void)nodes_[node]->add_service(std::make_unique<Sub>(counters_[node].get()), sc);
    }
  }
  ~EmberFanout() {
    for (auto& n : nodes_) {
      (void)n->stop();
    }
  }

  std::string start() {
    for (auto& n : nodes_) {
      if (auto st = n->start(); !st) {
        return st.error().to_string();
      }
    }
    // Until every node's subscription has reached the publisher (etcd watch or NATS interest).
    const bool ready = wait_until(
        [&] {
          (void)ember::publish(*nodes_[0], kTick, tick());
          for (auto& c : counters_) {
            if (c->n.load() == 0) {
              return false;
            }
          }
          return true;
        },
        20s);
    if (!ready) {
      return "the subscriptions did not reach the publisher within 20 s";
    }
    return settle();
  }

  Result run() {
    Result r;
    const ebench::Tick payload = tick();
    const std::uint64_t base = delivered();
    const std::uint64_t want =
        base + static_cast<std::uint64_t>(settings_.events) * settings_.subscribers;
    const auto t0 = Clock::now();
    for (int i = 0; i < settings_.events; ++i) {
      (void)ember::publish(*nodes_[0], kTick, payload);
    }
    if (!wait_until([&] { return delivered() >= want; }, 120s)) {
      std::fprintf(stderr, "  burst incomplete: %llu of %llu deliveries\n",
                   static_cast<unsigned long long>(delivered() - base),
                   static_cast<unsigned long long>(want - base));
      return r;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    r.deliveries_per_s = static_cast<double>(want - base) / secs;
    std::vector<double> ms;
    for (int i = 0; i < settings_.latency_rounds; ++i) {
      const std::uint64_t target = delivered() + static_cast<std::uint64_t>(settings_.subscribers);
      const auto s0 = Clock::now();
      (void)ember::publish(*nodes_[0], kTick, payload);
      if (!wait_until([&] { return delivered() >= target; }, 10s)) {
        return r;
      }
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
    }
    std::sort(ms.begin(), ms.end());
    r.latency_p50_ms = ms[ms.size() / 2];
    return r;
  }

 private:
  std::uint64_t delivered() const {
    std::uint64_t n = 0;
    for (const auto& c : counters_) {
      n += c->n.load(std::memory_order_relaxed);
    }
    return n;
  }
  /// Waits until the warm-up events stopped arriving.
  std::string settle() {
    std::uint64_t last = delivered();
    for (int quiet = 0, rounds = 0; quiet < 3 && rounds < 200; ++rounds) {
      std::this_thread::sleep_for(20ms);
      const std::uint64_t now = delivered();
      quiet = now == last ? quiet + 1 : 0;
      last = now;
    }
    return {};
  }

  const Settings& settings_;
  std::vector<std::unique_ptr<Counter>> counters_;
  std::vector<std::unique_ptr<ember::Node>> nodes_;
};

void count_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<std::atomic<std::uint64_t>*>(closure)->fetch_add(1, std::memory_order_relaxed);
  natsMsg_Destroy(msg);
}

/// Plain NATS: `subscriptions` subscriptions spread over three connections, one publisher.
Result plain_nats(const Settings& s, const std::string& url, int subscriptions, int messages) {
  Result r;
  std::atomic<std::uint64_t> got{0};
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  natsOptions_SetURL(opts, url.c_str());
  natsOptions_UseGlobalMessageDelivery(opts, true);  // as the Ember backend does
  std::vector<natsConnection*> conns(3, nullptr);
  std::vector<natsSubscription*> subs;
  natsConnection* pub = nullptr;
  bool ok = natsConnection_Connect(&pub, opts) == NATS_OK;
  for (auto& c : conns) {
    ok = ok && natsConnection_Connect(&c, opts) == NATS_OK;
  }
  const std::string subject = "bench.plain." + std::to_string(subscriptions);
  for (int i = 0; ok && i < subscriptions; ++i) {
    natsSubscription* sub = nullptr;
    ok = natsConnection_Subscribe(&sub, conns[static_cast<std::size_t>(i % 3)], subject.c_str(),
                                  &count_message, &got) == NATS_OK;
    if (ok) {
      natsSubscription_SetPendingLimits(sub, -1, -1);
      subs.push_back(sub);
    }
  }
  for (auto* c : conns) {
    ok = ok && natsConnection_Flush(c) == NATS_OK;
  }
  if (ok) {
    const std::string payload = tick().SerializeAsString();
    const std::uint64_t want = static_cast<std::uint64_t>(messages) * subscriptions;
    const auto t0 = Clock::now();
    for (int i = 0; i < messages; ++i) {
      natsConnection_Publish(pub, subject.c_str(), payload.data(),
                             static_cast<int>(payload.size()));
    }
    natsConnection_Flush(pub);
    if (wait_until([&] { return got.load() >= want; }, 120s)) {
      r.deliveries_per_s =
          static_cast<double>(want) / std::chrono::duration<double>(Clock::now() - t0).count();
    } else {
      std::fprintf(stderr, "  plain NATS burst incomplete: %llu of %llu\n",
                   static_cast<unsigned long long>(got.load()),
                   static_cast<unsigned long long>(want));
    }
  } else {
    std::fprintf(stderr, "  plain NATS set-up failed\n");
  }
  for (auto* sub : subs) {
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
  }
  for (auto* c : conns) {
    natsConnection_Destroy(c);
  }
  natsConnection_Destroy(pub);
  natsOptions_Destroy(opts);
  (void)s;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--quick") {
      s.quick = true;
      s.reps = 3;
      s.events = 50;
      s.latency_rounds = 11;
    } else if (arg == "--reps") {
      s.reps = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--events") {
      s.events = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--subscribers") {
      s.subscribers = std::max(3, std::atoi(next().c_str()));
    } else if (arg == "--out") {
      s.out = next();
    } else if (arg == "--only") {
      s.only = next();
    } else {
      std::fprintf(stderr,
                   "usage: ember_events_bench [--quick] [--reps N] [--events N] "
                   "[--subscribers N] [--out FILE] [--only SCENARIO]\n");
      return 2;
    }
  }
  ember::set_log_level(ember::LogLevel::warn);
  ember::testing::EtcdServer etcd;
  ember::testing::NatsServer nats;
  if (std::string why = etcd.start(); !why.empty()) {
    std::fprintf(stderr, "etcd: %s\n", why.c_str());
    return 1;
  }
  if (std::string why = nats.start(); !why.empty()) {
    std::fprintf(stderr, "nats-server: %s\n", why.c_str());
    return 1;
  }
  std::printf("fan-out of %d events to %d subscribers over 3 nodes, %d repetitions\n", s.events,
              s.subscribers, s.reps);

  std::map<std::string, std::vector<double>> rate;
  std::map<std::string, std::vector<double>> latency;
  const std::vector<std::pair<std::string, ember::EventBackend>> ember_scenarios = {
      {"local", ember::EventBackend::local},
      {"cluster", ember::EventBackend::cluster},
      {"nats", ember::EventBackend::nats}};
  // Plain NATS gets as many messages per subscriber-connection as it needs to run ~as long.
  const int plain_messages = s.events * s.subscribers / 3;
  for (int rep = 0; rep < s.reps; ++rep) {
    for (const auto& [name, backend] : ember_scenarios) {
      if (!s.only.empty() && s.only != name) {
        continue;
      }
      Result r;
      {
        EmberFanout run(s, backend, backend == ember::EventBackend::local ? 1 : 3, etcd.endpoint(),
                        nats.url());
        if (std::string why = run.start(); !why.empty()) {
          std::fprintf(stderr, "%s: %s\n", name.c_str(), why.c_str());
        } else {
          r = run.run();
        }
      }
      rate[name].push_back(r.deliveries_per_s);
      latency[name].push_back(r.latency_p50_ms);
      std::printf("  rep %d %-15s %12.0f deliveries/s  one event to all: %.2f ms\n", rep + 1,
                  name.c_str(), r.deliveries_per_s, r.latency_p50_ms);
      std::fflush(stdout);
    }
    if (!s.only.empty() && !s.only.starts_with("nats_plain")) {
      continue;
    }
    const Result p10k = plain_nats(s, nats.url(), s.subscribers, s.events);
    rate["nats_plain_10k"].push_back(p10k.deliveries_per_s);
    const Result p3 = plain_nats(s, nats.url(), 3, plain_messages);
    rate["nats_plain"].push_back(p3.deliveries_per_s);
    std::printf("  rep %d %-15s %12.0f deliveries/s\n  rep %d %-15s %12.0f deliveries/s\n", rep + 1,
                "nats_plain_10k", p10k.deliveries_per_s, rep + 1, "nats_plain",
                p3.deliveries_per_s);
    std::fflush(stdout);
  }

  const std::string commit = commit_id();
  std::ofstream json(s.out, std::ios::app);
  const std::string peer = "nats_plain_10k/deliveries_per_s";
  const double peer_rate = median(rate["nats_plain_10k"]);
  std::printf("\n%-15s %16s %18s %14s\n", "scenario", "deliveries/s", "vs nats_plain_10k",
              "one event p50");
  auto emit = [&](const std::string& scenario, const std::string& metric, const std::string& unit,
                  const std::vector<double>& runs, bool compare) {
    const double v = median(runs);
    const double ratio = compare && v > 0 && peer_rate > 0 ? v / peer_rate : -1;
    std::string line = "{\"suite\":\"events\",\"scenario\":\"" + scenario + "\",\"metric\":\"" +
                       metric + "\",\"value\":" + json_number(v) + ",\"unit\":\"" + unit +
                       "\",\"runs\":[";
    for (std::size_t i = 0; i < runs.size(); ++i) {
      line += (i == 0 ? "" : ",") + json_number(runs[i]);
    }
    line += "],\"ratio_vs\":" + (compare ? "\"" + peer + "\"" : std::string("null"));
    line += ",\"ratio\":" + (ratio >= 0 ? json_number(ratio) : std::string("null"));
    line += ",\"subscribers\":" + std::to_string(s.subscribers) +
            ",\"events\":" + std::to_string(s.events) + ",\"commit\":\"" + commit + "\"}";
    json << line << "\n";
    return ratio;
  };
  for (const std::string name : {"local", "cluster", "nats", "nats_plain_10k", "nats_plain"}) {
    const bool compare = name != "nats_plain_10k";
    const double ratio = emit(name, "deliveries_per_s", "1/s", rate[name], compare);
    const double lat = latency.contains(name) ? median(latency[name]) : -1;
    if (lat >= 0) {
      emit(name, "one_event_to_all_p50_ms", "ms", latency[name], false);
    }
    char r[32] = "-";
    if (ratio >= 0) {
      std::snprintf(r, sizeof r, "%.2fx", ratio);
    }
    char l[32] = "-";
    if (lat >= 0) {
      std::snprintf(l, sizeof l, "%.2f ms", lat);
    }
    std::printf("%-15s %16.0f %18s %14s\n", name.c_str(), median(rate[name]), r, l);
  }
  std::printf("\nJSON lines appended to %s\n", s.out.c_str());
  return 0;
}
