// SPDX-License-Identifier: Apache-2.0
// The scaler's rules around the votes (bounds, hysteresis, cooldown, steps), with time passed in.
#include "scaling/controller.hpp"

#include <gtest/gtest.h>

#include "scaling/probe.hpp"

namespace ember::detail {
namespace {

using namespace std::chrono_literals;
using O = ScaleController::Outcome;
const auto t0 = ScaleController::Clock::time_point{} + 1h;
constexpr double kIdle = 0;  // measured load, in lanes' worth of handler time

ScalingConfig band(int min, int max, int hysteresis, std::chrono::milliseconds cooldown) {
  ScalingConfig c;
  c.min_lanes = min;
  c.max_lanes = max;
  c.hysteresis = hysteresis;
  c.cooldown = cooldown;
  return c;
}

TEST(ScaleController, ActsOnlyAfterHysteresisVotesInARow) {
  ScalingConfig c = band(1, 8, 3, 0ms);
  ScaleController ctl(c);
  EXPECT_EQ(ctl.decide(2, ScaleVote::grow, t0, kIdle).outcome, O::waiting);
  EXPECT_EQ(ctl.decide(2, ScaleVote::grow, t0 + 1s, kIdle).outcome, O::waiting);
  auto d = ctl.decide(2, ScaleVote::grow, t0 + 2s, kIdle);
  EXPECT_EQ(d.outcome, O::grow);
  EXPECT_EQ(d.target, 3);
  EXPECT_EQ(d.streak, 3);
  // The change used the streak up: the next one needs three agreeing votes again.
  EXPECT_EQ(ctl.decide(3, ScaleVote::grow, t0 + 3s, kIdle).outcome, O::waiting);
}

TEST(ScaleController, AHoldOrAnOppositeVoteRestartsTheStreak) {
  ScalingConfig c = band(1, 8, 2, 0ms);
  ScaleController ctl(c);
  EXPECT_EQ(ctl.decide(4, ScaleVote::grow, t0, kIdle).outcome, O::waiting);
  EXPECT_EQ(ctl.decide(4, ScaleVote::hold, t0 + 1s, kIdle).outcome, O::hold);
  EXPECT_EQ(ctl.decide(4, ScaleVote::grow, t0 + 2s, kIdle).outcome, O::waiting);
  EXPECT_EQ(ctl.decide(4, ScaleVote::shrink, t0 + 3s, kIdle).outcome, O::waiting);
  auto d = ctl.decide(4, ScaleVote::shrink, t0 + 4s, kIdle);
  EXPECT_EQ(d.outcome, O::shrink);
  EXPECT_EQ(d.target, 3);
}

TEST(ScaleController, CooldownDelaysTheNextChangeButKeepsTheStreak) {
  ScalingConfig c = band(1, 8, 1, 3000ms);
  ScaleController ctl(c);
  EXPECT_EQ(ctl.decide(1, ScaleVote::grow, t0, kIdle).target, 2);
  EXPECT_EQ(ctl.decide(2, ScaleVote::grow, t0 + 1s, kIdle).outcome, O::cooling);
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0 + 2s, kIdle).outcome, O::cooling);
  auto d = ctl.decide(2, ScaleVote::shrink, t0 + 3s, kIdle);
  EXPECT_EQ(d.outcome, O::shrink);
  EXPECT_EQ(d.target, 1);
}

TEST(ScaleController, StepsAreCountsOrPercentagesClampedToTheBand) {
  ScalingConfig c = band(2, 10, 1, 0ms);
  c.grow = ScalingStep{4, 0};
  c.shrink = ScalingStep{1, 50};
  ScaleController ctl(c);
  EXPECT_EQ(ctl.decide(2, ScaleVote::grow, t0, kIdle).target, 6);
  EXPECT_EQ(ctl.decide(6, ScaleVote::grow, t0 + 1s, kIdle).target, 10);  // 6 + 4 capped at Max
  EXPECT_EQ(ctl.decide(10, ScaleVote::grow, t0 + 2s, kIdle).outcome, O::at_limit);
  EXPECT_EQ(ctl.decide(10, ScaleVote::shrink, t0 + 3s, kIdle).target, 5);  // 50 % of 10
  EXPECT_EQ(ctl.decide(5, ScaleVote::shrink, t0 + 4s, kIdle).target,
            2);  // 50 % of 5 rounds up to 3
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0 + 5s, kIdle).outcome, O::at_limit);
}

