// SPDX-License-Identifier: Apache-2.0
// Properties of one node's runtime, checked under many seeds of the simulator: per-key order
// under lanes and resizes, and exactly-once completion of every call. A failing seed is printed;
// EMBER_SIM_SEED=<seed> replays it alone, and it is then kept in the regression list.
#include <gtest/gtest.h>

#include <ember/ember.hpp>
#include <ember/sim.hpp>
#include <map>
#include <string>
#include <vector>

#include "sim/configs.hpp"
#include "sim/seeds.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Result;
using ember::Selector;
namespace pb = ember::test;

ember::NodeConfig node_config() {
  ember::NodeConfig config = ember::testing::sim_node("sim");
  config.shutdown_timeout = 2s;
  return config;
}

using ember::testing::sim_service;

// --- per-key order under lanes and resizes ---------------------------------------------------

// Checks that each key's sequence numbers arrive one by one, in order.
class Ledger : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcAppend", [this](const pb::Echo& e) -> Result<pb::SumResp> {
      std::int64_t& last = last_[e.key()];
      if (e.seq() != last + 1) {
        violations.push_back("key " + std::to_string(e.key()) + ": " + std::to_string(e.seq()) +
                             " after " + std::to_string(last));
      }
      last = e.seq();
      return pb::SumResp{};
    });
  }
  std::map<std::uint64_t, std::int64_t> last_;
  std::vector<std::string> violations;
};

struct OrderRun {
  std::vector<std::string> violations;
  std::map<std::uint64_t, std::int64_t> sent;
  std::map<std::uint64_t, std::int64_t> received;
  std::uint64_t resizes = 0;
  std::uint64_t hash = 0;
};

OrderRun run_order(std::uint64_t seed) {
  ember::sim::WorldOptions options;
  options.seed = seed;
  options.stall_probability = 0.02;
  ember::sim::World world(options);
  ember::Node node(node_config());
  auto owned = std::make_unique<Ledger>();
  Ledger* ledger = owned.get();
  auto added = node.add_service(std::move(owned), sim_service("ledger", 1 + world.uniform(4)));
  EXPECT_TRUE(added);
  EXPECT_TRUE(node.start());
  OrderRun run;
  const std::uint64_t keys = 1 + world.uniform(12);
  auto bus = ember::select(node, Selector::name("ledger"));
  for (int round = 0; round < 60; ++round) {
    const int burst = static_cast<int>(world.uniform(20));
    for (int i = 0; i < burst; ++i) {
      const std::uint64_t key = world.uniform(keys);
      pb::Echo e;
      e.set_key(key);
      e.set_seq(++run.sent[key]);
      ember::CallOptions call;
      call.key = ember::DispatchKey::from_int(key);
      EXPECT_TRUE(bus.send("RpcAppend", e, call));
    }
    if (world.chance(0.3)) {
      ledger->set_lane_count(1 + static_cast<int>(world.uniform(16)));
      ++run.resizes;
    }
    EXPECT_TRUE(world.run_steps(world.uniform(30)));
  }
  EXPECT_TRUE(world.run(1h));
  run.violations = ledger->violations;
  run.received = ledger->last_;
  EXPECT_TRUE(node.stop());
  run.hash = world.trace_hash();
  return run;
}

// Thousands of refused and failed calls are the point here: their log lines are noise.
class SimProperties : public ::testing::Test {
 protected:
  void SetUp() override { ember::set_log_level(ember::LogLevel::off); }
  void TearDown() override { ember::set_log_level(ember::LogLevel::info); }
};

TEST_F(SimProperties, PerKeyOrderHoldsUnderLanesAndResizes) {
  std::uint64_t resizes = 0;
  for (std::uint64_t seed : ember::testing::sim_seeds(150)) {
    OrderRun run = run_order(seed);
    resizes += run.resizes;
    ASSERT_TRUE(run.violations.empty()) << "seed " << seed << ": " << run.violations.front()
                                        << " (replay: EMBER_SIM_SEED=" << seed << ")";
    ASSERT_EQ(run.received, run.sent) << "seed " << seed << ": messages lost";
  }
  EXPECT_GT(resizes, 0u);
}

// --- every call completes exactly once --------------------------------------------------------

