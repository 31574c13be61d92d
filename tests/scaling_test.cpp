// SPDX-License-Identifier: Apache-2.0
// Autoscaling on a running node: the scaler follows real load to Max and back to Min, keeps
// per-key order and every message while lanes change under traffic, and reports what it did.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>
#include <ember/scaling.hpp>
#include <thread>
#include <vector>

#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::testing::Gate;
using ember::testing::wait_for;

class Elastic : public ember::Service {};
EMBER_REGISTER_SERVICE(Elastic);

ember::NodeConfig config_with(const std::string& worker_conf) {
  auto config = ember::parse_node_config(
      "NodeConf:\n  WorkerThreads: 2\nServiceConf:\n  StartServices:\n    - ClassName: Elastic\n"
      "      WorkerConf: " +
          worker_conf + "\n",
      "node.yaml");
  EXPECT_TRUE(config) << (config ? "" : config.error().message());
  return config ? *config : ember::NodeConfig{};
}

/// Votes what the test tells it to: the scaler's mechanics without depending on measurements.
std::atomic<int> g_scripted_vote{0};
std::atomic<bool> g_alternate{false};

class Scripted final : public ember::ScalingStrategy {
 public:
  ember::ScaleVerdict evaluate(const ember::ScalingSample& s) override {
    if (g_alternate.load()) {
      // Up to Max, then down to Min, and again: the lane count changes at every evaluation.
      if (s.lanes >= s.max_lanes) {
        going_up_ = false;
      } else if (s.lanes <= s.min_lanes) {
        going_up_ = true;
      }
      return {going_up_ ? ember::ScaleVote::grow : ember::ScaleVote::shrink, "alternating"};
    }
    const int v = g_scripted_vote.load();
    if (v == 99) {
      throw std::runtime_error("scripted failure");
    }
    return {static_cast<ember::ScaleVote>(v), "scripted"};
  }

 private:
  bool going_up_ = true;
};

const bool g_registered = [] {
  (void)ember::register_scaling_strategy(
      "scripted",
      [](const ember::ScalingStrategyConfig& c)
          -> ember::Result<std::unique_ptr<ember::ScalingStrategy>> {
        ember::StrategyParams p(c);
        if (auto st = p.finish(); !st) {
          return st.error();
        }
        return std::unique_ptr<ember::ScalingStrategy>(std::make_unique<Scripted>());
      });
  return true;
}();

