// SPDX-License-Identifier: Apache-2.0
// Three node processes (ember_test_node) and a real etcd, driven by a node inside this test
// process: discovery across processes, every verb at both priorities, SIGKILL of a node, master
// failover, an etcd restart, hostile bytes on the transport port, and a million ordered Sends.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>

#include "cluster/membership.hpp"
#include "core/node_impl.hpp"
#include "rpc/messaging.hpp"
#include "support/etcd_server.hpp"
#include "support/node_process.hpp"
#include "support/process.hpp"
#include "support/raw_socket.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ember::Errc;
using ember::Priority;
using ember::Result;
using ember::Selector;
using ember::testing::closed_by_peer;
using ember::testing::connect_to;
using ember::testing::EtcdServer;
using ember::testing::NodeProcess;
using ember::testing::wait_for;
namespace pb = ember::test;

constexpr auto kTtl = 2s;

/// Receives async-call callbacks on a service of the test's node.
class Driver : public ember::Service {
 public:
  std::atomic<int> callbacks{0};
  std::atomic<int> good{0};
};

class ClusterProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    for (int i = 1; i <= 3; ++i) {
      const std::string id = "p" + std::to_string(i);
      const std::string config = (dir_ / (id + ".yaml")).string();
      std::ofstream(config) << node_yaml(id);
      auto& proc = procs_.emplace_back(std::make_unique<NodeProcess>());
      why = proc->start(id, config, (dir_ / (id + ".log")).string());
      ASSERT_TRUE(why.empty()) << why;
    }
    ember::ServiceConfig driver;
    driver.name = "driver";
    node_ = std::make_unique<ember::Node>(config("t"));
    driver_ = static_cast<Driver*>(*node_->add_service(std::make_unique<Driver>(), driver));
    ASSERT_TRUE(node_->start());
    ASSERT_TRUE(wait_for([&] { return echoes() == 3 && leaders(ember::Role::any) == 3; }, 20s))
        << logs();
  }
  void TearDown() override {
    if (node_) {
      (void)node_->stop();
    }
    for (auto& p : procs_) {
      p->stop();
    }
    if (HasFailure()) {
      std::cerr << logs();
    }
    etcd_.stop();
  }

  std::string node_yaml(const std::string& id) const {
    return ember::testing::cluster_node_yaml(id, "procs", etcd_.endpoint()) +
           "ServiceConf:\n"
           "  StartServices:\n"
           "    - {ClassName: Echo, ServiceName: echo, ServiceId: " +
           id +
           ", WorkerConf: {WorkerNum: 4}}\n"
           "    - {ClassName: Leader, ServiceName: leader, IsPrimarySecondaryMode: true}\n";
  }
  ember::NodeConfig config(const std::string& id, const std::string& secret = "s3cret") const {
    ember::NodeConfig c;
    c.node_id = id;
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "procs";
    c.cluster.secret = secret;
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = kTtl;
    return c;
  }
  std::size_t echoes() const { return ember::select(*node_, Selector::name("echo")).size(); }
  std::size_t leaders(ember::Role role = ember::Role::master) const {
    return ember::select(*node_, Selector::name("leader").role(role)).size();
  }
  ember::Bus echo(const std::string& id) const {
    return ember::select(*node_, Selector::name("echo").id(id));
  }
  std::string logs() const { return ember::testing::logs_of(procs_); }
  NodeProcess& proc(const std::string& id) {
    for (auto& p : procs_) {
      if (p->id() == id) {
        return *p;
      }
    }
    throw std::runtime_error("no process " + id);
  }
  static pb::SumReq sum(int a, int b) {
    pb::SumReq r;
    r.set_a(a);
    r.set_b(b);
    return r;
  }
  /// The address p1 advertises, from its record in etcd.
  std::string address_of(const std::string& id) const {
    for (const auto& t : ember::select(*node_, Selector::name("echo").id(id)).targets()) {
      return t.address;
    }
    return {};
  }

  EtcdServer etcd_;
  ember::testing::ScratchDir dir_{"ember-procs"};
  std::vector<std::unique_ptr<NodeProcess>> procs_;
  std::unique_ptr<ember::Node> node_;
  Driver* driver_ = nullptr;
};

