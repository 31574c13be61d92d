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
  /// After each slice of a mailbox built with `timed_slices`: the thread CPU time the slice
  /// took. Measured per slice, not per message: a CPU clock read is a system call.
  virtual void slice_done(int lane, std::int64_t cpu_ns) noexcept { (void)lane, (void)cpu_ns; }
};

/// One sequential execution context of a service: two MPSC queues (system, user) drained by at
/// most one worker at a time. System messages are taken first at every step.
///
/// The lane is in a run queue only while it has messages and its gate is open (skynet's idea:
/// an idle service costs nothing). A closed gate holds messages without losing them; the
/// mailbox uses it while a service starts and to keep per-key order during a lane-count change.
///
/// A lane-count change re-routes what is already queued (Handover): messages handed to a lane
/// go into its "front" lists, which run before its queues because they are older than anything
/// queued there for the same keys.
class Lane final : public Runnable {
 public:
  static constexpr int kBatch = 64;

  /// Work of a lane-count change that must run on a lane that gives keys away, as its consumer:
  /// it runs after the message in progress, ahead of everything queued.
  class Handover {
   public:
    virtual ~Handover() = default;
    virtual void run(Lane& giver) noexcept = 0;
  };

  Lane(LaneOwner* owner, Scheduler* scheduler, int index, bool timed);
  ~Lane() override;

  /// Thread-safe.
  void push(Message* m) noexcept;
  /// Thread-safe. `first`..`last` are linked through `next` and share a priority.
  void push_chain(Message* first, Message* last, std::int64_t count) noexcept;
  void close_gate() noexcept;
  void open_gate() noexcept;
  /// Thread-safe. Takes ownership of `job`; at most one is pending per lane.
  void start_handover(Handover* job) noexcept;

  // For Handover::run, on this lane's thread:
  /// Removes every message the lane holds, oldest first, system and user apart.
  void take_all(std::vector<Message*>& system, std::vector<Message*>& user) noexcept;
  /// Puts a taken message back; kept ones run first, in the order they are kept.
  void keep(Message* m) noexcept;
  /// Forgets `count` taken messages that went elsewhere.
  void gave_away(std::int64_t count) noexcept;

  /// From another lane's Handover, while this lane is gated: older messages of keys this lane
  /// now owns. They run before anything in its queues.
  void receive(const std::vector<Message*>& moved) noexcept;

  void run_slice() override;

  [[nodiscard]] int index() const noexcept { return index_; }
  [[nodiscard]] std::int64_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  /// True when no worker runs or will run this lane (nothing queued, not scheduled).
  [[nodiscard]] bool quiescent() const noexcept;
  /// Thread that currently runs this lane's message, for self-call detection.
  [[nodiscard]] bool running_on_this_thread() const noexcept;

 private:
  /// An intrusive FIFO through Message::next, for one thread at a time.
  struct List {
    Message* head = nullptr;
    Message* tail = nullptr;
    void append(Message* m) noexcept;
    void splice(List& other) noexcept;  // appends other, empties it
    Message* pop() noexcept;
  };

  // What lane-count changes leave with a lane: messages ahead of its queues. Allocated on the
  // first change that touches the lane, so lanes that never resize (most) pay one pointer.
  struct Backlog {
    // Consumer only: handed-over and kept messages, ahead of the queues.
    List front_system;
    List front_user;
    // Written by givers (under `lock`), merged into the front lists by the consumer.
    std::atomic_flag lock = ATOMIC_FLAG_INIT;
    std::atomic<bool> has_received{false};
    List received_system;
    List received_user;
  };

  void try_schedule(bool resubmit) noexcept;
  Message* next_message() noexcept;
  Backlog& backlog() noexcept;  // any thread; creates it on first use
  static void merge_received(Backlog& b) noexcept;

  LaneOwner* const owner_;
  Scheduler* const scheduler_;
  const int index_;
  const bool timed_;
  MpscQueue system_;
  MpscQueue user_;
  std::atomic<std::int64_t> size_{0};
  std::atomic<int> gate_{0};
  std::atomic<bool> scheduled_{false};
  std::atomic<int> in_slice_{0};
  std::atomic<std::thread::id> runner_{};
  std::atomic<Handover*> handover_{nullptr};
  std::atomic<Backlog*> backlog_{nullptr};
};

/// A service's set of lanes and the routing of messages onto them.
///
/// Keyed messages go to a lane picked by consistent hashing with virtual nodes, so a change in
/// the lane count moves only a fraction of keys. Un-keyed messages are spread round-robin.
///
/// Changing the lane count keeps per-key order and loses nothing: every lane that gives keys
/// away runs a Handover right after its message in progress, which moves its queued messages of
/// those keys (in order) to the front of their new lanes and spreads its un-keyed backlog over
/// the new lane set; every lane that receives keys stays gated until all its givers handed over.
/// So new lanes help with the backlog at once, not only once it drained. One change runs at a
/// time; a request during a change is applied after it.
class Mailbox {
 public:
  struct Options {
    int lanes = 1;
    int virtual_nodes = 100;
    std::int64_t user_bound = 0;  // 0 = unbounded
    bool timed_slices = false;    // report each slice's CPU time to LaneOwner::slice_done
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
  /// Enqueues `count` messages linked through `next`, in order, on one lane (the first one's
  /// key routes them). They share priority and key and are not `counted`: only an unbounded
  /// mailbox takes chains.
  void push_chain(Message* first, Message* last, std::int64_t count) noexcept;

  /// Requests `lanes` lanes (clamped to [1, kMaxLanes]).
  void resize(int lanes);
  [[nodiscard]] int lane_count() const;
  /// True while a lane-count change is still waiting for handovers.
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
  class Rebalance;

  void apply_resize_locked(int target);
  void handover_done();
  void enter_post() const noexcept;
  void leave_post() const noexcept;
  void exclusive_begin() noexcept;
  void exclusive_end() noexcept;
  std::unique_ptr<Routing> build_routing(int lanes);
  /// The lane for a message with `key` (inside enter_post/leave_post).
  Lane* route(DispatchKey key) noexcept;

  LaneOwner* const owner_;
  Scheduler* const scheduler_;
  const int virtual_nodes_;
  const std::int64_t user_bound_;
  const bool timed_slices_;

  // Posters register in post_gate_; a lane-count change waits for them to leave, so nobody
  // enqueues by the old routing once the handovers are placed (high bit = writer waiting).
  mutable std::atomic<std::uint32_t> post_gate_{0};
  std::atomic<Routing*> routing_{nullptr};
  std::atomic<std::uint64_t> round_robin_{0};
  std::atomic<std::int64_t> user_pending_{0};

  mutable std::mutex resize_mu_;
  // Every lane ever created, by index. Lanes above the current count stay allocated (idle):
  // a late handover or diagnostic may still touch them, and a regrow reuses them.
  std::vector<std::unique_ptr<Lane>> lanes_;
  int pending_target_ = 0;
  int outstanding_handovers_ = 0;
  bool held_ = false;
};

}  // namespace ember::runtime
