// SPDX-License-Identifier: Apache-2.0
#include "metrics/ticks.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "metrics/histogram.hpp"

namespace ember::metrics {
namespace {

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Calibration {
  std::mutex mu;
  bool started = false;
  std::uint64_t base_ticks = 0;
  std::int64_t base_ns = 0;
  std::atomic<double> rate{0};
  std::atomic<std::int64_t> rate_span_ns{0};  // the span the rate was measured over
};

Calibration& calibration() {
  static Calibration c;
  return c;
}

}  // namespace

double ticks_per_second() noexcept {
  Calibration& c = calibration();
  const double known = c.rate.load(std::memory_order_acquire);
  // Over a longer span the figure only gets more exact; past a minute it is as good as it gets.
  if (known != 0 && c.rate_span_ns.load(std::memory_order_relaxed) >= 60'000'000'000) {
    return known;
  }
  // Once a rate is known, a caller never waits: whoever gets the lock refines it, the others
  // take the current figure.
  std::unique_lock lock(c.mu, std::defer_lock);
  if (known != 0) {
    if (!lock.try_lock()) {
      return known;
    }
  } else {
    lock.lock();
  }
  if (!c.started) {
    c.started = true;
    c.base_ticks = now_ticks();
    c.base_ns = steady_ns();
  }
  std::int64_t span = steady_ns() - c.base_ns;
  while (span < 2'000'000) {
    std::this_thread::yield();
    span = steady_ns() - c.base_ns;
  }
  if (span > c.rate_span_ns.load(std::memory_order_relaxed) * 2 ||
      c.rate.load(std::memory_order_relaxed) == 0) {
    const std::uint64_t ticks = now_ticks() - c.base_ticks;
    const double rate = static_cast<double>(ticks) * 1e9 / static_cast<double>(span);
    c.rate.store(rate > 0 ? rate : 1e9, std::memory_order_release);
    c.rate_span_ns.store(span, std::memory_order_relaxed);
  }
  return c.rate.load(std::memory_order_relaxed);
}

const std::array<std::uint64_t, kTimeBounds.size()>& time_bounds_in_ticks() noexcept {
  static const std::array<std::uint64_t, kTimeBounds.size()> bounds = [] {
    std::array<std::uint64_t, kTimeBounds.size()> b{};
    for (std::size_t i = 0; i < b.size(); ++i) {
      b[i] = seconds_to_ticks(kTimeBounds[i]);
    }
    return b;
  }();
  return bounds;
}

}  // namespace ember::metrics
