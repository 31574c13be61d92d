// SPDX-License-Identifier: Apache-2.0
// CPU used by an idle node with 1,000 services over 5 s (target: < 1 % of one core).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <ember/ember.hpp>
#include <thread>

namespace {

class Idle : public ember::Service {};

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(usage.ru_utime) + sec(usage.ru_stime);
}

void BM_IdleNode1000Services(benchmark::State& state) {
  ember::set_log_level(ember::LogLevel::warn);
  for (auto _ : state) {
    ember::NodeConfig config;
    config.worker_threads = 2;
    ember::Node node(config);
    for (int i = 0; i < 1000; ++i) {
      ember::ServiceConfig cfg;
      cfg.name = "idle-" + std::to_string(i);
      (void)node.add_service(std::make_unique<Idle>(), cfg);
    }
    (void)node.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let start-up work settle
    double cpu_before = cpu_seconds();
    auto wall_before = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(5));
    double cpu = cpu_seconds() - cpu_before;
    double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_before).count();
    state.counters["cpu_percent_of_one_core"] = 100.0 * cpu / wall;
    (void)node.stop();
  }
}
BENCHMARK(BM_IdleNode1000Services)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
