// SPDX-License-Identifier: Apache-2.0
//
// Ember and CAF 0.17 side by side: the same scenarios, the same number of worker threads,
// interleaved repetitions in one process. Prints a table of medians with the Ember/CAF ratio and
// one JSON object per (scenario, impl, metric) line, also written to --out.
//
//   ember_vs_caf [--quick] [--reps N] [--threads N] [--out FILE] [--only SCENARIO]
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ember/ember.hpp>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "compare.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  bool quick = false;
  int reps = 5;
  int threads = 2;
  std::string out = "bench-results.jsonl";
  std::string only;
  std::string impl;  // "" = both
  std::int64_t pingpong_roundtrips = 1'000'000;
  std::int64_t fanin_per_producer = 1'000'000;
  std::int64_t call_count = 50'000;
  std::int64_t spawn_count = 20'000;
  std::int64_t timer_ops = 2'000'000;
};

struct Sample {
  std::string scenario;
  std::string impl;
  std::string metric;
  std::string unit;
  double value;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(usage.ru_utime) + sec(usage.ru_stime);
}

/// Heap bytes in use (glibc): unlike RSS, it is not fooled by memory freed by an earlier run.
double heap_bytes() {
  struct mallinfo2 info = mallinfo2();
  return static_cast<double>(info.uordblks) + static_cast<double>(info.hblkhd);
}

/// Percent of one core the process uses over `window` while the system under test sits idle.
double idle_cpu_percent(std::chrono::milliseconds window) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let spinning workers park
  double c0 = cpu_seconds();
  auto t0 = Clock::now();
  std::this_thread::sleep_for(window);
  return 100.0 * (cpu_seconds() - c0) / seconds_since(t0);
}

void percentiles(std::vector<double>& v, double& p50, double& p99) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
  };
  p50 = v.empty() ? 0 : at(0.50);
  p99 = v.empty() ? 0 : at(0.99);
}

// =============================================================================================
// Ember side

using ember::Result;
using ember::Selector;

ember::NodeConfig ember_config(const Settings& s) {
  ember::NodeConfig c;
  c.worker_threads = s.threads;
  c.call_timeout = std::chrono::seconds(30);
  c.shutdown_timeout = std::chrono::seconds(5);
  return c;
}

ember::ServiceConfig named(std::string name, bool pinned = false) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  c.pinned = pinned;
  return c;
}

class EmberBouncer : public ember::Service {
 public:
  explicit EmberBouncer(std::string peer) : peer_(std::move(peer)) {}
  ember::Status on_init() override {
    return handle("RpcPing", [this](const cmp::Ping& p) -> ember::Status {
      if (p.n() == 0) {
        done->set_value();
        return {};
      }
      cmp::Ping next;
      next.set_n(p.n() - 1);
      return peer_bus.send("RpcPing", std::move(next));
    });
  }
  std::string peer_;
  ember::Bus peer_bus;
  std::promise<void>* done = nullptr;
};

void ember_pingpong(const Settings& s, std::vector<Sample>& out) {
  ember::Node node(ember_config(s));
  auto* a = static_cast<EmberBouncer*>(
      *node.add_service(std::make_unique<EmberBouncer>("b"), named("a")));
  auto* b = static_cast<EmberBouncer*>(
      *node.add_service(std::make_unique<EmberBouncer>("a"), named("b")));
  (void)node.start();
  a->peer_bus = a->select(Selector::name("b"));
  b->peer_bus = b->select(Selector::name("a"));
  std::promise<void> done;
  a->done = b->done = &done;
  cmp::Ping first;
  first.set_n(2 * s.pingpong_roundtrips);
  auto t0 = Clock::now();
  (void)ember::select(node, Selector::name("a")).send("RpcPing", first);
  done.get_future().wait();
  double secs = seconds_since(t0);
  out.push_back({"pingpong", "ember", "roundtrips_per_s", "1/s",
                 static_cast<double>(s.pingpong_roundtrips) / secs});
  out.push_back(
      {"pingpong", "ember", "idle_cpu", "%", idle_cpu_percent(std::chrono::milliseconds(500))});
  (void)node.stop();
}

class EmberSink : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcCount", [this](const cmp::Ping&) -> ember::Status {
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

