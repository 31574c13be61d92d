// SPDX-License-Identifier: Apache-2.0
// Installs the cluster layer into every node of a program that links ember::cluster, without the
// program calling anything: the target's link options name ember_cluster_component as undefined,
// which pulls this archive member, and with it the static initializer below, into the program.
#include "cluster/membership.hpp"
#include "core/node_impl.hpp"

namespace {

using ember::detail::EventRouter;
using ember::detail::NodeImpl;

ember::Result<std::shared_ptr<EventRouter>> make_cluster_event_router(NodeImpl& node) {
  ember::detail::Membership* membership = ember::detail::Membership::of(node);
  if (membership == nullptr) {
    return ember::Error{ember::Errc::invalid_argument,
                        "EventBusConf.Backend \"cluster\" needs the node to join a cluster "
                        "(ClusterConf)"};
  }
  return std::shared_ptr<EventRouter>(membership->event_channels());
}

[[maybe_unused]] const bool installed = [] {
  ember::detail::install_membership();
  ember::detail::install_event_router_factory(ember::EventBackend::cluster,
                                              &make_cluster_event_router);
  return true;
}();

}  // namespace

extern "C" void ember_cluster_component() {}
