// SPDX-License-Identifier: Apache-2.0
//
// What the admin listener costs the message path. With an AdminConf every service times each
// message (three clock reads, two histogram updates) and counts call outcomes; without one it
// pays a null check. The same local scenarios run on a node without and a node with AdminConf,
// interleaved (off/on, then on/off, ...), in one process; the table gives medians and on/off.
//
//   ember_admin_overhead_bench [--quick] [--reps N] [--out FILE]
//
// Scenarios: fanin (4 producers Send N each to one sink), pingpong (two services Send a ping
// back and forth) and call (one service makes N blocking Calls to another, pinned apart).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ember/ember.hpp>
#include <fstream>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "bench.pb.h"
#include "report.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using ember::Selector;
using ember::bench::commit_id;
using ember::bench::json_number;
using ember::bench::median;

struct Settings {
  int reps = 7;
  std::int64_t fanin_per_producer = 500'000;
  std::int64_t pingpong_roundtrips = 300'000;
  std::int64_t calls = 100'000;
  std::string out = "docs/bench-results-admin.jsonl";
};

ember::NodeConfig config(bool admin) {
  ember::NodeConfig c;
  c.node_id = admin ? "admin-on" : "admin-off";
  c.worker_threads = 2;
  c.call_timeout = std::chrono::seconds(30);
  c.admin.enabled = admin;  // loopback, a free port: the listener and its heartbeat run too
  return c;
}

ember::ServiceConfig named(std::string name, bool pinned = false) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  c.pinned = pinned;
  return c;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class Sink : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcCount", [this](const bench::Ping&) -> ember::Status {
      if (++count == expected) {
        done->set_value();
      }
      return {};
    });
  }
  std::int64_t count = 0;
  std::int64_t expected = 0;
  std::promise<void>* done = nullptr;
};

class Producer : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcGo", [this](const bench::Ping& p) -> ember::Status {
      auto sink = select(Selector::name("sink"));
      bench::Ping msg;
      for (std::int64_t i = 0; i < p.seq(); ++i) {
        msg.set_seq(i);
        (void)sink.send("RpcCount", msg);
      }
      return {};
    });
  }
};

double fanin(const Settings& s, bool admin) {
  ember::Node node(config(admin));
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  for (int i = 0; i < 4; ++i) {
    (void)node.add_service(std::make_unique<Producer>(), named("producer" + std::to_string(i)));
  }
  (void)node.start();
  std::promise<void> done;
  sink->expected = 4 * s.fanin_per_producer;
  sink->done = &done;
  bench::Ping go;
  go.set_seq(s.fanin_per_producer);
  const auto t0 = Clock::now();
  for (int i = 0; i < 4; ++i) {
    (void)ember::select(node, Selector::name("producer" + std::to_string(i))).send("RpcGo", go);
  }
  done.get_future().wait();
  const double secs = seconds_since(t0);
  (void)node.stop();
  return static_cast<double>(4 * s.fanin_per_producer) / secs;
}

class Bouncer : public ember::Service {
 public:
  explicit Bouncer(std::string peer) : peer_(std::move(peer)) {}
  ember::Status on_init() override {
    return handle("RpcPing", [this](const bench::Ping& p) -> ember::Status {
      if (p.seq() == 0) {
        done->set_value();
        return {};
      }
      bench::Ping next;
      next.set_seq(p.seq() - 1);
      return peer_bus.send("RpcPing", std::move(next));
    });
  }
  std::string peer_;
  ember::Bus peer_bus;
  std::promise<void>* done = nullptr;
};

double pingpong(const Settings& s, bool admin) {
  ember::Node node(config(admin));
  auto* a = static_cast<Bouncer*>(*node.add_service(std::make_unique<Bouncer>("b"), named("a")));
  auto* b = static_cast<Bouncer*>(*node.add_service(std::make_unique<Bouncer>("a"), named("b")));
  (void)node.start();
  a->peer_bus = a->select(Selector::name("b"));
  b->peer_bus = b->select(Selector::name("a"));
  std::promise<void> done;
  a->done = b->done = &done;
  bench::Ping first;
  first.set_seq(2 * s.pingpong_roundtrips);
  const auto t0 = Clock::now();
  (void)ember::select(node, Selector::name("a")).send("RpcPing", first);
  done.get_future().wait();
  const double secs = seconds_since(t0);
  (void)node.stop();
  return static_cast<double>(s.pingpong_roundtrips) / secs;
}