class EmberProducer : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcGo", [this](const cmp::Ping& p) -> ember::Status {
      auto sink = select(Selector::name("sink"));
      cmp::Ping msg;
      for (std::int64_t i = 0; i < p.n(); ++i) {
        msg.set_n(i);
        (void)sink.send("RpcCount", msg);
      }
      return {};
    });
  }
};

void ember_fanin(const Settings& s, std::vector<Sample>& out) {
  ember::Node node(ember_config(s));
  auto* sink =
      static_cast<EmberSink*>(*node.add_service(std::make_unique<EmberSink>(), named("sink")));
  for (int i = 0; i < 4; ++i) {
    (void)node.add_service(std::make_unique<EmberProducer>(),
                           named("producer" + std::to_string(i)));
  }
  (void)node.start();
  std::promise<void> done;
  sink->expected = 4 * s.fanin_per_producer;
  sink->done = &done;
  cmp::Ping go;
  go.set_n(s.fanin_per_producer);
  auto t0 = Clock::now();
  for (int i = 0; i < 4; ++i) {
    (void)ember::select(node, Selector::name("producer" + std::to_string(i))).send("RpcGo", go);
  }
  done.get_future().wait();
  double secs = seconds_since(t0);
  out.push_back({"fanin", "ember", "msgs_per_s", "1/s",
                 static_cast<double>(4 * s.fanin_per_producer) / secs});
  (void)node.stop();
}

class EmberEcho : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcEcho", [](const cmp::Ping& p) -> Result<cmp::Ping> { return p; });
  }
};

class EmberCaller : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcRun", [this](const cmp::Ping& p) -> ember::Status {
      auto echo = select(Selector::name("echo"));
      cmp::Ping req;
      for (std::int64_t i = 0; i < p.n(); ++i) {
        req.set_n(i);
        auto t0 = Clock::now();
        auto r = echo.call<cmp::Ping>("RpcEcho", req);
        samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        if (!r) {
          return r.error();
        }
      }
      return {};
    });
  }
  std::vector<double> samples;
};

void ember_call_latency(const Settings& s, std::vector<Sample>& out) {
  ember::Node node(ember_config(s));
  // Both pinned: caller and callee run on different threads, as the scenario requires.
  auto* caller = static_cast<EmberCaller*>(
      *node.add_service(std::make_unique<EmberCaller>(), named("caller", true)));
  (void)node.add_service(std::make_unique<EmberEcho>(), named("echo", true));
  (void)node.start();
  caller->samples.reserve(static_cast<std::size_t>(s.call_count));
  cmp::Ping run;
  run.set_n(s.call_count);
  auto r = ember::select(node, Selector::name("caller"))
               .call<ember::NoReply>("RpcRun", run, {.timeout = std::chrono::minutes(5)});
  if (!r) {
    std::fprintf(stderr, "ember call_latency failed: %s\n", r.error().to_string().c_str());
  }
  double p50 = 0;
  double p99 = 0;
  percentiles(caller->samples, p50, p99);
  out.push_back({"call_latency", "ember", "p50_us", "us", p50});
  out.push_back({"call_latency", "ember", "p99_us", "us", p99});
  (void)node.stop();
}

class EmberIdle : public ember::Service {};

void ember_spawn(const Settings& s, std::vector<Sample>& out) {
  ember::Node node(ember_config(s));
  (void)node.start();
  std::vector<std::string> names;  // built before measuring: not part of a service
  for (std::int64_t i = 0; i < s.spawn_count; ++i) {
    names.push_back("idle" + std::to_string(i));
  }
  double before = heap_bytes();
  auto t0 = Clock::now();
  for (std::int64_t i = 0; i < s.spawn_count; ++i) {
    (void)node.add_service(std::make_unique<EmberIdle>(),
                           named(names[static_cast<std::size_t>(i)]));
  }
  double secs = seconds_since(t0);
  double after = heap_bytes();
  out.push_back(
      {"spawn", "ember", "spawns_per_s", "1/s", static_cast<double>(s.spawn_count) / secs});
  out.push_back({"spawn", "ember", "bytes_per_service", "B",
                 (after - before) / static_cast<double>(s.spawn_count)});
  out.push_back(
      {"spawn", "ember", "idle_cpu", "%", idle_cpu_percent(std::chrono::milliseconds(500))});
  (void)node.stop();
}

