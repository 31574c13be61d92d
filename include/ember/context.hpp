// SPDX-License-Identifier: Apache-2.0
//
// What travels with every request: priority, deadline, dispatch key, trace id and free headers.
// A handler's outgoing calls inherit its trace id and its remaining deadline.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <ember/clock.hpp>
#include <ember/dispatch.hpp>
#include <ember/pid.hpp>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

class Context;

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

/// Where a chain of requests entered the node from outside, such as a game client's session: an
/// extension (the gateway) hangs its own object here, and the chain's outgoing calls carry it on.
class RequestOrigin {
 public:
  virtual ~RequestOrigin() = default;
  /// True once the origin is gone (the client disconnected).
  [[nodiscard]] virtual bool ended() const noexcept = 0;
  /// How it travels with requests to services on other nodes: its identity, encoded by its
  /// owner (the gateway decodes it again there). False: it stays on its node.
  virtual bool wire_identity(std::string& out) const {
    (void)out;
    return false;
  }
};

/// The parts of a context most requests leave empty, behind one pointer: a request without them
/// is smaller and cheaper to build, move and free, and the requests of one chain share them. Never
/// changed while shared: ContextState::edit() copies them first.
struct ContextExtras {
  std::shared_ptr<const Headers> headers;
  std::vector<ChainLink> chain;  // services blocked in synchronous calls up this chain
  std::shared_ptr<const RequestOrigin> origin;  // inherited by the handler's outgoing calls
};

/// What the runtime fills in a Context. Shared pieces are immutable and shared along a call
/// chain, so a request carries a few pointers rather than copies of names.
struct ContextState {
  Priority priority = Priority::user;
  /// Set on the requests an origin makes itself (not inherited): when the origin has ended
  /// before the handler starts, the request is dropped unrun and answered cancelled.
  bool ends_with_origin = false;
  DispatchKey key;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::uint64_t trace_id = 0;
  std::shared_ptr<const Pid> caller;
  std::string_view method;
  std::shared_ptr<const ContextExtras> extras;  // null: no headers, chain or origin

  [[nodiscard]] const Headers* headers() const noexcept {
    return extras ? extras->headers.get() : nullptr;
  }
  [[nodiscard]] const std::vector<ChainLink>& chain() const noexcept {
    static const std::vector<ChainLink> kNone;
    return extras ? extras->chain : kNone;
  }
  [[nodiscard]] const std::shared_ptr<const RequestOrigin>& origin() const noexcept {
    static const std::shared_ptr<const RequestOrigin> kNone;
    return extras ? extras->origin : kNone;
  }
  /// The extras, made this context's own (created, or copied when shared) to be changed.
  ContextExtras& edit() {
    if (!extras) {
      extras = std::make_shared<ContextExtras>();
    } else if (extras.use_count() > 1) {
      extras = std::make_shared<ContextExtras>(*extras);
    }
    // Created non-const above and owned by this context alone now.
    return const_cast<ContextExtras&>(*extras);
  }
};

/// Ember's own access to what it fills in; not part of the public API.
ContextState& state(Context& context) noexcept;
const ContextState& state(const Context& context) noexcept;
}  // namespace detail

/// The request as a handler sees it. Valid for the duration of the handler (copy what you keep).
class Context {
 public:
  using Clock = ember::Clock;

  [[nodiscard]] Priority priority() const noexcept { return state_.priority; }
  [[nodiscard]] DispatchKey key() const noexcept { return state_.key; }
  [[nodiscard]] Clock::time_point deadline() const noexcept { return state_.deadline; }
  [[nodiscard]] std::chrono::milliseconds remaining() const noexcept {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(state_.deadline - Clock::now());
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
  }
  /// 64-bit trace id shared by every call of one causal chain; 0 = none.
  [[nodiscard]] std::uint64_t trace_id() const noexcept { return state_.trace_id; }
  [[nodiscard]] const Headers& headers() const noexcept {
    static const Headers kNone;
    const Headers* held = state_.headers();
    return held != nullptr ? *held : kNone;
  }
  [[nodiscard]] std::string_view header(std::string_view name) const {
    const Headers* held = state_.headers();
    if (held == nullptr) {
      return {};
    }
    auto it = held->find(name);
    return it == held->end() ? std::string_view{} : std::string_view(it->second);
  }
  /// Who sent the request (empty name when it came from outside any service).
  [[nodiscard]] const Pid& caller() const noexcept {
    static const Pid kNobody;
    return state_.caller ? *state_.caller : kNobody;
  }
  /// The method being handled (valid while the handler runs; empty in a copied context).
  [[nodiscard]] std::string_view method() const noexcept { return state_.method; }

 private:
  friend detail::ContextState& detail::state(Context& context) noexcept;
  friend const detail::ContextState& detail::state(const Context& context) noexcept;
  detail::ContextState state_;
};

namespace detail {
inline ContextState& state(Context& context) noexcept {
  return context.state_;
}
inline const ContextState& state(const Context& context) noexcept {
  return context.state_;
}
}  // namespace detail

/// The context of the request the calling thread is handling, or nullptr.
const Context* current_context() noexcept;

/// A fresh random non-zero trace id.
std::uint64_t new_trace_id() noexcept;

}  // namespace ember
