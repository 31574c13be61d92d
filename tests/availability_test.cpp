// SPDX-License-Identifier: Apache-2.0
// Waiting for a service to appear instead of polling select(): the blocking wait_for and the
// mailbox callback when_available, their timeouts, cancellation and release.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>
#include <thread>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/messaging.hpp"
#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::Selector;
using ember::testing::run_in;
namespace pb = ember::test;

class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcSum", [](const pb::SumReq& r) -> Result<pb::SumResp> {
      pb::SumResp out;
      out.set_sum(r.a() + r.b());
      return out;
    });
  }
};

class Waiter : public ember::Service {};

/// What a when_available callback saw.
struct Outcome {
  std::atomic<int> runs{0};
  std::atomic<bool> in_mailbox{false};
  std::atomic<std::size_t> targets{0};
  std::atomic<int> code{-1};
  std::string message;  // written before `runs`
};

ember::ServiceConfig named(std::string name) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  return c;
}

class Availability : public ::testing::Test {
 protected:
  void SetUp() override {
    ember::NodeConfig config;
    config.node_id = "n1";
    config.worker_threads = 1;  // a waiting handler must not starve the pool
    node_ = std::make_unique<ember::Node>(config);
    auto added = node_->add_service(std::make_unique<Waiter>(), named("waiter"));
    ASSERT_TRUE(added);
    waiter_ = *added;
    ASSERT_TRUE(node_->start());
  }
  void TearDown() override { ASSERT_TRUE(node_->stop()); }

  void add_calc_later(std::chrono::milliseconds delay) {
    adder_ = std::thread([this, delay] {
      std::this_thread::sleep_for(delay);
      EXPECT_TRUE(node_->add_service(std::make_unique<Calc>(), named("calc")));
    });
  }
  void join() {
    if (adder_.joinable()) {
      adder_.join();
    }
  }

  /// A callback that records into `out` (which outlives the node's work in these tests).
  std::function<void(Result<ember::Bus>)> recorder(const std::shared_ptr<Outcome>& out) {
    return [out, waiter = waiter_](Result<ember::Bus> bus) {
      auto* core = ember::detail::ServiceCore::current();
      out->in_mailbox = core != nullptr && &core->self() == waiter;
      if (bus) {
        out->targets = bus->size();
        out->code = 0;
      } else {
        out->code = static_cast<int>(bus.error().code());
        out->message = bus.error().message();
      }
      out->runs.fetch_add(1);
    };
  }
  std::size_t watches() {
    return ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*node_))
        .repository()
        .watch_count();
  }

  std::unique_ptr<ember::Node> node_;
  ember::Service* waiter_ = nullptr;
  std::thread adder_;
};

TEST_F(Availability, WaitForReturnsTheBusOnceAServiceIsAddedLater) {
  add_calc_later(100ms);
  const auto start = std::chrono::steady_clock::now();
  auto bus = ember::wait_for(*node_, Selector::name("calc"), 10s);
  const auto waited = std::chrono::steady_clock::now() - start;
  join();
  ASSERT_TRUE(bus) << bus.error().to_string();
  ASSERT_EQ(bus->size(), 1u);
  EXPECT_LT(waited, 5s);  // woken by the change, not by the timeout
  pb::SumReq req;
  req.set_a(2);
  req.set_b(3);
  auto r = bus->call<pb::SumResp>("RpcSum", req);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 5);
}

TEST_F(Availability, WaitForReturnsAtOnceWhenAServiceAlreadyMatches) {
  auto bus = ember::wait_for(*node_, Selector::name("waiter"), 0ms);
  ASSERT_TRUE(bus) << bus.error().to_string();
  EXPECT_EQ(bus->size(), 1u);
}

TEST_F(Availability, AnUnboundedTimeoutMeansNoLimit) {
  add_calc_later(20ms);
  auto bus = ember::wait_for(*node_, Selector::name("calc"), std::chrono::milliseconds::max());
  join();
  ASSERT_TRUE(bus) << bus.error().to_string();
  auto out = std::make_shared<Outcome>();
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    EXPECT_TRUE(waiter_->when_available(Selector::name("calc"), recorder(out),
                                        std::chrono::milliseconds::max()));
  }));
  ASSERT_TRUE(ember::testing::wait_for([&] { return out->runs.load() == 1; }, 5s));
  EXPECT_EQ(out->code.load(), 0);
}

TEST_F(Availability, WaitForTimesOutNamingTheSelectorAndTheDuration) {
  const auto start = std::chrono::steady_clock::now();
  auto bus = ember::wait_for(*node_, Selector::name("nobody").server_id(7), 60ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 60ms);
  ASSERT_FALSE(bus);
  EXPECT_EQ(bus.error().code(), Errc::timeout);
  EXPECT_NE(bus.error().message().find("name=nobody server_id=7"), std::string::npos)
      << bus.error().message();
  EXPECT_NE(bus.error().message().find("60 ms"), std::string::npos) << bus.error().message();
}

