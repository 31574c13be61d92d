// SPDX-License-Identifier: Apache-2.0
// Burst benchmark for autoscaling: one service takes keyed messages (10,000 players) whose
// handlers burn --work-us of CPU each. The offered load runs at --base-rate, jumps 10x for
// --burst-s seconds, then falls back. Each scenario is a fresh node with 2 worker threads:
//   off           WorkerNum 1, no Scaling (the configuration autoscaling replaces)
//   queue_length  Scaling 1..4 lanes, queue_length (High 50)
//   queue_delay   Scaling 1..4 lanes, queue_delay (p99 <= 5 ms)
//   fixed_max     WorkerNum 4, no Scaling (the ceiling, paid for all the time)
// Measured per run: queueing delay (post to handler start) p50/p99 over the whole run and p99 of
// the messages offered during the burst, process CPU time, the largest lane count, and how long
// after the burst began the first grow happened. Scenarios are interleaved over --reps runs;
// medians go to a table and one JSON object per metric (ratio against `off`) to --out.
//   ember_scaling_bench [--quick] [--reps N] [--work-us N] [--base-rate N] [--burst-s S] [--out F]
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ember/ember.hpp>
#include <ember/scaling.hpp>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "report.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using ember::bench::commit_id;
using ember::bench::json_number;
using ember::bench::median;

class Hot : public ember::Service {};
EMBER_REGISTER_SERVICE(Hot);

struct Settings {
  int reps = 5;
  int work_us = 60;
  int base_rate = 2000;  // messages/s before and after the burst; 10x during it
  double base_s = 1.0;
  double burst_s = 3.0;
  double after_s = 2.0;
  std::string out = "bench-results-scaling.jsonl";
};

/// Queueing delays from many lanes at once: one relaxed add per message.
struct Delays {
  std::array<std::atomic<std::uint64_t>, ember::WaitHistogram::kBuckets> buckets{};
  void add(std::int64_t ns) {
    const auto b = ember::WaitHistogram::bucket_of(static_cast<std::uint64_t>(ns / 1000));
    buckets[static_cast<std::size_t>(b)].fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] ember::WaitHistogram snapshot() const {
    ember::WaitHistogram h;
    for (int i = 0; i < ember::WaitHistogram::kBuckets; ++i) {
      h.add_to_bucket(i, buckets[static_cast<std::size_t>(i)].load(std::memory_order_relaxed));
    }
    return h;
  }
};

struct RunResult {
  double p50_ms = 0;
  double p99_ms = 0;
  double burst_p99_ms = 0;
  double cpu_s = 0;
  double max_lanes = 1;
  double end_lanes = 1;       // when the load ended: back to Min?
  double first_grow_ms = -1;  // after the burst began; -1 = never
  double handled = 0;
};

