// SPDX-License-Identifier: Apache-2.0
// Installs the gateway into every node of a program that links ember::gate (see
// install_cluster.cpp for how the link option pulls this member in).
#include <memory>

#include "assembly/components.hpp"
#include "core/node_impl.hpp"
#include "gate/gate_core.hpp"
#include "gate/session_directory.hpp"

namespace {

// Every node of a cluster gets the session directory (backends push to players through it); a
// node with a GateConf also gets the gateway. The directory is added after the gateway, so it
// stops first: no claim it runs can reach a gateway whose I/O threads are gone.
void add_gate(ember::detail::NodeImpl& node) {
  if (node.config.gate.enabled) {
    node.add_subsystem(std::make_shared<ember::gate::GateCore>(node));
    ember::gate::add_gate_service(node);
  }
  node.add_subsystem(std::make_shared<ember::gate::SessionDirectory>(node));
}

[[maybe_unused]] const bool installed = [] {
  ember::detail::install_gate_factory(&add_gate);
  return true;
}();

}  // namespace

extern "C" void ember_gate_component() {}
