// SPDX-License-Identifier: Apache-2.0
//
// Autoscaling strategies: what decides whether a service's lane count grows or shrinks.
//
// A strategy looks at one sample of a service (queue, queueing delay, handler CPU time over the
// last evaluation interval) and votes grow, hold or shrink, with the measured values as reason.
// The node's scaler applies min/max, steps, cooldown and hysteresis around the votes. Built in:
// queue_length, queue_delay, cpu, and the composites all / any (nestable). Your own:
//
//   ember::register_scaling_strategy("backlog_age", [](const ember::ScalingStrategyConfig& c)
//       -> ember::Result<std::unique_ptr<ember::ScalingStrategy>> {
//     ember::StrategyParams p(c);
//     auto limit = p.duration("Limit", std::chrono::milliseconds(50));
//     if (auto st = p.finish(); !st) return st.error();
//     return std::make_unique<BacklogAge>(*limit);
//   });
//
// and name it in node.yaml: WorkerConf: {Scaling: {Strategy: {Name: backlog_age, Params: {Limit:
// 20ms}}}}.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <ember/error.hpp>
#include <functional>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <string_view>

namespace ember {

/// Queueing delays seen over one interval: log-scaled buckets (4 per power of two of
/// microseconds, so a percentile is exact within 19 %), from 1 us to about 70 minutes.
class WaitHistogram {
 public:
  static constexpr int kBuckets = 128;
  void add(std::chrono::microseconds wait) noexcept;
  /// Counts `n` samples into `bucket` at once (merging counters kept elsewhere).
  void add_to_bucket(int bucket, std::uint64_t n) noexcept;
  /// The delay at or below which `percent` of the samples fall; zero when there are none.
  [[nodiscard]] std::chrono::microseconds percentile(double percent) const noexcept;
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  void merge(const WaitHistogram& other) noexcept;
  std::array<std::uint64_t, kBuckets> buckets{};

  static int bucket_of(std::uint64_t micros) noexcept;
  static std::uint64_t upper_bound_of(int bucket) noexcept;

 private:
  std::uint64_t count_ = 0;
};

/// What a strategy sees of a service at one evaluation.
struct ScalingSample {
  int lanes = 1;
  int min_lanes = 1;
  int max_lanes = 1;
  std::chrono::milliseconds interval{0};     ///< time covered by the figures below
  std::int64_t queued = 0;                   ///< messages waiting now, all lanes
  std::int64_t longest_lane = 0;             ///< messages waiting now in the fullest lane
  std::uint64_t handled = 0;                 ///< messages run during the interval
  WaitHistogram user_wait;                   ///< queueing delay of user messages run
  WaitHistogram system_wait;                 ///< queueing delay of system messages run
  std::chrono::microseconds handler_cpu{0};  ///< CPU time spent in the service's handlers
  /// Wall time lanes spent running handlers (includes handlers blocked on I/O or sleeping).
  std::chrono::microseconds handler_busy{0};
  /// Handler CPU per lane over the interval: 1.0 = every lane busy all the time.
  [[nodiscard]] double cpu_per_lane() const noexcept;
  /// How many lanes' worth of handler wall time the interval held (1.5 = one and a half lanes
  /// busy all the time): the load, independent of the current lane count.
  [[nodiscard]] double busy_lanes() const noexcept;
};

enum class ScaleVote : std::int8_t { shrink = -1, hold = 0, grow = 1 };
std::string_view to_string(ScaleVote vote) noexcept;

struct ScaleVerdict {
  ScaleVote vote = ScaleVote::hold;
  std::string why;  ///< the measured values behind the vote, for the decision log
};

class ScalingStrategy {
 public:
  virtual ~ScalingStrategy() = default;
  /// Called from the node's scaler thread, one service at a time.
  virtual ScaleVerdict evaluate(const ScalingSample& sample) = 0;
};

/// Reads a strategy's Params with types and ranges; every error names the key path and line.
/// Call finish() last: a parameter nobody read is reported as unknown (a typo).
class StrategyParams {
 public:
  explicit StrategyParams(const ScalingStrategyConfig& config);
  Result<double> number(std::string_view key, double fallback, double lo, double hi);
  Result<std::chrono::microseconds> duration(std::string_view key,
                                             std::chrono::microseconds fallback);
  Result<std::string> choice(std::string_view key, std::string fallback,
                             std::initializer_list<std::string_view> allowed);
  [[nodiscard]] bool has(std::string_view key) const;
  Status finish() const;
  [[nodiscard]] Error error(std::string_view key, std::string_view what) const;

 private:
  const ScalingStrategyConfig& config_;
  std::set<std::string, std::less<>> read_;
};

using ScalingStrategyFactory =
    std::function<Result<std::unique_ptr<ScalingStrategy>>(const ScalingStrategyConfig&)>;

/// Adds a strategy by name (already_exists if taken). Thread-safe; usually done at start-up.
Status register_scaling_strategy(std::string name, ScalingStrategyFactory factory);
/// Builds a strategy tree from its configuration, sub-strategies included.
Result<std::unique_ptr<ScalingStrategy>> make_scaling_strategy(const ScalingStrategyConfig& config);

}  // namespace ember
