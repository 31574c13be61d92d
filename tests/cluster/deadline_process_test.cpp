// SPDX-License-Identifier: Apache-2.0
// A node process paused with SIGSTOP while requests wait for it, in its mailbox and in its socket
// buffer, then resumed after their deadlines passed: none of their handlers runs, their callers
// got timeout, and the node serves new requests. A real etcd and a node inside this test process
// drive it (see cluster_process_test.cpp).
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "support/etcd_server.hpp"
#include "support/node_process.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ember::Errc;
using ember::Result;
using ember::Selector;
using ember::testing::EtcdServer;
using ember::testing::NodeProcess;
using ember::testing::wait_for;
namespace pb = ember::test;

constexpr auto kTimeout = 1s;  // of every request that must expire
constexpr auto kPause = 3s;    // longer than kTimeout and than the 2 s lease TTL
constexpr auto kTtl = 2s;

/// Makes async calls from a service of the test's node and records their outcomes.
class Driver : public ember::Service {
 public:
  void ask(int n) {
    for (int i = 0; i < n; ++i) {
      auto h = select(Selector::name("counter"))
                   .async_call<ember::NoReply>("RpcAdd", pb::Echo{},
                                               [this](Result<ember::NoReply> r) {
                                                 {
                                                   std::lock_guard lock(mu);
                                                   codes.push_back(r ? Errc::ok : r.error().code());
                                                 }
                                                 callbacks.fetch_add(1);
                                               },
                                               {.timeout = kTimeout});
      EXPECT_TRUE(h) << h.error().to_string();
    }
  }
  std::atomic<int> callbacks{0};
  std::mutex mu;
  std::vector<Errc> codes;
};

class DeadlineProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    const std::string config = (dir_ / "p1.yaml").string();
    std::ofstream(config) << node_yaml("p1");
    why = proc_.start("p1", config, (dir_ / "p1.log").string());
    ASSERT_TRUE(why.empty()) << why;

    ember::NodeConfig c;
    c.node_id = "t";
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "deadline";
    c.cluster.secret = "s3cret";
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = kTtl;
    node_ = std::make_unique<ember::Node>(c);
    ember::ServiceConfig driver;
    driver.name = "driver";
    driver_ = static_cast<Driver*>(*node_->add_service(std::make_unique<Driver>(), driver));
    ASSERT_TRUE(node_->start());
    ASSERT_TRUE(wait_for(
        [&] {
          return ember::select(*node_, Selector::name("counter")).size() == 1 &&
                 ember::select(*node_, Selector::name("counter_ctl")).size() == 1;
        },
        20s))
        << proc_.log_text();
  }
  void TearDown() override {
    if (node_) {
      (void)node_->stop();
    }
    proc_.stop();
    if (HasFailure()) {
      std::cerr << "----- p1 -----\n" << proc_.log_text();
    }
    etcd_.stop();
  }

  std::string node_yaml(const std::string& id) const {
    return ember::testing::cluster_node_yaml(id, "deadline", etcd_.endpoint()) +
           "ServiceConf:\n"
           "  StartServices:\n"
           "    - {ClassName: Counter, ServiceName: counter, WorkerConf: {WorkerNum: 1}}\n"
           "    - {ClassName: CounterControl, ServiceName: counter_ctl}\n";
  }

  EtcdServer etcd_;
  ember::testing::ScratchDir dir_{"ember-deadline"};
  NodeProcess proc_;
  std::unique_ptr<ember::Node> node_;
  Driver* driver_ = nullptr;
};

