// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <condition_variable>
#include <ember/config.hpp>
#include <ember/log.hpp>
#include <ember/node.hpp>
#include <ember/service.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/service_timings.hpp"
#include "core/subsystem.hpp"
#include "runtime/scheduler.hpp"
#include "timer/time_zone.hpp"
#include "timer/timer_service.hpp"

namespace ember::detail {

class NodeImpl {
 public:
  enum class Phase { idle, starting, running, stopping, stopped };

  explicit NodeImpl(NodeConfig cfg);

  Node* owner = nullptr;
  NodeConfig config;
  std::shared_ptr<const Pid> node_pid;  // caller identity of requests sent from outside services
  Logger log;
  timer::TimeZone local_zone;
  // Set when the node starts on a thread that runs a simulation: no threads, virtual time.
  runtime::Driver* driver = nullptr;
  std::uint32_t driver_group = 0;  // under a driver: tags this node's pools, threads and timers
  std::unique_ptr<runtime::Scheduler> scheduler;
  std::unique_ptr<timer::TimerService> timers;
  /// Set (before start) by a subsystem that reports them: every service then measures how long
  /// its messages wait and run, and reports slow handlers.
  std::optional<TimingOptions> timing;

  std::mutex lifecycle_mu;  // start/stop/add/remove run one at a time
  Phase phase = Phase::idle;
  std::vector<std::unique_ptr<Service>> services;  // start order
  std::vector<std::unique_ptr<Service>> stuck;     // could not be drained: never destroyed
  std::vector<std::pair<std::unique_ptr<Service>, ServiceConfig>> added_before_start;

  // Every created service by (name, id): refuses duplicates. Only those flagged visible (between
  // on_start and the start of their stop) are found by lookups.
  mutable std::shared_mutex visible_mu;
  std::map<std::pair<std::string, std::string>, Service*, std::less<>> by_identity;
  void forget(Service& s);

  std::mutex run_mu;
  std::condition_variable run_cv;
  std::atomic<bool> stop_requested{false};

  /// Adds a subsystem (before start): hooks run in the order of addition, stops in reverse.
  template <class T>
  void add_subsystem(std::shared_ptr<T> subsystem) {
    add_subsystem(subsystem_slot<T>(), std::move(subsystem));
  }
  void add_subsystem(std::size_t slot, std::shared_ptr<Subsystem> subsystem);
  /// The subsystem of a slot (see subsystem_slot), or nullptr.
  [[nodiscard]] Subsystem* subsystem(std::size_t slot) const noexcept {
    return slot < by_slot_.size() ? by_slot_[slot] : nullptr;
  }
  template <class Fn>
  void each_subsystem(Fn&& fn) {
    for (auto& s : subsystems_) {
      fn(*s);
    }
  }
  template <class Fn>
  void each_subsystem_reversed(Fn&& fn) {
    for (auto it = subsystems_.rbegin(); it != subsystems_.rend(); ++it) {
      fn(**it);
    }
  }
  /// Starts the subsystems in order; on a failure stops those already started.
  Status start_subsystems();
  /// Stops the started subsystems, in reverse order.
  void stop_subsystems();

  void start_runtime(int threads);
  void stop_time_driven();
  void make_visible(Service& s);
  void make_invisible(Service& s);
  Service* find_visible(std::string_view name, std::string_view id) const;
  /// Calls `fn(ServiceCore&)` for every created service, visible or not, under the index's
  /// shared lock: a service is removed from the index before it is destroyed, so none goes
  /// away meanwhile. For readers on other threads (the admin); `fn` must not block.
  template <class Fn>
  void each_service_core(Fn&& fn) const {
    std::shared_lock lock(visible_mu);
    for (const auto& entry : by_identity) {
      if (entry.second->core_ != nullptr) {  // null while the service is being created
        fn(*entry.second->core_);
      }
    }
  }

  /// With visible_mu held: a service in by_identity has no core for a moment while created.
  static bool is_visible(const Service& s);

  Status create_and_init(std::unique_ptr<Service> service, ServiceConfig cfg,
                         std::vector<Service*>& out);
  Status stop_one(Service& s);
  /// Node::retire_service with lifecycle_mu held by the caller.
  Status retire_locked(std::string_view name, std::string_view id);

 private:
  std::vector<std::shared_ptr<Subsystem>> subsystems_;  // in start order
  std::vector<Subsystem*> by_slot_;
  std::size_t started_subsystems_ = 0;
};

/// How Ember's own code (subsystems, tests) reaches a Node's internals: not part of the public
/// API, which has no way to them.
struct NodeAccess {
  static NodeImpl& impl(Node& node) noexcept { return *node.impl_; }
};

}  // namespace ember::detail
