// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <ember/error.hpp>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "runtime/message.hpp"

namespace ember::detail {

class ServiceCore;

/// A reference to a service that outlives it. Replies, completions and events reach a service
/// through its anchor; once the service is destroyed the anchor refuses instead of crashing.
class ServiceAnchor {
 public:
  explicit ServiceAnchor(ServiceCore* core) : core_(core) {}
  ServiceAnchor(const ServiceAnchor&) = delete;
  ServiceAnchor& operator=(const ServiceAnchor&) = delete;

  /// Posts `m` (ownership passes). On refusal the message is deleted and the error says why.
  Status post(runtime::Message* m, bool external) noexcept;
  /// Called by the service's destructor: afterwards nobody can reach it through the anchor.
  void detach() noexcept {
    core_.store(nullptr, std::memory_order_seq_cst);
    while (users_.load(std::memory_order_seq_cst) != 0) {
      std::this_thread::yield();  // a poster is between its check and its push
    }
  }
  /// Runs `fn(ServiceCore*)` with the core pinned (nullptr when gone).
  template <class F>
  auto with_core(F&& fn) const {
    Pin pin(*this);
    return fn(pin.core);
  }

 private:
  // A reader count instead of a lock: two uncontended-path atomics per post, no syscalls.
  struct Pin {
    explicit Pin(const ServiceAnchor& a) : anchor(a) {
      anchor.users_.fetch_add(1, std::memory_order_seq_cst);
      core = anchor.core_.load(std::memory_order_seq_cst);
    }
    ~Pin() { anchor.users_.fetch_sub(1, std::memory_order_release); }
    const ServiceAnchor& anchor;
    ServiceCore* core;
  };

  std::atomic<ServiceCore*> core_;
  mutable std::atomic<int> users_{0};
};

}  // namespace ember::detail
