// SPDX-License-Identifier: Apache-2.0
// Cluster events between nodes, for both cluster backends: "cluster" (Ember's transport, with
// subscriptions in a real etcd) and "nats" (a real nats-server). Both are started on free
// loopback ports. Deliveries are counted where they cross the node's boundary
// (NodeStats::events), so "a node without subscribers receives nothing" is measured.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>

#include "support/etcd_server.hpp"
#include "support/event_subscriber.hpp"
#include "support/nats_server.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::EventBackend;
using ember::EventScope;
using ember::testing::EtcdServer;
using ember::testing::event;
using ember::testing::NatsServer;
using ember::testing::Subscriber;
using ember::testing::wait_for;
namespace pb = ember::test;

std::uint64_t received(const ember::Node& node) {
  return node.stats().events.received;
}

class Events : public ::testing::TestWithParam<EventBackend> {
 protected:
  void SetUp() override {
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    if (GetParam() == EventBackend::nats) {
      why = nats_.start();
      ASSERT_TRUE(why.empty()) << why;
    }
  }
  void TearDown() override {
    for (auto& node : nodes_) {
      (void)node->stop();
    }
    nodes_.clear();
    nats_.stop();
    etcd_.stop();
  }

  ember::NodeConfig config(const std::string& id) {
    ember::NodeConfig c;
    c.node_id = id;
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "events";
    c.cluster.secret = "s3cret";
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = 2s;
    c.cluster.etcd_timeout = 2s;
    c.events.backend = GetParam();
    c.events.nats.endpoints = {nats_.url()};
    c.events.nats.reconnect_wait = 100ms;
    return c;
  }
  ember::Node& add_node(ember::NodeConfig c) {
    nodes_.push_back(std::make_unique<ember::Node>(std::move(c)));
    return *nodes_.back();
  }
  static Subscriber* add_subscriber(ember::Node& node, ember::EventType type, EventScope scope,
                                    const std::string& name = "listener") {
    ember::ServiceConfig sc;
    sc.name = name;
    auto added = node.add_service(std::make_unique<Subscriber>(type, scope), sc);
    EXPECT_TRUE(added) << added.error().to_string();
    return added ? static_cast<Subscriber*>(*added) : nullptr;
  }
  /// Publishes warm-up events until `sub` got one: the subscription has reached the publisher
  /// (its etcd watch, or the NATS server's interest).
  static bool until_subscribed(ember::Node& pub, ember::EventType type, EventScope scope,
                               Subscriber& sub) {
    return wait_for(
        [&] {
          (void)ember::publish(pub, type, event(0), {.scope = scope});
          return sub.got.load() >= 1;
        },
        10s);
  }

  EtcdServer etcd_;
  NatsServer nats_;
  std::vector<std::unique_ptr<ember::Node>> nodes_;
};

TEST_P(Events, ReachSubscribersOnOtherNodesByScopeInOrderAndOnlyThere) {
  constexpr ember::EventType kType = 42;
  auto& pub = add_node(config("pub"));
  ASSERT_TRUE(pub.start());
  auto& g = add_node(config("g"));
  auto* global = add_subscriber(g, kType, EventScope::global());
  ASSERT_TRUE(g.start());
  auto& z = add_node(config("z"));
  auto* zone3 = add_subscriber(z, kType, EventScope::server(3));
  ASSERT_TRUE(z.start());
  auto& idle = add_node(config("idle"));  // no subscriber: must receive nothing
  ASSERT_TRUE(idle.start());

  ASSERT_TRUE(until_subscribed(pub, kType, EventScope::global(), *global));
  ASSERT_TRUE(until_subscribed(pub, kType, EventScope::server(3), *zone3));
  // In order from one publisher, only to the matching scope.
  constexpr int kEvents = 100'000;
  for (int i = 1; i <= kEvents; ++i) {
    ASSERT_TRUE(ember::publish(pub, kType, event(i, true)));
  }
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE(ember::publish(pub, kType, event(i, true), {.scope = EventScope::server(3)}));
  }
  ASSERT_TRUE(wait_for([&] { return global->main.load() == kEvents; }, 120s))
      << global->main.load() << " dropped " << g.stats().events.dropped;
  EXPECT_EQ(global->out_of_order.load(), 0);
  ASSERT_TRUE(wait_for([&] { return zone3->main.load() == 100; }, 10s));
  EXPECT_EQ(zone3->out_of_order.load(), 0);
  // Scopes are separate channels across nodes too: g received exactly what its subscriber got,
  // and z nothing of the global stream.
  EXPECT_EQ(static_cast<std::uint64_t>(global->got.load()), received(g));
  EXPECT_EQ(static_cast<std::uint64_t>(zone3->got.load()), received(z));
  // Counted on the wire: the node without subscribers got no event at all.
  EXPECT_EQ(received(idle), 0u);
  EXPECT_EQ(pub.stats().events.send_failures, 0u);
  EXPECT_GE(pub.stats().events.published, static_cast<std::uint64_t>(kEvents + 100));
}

TEST_P(Events, ANodeThatSubscribesLaterStartsReceivingAndOneThatLeavesStopsGettingThem) {
  constexpr ember::EventType kType = 43;
  auto& pub = add_node(config("pub"));
  ASSERT_TRUE(pub.start());
  ASSERT_TRUE(ember::publish(pub, kType, event(1)));  // nobody anywhere: fine
  auto& late = add_node(config("late"));
  ASSERT_TRUE(late.start());
  auto* listener = add_subscriber(late, kType, EventScope::global());  // after start
  ASSERT_NE(listener, nullptr);
  ASSERT_TRUE(until_subscribed(pub, kType, EventScope::global(), *listener));
  // The subscriber leaves: once the publisher (or the NATS server) has seen that, nothing more
  // reaches the node.
  ASSERT_TRUE(late.stop_service("listener"));
  ASSERT_TRUE(wait_for(
      [&] {
        const auto before = received(late);
        (void)ember::publish(pub, kType, event(2));
        return !wait_for([&] { return received(late) != before; }, 300ms);
      },
      10s));
  // Subscribing again brings the events back.
  auto* again = add_subscriber(late, kType, EventScope::global(), "listener2");
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(until_subscribed(pub, kType, EventScope::global(), *again));
}

TEST_P(Events, TwoSubscribersOnOneNodeShareOneCopyOnTheWire) {
  constexpr ember::EventType kType = 44;
  auto& pub = add_node(config("pub"));
  ASSERT_TRUE(pub.start());
  auto& n = add_node(config("n"));
  auto* a = add_subscriber(n, kType, EventScope::global(), "a");
  auto* b = add_subscriber(n, kType, EventScope::global(), "b");
  ASSERT_TRUE(n.start());
  ASSERT_TRUE(until_subscribed(pub, kType, EventScope::global(), *a));
  ASSERT_TRUE(wait_for([&] { return b->got.load() >= 1; }, 5s));
  for (int i = 1; i <= 1000; ++i) {
    ASSERT_TRUE(ember::publish(pub, kType, event(i, true)));
  }
  ASSERT_TRUE(wait_for([&] { return a->main.load() == 1000 && b->main.load() == 1000; }, 20s));
  // One copy per node on the wire, fanned out locally (warm-up events included).
  EXPECT_TRUE(wait_for([&] { return a->got.load() == b->got.load(); }, 5s));
  EXPECT_EQ(received(n), static_cast<std::uint64_t>(a->got.load()));
}

INSTANTIATE_TEST_SUITE_P(Backends, Events,
                         ::testing::Values(EventBackend::cluster, EventBackend::nats),
                         ember::testing::backend_name);

}  // namespace
