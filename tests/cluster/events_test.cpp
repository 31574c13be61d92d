// SPDX-License-Identifier: Apache-2.0
// Cluster events between nodes, for both cluster backends: "cluster" (Ember's transport, with
// subscriptions in a real etcd) and "nats" (a real nats-server). Both are started on free
// loopback ports. Deliveries are counted where they cross the node's boundary
// (NodeStats::events), so "a node without subscribers receives nothing" is measured.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <ember/ember.hpp>

#include "support/etcd_server.hpp"
#include "support/nats_server.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::EventBackend;
using ember::EventScope;
using ember::testing::EtcdServer;
using ember::testing::NatsServer;
using ember::testing::wait_for;
namespace pb = ember::test;

/// Subscribes in on_init to one event type in one scope; records what arrives.
class Subscriber : public ember::Service {
 public:
  Subscriber(ember::EventType type, EventScope scope) : type_(type), scope_(scope) {}
  ember::Status on_init() override {
    auto sub = subscribe<pb::Echo>(type_, scope_, [this](const pb::Echo& e) {
      if (e.text() == "main") {  // the measured stream; warm-up events carry no text
        if (e.seq() != last_seq + 1) {
          out_of_order.fetch_add(1);
        }
        last_seq = e.seq();
        main.fetch_add(1);
      }
      got.fetch_add(1);
    });
    return sub ? ember::Status{} : ember::Status{sub.error()};
  }
  std::atomic<int> got{0};
  std::atomic<int> main{0};
  std::atomic<int> out_of_order{0};
  std::int64_t last_seq = 0;  // one lane: only its handler touches it

 private:
  ember::EventType type_;
  EventScope scope_;
};

pb::Echo event(std::int64_t seq, bool main = false) {
  pb::Echo e;
  e.set_seq(seq);
  if (main) {
    e.set_text("main");
  }
  return e;
}

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
                         [](const auto& info) {
                           return info.param == EventBackend::cluster ? std::string("cluster")
                                                                      : std::string("nats");
                         });

// --- NATS only ---------------------------------------------------------------------------------

class NatsEvents : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = nats_.start();
    ASSERT_TRUE(why.empty()) << why;
  }
  void TearDown() override {
    for (auto& node : nodes_) {
      (void)node->stop();
    }
    nodes_.clear();
    nats_.stop();
  }
  /// Without a ClusterConf: NATS alone carries the events.
  ember::NodeConfig config(const std::string& id) {
    ember::NodeConfig c;
    c.node_id = id;
    c.worker_threads = 2;
    c.events.backend = EventBackend::nats;
    c.events.nats.endpoints = {nats_.url()};
    c.events.nats.reconnect_wait = 100ms;
    c.events.nats.timeout = 1s;
    return c;
  }
  ember::Node& add_node(ember::NodeConfig c) {
    nodes_.push_back(std::make_unique<ember::Node>(std::move(c)));
    return *nodes_.back();
  }

  NatsServer nats_;
  std::vector<std::unique_ptr<ember::Node>> nodes_;
};

TEST_F(NatsEvents, WorkWithoutAClusterOnTheSeedsSubjects) {
  auto& pub = add_node(config("pub"));
  ASSERT_TRUE(pub.start());
  auto& sub = add_node(config("sub"));
  ember::ServiceConfig sc;
  sc.name = "listener";
  auto* zone = static_cast<Subscriber*>(
      *sub.add_service(std::make_unique<Subscriber>(7, EventScope::server(12)), sc));
  ASSERT_TRUE(sub.start());
  // A plain NATS client sees the subject the seed uses: event.server.<type>.<serverId>.
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, nats_.url().c_str()), NATS_OK);
  natsSubscription* plain = nullptr;
  ASSERT_EQ(natsConnection_SubscribeSync(&plain, nc, "event.server.7.12"), NATS_OK);
  ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);
  ASSERT_TRUE(wait_for(
      [&] {
        (void)ember::publish(pub, 7, event(0), {.scope = EventScope::server(12)});
        return zone->got.load() >= 1;
      },
      10s));
  natsMsg* msg = nullptr;
  EXPECT_EQ(natsSubscription_NextMsg(&msg, plain, 5000), NATS_OK);
  natsMsg_Destroy(msg);
  // Bytes that are not an event frame are counted and dropped; the node keeps serving.
  const auto errors = sub.stats().events.receive_errors;
  ASSERT_EQ(natsConnection_PublishString(nc, "event.server.7.12", "garbage"), NATS_OK);
  ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);
  EXPECT_TRUE(wait_for([&] { return sub.stats().events.receive_errors == errors + 1; }, 5s))
      << errors << " -> " << sub.stats().events.receive_errors;
  ASSERT_TRUE(ember::publish(pub, 7, event(1, true), {.scope = EventScope::server(12)}));
  EXPECT_TRUE(wait_for([&] { return zone->main.load() == 1; }, 5s));
  natsSubscription_Destroy(plain);
  natsConnection_Destroy(nc);
}

TEST_F(NatsEvents, SubscriptionsComeBackAfterTheServerRestartsAndPublishingNeverBlocks) {
  auto& pub = add_node(config("pub"));
  ASSERT_TRUE(pub.start());
  auto& sub = add_node(config("sub"));
  ember::ServiceConfig sc;
  sc.name = "listener";
  auto* listener = static_cast<Subscriber*>(
      *sub.add_service(std::make_unique<Subscriber>(8, EventScope::global()), sc));
  ASSERT_TRUE(sub.start());
  ASSERT_TRUE(wait_for(
      [&] {
        (void)ember::publish(pub, 8, event(0));
        return listener->got.load() >= 1;
      },
      10s));
  nats_.stop();
  // With the server gone, publish returns at once: events are buffered or counted as lost.
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(ember::publish(pub, 8, event(0)));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  ASSERT_TRUE(nats_.restart().empty());
  const int before = listener->got.load();
  EXPECT_TRUE(wait_for(
      [&] {
        (void)ember::publish(pub, 8, event(0));
        return listener->got.load() > before;
      },
      20s));
}

TEST_F(NatsEvents, StartFailsClearlyWhenNatsIsUnreachable) {
  auto c = config("a");
  c.events.nats.endpoints = {"nats://127.0.0.1:" + std::to_string(ember::testing::free_port())};
  c.events.nats.timeout = 300ms;
  auto& a = add_node(c);
  auto st = a.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("cannot reach NATS at nats://127.0.0.1:"), std::string::npos)
      << st.error().to_string();
  EXPECT_FALSE(a.running());
}

}  // namespace
