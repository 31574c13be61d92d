// A node in the test process, configured like node.yaml, called the way other services call it.
#include "greeter.hpp"

#include <gtest/gtest.h>

#include <ember/ember.hpp>
#include <ember/sim.hpp>

namespace {

ember::NodeConfig test_config() {
  auto config = ember::parse_node_config(R"(
NodeConf: {NodeId: greeter-test, WorkerThreads: 1}
ServiceConf:
  StartServices:
    - {ClassName: greeter::Greeter, ServiceName: greeter, Params: {greeting: Hi}}
)",
                                         "test config");
  EXPECT_TRUE(config) << config.error().to_string();
  return std::move(*config);
}

TEST(Greeter, GreetsByName) {
  ember::Node node(test_config());
  ASSERT_TRUE(node.start());
  auto greeter = ember::select(node, ember::Selector::name("greeter"));
  greeter::HelloReq req;
  req.set_name("Ada");
  auto first = greeter.call(greeter::kHello, req);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ(first->text(), "Hi, Ada!");
  auto second = greeter.call(greeter::kHello, req);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(second->greeted(), 2);
  EXPECT_TRUE(node.stop());
}

TEST(Greeter, RefusesAnEmptyName) {
  ember::Node node(test_config());
  ASSERT_TRUE(node.start());
  auto reply = ember::select(node, ember::Selector::name("greeter")).call(greeter::kHello, {});
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ember::Errc::invalid_argument);  // the handler's own code
  EXPECT_NE(reply.error().message().find("HelloReq.name is empty"), std::string::npos);
  EXPECT_TRUE(node.stop());
}

// The same node in the deterministic simulator: one thread, virtual time, and an order of
// execution drawn from the seed, so a failure under one seed replays exactly.
std::uint64_t greet_many(std::uint64_t seed) {
  ember::sim::World world(seed);  // before the node, which must stop first
  ember::Node node(test_config());
  EXPECT_TRUE(node.start());
  auto greeter = ember::select(node, ember::Selector::name("greeter"));
  for (int i = 0; i < 20; ++i) {
    greeter::HelloReq req;
    req.set_name("player" + std::to_string(world.uniform(5)));
    auto reply = greeter.call(greeter::kHello, req);
    EXPECT_TRUE(reply) << reply.error().to_string() << " (" << world.replay_hint() << ")";
    if (reply) {
      EXPECT_EQ(reply->greeted(), i + 1);
      world.record(reply->text());
    }
  }
  EXPECT_TRUE(node.stop());
  return world.trace_hash();
}

TEST(Greeter, CountsEveryGreetingUnderManySeeds) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    greet_many(seed);
  }
  EXPECT_EQ(greet_many(7), greet_many(7));  // a seed replays the same run
}

}  // namespace
