// SPDX-License-Identifier: Apache-2.0
// The seed's concurrency load test in Ember: two nodes over etcd, Total requests with Concurrency
// of them in flight, each in-flight chain with its own dispatch key, in the modes
//   send       fire-and-forget; done when the target has counted every one
//   call       blocking Call, from Concurrency threads of the driver's own
//   asyncCall  Concurrency chains of AsyncCall inside the driver service (the next request goes
//              out from the previous one's callback)
//   coCall     Concurrency coroutines inside the driver service, each awaiting co_call in turn
// and prints, per mode, the figures the seed prints (total time, QPS, P50/P90/P99).
//
//   load_test --config target.yaml
//   LOAD_TOTAL=100000 LOAD_CONCURRENCY=500 LOAD_MODE=all load_test --config driver.yaml
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "load.pb.h"

using ember::Result;
using ember::Selector;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(30);
constexpr auto kSendArrivalLimit = std::chrono::seconds(60);

std::int64_t micros_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

}  // namespace

class LoadTarget : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcSum",
                         [](const load::SumReq& r) -> Result<load::SumResp> {
                           load::SumResp out;
                           out.set_ret(r.a() * r.b());
                           return out;
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcNote",
                         [this](const load::SumReq&) -> ember::Status {
                           noted_.fetch_add(1, std::memory_order_relaxed);
                           return {};
                         });
        !st) {
      return st;
    }
    return handle("RpcNoted", [this](const load::Empty&) -> Result<load::Count> {
      load::Count c;
      c.set_n(noted_.load(std::memory_order_relaxed));
      return c;
    });
  }

 private:
  std::atomic<std::int64_t> noted_{0};  // ten lanes count at once
};
EMBER_REGISTER_SERVICE(LoadTarget);

