// SPDX-License-Identifier: Apache-2.0
#include "runtime/thread.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>

namespace ember::runtime {

/// A Thread under a Driver. The turn passes by hand-off: whoever runs this runnable (the
/// driver's thread, in its own order) gives the turn to the thread and waits until it comes
/// back, so exactly one of them runs at any time.
class SimThread final : public Runnable, public TimeDriven {
 public:
  explicit SimThread(Driver& driver) : driver_(driver), group_(Driver::current_group()) {}

  [[nodiscard]] std::uint32_t driver_group() const noexcept override { return group_; }

  void start(std::function<void()> body) {
    real_ = std::thread([this, body = std::move(body)] {
      Driver::set_current(&driver_);
      const Driver::GroupScope group(group_);  // what it creates belongs to its node too
      current_ = this;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return turn_; });
      }
      body();
      exit_.notify_all();  // joiners that are Threads
      std::lock_guard lock(mu_);
      finished_ = true;
      turn_ = false;
      cv_.notify_all();
    });
    queued_ = true;
    driver_.ready(nullptr, this);
  }

  // Runs on the thread that holds the turn: gives it to this thread until it waits or ends.
  void run_slice() override {
    queued_ = false;
    if (attached_) {
      driver_.detach(*this);
      attached_ = false;
    }
    std::unique_lock lock(mu_);
    if (finished_) {
      return;
    }
    turn_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !turn_; });
  }

  // On this thread: waits on `on` until a notify or `deadline`, handing the turn back meanwhile.
  void block(CondVar& on, std::unique_lock<std::mutex>& user_lock, Clock::time_point deadline) {
    on.waiters_.push_back(this);
    waiting_on_ = &on;
    deadline_ = deadline;
    if (deadline != Clock::time_point::max()) {
      driver_.attach(*this);
      attached_ = true;
    }
    user_lock.unlock();
    {
      std::unique_lock lock(mu_);
      turn_ = false;
      cv_.notify_all();
      cv_.wait(lock, [&] { return turn_; });
    }
    user_lock.lock();
  }

  // A notify reached this thread: it wants the turn.
  void wake() noexcept {
    waiting_on_ = nullptr;
    if (!queued_) {
      queued_ = true;
      driver_.ready(nullptr, this);
    }
  }

  [[nodiscard]] std::optional<Clock::time_point> next_wake() const override {
    if (waiting_on_ == nullptr || queued_) {
      return std::nullopt;
    }
    return deadline_;
  }

  void advance_to(Clock::time_point now) override {
    if (waiting_on_ != nullptr && !queued_ && deadline_ <= now) {
      std::erase(waiting_on_->waiters_, this);
      wake();
    }
  }

  void join() {
    if (current_ != nullptr) {  // a Thread joining another: wait by handing the turn back
      std::mutex mu;
      std::unique_lock lock(mu);
      while (!finished()) {
        block(exit_, lock, Clock::time_point::max());
      }
    } else if (!driver_.run_until([this] { return finished(); }, Clock::time_point::max())) {
      std::fprintf(stderr, "ember: a simulated thread never ended (the simulation ran dry)\n");
      std::abort();
    }
    real_.join();
  }

  bool finished() {
    std::lock_guard lock(mu_);
    return finished_;
  }

  static thread_local SimThread* current_;

 private:
  Driver& driver_;
  const std::uint32_t group_;
  std::thread real_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool turn_ = false;      // mu_
  bool finished_ = false;  // mu_
  // Touched only by whoever holds the turn.
  bool queued_ = false;
  bool attached_ = false;
  CondVar* waiting_on_ = nullptr;
  Clock::time_point deadline_{};
  CondVar exit_;
};

thread_local SimThread* SimThread::current_ = nullptr;

Thread::Thread(std::function<void()> body) {
  if (Driver* driver = Driver::current()) {
    sim_ = std::make_shared<SimThread>(*driver);
    sim_->start(std::move(body));
  } else {
    real_ = std::thread(std::move(body));
  }
}

Thread::Thread(Thread&& other) noexcept = default;

Thread& Thread::operator=(Thread&& other) noexcept {
  if (joinable()) {
    std::fprintf(stderr, "ember: a runtime::Thread was replaced before it was joined\n");
    std::abort();
  }
  real_ = std::move(other.real_);
  sim_ = std::move(other.sim_);
  return *this;
}

Thread::~Thread() {
  if (joinable()) {
    std::fprintf(stderr, "ember: a runtime::Thread was destroyed before it was joined\n");
    std::abort();
  }
}

bool Thread::is_current() const noexcept {
  if (sim_) {
    return SimThread::current_ == sim_.get();
  }
  return real_.joinable() && real_.get_id() == std::this_thread::get_id();
}

bool Thread::joinable() const noexcept {
  return real_.joinable() || sim_ != nullptr;
}

void Thread::join() {
  if (sim_) {
    sim_->join();
    sim_.reset();
  } else if (real_.joinable()) {
    real_.join();
  }
}

void CondVar::notify_all() noexcept {
  if (Driver::current() == nullptr) {
    cv_.notify_all();
    return;
  }
  ++notifies_;
  std::vector<SimThread*> woken;
  woken.swap(waiters_);
  for (SimThread* t : woken) {
    t->wake();
  }
}

void CondVar::wait_driven(Driver& driver, std::unique_lock<std::mutex>& lock,
                          Clock::time_point deadline) {
  if (SimThread* self = SimThread::current_) {
    self->block(*this, lock, deadline);
    return;
  }
  // Not a Thread (the driver's own thread, a handler): run the world until a notify.
  const std::uint64_t seen = notifies_;
  lock.unlock();
  (void)driver.run_until([&] { return notifies_ != seen; }, deadline);
  lock.lock();
}

std::uint64_t random_seed() noexcept {
  if (Driver* driver = Driver::current()) {
    return driver->random();
  }
  std::random_device entropy;
  return (static_cast<std::uint64_t>(entropy()) << 32) ^ entropy();
}

bool on_driven_thread() noexcept {
  return SimThread::current_ != nullptr;
}

}  // namespace ember::runtime
