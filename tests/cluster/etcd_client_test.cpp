// SPDX-License-Identifier: Apache-2.0
// The etcd client against a real etcd started on a free loopback port.
#include "cluster/etcd/etcd_client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "support/etcd_server.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::etcd::Client;
using ember::etcd::Event;
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

TEST_F(Etcd, PutGetPrefixErase) {
  auto r1 = client_->put("/t/a", "1");
  ASSERT_TRUE(r1) << r1.error().to_string();
  ASSERT_TRUE(client_->put("/t/b", "2"));
  ASSERT_TRUE(client_->put("/u/c", "3"));
  auto one = client_->get("/t/a");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "1");
  EXPECT_GE(one->revision, *r1);
  auto prefix = client_->get_prefix("/t/");
  ASSERT_TRUE(prefix);
  EXPECT_EQ(prefix->kvs.size(), 2u);
  auto erased = client_->erase_prefix("/t/");
  ASSERT_TRUE(erased);
  EXPECT_EQ(*erased, 2);
  EXPECT_TRUE(client_->get_prefix("/t/")->kvs.empty());
  EXPECT_EQ(client_->get("/u/c")->kvs.size(), 1u);
}

TEST_F(Etcd, RevokingALeaseDeletesItsKeys) {
  auto lease = client_->grant(10s);
  ASSERT_TRUE(lease) << lease.error().to_string();
  ASSERT_TRUE(client_->put("/l/k", "v", *lease));
  EXPECT_EQ(client_->get("/l/k")->kvs.at(0).lease, *lease);
  ASSERT_TRUE(client_->revoke(*lease));
  EXPECT_TRUE(client_->get("/l/k")->kvs.empty());
}

TEST_F(Etcd, KeepAliveHoldsALeaseAndItsEndLetsItExpire) {
  auto lease = client_->grant(1s);
  ASSERT_TRUE(lease);
  ASSERT_TRUE(client_->put("/k/alive", "v", *lease));
  std::atomic<int> lost{0};
  auto keep = client_->keep_alive(*lease, 300ms, [&](const ember::Error&) { lost.fetch_add(1); });
  ASSERT_TRUE(keep);
  // Three TTLs later the key is still there because the lease is renewed.
  ASSERT_TRUE(wait_for([&] { return (*keep)->renewals() >= 8; }, 10s));
  EXPECT_EQ(client_->get("/k/alive")->kvs.size(), 1u);
  keep->reset();
  EXPECT_TRUE(wait_for([&] { return client_->get("/k/alive")->kvs.empty(); }, 5s));
  EXPECT_EQ(lost.load(), 0);  // destroying the keep-alive is not a loss
}

TEST_F(Etcd, CreateIfAbsentElectsExactlyOneHolder) {
  auto a = client_->grant(10s);
  auto b = client_->grant(10s);
  ASSERT_TRUE(a && b);
  auto first = client_->create_if_absent("/m/group", "node-a", *a);
  auto second = client_->create_if_absent("/m/group", "node-b", *b);
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->value, "node-a");
  EXPECT_EQ(second->create_revision, first->create_revision);
  ASSERT_TRUE(client_->revoke(*a));  // the holder goes away
  auto third = client_->create_if_absent("/m/group", "node-b", *b);
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->created);
  EXPECT_GT(third->create_revision, first->create_revision);  // a later epoch
}

TEST_F(Etcd, WatchSeesPutsAndDeletesInOrderFromARevision) {
  auto start = client_->get_prefix("/w/");
  ASSERT_TRUE(start);
  std::mutex mu;
  std::vector<Event> seen;
  auto watch = client_->watch_prefix(
      "/w/", start->revision + 1,
      [&](std::vector<Event>&& events, std::int64_t) {
        std::lock_guard lock(mu);
        for (auto& e : events) {
          seen.push_back(std::move(e));
        }
      },
      [](const ember::Error&) {});
  ASSERT_TRUE(watch);
  ASSERT_TRUE(client_->put("/w/1", "a"));
  ASSERT_TRUE(client_->put("/w/2", "b"));
  ASSERT_TRUE(client_->put("/x/ignored", "c"));
  ASSERT_TRUE(client_->erase("/w/1"));
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(mu);
    return seen.size() >= 3;
  }));
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].kv.key, "/w/1");
  EXPECT_EQ(seen[0].type, Event::Type::put);
  EXPECT_EQ(seen[1].kv.key, "/w/2");
  EXPECT_EQ(seen[2].kv.key, "/w/1");
  EXPECT_EQ(seen[2].type, Event::Type::erase);
}

TEST_F(Etcd, WhenEtcdStopsWatchesAndKeepAlivesReportItAndCallsFailFast) {
  auto lease = client_->grant(5s);
  ASSERT_TRUE(lease);
  std::atomic<int> watch_ended{0};
  std::atomic<int> lease_lost{0};
  auto watch = client_->watch_prefix(
      "/s/", 0, [](std::vector<Event>&&, std::int64_t) {},
      [&](const ember::Error&) { watch_ended.fetch_add(1); });
  auto keep =
      client_->keep_alive(*lease, 200ms, [&](const ember::Error&) { lease_lost.fetch_add(1); });
  ASSERT_TRUE(watch && keep);
  server_.stop();
  EXPECT_TRUE(wait_for([&] { return watch_ended.load() == 1 && lease_lost.load() == 1; }, 10s));
  auto t0 = std::chrono::steady_clock::now();
  auto r = client_->put("/s/x", "v");
  EXPECT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // bounded by the request timeout
}

TEST_F(Etcd, TheClientWorksAgainAfterEtcdRestarts) {
  ASSERT_TRUE(client_->put("/r/before", "1"));
  std::string why = server_.restart();
  ASSERT_TRUE(why.empty()) << why;
  EXPECT_TRUE(wait_for([&] { return client_->put("/r/after", "2").has_value(); }, 10s));
  EXPECT_EQ(client_->get("/r/before")->kvs.size(), 1u);  // data survived the restart
}

}  // namespace
