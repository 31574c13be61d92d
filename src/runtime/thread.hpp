// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ember/clock.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/scheduler.hpp"

namespace ember::runtime {

class SimThread;

/// A thread of a node subsystem that waits on its own (cluster membership, the in-memory
/// coordinator store). In production a std::thread. Under a Driver (the simulator) a thread that
/// runs only while it holds the turn: the driver hands it the turn like any runnable, and it gives
/// the turn back when it waits on a CondVar or ends. One thread runs at a time, in the driver's
/// order, so the simulation stays deterministic while the subsystem's code stays sequential.
///
/// Under a Driver a thread must not wait on anything but CondVar (a mutex another thread holds
/// while it waits would stop the simulation), and must not hold a mutex other than the CondVar's
/// while it waits.
class Thread {
 public:
  Thread() = default;
  explicit Thread(std::function<void()> body);
  Thread(Thread&& other) noexcept;
  Thread& operator=(Thread&& other) noexcept;
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;
  /// Must be joined (or never started).
  ~Thread();

  [[nodiscard]] bool joinable() const noexcept;
  /// True when called from this thread's body.
  [[nodiscard]] bool is_current() const noexcept;
  /// Waits for the body to return. Under a Driver: runs the simulation meanwhile.
  void join();

 private:
  std::thread real_;
  std::shared_ptr<SimThread> sim_;
};

/// The condition variable Threads wait on: std::condition_variable in production. Under a Driver
/// a wait hands the turn back (on a Thread) or runs the simulation (elsewhere) until a notify or
/// the deadline, which is on ember::Clock.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void notify_all() noexcept;
  void notify_one() noexcept { notify_all(); }

  /// True when `pred` holds, false when `deadline` passed first.
  template <class Pred>
  bool wait_until(std::unique_lock<std::mutex>& lock, Clock::time_point deadline, Pred pred) {
    Driver* driver = Driver::current();
    if (driver == nullptr) {
      return cv_.wait_until(lock, deadline, pred);
    }
    while (!pred()) {
      if (Clock::now() >= deadline) {
        return pred();
      }
      wait_driven(*driver, lock, deadline);
    }
    return true;
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<std::mutex>& lock, std::chrono::duration<Rep, Period> span,
                Pred pred) {
    return wait_until(lock, Clock::now() + std::chrono::duration_cast<Clock::duration>(span),
                      std::move(pred));
  }
  template <class Pred>
  void wait(std::unique_lock<std::mutex>& lock, Pred pred) {
    (void)wait_until(lock, Clock::time_point::max(), std::move(pred));
  }

 private:
  friend class SimThread;
  // One wait under a driver: returns after a notify, the deadline, or (spuriously) earlier.
  void wait_driven(Driver& driver, std::unique_lock<std::mutex>& lock, Clock::time_point deadline);

  std::condition_variable cv_;
  std::uint64_t notifies_ = 0;       // under a driver: changes on every notify
  std::vector<SimThread*> waiters_;  // under a driver: Threads waiting here
};

/// Random bits: from the driver's seeded generator under a Driver, else from std::random_device.
std::uint64_t random_seed() noexcept;

/// True on a runtime::Thread run by a Driver (where only CondVar waits are allowed).
[[nodiscard]] bool on_driven_thread() noexcept;

}  // namespace ember::runtime