// Replies at once, fails, throws, or calls onward (synchronously, so that a slow onward hop
// holds the lane), depending on the request.
class Worker : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcSum", [this](const pb::SumReq& req) -> Result<pb::SumResp> {
      switch (req.a() % 4) {
        case 0: break;
        case 1: return ember::Error{ember::Errc::invalid_argument, "refused"};
        case 2: throw std::runtime_error("handler threw");
        default:
          if (req.b() > 0 && !peer.empty()) {
            pb::SumReq next = req;
            next.set_b(req.b() - 1);
            auto r = select(Selector::name(peer)).call<pb::SumResp>("RpcSum", next);
            if (!r) {
              return r.error();
            }
          }
      }
      pb::SumResp resp;
      resp.set_sum(req.a() + req.b());
      return resp;
    });
  }
  std::string peer;
};

struct Completion {
  int times = 0;
  std::string how;
};

class Caller : public ember::Service {
 public:
  std::map<std::int64_t, Completion>* completions = nullptr;

  ember::Status on_init() override {
    return handle("RpcIssue", [this](const pb::SumReq& req) -> ember::Task<ember::Status> {
      ember::CallOptions call;
      call.timeout = timeout_of(req.a());
      auto r = co_await select(Selector::name("worker")).co_call<pb::SumResp>("RpcSum", req, call);
      note(req.a(), r ? "ok" : std::string(ember::errc_name(r.error().code())));
      co_return ember::Status{};
    });
  }

  static std::chrono::milliseconds timeout_of(std::int64_t id) {
    return std::chrono::milliseconds(1 + (id * 7919) % 60);
  }

  void note(std::int64_t id, std::string how) {
    Completion& c = (*completions)[id];
    ++c.times;
    c.how = std::move(how);
  }
};

struct CallRun {
  std::int64_t issued = 0;
  std::map<std::int64_t, Completion> completions;
  std::map<std::string, int> outcomes;
};

CallRun run_calls(std::uint64_t seed) {
  ember::sim::WorldOptions options;
  options.seed = seed;
  options.stall_probability = 0.1;
  options.max_stall = 30ms;
  ember::sim::World world(options);
  ember::Node node(node_config());
  CallRun run;
  auto caller_owned = std::make_unique<Caller>();
  Caller* caller = caller_owned.get();
  caller->completions = &run.completions;
  auto worker = std::make_unique<Worker>();
  worker->peer = "helper";
  auto helper = std::make_unique<Worker>();
  EXPECT_TRUE(node.add_service(std::move(caller_owned), sim_service("caller", 4)));
  EXPECT_TRUE(node.add_service(std::move(worker), sim_service("worker", 2)));
  EXPECT_TRUE(node.add_service(std::move(helper), sim_service("helper", 1)));
  EXPECT_TRUE(node.start());
  bool stopped_worker = false;
  for (int round = 0; round < 40; ++round) {
    const int burst = static_cast<int>(world.uniform(8));
    for (int i = 0; i < burst; ++i) {
      pb::SumReq req;
      req.set_a(run.issued++);
      req.set_b(static_cast<std::int64_t>(world.uniform(3)));
      ember::CallOptions call;
      call.timeout = Caller::timeout_of(req.a());
      call.key = ember::DispatchKey::from_int(world.uniform(16));
      const int verb = static_cast<int>(world.uniform(3));
      ember::PostOptions post;
      post.key = call.key;
      const ember::Status posted = node.post(
          "caller",
          [caller, req, call, verb] {
            const std::int64_t id = req.a();
            if (verb == 0) {
              auto handle =
                  caller->select(Selector::name("worker"))
                      .async_call<pb::SumResp>(
                          "RpcSum", req,
                          [caller, id](Result<pb::SumResp> r) {
                            caller->note(
                                id, r ? "ok" : std::string(ember::errc_name(r.error().code())));
                          },
                          call);
              if (!handle) {
                caller->note(id, "refused " + std::string(ember::errc_name(handle.error().code())));
              }
            } else if (verb == 1) {
              auto r =
                  caller->select(Selector::name("worker")).call<pb::SumResp>("RpcSum", req, call);
              caller->note(id, r ? "ok" : std::string(ember::errc_name(r.error().code())));
            } else {
              // A coroutine handler on the caller itself makes the call with co_call. The send
              // has no deadline: one-way messages may expire unrun, and this one must run.
              ember::CallOptions relay;
              relay.key = call.key;
              if (!caller->select(Selector::name("caller")).send("RpcIssue", req, relay)) {
                caller->note(id, "refused");
              }
            }
          },
          post);
      EXPECT_TRUE(posted);
    }
    if (!stopped_worker && world.chance(0.02)) {
      // The callee goes away with calls in flight: each still completes once.
      EXPECT_TRUE(node.stop_service("worker"));
      stopped_worker = true;
    }
    EXPECT_TRUE(world.run_steps(world.uniform(40)));
  }
  EXPECT_TRUE(world.run(1h));
  for (const auto& [id, c] : run.completions) {
    ++run.outcomes[c.how];
  }
  EXPECT_TRUE(node.stop());
  return run;
}

