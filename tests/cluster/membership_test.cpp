// SPDX-License-Identifier: Apache-2.0
// Nodes joining a cluster through a real etcd (started on a free loopback port): discovery feeds
// every repository, calls cross nodes with the local API, a master/slave group elects one master
// and fails over, and etcd restarts are survived without restarting nodes. The multi-process
// version (SIGKILL) is cluster_process_test.
#include "cluster/membership.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>
#include <mutex>
#include <thread>

#include "core/node_impl.hpp"
#include "rpc/messaging.hpp"
#include "support/etcd_server.hpp"
#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::RoleChange;
using ember::Selector;
using ember::testing::EtcdServer;
using ember::testing::wait_for;
namespace pb = ember::test;

class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcSum", [this](const pb::SumReq& r) -> Result<pb::SumResp> {
      pb::SumResp out;
      out.set_sum(r.a() + r.b() + offset);
      return out;
    });
  }
  int offset = 0;
};

/// A master/slave group member that records its role changes.
class Leader : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcWho", [this](const pb::SumReq&) -> Result<pb::SumResp> {
      pb::SumResp out;
      out.set_sum(static_cast<std::int64_t>(epoch()));
      return out;
    });
  }
  void on_role_change(RoleChange change, std::uint64_t epoch) override {
    std::lock_guard lock(mu);
    changes.emplace_back(change, epoch);
  }
  std::vector<std::pair<RoleChange, std::uint64_t>> seen() {
    std::lock_guard lock(mu);
    return changes;
  }
  std::mutex mu;
  std::vector<std::pair<RoleChange, std::uint64_t>> changes;
};

class Cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
  }
  void TearDown() override {
    for (auto& node : nodes_) {
      (void)node->stop();
    }
    nodes_.clear();
    etcd_.stop();
  }

  ember::NodeConfig config(const std::string& id) {
    ember::NodeConfig c;
    c.node_id = id;
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "test";
    c.cluster.secret = "s3cret";
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = 2s;
    c.cluster.etcd_timeout = 2s;
    return c;
  }
  ember::Node& add_node(ember::NodeConfig c) {
    nodes_.push_back(std::make_unique<ember::Node>(std::move(c)));
    return *nodes_.back();
  }
  template <class S>
  S* add(ember::Node& node, std::string name, bool group = false) {
    ember::ServiceConfig sc;
    sc.name = std::move(name);
    sc.primary_secondary = group;
    auto added = node.add_service(std::make_unique<S>(), sc);
    EXPECT_TRUE(added) << added.error().to_string();
    return added ? static_cast<S*>(*added) : nullptr;
  }
  static ember::detail::Membership& membership(ember::Node& node) {
    return *ember::detail::Membership::of(ember::detail::NodeAccess::impl(node));
  }
  static std::size_t count(ember::Node& node, const std::string& name,
                           ember::Role role = ember::Role::master) {
    return ember::select(node, Selector::name(name).role(role)).size();
  }
  static pb::SumReq sum(int a, int b) {
    pb::SumReq r;
    r.set_a(a);
    r.set_b(b);
    return r;
  }

  EtcdServer etcd_;
  std::vector<std::unique_ptr<ember::Node>> nodes_;
};

TEST_F(Cluster, ServicesAreDiscoveredAndCalledAcrossNodes) {
  auto& a = add_node(config("a"));
  add<Calc>(a, "calc")->offset = 100;
  ASSERT_TRUE(a.start());
  auto& b = add_node(config("b"));
  ASSERT_TRUE(b.start());
  // b started after a: its initial read already holds a's calc.
  ASSERT_EQ(count(b, "calc"), 1u);
  auto r = ember::select(b, Selector::name("calc")).call<pb::SumResp>("RpcSum", sum(1, 2));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 103);

  // A service added later reaches b through the watch.
  auto& c = add_node(config("c"));
  add<Calc>(c, "calc")->offset = 200;
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(wait_for([&] { return count(b, "calc") == 2; }, 5s));
  // The counter follows the repository (updated right after it).
  EXPECT_TRUE(wait_for([&] { return membership(b).stats().remote_services == 2u; }, 5s));

  // Stopping a node removes its services at once (the lease is revoked, not left to expire).
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.stop());
  ASSERT_TRUE(wait_for([&] { return count(b, "calc") == 1; }, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST_F(Cluster, RecordsAreReadableJsonUnderTheDocumentedKeys) {
  auto& a = add_node(config("a"));
  add<Calc>(a, "calc");
  ASSERT_TRUE(a.start());
  auto client = ember::etcd::Client::connect({{etcd_.endpoint()}, 2000ms});
  ASSERT_TRUE(client);
  auto got = (*client)->get_prefix("/ember/test/services/");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].key, "/ember/test/services/0.calc..a");
  EXPECT_NE(got->kvs[0].value.find("\"name\":\"calc\""), std::string::npos) << got->kvs[0].value;
  EXPECT_NE(got->kvs[0].value.find("\"address\":\"127.0.0.1:"), std::string::npos);
  EXPECT_NE(got->kvs[0].lease, 0);
}

