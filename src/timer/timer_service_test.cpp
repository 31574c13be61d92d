// SPDX-License-Identifier: Apache-2.0
#include "timer/timer_service.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "support/wait_for.hpp"
#include "timer/cron.hpp"
#include "timer/time_zone.hpp"

namespace ember::timer {
namespace {

using namespace std::chrono_literals;
using Clock = TimerService::Clock;

// Collects fires instead of running them, so tests decide when (and whether) they run.
class QueueTarget final : public TimerTarget {
 public:
  void post_timer_fire(runtime::Message* m) noexcept override {
    std::lock_guard lock(mu_);
    queue_.push_back(m);
  }
  int run_all() {
    int n = 0;
    for (;;) {
      runtime::Message* m;
      {
        std::lock_guard lock(mu_);
        if (queue_.empty()) {
          return n;
        }
        m = queue_.front();
        queue_.pop_front();
      }
      m->run();
      delete m;
      ++n;
    }
  }
  int reject_all() {
    std::deque<runtime::Message*> taken;
    {
      std::lock_guard lock(mu_);
      taken.swap(queue_);
    }
    // Outside our lock, as a real mailbox does: reject() takes the wheel's lock.
    for (auto* m : taken) {
      m->reject(Error{Errc::stopping, "closed"});
      delete m;
    }
    return static_cast<int>(taken.size());
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return queue_.size();
  }
  ~QueueTarget() override { reject_all(); }

 private:
  std::mutex mu_;
  std::deque<runtime::Message*> queue_;
};

TimerService::Request after(QueueTarget& target, Clock::duration delay, std::function<void()> fn,
                            TimerOwnerList* owner = nullptr) {
  TimerService::Request r;
  r.target = &target;
  r.owner = owner;
  r.delay = delay;
  r.callback = std::move(fn);
  return r;
}

TEST(TimerService, FiresOnceAtItsDeadlineNotBefore) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  const auto t0 = Clock::now();
  timers.schedule(after(target, 50ms, [&] { ++fired; }));
  timers.advance_to(t0 + 40ms);
  EXPECT_EQ(target.run_all(), 0);
  timers.advance_to(Clock::now() + 60ms);
  EXPECT_EQ(target.run_all(), 1);
  timers.advance_to(Clock::now() + 10s);
  EXPECT_EQ(target.run_all(), 0);
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerService, FiresInDeadlineOrderAcrossWheelLevels) {
  TimerService timers(1ms);
  QueueTarget target;
  std::vector<int> order;
  // 1 ms tick: 255 ms stays in the near wheel, the others cascade from levels 0, 1 and 2.
  for (int ms : {70'000, 3, 20'000, 255, 257, 5'000, 1'000}) {
    timers.schedule(
        after(target, std::chrono::milliseconds(ms), [&order, ms] { order.push_back(ms); }));
  }
  auto now = Clock::now();
  for (int step = 0; step < 80; ++step) {
    now += 1s;
    timers.advance_to(now);
    target.run_all();
  }
  EXPECT_EQ(order, (std::vector<int>{3, 255, 257, 1'000, 5'000, 20'000, 70'000}));
}

TEST(TimerService, CancelBeforeFireStopsIt) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerId id = timers.schedule(after(target, 20ms, [&] { ++fired; }));
  EXPECT_TRUE(timers.cancel(id));
  EXPECT_FALSE(timers.cancel(id));  // twice: no-op
  timers.advance_to(Clock::now() + 1s);
  EXPECT_EQ(target.run_all(), 0);
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerService, CancelAfterTheFireIsQueuedStillWins) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerId id = timers.schedule(after(target, 10ms, [&] { ++fired; }));
  timers.advance_to(Clock::now() + 1s);
  ASSERT_EQ(target.size(), 1u);  // the fire is in the mailbox, not yet run
  EXPECT_TRUE(timers.cancel(id));
  target.run_all();
  EXPECT_EQ(fired, 0);
}

TEST(TimerService, CancelAfterFireReturnsFalse) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerId id = timers.schedule(after(target, 10ms, [&] { ++fired; }));
  timers.advance_to(Clock::now() + 1s);
  target.run_all();
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timers.cancel(id));
  EXPECT_FALSE(timers.cancel(TimerId{}));
  EXPECT_FALSE(timers.cancel(TimerId{0xdeadbeef00000007ull}));
}

TEST(TimerService, StaleIdDoesNotCancelTheTimerThatReusedItsSlot) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerId first = timers.schedule(after(target, 10ms, [] {}));
  ASSERT_TRUE(timers.cancel(first));
  TimerId second = timers.schedule(after(target, 10ms, [&] { ++fired; }));
  EXPECT_NE(first, second);
  EXPECT_FALSE(timers.cancel(first));
  timers.advance_to(Clock::now() + 1s);
  target.run_all();
  EXPECT_EQ(fired, 1);
}

