// SPDX-License-Identifier: Apache-2.0
// What the simulator's cluster tests share: a node's cluster config and the coordinator (one
// MemoryStore in the world, one connection to it per node).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <ember/ember.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/membership.hpp"
#include "cluster/store/memory_store.hpp"
#include "core/node_impl.hpp"
#include "ember/sim.hpp"
#include "sim/configs.hpp"

namespace ember::testing {

inline NodeConfig cluster_node(const std::string& id) {
  using namespace std::chrono_literals;
  NodeConfig c = sim_node(id);
  c.call_timeout = 500ms;
  c.shutdown_timeout = 1s;
  c.cluster.enabled = true;
  c.cluster.name = "sim";
  c.cluster.secret = "s3cret";
  c.cluster.ttl = 2s;
  c.cluster.etcd_timeout = 1s;
  return c;
}

// A simulated cluster's coordinator: one MemoryStore, made in the world (its thread is one of the
// world's) and reached by each node through a connection of its own, which dies with the node.
// Declare it after the World and before the nodes: it must outlive them, and the World it.
class Coordinator {
 public:
  Coordinator() {
    detail::install_store_factory(
        [this](detail::NodeImpl& node) -> Result<std::shared_ptr<store::Store>> {
          auto connection = store::MemoryStore::connect(store_);
          connections_[node.config.node_id] = connection;
          return connection;
        });
  }
  ~Coordinator() { detail::install_store_factory(nullptr); }
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  store::MemoryStore& store() { return *store_; }
  /// What a killed node held in the coordinator stays until its lease expires.
  void sever(const std::string& node) { store::MemoryStore::sever(*connections_.at(node)); }
  /// Kills `node` (named `id`) as SIGKILL would, its connection to the store with it; false
  /// when it is dead already.
  bool crash(sim::World& world, std::unique_ptr<Node>& node, const std::string& id) {
    if (!node) {
      return false;
    }
    sever(id);
    world.crash(std::move(node));
    return true;
  }

 private:
  std::shared_ptr<store::MemoryStore> store_ = std::make_shared<store::MemoryStore>();
  std::map<std::string, std::shared_ptr<store::Store>> connections_;
};

/// Starts again every node that crashed (each waits out its predecessor's lease).
inline void restart_crashed(const std::vector<std::unique_ptr<Node>>& nodes,
                            const std::function<void(std::size_t)>& boot) {
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!nodes[i]) {
      boot(i);
    }
  }
}

/// Simulator tests log only when one seed is replayed (EMBER_SIM_SEED).
class QuietSimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level(std::getenv("EMBER_SIM_SEED") != nullptr ? LogLevel::info : LogLevel::off);
  }
  void TearDown() override { set_log_level(LogLevel::info); }
};

}  // namespace ember::testing
