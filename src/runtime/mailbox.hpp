// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/message.hpp"
#include "runtime/mpsc_queue.hpp"
#include "runtime/scheduler.hpp"

namespace ember::runtime {

/// Executes a message popped from a lane: runs it, or rejects it when the owner is closed.
/// Deletes the message. Never throws.
class LaneOwner {
 public:
  virtual ~LaneOwner() = default;
  virtual void execute(Message* m, int lane) noexcept = 0;
};

/// One sequential execution context of a service: two MPSC queues (system, user) drained by at
/// most one worker at a time. System messages are taken first at every step.
///
/// The lane is in a run queue only while it has messages and its gate is open (skynet's idea:
/// an idle service costs nothing). A closed gate holds messages without losing them; the
/// mailbox uses it while a service starts and to keep per-key order during a lane-count change.
class Lane final : public Runnable {
 public:
  static constexpr int kBatch = 64;

  Lane(LaneOwner* owner, Scheduler* scheduler, int index);

  /// Thread-safe.
  void push(Message* m) noexcept;
  void close_gate() noexcept;
  void open_gate() noexcept;

  void run_slice() override;

  [[nodiscard]] int index() const noexcept { return index_; }
  [[nodiscard]] std::int64_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  /// True when no worker runs or will run this lane (nothing queued, not scheduled).
  [[nodiscard]] bool quiescent() const noexcept;
  /// Thread that currently runs this lane's message, for self-call detection.
  [[nodiscard]] bool running_on_this_thread() const noexcept;

 private:
  void try_schedule(bool resubmit) noexcept;

  LaneOwner* const owner_;
  Scheduler* const scheduler_;
  const int index_;
  MpscQueue system_;
  MpscQueue user_;
  std::atomic<std::int64_t> size_{0};
  std::atomic<int> gate_{0};
  std::atomic<bool> scheduled_{false};
  std::atomic<int> in_slice_{0};
  std::atomic<std::thread::id> runner_{};
};

/// A service's set of lanes and the routing of messages onto them.
///
/// Keyed messages go to a lane picked by consistent hashing with virtual nodes, so a change in
/// the lane count moves only a fraction of keys. Un-keyed messages are spread round-robin.
///
/// Changing the lane count keeps per-key order: every lane that gives keys away gets a barrier
/// at its tail, and every lane that receives keys stays gated until the barriers of all its
/// givers have run. One change runs at a time; a request during a change is applied after it.
class Mailbox {
 public:
  struct Options {
    int lanes = 1;
    int virtual_nodes = 100;
    std::int64_t user_bound = 0;  // 0 = unbounded
  };

  Mailbox(LaneOwner* owner, Scheduler* scheduler, Options options);
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  /// True when a bound is configured: only then do owners mark messages `counted` (counting an
  /// unbounded mailbox would cost two contended atomics per message for nothing).
  [[nodiscard]] bool bounded() const noexcept { return user_bound_ > 0; }

  /// Routes and enqueues. A `counted` user message over the bound is refused with overloaded
  /// and not enqueued (the message is not deleted: the caller still owns it on failure).
  Status push(Message* m) noexcept;

  /// Requests `lanes` lanes (clamped to [1, kMaxLanes]).
  void resize(int lanes);
  [[nodiscard]] int lane_count() const;
  /// True while a lane-count change is still waiting for barriers.
  [[nodiscard]] bool resizing() const;

  /// Gates every lane (messages queue but do not run) / reopens them.
  void hold();
  void release();

  /// Posts a control message at the tail of every lane's user queue and calls `done` once all
  /// of them have run. Used to drain a stopping service.
  void post_drain_markers(std::function<void()> done);

  /// Every lane idle and unscheduled.
  [[nodiscard]] bool quiescent() const;
  [[nodiscard]] std::int64_t queued() const;
  /// Messages queued per lane index (diagnostics).
  [[nodiscard]] std::vector<std::int64_t> lane_sizes() const;
  [[nodiscard]] std::int64_t user_pending() const noexcept {
    return user_pending_.load(std::memory_order_relaxed);
  }
  /// Called by the owner when a counted message leaves the queue (starts running or is rejected).
  void on_counted_done() noexcept { user_pending_.fetch_sub(1, std::memory_order_relaxed); }

  /// Lane a key maps to now (tests and diagnostics).
  [[nodiscard]] int lane_for_key(std::uint64_t hash) const;

  static constexpr int kMaxLanes = 1024;

 private:
  struct Routing;
  class Barrier;

  void apply_resize_locked(int target);
  void barrier_done();
  void enter_post() const noexcept;
  void leave_post() const noexcept;
  void exclusive_begin() noexcept;
  void exclusive_end() noexcept;
  std::unique_ptr<Routing> build_routing(int lanes);

  LaneOwner* const owner_;
  Scheduler* const scheduler_;
  const int virtual_nodes_;
  const std::int64_t user_bound_;

  // Posters register in post_gate_; a lane-count change waits for them to leave, so nobody
  // enqueues by the old routing once barriers are placed (high bit = writer waiting).
  mutable std::atomic<std::uint32_t> post_gate_{0};
  std::atomic<Routing*> routing_{nullptr};
  std::atomic<std::uint64_t> round_robin_{0};
  std::atomic<std::int64_t> user_pending_{0};

  mutable std::mutex resize_mu_;
  // Every lane ever created, by index. Lanes above the current count stay allocated (idle):
  // a late barrier or diagnostic may still touch them, and a regrow reuses them.
  std::vector<std::unique_ptr<Lane>> lanes_;
  int pending_target_ = 0;
  int outstanding_barriers_ = 0;
  bool held_ = false;
};

}  // namespace ember::runtime