class EmberTimers : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcRun", [this](const cmp::Ping& p) -> Result<cmp::Ping> {
      auto t0 = Clock::now();
      for (std::int64_t i = 0; i < p.n(); ++i) {
        ember::TimerId id = after(std::chrono::milliseconds(100 + (i & 1023)), [] {});
        (void)cancel_timer(id);
      }
      cmp::Ping r;
      r.set_n(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
      return r;
    });
  }
};

void ember_timers(const Settings& s, std::vector<Sample>& out) {
  ember::Node node(ember_config(s));
  (void)node.add_service(std::make_unique<EmberTimers>(), named("timers"));
  (void)node.start();
  cmp::Ping run;
  run.set_n(s.timer_ops);
  auto r = ember::select(node, Selector::name("timers"))
               .call<cmp::Ping>("RpcRun", run, {.timeout = std::chrono::minutes(1)});
  if (r) {
    out.push_back({"timers", "ember", "schedule_cancel_ns", "ns",
                   static_cast<double>(r->n()) / static_cast<double>(s.timer_ops)});
  }
  (void)node.stop();
}

// =============================================================================================
// CAF side (0.17 API)

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using go_atom = caf::atom_constant<caf::atom("go")>;

caf::actor_system_config& caf_config(caf::actor_system_config& cfg, const Settings& s) {
  cfg.set("scheduler.max-threads", s.threads);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  return cfg;
}

caf::behavior caf_ponger(caf::event_based_actor*) {
  return {[](ping_atom, std::int64_t n) { return std::make_tuple(ping_atom::value, n); }};
}

caf::behavior caf_pinger(caf::event_based_actor* self, caf::actor pong, std::int64_t n,
                         caf::actor reporter) {
  self->send(pong, ping_atom::value, n);
  return {[=](ping_atom, std::int64_t k) {
    if (k == 0) {
      self->send(reporter, done_atom::value);
      self->quit();
      return;
    }
    self->send(pong, ping_atom::value, k - 1);
  }};
}

void caf_pingpong(const Settings& s, std::vector<Sample>& out) {
  caf::actor_system_config cfg;
  caf::actor_system sys{caf_config(cfg, s)};
  caf::scoped_actor self{sys};
  auto pong = sys.spawn(caf_ponger);
  auto t0 = Clock::now();
  sys.spawn(caf_pinger, pong, s.pingpong_roundtrips, caf::actor{self});
  self->receive([](done_atom) {});
  double secs = seconds_since(t0);
  out.push_back({"pingpong", "caf", "roundtrips_per_s", "1/s",
                 static_cast<double>(s.pingpong_roundtrips) / secs});
  out.push_back(
      {"pingpong", "caf", "idle_cpu", "%", idle_cpu_percent(std::chrono::milliseconds(500))});
  caf::anon_send_exit(pong, caf::exit_reason::user_shutdown);
}

struct caf_sink_state {
  std::int64_t count = 0;
};
caf::behavior caf_sink(caf::stateful_actor<caf_sink_state>* self, std::int64_t total,
                       caf::actor reporter) {
  return {[=](std::int64_t) {
    if (++self->state.count == total) {
      self->send(reporter, done_atom::value);
      self->quit();
    }
  }};
}

caf::behavior caf_producer(caf::event_based_actor* self, caf::actor sink, std::int64_t m) {
  return {[=](go_atom) {
    for (std::int64_t i = 0; i < m; ++i) {
      self->send(sink, i);
    }
    self->quit();
  }};
}

void caf_fanin(const Settings& s, std::vector<Sample>& out) {
  caf::actor_system_config cfg;
  caf::actor_system sys{caf_config(cfg, s)};
  caf::scoped_actor self{sys};
  auto sink = sys.spawn(caf_sink, 4 * s.fanin_per_producer, caf::actor{self});
  std::vector<caf::actor> producers;
  for (int i = 0; i < 4; ++i) {
    producers.push_back(sys.spawn(caf_producer, sink, s.fanin_per_producer));
  }
  auto t0 = Clock::now();
  for (auto& p : producers) {
    caf::anon_send(p, go_atom::value);
  }
  self->receive([](done_atom) {});
  double secs = seconds_since(t0);
  out.push_back(
      {"fanin", "caf", "msgs_per_s", "1/s", static_cast<double>(4 * s.fanin_per_producer) / secs});
}

