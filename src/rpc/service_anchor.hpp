// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/error.hpp>
#include <memory>
#include <mutex>
#include <shared_mutex>

#include "runtime/message.hpp"

namespace ember::detail {

class ServiceCore;

/// A reference to a service that outlives it. Replies, completions and events reach a service
/// through its anchor; once the service is destroyed the anchor refuses instead of crashing.
class ServiceAnchor {
 public:
  explicit ServiceAnchor(ServiceCore* core) : core_(core) {}

  /// Posts `m` (ownership passes). On refusal the message is deleted and the error says why.
  Status post(runtime::Message* m, bool external) noexcept;
  void detach() noexcept {
    std::unique_lock lock(mu_);
    core_ = nullptr;
  }
  /// Runs `fn(ServiceCore*)` with the core pinned (nullptr when gone).
  template <class F>
  auto with_core(F&& fn) const {
    std::shared_lock lock(mu_);
    return fn(core_);
  }

 private:
  mutable std::shared_mutex mu_;
  ServiceCore* core_;
};

}  // namespace ember::detail
