// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <ember/config.hpp>
#include <ember/log.hpp>
#include <ember/pid.hpp>
#include <ember/rpc.hpp>
#include <ember/service.hpp>
#include <forward_list>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "rpc/service_anchor.hpp"
#include "runtime/mailbox.hpp"
#include "runtime/scheduler.hpp"
#include "scaling/probe.hpp"
#include "timer/timer_service.hpp"

namespace ember::detail {

class NodeImpl;
struct WaitSet;

struct ModuleExtras {
  timer::TimerOwnerList timers;
  std::vector<std::function<void()>> cleanups;
  /// Expires when the module is released: pending completions check it before running.
  std::shared_ptr<void> alive = std::make_shared<char>();
  /// The module's pending when_available waits (created by the first one), ended at release.
  std::shared_ptr<WaitSet> waits;
};

/// Everything a Service needs from the runtime: its mailbox, state, module index and logger.
/// Hidden behind Service so that user headers do not see the scheduler or the wheel.
class ServiceCore final : public runtime::LaneOwner, public timer::TimerTarget {
 public:
  ServiceCore(NodeImpl& node, Service& self, ServiceConfig config, runtime::Scheduler* scheduler,
              std::unique_ptr<runtime::Scheduler> dedicated);
  ~ServiceCore() override;

  /// Enqueues `m`; on failure deletes it and says why. `external` messages (from other
  /// services or threads) are refused once the service stops and count against the bound.
  Status post(runtime::Message* m, bool external) noexcept;
  void execute(runtime::Message* m, int lane) noexcept override;
  void slice_done(int lane, std::int64_t cpu_ns) noexcept override;
  void post_timer_fire(runtime::Message* m) noexcept override;

  Status init();
  /// Runs on_start; an autoscaled service then joins the node's scaler.
  Status start();
  /// The strategy built (and checked) when the service was created; used from start().
  void set_scaling_strategy(std::unique_ptr<ScalingStrategy> strategy) {
    scaling_->strategy = std::move(strategy);
  }
  /// Bounded drain, then on_release of the module tree. Returns an error when a handler is
  /// stuck: the service must then not be destroyed.
  Status stop(std::chrono::milliseconds drain_timeout);

  // Module tree support (called by Module).
  Result<ModuleId> attach(Module& parent, std::unique_ptr<Module> child, ModuleId preset_id);
  Status release(Module& ancestor, ModuleId id);
  Module* find(ModuleId id) const;
  std::vector<Module*> children_of(const Module& m) const;

  [[nodiscard]] ServiceState state() const noexcept {
    return state_.load(std::memory_order_acquire);
  }
  std::atomic<bool> visible{false};  // set by the node: findable by name
  [[nodiscard]] const ServiceConfig& config() const noexcept { return config_; }
  [[nodiscard]] const Logger& logger() const noexcept { return logger_; }
  [[nodiscard]] runtime::Mailbox& mailbox() noexcept { return mailbox_; }
  [[nodiscard]] timer::TimerService& timers() noexcept;
  [[nodiscard]] NodeImpl& node() noexcept { return node_; }
  [[nodiscard]] Service& self() noexcept { return self_; }
  [[nodiscard]] std::uint64_t handler_failures() const noexcept { return failures_.load(); }
  [[nodiscard]] std::uint64_t rejected() const noexcept { return rejected_.load(); }
  /// A request whose deadline passed while it was queued was dropped unrun, `late` after its
  /// deadline: counted here and in the node's stats. Logged as a summary, at most one warning
  /// per service every 10 s, since under overload requests expire by the thousand.
  void count_expired(std::string_view method, std::chrono::steady_clock::duration late) noexcept;
  [[nodiscard]] std::uint64_t expired() const noexcept;
  /// Null unless WorkerConf.Scaling is set.
  [[nodiscard]] const ScalingProbe* scaling_probe() const noexcept {
    return scaling_ ? &scaling_->probe : nullptr;
  }