caf::behavior caf_echo(caf::event_based_actor*) {
  return {[](ping_atom, std::int64_t n) { return n; }};
}

struct caf_client_state {
  std::int64_t i = 0;
  Clock::time_point t0;
  std::function<void()> step;  // in the state, so it dies with the actor (no reference cycle)
};

caf::behavior caf_client(caf::stateful_actor<caf_client_state>* self, caf::actor echo,
                         std::int64_t n, std::vector<double>* samples, caf::actor reporter) {
  self->state.step = [self, echo, n, samples, reporter] {
    if (self->state.i == n) {
      self->send(reporter, done_atom::value);
      self->quit();
      return;
    }
    self->state.t0 = Clock::now();
    self->request(echo, caf::infinite, ping_atom::value, self->state.i)
        .then([self, samples](std::int64_t) {
          samples->push_back(
              std::chrono::duration<double, std::micro>(Clock::now() - self->state.t0).count());
          ++self->state.i;
          self->state.step();
        });
  };
  return {[self](go_atom) { self->state.step(); }};
}

void caf_call_latency(const Settings& s, std::vector<Sample>& out) {
  caf::actor_system_config cfg;
  caf::actor_system sys{caf_config(cfg, s)};
  caf::scoped_actor self{sys};
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(s.call_count));
  // Detached: each actor on its own thread, like the pinned Ember services.
  auto echo = sys.spawn<caf::detached>(caf_echo);
  auto client =
      sys.spawn<caf::detached>(caf_client, echo, s.call_count, &samples, caf::actor{self});
  self->send(client, go_atom::value);
  self->receive([](done_atom) {});
  double p50 = 0;
  double p99 = 0;
  percentiles(samples, p50, p99);
  out.push_back({"call_latency", "caf", "p50_us", "us", p50});
  out.push_back({"call_latency", "caf", "p99_us", "us", p99});
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
}

caf::behavior caf_idle(caf::event_based_actor*) {
  return {[](go_atom) {}};
}

