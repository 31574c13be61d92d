// SPDX-License-Identifier: Apache-2.0
//
// A Node is one process hosting many services on a fixed pool of worker threads.
//
//   int main(int argc, char** argv) { return ember::run_node(argc, argv); }
//
// run_node reads --config (YAML), creates the configured services by class name, starts them
// (all on_init in config order, then for each: on_start, visible, on_started) and stops them in
// reverse order on SIGINT/SIGTERM, draining each mailbox within NodeConf.ShutdownTimeout.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <ember/dispatch.hpp>
#include <ember/error.hpp>
#include <ember/service.hpp>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

namespace ember {

namespace detail {
class NodeImpl;
struct NodeAccess;
}  // namespace detail

/// Counters a node keeps (read any time, from any thread).
/// Events on this node (NodeStats::events). "Sent" and "received" count what crossed the node's
/// boundary through the cluster backend, so a node without subscribers shows zero received.
struct EventStats {
  std::uint64_t published = 0;       ///< publish() calls on this node
  std::uint64_t delivered = 0;       ///< handler runs for events on this node (any publisher)
  std::uint64_t sent = 0;            ///< frames (cluster) or messages (nats) sent to others
  std::uint64_t received = 0;        ///< frames or messages received from others
  std::uint64_t send_failures = 0;   ///< events a backend could not send: lost (at most once)
  std::uint64_t receive_errors = 0;  ///< received but unreadable (unknown type, bad bytes)
  std::uint64_t dropped = 0;         ///< dropped by the backend (NATS slow consumer)
};

/// The node's autoscaler (NodeStats::scaling); per-service figures are in Service::scaling().
struct ScalingTotals {
  std::uint64_t services = 0;           ///< autoscaled services running
  std::uint64_t evaluations = 0;        ///< strategy evaluations so far
  std::uint64_t grows = 0;              ///< lane-count increases
  std::uint64_t shrinks = 0;            ///< lane-count decreases
  std::uint64_t strategy_failures = 0;  ///< evaluations whose strategy threw (counted as hold)
};

struct NodeStats {
  std::uint64_t late_replies =
      0;  ///< replies that arrived after their call completed (timeout, cancel)
  std::uint64_t pending_calls = 0;  ///< calls waiting for an outcome right now
  /// Requests (calls and sends, local or from other nodes) dropped unrun because their deadline
  /// passed while they were queued; per service: Service::expired_requests().
  std::uint64_t expired = 0;
  std::size_t services = 0;  ///< entries in the repository
  std::size_t pending_timers = 0;
  EventStats events;
  ScalingTotals scaling;
};

class Node {
 public:
  explicit Node(NodeConfig config);
  ~Node();  // stops the node if it still runs
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// Creates and starts the configured services. On any error (unknown class, failing on_init
  /// or on_start) the services started so far are stopped again and the error names the cause.
  Status start();
  /// Stops every service (reverse order, bounded drain) and the worker pool. Idempotent. Must
  /// not be called from a handler (it would wait for its own mailbox): use request_stop().
  Status stop();
  /// Asks run() to stop. Thread-safe, callable from handlers.
  void request_stop() noexcept;
  /// start(), wait for SIGINT/SIGTERM or request_stop(), stop(). Returns a process exit code:
  /// 0 clean stop; 2 when start fails with invalid_argument (the config asks for what the program
  /// cannot do: an unknown class, a component it does not link, Params a service rejects);
  /// 1 any other failure.
  int run();

  /// Adds a service outside the config. Before start() it joins the start sequence (after the
  /// configured ones); afterwards it is initialized and started at once.
  Result<Service*> add_service(std::unique_ptr<Service> service, ServiceConfig config);
  /// Stops one running service and destroys it.
  Status stop_service(std::string_view name, std::string_view id = {});

  /// Retires a running service: it leaves discovery and the node's index, so no selector,
  /// lookup or gateway route picks it any more (a master gives its role up first, so its group
  /// elects another), and it keeps running what is queued and what reaches it by an address
  /// already held. Then on_retire runs. Stop it with stop_service once it is idle. Errors:
  /// not_found (no such running service), bad_state (already retired or stopping, or called
  /// from a handler).
  Status retire_service(std::string_view name, std::string_view id = {});
  /// A running, visible service, or nullptr.
  [[nodiscard]] Service* find_service(std::string_view name, std::string_view id = {}) const;
  [[nodiscard]] std::vector<Service*> services() const;

  /// Queues `fn` in a service's mailbox as a message from outside: subject to the mailbox bound
  /// (overloaded) and refused once the service is stopping (stopping) or unknown (not_found).
  Status post(std::string_view service_name, std::function<void()> fn, PostOptions options = {});

  [[nodiscard]] NodeStats stats() const;
  [[nodiscard]] const NodeConfig& config() const noexcept;
  [[nodiscard]] const std::string& id() const noexcept;
  [[nodiscard]] bool running() const noexcept;

 private:
  friend struct detail::NodeAccess;
  std::unique_ptr<detail::NodeImpl> impl_;
};

/// The standard entry point: flags --config PATH (default $EMBER_CONFIG, else node.yaml),
/// --log-level LEVEL, --node-id ID, --threads N, --help. Returns the process exit code:
/// 0 clean stop, 1 runtime failure, 2 bad flags or config (as for Node::run).
int run_node(int argc, char** argv);

}  // namespace ember
