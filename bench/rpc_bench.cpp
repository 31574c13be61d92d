// SPDX-License-Identifier: Apache-2.0
// Messaging costs between local services: Send ping-pong, fan-in 4 -> 1, Call round trip p50/p99
// (blocking and co_await), AsyncCall throughput. Two worker threads, like the target machine.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <ember/ember.hpp>
#include <future>
#include <vector>

#include "bench.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using ember::Result;
using ember::Selector;

ember::ServiceConfig named(std::string name) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  return c;
}

ember::NodeConfig node_config() {
  ember::set_log_level(ember::LogLevel::warn);
  ember::NodeConfig c;
  c.worker_threads = 2;
  c.call_timeout = std::chrono::seconds(10);
  return c;
}

// --- Send ping-pong --------------------------------------------------------------------------

class Bouncer : public ember::Service {
 public:
  explicit Bouncer(std::string peer) : peer_(std::move(peer)) {}
  ember::Status on_init() override {
    peer_bus_ = select(Selector::name(peer_));
    return handle("RpcPing", [this](const bench::Ping& p) -> ember::Status {
      if (p.seq() >= target) {
        done->set_value();
        return {};
      }
      bench::Ping next;
      next.set_seq(p.seq() + 1);
      return peer_bus_.send("RpcPing", std::move(next));
    });
  }
  void on_started() override { peer_bus_ = select(Selector::name(peer_)); }
  std::string peer_;
  ember::Bus peer_bus_;
  std::int64_t target = 0;
  std::promise<void>* done = nullptr;
};

void BM_SendPingPong(benchmark::State& state) {
  ember::Node node(node_config());
  auto* a = static_cast<Bouncer*>(*node.add_service(std::make_unique<Bouncer>("b"), named("a")));
  auto* b = static_cast<Bouncer*>(*node.add_service(std::make_unique<Bouncer>("a"), named("b")));
  (void)node.start();
  // Buses are bound at on_started, after both services are visible.
  (void)ember::select(node, Selector::name("a")).call<ember::NoReply>("RpcNope", bench::Ping{});
  a->peer_bus_ = a->select(Selector::name("b"));
  b->peer_bus_ = b->select(Selector::name("a"));
  const std::int64_t hops = 1'000'000;
  for (auto _ : state) {
    std::promise<void> done;
    a->target = b->target = hops;
    a->done = b->done = &done;
    bench::Ping first;
    (void)ember::select(node, Selector::name("a")).send("RpcPing", first);
    done.get_future().wait();
  }
  state.counters["roundtrips_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * hops / 2), benchmark::Counter::kIsRate);
  (void)node.stop();
}
BENCHMARK(BM_SendPingPong)->Unit(benchmark::kMillisecond)->UseRealTime();

// --- fan-in 4 -> 1 ---------------------------------------------------------------------------

class Counter : public ember::Service {
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
        (void)sink.send("RpcCount", msg);
      }
      return {};
    });
  }
};

void BM_FanIn4To1(benchmark::State& state) {
  ember::Node node(node_config());
  auto* sink = static_cast<Counter*>(*node.add_service(std::make_unique<Counter>(), named("sink")));
  for (int i = 0; i < 4; ++i) {
    (void)node.add_service(std::make_unique<Producer>(), named("producer" + std::to_string(i)));
  }
  (void)node.start();
  const std::int64_t per_producer = 250'000;
  for (auto _ : state) {
    std::promise<void> done;
    sink->count = 0;
    sink->expected = per_producer * 4;
    sink->done = &done;
    bench::Ping go;
    go.set_seq(per_producer);
    for (int i = 0; i < 4; ++i) {
      (void)ember::select(node, Selector::name("producer" + std::to_string(i))).send("RpcGo", go);
    }
    done.get_future().wait();
  }
  state.counters["msgs_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * per_producer * 4), benchmark::Counter::kIsRate);
  (void)node.stop();
}
BENCHMARK(BM_FanIn4To1)->Unit(benchmark::kMillisecond)->UseRealTime();

// --- Call latency ----------------------------------------------------------------------------

class Echo : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcEcho", [](const bench::Ping& p) -> Result<bench::Ping> { return p; });
  }
};