TEST_F(ClusterProcesses, EveryVerbAtBothPrioritiesReachesEveryNode) {
  for (const std::string id : {"p1", "p2", "p3"}) {
    auto bus = echo(id);
    ASSERT_EQ(bus.size(), 1u);
    for (Priority priority : {Priority::user, Priority::system}) {
      auto r = bus.call<pb::SumResp>("RpcSum", sum(40, 2), {.priority = priority});
      ASSERT_TRUE(r) << id << ": " << r.error().to_string();
      EXPECT_EQ(r->sum(), 42);
      auto who = bus.call<pb::Who>("RpcWho", pb::Echo{}, {.priority = priority});
      ASSERT_TRUE(who) << who.error().to_string();
      EXPECT_EQ(who->node(), id);
      EXPECT_EQ(who->master(), priority == Priority::system);  // the priority crossed the wire
      for (int i = 1; i <= 10; ++i) {
        pb::Echo e;
        e.set_seq(i + (priority == Priority::system ? 100 : 0));
        e.set_key(priority == Priority::system ? 1 : 2);
        ASSERT_TRUE(bus.send("RpcPush", e,
                             {.priority = priority, .key = ember::DispatchKey::from_int(e.key())}));
      }
    }
    ASSERT_TRUE(node_->post("driver", [this, id] {
      auto handle =
          driver_->select(Selector::name("echo").id(id))
              .async_call<pb::SumResp>("RpcSum", sum(1, 1), [this](Result<pb::SumResp> r) {
                if (r && r->sum() == 2) {
                  driver_->good.fetch_add(1);
                }
                driver_->callbacks.fetch_add(1);
              });
      EXPECT_TRUE(handle);
    }));
    ASSERT_TRUE(wait_for(
        [&] {
          auto tally = bus.call<pb::Tally>("RpcTally", pb::Echo{});
          return tally && tally->received() == 20;
        },
        10s));
    auto tally = bus.call<pb::Tally>("RpcTally", pb::Echo{});
    ASSERT_TRUE(tally);
    EXPECT_EQ(tally->system_received(), 10);
    EXPECT_EQ(tally->out_of_order(), 0);
  }
  ASSERT_TRUE(wait_for([&] { return driver_->callbacks.load() == 3; }, 10s));
  EXPECT_EQ(driver_->good.load(), 3);
}

TEST_F(ClusterProcesses, AKilledNodeLeavesWithinTtlAndCallsToItFailFast) {
  auto bus = echo("p3");
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcSum", sum(1, 1)));
  const auto killed = Clock::now();
  proc("p3").kill_hard();
  // Calls still routed to it fail at once, not after their timeout.
  auto t0 = Clock::now();
  auto r = bus.call<pb::SumResp>("RpcSum", sum(1, 1), {.timeout = 10s});
  ASSERT_FALSE(r);
  // unavailable once this node saw the connection close (nothing was sent); node_unreachable
  // when the call was written before it did.
  EXPECT_TRUE(r.error().code() == Errc::unavailable || r.error().code() == Errc::node_unreachable)
      << r.error().to_string();
  EXPECT_LT(Clock::now() - t0, 2s);
  ASSERT_TRUE(wait_for([&] { return echoes() == 2; }, 10s));
  const auto gone = Clock::now() - killed;
  EXPECT_LE(gone, kTtl + 1s) << "took "
                             << std::chrono::duration_cast<std::chrono::milliseconds>(gone).count()
                             << " ms";
  EXPECT_EQ(echo("p3").size(), 0u);
  // The others are unaffected.
  EXPECT_TRUE(echo("p1").call<pb::SumResp>("RpcSum", sum(1, 1)));
}