TEST_F(SimProperties, EveryCallCompletesExactlyOnce) {
  std::map<std::string, int> outcomes;
  for (std::uint64_t seed : ember::testing::sim_seeds(100)) {
    CallRun run = run_calls(seed);
    for (std::int64_t id = 0; id < run.issued; ++id) {
      auto it = run.completions.find(id);
      ASSERT_NE(it, run.completions.end())
          << "seed " << seed << ": call " << id
          << " never completed (replay: EMBER_SIM_SEED=" << seed << ")";
      ASSERT_EQ(it->second.times, 1)
          << "seed " << seed << ": call " << id << " completed " << it->second.times << " times";
    }
    for (const auto& [how, count] : run.outcomes) {
      outcomes[how] += count;
    }
  }
  // The workload reaches every outcome somewhere among the seeds.
  EXPECT_GT(outcomes["ok"], 0);
  EXPECT_GT(outcomes["timeout"], 0);
  EXPECT_GT(outcomes["handler_failed"] + outcomes["invalid_argument"], 0);
}

// --- events: at most once, in order per publisher ---------------------------------------------

constexpr std::int32_t kTick = 7;

class Listener : public ember::Service {
 public:
  ember::Status on_init() override {
    auto id = subscribe<pb::Echo>(kTick, [this](const pb::Echo& e, const ember::EventInfo& info) {
      std::int64_t& last = last_[info.publisher.name];
      if (e.seq() <= last) {
        violations.push_back(info.publisher.name + ": " + std::to_string(e.seq()) + " after " +
                             std::to_string(last));
      }
      last = e.seq();
      ++received;
    });
    return id ? ember::Status{} : ember::Status{id.error()};
  }
  std::map<std::string, std::int64_t> last_;
  std::vector<std::string> violations;
  std::int64_t received = 0;
};

class Announcer : public ember::Service {};

TEST_F(SimProperties, EventsArriveAtMostOnceInOrderPerPublisher) {
  for (std::uint64_t seed : ember::testing::sim_seeds(100)) {
    ember::sim::WorldOptions options;
    options.seed = seed;
    options.stall_probability = 0.05;
    ember::sim::World world(options);
    ember::Node node(node_config());
    std::vector<Announcer*> announcers;
    std::vector<Listener*> listeners;
    for (int i = 0; i < 3; ++i) {
      auto a = std::make_unique<Announcer>();
      announcers.push_back(a.get());
      ASSERT_TRUE(node.add_service(std::move(a), sim_service("announcer" + std::to_string(i), 1)));
    }
    for (int i = 0; i < 2; ++i) {
      auto l = std::make_unique<Listener>();
      listeners.push_back(l.get());
      ASSERT_TRUE(node.add_service(
          std::move(l),
          sim_service("listener" + std::to_string(i), 1 + static_cast<int>(world.uniform(4)))));
    }
    ASSERT_TRUE(node.start());
    std::vector<std::int64_t> published(announcers.size(), 0);
    for (int round = 0; round < 50; ++round) {
      const std::size_t who = world.uniform(announcers.size());
      const int burst = static_cast<int>(world.uniform(6));
      ASSERT_TRUE(node.post("announcer" + std::to_string(who), [&, who, burst] {
        for (int i = 0; i < burst; ++i) {
          pb::Echo e;
          e.set_seq(++published[who]);
          ember::PublishOptions publish;
          publish.key = ember::DispatchKey::from_int(who);  // one publisher's events share a lane
          (void)announcers[who]->publish(kTick, e, publish);
        }
      }));
      if (world.chance(0.2)) {
        listeners[world.uniform(listeners.size())]->set_lane_count(
            1 + static_cast<int>(world.uniform(8)));
      }
      ASSERT_TRUE(world.run_steps(world.uniform(20)));
    }
    ASSERT_TRUE(world.run(1h));
    std::int64_t total = 0;
    for (std::int64_t p : published) {
      total += p;
    }
    for (Listener* l : listeners) {
      ASSERT_TRUE(l->violations.empty()) << "seed " << seed << ": " << l->violations.front()
                                         << " (replay: EMBER_SIM_SEED=" << seed << ")";
      // Local events are not lost either: every one reaches every subscriber.
      ASSERT_EQ(l->received, total) << "seed " << seed;
    }
    ASSERT_TRUE(node.stop());
  }
}

}  // namespace