class Caller : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st =
            handle("RpcRunBlocking",
                   [this](const bench::Ping& p) -> ember::Status {
                     auto echo = select(Selector::name("echo"));
                     for (std::int64_t i = 0; i < p.seq(); ++i) {
                       auto t0 = Clock::now();
                       auto r = echo.call<bench::Ping>("RpcEcho", bench::Ping{});
                       samples.push_back(
                           std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
                       if (!r) {
                         return r.error();
                       }
                     }
                     return {};
                   });
        !st) {
      return st;
    }
    return handle("RpcRunCoroutine", &Caller::run_coroutine);
  }
  ember::Task<ember::Status> run_coroutine(const bench::Ping& p) {
    auto echo = select(Selector::name("echo"));
    for (std::int64_t i = 0; i < p.seq(); ++i) {
      auto t0 = Clock::now();
      auto r = co_await echo.co_call<bench::Ping>("RpcEcho", bench::Ping{});
      samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (!r) {
        co_return r.error();
      }
    }
    co_return ember::Status{};
  }
  std::vector<double> samples;
};

void report_latency(benchmark::State& state, std::vector<double>& samples) {
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))];
  };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["calls_per_s"] =
      benchmark::Counter(static_cast<double>(samples.size()), benchmark::Counter::kIsRate);
}

void run_call_latency(benchmark::State& state, const char* method) {
  ember::Node node(node_config());
  auto* caller =
      static_cast<Caller*>(*node.add_service(std::make_unique<Caller>(), named("caller")));
  (void)node.add_service(std::make_unique<Echo>(), named("echo"));
  (void)node.start();
  const std::int64_t calls = 100'000;
  for (auto _ : state) {
    caller->samples.clear();
    caller->samples.reserve(calls);
    bench::Ping run;
    run.set_seq(calls);
    auto r = ember::select(node, Selector::name("caller"))
                 .call<ember::NoReply>(method, run, {.timeout = std::chrono::minutes(5)});
    if (!r) {
      state.SkipWithError(r.error().to_string().c_str());
      break;
    }
  }
  report_latency(state, caller->samples);
  (void)node.stop();
}

void BM_CallLatencyBlocking(benchmark::State& state) {
  run_call_latency(state, "RpcRunBlocking");
}
void BM_CallLatencyCoAwait(benchmark::State& state) {
  run_call_latency(state, "RpcRunCoroutine");
}
BENCHMARK(BM_CallLatencyBlocking)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_CallLatencyCoAwait)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

// --- AsyncCall throughput --------------------------------------------------------------------

class AsyncDriver : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcRun", [this](const bench::Ping& p) -> ember::Status {
      echo_ = select(Selector::name("echo"));
      total_ = p.seq();
      issued_ = completed_ = 0;
      for (int i = 0; i < kWindow && issued_ < total_; ++i) {
        issue();
      }
      return {};
    });
  }
  void issue() {
    ++issued_;
    (void)echo_.async_call<bench::Ping>("RpcEcho", bench::Ping{}, [this](Result<bench::Ping>) {
      if (++completed_ == total_) {
        done->set_value();
      } else if (issued_ < total_) {
        issue();
      }
    });
  }
  static constexpr int kWindow = 256;
  ember::Bus echo_;
  std::int64_t total_ = 0;
  std::int64_t issued_ = 0;
  std::int64_t completed_ = 0;
  std::promise<void>* done = nullptr;
};

void BM_AsyncCallThroughput(benchmark::State& state) {
  ember::Node node(node_config());
  auto* driver = static_cast<AsyncDriver*>(
      *node.add_service(std::make_unique<AsyncDriver>(), named("driver")));
  (void)node.add_service(std::make_unique<Echo>(), named("echo"));
  (void)node.start();
  const std::int64_t calls = 200'000;
  for (auto _ : state) {
    std::promise<void> done;
    driver->done = &done;
    bench::Ping run;
    run.set_seq(calls);
    (void)ember::select(node, Selector::name("driver")).send("RpcRun", run);
    done.get_future().wait();
  }
  state.counters["calls_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * calls), benchmark::Counter::kIsRate);
  (void)node.stop();
}
BENCHMARK(BM_AsyncCallThroughput)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
