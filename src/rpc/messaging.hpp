// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <ember/rpc.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_map>

#include "core/subsystem.hpp"
#include "rpc/events.hpp"
#include "rpc/leased_keys.hpp"
#include "rpc/remote.hpp"
#include "rpc/remote_origins.hpp"
#include "rpc/repository.hpp"

namespace ember::detail {

class NodeImpl;
class ServiceCore;

/// The node's messaging subsystem: who can be called (the repository), how to reach services on
/// other nodes (the remote router, set by the cluster), local events and the event backend that
/// carries them further, and the call counters. Every node has one; the kernel reaches it only
/// through the Subsystem hooks.
class Messaging final : public Subsystem {
 public:
  explicit Messaging(NodeImpl& node);
  ~Messaging() override;

  /// The node's messaging subsystem (every node has one).
  static Messaging& of(NodeImpl& node) noexcept;

  [[nodiscard]] std::string_view name() const noexcept override { return "messaging"; }
  /// Opens the event backend, before any on_init: on_init may subscribe.
  Status start() override;
  void service_visible(ServiceCore& service) override;
  void service_hidden(ServiceCore& service) override;
  void service_drained(ServiceCore& service) override;
  /// Waits until NATS has the subscriptions.
  Status settle() override;
  /// Closes the event backend (services could publish while draining).
  void stop() override;
  void add_stats(NodeStats& stats) const override;

  [[nodiscard]] Repository& repository() noexcept { return repository_; }
  [[nodiscard]] LocalEventBus& events() noexcept { return events_; }
  /// Origins (client sessions) that requests from other nodes carried here.
  [[nodiscard]] RemoteOrigins& remote_origins() noexcept { return remote_origins_; }
  /// Null on a node outside a cluster. Set once by the cluster subsystem's start (before any
  /// service exists), or by a test that attaches a bare transport, so workers read it unlocked.
  [[nodiscard]] RemoteRouter* remote() const noexcept { return remote_.get(); }
  /// `owned`: this subsystem stops it at node stop (nobody else will).
  void set_remote(std::shared_ptr<RemoteRouter> remote, bool owned = false) {
    remote_ = std::move(remote);
    owns_remote_ = owned;
  }
  /// Keys kept under the node's lease in the coordinator; null outside a cluster. Set once by the
  /// cluster subsystem's start, like the remote router; it outlives every later subsystem.
  [[nodiscard]] LeasedKeys* leased_keys() const noexcept { return leased_keys_; }
  void set_leased_keys(LeasedKeys* keys) noexcept { leased_keys_ = keys; }
  /// Null with the local event backend. Closed at stop, never reset: a publish racing the stop
  /// finds a closed router rather than a dangling one.
  [[nodiscard]] EventRouter* event_router() const noexcept { return event_router_.get(); }

  void count_late_reply() noexcept { late_replies_.fetch_add(1, std::memory_order_relaxed); }
  void count_expired() noexcept { expired_.fetch_add(1, std::memory_order_relaxed); }
  void pending_call_opened() noexcept { pending_calls_.fetch_add(1, std::memory_order_relaxed); }
  void pending_call_closed() noexcept { pending_calls_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  NodeImpl& node_;
  Repository repository_;
  std::shared_ptr<RemoteRouter> remote_;
  bool owns_remote_ = false;
  LeasedKeys* leased_keys_ = nullptr;
  LocalEventBus events_;
  RemoteOrigins remote_origins_;
  std::shared_ptr<EventRouter> event_router_;
  std::atomic<std::uint64_t> late_replies_{0};
  std::atomic<std::uint64_t> pending_calls_{0};
  std::atomic<std::uint64_t> expired_{0};  // requests dropped unrun: their deadline passed
};

/// A service's part of messaging: the methods (RPC handlers) of all its modules, its coroutine
/// handlers suspended in co_await, and its expired-request counter.
class ServiceMessaging final : public ServiceAttachment {
 public:
  explicit ServiceMessaging(ServiceCore& service) : service_(service) {}
  ~ServiceMessaging() override;

  /// The service's messaging state, or nullptr while it has none: no method, no suspended
  /// coroutine, no expired request yet. Most services of a game (entities) never get one.
  static ServiceMessaging* find(const ServiceCore& service) noexcept;
  /// The same, created on first use.
  static ServiceMessaging& of(ServiceCore& service);

  Status add_method(MethodEntry entry);
  Status remove_method(std::string_view name, const Module* owner);
  /// The entry, or nullptr. Valid until the calling thread's next find_method (a small
  /// thread-local cache keeps it alive), which is enough for the request being run.
  const MethodEntry* find_method(std::string_view name) const;
  /// The request type of a method, for a sender that checks its request before queueing it
  /// (nullptr: no such method now). Thread-safe; a thread-local cache makes a repeat free.
  struct RequestType {
    const std::type_info* type = nullptr;
    const google::protobuf::Descriptor* descriptor = nullptr;
  };
  RequestType request_type(std::string_view name) const;
  /// A service without a Rpc-prefixed method is private: never published to discovery.
  [[nodiscard]] bool has_rpc_methods() const;

  // Coroutine handlers suspended in this service; destroyed (callers told) if it stops first.
  void track_coroutine(std::coroutine_handle<> root, std::function<void()> abandon);
  void untrack_coroutine(std::coroutine_handle<> root);
  void destroy_suspended_coroutines();

  /// A request whose deadline passed while it was queued was dropped unrun, `late` after its
  /// deadline: counted here and in the node's stats. Logged as a summary, at most one warning
  /// per service every 10 s, since under overload requests expire by the thousand.
  void count_expired(std::string_view method, std::chrono::steady_clock::duration late) noexcept;
  [[nodiscard]] std::uint64_t expired() const noexcept;

  /// Outcomes of the calls this service answered, by code (Errc value): counted only while the
  /// node measures timings (its admin listener reports them).
  static constexpr std::size_t kCodes = static_cast<std::size_t>(last_errc) + 1;
  void count_result(Errc code) noexcept;
  [[nodiscard]] std::array<std::uint64_t, kCodes> results() const noexcept;

 private:
  ServiceCore& service_;

  mutable std::shared_mutex methods_mu_;
  // Changed on every change: invalidates the thread-local caches. Drawn from one counter for all
  // services, so a cache keyed by (address, version) cannot mistake a new service's table built
  // at a freed one's address for the old one.
  std::atomic<std::uint64_t> methods_version_{next_methods_version()};
  static std::uint64_t next_methods_version() noexcept;
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  // Transparent: a lookup by string_view builds no std::string. Allocated with the first method:
  // services without RPC methods (game entities) pay one pointer instead of an empty map.
  using MethodTable = std::unordered_map<std::string, std::shared_ptr<const MethodEntry>, NameHash,
                                         std::equal_to<>>;
  std::unique_ptr<MethodTable> methods_;

  // Under methods_mu_ (exclusive): rare, and a second lock would cost every service 40 bytes.
  std::unique_ptr<std::unordered_map<void*, std::function<void()>>> coroutines_;

  struct Expired {
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::uint64_t> reported{0};        // count at the last warning
    std::atomic<std::int64_t> next_warning_ns{0};  // steady clock
  };
  // Allocated by the first expiry: most services never see one, and an idle service's bytes are
  // multiplied by the number of services.
  std::atomic<Expired*> expired_{nullptr};
  // Allocated by the first counted outcome, as expired_.
  using Results = std::array<std::atomic<std::uint64_t>, kCodes>;
  std::atomic<Results*> results_{nullptr};
};

}  // namespace ember::detail
