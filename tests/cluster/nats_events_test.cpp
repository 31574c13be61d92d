// SPDX-License-Identifier: Apache-2.0
// The "nats" event backend without a cluster (no etcd): the seed's subjects as a plain NATS
// client sees them, hostile bytes on a subject, a server restart, and an unreachable server.
// No gRPC runs here, so this binary is also run under TSan.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <ember/ember.hpp>

#include "support/event_subscriber.hpp"
#include "support/nats_server.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::EventBackend;
using ember::EventScope;
using ember::testing::event;
using ember::testing::NatsServer;
using ember::testing::Subscriber;
using ember::testing::wait_for;

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
