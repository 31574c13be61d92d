// SPDX-License-Identifier: Apache-2.0
// Linked as an object file into every program that uses ember::ember, so that a node with a
// ClusterConf finds the cluster layer without the program calling anything.
#include "cluster/membership.hpp"

namespace {
[[maybe_unused]] const bool installed = [] {
  ember::detail::install_membership();
  return true;
}();
}  // namespace