TEST(Scaling, QueueLengthDrivesAServiceToMaxUnderLoadAndBackToMinWhenIdle) {
  ember::Node node(config_with(
      "{WorkerNum: 1, MaxWorkerNum: 4, Scaling: {Min: 1, Max: 4, Interval: 20ms, Cooldown: 0s, "
      "Hysteresis: 2, Strategy: {Name: queue_length, Params: {High: 10, Low: 1}}}}"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("Elastic");
  ASSERT_NE(svc, nullptr);
  ASSERT_EQ(svc->lane_count(), 1);

  // A backlog of slow handlers (1 ms each, like a blocking store call) on 2 worker threads: it
  // takes a second or more to drain, so queue_length sees it and grows the service to Max, and
  // each grow hands the waiting messages to the new lanes at once.
  constexpr int kMessages = 2000;
  auto done = std::make_shared<std::atomic<int>>(0);
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(node.post("Elastic", [done] {
      std::this_thread::sleep_for(1ms);
      done->fetch_add(1);
    }));
  }
  ASSERT_TRUE(wait_for([&] { return svc->lane_count() == 4; }, 10s))
      << "lanes " << svc->lane_count() << ", " << svc->scaling().last_decision;
  EXPECT_GT(kMessages - done->load(), 400) << "the backlog must still be there at Max";
  ember::ScalingStatus up = svc->scaling();
  EXPECT_TRUE(up.enabled);
  EXPECT_EQ(up.grows, 3u);  // GrowStep 1: 1 -> 2 -> 3 -> 4
  EXPECT_EQ(up.shrinks, 0u);
  EXPECT_NE(up.last_decision.find("lanes 3 -> 4 (grow, 2 votes in a row): queue_length"),
            std::string::npos)
      << up.last_decision;

  ASSERT_TRUE(wait_for([&] { return done->load() == kMessages; }, 20s));
  ASSERT_TRUE(wait_for([&] { return svc->lane_count() == 1; }, 10s))
      << "lanes " << svc->lane_count() << ", " << svc->scaling().last_decision;
  ember::ScalingStatus down = svc->scaling();
  EXPECT_EQ(down.grows, 3u);
  EXPECT_EQ(down.shrinks, 3u);
  EXPECT_NE(down.last_decision.find("lanes 2 -> 1 (shrink, 2 votes in a row)"), std::string::npos)
      << down.last_decision;
  ember::NodeStats stats = node.stats();
  EXPECT_EQ(stats.scaling.services, 1u);
  EXPECT_EQ(stats.scaling.grows, 3u);
  EXPECT_EQ(stats.scaling.shrinks, 3u);
  EXPECT_GE(stats.scaling.evaluations, 6u * 2);  // hysteresis 2: two evaluations per change
  ASSERT_TRUE(node.stop());
  EXPECT_EQ(node.stats().scaling.services, 0u);
}

TEST(Scaling, KeyedMessagesKeepTheirOrderAndNoneIsLostWhileLanesChange) {
  g_alternate = true;
  ember::testing::ScopeExit reset([] { g_alternate = false; });
  ember::Node node(config_with(
      "{WorkerNum: 1, MaxWorkerNum: 8, Scaling: {Min: 1, Max: 8, Interval: 10ms, Cooldown: 0s, "
      "Hysteresis: 1, GrowStep: 3, ShrinkStep: 2, Strategy: {Name: scripted}}}"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("Elastic");
  ASSERT_NE(svc, nullptr);

  constexpr int kKeys = 64;
  constexpr int kProducers = 2;
  // Plain (non-atomic) per-key state: if two lanes ever ran one key at once, TSan would say so.
  std::vector<std::uint64_t> last_seq(kKeys, 0);
  std::atomic<std::uint64_t> handled{0};
  std::atomic<std::uint64_t> out_of_order{0};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<bool> enough{false};

  auto produce = [&](int producer) {
    std::vector<std::uint64_t> seq(kKeys, 0);
    // Rounds until the lanes changed often enough under traffic; bounded either way.
    for (int round = 0; round < 5000 && !enough.load(); ++round) {
      for (int i = 0; i < 200; ++i) {
        const int key = (i * kProducers + producer) % kKeys;  // each key has one producer
        const std::uint64_t n = ++seq[static_cast<std::size_t>(key)];
        ember::PostOptions options;
        options.key = ember::DispatchKey::from_int(static_cast<std::uint64_t>(key));
        ember::Status posted = node.post(
            "Elastic",
            [&, key, n] {
              auto& last = last_seq[static_cast<std::size_t>(key)];
              if (last + 1 != n) {
                out_of_order.fetch_add(1);
              }
              last = n;
              handled.fetch_add(1);
            },
            options);
        ASSERT_TRUE(posted) << posted.error().to_string();
        sent.fetch_add(1);
      }
      std::this_thread::yield();
    }
  };
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back(produce, p);
  }
  const bool changed = wait_for(
      [&] {
        ember::ScalingStatus s = svc->scaling();
        return s.grows >= 6 && s.shrinks >= 6 && sent.load() >= 20'000;
      },
      30s);
  enough = true;
  for (auto& t : producers) {
    t.join();
  }
  EXPECT_TRUE(changed) << "grows " << svc->scaling().grows << ", shrinks " << svc->scaling().shrinks
                       << ", sent " << sent.load();
  ASSERT_TRUE(wait_for([&] { return handled.load() == sent.load(); }, 30s))
      << handled.load() << " of " << sent.load();
  EXPECT_EQ(out_of_order.load(), 0u);
  ASSERT_TRUE(node.stop());
  EXPECT_EQ(handled.load(), sent.load());  // nothing extra ran during the stop
}

TEST(Scaling, QueueingDelayIsMeasuredPerPriorityAndDrivesQueueDelay) {
  ember::Node node(
      config_with("{WorkerNum: 1, MaxWorkerNum: 2, Scaling: {Max: 2, Interval: 20ms, Cooldown: 0s, "
                  "Hysteresis: 1, Strategy: {Name: queue_delay, Params: {Target: 5ms}}}}"));
  ASSERT_TRUE(node.start());
  Gate gate;
  ember::Service* svc = node.find_service("Elastic");
  ASSERT_NE(svc, nullptr);
  auto entered = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("Elastic", gate.blocker(entered)));
  ASSERT_TRUE(wait_for([&] { return entered->load(); }));
  auto done = std::make_shared<std::atomic<int>>(0);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(node.post("Elastic", [done] { done->fetch_add(1); }));
  }
  ember::PostOptions system;
  system.priority = ember::Priority::system;
  ASSERT_TRUE(node.post(
      "Elastic", [done] { done->fetch_add(1); }, system));
  // Two evaluations later the queued messages have waited at least one full interval.
  const std::uint64_t seen = svc->scaling().evaluations;
  ASSERT_TRUE(wait_for([&] { return svc->scaling().evaluations >= seen + 2; }));
  gate.open();
  ASSERT_TRUE(wait_for([&] { return done->load() == 11; }));
  ASSERT_TRUE(wait_for([&] { return svc->scaling().user_wait_p99 >= 20ms; }))
      << svc->scaling().user_wait_p99.count() << " us";
  EXPECT_GE(svc->scaling().system_wait_p99, 20ms);
  // The delay was over Target, so queue_delay grew the service.
  ASSERT_TRUE(wait_for([&] { return svc->scaling().grows >= 1; }));
  EXPECT_NE(svc->scaling().last_decision.find("queue_delay: p99 user wait"), std::string::npos)
      << svc->scaling().last_decision;
}

