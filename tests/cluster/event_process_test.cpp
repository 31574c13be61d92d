// SPDX-License-Identifier: Apache-2.0
// Cluster events across node processes (ember_test_node), for both backends, with a real etcd
// and (for "nats") a real nats-server: global and zone-scoped delivery, 100,000 events in order,
// a subscriber node killed with SIGKILL while the publisher goes on, and a node that joins late.
#include <gtest/gtest.h>
#include <unistd.h>

#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>

#include "support/etcd_server.hpp"
#include "support/event_subscriber.hpp"
#include "support/nats_server.hpp"
#include "support/node_process.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ember::EventBackend;
using ember::EventScope;
using ember::Selector;
using ember::testing::EtcdServer;
using ember::testing::event;
using ember::testing::NatsServer;
using ember::testing::NodeProcess;
using ember::testing::wait_for;
namespace pb = ember::test;

constexpr ember::EventType kType = 50;
constexpr int kZone = 5;

class EventProcesses : public ::testing::TestWithParam<EventBackend> {
 protected:
  void SetUp() override {
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    if (GetParam() == EventBackend::nats) {
      why = nats_.start();
      ASSERT_TRUE(why.empty()) << why;
    }
    // p1 and p2 subscribe globally, p3 only to zone 5.
    ASSERT_TRUE(spawn("p1", "").empty());
    ASSERT_TRUE(spawn("p2", "").empty());
    ASSERT_TRUE(spawn("p3", std::to_string(kZone)).empty());
    node_ = std::make_unique<ember::Node>(config());
    ASSERT_TRUE(node_->start());
    ASSERT_TRUE(wait_for([&] { return listeners() == 3; }, 20s)) << logs();
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
    nats_.stop();
    etcd_.stop();
  }

  std::string backend_yaml() const {
    if (GetParam() == EventBackend::nats) {
      return "EventBusConf: {Backend: nats, NatsConf: {Endpoints: [" + nats_.url() +
             "], ReconnectWait: 100ms}}\n";
    }
    return "EventBusConf: {Backend: cluster}\n";
  }
  std::string spawn(const std::string& id, const std::string& zone) {
    const std::string config = (dir_ / (id + ".yaml")).string();
    std::ofstream(config) << "NodeConf: {NodeId: " << id
                          << ", WorkerThreads: 2, ShutdownTimeout: 2s}\n"
                             "SystemLogger: {Level: info}\n"
                             "ClusterConf:\n"
                             "  Name: events\n"
                             "  Secret: s3cret\n"
                             "  ETCDConf: {Endpoints: ["
                          << etcd_.endpoint()
                          << "]}\n"
                             "  DiscoveryConf: {TTL: 2s}\n"
                          << backend_yaml()
                          << "ServiceConf:\n"
                             "  StartServices:\n"
                             "    - {ClassName: Listener, ServiceName: listener, ServiceId: "
                          << id << ", Params: {EventType: " << kType
                          << (zone.empty() ? "" : ", ServerId: " + zone) << "}}\n";
    auto& proc = procs_.emplace_back(std::make_unique<NodeProcess>());
    return proc->start(id, config, (dir_ / (id + ".log")).string());
  }
  ember::NodeConfig config() const {
    ember::NodeConfig c;
    c.node_id = "t";
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "events";
    c.cluster.secret = "s3cret";
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = 2s;
    c.events.backend = GetParam();
    c.events.nats.endpoints = {nats_.url()};
    return c;
  }
  std::size_t listeners() const { return ember::select(*node_, Selector::name("listener")).size(); }
  pb::Tally tally(const std::string& id) const {
    auto r = ember::select(*node_, Selector::name("listener").id(id))
                 .call<pb::Tally>("RpcTally", pb::Echo{}, {.timeout = 2s});
    return r ? *r : pb::Tally{};
  }
  /// Publishes warm-up events (global and zone 5) until every listener in `ids` got one.
  bool warm_up(const std::vector<std::string>& ids) {
    return wait_for(
        [&] {
          (void)ember::publish(*node_, kType, event(0));
          (void)ember::publish(*node_, kType, event(0), {.scope = EventScope::server(kZone)});
          for (const auto& id : ids) {
            const pb::Tally t = tally(id);
            if (t.wire_received() == 0) {
              return false;
            }
          }
          return true;
        },
        20s);
  }
  NodeProcess& proc(const std::string& id) {
    for (auto& p : procs_) {
      if (p->id() == id) {
        return *p;
      }
    }
    throw std::runtime_error("no process " + id);
  }
  std::string logs() const { return ember::testing::logs_of(procs_); }

  EtcdServer etcd_;
  NatsServer nats_;
  ember::testing::ScratchDir dir_{"ember-events"};
  std::vector<std::unique_ptr<NodeProcess>> procs_;
  std::unique_ptr<ember::Node> node_;
};

TEST_P(EventProcesses, AKilledSubscriberDoesNotStallThePublisherAndALateNodeStartsReceiving) {
  ASSERT_TRUE(warm_up({"p1", "p2", "p3"})) << logs();
  proc("p2").kill_hard();

  // 100,000 global events and 100 for zone 5 right after the kill: publish never waits for
  // the dead node (its connection, its channel keys until the TTL, or NATS), and the living
  // subscribers get everything, in order.
  constexpr int kEvents = 100'000;
  const auto started = Clock::now();
  for (int i = 1; i <= kEvents; ++i) {
    ASSERT_TRUE(ember::publish(*node_, kType, event(i, true)));
  }
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE(
        ember::publish(*node_, kType, event(i, true), {.scope = EventScope::server(kZone)}));
  }
  const auto publishing = Clock::now() - started;
  EXPECT_LT(publishing, 20s) << "publishing stalled";
  ASSERT_TRUE(wait_for([&] { return tally("p1").received() == kEvents; }, 120s))
      << tally("p1").received();
  EXPECT_EQ(tally("p1").out_of_order(), 0);
  ASSERT_TRUE(wait_for([&] { return tally("p3").received() == 100; }, 20s));
  const pb::Tally zone = tally("p3");
  EXPECT_EQ(zone.out_of_order(), 0);
  // Counted on the wire: p3 subscribed to zone 5 only and received no global event at all.
  EXPECT_EQ(zone.wire_received(), zone.scoped_received());
  std::cerr << "published " << kEvents + 100 << " events in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(publishing).count()
            << " ms; publisher stats: sent " << node_->stats().events.sent << ", send failures "
            << node_->stats().events.send_failures << "\n";

  // A node that joins now starts receiving without anyone restarting.
  ASSERT_TRUE(spawn("p4", "").empty());
  ASSERT_TRUE(wait_for(
      [&] { return ember::select(*node_, Selector::name("listener").id("p4")).size() == 1; }, 20s));
  ASSERT_TRUE(warm_up({"p4"})) << logs();
  for (int i = 1; i <= 1000; ++i) {
    ASSERT_TRUE(ember::publish(*node_, kType, event(kEvents + i, true)));
  }
  ASSERT_TRUE(wait_for([&] { return tally("p4").received() == 1000; }, 30s))
      << tally("p4").received();
  EXPECT_TRUE(wait_for([&] { return tally("p1").received() == kEvents + 1000; }, 30s));
  EXPECT_EQ(tally("p1").out_of_order(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, EventProcesses,
                         ::testing::Values(EventBackend::cluster, EventBackend::nats),
                         ember::testing::backend_name);

}  // namespace
