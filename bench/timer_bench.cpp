// SPDX-License-Identifier: Apache-2.0
// Timer costs: schedule+cancel (target <= 100 ns) and memory per pending timer (target: 1,000,000
// pending timers in <= 128 MB).
#include <benchmark/benchmark.h>

#include <fstream>
#include <string>
#include <vector>

#include "timer/timer_service.hpp"

namespace {

using namespace std::chrono_literals;
using ember::timer::TimerService;

class NullTarget final : public ember::timer::TimerTarget {
 public:
  void post_timer_fire(ember::runtime::Message* m) noexcept override {
    m->reject(ember::Error{ember::Errc::stopping, "bench"});
    delete m;
  }
};

TimerService::Request request(NullTarget& target, std::chrono::milliseconds delay) {
  TimerService::Request r;
  r.target = &target;
  r.delay = delay;
  r.callback = [] {};
  return r;
}

// The common game pattern: a timeout armed per request and cancelled when the reply arrives.
void BM_TimerScheduleCancel(benchmark::State& state) {
  TimerService timers(10ms);
  NullTarget target;
  std::vector<ember::TimerId> background;
  for (int i = 0; i < state.range(0); ++i) {
    background.push_back(
        timers.schedule(request(target, std::chrono::milliseconds(1000 + i % 60000))));
  }
  int i = 0;
  for (auto _ : state) {
    ember::TimerId id =
        timers.schedule(request(target, std::chrono::milliseconds(50 + (i++ & 1023))));
    benchmark::DoNotOptimize(timers.cancel(id));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerScheduleCancel)->Arg(0)->Arg(100'000)->Arg(1'000'000);

long rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      long kb = 0;
      status >> kb;
      return kb;
    }
    status.ignore(4096, '\n');
  }
  return 0;
}

void BM_PendingTimerMemory(benchmark::State& state) {
  const long count = state.range(0);
  for (auto _ : state) {
    long before = rss_kb();
    auto timers = std::make_unique<TimerService>(10ms);
    NullTarget target;
    for (long i = 0; i < count; ++i) {
      timers->schedule(request(target, std::chrono::milliseconds(1000 + i % 3'600'000)));
    }
    long after = rss_kb();
    state.counters["pending"] = static_cast<double>(timers->pending());
    state.counters["slab_MB"] = static_cast<double>(timers->slab_bytes()) / 1e6;
    state.counters["rss_MB"] = static_cast<double>(after - before) / 1024.0;
    state.counters["bytes_per_timer"] =
        static_cast<double>(after - before) * 1024.0 / static_cast<double>(count);
  }
}
BENCHMARK(BM_PendingTimerMemory)->Arg(1'000'000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
