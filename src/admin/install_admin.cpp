// SPDX-License-Identifier: Apache-2.0
// Installs the admin listener into every node of a program that links ember::admin (see
// install_cluster.cpp for how the link option pulls this member in).
#include <memory>

#include "admin/admin.hpp"
#include "assembly/components.hpp"
#include "core/node_impl.hpp"

namespace {

void add_admin(ember::detail::NodeImpl& node) {
  node.add_subsystem(std::make_shared<ember::admin::Admin>(node));
}

[[maybe_unused]] const bool installed = [] {
  ember::detail::install_admin_factory(&add_admin);
  return true;
}();

}  // namespace

extern "C" void ember_admin_component() {}
