// SPDX-License-Identifier: Apache-2.0
// Faults only the in-process store can make (the shared semantics are in store_test.cpp, against
// etcd too). No gRPC runs here, so these run under TSan as well.
#include "cluster/store/memory_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::store::Event;
using ember::store::MemoryStore;
using ember::store::Store;
using ember::testing::wait_for;

class MemoryStoreFaults : public ::testing::Test {
 protected:
  MemoryStore store_;
};

TEST_F(MemoryStoreFaults, ALeaseNobodyRenewsExpiresByItsTtlAndItsKeysGo) {
  auto lease = store_.grant(1s);
  ASSERT_TRUE(lease);
  ASSERT_TRUE(store_.put("/e/k", "v", *lease));
  std::mutex mu;
  std::vector<Event> seen;
  auto watch = store_.watch_prefix(
      "/e/", 0,
      [&](std::vector<Event>&& events, std::int64_t) {
        std::lock_guard lock(mu);
        seen.insert(seen.end(), events.begin(), events.end());
      },
      [](const ember::Error&) {});
  ASSERT_TRUE(watch);
  ASSERT_TRUE(wait_for([&] { return store_.get("/e/k")->kvs.empty(); }, 5s));
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(mu);
    return !seen.empty();
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen.at(0).type, Event::Type::erase);
  EXPECT_EQ(seen.at(0).kv.key, "/e/k");
  EXPECT_EQ(store_.put("/e/k2", "v", *lease).error().code(), Errc::not_found);  // lease gone
}

TEST_F(MemoryStoreFaults, ExpiringALeaseTellsItsKeepAliveOnce) {
  auto lease = store_.grant(30s);
  ASSERT_TRUE(lease);
  ASSERT_TRUE(store_.put("/x/k", "v", *lease));
  std::atomic<int> lost{0};
  auto keep = store_.keep_alive(*lease, 50ms, [&](const ember::Error&) { lost.fetch_add(1); });
  ASSERT_TRUE(keep);
  store_.expire(*lease);
  ASSERT_TRUE(wait_for([&] { return lost.load() == 1; }));
  EXPECT_TRUE(store_.get("/x/k")->kvs.empty());
  EXPECT_EQ(lost.load(), 1);
}

TEST_F(MemoryStoreFaults, AnOutageLongerThanATtlLosesTheLeaseAndCallsWorkAgainAfter) {
  auto lease = store_.grant(1s);
  ASSERT_TRUE(lease);
  ASSERT_TRUE(store_.put("/o/k", "v", *lease));
  std::atomic<int> lost{0};
  auto keep = store_.keep_alive(*lease, 100ms, [&](const ember::Error&) { lost.fetch_add(1); });
  ASSERT_TRUE(keep);
  store_.set_available(false);
  ASSERT_TRUE(wait_for([&] { return lost.load() == 1; }));
  EXPECT_EQ(store_.get("/o/k").error().code(), Errc::node_unreachable);
  // Nothing renews the lease while the store is away: after its TTL it is gone.
  ASSERT_TRUE(wait_for(
      [&] {
        store_.set_available(true);
        bool gone = store_.get("/o/k")->kvs.empty();
        if (!gone) {
          store_.set_available(false);
        }
        return gone;
      },
      5s));
  EXPECT_TRUE(store_.put("/o/again", "v"));
}

TEST_F(MemoryStoreFaults, AWipeLosesEverythingRestartsRevisionsAndEndsWatches) {
  ASSERT_TRUE(store_.put("/w/a", "1"));
  ASSERT_TRUE(store_.put("/w/b", "2"));
  const std::int64_t before = store_.get("/w/a")->revision;
  std::atomic<int> ended{0};
  auto watch = store_.watch_prefix(
      "/w/", 0, [](std::vector<Event>&&, std::int64_t) {},
      [&](const ember::Error& e) {
        EXPECT_EQ(e.code(), Errc::node_unreachable);
        ended.fetch_add(1);
      });
  ASSERT_TRUE(watch);
  store_.wipe();
  ASSERT_TRUE(wait_for([&] { return ended.load() == 1; }));
  auto after = store_.get_prefix("/w/");
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->kvs.empty());
  EXPECT_LT(after->revision, before);
}

TEST_F(MemoryStoreFaults, ACallbackMayDestroyItsOwnWatch) {
  std::unique_ptr<Store::Watch> watch;
  std::atomic<int> calls{0};
  auto made = store_.watch_prefix(
      "/d/", 0,
      [&](std::vector<Event>&&, std::int64_t) {
        watch.reset();  // on the store thread: must not wait for itself
        // After the reset: the test's thread sees the count, then destroys `watch`, and the
        // count is what orders the two.
        calls.fetch_add(1);
      },
      [](const ember::Error&) {});
  ASSERT_TRUE(made);
  watch = std::move(*made);
  ASSERT_TRUE(store_.put("/d/1", "x"));
  ASSERT_TRUE(wait_for([&] { return calls.load() == 1; }));
  ASSERT_TRUE(store_.put("/d/2", "y"));
  ASSERT_TRUE(store_.put("/e/sync", "z"));  // the store thread has moved on
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