TEST_F(ClusterProcesses, KillingTheMasterHandsTheRoleOnWithAHigherEpoch) {
  auto leader = ember::select(*node_, Selector::name("leader"));
  ASSERT_TRUE(wait_for([&] { return leaders() == 1; }, 10s));
  auto first = ember::select(*node_, Selector::name("leader")).call<pb::Who>("RpcWho", pb::Echo{});
  ASSERT_TRUE(first) << first.error().to_string();
  ASSERT_TRUE(first->master());
  const auto killed = Clock::now();
  proc(first->node()).kill_hard();
  Result<pb::Who> next = ember::Error{Errc::internal, "none"};
  ASSERT_TRUE(wait_for(
      [&] {
        next = ember::select(*node_, Selector::name("leader"))
                   .call<pb::Who>("RpcWho", pb::Echo{}, {.timeout = 200ms});
        return next && next->node() != first->node() && next->master();
      },
      10s));
  const auto took = Clock::now() - killed;
  EXPECT_LE(took, kTtl + 1s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                             << " ms";
  EXPECT_GT(next->epoch(), first->epoch());
  ASSERT_TRUE(wait_for([&] { return leaders(ember::Role::any) == 2 && leaders() == 1; }, 10s));
}

TEST_F(ClusterProcesses, NodesRegisterAgainAfterEtcdRestarts) {
  auto& membership = *ember::detail::Membership::of(ember::detail::NodeAccess::impl(*node_));
  const auto sessions = membership.stats().sessions;
  std::string why = etcd_.restart();
  ASSERT_TRUE(why.empty()) << why;
  ASSERT_TRUE(wait_for([&] { return membership.stats().sessions > sessions; }, 15s));
  ASSERT_TRUE(wait_for([&] { return membership.stats().connected; }, 15s));
  // Every process registered again under a new lease: their records and one master are back.
  auto client = ember::etcd::Client::connect({{etcd_.endpoint()}, 2000ms});
  ASSERT_TRUE(client);
  ASSERT_TRUE(wait_for(
      [&] {
        auto got = (*client)->get_prefix("/ember/procs/services/");
        auto masters = (*client)->get_prefix("/ember/procs/masters/");
        return got && got->kvs.size() == 6 && masters && masters->kvs.size() == 1;
      },
      15s))
      << logs();
  ASSERT_TRUE(wait_for([&] { return echoes() == 3 && leaders() == 1; }, 10s));
  for (const std::string id : {"p1", "p2", "p3"}) {
    EXPECT_TRUE(proc(id).alive());
    EXPECT_TRUE(echo(id).call<pb::SumResp>("RpcSum", sum(1, 1)));
  }
}

TEST_F(ClusterProcesses, ASecondProcessWithALiveNodeIdExitsNamingTheHolder) {
  const std::string holder = address_of("p1");
  ASSERT_FALSE(holder.empty());
  auto& twin = procs_.emplace_back(std::make_unique<NodeProcess>());
  ASSERT_EQ(twin->start("p1-twin", (dir_ / "p1.yaml").string(), (dir_ / "p1-twin.log").string()),
            "");
  // It waits for a crashed predecessor's lease at most TTL + 1 s, then gives up.
  ASSERT_TRUE(wait_for([&] { return !twin->alive(); }, kTtl + 10s)) << twin->log_text();
  const std::string log = twin->log_text();
  EXPECT_NE(log.find("node id 'p1' is in use by a live node at " + holder), std::string::npos)
      << log;
  EXPECT_TRUE(proc("p1").alive());
  EXPECT_TRUE(echo("p1").call<pb::SumResp>("RpcSum", sum(1, 1)));
}

TEST_F(ClusterProcesses, HostileBytesAndAWrongSecretAreRefusedAndTheNodeKeepsServing) {
  const std::string address = address_of("p1");
  ASSERT_FALSE(address.empty());
  {  // garbage
    const int fd = connect_to(address);
    ASSERT_GE(fd, 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_GT(::send(fd, junk, sizeof junk, MSG_NOSIGNAL), 0);
    EXPECT_TRUE(closed_by_peer(fd));
    ::close(fd);
  }
  {  // a frame announcing 2 GiB
    const int fd = connect_to(address);
    ASSERT_GE(fd, 0);
    const unsigned char header[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
    ASSERT_GT(::send(fd, header, sizeof header, MSG_NOSIGNAL), 0);
    EXPECT_TRUE(closed_by_peer(fd));
    ::close(fd);
  }
  {  // a truncated frame, then the connection just ends
    const int fd = connect_to(address);
    ASSERT_GE(fd, 0);
    const unsigned char header[] = {0, 0, 0, 100, 1, 2, 3};
    ASSERT_GT(::send(fd, header, sizeof header, MSG_NOSIGNAL), 0);
    ::close(fd);
  }
  {  // a node that does not know the secret cannot call in
    ember::Node intruder(config("intruder", "wrong"));
    ASSERT_TRUE(intruder.start());
    ASSERT_TRUE(wait_for(
        [&] { return ember::select(intruder, Selector::name("echo").id("p1")).size() == 1; }, 10s));
    auto r = ember::select(intruder, Selector::name("echo").id("p1"))
                 .call<pb::SumResp>("RpcSum", sum(1, 1), {.timeout = 3s});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Errc::node_unreachable) << r.error().to_string();
    ASSERT_TRUE(intruder.stop());
  }
  auto r = echo("p1").call<pb::SumResp>("RpcSum", sum(2, 3));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 5);
  EXPECT_TRUE(proc("p1").alive());
  // The first refusal is logged with its reason; the others from the same address are only
  // counted until their window ends (10 s), so they add no line here.
  const std::string log = proc("p1").log_text();
  EXPECT_NE(log.find("transport p1: refused a connection from 127.0.0.1: bad frame (frame of "),
            std::string::npos)
      << log;
  std::size_t lines = 0;
  for (auto at = log.find("refused a connection"); at != std::string::npos;
       at = log.find("refused a connection", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;
}

TEST_F(ClusterProcesses, AMillionSendsArriveAllAndInOrderPerKey) {
  constexpr int kSends = 1'000'000;
  constexpr int kKeys = 8;
  auto bus = echo("p1");
  ASSERT_EQ(bus.size(), 1u);
  pb::Echo e;
  const auto t0 = Clock::now();
  for (int i = 0; i < kSends; ++i) {
    e.set_key(static_cast<std::uint64_t>(i % kKeys));
    e.set_seq(i / kKeys + 1);
    ASSERT_TRUE(bus.send(
        "RpcPush", e, {.key = ember::DispatchKey::from_int(static_cast<std::uint64_t>(i % kKeys))}))
        << i;
  }
  Result<pb::Tally> tally = ember::Error{Errc::internal, "none"};
  ASSERT_TRUE(wait_for(
      [&] {
        tally = bus.call<pb::Tally>("RpcTally", pb::Echo{});
        return tally && tally->received() == kSends;
      },
      240s))
      << (tally ? std::to_string(tally->received()) : tally.error().to_string());
  const auto secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::cout << kSends << " sends delivered in " << secs << " s\n";
  EXPECT_EQ(tally->out_of_order(), 0);
}

}  // namespace