class Echo : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcEcho", [](const bench::Ping& p) -> ember::Result<bench::Ping> { return p; });
  }
};

class Caller : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcRun", [this](const bench::Ping& p) -> ember::Status {
      auto echo = select(Selector::name("echo"));
      bench::Ping req;
      for (std::int64_t i = 0; i < p.seq(); ++i) {
        req.set_seq(i);
        auto r = echo.call<bench::Ping>("RpcEcho", req);
        if (!r) {
          return r.error();
        }
      }
      return {};
    });
  }
};

double calls(const Settings& s, bool admin) {
  ember::Node node(config(admin));
  (void)node.add_service(std::make_unique<Caller>(), named("caller", true));
  (void)node.add_service(std::make_unique<Echo>(), named("echo", true));
  (void)node.start();
  bench::Ping run;
  run.set_seq(s.calls);
  const auto t0 = Clock::now();
  auto r = ember::select(node, Selector::name("caller"))
               .call<ember::NoReply>("RpcRun", run, {.timeout = std::chrono::minutes(5)});
  const double secs = seconds_since(t0);
  (void)node.stop();
  if (!r) {
    std::fprintf(stderr, "call scenario failed: %s\n", r.error().to_string().c_str());
    return -1;
  }
  return static_cast<double>(s.calls) / secs;
}

struct Scenario {
  const char* name;
  const char* metric;
  double (*run)(const Settings&, bool);
};

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      s.reps = 3;
      s.fanin_per_producer = 150'000;
      s.pingpong_roundtrips = 100'000;
      s.calls = 30'000;
    } else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      s.reps = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      s.out = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--reps N] [--out FILE]\n", argv[0]);
      return 2;
    }
  }
  ember::set_log_level(ember::LogLevel::warn);
  const std::vector<Scenario> scenarios = {{"fanin", "msgs_per_s", fanin},
                                           {"pingpong", "roundtrips_per_s", pingpong},
                                           {"call", "calls_per_s", calls}};
  std::map<std::string, std::map<bool, std::vector<double>>> runs;
  for (int rep = 0; rep < s.reps; ++rep) {
    for (const Scenario& sc : scenarios) {
      // Alternate which goes first, so warm-up and drift fall on both sides.
      for (bool admin : {rep % 2 == 1, rep % 2 == 0}) {
        const double v = sc.run(s, admin);
        runs[sc.name][admin].push_back(v);
        std::printf("rep %d %-9s admin %-3s %12.0f %s\n", rep + 1, sc.name, admin ? "on" : "off", v,
                    sc.metric);
        std::fflush(stdout);
      }
    }
  }
  const std::string commit = commit_id();
  std::ofstream json(s.out, std::ios::app);
  std::printf("\n%-9s %-17s %14s %14s %8s\n", "scenario", "metric", "admin off", "admin on",
              "on/off");
  for (const Scenario& sc : scenarios) {
    const double off = median(runs[sc.name][false]);
    const double on = median(runs[sc.name][true]);
    std::printf("%-9s %-17s %14.0f %14.0f %8.3f\n", sc.name, sc.metric, off, on,
                off > 0 ? on / off : 0.0);
    for (bool admin : {false, true}) {
      const auto& values = runs[sc.name][admin];
      std::string line = std::string("{\"suite\":\"admin\",\"scenario\":\"") + sc.name +
                         "\",\"impl\":\"" + (admin ? "admin_on" : "admin_off") +
                         "\",\"metric\":\"" + sc.metric +
                         "\",\"value\":" + json_number(admin ? on : off) + ",\"runs\":[";
      for (std::size_t i = 0; i < values.size(); ++i) {
        line += (i == 0 ? "" : ",") + json_number(values[i]);
      }
      line += "],\"ratio_vs\":\"admin_off\",\"ratio\":" +
              json_number(off > 0 ? (admin ? on : off) / off : 0) + ",\"commit\":\"" + commit +
              "\"}";
      json << line << "\n";
    }
  }
  return 0;
}
