// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <ember/config.hpp>
#include <ember/scaling.hpp>

namespace ember {
namespace {

using namespace std::chrono_literals;

ScalingStrategyConfig strategy(std::string name, std::map<std::string, std::string> params = {},
                               std::vector<ScalingStrategyConfig> subs = {}) {
  ScalingStrategyConfig c;
  c.name = std::move(name);
  c.params = std::move(params);
  c.subs = std::move(subs);
  c.path = "ServiceConf.StartServices[0].WorkerConf.Scaling.Strategy";
  c.line = 7;
  return c;
}

ScaleVote vote(ScalingStrategy& s, const ScalingSample& sample) {
  return s.evaluate(sample).vote;
}

ScalingSample with_queue(int lanes, std::int64_t queued) {
  ScalingSample s;
  s.lanes = lanes;
  s.queued = queued;
  s.interval = 1000ms;
  return s;
}

TEST(WaitHistogram, PercentilesAreWithinABucket) {
  WaitHistogram h;
  EXPECT_EQ(h.percentile(99), 0us);
  for (int i = 1; i <= 1000; ++i) {
    h.add(std::chrono::microseconds(i));
  }
  EXPECT_EQ(h.count(), 1000u);
  const auto p50 = h.percentile(50).count();
  const auto p99 = h.percentile(99).count();
  EXPECT_GE(p50, 500);
  EXPECT_LE(p50, 500 * 5 / 4);
  EXPECT_GE(p99, 990);
  EXPECT_LE(p99, 990 * 5 / 4);
  // Every value falls into a bucket whose upper bound is at or above it.
  for (std::uint64_t v : {0ull, 3ull, 4ull, 5ull, 7ull, 8ull, 1000ull, 123456789ull}) {
    EXPECT_GE(WaitHistogram::upper_bound_of(WaitHistogram::bucket_of(v)), v) << v;
  }
}

TEST(ScalingStrategies, QueueLengthVotesOnMessagesPerLane) {
  auto s = make_scaling_strategy(strategy("queue_length", {{"High", "100"}, {"Low", "10"}}));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(vote(**s, with_queue(2, 201 * 2)), ScaleVote::grow);
  EXPECT_EQ(vote(**s, with_queue(2, 100)), ScaleVote::hold);
  EXPECT_EQ(vote(**s, with_queue(4, 8)), ScaleVote::shrink);
  EXPECT_NE((**s).evaluate(with_queue(2, 402)).why.find("201.0 queued per lane"),
            std::string::npos);
}

TEST(ScalingStrategies, QueueDelayVotesOnAPercentileOfOnePriority) {
  auto s =
      make_scaling_strategy(strategy("queue_delay", {{"Target", "5ms"}, {"Percentile", "99"}}));
  ASSERT_TRUE(s) << s.error().to_string();
  ScalingSample slow = with_queue(2, 0);
  for (int i = 0; i < 100; ++i) {
    slow.user_wait.add(i < 90 ? 100us : 20ms);  // p99 is 20 ms
  }
  EXPECT_EQ(vote(**s, slow), ScaleVote::grow);
  ScalingSample fine = with_queue(2, 0);
  for (int i = 0; i < 100; ++i) {
    fine.user_wait.add(3ms);
    fine.system_wait.add(50ms);  // another priority: not looked at
  }
  EXPECT_EQ(vote(**s, fine), ScaleVote::hold);
  EXPECT_EQ(vote(**s, with_queue(2, 0)), ScaleVote::shrink);  // nothing waited
  auto system =
      make_scaling_strategy(strategy("queue_delay", {{"Target", "10ms"}, {"Priority", "system"}}));
  ASSERT_TRUE(system);
  EXPECT_EQ(vote(**system, fine), ScaleVote::grow);
}

TEST(ScalingStrategies, CpuVotesOnHandlerTimePerLane) {
  auto s = make_scaling_strategy(strategy("cpu", {{"High", "0.7"}, {"Low", "0.2"}}));
  ASSERT_TRUE(s) << s.error().to_string();
  ScalingSample busy = with_queue(2, 0);
  busy.handler_cpu = 1800ms;  // 90 % of two lanes over 1 s
  EXPECT_EQ(vote(**s, busy), ScaleVote::grow);
  busy.handler_cpu = 1000ms;
  EXPECT_EQ(vote(**s, busy), ScaleVote::hold);
  busy.handler_cpu = 100ms;
  EXPECT_EQ(vote(**s, busy), ScaleVote::shrink);
}

TEST(ScalingStrategies, CompositesNestToAnyDepth) {
  const auto queue = strategy("queue_length", {{"High", "10"}, {"Low", "1"}});
  const auto cpu = strategy("cpu", {{"High", "0.5"}, {"Low", "0.1"}});
  auto all = make_scaling_strategy(strategy("all", {}, {queue, cpu}));
  auto any = make_scaling_strategy(strategy("any", {}, {queue, strategy("all", {}, {cpu, queue})}));
  ASSERT_TRUE(all) << all.error().to_string();
  ASSERT_TRUE(any) << any.error().to_string();
  ScalingSample queue_only = with_queue(1, 50);  // queue says grow, cpu says shrink
  EXPECT_EQ(vote(**all, queue_only), ScaleVote::hold);
  EXPECT_EQ(vote(**any, queue_only), ScaleVote::grow);
  ScalingSample both = with_queue(1, 50);
  both.handler_cpu = 900ms;
  EXPECT_EQ(vote(**all, both), ScaleVote::grow);
  ScalingSample idle = with_queue(4, 0);
  EXPECT_EQ(vote(**all, idle), ScaleVote::shrink);
  EXPECT_EQ(vote(**any, idle), ScaleVote::shrink);
  const std::string why = (**any).evaluate(queue_only).why;
  EXPECT_NE(why.find("any[queue_length"), std::string::npos) << why;
  EXPECT_NE(why.find("all[cpu"), std::string::npos) << why;
}

TEST(ScalingStrategies, BadConfigurationIsAClearError) {
  auto message = [](const ScalingStrategyConfig& c) {
    auto s = make_scaling_strategy(c);
    return s ? std::string("built") : s.error().message();
  };
  EXPECT_EQ(message(strategy("queue_lenght")),
            "ServiceConf.StartServices[0].WorkerConf.Scaling.Strategy (line 7): strategy "
            "queue_lenght: unknown strategy (registered: all, any, cpu, queue_delay, "
            "queue_length)");
  EXPECT_EQ(message(strategy("queue_length", {{"High", "many"}})),
            "ServiceConf.StartServices[0].WorkerConf.Scaling.Strategy.Params.High (line 7): "
            "strategy queue_length: expected a number, got 'many'");
  EXPECT_NE(message(strategy("queue_length", {{"Hihg", "5"}})).find("Params.Hihg"),
            std::string::npos);
  EXPECT_NE(message(strategy("queue_length", {{"Hihg", "5"}})).find("unknown parameter"),
            std::string::npos);
  EXPECT_NE(message(strategy("cpu", {{"High", "1.5"}})).find("out of range"), std::string::npos);
  EXPECT_NE(message(strategy("cpu", {{"High", "0.5"}, {"Low", "0.6"}})).find("must be below"),
            std::string::npos);
  EXPECT_NE(message(strategy("queue_delay", {{"Target", "soon"}})).find("invalid duration"),
            std::string::npos);
  EXPECT_NE(message(strategy("queue_delay", {{"Priority", "urgent"}})).find("expected one of"),
            std::string::npos);
  EXPECT_NE(message(strategy("all")).find("needs at least one strategy"), std::string::npos);
  EXPECT_NE(message(strategy("cpu", {}, {strategy("cpu")})).find("takes no Subs"),
            std::string::npos);
  // An error deep in a tree names the sub-strategy.
  auto nested = strategy("any", {}, {strategy("cpu")});
  nested.subs[0].path = nested.path + ".Subs[0]";
  nested.subs[0].params = {{"High", "x"}};
  EXPECT_NE(message(nested).find("Strategy.Subs[0].Params.High"), std::string::npos)
      << message(nested);
}

class Always final : public ScalingStrategy {
 public:
  ScaleVerdict evaluate(const ScalingSample&) override { return {ScaleVote::grow, "always"}; }
};

TEST(ScalingStrategies, UsersRegisterTheirOwnByName) {
  ASSERT_TRUE(register_scaling_strategy(
      "always_grow",
      [](const ScalingStrategyConfig& c) -> Result<std::unique_ptr<ScalingStrategy>> {
        StrategyParams p(c);
        if (auto st = p.finish(); !st) {
          return st.error();
        }
        return std::unique_ptr<ScalingStrategy>(std::make_unique<Always>());
      }));
  auto again = register_scaling_strategy("always_grow", [](const ScalingStrategyConfig&) {
    return Result<std::unique_ptr<ScalingStrategy>>(std::unique_ptr<ScalingStrategy>());
  });
  EXPECT_FALSE(again);
  auto s = make_scaling_strategy(strategy("any", {}, {strategy("always_grow")}));
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(vote(**s, with_queue(1, 0)), ScaleVote::grow);
}

TEST(ScalingConfig, ParsedWithDefaultsThatApply) {
  auto config = parse_node_config(R"(ServiceConf:
  StartServices:
    - ClassName: Game
      WorkerConf:
        WorkerNum: 2
        MaxWorkerNum: 16
        Scaling:
          Interval: 500ms
          GrowStep: 50%
          ShrinkMaxBusy: 60%
          Strategy:
            Name: any
            Subs:
              - {Name: queue_delay, Params: {Target: 5ms}}
              - {Name: queue_length, Params: {High: 200}}
)",
                                  "node.yaml");
  ASSERT_TRUE(config) << config.error().to_string();
  ASSERT_NE(config->services.at(0).worker.scaling, nullptr);
  const ScalingConfig& sc = *config->services.at(0).worker.scaling;
  EXPECT_EQ(sc.min_lanes, 2);   // WorkerNum
  EXPECT_EQ(sc.max_lanes, 16);  // MaxWorkerNum
  EXPECT_EQ(sc.interval, 500ms);
  EXPECT_EQ(sc.cooldown, 3000ms);
  EXPECT_EQ(sc.grow.of(4), 2);
  EXPECT_EQ(sc.grow.of(1), 1);
  EXPECT_EQ(sc.shrink.of(8), 1);
  EXPECT_EQ(sc.hysteresis, 2);
  EXPECT_DOUBLE_EQ(sc.shrink_max_busy, 0.6);
  ASSERT_EQ(sc.strategy.subs.size(), 2u);
  EXPECT_EQ(sc.strategy.subs[0].params.at("Target"), "5ms");
  EXPECT_EQ(sc.strategy.subs[1].path,
            "ServiceConf.StartServices[0].WorkerConf.Scaling.Strategy.Subs[1]");
  auto built = make_scaling_strategy(sc.strategy);
  EXPECT_TRUE(built) << built.error().to_string();
}

TEST(ScalingConfig, ErrorsNameTheKey) {
  auto error = [](const std::string& worker) {
    auto c = parse_node_config(
        "ServiceConf:\n  StartServices:\n    - ClassName: Game\n      WorkerConf: " + worker + "\n",
        "node.yaml");
    return c ? std::string("parsed") : c.error().message();
  };
  EXPECT_NE(error("{WorkerNum: 2, Scaling: {Strategy: {Name: cpu}}}")
                .find("WorkerConf.Scaling.Max: must be above Min (2)"),
            std::string::npos)
      << error("{WorkerNum: 2, Scaling: {Strategy: {Name: cpu}}}");
  EXPECT_NE(error("{Scaling: {Max: 4}}").find("Scaling.Strategy: missing required key"),
            std::string::npos);
  EXPECT_NE(error("{Scaling: {Max: 4, Strategy: {Params: {High: 1}}}}")
                .find("Strategy.Name: missing required key"),
            std::string::npos);
  EXPECT_NE(error("{Scaling: {Max: 4, GrowStep: lots, Strategy: {Name: cpu}}}")
                .find("expected a lane count (1..1024) or a percentage such as 50%"),
            std::string::npos);
  EXPECT_NE(error("{WorkerNum: 8, Scaling: {Min: 1, Max: 4, Strategy: {Name: cpu}}}")
                .find("WorkerNum 8 is outside Min..Max (1..4)"),
            std::string::npos);
  EXPECT_NE(error("{MaxWorkerNum: 4, Scaling: {Max: 8, Strategy: {Name: cpu}}}")
                .find("8 is above MaxWorkerNum 4"),
            std::string::npos);
  EXPECT_NE(error("{Scaling: {Max: 4, ShrinkMaxBusy: 1.5, Strategy: {Name: cpu}}}")
                .find("Scaling.ShrinkMaxBusy: '1.5' is out of range (expected 0..1, or 0%..100%)"),
            std::string::npos)
      << error("{Scaling: {Max: 4, ShrinkMaxBusy: 1.5, Strategy: {Name: cpu}}}");
  EXPECT_NE(error("{Scaling: {Max: 4, ShrinkMaxBusy: busy, Strategy: {Name: cpu}}}")
                .find("expected a number in 0..1 or a percentage, got 'busy'"),
            std::string::npos);
  EXPECT_NE(error("{Scaling: {Max: 4, Strategy: {Name: cpu, Subs: {Name: x}}}}")
                .find("expected a sequence of strategies"),
            std::string::npos);
}

}  // namespace
}  // namespace ember
