// A node in the test process, configured like node.yaml, called the way other services call it.
#include "greeter.hpp"

#include <gtest/gtest.h>

#include <ember/ember.hpp>

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

}  // namespace
