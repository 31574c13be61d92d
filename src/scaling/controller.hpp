// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <chrono>
#include <ember/config.hpp>
#include <ember/scaling.hpp>
#include <optional>
#include <string_view>

namespace ember::detail {

/// The rules the scaler applies around a strategy's votes: Min/Max, Hysteresis, Cooldown and the
/// steps. Time is passed in, so the rules are tested without threads or clocks.
class ScaleController {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Outcome {
    hold,        ///< the strategy voted hold
    waiting,     ///< a vote not yet repeated Hysteresis times in a row
    cooling,     ///< agreed, but the previous change is younger than Cooldown
    at_limit,    ///< agreed, but already at Max (grow) or Min (shrink)
    too_busy,    ///< shrink agreed, but the lanes left would be busier than ShrinkMaxBusy
    grow,        ///< lanes -> target, by the strategy
    shrink,      ///< lanes -> target, by the strategy
    into_bounds  ///< lanes were outside Min..Max (set by hand): brought back at once
  };

  struct Decision {
    Outcome outcome = Outcome::hold;
    int target = 1;  ///< equals the current lane count unless outcome is grow/shrink/into_bounds
    int streak = 0;  ///< evaluations in a row with the same non-hold vote, this one included
  };

  explicit ScaleController(const ScalingConfig& config);
  /// `busy_lanes`: the measured load in lanes' worth of handler time (ScalingSample::busy_lanes).
  Decision decide(int lanes, ScaleVote vote, Clock::time_point now, double busy_lanes);

  /// Where a shrink from `lanes` goes: ShrinkStep down, not below Min.
  [[nodiscard]] int shrink_target(int lanes) const noexcept {
    return std::max(config_.min_lanes, lanes - config_.shrink.of(lanes));
  }

  [[nodiscard]] bool changes(const Decision& d) const noexcept {
    return d.outcome == Outcome::grow || d.outcome == Outcome::shrink ||
           d.outcome == Outcome::into_bounds;
  }

 private:
  const ScalingConfig& config_;
  ScaleVote last_vote_ = ScaleVote::hold;
  int streak_ = 0;
  std::optional<Clock::time_point> last_change_;
};

std::string_view to_string(ScaleController::Outcome outcome) noexcept;

}  // namespace ember::detail
