// SPDX-License-Identifier: Apache-2.0
// The etcd client against a real etcd started on a free loopback port: connecting and
// reconnecting (what every store does is in store_test.cpp, against both stores).
#include "cluster/etcd/etcd_client.hpp"

#include <gtest/gtest.h>

#include "support/etcd_server.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::etcd::Client;
using ember::testing::EtcdServer;
using ember::testing::wait_for;

class Etcd : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = server_.start();
    ASSERT_TRUE(why.empty()) << why;
    auto c = Client::connect({{server_.endpoint()}, 2000ms});
    ASSERT_TRUE(c) << c.error().to_string();
    client_ = std::move(*c);
  }
  EtcdServer server_;
  std::unique_ptr<Client> client_;
};

TEST(EtcdPrefix, EndOfRange) {
  EXPECT_EQ(ember::etcd::prefix_end("/ember/"), "/ember0");
  EXPECT_EQ(ember::etcd::prefix_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(ember::etcd::prefix_end(""), std::string(1, '\0'));
}

TEST(EtcdConnect, NoServerIsNodeUnreachableInBoundedTime) {
  auto t0 = std::chrono::steady_clock::now();
  auto c = Client::connect({{"127.0.0.1:" + std::to_string(ember::testing::free_port())}, 300ms});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Errc::node_unreachable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(Etcd, TheClientWorksAgainAfterEtcdRestarts) {
  ASSERT_TRUE(client_->put("/r/before", "1"));
  std::string why = server_.restart();
  ASSERT_TRUE(why.empty()) << why;
  EXPECT_TRUE(wait_for([&] { return client_->put("/r/after", "2").has_value(); }, 10s));
  EXPECT_EQ(client_->get("/r/before")->kvs.size(), 1u);  // data survived the restart
}

}  // namespace