TEST_F(Cluster, PrivateServicesAreNotPublished) {
  class Quiet : public ember::Service {};
  auto& a = add_node(config("a"));
  add<Quiet>(a, "quiet");
  ASSERT_TRUE(a.start());
  auto& b = add_node(config("b"));
  ASSERT_TRUE(b.start());
  EXPECT_EQ(count(a, "quiet"), 1u);  // visible locally
  EXPECT_EQ(count(b, "quiet"), 0u);
}

TEST_F(Cluster, AGroupElectsOneMasterAndFailsOverWithAHigherEpoch) {
  auto& a = add_node(config("a"));
  Leader* la = add<Leader>(a, "leader", /*group=*/true);
  ASSERT_TRUE(a.start());
  auto& b = add_node(config("b"));
  Leader* lb = add<Leader>(b, "leader", /*group=*/true);
  ASSERT_TRUE(b.start());
  auto& client = add_node(config("client"));
  ASSERT_TRUE(client.start());

  ASSERT_TRUE(wait_for([&] { return la->is_master() != lb->is_master(); }, 5s));
  Leader* master = la->is_master() ? la : lb;
  Leader* slave = master == la ? lb : la;
  ember::Node& master_node = master == la ? a : b;
  const std::uint64_t first_epoch = master->epoch();
  EXPECT_GT(first_epoch, 0u);
  ASSERT_TRUE(wait_for([&] { return !master->seen().empty() && !slave->seen().empty(); }, 5s));
  EXPECT_EQ(master->seen().front(), std::pair(RoleChange::become_master, first_epoch));
  EXPECT_EQ(slave->seen().front().first, RoleChange::become_slave);

  // Selectors see both instances but address the master.
  ASSERT_TRUE(wait_for([&] { return count(client, "leader", ember::Role::any) == 2; }, 5s));
  ASSERT_TRUE(wait_for([&] { return count(client, "leader") == 1; }, 5s)) << [&] {
    std::string out;
    for (const auto& p :
         ember::select(client, Selector::name("leader").role(ember::Role::any)).targets()) {
      out += p.to_string() + (p.master ? " master " : " slave ") + std::to_string(p.epoch) + "\n";
    }
    return out;
  }();
  auto who = ember::select(client, Selector::name("leader")).call<pb::SumResp>("RpcWho", sum(0, 0));
  ASSERT_TRUE(who) << who.error().to_string();
  EXPECT_EQ(static_cast<std::uint64_t>(who->sum()), first_epoch);

  // The master's node leaves: the slave takes over at once (the master key is handed back).
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(master_node.stop());
  ASSERT_TRUE(wait_for([&] { return slave->is_master(); }, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_GT(slave->epoch(), first_epoch);
  ASSERT_TRUE(wait_for(
      [&] {
        auto r = ember::select(client, Selector::name("leader"))
                     .call<pb::SumResp>("RpcWho", sum(0, 0), {.timeout = 500ms});
        return r && static_cast<std::uint64_t>(r->sum()) == slave->epoch();
      },
      5s));
  ASSERT_TRUE(wait_for([&] { return slave->seen().size() == 2; }, 5s));
  EXPECT_EQ(slave->seen()[1], std::pair(RoleChange::become_master, slave->epoch()));
}

TEST_F(Cluster, NodesSurviveAnEtcdRestartAndRegisterAgain) {
  auto& a = add_node(config("a"));
  add<Calc>(a, "calc");
  Leader* leader = add<Leader>(a, "leader", /*group=*/true);
  ASSERT_TRUE(a.start());
  auto& b = add_node(config("b"));
  ASSERT_TRUE(b.start());
  ASSERT_TRUE(wait_for([&] { return count(b, "calc") == 1 && leader->is_master(); }, 5s));

  etcd_.stop(/*wipe=*/true);  // etcd gone with its data: every registration must be redone
  // The master gives its role up before its lease could have expired.
  ASSERT_TRUE(wait_for([&] { return !leader->is_master(); }, 5s));
  // Meanwhile b serves from its cached repository.
  auto r = ember::select(b, Selector::name("calc")).call<pb::SumResp>("RpcSum", sum(2, 2));
  ASSERT_TRUE(r) << r.error().to_string();

  std::string why = etcd_.start(/*fresh=*/false);
  ASSERT_TRUE(why.empty()) << why;
  ASSERT_TRUE(wait_for([&] { return membership(a).stats().connected; }, 15s));
  ASSERT_TRUE(wait_for([&] { return leader->is_master(); }, 10s));
  auto client = ember::etcd::Client::connect({{etcd_.endpoint()}, 2000ms});
  ASSERT_TRUE(client);
  ASSERT_TRUE(wait_for(
      [&] {
        auto got = (*client)->get_prefix("/ember/test/services/");
        return got && got->kvs.size() == 2;
      },
      10s));
  EXPECT_GE(membership(a).stats().sessions, 2u);
  ASSERT_TRUE(wait_for([&] { return count(b, "leader") == 1; }, 10s));
}

TEST_F(Cluster, AMasterCutOffFromEtcdGivesUpItsRoleBeforeItsLeaseCouldExpire) {
  auto& a = add_node(config("a"));
  Leader* leader = add<Leader>(a, "leader", /*group=*/true);
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(wait_for([&] { return leader->is_master(); }, 5s));
  const auto first_epoch = leader->epoch();
  etcd_.pause();  // hung, not gone: no connection closes, requests just never return
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for([&] { return !leader->is_master(); }, 5s));
  // etcd cannot expire the lease before one TTL (2 s) after its last renewal.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  // The role flag flips first; the service hears of it through its mailbox just after.
  EXPECT_TRUE(wait_for(
      [&] {
        auto seen = leader->seen();
        return !seen.empty() && seen.back().first == RoleChange::lose_master;
      },
      5s));
  etcd_.resume();
  ASSERT_TRUE(wait_for([&] { return leader->is_master(); }, 20s));
  EXPECT_GT(leader->epoch(), first_epoch);
}

TEST_F(Cluster, StartFailsClearlyWithoutEtcd) {
  auto c = config("a");
  c.cluster.etcd_endpoints = {"127.0.0.1:" + std::to_string(ember::testing::free_port())};
  c.cluster.etcd_timeout = 500ms;
  auto& a = add_node(c);
  auto st = a.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("cannot reach etcd at 127.0.0.1:"), std::string::npos)
      << st.error().to_string();
}

}  // namespace

