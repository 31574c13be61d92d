// SPDX-License-Identifier: Apache-2.0
// Local events: publish/subscribe by type inside one node.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>

#include "core/service_core.hpp"
#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::testing::Gate;
using ember::testing::run_in;
using ember::testing::wait_for;
namespace pb = ember::test;

constexpr ember::EventType kJoined = 7;
constexpr ember::EventType kOther = 8;

class Listener : public ember::Module {
 public:
  ember::Status on_init() override {
    auto sub =
        subscribe<pb::Echo>(kJoined, [this](const pb::Echo& e, const ember::EventInfo& info) {
          if (ember::detail::ServiceCore::current() != ember::detail::ServiceCore::of(service())) {
            wrong_service.fetch_add(1);
          }
          last_publisher = info.publisher.name;
          last_trace = info.trace_id;
          std::lock_guard lock(mu);
          texts.push_back(e.text());
          got.fetch_add(1);
        });
    if (!sub) {
      return sub.error();
    }
    sub_id = *sub;
    return {};
  }
  std::atomic<int> got{0};
  std::atomic<int> wrong_service{0};
  std::string last_publisher;
  std::uint64_t last_trace = 0;
  std::mutex mu;
  std::vector<std::string> texts;
  ember::SubscriptionId sub_id;
};

class Hub : public ember::Service {
 public:
  ember::Status on_init() override {
    auto l = add_module<Listener>();
    if (!l) {
      return l.error();
    }
    listener = *l;
    return {};
  }
  Listener* listener = nullptr;
};

ember::ServiceConfig named(std::string name) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  return c;
}

pb::Echo echo(std::string text) {
  pb::Echo e;
  e.set_text(std::move(text));
  return e;
}

class Events : public ::testing::Test {
 protected:
  void SetUp() override {
    ember::NodeConfig config;
    config.worker_threads = 2;
    node_ = std::make_unique<ember::Node>(config);
    a_ = static_cast<Hub*>(*node_->add_service(std::make_unique<Hub>(), named("a")));
    b_ = static_cast<Hub*>(*node_->add_service(std::make_unique<Hub>(), named("b")));
    ASSERT_TRUE(node_->start());
  }
  std::unique_ptr<ember::Node> node_;
  Hub* a_ = nullptr;
  Hub* b_ = nullptr;
};

TEST_F(Events, EverySubscriberGetsTheEventInItsOwnMailbox) {
  ASSERT_TRUE(run_in(*node_, "a", [&] { ASSERT_TRUE(a_->publish(kJoined, echo("hello"))); }));
  ASSERT_TRUE(
      wait_for([&] { return a_->listener->got.load() == 1 && b_->listener->got.load() == 1; }));
  EXPECT_EQ(a_->listener->wrong_service.load(), 0);
  EXPECT_EQ(b_->listener->wrong_service.load(), 0);
  EXPECT_EQ(b_->listener->last_publisher, "a");
  EXPECT_NE(b_->listener->last_trace, 0u);
}

TEST_F(Events, PublishingATypeNobodyWantsIsFine) {
  EXPECT_TRUE(ember::publish(*node_, kOther, echo("void")));
}

TEST_F(Events, SystemPriorityEventsOvertakeQueuedUserEvents) {
  Gate gate;
  auto entered = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node_->post("b", gate.blocker(entered)));
  ASSERT_TRUE(wait_for([&] { return entered->load(); }));
  ASSERT_TRUE(ember::publish(*node_, kJoined, echo("u1")));
  ASSERT_TRUE(ember::publish(*node_, kJoined, echo("u2")));
  ASSERT_TRUE(ember::publish(*node_, kJoined, echo("sys"), {.priority = ember::Priority::system}));
  gate.open();
  ASSERT_TRUE(wait_for([&] { return b_->listener->got.load() == 3; }));
  std::lock_guard lock(b_->listener->mu);
  EXPECT_EQ(b_->listener->texts, (std::vector<std::string>{"sys", "u1", "u2"}));
}

