// SPDX-License-Identifier: Apache-2.0
// Components that install a subsystem into every node of a program that links them, through a
// static initializer the component's link options pull in. The composition root
// (node_assembly.cpp) adds the subsystem when the node's config asks for it.
#pragma once

namespace ember::detail {

class NodeImpl;

using SubsystemFactory = void (*)(NodeImpl& node);

/// The client gateway (ember::gate), for a node with a GateConf.
void install_gate_factory(SubsystemFactory factory) noexcept;
SubsystemFactory gate_factory() noexcept;

/// The admin listener (ember::admin), for a node with an AdminConf.
void install_admin_factory(SubsystemFactory factory) noexcept;
SubsystemFactory admin_factory() noexcept;

}  // namespace ember::detail