TEST(ScaleController, ALaneCountSetOutsideTheBandIsBroughtBackAtOnce) {
  ScalingConfig c = band(2, 4, 5, 10'000ms);
  ScaleController ctl(c);
  auto d = ctl.decide(9, ScaleVote::hold, t0, kIdle);
  EXPECT_EQ(d.outcome, O::into_bounds);
  EXPECT_EQ(d.target, 4);
  d = ctl.decide(1, ScaleVote::grow, t0 + 1ms, kIdle);  // no hysteresis, no cooldown for bounds
  EXPECT_EQ(d.outcome, O::into_bounds);
  EXPECT_EQ(d.target, 2);
}

TEST(ScaleController, NoShrinkIntoLanesTheMeasuredLoadWouldOverfill) {
  ScalingConfig c = band(1, 8, 2, 0ms);  // ShrinkMaxBusy 0.75 by default
  ScaleController ctl(c);
  // 1.2 lanes' worth of handler time: 2 lanes carry it (60 % each), 1 lane cannot.
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0, 1.2).outcome, O::waiting);
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0 + 1s, 1.2).outcome, O::too_busy);
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0 + 2s, 1.2).outcome, O::too_busy);
  // The streak stands: once the load falls the shrink happens at the next evaluation.
  auto d = ctl.decide(2, ScaleVote::shrink, t0 + 3s, 0.7);
  EXPECT_EQ(d.outcome, O::shrink);
  EXPECT_EQ(d.target, 1);

  // 3 lanes at 1.5 lanes' worth: shrinking to 2 leaves 75 %, allowed; to 1 it would not be.
  EXPECT_EQ(ctl.decide(3, ScaleVote::shrink, t0 + 4s, 1.5).outcome, O::waiting);
  EXPECT_EQ(ctl.decide(3, ScaleVote::shrink, t0 + 5s, 1.5).target, 2);

  c.shrink_max_busy = 0;  // the check is off
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0 + 6s, 5.0).outcome, O::waiting);
  EXPECT_EQ(ctl.decide(2, ScaleVote::shrink, t0 + 7s, 5.0).target, 1);
}

TEST(ScalingProbe, CollectReturnsWhatHappenedSinceThePreviousCollect) {
  ScalingProbe probe(8);
  probe.record_wait(0, Priority::user, 3'000'000);   // 3 ms
  probe.record_wait(5, Priority::user, 40'000'000);  // 40 ms
  probe.record_wait(5, Priority::system, 2'000);     // 2 us
  probe.record_cpu(0, 1'500'000);
  probe.record_cpu(5, 500'000);
  probe.record_cpu(99, 1'000'000);  // beyond the size: clamped to the last slot, counted
  probe.message_started(0, Priority::user, 0, 1'000'000);
  probe.message_finished(0, 1'000'000, 3'000'000);
  probe.message_started(5, Priority::user, 0, 10'000'000);
  probe.message_finished(5, 10'000'000, 14'500'000);
  ScalingSample first;
  probe.collect(first);
  EXPECT_EQ(first.user_wait.count(), 2u);
  EXPECT_EQ(first.system_wait.count(), 1u);
  EXPECT_GE(first.user_wait.percentile(100), 40ms);
  EXPECT_LT(first.user_wait.percentile(100), 48ms);
  EXPECT_EQ(first.handled, 3u);
  EXPECT_EQ(first.handler_cpu, 3000us);
  EXPECT_EQ(first.handler_busy, 6500us);  // 2 ms + 4.5 ms of finished handlers

  probe.record_wait(1, Priority::user, 1'000);
  ScalingSample second;
  probe.collect(second);
  EXPECT_EQ(second.user_wait.count(), 1u);
  EXPECT_EQ(second.system_wait.count(), 0u);
  EXPECT_EQ(second.handled, 1u);
  EXPECT_EQ(second.handler_cpu, 0us);
  EXPECT_EQ(second.handler_busy, 0us);
}

TEST(ScalingProbe, ARunningHandlerCountsAsBusyWhileItRunsAndExactlyOnceInTotal) {
  ScalingProbe probe(2);
  ScalingSample discard;
  probe.collect(discard);
  const std::int64_t start = ScalingProbe::now_ns() - 5'000'000;  // running for 5 ms already
  probe.message_started(1, Priority::user, 0, start);
  ScalingSample during;
  probe.collect(during);
  EXPECT_GE(during.handler_busy, 5000us) << "a handler still running keeps its lane busy";
  probe.message_finished(1, start, start + 40'000'000);  // it took 40 ms in all
  ScalingSample after;
  probe.collect(after);
  const auto total = (during.handler_busy + after.handler_busy).count();
  EXPECT_NEAR(static_cast<double>(total), 40'000.0, 2.0) << "credited once, not twice";
  ScalingSample idle;
  probe.collect(idle);
  EXPECT_EQ(idle.handler_busy, 0us);
}

}  // namespace
}  // namespace ember::detail
