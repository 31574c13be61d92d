// SPDX-License-Identifier: Apache-2.0
#include "scaling/controller.hpp"

#include <algorithm>

namespace ember::detail {

ScaleController::ScaleController(const ScalingConfig& config) : config_(config) {}

ScaleController::Decision ScaleController::decide(int lanes, ScaleVote vote, Clock::time_point now,
                                                  double busy_lanes) {
  const int min = config_.min_lanes;
  const int max = config_.max_lanes;
  if (vote == ScaleVote::hold || vote != last_vote_) {
    streak_ = vote == ScaleVote::hold ? 0 : 1;
    last_vote_ = vote;
  } else {
    ++streak_;
  }
  Decision d{Outcome::hold, lanes, streak_};
  if (lanes < min || lanes > max) {
    // Someone called set_lane_count outside the band: the band wins, without waiting.
    d.outcome = Outcome::into_bounds;
    d.target = std::clamp(lanes, min, max);
  } else if (vote == ScaleVote::hold) {
    return d;
  } else if (streak_ < config_.hysteresis) {
    d.outcome = Outcome::waiting;
    return d;
  } else if (vote == ScaleVote::grow ? lanes >= max : lanes <= min) {
    d.outcome = Outcome::at_limit;
    return d;
  } else if (last_change_ && now - *last_change_ < config_.cooldown) {
    d.outcome = Outcome::cooling;  // the streak stands: it acts as soon as the cooldown ends
    return d;
  } else if (vote == ScaleVote::grow) {
    d.outcome = Outcome::grow;
    d.target = std::min(max, lanes + config_.grow.of(lanes));
  } else {
    const int target = shrink_target(lanes);
    if (config_.shrink_max_busy > 0 && busy_lanes / target > config_.shrink_max_busy) {
      // Queue-based strategies see short queues once enough lanes run and vote shrink; the
      // smaller count would then queue again and vote grow. The streak stands, as for cooling.
      d.outcome = Outcome::too_busy;
      return d;
    }
    d.outcome = Outcome::shrink;
    d.target = target;
  }
  last_change_ = now;
  streak_ = 0;  // the next change needs a fresh run of agreeing votes
  last_vote_ = ScaleVote::hold;
  return d;
}

std::string_view to_string(ScaleController::Outcome outcome) noexcept {
  using O = ScaleController::Outcome;
  switch (outcome) {
    case O::waiting: return "waiting for hysteresis";
    case O::cooling: return "cooling down";
    case O::at_limit: return "at limit";
    case O::too_busy: return "lanes left would be too busy";
    case O::grow: return "grow";
    case O::shrink: return "shrink";
    case O::into_bounds: return "into Min..Max";
    case O::hold: break;
  }
  return "hold";
}

}  // namespace ember::detail
