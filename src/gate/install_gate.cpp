// SPDX-License-Identifier: Apache-2.0
// Installs the gateway into every node of a program that links ember::gate (see
// install_cluster.cpp for how the link option pulls this member in).
#include <memory>

#include "assembly/components.hpp"
#include "core/node_impl.hpp"
#include "gate/gate_core.hpp"

namespace {

void add_gate(ember::detail::NodeImpl& node) {
  node.add_subsystem(std::make_shared<ember::gate::GateCore>(node));
  ember::gate::add_gate_service(node);
}

[[maybe_unused]] const bool installed = [] {
  ember::detail::install_gate_factory(&add_gate);
  return true;
}();

}  // namespace

extern "C" void ember_gate_component() {}
