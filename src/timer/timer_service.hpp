// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ember/clock.hpp>
#include <ember/error.hpp>
#include <ember/timer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/message.hpp"
#include "runtime/scheduler.hpp"
#include "timer/cron.hpp"

namespace ember::timer {

/// Where fires go: a service's mailbox. post_timer_fire must not run the message inline.
class TimerTarget {
 public:
  virtual ~TimerTarget() = default;
  /// Enqueues `m` (an internal message: never refused for the mailbox bound). On failure the
  /// target calls m->reject() and deletes it.
  virtual void post_timer_fire(runtime::Message* m) noexcept = 0;
};

/// The timers one module owns, so that releasing the module cancels them. Guarded by the
/// TimerService's mutex; the owner only holds the head of an intrusive list.
struct TimerOwnerList {
  std::uint32_t head = 0xffffffffu;
  std::uint32_t count = 0;
};

/// Hierarchical timing wheel (256 near slots, then 4 levels of 64, like skynet's) plus the
/// thread that advances it. Insert and cancel are O(1); entries live in a slab and are found by
/// index, and the generation in a TimerId makes stale ids harmless.
///
/// A fire is a message posted to the owner's mailbox: callbacks never run on the timer thread.
/// The entry stays allocated while a fire is queued, so cancelling after the post still wins:
/// the queued fire sees the cancel and does nothing. The thread sleeps until the next
/// non-empty slot; with no timers it sleeps until one is scheduled.
class TimerService final : public runtime::TimeDriven {
 public:
  using Clock = ember::Clock;

  explicit TimerService(std::chrono::milliseconds tick);
  ~TimerService() override;
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  /// Starts the wheel thread. Without it, tests drive time with advance_to().
  void start();
  void stop();

  struct Request {
    TimerTarget* target = nullptr;
    TimerOwnerList* owner = nullptr;
    Clock::duration delay{};
    Clock::duration period{};  // > 0: ticker
    std::unique_ptr<CronSchedule> cron;
    TimerOptions options;
    std::function<void()> callback;
  };
  TimerId schedule(Request&& request);
  /// True when this call stopped the timer: a one-shot will not run, a ticker fires no more.
  bool cancel(TimerId id);
  /// Cancels every timer of `owner`. Waits for a fire batch being posted, so that afterwards no
  /// new fire for these timers can reach the target.
  void cancel_all(TimerOwnerList& owner);

  [[nodiscard]] std::size_t pending() const;
  [[nodiscard]] std::chrono::milliseconds tick() const noexcept { return tick_; }
  /// Bytes held by the slab, for the memory benchmark.
  [[nodiscard]] std::size_t slab_bytes() const;

  /// Fires everything due at `now` (tests and the simulator: manual time; the thread calls it
  /// too).
  void advance_to(Clock::time_point now) override;
  /// When the wheel next needs a look (a slot with timers, or a cascade), for manual time.
  [[nodiscard]] std::optional<Clock::time_point> next_wake() const override;

  struct Entry;

 private:
  class Fire;
  friend class Fire;

  std::uint32_t allocate_locked();
  void free_locked(std::uint32_t index);
  Entry& at(std::uint32_t index) const;
  void link_locked(std::uint32_t index);
  void unlink_locked(std::uint32_t index);
  void owner_link_locked(std::uint32_t index);
  void owner_unlink_locked(std::uint32_t index);
  void cancel_locked(std::uint32_t index);
  void fire_done(std::uint32_t index, std::uint32_t generation);
  /// First tick at or after `t` (a deadline never fires early).
  std::uint64_t tick_of(Clock::time_point t) const;
  /// Last tick whose start is at or before `t` (what is due now).
  std::uint64_t due_tick_of(Clock::time_point t) const;
  std::uint64_t wake_tick_locked() const;
  /// A fire to post, copied out under the lock so that posting needs no lock.
  struct Due {
    std::uint32_t index;
    std::uint32_t generation;
    TimerTarget* target;
    std::uint64_t key_hash;
    Priority priority;
  };
  void collect_due_locked(std::uint64_t target, std::vector<Due>& due);
  void rearm_locked(std::uint32_t index, Clock::time_point now);
  void post_fires(const std::vector<Due>& due);
  void thread_main();

  /// "Now" for computing a new timer's expiry: never earlier than the true time (a timer must not
  /// fire early), but read from the coarse clock when the tick is much coarser than it (5 ns
  /// instead of ~25 ns on this kind of VM; the expiry is rounded up to a tick anyway).
  Clock::time_point schedule_now() const noexcept;

  const std::chrono::milliseconds tick_;
  const Clock::time_point epoch_;
  Clock::duration coarse_slack_{};  // resolution of the coarse clock, when it is used
  bool use_coarse_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t current_ = 0;  // last processed tick
  std::uint64_t planned_wake_ = ~std::uint64_t{0};
  std::size_t pending_ = 0;  // entries linked in the wheel
  std::uint32_t near_[256];
  std::uint32_t levels_[4][64];
  std::vector<std::unique_ptr<Entry[]>> chunks_;
  std::uint32_t free_head_;
  std::uint32_t capacity_ = 0;

  std::mutex posting_mu_;  // held while a fire batch is posted (see cancel_all)
  std::thread thread_;
  bool stopping_ = false;
};

}  // namespace ember::timer