std::string worker_conf(const std::string& scenario) {
  const std::string scaling =
      "Min: 1, Max: 4, Interval: 100ms, Cooldown: 200ms, Hysteresis: 2, GrowStep: 1, ";
  if (scenario == "queue_length") {
    return "{WorkerNum: 1, MaxWorkerNum: 4, Scaling: {" + scaling +
           "Strategy: {Name: queue_length, Params: {High: 50}}}}";
  }
  if (scenario == "queue_delay") {
    return "{WorkerNum: 1, MaxWorkerNum: 4, Scaling: {" + scaling +
           "Strategy: {Name: queue_delay, Params: {Target: 5ms, Percentile: 99}}}}";
  }
  if (scenario == "fixed_max") {
    return "{WorkerNum: 4}";
  }
  return "{WorkerNum: 1}";
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

RunResult run_once(const Settings& s, const std::string& scenario) {
  auto config = ember::parse_node_config(
      "NodeConf:\n  NodeId: bench\n  WorkerThreads: 2\nSystemLogger: {Level: warn}\n"
      "ServiceConf:\n  StartServices:\n    - ClassName: Hot\n      WorkerConf: " +
          worker_conf(scenario) + "\n",
      "bench.yaml");
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().message().c_str());
    std::exit(2);
  }
  ember::Node node(*config);
  if (auto st = node.start(); !st) {
    std::fprintf(stderr, "%s\n", st.error().to_string().c_str());
    std::exit(1);
  }
  ember::Service* hot = node.find_service("Hot");
  Delays all;
  Delays burst;
  std::atomic<std::uint64_t> handled{0};
  const auto work = std::chrono::microseconds(s.work_us);

  const double total_s = s.base_s + s.burst_s + s.after_s;
  const auto start = Clock::now();
  const auto burst_begin =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.base_s));
  const auto burst_end = burst_begin + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(s.burst_s));
  const auto stop_at =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(total_s));
  const double cpu_before = cpu_seconds();
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::uint64_t> player(1, 10'000);
  double offered = 0;  // messages due so far (fractional)
  std::uint64_t sent = 0;
  RunResult r;
  auto last = start;
  // Paced in 1 ms steps: the messages due since the last step are posted together.
  while (true) {
    const auto now = Clock::now();
    if (now >= stop_at) {
      break;
    }
    const bool in_burst = now >= burst_begin && now < burst_end;
    const double rate = s.base_rate * (in_burst ? 10.0 : 1.0);
    offered += rate * std::chrono::duration<double>(now - last).count();
    last = now;
    while (static_cast<double>(sent) < offered) {
      ember::PostOptions options;
      options.key = ember::DispatchKey::from_int(player(rng));
      const std::int64_t posted = now_ns();
      Delays* phase = in_burst ? &burst : nullptr;
      (void)node.post(
          "Hot",
          [&, posted, phase] {
            const std::int64_t wait = now_ns() - posted;
            all.add(wait);
            if (phase != nullptr) {
              phase->add(wait);
            }
            const auto until = Clock::now() + work;
            while (Clock::now() < until) {
            }
            handled.fetch_add(1, std::memory_order_relaxed);
          },
          options);
      ++sent;
    }
    const int lanes = hot->lane_count();
    r.max_lanes = std::max(r.max_lanes, static_cast<double>(lanes));
    if (lanes > 1 && r.first_grow_ms < 0 && now >= burst_begin && scenario != "fixed_max") {
      r.first_grow_ms = std::chrono::duration<double, std::milli>(now - burst_begin).count();
    }
    std::this_thread::sleep_until(now + 1ms);
  }
  r.end_lanes = hot->lane_count();
  // Everything offered must run before the figures are read (bounded: a stuck run is reported).
  const auto deadline = Clock::now() + 60s;
  while (handled.load() < sent && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  r.cpu_s = cpu_seconds() - cpu_before;
  r.handled = static_cast<double>(handled.load());
  (void)node.stop();
  const ember::WaitHistogram h = all.snapshot();
  r.p50_ms = static_cast<double>(h.percentile(50).count()) / 1000.0;
  r.p99_ms = static_cast<double>(h.percentile(99).count()) / 1000.0;
  r.burst_p99_ms = static_cast<double>(burst.snapshot().percentile(99).count()) / 1000.0;
  if (r.handled < static_cast<double>(sent)) {
    std::fprintf(stderr, "%s: only %.0f of %llu messages ran within 60 s\n", scenario.c_str(),
                 r.handled, static_cast<unsigned long long>(sent));
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--quick") {
      s.reps = 3;
      s.base_s = 0.5;
      s.burst_s = 2.0;
      s.after_s = 1.0;
    } else if (arg == "--reps") {
      s.reps = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--work-us") {
      s.work_us = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--base-rate") {
      s.base_rate = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--burst-s") {
      s.burst_s = std::max(0.1, std::atof(next().c_str()));
    } else if (arg == "--out") {
      s.out = next();
    } else {
      std::fprintf(stderr,
                   "usage: ember_scaling_bench [--quick] [--reps N] [--work-us N] "
                   "[--base-rate N] [--burst-s S] [--out FILE]\n");
      return 2;
    }
  }
  std::printf(
      "burst: %d msg/s -> %d msg/s for %.1f s, %d us of CPU per message, 2 worker threads, %d "
      "reps\n",
      s.base_rate, s.base_rate * 10, s.burst_s, s.work_us, s.reps);
  const std::vector<std::string> scenarios = {"off", "queue_length", "queue_delay", "fixed_max"};
  std::map<std::string, std::map<std::string, std::vector<double>>> runs;
  for (int rep = 0; rep < s.reps; ++rep) {
    for (const auto& scenario : scenarios) {
      const RunResult r = run_once(s, scenario);
      auto& m = runs[scenario];
      m["p50_wait_ms"].push_back(r.p50_ms);
      m["p99_wait_ms"].push_back(r.p99_ms);
      m["burst_p99_wait_ms"].push_back(r.burst_p99_ms);
      m["cpu_s"].push_back(r.cpu_s);
      m["max_lanes"].push_back(r.max_lanes);
      m["end_lanes"].push_back(r.end_lanes);
      m["first_grow_ms"].push_back(r.first_grow_ms);
      m["messages"].push_back(r.handled);
      std::printf(
          "rep %d %-13s p50 %8.2f ms  p99 %8.2f ms  burst p99 %8.2f ms  cpu %5.2f s  lanes max %.0f"
          " end %.0f  first grow %6.0f ms\n",
          rep + 1, scenario.c_str(), r.p50_ms, r.p99_ms, r.burst_p99_ms, r.cpu_s, r.max_lanes,
          r.end_lanes, r.first_grow_ms);
      std::fflush(stdout);
    }
  }

  const std::string commit = commit_id();
  std::ofstream json(s.out, std::ios::app);
  const std::map<std::string, std::string> units = {
      {"p50_wait_ms", "ms"},   {"p99_wait_ms", "ms"},   {"burst_p99_wait_ms", "ms"},
      {"cpu_s", "s"},          {"max_lanes", "lanes"},  {"end_lanes", "lanes"},
      {"first_grow_ms", "ms"}, {"messages", "messages"}};
  std::printf("\n%-13s %9s %9s %20s %14s %10s %14s\n", "scenario", "p50 ms", "p99 ms",
              "burst p99 ms (x off)", "cpu s (x off)", "lanes max/end", "first grow ms");
  for (const auto& scenario : scenarios) {
    auto& m = runs[scenario];
    for (const auto& [metric, values] : m) {
      const double v = median(values);
      const double base = median(runs["off"][metric]);
      const bool comparable = metric != "first_grow_ms" && metric != "messages" &&
                              metric != "max_lanes" && metric != "end_lanes" && base > 0;
      std::string line = "{\"suite\":\"scaling\",\"scenario\":\"" + scenario + "\",\"metric\":\"" +
                         metric + "\",\"value\":" + json_number(v) + ",\"unit\":\"" +
                         units.at(metric) + "\",\"runs\":[";
      for (std::size_t i = 0; i < values.size(); ++i) {
        line += (i == 0 ? "" : ",") + json_number(values[i]);
      }
      line += "],\"ratio_vs\":" + (comparable ? "\"off/" + metric + "\"" : std::string("null")) +
              ",\"ratio\":" + (comparable ? json_number(v / base) : std::string("null")) +
              ",\"work_us\":" + std::to_string(s.work_us) +
              ",\"base_rate\":" + std::to_string(s.base_rate) +
              ",\"burst_s\":" + json_number(s.burst_s) + ",\"commit\":\"" + commit + "\"}";
      json << line << "\n";
    }
    const double off_p99 = median(runs["off"]["burst_p99_wait_ms"]);
    const double p99 = median(m["burst_p99_wait_ms"]);
    const double off_cpu = median(runs["off"]["cpu_s"]);
    const double cpu = median(m["cpu_s"]);
    std::printf("%-13s %9.2f %9.2f %11.2f (%5.3fx) %6.2f (%4.2fx) %6.0f/%-6.0f %14.0f\n",
                scenario.c_str(), median(m["p50_wait_ms"]), median(m["p99_wait_ms"]), p99,
                off_p99 > 0 ? p99 / off_p99 : 0.0, cpu, off_cpu > 0 ? cpu / off_cpu : 0.0,
                median(m["max_lanes"]), median(m["end_lanes"]), median(m["first_grow_ms"]));
  }
  std::printf("\nJSON lines appended to %s\n", s.out.c_str());
  return 0;
}