class LoadDriver : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcLoop", [this](const load::Empty&) { return loop(); });
  }

  void on_started() override {
    driving_ = true;
    total_ = std::max<std::int64_t>(1, std::stoll(std::string(param("Total", "100000"))));
    concurrency_ =
        std::clamp<std::int64_t>(std::stoll(std::string(param("Concurrency", "500"))), 1, total_);
    json_out_ = std::string(param("JsonOut", ""));
    const std::string mode(param("Mode", "all"));
    if (mode == "all") {
      modes_ = {"send", "call", "asyncCall", "coCall"};
    } else if (mode == "send" || mode == "call" || mode == "asyncCall" || mode == "coCall") {
      modes_ = {mode};
    } else {
      log().error("Mode '{}': expected send, call, asyncCall, coCall or all", mode);
      failed_ = true;
      node().request_stop();
      return;
    }
    for (std::int64_t w = 0; w < concurrency_; ++w) {
      keys_.emplace_back(fmt::format("bench-{}", w));
    }
    (void)when_available(
        Selector::name("LoadTarget"),
        [this](Result<ember::Bus> target) {
          if (!target) {
            log().error("LoadTarget was not discovered: {}", target.error().to_string());
            failed_ = true;
            node().request_stop();
            return;
          }
          target_ = *target;
          next_mode();
        },
        std::chrono::seconds(30));
  }

  void on_release() override {
    abandon_.store(true);
    join_callers();
  }

  /// False when a mode lost requests or the run could not start (the process exits non-zero).
  static bool all_succeeded() { return !failed_ && (!driving_ || finished_); }

 private:
  // What one mode measured.
  struct Run {
    std::string mode;
    Clock::time_point start;
    std::vector<std::int64_t> micros;  // per request, by index; -1: it failed
    std::atomic<std::int64_t> issued{0};
    std::atomic<std::int64_t> completed{0};
    std::atomic<std::int64_t> errors{0};
    std::atomic<std::int64_t> last_success_us{0};
    std::int64_t delivered = -1;  // send: what the target counted
    std::string first_error;
    std::atomic<bool> error_taken{false};

    void record(std::int64_t index, Clock::time_point sent, const ember::Status& outcome) {
      micros[static_cast<std::size_t>(index)] = outcome ? micros_since(sent) : -1;
      if (outcome) {
        const std::int64_t at = micros_since(start);
        std::int64_t last = last_success_us.load(std::memory_order_relaxed);
        while (at > last && !last_success_us.compare_exchange_weak(last, at)) {
        }
      } else {
        errors.fetch_add(1, std::memory_order_relaxed);
        if (!error_taken.exchange(true)) {
          first_error = outcome.error().to_string();
        }
      }
      completed.fetch_add(1, std::memory_order_relaxed);
    }
  };

  void next_mode() {
    if (next_ == modes_.size()) {
      finished_ = true;
      node().request_stop();
      return;
    }
    run_ = std::make_unique<Run>();
    run_->mode = modes_[next_++];
    run_->micros.assign(static_cast<std::size_t>(total_), -1);  // -1 until it ends
    run_->start = Clock::now();
    if (run_->mode == "send") {
      run_send();
    } else if (run_->mode == "call") {
      run_blocking_calls();
    } else if (run_->mode == "asyncCall") {
      for (std::int64_t w = 0; w < concurrency_; ++w) {
        issue_async(w);
      }
    } else {
      run_coroutines();
    }
  }

  ember::CallOptions options_for(std::int64_t worker) const {
    ember::CallOptions o;
    o.key = keys_[static_cast<std::size_t>(worker)];
    o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kRequestTimeout);
    return o;
  }

  static load::SumReq sum_request(std::int64_t index) {
    load::SumReq r;
    r.set_a(index);
    r.set_b(2);
    return r;
  }

  // --- send: every request from this service, then wait until the target counted them ---------
  void run_send() {
    for (std::int64_t i = 0; i < total_; ++i) {
      const Clock::time_point sent = Clock::now();
      ember::CallOptions o;
      o.key = keys_[static_cast<std::size_t>(i % concurrency_)];
      run_->record(i, sent, target_.send("RpcNote", sum_request(i), o));
    }
    send_returned_us_ = micros_since(run_->start);
    arrival_deadline_ = Clock::now() + kSendArrivalLimit;
    poll_arrivals();
  }

  void poll_arrivals() {
    auto asked = target_.async_call<load::Count>(
        "RpcNoted", load::Empty{}, [this](Result<load::Count> count) {
          const std::int64_t expected = total_ - run_->errors.load();
          if (count && count->n() >= expected) {
            run_->delivered = count->n();
            run_->last_success_us.store(micros_since(run_->start));
            finish_mode();
            return;
          }
          if (Clock::now() > arrival_deadline_) {
            run_->delivered = count ? count->n() : -1;
            finish_mode();
            return;
          }
          after(std::chrono::milliseconds(1), [this] { poll_arrivals(); });
        });
    if (!asked) {
      run_->delivered = -1;
      finish_mode();
    }
  }

  // --- call: blocking Calls from threads of our own ---------------------------------------------
  void run_blocking_calls() {
    join_callers();
    // A Bus of the node, not of this service: Calls from foreign threads.
    ember::Bus bus = ember::select(node(), Selector::name("LoadTarget"));
    Run* run = run_.get();
    auto remaining = std::make_shared<std::atomic<std::int64_t>>(concurrency_);
    for (std::int64_t w = 0; w < concurrency_; ++w) {
      callers_.emplace_back([this, bus, run, w, remaining] {
        const ember::CallOptions o = options_for(w);
        for (std::int64_t i = run->issued.fetch_add(1); i < total_ && !abandon_.load();
             i = run->issued.fetch_add(1)) {
          const Clock::time_point sent = Clock::now();
          Result<load::SumResp> r = bus.call<load::SumResp>("RpcSum", sum_request(i), o);
          run->record(i, sent, r ? ember::Status{} : ember::Status{r.error()});
        }
        if (remaining->fetch_sub(1) == 1) {
          (void)post([this] { finish_mode(); });
        }
      });
    }
  }

  void join_callers() {
    for (std::thread& t : callers_) {
      if (t.joinable()) {
        t.join();
      }
    }
    callers_.clear();
  }

  // --- asyncCall: chains of AsyncCall -----------------------------------------------------------
  void issue_async(std::int64_t worker) {
    const std::int64_t i = run_->issued.fetch_add(1);
    if (i >= total_) {
      return;
    }
    const Clock::time_point sent = Clock::now();
    auto handle = target_.async_call<load::SumResp>(
        "RpcSum", sum_request(i),
        [this, worker, i, sent](Result<load::SumResp> r) {
          run_->record(i, sent, r ? ember::Status{} : ember::Status{r.error()});
          if (run_->completed.load() == total_) {
            finish_mode();
          } else {
            issue_async(worker);
          }
        },
        options_for(worker));
    if (!handle) {
      run_->record(i, sent, handle.error());
      if (run_->completed.load() == total_) {
        finish_mode();
      } else {
        // Not from inside this call: a target that refuses everything would recurse Total deep.
        (void)post([this, worker, run = run_.get()] {
          if (run_.get() == run) {  // this mode may have ended meanwhile
            issue_async(worker);
          }
        });
      }
    }
  }

  // --- coCall: coroutines, each awaiting its co_call in turn ------------------------------------
  void run_coroutines() {
    // Each coroutine is a handler of this service (a Task), started by a local AsyncCall; its
    // completion says the coroutine ran out of requests.
    auto loops_left = std::make_shared<std::int64_t>(concurrency_);
    for (std::int64_t w = 0; w < concurrency_; ++w) {
      load::Empty start;
      auto handle = select(Selector::name(name()))
                        .async_call<load::Empty>("RpcLoop", start,
                                                 [this, loops_left](Result<load::Empty>) {
                                                   if (--*loops_left == 0) {
                                                     finish_mode();
                                                   }
                                                 },
                                                 {.timeout = std::chrono::hours(1)});
      if (!handle) {
        log().error("starting a coroutine failed: {}", handle.error().to_string());
        failed_ = true;
        node().request_stop();
        return;
      }
    }
  }

  ember::Task<Result<load::Empty>> loop() {
    const std::int64_t worker = coroutine_slot_++ % concurrency_;
    const ember::CallOptions o = options_for(worker);
    for (std::int64_t i = run_->issued.fetch_add(1); i < total_; i = run_->issued.fetch_add(1)) {
      const Clock::time_point sent = Clock::now();
      Result<load::SumResp> r =
          co_await target_.co_call<load::SumResp>("RpcSum", sum_request(i), o);
      run_->record(i, sent, r ? ember::Status{} : ember::Status{r.error()});
    }
    co_return load::Empty{};
  }

  // --- the report
  // ---------------------------------------------------------------------------------
  void finish_mode() {
    Run& run = *run_;
    const std::int64_t total_ms = std::max<std::int64_t>(1, micros_since(run.start) / 1000);
    const std::int64_t errors = run.errors.load();
    const std::int64_t completed =
        run.mode == "send" ? std::max<std::int64_t>(0, run.delivered) : run.completed.load();
    const std::int64_t lost = run.mode == "send" ? total_ - errors - completed : 0;
    const std::int64_t success =
        std::max<std::int64_t>(0, completed - (run.mode == "send" ? 0 : errors));
    const std::int64_t success_ms = std::max<std::int64_t>(1, run.last_success_us.load() / 1000);
    // Latencies of the requests that succeeded (a timeout's latency is its timeout), by nearest
    // rank; 0 when none succeeded.
    std::vector<std::int64_t> sorted;
    sorted.reserve(run.micros.size());
    std::copy_if(run.micros.begin(), run.micros.end(), std::back_inserter(sorted),
                 [](std::int64_t us) { return us >= 0; });
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](int p) -> std::int64_t {
      if (sorted.empty()) {
        return 0;
      }
      const auto n = static_cast<std::int64_t>(sorted.size());
      const std::int64_t rank = std::max<std::int64_t>(1, (n * p + 99) / 100);
      return sorted[static_cast<std::size_t>(rank - 1)];
    };

    std::string out;
    out += "======== RPC Bench Result ========\n";
    out += fmt::format("Total requests  : {}\n", total_);
    out += fmt::format("Concurrency Num : {}\n", concurrency_);
    out += fmt::format("Test type       : {}\n", run.mode);
    out += fmt::format("Total time      : {} ms\n", total_ms);
    out += fmt::format("Completed       : {} (errors: {})\n", completed, errors);
    out += fmt::format("Success time    : {} ms (tail wait: {} ms)\n", success_ms,
                       std::max<std::int64_t>(0, total_ms - success_ms));
    out += fmt::format("Avg time per op : {:.2f} μs\n",
                       static_cast<double>(total_ms) * 1000.0 / static_cast<double>(total_));
    out += fmt::format("QPS (overall)   : {}\n", total_ * 1000 / total_ms);
    out += fmt::format("QPS (success)   : {}\n", success * 1000 / success_ms);
    out += fmt::format("P50 latency     : {} μs\n", pct(50));
    out += fmt::format("P90 latency     : {} μs\n", pct(90));
    out += fmt::format("P99 latency     : {} μs\n", pct(99));
    if (run.mode == "send") {
      // The seed stops its clock when the last Send returned; the target may not have the
      // messages yet. Here the clock stops when the target counted them all.
      out += fmt::format("Sends returned  : {} ms (latency above: until send() returned)\n",
                         send_returned_us_ / 1000);
      out += fmt::format("Lost            : {}\n", lost);
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    out += fmt::format("Driver process  : {:.1f} MB max RSS\n",
                       static_cast<double>(usage.ru_maxrss) / 1024.0);
    if (errors > 0) {
      out += fmt::format("First error     : {}\n", run.first_error);
    }
    out += "==================================\n";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    if (errors > 0 || lost > 0) {
      failed_ = true;
    }
    if (!json_out_.empty()) {
      std::ofstream json(json_out_, std::ios::app);
      json << fmt::format(
          R"({{"suite":"load_test","mode":"{}","total":{},"concurrency":{},"total_ms":{},)"
          R"("qps":{},"p50_us":{},"p90_us":{},"p99_us":{},"errors":{},"lost":{}}})"
          "\n",
          run.mode, total_, concurrency_, total_ms, total_ * 1000 / total_ms, pct(50), pct(90),
          pct(99), errors, lost);
    }
    next_mode();
  }

  std::int64_t total_ = 0;
  std::int64_t concurrency_ = 0;
  std::string json_out_;
  std::vector<std::string> modes_;
  std::size_t next_ = 0;
  std::vector<ember::DispatchKey> keys_;
  ember::Bus target_;
  std::unique_ptr<Run> run_;
  std::vector<std::thread> callers_;
  std::int64_t send_returned_us_ = 0;
  Clock::time_point arrival_deadline_;
  std::int64_t coroutine_slot_ = 0;
  std::atomic<bool> abandon_{false};  // the node stops: caller threads leave their loops
  // For the exit code: a driver stopped before its modes ended did not succeed.
  static inline std::atomic<bool> failed_{false};
  static inline std::atomic<bool> driving_{false};
  static inline std::atomic<bool> finished_{false};
};
EMBER_REGISTER_SERVICE(LoadDriver);

int main(int argc, char** argv) {
  const int code = ember::run_node(argc, argv);
  return code != 0 ? code : (LoadDriver::all_succeeded() ? 0 : 1);
}
