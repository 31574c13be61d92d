// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <ember/context.hpp>
#include <ember/event.hpp>
#include <ember/rpc.hpp>
#include <memory>

#include "rpc/repository.hpp"

namespace ember::detail {

class NodeImpl;
class PendingCall;
class ServiceCore;

/// What a node needs from the cluster layer: reaching services on other nodes and telling the
/// cluster which of its own services exist. Implemented by the cluster libraries, so the core
/// does not depend on the network or on etcd.
class RemoteRouter {
 public:
  virtual ~RemoteRouter() = default;
  /// Serializes and sends one request to a remote target. `pending` null means Send (no reply).
  /// On failure nothing was sent and the error says why.
  virtual Status send_request(const Target& target, const CallSpec& spec, const Context& context,
                              const std::shared_ptr<PendingCall>& pending) = 0;
  /// A service became visible (after its on_start) / stops being visible (its stop begins).
  virtual void publish(ServiceCore& service) { (void)service; }
  virtual void unpublish(ServiceCore& service) { (void)service; }
  /// Sends an event published on this node to the other nodes that subscribed to its type and
  /// scope (the local subscribers already have it).
  virtual void publish_event(const AnyMessage& payload, const EventInfo& info) {
    (void)payload;
    (void)info;
  }
  /// Waits (bounded) until what was published so far is registered in the cluster.
  virtual Status flush(std::chrono::milliseconds timeout) {
    (void)timeout;
    return {};
  }
  /// Leaves the cluster: called by Node::stop once its services have drained.
  virtual void stop() = 0;
};

/// Builds a node's cluster membership from its ClusterConf. The cluster library installs it when
/// it is linked in (target ember::ember), so a core-only binary has none.
using ClusterFactory = Result<std::shared_ptr<RemoteRouter>> (*)(NodeImpl& node);
void install_cluster_factory(ClusterFactory factory) noexcept;
ClusterFactory cluster_factory() noexcept;

}  // namespace ember::detail
