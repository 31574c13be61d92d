// SPDX-License-Identifier: Apache-2.0
// Mailbox enqueue-to-run throughput on a real node: messages posted from outside into one
// service, and a ping-pong between two services (one message in flight).
#include <benchmark/benchmark.h>

#include <atomic>
#include <ember/ember.hpp>
#include <future>

namespace {

class Sink : public ember::Service {};

ember::NodeConfig two_threads() {
  ember::NodeConfig config;
  config.worker_threads = 2;
  return config;
}

void BM_MailboxEnqueueToRun(benchmark::State& state) {
  ember::set_log_level(ember::LogLevel::warn);
  ember::Node node(two_threads());
  ember::ServiceConfig cfg;
  cfg.name = "sink";
  (void)node.add_service(std::make_unique<Sink>(), cfg);
  (void)node.start();
  const int batch = 100'000;
  for (auto _ : state) {
    std::atomic<int> done{0};
    std::promise<void> all;
    for (int i = 0; i < batch; ++i) {
      (void)node.post("sink", [&] {
        if (done.fetch_add(1) + 1 == batch) {
          all.set_value();
        }
      });
    }
    all.get_future().wait();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  (void)node.stop();
}
BENCHMARK(BM_MailboxEnqueueToRun)->Unit(benchmark::kMillisecond)->UseRealTime();

class Player : public ember::Service {
 public:
  Player* peer = nullptr;
  std::atomic<long>* remaining = nullptr;
  std::promise<void>* finished = nullptr;
  void hit() {
    if (remaining->fetch_sub(1) <= 1) {
      finished->set_value();
      return;
    }
    (void)peer->post([p = peer] { p->hit(); });
  }
};

void BM_PingPong(benchmark::State& state) {
  ember::set_log_level(ember::LogLevel::warn);
  ember::Node node(two_threads());
  ember::ServiceConfig a_cfg;
  a_cfg.name = "a";
  ember::ServiceConfig b_cfg;
  b_cfg.name = "b";
  auto* a = static_cast<Player*>(*node.add_service(std::make_unique<Player>(), a_cfg));
  auto* b = static_cast<Player*>(*node.add_service(std::make_unique<Player>(), b_cfg));
  (void)node.start();
  a->peer = b;
  b->peer = a;
  const long hops = 1'000'000;
  for (auto _ : state) {
    std::atomic<long> remaining{hops};
    std::promise<void> finished;
    a->remaining = b->remaining = &remaining;
    a->finished = b->finished = &finished;
    (void)a->post([a] { a->hit(); });
    finished.get_future().wait();
  }
  state.SetItemsProcessed(state.iterations() * hops);
  state.counters["roundtrips_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * hops / 2), benchmark::Counter::kIsRate);
  (void)node.stop();
}
BENCHMARK(BM_PingPong)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