TEST(TimerService, TickerRepeatsUntilCancelled) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerService::Request r = after(target, 100ms, [&] { ++fired; });
  r.period = 100ms;
  TimerId id = timers.schedule(std::move(r));
  auto now = Clock::now();
  for (int i = 0; i < 5; ++i) {
    now += 100ms;
    timers.advance_to(now + 20ms);
    target.run_all();
  }
  EXPECT_GE(fired, 4);
  EXPECT_LE(fired, 5);
  EXPECT_TRUE(timers.cancel(id));
  int before = fired;
  timers.advance_to(now + 10s);
  target.run_all();
  EXPECT_EQ(fired, before);
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerService, TickerCancellingItselfFromItsCallback) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerId id;
  TimerService::Request r = after(target, 10ms, [&] {
    ++fired;
    EXPECT_TRUE(timers.cancel(id));
  });
  r.period = 10ms;
  id = timers.schedule(std::move(r));
  timers.advance_to(Clock::now() + 1s);
  target.run_all();
  timers.advance_to(Clock::now() + 2s);
  target.run_all();
  EXPECT_EQ(fired, 1);
}

TEST(TimerService, RejectedFireFreesTheTimer) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  TimerId id = timers.schedule(after(target, 10ms, [&] { ++fired; }));
  timers.advance_to(Clock::now() + 1s);
  EXPECT_EQ(target.reject_all(), 1);
  EXPECT_EQ(fired, 0);
  EXPECT_FALSE(timers.cancel(id));
}

TEST(TimerService, CancelAllRemovesEveryTimerOfAnOwner) {
  TimerService timers(10ms);
  QueueTarget target;
  TimerOwnerList mine;
  TimerOwnerList other;
  int mine_fired = 0;
  int other_fired = 0;
  for (int i = 0; i < 10; ++i) {
    timers.schedule(after(
        target, std::chrono::milliseconds(10 + i * 100), [&] { ++mine_fired; }, &mine));
  }
  timers.schedule(after(
      target, 10ms, [&] { ++other_fired; }, &other));
  EXPECT_EQ(mine.count, 10u);
  timers.cancel_all(mine);
  EXPECT_EQ(mine.count, 0u);
  timers.advance_to(Clock::now() + 10s);
  target.run_all();
  EXPECT_EQ(mine_fired, 0);
  EXPECT_EQ(other_fired, 1);
  EXPECT_EQ(other.count, 0u);  // a fired one-shot leaves its owner's list
}

TEST(TimerService, ThreadDeliversFires) {
  TimerService timers(1ms);
  timers.start();
  QueueTarget target;
  std::atomic<int> fired{0};
  for (int i = 0; i < 20; ++i) {
    timers.schedule(after(target, std::chrono::milliseconds(i), [&] { fired.fetch_add(1); }));
  }
  EXPECT_TRUE(ember::testing::wait_for([&] {
    target.run_all();
    return fired.load() == 20;
  }));
  timers.stop();
}

TEST(TimerService, CronTimerFiresAndRearms) {
  TimerService timers(10ms);
  QueueTarget target;
  int fired = 0;
  auto schedule = CronSchedule::parse("@every 1s", TimeZone::utc());
  ASSERT_TRUE(schedule);
  TimerService::Request r;
  r.target = &target;
  r.cron = std::make_unique<CronSchedule>(std::move(*schedule));
  r.callback = [&] { ++fired; };
  TimerId id = timers.schedule(std::move(r));
  auto now = Clock::now();
  timers.advance_to(now + 1100ms);
  target.run_all();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(timers.pending(), 1u);
  EXPECT_TRUE(timers.cancel(id));
}

TEST(TimerService, ManyTimersScheduleAndCancel) {
  TimerService timers(10ms);
  QueueTarget target;
  std::vector<TimerId> ids;
  for (int i = 0; i < 100'000; ++i) {
    ids.push_back(timers.schedule(after(target, std::chrono::milliseconds(1 + i % 50'000), [] {})));
  }
  EXPECT_EQ(timers.pending(), 100'000u);
  for (TimerId id : ids) {
    ASSERT_TRUE(timers.cancel(id));
  }
  EXPECT_EQ(timers.pending(), 0u);
  timers.advance_to(Clock::now() + 100s);
  EXPECT_EQ(target.run_all(), 0);
}

}  // namespace
}  // namespace ember::timer
