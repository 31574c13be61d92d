// SPDX-License-Identifier: Apache-2.0
#include "core/service_timings.hpp"

#include <algorithm>

namespace ember::detail {

namespace {
std::uint64_t to_ticks(std::chrono::nanoseconds d) {
  return metrics::seconds_to_ticks(std::chrono::duration<double>(d).count());
}
}  // namespace

ServiceTimings::ServiceTimings(const TimingOptions& options, Logger logger)
    : slow_ticks_(std::max<std::uint64_t>(1, to_ticks(options.slow))),
      very_slow_ticks_(std::max<std::uint64_t>(1, to_ticks(options.very_slow))),
      logger_(std::move(logger)) {}

ServiceTimings::~ServiceTimings() {
  delete others_.load(std::memory_order_acquire);
}

ServiceTimings::Lanes<true>& ServiceTimings::other_lanes() noexcept {
  Lanes<true>* lanes = others_.load(std::memory_order_acquire);
  if (lanes == nullptr) {
    auto* fresh = new Lanes<true>();
    if (others_.compare_exchange_strong(lanes, fresh, std::memory_order_acq_rel)) {
      lanes = fresh;
    } else {
      delete fresh;  // another lane was first; `lanes` holds its set
    }
  }
  return *lanes;
}

void ServiceTimings::report_slow(std::string_view method, std::uint64_t ticks,
                                 std::uint64_t trace_id) {
  const double seconds = metrics::ticks_to_seconds(ticks);
  const bool very_slow = ticks >= very_slow_ticks_;
  bool log_now = false;
  std::uint64_t unlogged = 0;
  {
    std::lock_guard lock(slow_mu_);
    auto it = slow_.find(method);
    if (it == slow_.end()) {
      it = slow_.emplace(std::string(method), SlowMethod{std::string(method)}).first;
    }
    SlowMethod& m = it->second;
    ++m.slow;
    m.very_slow += very_slow ? 1 : 0;
    m.max_seconds = std::max(m.max_seconds, seconds);
    m.last_trace_id = trace_id;
    const auto now = std::chrono::steady_clock::now();
    const int level = very_slow ? 1 : 0;
    if (now - last_log_[level] >= std::chrono::seconds(1)) {
      last_log_[level] = now;
      log_now = true;
      unlogged = std::exchange(unlogged_[level], 0);
    } else {
      ++unlogged_[level];
    }
  }
  if (!log_now) {
    return;
  }
  const std::string more =
      unlogged == 0 ? std::string() : fmt::format(" ({} more since the last report)", unlogged);
  logger_.log(very_slow ? LogLevel::error : LogLevel::warn,
              "{} handler '{}': ran {:.1f} ms (trace {:016x}){}", very_slow ? "very slow" : "slow",
              method, seconds * 1e3, trace_id, more);
}

ServiceTimings::Snapshot ServiceTimings::snapshot() const noexcept {
  Snapshot s{lane0_.wait.snapshot(), lane0_.run.snapshot()};
  if (const Lanes<true>* others = others_.load(std::memory_order_acquire)) {
    s.wait.add(others->wait.snapshot());
    s.run.add(others->run.snapshot());
  }
  return s;
}

std::vector<SlowMethod> ServiceTimings::slow_methods() const {
  std::vector<SlowMethod> out;
  {
    std::lock_guard lock(slow_mu_);
    for (const auto& [name, m] : slow_) {
      out.push_back(m);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const SlowMethod& a, const SlowMethod& b) { return a.max_seconds > b.max_seconds; });
  return out;
}

}  // namespace ember::detail
