// SPDX-License-Identifier: Apache-2.0
//
// A Module is a functional part of a service: a tree of them lives inside each service and
// shares its mailbox, so module code runs on the service's lane and needs no locks.
//
//   class Inventory : public ember::Module {
//     ember::Status on_init() override {
//       autosave_ = every(std::chrono::seconds(30), [this] { save(); });
//       return {};
//     }
//     void on_release() override { save(); }  // timers go away with the module
//     ember::TimerId autosave_;
//   };
//   auto inventory = add_module<Inventory>();   // from a service's on_init or a handler
//
// Releasing a module releases its children first (last added first), then calls its
// on_release, then cancels its timers and whatever else it registered.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <ember/dispatch.hpp>
#include <ember/error.hpp>
#include <ember/log.hpp>
#include <ember/timer.hpp>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

namespace ember {

class Bus;
class WaitHandle;
class Node;
struct PublishOptions;
class EventScope;
struct SubscriptionId;
class Selector;
class Service;
template <class Req, class Resp>
struct Method;
using ModuleId = std::uint64_t;

namespace detail {
class NodeImpl;
class ServiceCore;
struct ModuleExtras;
}  // namespace detail

class Module {
 public:
  Module();
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Runs when the module is added (for a service: at node start, in config order). An error
  /// refuses the module (or stops the node from starting).
  virtual Status on_init() { return {}; }
  /// Runs when the module is released, after its children. Its timers are cancelled after it.
  virtual void on_release() {}

  // --- module tree ---------------------------------------------------------------------------

  /// Adds a child. `preset_id` 0 picks the next free id; a taken id is already_exists.
  /// Fails with bad_state before the service is attached to a node (use on_init, not the
  /// constructor) or after this module was released.
  Result<ModuleId> add_module(std::unique_ptr<Module> child, ModuleId preset_id = 0);

  template <class M, class... Args>
  Result<M*> add_module(Args&&... args) {
    auto child = std::make_unique<M>(std::forward<Args>(args)...);
    M* raw = child.get();
    auto id = add_module(std::move(child));
    if (!id) {
      return std::move(id).error();
    }
    return raw;
  }

  /// Releases a module of this subtree (depth-first). Releasing it twice is not_found.
  Status release_module(ModuleId id);
  /// Finds any module of the service by id; nullptr if there is none.
  [[nodiscard]] Module* find_module(ModuleId id) const;

  [[nodiscard]] ModuleId id() const noexcept { return id_; }
  [[nodiscard]] Module* parent() const noexcept { return parent_; }
  [[nodiscard]] Module& root() const noexcept;
  [[nodiscard]] Service& service() const noexcept { return *service_; }
  [[nodiscard]] std::vector<Module*> children() const;
  [[nodiscard]] bool released() const noexcept { return released_; }

  // --- timers: callbacks run in the service's mailbox -----------------------------------------

  /// One-shot. Returns an invalid id (and logs) when the module is not attached or released.
  TimerId after(std::chrono::nanoseconds delay, std::function<void()> fn,
                TimerOptions options = {});
  /// Repeats every `period` (rounded up to the node's tick, at least one tick), first after one
  /// period.
  TimerId every(std::chrono::nanoseconds period, std::function<void()> fn,
                TimerOptions options = {});
  /// Six-field cron with seconds ("0 30 9 * * MON-FRI"), descriptors (@daily, @every 90s) and an
  /// optional "TZ=Area/City " prefix; the zone (default: the node's local zone) never changes
  /// between fires. A malformed spec is invalid_argument.
  Result<TimerId> cron(std::string_view spec, std::function<void()> fn, TimerOptions options = {});
  /// True when the timer will not fire (again). False for fired, cancelled or unknown ids.
  bool cancel_timer(TimerId id);

  // --- RPC (templates defined in <ember/rpc.hpp>) ---------------------------------------------

  /// Registers a typed handler under `name` on this module's service. A name taken by any module
  /// of the service is already_exists. The handler goes away when this module is released.
  template <class F>
  Status handle(std::string_view name, F&& fn);
  template <class Req, class Resp, class F>
  Status handle(const Method<Req, Resp>& method, F&& fn);
  /// Removes a handler this module registered. not_found if it has none by that name.
  Status unhandle(std::string_view name);
  /// The services matching `selector`, as seen from this module (see Bus).
  [[nodiscard]] Bus select(const Selector& selector) const;
  /// Runs `fn` once in this service's mailbox: with the Bus (as select(selector) returns it)
  /// as soon as at least one service matches, which may be at once, or with timeout when none
  /// does within `timeout`. It never runs after the returned handle's cancel() or after this
  /// module is released. Waits for repository changes (services added here or discovered
  /// elsewhere) without polling or holding a thread.
  Result<WaitHandle> when_available(const Selector& selector, std::function<void(Result<Bus>)> fn,
                                    std::chrono::milliseconds timeout);

  // --- local events (templates defined in <ember/event.hpp>) ----------------------------------

  /// Calls `fn(const Payload&)` or `fn(const Payload&, const EventInfo&)` in this service's
  /// mailbox for every event of `type` published in the node to the global scope, until
  /// unsubscribed or released.
  template <class Payload, class F>
  Result<SubscriptionId> subscribe(std::int32_t type, F&& fn);
  /// The same for one scope: EventScope::global() or EventScope::server(id).
  template <class Payload, class F>
  Result<SubscriptionId> subscribe(std::int32_t type, EventScope scope, F&& fn);
  /// True when the subscription existed.
  bool unsubscribe(SubscriptionId id);
  /// Delivers `payload` to every subscriber of `type` in the scope of `options` (global by
  /// default; none is fine).
  template <class Payload>
  Status publish(std::int32_t type, Payload&& payload);
  template <class Payload>
  Status publish(std::int32_t type, Payload&& payload, PublishOptions options);

  // --- messages -----------------------------------------------------------------------------

  /// Queues `fn` in this service's own mailbox (for example from a foreign thread).
  Status post(std::function<void()> fn, PostOptions options = {});

  [[nodiscard]] const Logger& log() const;
  [[nodiscard]] Node& node() const;

 protected:
  /// Registers cleanup that runs when this module is released (used by subsystems that attach
  /// handlers or subscriptions to a module).
  void on_release_cleanup(std::function<void()> fn);

 private:
  friend class Service;
  friend class detail::NodeImpl;
  friend class detail::ServiceCore;

  detail::ServiceCore* core() const noexcept;
  TimerId schedule_timer(const char* what, std::chrono::nanoseconds delay,
                         std::chrono::nanoseconds period, std::function<void()> fn,
                         TimerOptions options);

  Module* parent_ = nullptr;
  Service* service_ = nullptr;
  ModuleId id_ = 0;
  bool released_ = false;
  std::vector<std::unique_ptr<Module>> children_;  // guarded by the service's module mutex
  std::unique_ptr<detail::ModuleExtras> extras_;
};

}  // namespace ember
