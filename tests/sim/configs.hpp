// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <ember/config.hpp>
#include <string>

namespace ember::testing {

/// A node for the simulator: a 1 ms tick, so virtual time resolves timers finely.
inline NodeConfig sim_node(std::string id) {
  NodeConfig config;
  config.node_id = std::move(id);
  config.timer_tick = std::chrono::milliseconds(1);
  return config;
}

/// A service registered by name, its lane count changeable up to 16.
inline ServiceConfig sim_service(std::string name, int lanes = 1) {
  ServiceConfig config;
  config.class_name = name;
  config.name = std::move(name);
  config.worker.lanes = lanes;
  config.worker.max_lanes = 16;
  return config;
}

}  // namespace ember::testing