namespace {

TEST_F(Cluster, ASecondNodeWithALiveIdIsRefusedNamingTheHolder) {
  auto& first = add_node(config("same"));
  add<Calc>(first, "calc");
  ASSERT_TRUE(first.start());
  const std::string holder = membership(first).link().address();
  const auto t0 = std::chrono::steady_clock::now();
  ember::Node second(config("same"));
  auto started = second.start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), Errc::already_exists) << started.error().to_string();
  EXPECT_NE(started.error().message().find("node id 'same'"), std::string::npos)
      << started.error().message();
  EXPECT_NE(started.error().message().find(holder), std::string::npos) << started.error().message();
  // It waited for a crashed predecessor's lease (TTL + 1 s), not longer.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s + 3s);
  // The holder is unaffected.
  auto& caller = add_node(config("caller"));
  ASSERT_TRUE(caller.start());
  ASSERT_TRUE(wait_for([&] { return count(caller, "calc") == 1; }, 5s));
  EXPECT_TRUE(ember::select(caller, Selector::name("calc")).call<pb::SumResp>("RpcSum", sum(1, 2)));
}

TEST_F(Cluster, AnIdFreedByAStoppedNodeCanBeTakenAtOnce) {
  {
    ember::Node first(config("reused"));
    ASSERT_TRUE(first.start());
    ASSERT_TRUE(first.stop());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto& again = add_node(config("reused"));
  ASSERT_TRUE(again.start());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
}

TEST_F(Cluster, AMasterWhoseKeyIsDeletedStepsDownAndWinsAgainAboveItsEpoch) {
  auto& node = add_node(config("m1"));
  auto* leader = add<Leader>(node, "leader", true);
  ASSERT_TRUE(node.start());
  ASSERT_TRUE(wait_for([&] { return leader->is_master(); }, 5s));
  const std::uint64_t first_epoch = leader->epoch();
  auto client = ember::etcd::Client::connect({{etcd_.endpoint()}, 2000ms});
  ASSERT_TRUE(client);
  ASSERT_TRUE((*client)->erase_prefix("/ember/test/masters/"));
  ASSERT_TRUE(wait_for(
      [&] {
        auto seen = leader->seen();
        return std::count_if(seen.begin(), seen.end(),
                             [](const auto& change) {
                               return change.first == RoleChange::lose_master;
                             }) == 1 &&
               leader->is_master();
      },
      5s));
  EXPECT_GT(leader->epoch(), first_epoch);
}

TEST_F(Cluster, AMasterBelowAnEpochSeenBeforeIsDeposed) {
  // As after an etcd wipe, when a node that had seen nothing won before the others raised the
  // epoch base: records are written by hand, the watching node is real.
  auto& watcher = add_node(config("watcher"));
  ASSERT_TRUE(watcher.start());
  auto client = ember::etcd::Client::connect({{etcd_.endpoint()}, 2000ms});
  ASSERT_TRUE(client);
  auto record = [](const std::string& node, std::uint64_t epoch) {
    return R"({"node_id":")" + node + R"(","name":"kv","id":"","type":"","server_id":0,)" +
           R"("version":0,"master":true,"epoch":)" + std::to_string(epoch) +
           R"(,"address":"127.0.0.1:9"})";
  };
  const std::string master_key = "/ember/test/masters/kv..0";
  ASSERT_TRUE((*client)->put(master_key, "0.kv..old"));
  ASSERT_TRUE((*client)->put("/ember/test/services/0.kv..old", record("old", 50)));
  ASSERT_TRUE(wait_for([&] { return count(watcher, "kv") == 1; }, 5s));
  // The "wipe": everything goes, a newcomer wins with a low epoch.
  ASSERT_TRUE((*client)->erase_prefix("/ember/test/"));
  ASSERT_TRUE(wait_for([&] { return count(watcher, "kv", ember::Role::any) == 0; }, 5s));
  ASSERT_TRUE((*client)->put(master_key, "0.kv..new"));
  ASSERT_TRUE((*client)->put("/ember/test/services/0.kv..new", record("new", 7)));
  ASSERT_TRUE(wait_for([&] { return membership(watcher).stats().depositions == 1; }, 5s));
  EXPECT_TRUE((*client)->get(master_key)->kvs.empty());
}

TEST_F(Cluster, WaitsForAServiceOnAnotherNodeEndWhenItIsDiscovered) {
  class Waiter : public ember::Service {};
  auto& b = add_node(config("b"));
  auto* waiter = add<Waiter>(b, "waiter");
  ASSERT_TRUE(b.start());
  // The service's form: armed before the other node exists, it calls through the Bus it gets.
  // Shared: the callbacks may outlive this scope if an assertion ends the test early.
  auto total = std::make_shared<std::atomic<std::int64_t>>(-1);
  auto called_back = std::make_shared<std::atomic<bool>>(false);
  Result<ember::WaitHandle> armed = ember::Error{};
  ASSERT_TRUE(ember::testing::run_in(b, "waiter", [&] {
    armed = waiter->when_available(
        Selector::name("calc"),
        [total, called_back](Result<ember::Bus> bus) {
          *called_back = true;
          if (!bus) {
            return;
          }
          (void)bus->async_call<pb::SumResp>(
              "RpcSum", sum(20, 3), [total](Result<pb::SumResp> r) { *total = r ? r->sum() : -2; });
        },
        20s);
  }));
  ASSERT_TRUE(armed) << armed.error().to_string();

  auto& a = add_node(config("a"));
  add<Calc>(a, "calc")->offset = 100;
  std::thread starter([&] {
    std::this_thread::sleep_for(200ms);
    EXPECT_TRUE(a.start());
  });
  // The blocking form, from outside any service.
  const auto t0 = std::chrono::steady_clock::now();
  auto bus = ember::wait_for(b, Selector::name("calc"), 20s);
  const auto waited = std::chrono::steady_clock::now() - t0;
  starter.join();
  ASSERT_TRUE(bus) << bus.error().to_string();
  EXPECT_LT(waited, 10s);
  auto r = bus->call<pb::SumResp>("RpcSum", sum(1, 2));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 103);
  ASSERT_TRUE(wait_for([&] { return total->load() == 123; }, 5s)) << total->load();
  EXPECT_TRUE(called_back->load());

  // And the timeout across the cluster: nothing named "ghost" anywhere.
  auto none = ember::wait_for(b, Selector::name("ghost"), 100ms);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Errc::timeout);
}

}  // namespace
