// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <ember/clock.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ember::runtime {

/// A pause instruction for spin loops.
void cpu_relax() noexcept;

/// Something a worker runs for a while: a service lane with queued messages.
class Runnable {
 public:
  virtual ~Runnable() = default;
  /// Runs a bounded slice of work, then returns. Re-submits itself if work is left.
  virtual void run_slice() = 0;
  /// Under a Driver: the group (simulated node) this belongs to when no pool says so; 0: none.
  [[nodiscard]] virtual std::uint32_t driver_group() const noexcept { return 0; }

  Runnable* next_runnable = nullptr;  // link in exactly one run queue at a time
};

class Scheduler;
class Network;

/// A part of a node that acts at points in time (its timer wheel): under a Driver, virtual time
/// moves to the earliest next_wake() of all of them when nothing is runnable.
class TimeDriven {
 public:
  virtual ~TimeDriven() = default;
  /// When this next has something to do, or nullopt when nothing is planned.
  [[nodiscard]] virtual std::optional<Clock::time_point> next_wake() const = 0;
  /// Does what is due at `now`.
  virtual void advance_to(Clock::time_point now) = 0;
};

/// Runs Schedulers that have no threads of their own: the simulator. Everything then happens on
/// the driver's thread, one runnable at a time, in the order the driver chooses, and code that
/// would block (a synchronous Call, a drain at stop) asks the driver to run the rest of the
/// world until its condition holds instead.
class Driver {
 public:
  virtual ~Driver() = default;
  /// `r` became runnable on `pool`, or, with no pool, a runtime::Thread wants its turn.
  virtual void ready(Scheduler* pool, Runnable* r) noexcept = 0;
  /// `pool` stops: its queued runnables will not run.
  virtual void forget(Scheduler& pool) noexcept = 0;
  /// Runs other work until `done()` holds or virtual time reaches `deadline`; returns done().
  virtual bool run_until(const std::function<bool()>& done, Clock::time_point deadline) = 0;
  virtual void attach(TimeDriven& part) = 0;
  virtual void detach(TimeDriven& part) noexcept = 0;
  /// The seeded generator: code that would draw from std::random_device draws here instead.
  virtual std::uint64_t random() noexcept = 0;
  /// Where simulated nodes' transports send their frames.
  virtual Network& network() noexcept = 0;
  /// A new group: what a simulated node's pools, threads and timed parts are tagged with, so
  /// that the driver can stop all of them at once (a crash).
  virtual std::uint32_t new_group() noexcept = 0;

  /// The group that pools, Threads and attached parts created on this thread now belong to.
  static std::uint32_t current_group() noexcept;
  class GroupScope {
   public:
    explicit GroupScope(std::uint32_t group) noexcept;
    ~GroupScope();
    GroupScope(const GroupScope&) = delete;
    GroupScope& operator=(const GroupScope&) = delete;

   private:
    std::uint32_t outer_;
  };

  /// The driver of the calling thread, or nullptr: real threads and real time.
  static Driver* current() noexcept;
  static void set_current(Driver* driver) noexcept;
};

/// A fixed pool of worker threads running Runnables (M:N: many services, few threads).
///
/// Each worker keeps a LIFO "next" slot and a FIFO: a runnable readied by a running handler goes
/// to the next slot, so a request/reply pair between two services runs on one warm thread
/// without waking anyone. Work readied from outside (timer, network, other pools) goes to a
/// shared queue. Idle workers steal, then park on a futex: an idle node does not poll.
///
/// Because filling the next slot wakes nobody, a monitor thread (pools of 2+ threads) looks at
/// the slots every millisecond while any is in use and hands a runnable that waited through a
/// whole look behind the same slice to the shared queue, waking a worker: a handler that runs
/// long after readying work delays that work by 1-2 ms, not by its own duration. With no slot in
/// use for 10 looks the monitor parks until the next one is filled.
///
/// A handler that must block (a synchronous Call) brackets the wait with BlockingRegion; the
/// pool then hands the worker's queued work to others and, if needed, starts a spare worker so
/// `threads` workers keep running. This is what makes nested synchronous Calls safe.
class Scheduler {
 public:
  Scheduler(int threads, std::string name);
  /// A pool without threads whose runnables `driver` runs (see Driver).
  Scheduler(Driver& driver, std::string name);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Makes `r` runnable. Thread-safe. `r` must not already be queued.
  void submit(Runnable* r) noexcept;
  /// Like submit, for a runnable that just used its slice: it goes behind queued work.
  void resubmit(Runnable* r) noexcept;

