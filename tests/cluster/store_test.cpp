// SPDX-License-Identifier: Apache-2.0
// The coordinator's store, the same tests against both implementations: a real etcd started on a
// free loopback port, and the in-process MemoryStore (then the faults only it can make).
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "cluster/etcd/etcd_client.hpp"
#include "cluster/store/memory_store.hpp"
#include "support/etcd_server.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::store::Event;
using ember::store::MemoryStore;
using ember::store::Store;
using ember::testing::EtcdServer;
using ember::testing::wait_for;

enum class Kind { etcd, memory };

class Stores : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == Kind::etcd) {
      std::string why = server_.start();
      ASSERT_TRUE(why.empty()) << why;
      auto c = ember::etcd::Client::connect({{server_.endpoint()}, 2000ms});
      ASSERT_TRUE(c) << c.error().to_string();
      store_ = std::move(*c);
    } else {
      auto memory = std::make_unique<MemoryStore>();
      memory_ = memory.get();
      store_ = std::move(memory);
    }
  }
  void stop_store() {
    if (GetParam() == Kind::etcd) {
      server_.stop();
    } else {
      memory_->set_available(false);
    }
  }
  EtcdServer server_;
  MemoryStore* memory_ = nullptr;
  std::unique_ptr<Store> store_;
};

TEST_P(Stores, PutGetPrefixErase) {
  auto r1 = store_->put("/t/a", "1");
  ASSERT_TRUE(r1) << r1.error().to_string();
  ASSERT_TRUE(store_->put("/t/b", "2"));
  ASSERT_TRUE(store_->put("/u/c", "3"));
  auto one = store_->get("/t/a");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "1");
  EXPECT_GE(one->revision, *r1);
  auto prefix = store_->get_prefix("/t/");
  ASSERT_TRUE(prefix);
  EXPECT_EQ(prefix->kvs.size(), 2u);
  auto erased = store_->erase_prefix("/t/");
  ASSERT_TRUE(erased);
  EXPECT_EQ(*erased, 2);
  EXPECT_TRUE(store_->get_prefix("/t/")->kvs.empty());
  EXPECT_EQ(store_->get("/u/c")->kvs.size(), 1u);
}

TEST_P(Stores, RevokingALeaseDeletesItsKeys) {
  auto lease = store_->grant(10s);
  ASSERT_TRUE(lease) << lease.error().to_string();
  ASSERT_TRUE(store_->put("/l/k", "v", *lease));
  EXPECT_EQ(store_->get("/l/k")->kvs.at(0).lease, *lease);
  ASSERT_TRUE(store_->revoke(*lease));
  EXPECT_TRUE(store_->get("/l/k")->kvs.empty());
}

TEST_P(Stores, KeepAliveHoldsALeaseAndItsEndLetsItExpire) {
  auto lease = store_->grant(1s);
  ASSERT_TRUE(lease);
  ASSERT_TRUE(store_->put("/k/alive", "v", *lease));
  std::atomic<int> lost{0};
  auto keep = store_->keep_alive(*lease, 300ms, [&](const ember::Error&) { lost.fetch_add(1); });
  ASSERT_TRUE(keep);
  // Three TTLs later the key is still there because the lease is renewed.
  ASSERT_TRUE(wait_for([&] { return (*keep)->renewals() >= 8; }, 10s));
  EXPECT_EQ(store_->get("/k/alive")->kvs.size(), 1u);
  keep->reset();
  EXPECT_TRUE(wait_for([&] { return store_->get("/k/alive")->kvs.empty(); }, 5s));
  EXPECT_EQ(lost.load(), 0);  // destroying the keep-alive is not a loss
}

TEST_P(Stores, CreateIfAbsentElectsExactlyOneHolder) {
  auto a = store_->grant(10s);
  auto b = store_->grant(10s);
  ASSERT_TRUE(a && b);
  auto first = store_->create_if_absent("/m/group", "node-a", *a);
  auto second = store_->create_if_absent("/m/group", "node-b", *b);
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->value, "node-a");
  EXPECT_EQ(second->create_revision, first->create_revision);
  ASSERT_TRUE(store_->revoke(*a));  // the holder goes away
  auto third = store_->create_if_absent("/m/group", "node-b", *b);
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->created);
  EXPECT_GT(third->create_revision, first->create_revision);  // a later epoch
}

