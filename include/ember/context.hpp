// SPDX-License-Identifier: Apache-2.0
//
// What travels with every request: priority, deadline, dispatch key, trace id and free headers.
// A handler's outgoing calls inherit its trace id and its remaining deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <ember/dispatch.hpp>
#include <ember/pid.hpp>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

using Headers = std::map<std::string, std::string, std::less<>>;

/// Per-call settings. Every field has a sensible default.
struct CallOptions {
  Priority priority = Priority::user;
  /// Lane of the target service (and, for selectors with several instances, which one).
  DispatchKey key{};
  /// Calls: 0 means the node's CallTimeout; capped by the remaining deadline of the calling
  /// handler. Send: 0 means no deadline; otherwise a Send still queued when it passes is dropped
  /// unrun. Either way a request whose deadline passes before its handler starts never runs.
  std::chrono::milliseconds timeout{0};
  Headers headers{};
};

namespace detail {
/// One service waiting synchronously in a call chain (for cycle detection).
struct ChainLink {
  const void* service = nullptr;  // the waiting ServiceCore
  int lane = -1;
  std::string name{};
};
}  // namespace detail

/// The request as a handler sees it. Valid for the duration of the handler (copy what you keep).
class Context {
 public:
  using Clock = std::chrono::steady_clock;

  [[nodiscard]] Priority priority() const noexcept { return priority_; }
  [[nodiscard]] DispatchKey key() const noexcept { return key_; }
  [[nodiscard]] Clock::time_point deadline() const noexcept { return deadline_; }
  [[nodiscard]] std::chrono::milliseconds remaining() const noexcept {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
  }
  /// 64-bit trace id shared by every call of one causal chain; 0 = none.
  [[nodiscard]] std::uint64_t trace_id() const noexcept { return trace_id_; }
  [[nodiscard]] const Headers& headers() const noexcept {
    static const Headers kNone;
    return headers_ ? *headers_ : kNone;
  }
  [[nodiscard]] std::string_view header(std::string_view name) const {
    if (!headers_) {
      return {};
    }
    auto it = headers_->find(name);
    return it == headers_->end() ? std::string_view{} : std::string_view(it->second);
  }
  /// Who sent the request (empty name when it came from outside any service).
  [[nodiscard]] const Pid& caller() const noexcept {
    static const Pid kNobody;
    return caller_ ? *caller_ : kNobody;
  }
  /// The method being handled (valid while the handler runs; empty in a copied context).
  [[nodiscard]] std::string_view method() const noexcept { return method_; }

  // Filled by the runtime. Shared pieces are immutable and shared along a call chain, so a
  // request carries a few pointers rather than copies of names.
  Priority priority_ = Priority::user;
  DispatchKey key_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::uint64_t trace_id_ = 0;
  std::shared_ptr<const Headers> headers_;
  std::shared_ptr<const Pid> caller_;
  std::string_view method_;
  std::vector<detail::ChainLink> chain_;  // services blocked in synchronous calls up this chain
};

/// The context of the request the calling thread is handling, or nullptr.
const Context* current_context() noexcept;

/// A fresh random non-zero trace id.
std::uint64_t new_trace_id() noexcept;

}  // namespace ember
