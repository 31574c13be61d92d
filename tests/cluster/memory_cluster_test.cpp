// SPDX-License-Identifier: Apache-2.0
// Nodes of one process forming a cluster on an in-process MemoryStore instead of an etcd process:
// the same membership code, with coordinator faults made on demand and at once. No gRPC runs, so
// membership is checked under TSan here too.
#include <gtest/gtest.h>

#include <ember/ember.hpp>
#include <mutex>

#include "cluster/membership.hpp"
#include "cluster/store/memory_store.hpp"
#include "core/node_impl.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Result;
using ember::RoleChange;
using ember::Selector;
using ember::testing::wait_for;
namespace pb = ember::test;

class Leader : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcWho", [this](const pb::SumReq&) -> Result<pb::SumResp> {
      pb::SumResp out;
      out.set_sum(static_cast<std::int64_t>(epoch()));
      return out;
    });
  }
};

class MemoryCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ember::detail::install_store_factory(
        [store = store_](ember::detail::NodeImpl&) -> Result<std::shared_ptr<ember::store::Store>> {
          return std::shared_ptr<ember::store::Store>(store);
        });
  }
  void TearDown() override {
    for (auto& node : nodes_) {
      (void)node->stop();
    }
    nodes_.clear();
    ember::detail::install_store_factory(nullptr);
  }

  ember::Node& add_node(const std::string& id) {
    ember::NodeConfig c;
    c.node_id = id;
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "memory";
    c.cluster.secret = "s3cret";
    c.cluster.listen_host = "127.0.0.1";
    c.cluster.ttl = 2s;
    c.cluster.etcd_timeout = 1s;
    nodes_.push_back(std::make_unique<ember::Node>(std::move(c)));
    return *nodes_.back();
  }
  Leader* add_leader(ember::Node& node) {
    ember::ServiceConfig sc;
    sc.name = "leader";
    sc.primary_secondary = true;
    auto added = node.add_service(std::make_unique<Leader>(), sc);
    EXPECT_TRUE(added) << added.error().to_string();
    return added ? static_cast<Leader*>(*added) : nullptr;
  }
  /// The one master's epoch, or 0 while there is none or more than one.
  std::uint64_t sole_master_epoch() {
    std::uint64_t epoch = 0;
    int masters = 0;
    for (Leader* l : leaders_) {
      if (l->is_master()) {
        ++masters;
        epoch = l->epoch();
      }
    }
    return masters == 1 ? epoch : 0;
  }

  std::shared_ptr<ember::store::MemoryStore> store_ = std::make_shared<ember::store::MemoryStore>();
  std::vector<std::unique_ptr<ember::Node>> nodes_;
  std::vector<Leader*> leaders_;
};

TEST_F(MemoryCluster, OutagesAndWipesOfTheCoordinatorAreSurvivedWithEpochsAlwaysRising) {
  for (const char* id : {"a", "b"}) {
    auto& node = add_node(id);
    leaders_.push_back(add_leader(node));
    ASSERT_TRUE(node.start());
  }
  ASSERT_TRUE(wait_for([&] { return sole_master_epoch() != 0; }, 10s));
  std::uint64_t highest = sole_master_epoch();
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // The coordinator goes away: no master may act without it.
    store_->set_available(false);
    ASSERT_TRUE(wait_for(
        [&] {
          return std::none_of(leaders_.begin(), leaders_.end(),
                              [](Leader* l) { return l->is_master(); });
        },
        10s));
    store_->set_available(true);
    ASSERT_TRUE(wait_for([&] { return sole_master_epoch() > highest; }, 15s))
        << "epoch now " << sole_master_epoch() << ", highest before " << highest;
    highest = sole_master_epoch();
    // The coordinator comes back empty: revisions restart, epochs must not.
    store_->wipe();
    ASSERT_TRUE(wait_for([&] { return sole_master_epoch() > highest; }, 15s))
        << "epoch now " << sole_master_epoch() << ", highest before " << highest;
    highest = sole_master_epoch();
    // Each node sees the master again through discovery.
    for (auto& node : nodes_) {
      ASSERT_TRUE(wait_for(
          [&] { return ember::select(*node, Selector::name("leader")).size() == 1; }, 10s));
    }
  }
}

}  // namespace