TEST_F(Availability, WaitForIgnoresChangesThatDoNotMatch) {
  adder_ = std::thread([this] {
    std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(node_->add_service(std::make_unique<Waiter>(), named("other")));
  });
  auto bus = ember::wait_for(*node_, Selector::name("calc"), 150ms);
  join();
  ASSERT_FALSE(bus);
  EXPECT_EQ(bus.error().code(), Errc::timeout);
}

TEST_F(Availability, WaitForInAHandlerHandsTheOnlyWorkerOver) {
  add_calc_later(50ms);
  std::atomic<bool> found{false};
  // The call to calc runs on another worker while this handler still waits.
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    auto bus = ember::wait_for(*node_, Selector::name("calc"), 10s);
    if (bus) {
      auto r = bus->call<pb::SumResp>("RpcSum", pb::SumReq{});
      found = r.has_value();
    }
  }));
  join();
  EXPECT_TRUE(found);
}

TEST_F(Availability, WhenAvailableRunsInTheMailboxOnceAServiceAppears) {
  auto out = std::make_shared<Outcome>();
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    auto handle = waiter_->when_available(Selector::name("calc"), recorder(out), 10s);
    EXPECT_TRUE(handle) << handle.error().to_string();
  }));
  EXPECT_EQ(watches(), 1u);
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(out->runs.load(), 0);
  add_calc_later(0ms);
  join();
  ASSERT_TRUE(ember::testing::wait_for([&] { return out->runs.load() == 1; }, 5s));
  EXPECT_EQ(out->code.load(), 0);
  EXPECT_EQ(out->targets.load(), 1u);
  EXPECT_TRUE(out->in_mailbox.load());
  EXPECT_EQ(watches(), 0u);
  // A later change does not run it again.
  ASSERT_TRUE(node_->add_service(std::make_unique<Calc>(), [] {
    auto c = named("calc");
    c.id = "2";
    return c;
  }()));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(out->runs.load(), 1);
}

TEST_F(Availability, WhenAvailableWithAMatchAlreadyThereStillRunsThroughTheMailbox) {
  auto out = std::make_shared<Outcome>();
  bool ran_inside = true;
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    ASSERT_TRUE(waiter_->when_available(Selector::name("waiter"), recorder(out), 10s));
    ran_inside = out->runs.load() != 0;
  }));
  EXPECT_FALSE(ran_inside);
  ASSERT_TRUE(ember::testing::wait_for([&] { return out->runs.load() == 1; }, 5s));
  EXPECT_EQ(out->code.load(), 0);
  EXPECT_TRUE(out->in_mailbox.load());
}

TEST_F(Availability, WhenAvailableTimesOutInTheMailbox) {
  auto out = std::make_shared<Outcome>();
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    ASSERT_TRUE(waiter_->when_available(Selector::name("calc"), recorder(out), 50ms));
  }));
  ASSERT_TRUE(ember::testing::wait_for([&] { return out->runs.load() == 1; }, 5s));
  EXPECT_EQ(out->code.load(), static_cast<int>(Errc::timeout));
  EXPECT_NE(out->message.find("name=calc"), std::string::npos) << out->message;
  EXPECT_NE(out->message.find("50 ms"), std::string::npos) << out->message;
  EXPECT_TRUE(out->in_mailbox.load());
  EXPECT_EQ(watches(), 0u);
  add_calc_later(0ms);
  join();
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(out->runs.load(), 1);
}

TEST_F(Availability, ACancelledWaitNeverRuns) {
  auto out = std::make_shared<Outcome>();
  ember::WaitHandle handle;
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    auto h = waiter_->when_available(Selector::name("calc"), recorder(out), 10s);
    ASSERT_TRUE(h);
    handle = *h;
  }));
  EXPECT_TRUE(handle.cancel());
  EXPECT_FALSE(handle.cancel());
  EXPECT_EQ(watches(), 0u);
  add_calc_later(0ms);
  join();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(out->runs.load(), 0);
}

TEST_F(Availability, AReleasedModuleIsNeverCalledBack) {
  auto out = std::make_shared<Outcome>();
  ember::ModuleId id = 0;
  ember::WaitHandle handle;
  ASSERT_TRUE(run_in(*node_, "waiter", [&] {
    auto part = waiter_->add_module<ember::Module>();
    ASSERT_TRUE(part);
    id = (*part)->id();
    for (int i = 0; i < 3; ++i) {  // several waits, one release ends them all
      auto h = (*part)->when_available(Selector::name("calc"), recorder(out), 10s);
      ASSERT_TRUE(h);
      handle = *h;
    }
  }));
  EXPECT_EQ(watches(), 3u);
  ASSERT_TRUE(run_in(*node_, "waiter", [&] { EXPECT_TRUE(waiter_->release_module(id)); }));
  EXPECT_EQ(watches(), 0u);
  EXPECT_FALSE(handle.cancel());
  add_calc_later(0ms);
  join();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(out->runs.load(), 0);
}

TEST_F(Availability, WhenAvailableNeedsAnAttachedModule) {
  ember::Module detached;
  auto h = detached.when_available(
      Selector::name("calc"), [](Result<ember::Bus>) {}, 1s);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code(), Errc::bad_state);
}

}  // namespace
