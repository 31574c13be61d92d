// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <ember/node.hpp>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ember::testing {

/// Runs `fn` inside a service's mailbox and waits (bounded) for it. False on timeout or refusal.
template <class F>
bool run_in(Node& node, std::string_view service, F&& fn,
            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  Status posted = node.post(service, [done, fn = std::forward<F>(fn)]() mutable {
    fn();
    done->set_value();
  });
  if (!posted) {
    return false;
  }
  return future.wait_for(timeout) == std::future_status::ready;
}

/// Thread-safe event log for lifecycle order checks.
class EventLog {
 public:
  void add(std::string e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  void clear() {
    std::lock_guard lock(mu_);
    events_.clear();
  }
  bool contains(const std::string& e) const {
    std::lock_guard lock(mu_);
    for (const auto& x : events_) {
      if (x == e) {
        return true;
      }
    }
    return false;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> events_;
};

}  // namespace ember::testing

namespace ember::testing {

/// A flag that handlers block on. It opens when the Gate is destroyed, so a failing assertion
/// never leaves a worker spinning forever (declare it after the Node it is used with).
class Gate {
 public:
  Gate() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
  ~Gate() { open(); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void open() { flag_->store(true); }
  /// A handler body that waits until the gate opens; `entered` (optional) is set on entry.
  std::function<void()> blocker(std::shared_ptr<std::atomic<bool>> entered = nullptr) const {
    return [flag = flag_, entered] {
      if (entered) {
        entered->store(true);
      }
      while (!flag->load()) {
        std::this_thread::yield();
      }
    };
  }

 private:
  std::shared_ptr<std::atomic<bool>> flag_;
};

}  // namespace ember::testing

namespace ember::testing {

/// Runs a function at scope exit; declared after the threads it must unblock.
class ScopeExit {
 public:
  explicit ScopeExit(std::function<void()> fn) : fn_(std::move(fn)) {}
  ~ScopeExit() { fn_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  std::function<void()> fn_;
};

}  // namespace ember::testing
