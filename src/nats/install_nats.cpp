// SPDX-License-Identifier: Apache-2.0
// Installs the NATS event backend into every node of a program that links ember::nats (pulled in
// by the undefined symbol ember_nats_component, like the cluster component's installer).
#include "core/node_impl.hpp"
#include "nats/nats_events.hpp"
#include "rpc/messaging.hpp"

namespace {

using ember::detail::EventRouter;
using ember::detail::NodeImpl;

ember::Result<std::shared_ptr<EventRouter>> make_nats_event_router(NodeImpl& node) {
  auto nats = ember::detail::NatsEvents::connect(
      node, ember::detail::Messaging::of(node).remote() != nullptr
                ? ember::detail::Messaging::of(node).remote()->address()
                : "");
  if (!nats) {
    return std::move(nats).error();
  }
  return std::shared_ptr<EventRouter>(std::move(*nats));
}

[[maybe_unused]] const bool installed = [] {
  ember::detail::install_event_router_factory(ember::EventBackend::nats, &make_nats_event_router);
  return true;
}();

}  // namespace

extern "C" void ember_nats_component() {}
