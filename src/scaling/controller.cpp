// SPDX-License-Identifier: Apache-2.0
#include "scaling/controller.hpp"

#include <algorithm>

namespace ember::detail {

ScaleController::ScaleController(const ScalingConfig& config) : config_(config) {}

ScaleController::Decision ScaleController::decide(int lanes, ScaleVote vote,
                                                  Clock::time_point now) {
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
    d.outcome = Outcome::shrink;
    d.target = std::max(min, lanes - config_.shrink.of(lanes));
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
    case O::grow: return "grow";
    case O::shrink: return "shrink";
    case O::into_bounds: return "into Min..Max";
    case O::hold: break;
  }
  return "hold";
}

}  // namespace ember::detail
