// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <ember/config.hpp>
#include <ember/context.hpp>
#include <ember/event.hpp>
#include <ember/node.hpp>
#include <ember/rpc.hpp>
#include <memory>

#include "rpc/repository.hpp"

namespace ember::detail {

class NodeImpl;
class PendingCall;
class ServiceCore;

/// How messaging reaches services on other nodes: the cluster transport implements it, so the
/// core depends on neither the network nor the coordinator. Which services exist elsewhere is
/// the cluster subsystem's business; it fills the repository.
class RemoteRouter {
 public:
  virtual ~RemoteRouter() = default;
  /// Serializes and sends one request to a remote target. `pending` null means Send (no reply).
  /// On failure nothing was sent and the error says why.
  virtual Status send_request(const Target& target, const CallSpec& spec, const Context& context,
                              const std::shared_ptr<PendingCall>& pending) = 0;
  /// Sends a request whose payload is still serialized (a game client's, through the gateway):
  /// the callee parses it as its method's request type, and the reply's payload reaches
  /// `responder` as it came (Responder::deliver_serialized). Null `responder`: nobody waits.
  virtual Status send_serialized_request(const Target& target, std::string_view method,
                                         std::string_view payload, const Context& context,
                                         const std::shared_ptr<Responder>& responder) = 0;
  /// Tells `node` that an origin whose requests this node sent it has ended: it drops those not
  /// yet started. Sent after them on the same ordered connection; lost if the node is down.
  virtual void send_origin_ended(const std::string& node, const std::string& address,
                                 std::string_view identity) = 0;
  /// Where other nodes reach this one (host:port); events sent through NATS carry it as origin.
  [[nodiscard]] virtual std::string address() const { return {}; }
  /// Stops sending and fails the calls still waiting for a reply.
  virtual void stop() = 0;
};

/// Carries events between nodes: the "cluster" backend (Ember's transport, subscriptions in etcd)
/// or the "nats" one. Local subscribers never depend on it: the bus delivers to them directly.
class EventRouter {
 public:
  virtual ~EventRouter() = default;
  /// (type, scope) got its first subscriber on this node (true) or lost its last (false). Runs
  /// under the bus's lock: record the wish and return; never call back into the bus.
  virtual void want(EventType type, EventScope scope, bool wanted) = 0;
  /// Sends an event published on this node to the other nodes subscribed to its type and scope.
  /// Never blocks on the network; what cannot be sent is counted and lost (at most once).
  virtual void forward(const AnyMessage& payload, const EventInfo& info) = 0;
  /// Waits (bounded) until this node's current subscriptions are in effect at the backend, so
  /// events published elsewhere from then on reach it. Node::start calls it last.
  virtual Status flush(std::chrono::milliseconds timeout) {
    (void)timeout;
    return {};
  }
  /// Counters: sent, received, send_failures, receive_errors, dropped (published is the bus's).
  [[nodiscard]] virtual EventStats event_stats() const = 0;
  /// Node stop, after the services drained: sends what is queued (bounded), then stops
  /// receiving. Later forward() calls do nothing.
  virtual void close() = 0;
};

/// Builds a node's event router for one backend ("cluster" or "nats"), at the start of the
/// messaging subsystem: the cluster subsystem, when the node has one, has started before it. The
/// cluster and NATS components each install theirs when a program links them, so a program without
/// them has none and says so at start.
using EventRouterFactory = Result<std::shared_ptr<EventRouter>> (*)(NodeImpl& node);
void install_event_router_factory(EventBackend backend, EventRouterFactory factory) noexcept;
EventRouterFactory event_router_factory(EventBackend backend) noexcept;

/// Adds the cluster subsystem to a node with a ClusterConf. The cluster component installs it
/// when a program links it (ember::cluster), so a core-only program has none.
using ClusterFactory = void (*)(NodeImpl& node);
void install_cluster_factory(ClusterFactory factory) noexcept;
ClusterFactory cluster_factory() noexcept;

}  // namespace ember::detail
