// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ember/clock.hpp>
#include <ember/dispatch.hpp>
#include <ember/scaling.hpp>
#include <memory>
#include <mutex>
#include <string>

namespace ember::detail {

/// What an autoscaled service measures about itself, read by the node's scaler.
///
/// Every lane writes only its own slot (one lane runs on one thread at a time), with plain
/// relaxed stores: no locked instruction on the message path. The scaler reads the running
/// totals and diffs them against what it saw last time, so nothing is ever reset under a writer.
class ScalingProbe {
 public:
  explicit ScalingProbe(int max_lanes);
  ~ScalingProbe();
  ScalingProbe(const ScalingProbe&) = delete;
  ScalingProbe& operator=(const ScalingProbe&) = delete;

  static std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
  }

  /// On the lane's thread, as a message starts: how long it waited since it was queued.
  void record_wait(int lane, Priority priority, std::int64_t wait_ns) noexcept;
  /// On the lane's thread, after a slice: the thread CPU time it took.
  void record_cpu(int lane, std::int64_t cpu_ns) noexcept;
  /// On the lane's thread, around each handler: its wall time is the lane's busy time. While a
  /// handler runs, collect() already counts the part that has elapsed, so a handler that runs for
  /// many intervals keeps its lane busy in every one of them, not only in the one it ends in.
  /// Also records the queueing delay when `enqueued_ns` is set (0 = not stamped).
  void message_started(int lane, Priority priority, std::int64_t enqueued_ns,
                       std::int64_t now_ns) noexcept;
  void message_finished(int lane, std::int64_t started_ns, std::int64_t now_ns) noexcept;

  /// Scaler thread only: adds what happened since the previous call to `sample` (waits, CPU and
  /// busy time, and as `handled` the messages that started).
  void collect(ScalingSample& sample);

  /// Gauges and counters of the scaler's decisions (Service::scaling()).
  struct Status {
    std::uint64_t evaluations = 0;
    std::uint64_t grows = 0;
    std::uint64_t shrinks = 0;
    std::chrono::microseconds user_wait_p99{0};
    std::chrono::microseconds system_wait_p99{0};
    double cpu_per_lane = 0;
    double busy_per_lane = 0;
    std::string last_decision;
  };
  void publish(Status status);
  [[nodiscard]] Status status() const;

 private:
  struct Slot;
  Slot& slot(int lane) noexcept;
  static void record_wait(Slot& s, Priority priority, std::int64_t wait_ns) noexcept;

  const int max_lanes_;
  std::unique_ptr<std::atomic<Slot*>[]> slots_;
  mutable std::mutex status_mu_;
  Status status_;
};

}  // namespace ember::detail