TEST_P(Stores, CompareAndSwapUnderALeaseAndAnEraseThatSparesAReplacement) {
  auto a = store_->grant(10s);
  auto b = store_->grant(10s);
  ASSERT_TRUE(a && b);
  // Two claims read the key absent; only the first write lands.
  auto mine = store_->put_if_unchanged("/s/alice", "gate-a", 0, *a);
  auto late = store_->put_if_unchanged("/s/alice", "gate-b", 0, *b);
  ASSERT_TRUE(mine && late);
  ASSERT_GT(*mine, 0);
  EXPECT_EQ(*late, 0);
  auto read = store_->get("/s/alice");
  ASSERT_TRUE(read);
  ASSERT_EQ(read->kvs.size(), 1u);
  EXPECT_EQ(read->kvs[0].value, "gate-a");
  EXPECT_EQ(read->kvs[0].mod_revision, *mine);
  EXPECT_EQ(read->kvs[0].lease, *a);
  // The second claim retries on what it read, and replaces the first under its own lease.
  auto theirs = store_->put_if_unchanged("/s/alice", "gate-b", *mine, *b);
  ASSERT_TRUE(theirs);
  ASSERT_GT(*theirs, *mine);
  // The first holder giving up its claim leaves the replacement alone.
  auto erased = store_->erase_if_unchanged("/s/alice", *mine);
  ASSERT_TRUE(erased);
  EXPECT_FALSE(*erased);
  read = store_->get("/s/alice");
  ASSERT_TRUE(read && read->kvs.size() == 1u);
  EXPECT_EQ(read->kvs[0].value, "gate-b");
  // The replacement goes with its lease; an unknown lease is refused.
  ASSERT_TRUE(store_->revoke(*b));
  read = store_->get("/s/alice");
  ASSERT_TRUE(read);
  EXPECT_TRUE(read->kvs.empty());
  auto orphan = store_->put_if_unchanged("/s/alice", "gate-c", 0, *b);
  EXPECT_FALSE(orphan);
  // The holder's own erase takes its key.
  auto again = store_->put_if_unchanged("/s/alice", "gate-a", 0, *a);
  ASSERT_TRUE(again && *again > 0);
  erased = store_->erase_if_unchanged("/s/alice", *again);
  ASSERT_TRUE(erased);
  EXPECT_TRUE(*erased);
  read = store_->get("/s/alice");
  ASSERT_TRUE(read);
  EXPECT_TRUE(read->kvs.empty());
}

TEST_P(Stores, AnExchangeReturnsWhatItReplacedSoEachClaimKnowsWhomItDisplaced) {
  auto a = store_->grant(10s);
  auto b = store_->grant(10s);
  ASSERT_TRUE(a && b);
  auto first = store_->exchange("/s/bob", "gate-a", *a);
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->previous);
  auto second = store_->exchange("/s/bob", "gate-b", *b);
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->previous);
  EXPECT_EQ(second->previous->value, "gate-a");
  EXPECT_EQ(second->previous->mod_revision, first->mod_revision);
  EXPECT_EQ(second->previous->lease, *a);
  EXPECT_GT(second->mod_revision, first->mod_revision);
  auto read = store_->get("/s/bob");
  ASSERT_TRUE(read && read->kvs.size() == 1u);
  EXPECT_EQ(read->kvs[0].mod_revision, second->mod_revision);
  EXPECT_EQ(read->kvs[0].lease, *b);
  // The displaced holder's release spares its successor; the key goes with the winner's lease.
  auto erased = store_->erase_if_unchanged("/s/bob", first->mod_revision);
  ASSERT_TRUE(erased);
  EXPECT_FALSE(*erased);
  ASSERT_TRUE(store_->revoke(*b));
  read = store_->get("/s/bob");
  ASSERT_TRUE(read);
  EXPECT_TRUE(read->kvs.empty());
  EXPECT_FALSE(store_->exchange("/s/bob", "gate-c", *b));  // a revoked lease is refused
}

TEST_P(Stores, WatchSeesPutsAndDeletesInOrderFromARevision) {
  auto start = store_->get_prefix("/w/");
  ASSERT_TRUE(start);
  std::mutex mu;
  std::vector<Event> seen;
  auto watch = store_->watch_prefix(
      "/w/", start->revision + 1,
      [&](std::vector<Event>&& events, std::int64_t) {
        std::lock_guard lock(mu);
        for (auto& e : events) {
          seen.push_back(std::move(e));
        }
      },
      [](const ember::Error&) {});
  ASSERT_TRUE(watch);
  ASSERT_TRUE(store_->put("/w/1", "a"));
  ASSERT_TRUE(store_->put("/w/2", "b"));
  ASSERT_TRUE(store_->put("/x/ignored", "c"));
  ASSERT_TRUE(store_->erase("/w/1"));
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

TEST_P(Stores, WhenTheStoreStopsWatchesAndKeepAlivesReportItAndCallsFailFast) {
  auto lease = store_->grant(5s);
  ASSERT_TRUE(lease);
  std::atomic<int> watch_ended{0};
  std::atomic<int> lease_lost{0};
  auto watch = store_->watch_prefix(
      "/s/", 0, [](std::vector<Event>&&, std::int64_t) {},
      [&](const ember::Error&) { watch_ended.fetch_add(1); });
  auto keep =
      store_->keep_alive(*lease, 200ms, [&](const ember::Error&) { lease_lost.fetch_add(1); });
  ASSERT_TRUE(watch && keep);
  stop_store();
  EXPECT_TRUE(wait_for([&] { return watch_ended.load() == 1 && lease_lost.load() == 1; }, 10s));
  auto t0 = std::chrono::steady_clock::now();
  auto r = store_->put("/s/x", "v");
  EXPECT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // bounded by the request timeout
}

INSTANTIATE_TEST_SUITE_P(Both, Stores, ::testing::Values(Kind::etcd, Kind::memory),
                         [](const auto& info) {
                           return std::string(info.param == Kind::etcd ? "etcd" : "memory");
                         });

}  // namespace
