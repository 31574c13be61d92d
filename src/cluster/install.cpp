// SPDX-License-Identifier: Apache-2.0
// Linked as an object file into every program that uses ember::ember, so that a node with a
// ClusterConf or an EventBusConf backend finds the cluster layer without the program calling
// anything.
#include "cluster/membership.hpp"
#include "cluster/nats_events.hpp"
#include "core/node_impl.hpp"

namespace {

using ember::detail::EventRouter;
using ember::detail::NodeImpl;

ember::Result<std::shared_ptr<EventRouter>> make_event_router(NodeImpl& node,
                                                              ember::EventBackend backend) {
  auto membership = std::dynamic_pointer_cast<ember::detail::Membership>(node.remote);
  if (backend == ember::EventBackend::nats) {
    auto nats = ember::detail::NatsEvents::connect(node, membership ? membership->address() : "");
    if (!nats) {
      return std::move(nats).error();
    }
    return std::shared_ptr<EventRouter>(std::move(*nats));
  }
  if (!membership) {
    return ember::Error{ember::Errc::bad_state,
                        "EventBusConf.Backend \"cluster\" needs the node to join a cluster "
                        "(ClusterConf)"};
  }
  return std::shared_ptr<EventRouter>(std::move(membership));
}

[[maybe_unused]] const bool installed = [] {
  ember::detail::install_membership();
  ember::detail::install_event_router_factory(&make_event_router);
  return true;
}();

}  // namespace
