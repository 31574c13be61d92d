// SPDX-License-Identifier: Apache-2.0
// The simulator itself: virtual time, replay of a seed, blocking calls inside one thread.
#include <gtest/gtest.h>

#include <ember/ember.hpp>
#include <ember/sim.hpp>
#include <set>
#include <string>
#include <vector>

#include "sim/configs.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::Selector;
namespace pb = ember::test;

using ember::testing::sim_node;
using ember::testing::sim_service;

// Adds, and forwards to the next hop with a synchronous call while hops remain.
class Adder : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcSum", [this](const pb::SumReq& req) -> Result<pb::SumResp> {
      pb::SumResp resp;
      if (req.b() > 0) {
        pb::SumReq next;
        next.set_a(req.a() + 1);
        next.set_b(req.b() - 1);
        auto r = select(Selector::name(peer)).call<pb::SumResp>("RpcSum", next);
        if (!r) {
          return r.error();
        }
        return *r;
      }
      resp.set_sum(req.a());
      return resp;
    });
  }
  std::string peer;
};

TEST(SimWorld, VirtualTimeJumpsOverIdlePeriods) {
  ember::sim::World world(7);
  const auto start = ember::Clock::now();
  EXPECT_EQ(start, world.now());
  ember::Node node(sim_node("n1"));
  auto service = std::make_unique<Adder>();
  Adder* adder = service.get();
  ASSERT_TRUE(node.add_service(std::move(service), sim_service("adder")));
  ASSERT_TRUE(node.start());
  std::vector<std::chrono::nanoseconds> fired;
  ASSERT_TRUE(node.post("adder", [&] {
    adder->after(1h, [&] { fired.push_back(world.elapsed()); });
    adder->after(30min, [&] { fired.push_back(world.elapsed()); });
  }));
  ASSERT_TRUE(world.run_for(2h));
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_GE(fired[0], 30min);
  EXPECT_LT(fired[0], 30min + 5ms);
  EXPECT_GE(fired[1], 1h);
  EXPECT_LT(fired[1], 1h + 5ms);
  EXPECT_EQ(ember::Clock::now() - start, 2h);
  ASSERT_TRUE(node.stop());
}

TEST(SimWorld, SynchronousCallsRunTheWorldInsteadOfBlocking) {
  ember::sim::World world(11);
  ember::Node node(sim_node("n1"));
  auto a = std::make_unique<Adder>();
  auto b = std::make_unique<Adder>();
  a->peer = "b";
  b->peer = "a";
  ASSERT_TRUE(node.add_service(std::move(a), sim_service("a")));
  ASSERT_TRUE(node.add_service(std::move(b), sim_service("b")));
  ASSERT_TRUE(node.start());
  // From outside any service: the call itself runs the world until its reply.
  pb::SumReq req;
  req.set_a(0);
  req.set_b(1);
  auto r = ember::select(node, Selector::name("a")).call<pb::SumResp>("RpcSum", req);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 1);
  // a -> b -> a would wait on a service already waiting: refused, as on real threads.
  req.set_b(2);
  r = ember::select(node, Selector::name("a")).call<pb::SumResp>("RpcSum", req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::call_cycle);
  ASSERT_TRUE(node.stop());
}

TEST(SimWorld, AStalledCalleeTimesOutOnVirtualTime) {
  ember::sim::WorldOptions options;
  options.seed = 3;
  options.stall_probability = 1.0;  // every pick is held back at first
  options.max_stall = 10s;
  ember::sim::World world(options);
  ember::Node node(sim_node("n1"));
  ASSERT_TRUE(node.add_service(std::make_unique<Adder>(), sim_service("a")));
  ASSERT_TRUE(node.start());
  pb::SumReq req;
  ember::CallOptions call;
  call.timeout = 1ms;
  auto r = ember::select(node, Selector::name("a")).call<pb::SumResp>("RpcSum", req, call);
  // A stall of up to 10 s against a 1 ms deadline: almost surely late.
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::timeout);
  EXPECT_GE(world.elapsed(), 1ms);
  ASSERT_TRUE(node.stop());
}

// A small workload whose every observation goes into the trace.
std::uint64_t run_workload(std::uint64_t seed) {
  ember::sim::WorldOptions options;
  options.seed = seed;
  options.stall_probability = 0.05;
  ember::sim::World world(options);
  std::vector<std::unique_ptr<ember::Node>> nodes;
  std::vector<Adder*> callers;
  for (int n = 0; n < 2; ++n) {
    nodes.push_back(std::make_unique<ember::Node>(sim_node("n" + std::to_string(n))));
    auto a = std::make_unique<Adder>();
    auto b = std::make_unique<Adder>();
    a->peer = "b";
    b->peer = "b";
    callers.push_back(a.get());
    EXPECT_TRUE(nodes.back()->add_service(std::move(a), sim_service("a", 4)));
    EXPECT_TRUE(nodes.back()->add_service(std::move(b), sim_service("b", 4)));
    EXPECT_TRUE(nodes.back()->start());
  }
  for (int i = 0; i < 200; ++i) {
    const std::size_t n = world.uniform(nodes.size());
    pb::SumReq req;
    req.set_a(i);
    ember::CallOptions call;
    call.key = ember::DispatchKey::from_int(world.uniform(8));
    call.timeout = std::chrono::milliseconds(1 + world.uniform(20));
    ember::PostOptions post;
    post.key = call.key;
    (void)nodes[n]->post(
        "a",
        [&world, caller = callers[n], req, call, i] {
          auto handle = caller->select(Selector::name("b"))
                            .async_call<pb::SumResp>(
                                "RpcSum", req,
                                [&world, i](Result<pb::SumResp> r) {
                                  world.record(std::to_string(i) + (r ? " ok" : " failed"));
                                },
                                call);
          world.record("called " + std::to_string(i) + (handle ? "" : " refused"));
        },
        post);
    if (world.chance(0.3)) {
      EXPECT_TRUE(world.run_steps(world.uniform(5)));
    }
  }
  EXPECT_TRUE(world.run());
  world.record("elapsed " + std::to_string(world.elapsed().count()));
  for (auto& node : nodes) {
    EXPECT_TRUE(node->stop());
  }
  return world.trace_hash();
}

TEST(SimWorld, ASeedReplaysTheSameTrace) {
  const std::uint64_t first = run_workload(42);
  EXPECT_EQ(run_workload(42), first);
  std::set<std::uint64_t> distinct{first};
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    distinct.insert(run_workload(seed));
  }
  EXPECT_GE(distinct.size(), 4u) << "different seeds should schedule differently";
}

TEST(SimWorld, ANodeOnNatsIsRefusedClearly) {
  ember::sim::World world(5);
  ember::NodeConfig config = sim_node("n1");
  config.events.backend = ember::EventBackend::nats;
  ember::Node node(config);
  ember::Status started = node.start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), Errc::invalid_argument);
  EXPECT_NE(started.error().message().find("NATS"), std::string::npos)
      << started.error().to_string();
}

TEST(SimWorld, OneWorldAtATime) {
  ember::sim::World world(1);
  EXPECT_THROW(ember::sim::World second(2), std::logic_error);
}

}  // namespace