void caf_spawn(const Settings& s, std::vector<Sample>& out) {
  caf::actor_system_config cfg;
  caf::actor_system sys{caf_config(cfg, s)};
  std::vector<caf::actor> actors;
  actors.reserve(static_cast<std::size_t>(s.spawn_count));
  double before = heap_bytes();
  auto t0 = Clock::now();
  for (std::int64_t i = 0; i < s.spawn_count; ++i) {
    actors.push_back(sys.spawn(caf_idle));
  }
  double secs = seconds_since(t0);
  double after = heap_bytes();
  out.push_back({"spawn", "caf", "spawns_per_s", "1/s", static_cast<double>(s.spawn_count) / secs});
  out.push_back({"spawn", "caf", "bytes_per_service", "B",
                 (after - before - static_cast<double>(s.spawn_count * sizeof(caf::actor))) /
                     static_cast<double>(s.spawn_count)});
  out.push_back(
      {"spawn", "caf", "idle_cpu", "%", idle_cpu_percent(std::chrono::milliseconds(500))});
  for (auto& a : actors) {
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
}

// =============================================================================================

struct Scenario {
  std::string name;
  std::function<void(const Settings&, std::vector<Sample>&)> ember;
  std::function<void(const Settings&, std::vector<Sample>&)> caf;  // empty: Ember alone
};

std::string json_escape(const std::string& s) {
  return s;
}  // keys and names are plain ASCII

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--quick") {
      s.quick = true;
    } else if (arg == "--reps") {
      s.reps = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--threads") {
      s.threads = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--out") {
      s.out = next();
    } else if (arg == "--only") {
      s.only = next();
    } else if (arg == "--impl") {
      s.impl = next();
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--reps N] [--threads N] [--out FILE] [--only SCENARIO] "
                   "[--impl ember|caf]\n",
                   argv[0]);
      return 2;
    }
  }
  if (s.quick) {
    s.reps = std::min(s.reps, 3);
    s.pingpong_roundtrips = 200'000;
    s.fanin_per_producer = 250'000;
    s.call_count = 10'000;
    s.spawn_count = 5'000;
    s.timer_ops = 500'000;
  }
  ember::set_log_level(ember::LogLevel::warn);

  std::vector<Scenario> scenarios = {
      {"pingpong", ember_pingpong, caf_pingpong},
      {"fanin", ember_fanin, caf_fanin},
      {"call_latency", ember_call_latency, caf_call_latency},
      {"spawn", ember_spawn, caf_spawn},
      {"timers", ember_timers, nullptr},
  };
  std::printf("Ember vs CAF %d: %d worker threads each, %d interleaved repetitions%s\n",
              CAF_VERSION, s.threads, s.reps, s.quick ? " (quick)" : "");
  std::vector<Sample> all;
  for (int rep = 0; rep < s.reps; ++rep) {
    for (const auto& sc : scenarios) {
      if (!s.only.empty() && sc.name != s.only) {
        continue;
      }
      // Alternate who goes first so that warm-up and thermal drift do not favour one side.
      bool ember_first = rep % 2 == 0;
      for (int side = 0; side < 2; ++side) {
        bool run_ember = (side == 0) == ember_first;
        if (run_ember) {
          if (s.impl.empty() || s.impl == "ember") {
            sc.ember(s, all);
          }
        } else if (sc.caf && (s.impl.empty() || s.impl == "caf")) {
          sc.caf(s, all);
        }
      }
      std::fprintf(stderr, "  rep %d/%d %s done\n", rep + 1, s.reps, sc.name.c_str());
    }
  }

  // Medians per (scenario, impl, metric).
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<double>> groups;
  std::map<std::tuple<std::string, std::string>, std::string> units;
  std::vector<std::tuple<std::string, std::string>> order;
  for (const auto& x : all) {
    groups[{x.scenario, x.impl, x.metric}].push_back(x.value);
    if (units.emplace(std::tuple{x.scenario, x.metric}, x.unit).second) {
      order.emplace_back(x.scenario, x.metric);
    }
  }
  auto median = [&](const std::string& sc, const std::string& impl,
                    const std::string& metric) -> double {
    auto it = groups.find({sc, impl, metric});
    if (it == groups.end() || it->second.empty()) {
      return -1;
    }
    auto v = it->second;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };

  std::printf("\n%-13s %-18s %14s %14s %12s\n", "scenario", "metric", "ember", "caf", "ember/caf");
  std::ofstream json(s.out);
  for (const auto& [sc, metric] : order) {
    double e = median(sc, "ember", metric);
    double c = median(sc, "caf", metric);
    char ratio[32] = "-";
    if (e >= 0 && c > 0) {
      std::snprintf(ratio, sizeof ratio, "%.2f", e / c);
    }
    auto fmt = [](double v) {
      char buf[32];
      if (v < 0) {
        return std::string("-");
      }
      std::snprintf(buf, sizeof buf, v >= 1000 ? "%.0f" : "%.3f", v);
      return std::string(buf);
    };
    std::printf("%-13s %-18s %14s %14s %12s\n", sc.c_str(),
                (metric + " (" + units[{sc, metric}] + ")").c_str(), fmt(e).c_str(), fmt(c).c_str(),
                ratio);
    for (const char* impl : {"ember", "caf"}) {
      double v = median(sc, impl, metric);
      if (v < 0) {
        continue;
      }
      char line[512];
      std::snprintf(
          line, sizeof line,
          "{\"scenario\":\"%s\",\"impl\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\","
          "\"reps\":%d,\"threads\":%d}",
          json_escape(sc).c_str(), impl, json_escape(metric).c_str(), v,
          json_escape(units[{sc, metric}]).c_str(), s.reps, s.threads);
      json << line << "\n";
    }
  }
  std::printf("\nJSON lines written to %s:\n", s.out.c_str());
  std::fflush(stdout);
  json.close();
  std::ifstream back(s.out);
  std::string line;
  while (std::getline(back, line)) {
    std::printf("%s\n", line.c_str());
  }
  return 0;
}
