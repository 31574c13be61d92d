// SPDX-License-Identifier: Apache-2.0
//
// A Service is an actor: one mailbox, lifecycle hooks, a tree of modules. Nodes create services
// from their YAML config by class name:
//
//   class Lobby : public ember::Service {
//     ember::Status on_init() override { return {}; }      // before any message; add modules here
//     ember::Status on_start() override { return {}; }     // then the service becomes visible
//     void on_started() override { log().info("up"); }     // first message in its mailbox
//     void on_release() override {}                        // after the mailbox drained
//   };
//   EMBER_REGISTER_SERVICE(Lobby);
//
// EMBER_REGISTER_SERVICE registers the class under its name exactly as written between the
// parentheses (whitespace normalized as the preprocessor does): EMBER_REGISTER_SERVICE(Lobby) is
// "Lobby", EMBER_REGISTER_SERVICE(game::Lobby) is "game::Lobby", written inside `namespace game`
// as EMBER_REGISTER_SERVICE(Lobby) it is "Lobby" again. That text is what a config's ClassName
// must say; register_service<T>("name") registers under any other name. Use it at namespace
// scope in a .cpp file, once per class.
//
// With one lane (the default) handlers never run concurrently. With N lanes, messages with the
// same dispatch key run in order on one lane and different lanes run in parallel: state shared
// across keys then needs its own synchronization.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <ember/module.hpp>
#include <ember/pid.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ember {

enum class ServiceState : std::uint8_t { created, initialized, running, stopping, stopped };

/// What happened to a master/slave group member (IsPrimarySecondaryMode) in the cluster.
enum class RoleChange : std::uint8_t {
  become_master,  ///< won the election; `epoch` is the new fencing token
  become_slave,   ///< another instance is master
  lose_master,    ///< was master and must stop acting as one (lease in doubt or lost)
};

/// What the autoscaler measured and decided for a service (WorkerConf.Scaling), for admin and
/// metrics endpoints. Wait and CPU figures cover the last evaluation interval.
struct ScalingStatus {
  bool enabled = false;  ///< WorkerConf.Scaling is set
  int lanes = 1;         ///< lanes now
  int min_lanes = 1;
  int max_lanes = 1;
  std::uint64_t evaluations = 0;
  std::uint64_t grows = 0;                       ///< changes that added lanes
  std::uint64_t shrinks = 0;                     ///< changes that removed lanes
  std::chrono::microseconds user_wait_p99{0};    ///< queueing delay of user messages
  std::chrono::microseconds system_wait_p99{0};  ///< queueing delay of system messages
  double cpu_per_lane = 0;    ///< handler CPU time per lane and second (1.0 = lanes always busy)
  double busy_per_lane = 0;   ///< handler wall time per lane and second (blocking time counts)
  std::string last_decision;  ///< e.g. "lanes 2 -> 4 (grow): queue_length: 230.5 queued ..."
};

class Service : public Module {
 public:
  Service();
  ~Service() override;

  /// Runs after every service's on_init, in config order. An error stops the node's start.
  virtual Status on_start() { return {}; }
  /// Runs as the first message of the service's mailbox (system priority), once it is visible.
  virtual void on_started() {}
  /// Master/slave group members only, in the cluster: runs at system priority, in order, each
  /// time the role changes. lose_master always comes before a later become_slave/become_master.
  virtual void on_role_change(RoleChange change, std::uint64_t epoch) {
    (void)change;
    (void)epoch;
  }
  /// Runs (system priority) once the service is retired (Node::retire_service): nobody selects it
  /// any more, and it still handles what reaches it. Hand work over, then stop it when idle.
  virtual void on_retire() {}