TEST(Scaling, ALaneCountSetByHandOutsideMinMaxIsBroughtBack) {
  g_scripted_vote = 0;  // hold
  ember::Node node(
      config_with("{WorkerNum: 2, MaxWorkerNum: 8, Scaling: {Min: 2, Max: 4, Interval: 10ms, "
                  "Strategy: {Name: scripted}}}"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("Elastic");
  ASSERT_NE(svc, nullptr);
  svc->set_lane_count(8);
  ASSERT_TRUE(wait_for([&] { return svc->lane_count() == 4; }))
      << svc->lane_count() << " lanes; " << svc->scaling().last_decision;
  EXPECT_NE(svc->scaling().last_decision.find("lanes 8 -> 4 (into Min..Max)"), std::string::npos)
      << svc->scaling().last_decision;
}

TEST(Scaling, AThrowingStrategyIsCountedAndHoldsTheLaneCount) {
  g_scripted_vote = 99;  // throw
  ember::testing::ScopeExit reset([] { g_scripted_vote = 0; });
  ember::Node node(
      config_with("{WorkerNum: 1, MaxWorkerNum: 4, Scaling: {Interval: 10ms, Hysteresis: 1, "
                  "Strategy: {Name: scripted}}}"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("Elastic");
  ASSERT_NE(svc, nullptr);
  ASSERT_TRUE(wait_for([&] { return node.stats().scaling.strategy_failures >= 3; }));
  EXPECT_EQ(svc->lane_count(), 1);
  auto ran = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("Elastic", [ran] { ran->store(true); }));
  EXPECT_TRUE(wait_for([&] { return ran->load(); }));
}

TEST(Scaling, AServiceWithoutScalingReportsItDisabled) {
  ember::Node node(config_with("{WorkerNum: 3}"));
  ASSERT_TRUE(node.start());
  ember::ScalingStatus s = node.find_service("Elastic")->scaling();
  EXPECT_FALSE(s.enabled);
  EXPECT_EQ(s.lanes, 3);
  EXPECT_EQ(node.stats().scaling.services, 0u);
}

}  // namespace

TEST(Scaling, AConfigBuiltInCodeGetsTheSameDefaultsAndChecksAsYaml) {
  ember::NodeConfig config;
  config.worker_threads = 2;
  ember::Node node(config);
  ASSERT_TRUE(node.start());
  auto scaling = std::make_shared<ember::ScalingConfig>();
  scaling->strategy.name = "queue_delay";
  scaling->strategy.params["Target"] = "5ms";
  ember::ServiceConfig cfg;
  cfg.name = "coded";
  cfg.worker.lanes = 2;
  cfg.worker.max_lanes = 6;
  cfg.worker.scaling = scaling;  // Min and Max left at 0: WorkerNum and MaxWorkerNum apply
  auto added = node.add_service(std::make_unique<Elastic>(), cfg);
  ASSERT_TRUE(added) << added.error().to_string();
  ember::ScalingStatus s = node.find_service("coded")->scaling();
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.min_lanes, 2);
  EXPECT_EQ(s.max_lanes, 6);
  EXPECT_EQ(node.stats().scaling.services, 1u);

  auto bad = std::make_shared<ember::ScalingConfig>(*scaling);
  bad->min_lanes = 4;
  bad->max_lanes = 3;
  cfg.name = "bad";
  cfg.worker.scaling = bad;
  auto refused = node.add_service(std::make_unique<Elastic>(), cfg);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("WorkerConf.Scaling: Min and Max must satisfy"),
            std::string::npos)
      << refused.error().message();
  EXPECT_EQ(node.find_service("bad"), nullptr);
  ASSERT_TRUE(node.stop());
}
