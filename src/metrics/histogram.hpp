// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "metrics/ticks.hpp"

namespace ember::metrics {

/// Upper bounds (seconds) of the buckets of every time histogram Ember exports, from the
/// microsecond a short handler takes to the seconds of a stuck one; a last bucket (+Inf) holds
/// the rest. One set for all, so that histograms of different services can be summed.
inline constexpr std::array<double, 14> kTimeBounds = {1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3,
                                                       5e-3, 1e-2, 5e-2, 0.1,  0.5,  1.0,  5.0};
inline constexpr std::size_t kTimeBuckets = kTimeBounds.size() + 1;

/// What a histogram holds at one moment: per-bucket counts (not cumulative) and the sum.
struct HistogramSnapshot {
  std::array<std::uint64_t, kTimeBuckets> counts{};
  double sum_seconds = 0;
  [[nodiscard]] std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (std::uint64_t c : counts) {
      n += c;
    }
    return n;
  }
  void add(const HistogramSnapshot& other) noexcept {
    for (std::size_t i = 0; i < kTimeBuckets; ++i) {
      counts[i] += other.counts[i];
    }
    sum_seconds += other.sum_seconds;
  }
};

/// kTimeBounds in ticks (measured once).
const std::array<std::uint64_t, kTimeBounds.size()>& time_bounds_in_ticks() noexcept;

/// A time histogram in ticks. `Shared` picks how it is written: false, by one thread at a time
/// (a lane; plain relaxed stores, no locked instruction on the message path); true, by any
/// thread (atomic additions). Readers on any thread see each counter whole.
template <bool Shared>
class TickHistogram {
 public:
  TickHistogram() : bounds_(time_bounds_in_ticks()) {}

  void observe(std::uint64_t ticks) noexcept {
    std::size_t bucket = 0;
    // Most observations are short: the search usually ends at the first bound.
    while (bucket < bounds_.size() && ticks > bounds_[bucket]) {
      ++bucket;
    }
    bump(counts_[bucket], 1);
    bump(sum_ticks_, ticks);
  }

  [[nodiscard]] HistogramSnapshot snapshot() const noexcept {
    HistogramSnapshot s;
    for (std::size_t i = 0; i < kTimeBuckets; ++i) {
      s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    }
    s.sum_seconds = ticks_to_seconds(sum_ticks_.load(std::memory_order_relaxed));
    return s;
  }

 private:
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by) noexcept {
    if constexpr (Shared) {
      counter.fetch_add(by, std::memory_order_relaxed);
    } else {
      counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
    }
  }

  const std::array<std::uint64_t, kTimeBounds.size()>& bounds_;
  std::array<std::atomic<std::uint64_t>, kTimeBuckets> counts_{};
  std::atomic<std::uint64_t> sum_ticks_{0};
};

}  // namespace ember::metrics