  [[nodiscard]] const std::string& name() const noexcept;
  [[nodiscard]] const std::string& service_id() const noexcept;
  [[nodiscard]] const std::string& type() const noexcept;
  [[nodiscard]] std::int32_t server_id() const noexcept;
  /// This instance's identity as the cluster sees it (role and epoch included).
  [[nodiscard]] const Pid& pid() const noexcept;
  /// Master of its group (always true outside a master/slave group or without a cluster).
  [[nodiscard]] bool is_master() const noexcept { return pid().master; }
  /// Fencing token of the current mastership (0 when not master in a cluster group).
  [[nodiscard]] std::uint64_t epoch() const noexcept { return pid().epoch; }
  [[nodiscard]] const ServiceConfig& config() const noexcept;
  /// A Params value from the config, or `fallback`.
  [[nodiscard]] std::string_view param(std::string_view key, std::string_view fallback = {}) const;
  [[nodiscard]] ServiceState state() const noexcept;
  /// Retired (Node::retire_service): no longer selected by anyone, still running.
  [[nodiscard]] bool retired() const noexcept;
  /// No method name starts with "Rpc" or "RPC": the service is never published to discovery (the
  /// seed's rule), so only its own node reaches it.
  [[nodiscard]] bool is_private() const;

  [[nodiscard]] int lane_count() const;
  /// Changes the number of lanes at run time without losing a message or breaking per-key
  /// order. Clamped to [1, MaxWorkerNum] (or [1, 1024] when no maximum is configured).
  void set_lane_count(int lanes);
  /// Lane a dispatch key runs on now.
  [[nodiscard]] int lane_of(DispatchKey key) const;
  /// Messages queued (all lanes) and user messages counted against the mailbox bound.
  [[nodiscard]] std::int64_t queued_messages() const;
  /// Autoscaling gauges and counters (enabled = false without WorkerConf.Scaling). With
  /// autoscaling, a lane count set by hand outside Scaling.Min..Max is brought back at the next
  /// evaluation.
  [[nodiscard]] ScalingStatus scaling() const;
  /// Requests to this service dropped unrun because their deadline passed while they were queued
  /// (also counted in NodeStats::expired).
  [[nodiscard]] std::uint64_t expired_requests() const;

 private:
  friend class Module;
  friend class detail::NodeImpl;
  friend class detail::ServiceCore;
  friend class Node;
  std::unique_ptr<detail::ServiceCore> core_;
};

using ServiceFactory = std::function<std::unique_ptr<Service>()>;

/// Makes a class creatable from config by `class_name`. A second registration of the same name
/// is already_exists (the first stays).
Status register_service(std::string class_name, ServiceFactory factory);

template <class T>
Status register_service(std::string class_name) {
  static_assert(std::is_base_of_v<Service, T> && std::is_default_constructible_v<T>,
                "EMBER_REGISTER_SERVICE(T) / register_service<T>(name): T must be a class derived "
                "from ember::Service with a public default constructor (a factory with arguments "
                "goes through register_service(name, factory))");
  if constexpr (std::is_base_of_v<Service, T> && std::is_default_constructible_v<T>) {
    return register_service(std::move(class_name), [] { return std::make_unique<T>(); });
  } else {
    return Error{Errc::invalid_argument, "not a service class"};
  }
}

/// Names registered so far, sorted.
std::vector<std::string> registered_services();

}  // namespace ember

// The variable's name comes from __COUNTER__, not from the class: a qualified name (ns::Lobby) or
// a template-id cannot be pasted into an identifier. The macro is variadic so that a template-id
// with commas (Pool<A, B>) stays one argument.
#define EMBER_DETAIL_CONCAT_IMPL(a, b) a##b
#define EMBER_DETAIL_CONCAT(a, b) EMBER_DETAIL_CONCAT_IMPL(a, b)
#define EMBER_REGISTER_SERVICE(...)                                                 \
  [[maybe_unused]] static const bool EMBER_DETAIL_CONCAT(ember_registered_service_, \
                                                         __COUNTER__) = [] {        \
    auto status = ::ember::register_service<__VA_ARGS__>(#__VA_ARGS__);             \
    if (!status) {                                                                  \
      ::ember::system_log().error("register_service({}): {}", #__VA_ARGS__,         \
                                  status.error().to_string());                      \
    }                                                                               \
    return true;                                                                    \
  }()
