// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
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

#include "core/service_anchor.hpp"
#include "core/service_timings.hpp"
#include "core/subsystem.hpp"
#include "runtime/mailbox.hpp"
#include "runtime/scheduler.hpp"
#include "scaling/probe.hpp"
#include "timer/timer_service.hpp"

namespace ember::detail {

class NodeImpl;
struct WaitSet;

/// How logs and errors name a service: "name", or "name#id" for one of several instances.
std::string describe(const ServiceConfig& config);

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
  /// A SendBatch's messages from other services, linked through `next`; false (nothing
  /// enqueued, the caller still owns them, counted as rejected) once the service has stopped.
  bool post_chain(runtime::Message* first, runtime::Message* last, std::int64_t count) noexcept;
  /// Whether Sends with `key` may reach this service in a SendBatch: only while it runs, not
  /// with a mailbox bound (it counts and may refuse each message), and keyless ones only to a
  /// single lane (a chain goes to one lane; keyless messages are meant to spread).
  [[nodiscard]] bool takes_batches(DispatchKey key) noexcept {
    return state() == ServiceState::running && !mailbox_.bounded() &&
           (key.has_value() || mailbox_.lane_count() == 1);
  }
  void execute(runtime::Message* m, int lane) noexcept override;
  void slice_done(int lane, std::int64_t cpu_ns) noexcept override;
  void post_timer_fire(runtime::Message* m) noexcept override;

  Status init();
  /// Runs on_start, makes the service visible and opens its mailbox.
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
  std::atomic<bool> retired{false};  // set by the node: left the index for good, still running
  /// Queues on_retire (system priority).
  void notify_retired();
  [[nodiscard]] const ServiceConfig& config() const noexcept { return config_; }
  [[nodiscard]] const Logger& logger() const noexcept { return logger_; }
  [[nodiscard]] runtime::Mailbox& mailbox() noexcept { return mailbox_; }
  [[nodiscard]] timer::TimerService& timers() noexcept;
  [[nodiscard]] NodeImpl& node() noexcept { return node_; }
  [[nodiscard]] Service& self() noexcept { return self_; }
  [[nodiscard]] std::uint64_t handler_failures() const noexcept { return failures_.load(); }
  [[nodiscard]] std::uint64_t rejected() const noexcept { return rejected_.load(); }
  /// Null unless WorkerConf.Scaling is set.
  [[nodiscard]] ScalingProbe* scaling_probe() noexcept {
    return scaling_ ? &scaling_->probe : nullptr;
  }
  [[nodiscard]] const ScalingProbe* scaling_probe() const noexcept {
    return scaling_ ? &scaling_->probe : nullptr;
  }
  /// Null unless the node measures message timings (NodeImpl::timing).
  [[nodiscard]] const ServiceTimings* timings() const noexcept { return timings_.get(); }
  /// Hands the strategy to the scaling subsystem (once, when the service starts).
  std::unique_ptr<ScalingStrategy> take_scaling_strategy() noexcept {
    return scaling_ ? std::move(scaling_->strategy) : nullptr;
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

  /// A subsystem's state for this service (see attachment_slot), or nullptr: none yet.
  [[nodiscard]] ServiceAttachment* attachment(std::size_t slot) const noexcept {
    return attachments_[slot].load(std::memory_order_acquire);
  }
  /// Installs `state` in the slot unless another thread did first; returns the one installed.
  ServiceAttachment& attach_state(std::size_t slot, std::unique_ptr<ServiceAttachment> state);

 private:
  void release_tree(Module& m);
  void cancel_all_timers();
  void flush_graveyard();

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
    std::unique_ptr<ScalingStrategy> strategy;  // handed to the scaling subsystem at start
  };
  std::unique_ptr<Autoscaling> scaling_;
  std::unique_ptr<ServiceTimings> timings_;  // null unless the node measures timings
  runtime::Mailbox mailbox_;
  std::atomic<ServiceState> state_{ServiceState::created};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> rejected_{0};

  mutable std::mutex modules_mu_;
  // Allocated on first use: most services never add a module, and every byte of an idle service
  // is multiplied by the number of services.
  std::unique_ptr<std::unordered_map<ModuleId, Module*>> modules_;
  ModuleId next_module_id_ = 1'000'001;
  std::vector<std::unique_ptr<Module>> graveyard_;  // released during a handler; freed after it
  std::atomic<bool> graveyard_dirty_{false};

  std::array<std::atomic<ServiceAttachment*>, kAttachmentSlots> attachments_{};  // owned
};

}  // namespace ember::detail