TEST_F(Events, UnsubscribeAndReleaseStopDeliveries) {
  ASSERT_TRUE(
      run_in(*node_, "a", [&] { EXPECT_TRUE(a_->listener->unsubscribe(a_->listener->sub_id)); }));
  ASSERT_TRUE(run_in(*node_, "b", [&] { ASSERT_TRUE(b_->release_module(b_->listener->id())); }));
  // b's listener is gone: only a fresh sentinel subscriber in a must see the next event.
  std::atomic<int> sentinel{0};
  ASSERT_TRUE(run_in(*node_, "a", [&] {
    ASSERT_TRUE(a_->subscribe<pb::Echo>(kJoined, [&](const pb::Echo&) { sentinel.fetch_add(1); }));
  }));
  ASSERT_TRUE(ember::publish(*node_, kJoined, echo("after")));
  ASSERT_TRUE(wait_for([&] { return sentinel.load() == 1; }));
  EXPECT_EQ(a_->listener->got.load(), 0);
}

TEST_F(Events, AWrongPayloadTypeIsLoggedNotDelivered) {
  std::atomic<int> sentinel{0};
  ASSERT_TRUE(run_in(*node_, "a", [&] {
    ASSERT_TRUE(
        a_->subscribe<pb::SumReq>(kOther, [&](const pb::SumReq&) { sentinel.fetch_add(100); }));
    ASSERT_TRUE(a_->subscribe<pb::Echo>(kOther, [&](const pb::Echo&) { sentinel.fetch_add(1); }));
  }));
  ASSERT_TRUE(ember::publish(*node_, kOther, echo("typed")));
  ASSERT_TRUE(wait_for([&] { return sentinel.load() >= 1; }));
  ASSERT_TRUE(run_in(*node_, "a", [] {}));  // both deliveries have run by now
  EXPECT_EQ(sentinel.load(), 1);
  EXPECT_EQ(node_->find_service("a")->state(), ember::ServiceState::running);
}

TEST_F(Events, ScopesAreSeparateChannels) {
  // Counters per (subscriber scope): global, zone 3, zone 4 and a second zone-3 subscriber.
  std::atomic<int> global{0}, zone3{0}, zone4{0}, zone3_again{0};
  std::atomic<std::int32_t> seen_zone{-1};
  ASSERT_TRUE(run_in(*node_, "a", [&] {
    ASSERT_TRUE(a_->subscribe<pb::Echo>(kOther, [&](const pb::Echo&) { global.fetch_add(1); }));
    ASSERT_TRUE(a_->subscribe<pb::Echo>(kOther, ember::EventScope::server(3),
                                        [&](const pb::Echo&, const ember::EventInfo& info) {
                                          seen_zone = info.scope.server_id();
                                          zone3.fetch_add(1);
                                        }));
    ASSERT_TRUE(a_->subscribe<pb::Echo>(kOther, ember::EventScope::server(4),
                                        [&](const pb::Echo&) { zone4.fetch_add(1); }));
  }));
  ASSERT_TRUE(run_in(*node_, "b", [&] {
    ASSERT_TRUE(b_->subscribe<pb::Echo>(kOther, ember::EventScope::server(3),
                                        [&](const pb::Echo&) { zone3_again.fetch_add(1); }));
  }));
  ASSERT_TRUE(
      ember::publish(*node_, kOther, echo("zone 3"), {.scope = ember::EventScope::server(3)}));
  ASSERT_TRUE(ember::publish(*node_, kOther, echo("everyone")));
  ASSERT_TRUE(
      wait_for([&] { return zone3.load() == 1 && zone3_again.load() == 1 && global.load() == 1; }));
  ASSERT_TRUE(run_in(*node_, "a", [] {}));  // every delivery to a has run by now
  EXPECT_EQ(zone4.load(), 0);
  EXPECT_EQ(global.load(), 1);  // a global subscriber does not see zone events
  EXPECT_EQ(seen_zone.load(), 3);
}

}  // namespace