  /// The service whose message the calling thread runs, or nullptr.
  static ServiceCore* current() noexcept;
  /// The lane index of that message (-1 outside a handler).
  static int current_lane() noexcept;
  static ServiceCore* of(Module& m) noexcept { return m.core(); }
  static std::weak_ptr<void> alive_token(Module& m);
  static timer::TimerOwnerList* timer_owner(Module& m);
  /// Runs `fn` when `m` is released (after its on_release).
  static void add_cleanup(Module& m, std::function<void()> fn);
  /// Null before the module is attached.
  static ModuleExtras* extras(Module& m) noexcept { return m.extras_.get(); }

  [[nodiscard]] const Pid& pid() const noexcept { return **pid_.load(std::memory_order_acquire); }
  /// The same Pid, shareable: requests point to it instead of copying names.
  [[nodiscard]] const std::shared_ptr<const Pid>& shared_pid() const noexcept {
    return *pid_.load(std::memory_order_acquire);
  }
  /// Publishes a new role (master/slave group members only) and returns the new Pid. Readers on
  /// other threads keep a valid reference to the previous one: every Pid of the service lives as
  /// long as the service (roles change rarely, so they are few).
  std::shared_ptr<const Pid> set_role(bool master, std::uint64_t epoch);
  /// Posts a role change to the service at system priority (runs on_role_change).
  void notify_role(RoleChange change, std::uint64_t epoch);
  [[nodiscard]] const std::shared_ptr<ServiceAnchor>& anchor() const noexcept { return anchor_; }

  // Methods (RPC handlers) of every module of this service.
  Status add_method(MethodEntry entry);
  Status remove_method(std::string_view name, const Module* owner);
  /// The entry, or nullptr. Valid until the calling thread's next find_method (a one-entry
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

 private:
  void release_tree(Module& m);
  void cancel_all_timers();
  void flush_graveyard();

  void destroy_suspended_coroutines();

  NodeImpl& node_;
  Service& self_;
  const ServiceConfig config_;
  std::atomic<const std::shared_ptr<const Pid>*> pid_{nullptr};
  // Every Pid the service had, newest first (modules_mu_); pid_ points into it. A list: its
  // nodes never move, and one costs 32 bytes where a deque's first block costs ~600 per service.
  std::forward_list<std::shared_ptr<const Pid>> pids_;
  Logger logger_;
  std::shared_ptr<ServiceAnchor> anchor_;
  std::unique_ptr<runtime::Scheduler> dedicated_;  // declared before mailbox_: outlives it
  // Autoscaled services only (one pointer for the others).
  struct Autoscaling {
    explicit Autoscaling(int max_lanes) : probe(max_lanes) {}
    ScalingProbe probe;
    std::unique_ptr<ScalingStrategy> strategy;  // handed to the scaler at start
    bool registered = false;                    // with the node's scaler
  };
  std::unique_ptr<Autoscaling> scaling_;
  runtime::Mailbox mailbox_;
  std::atomic<ServiceState> state_{ServiceState::created};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> rejected_{0};
  struct Expired {
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::uint64_t> reported{0};        // count at the last warning
    std::atomic<std::int64_t> next_warning_ns{0};  // steady clock
  };
  // Allocated by the first expiry: most services never see one, and an idle service's bytes are
  // multiplied by the number of services.
  std::atomic<Expired*> expired_{nullptr};

  mutable std::mutex modules_mu_;
  // Allocated on first use: most services never add a module, and every byte of an idle service
  // is multiplied by the number of services.
  std::unique_ptr<std::unordered_map<ModuleId, Module*>> modules_;
  ModuleId next_module_id_ = 1'000'001;
  std::vector<std::unique_ptr<Module>> graveyard_;  // released during a handler; freed after it
  std::atomic<bool> graveyard_dirty_{false};

  mutable std::shared_mutex methods_mu_;
  // Changed on every change: invalidates the thread-local caches. Drawn from one counter for all
  // services, so a cache keyed by (service address, version) cannot mistake a new service built
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

  std::unique_ptr<std::unordered_map<void*, std::function<void()>>> coroutines_;  // modules_mu_
};

}  // namespace ember::detail