TEST_F(DeadlineProcess, RequestsThatExpiredWhileTheNodeWasPausedNeverRun) {
  // Buses taken now keep their targets: p1 loses its lease while paused and leaves the
  // repository until it registers again, but its address does not change.
  const auto counter = ember::select(*node_, Selector::name("counter"));
  const auto control = ember::select(*node_, Selector::name("counter_ctl"));
  auto status = [&] {
    auto s = control.call<pb::CounterStatus>("RpcStatus", pb::Echo{}, {.timeout = 5s});
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? *s : pb::CounterStatus{};
  };
  const pb::CounterStatus before = status();  // also opens the connection to p1
  ASSERT_EQ(before.expired(), 0u);

  // The counter's lane is held: what follows waits in its mailbox.
  ASSERT_TRUE(counter.send("RpcHold", pb::Echo{}));
  ASSERT_TRUE(wait_for([&] { return status().holding(); }));
  constexpr int kQueuedCalls = 4;
  constexpr int kQueuedSends = 4;
  ASSERT_TRUE(node_->post("driver", [this] { driver_->ask(kQueuedCalls); }));
  for (int i = 0; i < kQueuedSends; ++i) {
    ASSERT_TRUE(counter.send("RpcAdd", pb::Echo{}, {.timeout = kTimeout}));
  }
  ASSERT_TRUE(wait_for([&] { return status().queued() == 1 + kQueuedCalls + kQueuedSends; }, 5s));

  // Paused: what is sent now waits in p1's socket buffer, where a relative timeout cannot count
  // the time it waits.
  proc_.pause();
  const auto paused_at = Clock::now();
  constexpr int kBufferedCalls = 2;
  constexpr int kBufferedSends = 4;
  std::vector<Result<ember::NoReply>> buffered(kBufferedCalls,
                                               ember::Error{Errc::internal, "unset"});
  {
    std::vector<std::jthread> callers;
    for (int i = 0; i < kBufferedCalls; ++i) {
      callers.emplace_back([&, i] {
        buffered[i] = counter.call<ember::NoReply>("RpcAdd", pb::Echo{}, {.timeout = kTimeout});
      });
    }
    for (int i = 0; i < kBufferedSends; ++i) {
      ASSERT_TRUE(counter.send("RpcAdd", pb::Echo{}, {.timeout = kTimeout}));
    }
  }  // every blocking caller has its outcome
  for (const auto& r : buffered) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Errc::timeout) << r.error().to_string();
  }
  ASSERT_TRUE(wait_for([&] { return driver_->callbacks.load() == kQueuedCalls; }, 5s));
  {
    std::lock_guard lock(driver_->mu);
    for (Errc code : driver_->codes) {
      EXPECT_EQ(code, Errc::timeout) << ember::errc_name(code);
    }
  }
  // The fault itself: the node stays frozen well past every deadline (and its lease).
  std::this_thread::sleep_until(paused_at + kPause);
  proc_.resume();

  ASSERT_TRUE(control.send("RpcRelease", pb::Echo{}));
  constexpr int kExpiring = kQueuedCalls + kQueuedSends + kBufferedCalls + kBufferedSends;
  pb::CounterStatus after;
  ASSERT_TRUE(wait_for(
      [&] {
        after = status();
        return after.expired() >= kExpiring && after.queued() == 0;
      },
      10s))
      << "expired " << after.expired() << ", queued " << after.queued() << ", adds "
      << after.adds();
  EXPECT_EQ(after.adds(), before.adds()) << "handlers of expired requests ran";
  EXPECT_EQ(after.expired(), static_cast<std::uint64_t>(kExpiring));
  EXPECT_EQ(after.counter_expired(), static_cast<std::uint64_t>(kExpiring));

  // A new request after the resume runs.
  auto fresh = counter.call<ember::NoReply>("RpcAdd", pb::Echo{}, {.timeout = 5s});
  ASSERT_TRUE(fresh) << fresh.error().to_string();
  EXPECT_EQ(status().adds(), before.adds() + 1);
  // One summary line, not one per dropped request.
  const std::string log = proc_.log_text();
  EXPECT_NE(log.find("expired in the queue"), std::string::npos) << log;
  EXPECT_EQ(log.find("expired in the queue"), log.rfind("expired in the queue")) << log;
}

}  // namespace