  /// Joins every worker. Runnables still queued are not run: drain services first.
  void stop();

  /// While alive, runnables this thread submits from outside the pool are held back and queued
  /// together when it ends: one lock and as many wakes as there is work, instead of one of each
  /// per runnable. For fan-out (one event readying thousands of services). Must not be held
  /// while waiting for the work it holds back. Nests; the outermost one queues.
  class SubmitBatch {
   public:
    SubmitBatch() noexcept;
    ~SubmitBatch();
    SubmitBatch(const SubmitBatch&) = delete;
    SubmitBatch& operator=(const SubmitBatch&) = delete;
  };

  [[nodiscard]] int threads() const noexcept { return threads_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Worker threads started so far, spares included.
  [[nodiscard]] int spawned_threads() const;
  /// Runnables the monitor took from a busy worker's next slot, since the start.
  [[nodiscard]] std::uint64_t handed_from_busy_workers() const noexcept {
    return handed_from_busy_.load(std::memory_order_relaxed);
  }
  /// Workers parked for lack of work now.
  [[nodiscard]] int parked_workers() const noexcept {
    return idle_count_.load(std::memory_order_acquire);
  }

  /// The pool the calling thread works for, or nullptr outside any worker.
  static Scheduler* current() noexcept;

  /// For a Driver: runs one slice of `r`, which was handed to Driver::ready by this pool.
  void run_driven(Runnable* r);
  [[nodiscard]] Driver* driver() const noexcept { return driver_; }
  [[nodiscard]] std::uint32_t driver_group() const noexcept { return group_; }

  /// Called first by every BlockingRegion, on any thread: a layer above that holds work back on
  /// the calling thread (SendBatch) hands it on before the thread waits. Set once, at start-up.
  static void set_before_blocking(void (*hook)() noexcept) noexcept;

  /// Marks the calling worker as blocked for the object's lifetime. No-op off worker threads.
  class BlockingRegion {
   public:
    BlockingRegion() noexcept;
    ~BlockingRegion();
    BlockingRegion(const BlockingRegion&) = delete;
    BlockingRegion& operator=(const BlockingRegion&) = delete;

   private:
    bool active_ = false;
  };

  struct Worker;

 private:
  friend class BlockingRegion;

  void worker_main(Worker* w);
  Runnable* find_work(Worker* w);
  Runnable* steal(Worker* thief);
  Runnable* pop_global();
  void push_global(Runnable* r);
  // Queues a chain of `count` runnables linked through next_runnable (wakes nobody).
  void push_global_chain(Runnable* head, Runnable* tail, int count);
  static void flush_batch() noexcept;
  void park(Worker* w);
  void wake_one();
  bool has_visible_work() const;
  void spawn_worker();
  void enter_blocking(Worker* w);
  void leave_blocking(Worker* w);
  void monitor_main();
  bool any_next_slot_in_use() const;
  void wake_monitor();

  const int threads_;
  const std::string name_;
  Driver* const driver_ = nullptr;
  const std::uint32_t group_ = 0;
  std::atomic<bool> stopping_{false};

  static constexpr int kMaxWorkers = 1024;

  mutable std::mutex workers_mu_;  // serializes spawning
  // Fixed slots so that thieves can scan workers while spares are being added.
  std::unique_ptr<std::atomic<Worker*>[]> workers_;
  std::vector<std::thread> threads_list_;
  std::atomic<int> worker_count_{0};
  std::atomic<int> blocked_{0};
  std::atomic<int> spinning_{0};

  std::mutex global_mu_;
  Runnable* global_head_ = nullptr;
  Runnable* global_tail_ = nullptr;
  std::atomic<std::int64_t> global_size_{0};

  std::mutex idle_mu_;
  std::vector<Worker*> idle_;
  std::atomic<int> idle_count_{0};

  std::thread monitor_;
  std::mutex monitor_mu_;
  std::condition_variable monitor_cv_;
  std::atomic<bool> monitor_parked_{false};
  std::atomic<std::uint64_t> handed_from_busy_{0};
};

}  // namespace ember::runtime
