// SPDX-License-Identifier: Apache-2.0
// Requests whose deadline passed while they were queued are dropped before their handler runs:
// counted, answered with timeout when their caller still waits, and never run late.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>
#include <ember/rpc.hpp>
#include <thread>
#include <vector>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/calls.hpp"
#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::Selector;
using ember::testing::Gate;
using ember::testing::run_in;
using ember::testing::wait_for;
namespace pb = ember::test;

pb::SumReq sum_req(std::int64_t a, std::int64_t b) {
  pb::SumReq r;
  r.set_a(a);
  r.set_b(b);
  return r;
}

/// Counts the handlers that ran: an expired request must not add to it.
class Ledger : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcAdd", [this](const pb::SumReq& r) -> Result<pb::SumResp> {
      runs.fetch_add(1);
      pb::SumResp out;
      out.set_sum(r.a() + r.b());
      return out;
    });
  }
  std::atomic<int> runs{0};
};

/// Callers of the other kinds: an async_call callback and a coroutine awaiting co_call.
class Client : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcRelay", [this](const pb::SumReq& r) -> ember::Task<Result<pb::SumResp>> {
      auto out = co_await select(Selector::name("ledger"))
                     .co_call<pb::SumResp>("RpcAdd", r, {.timeout = 100ms});
      co_return out;
    });
  }
  void ask() {
    auto h = select(Selector::name("ledger"))
                 .async_call<pb::SumResp>("RpcAdd", sum_req(1, 1),
                                          [this](Result<pb::SumResp> r) {
                                            async_code = r ? 0 : static_cast<int>(r.error().code());
                                            async_callbacks.fetch_add(1);
                                          },
                                          {.timeout = 100ms});
    EXPECT_TRUE(h);
  }
  std::atomic<int> async_callbacks{0};
  std::atomic<int> async_code{-1};
};

ember::ServiceConfig named(std::string name) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  return c;
}

ember::NodeConfig two_threads() {
  ember::NodeConfig c;
  c.node_id = "n1";
  c.worker_threads = 2;
  return c;
}

TEST(Deadline, QueuedRequestsThatExpiredDoNotRunAndTheirCallersGetTimeout) {
  ember::Node node(two_threads());
  auto* ledger =
      static_cast<Ledger*>(*node.add_service(std::make_unique<Ledger>(), named("ledger")));
  auto* client =
      static_cast<Client*>(*node.add_service(std::make_unique<Client>(), named("client")));
  ASSERT_TRUE(node.start());
  auto bus = ember::select(node, Selector::name("ledger"));

  // A slow handler holds the ledger's only lane; everything below queues behind it.
  Gate gate;
  auto entered = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("ledger", gate.blocker(entered)));
  ASSERT_TRUE(wait_for([&] { return entered->load(); }));

  // Callers with short deadlines: blocking, async_call, co_call, and Sends with a timeout.
  constexpr int kBlocking = 3;
  std::vector<Result<pb::SumResp>> blocking(kBlocking, ember::Error{Errc::internal, "unset"});
  std::vector<std::jthread> threads;
  for (int i = 0; i < kBlocking; ++i) {
    threads.emplace_back([&, i] {
      blocking[i] = bus.call<pb::SumResp>("RpcAdd", sum_req(i, 1), {.timeout = 100ms});
    });
  }
  ASSERT_TRUE(run_in(node, "client", [&] { client->ask(); }));
  Result<pb::SumResp> relayed = ember::Error{Errc::internal, "unset"};
  threads.emplace_back([&] {
    relayed = ember::select(node, Selector::name("client"))
                  .call<pb::SumResp>("RpcRelay", sum_req(2, 2), {.timeout = 10s});
  });
  constexpr int kTimedSends = 3;
  for (int i = 0; i < kTimedSends; ++i) {
    ASSERT_TRUE(bus.send("RpcAdd", sum_req(i, 2), {.timeout = 100ms}));
  }
  // No caller waits for a Send, so nothing below waits out its deadline: the test does. The
  // callers above can give up before it (they called earlier), and a Send dequeued before its
  // deadline rightly runs.
  const auto sends_expire = std::chrono::steady_clock::now() + 100ms;
  // Requests without a deadline never expire: these Sends must still run.
  constexpr int kPlainSends = 2;
  for (int i = 0; i < kPlainSends; ++i) {
    ASSERT_TRUE(bus.send("RpcAdd", sum_req(i, 3)));
  }
  constexpr int kExpiring = kBlocking + 1 + 1 + kTimedSends;  // + async_call + co_call
  // Queued, or running (the blocker): every request is in the mailbox before any deadline passes
  // unless the machine stalls for 100 ms, in which case the late ones simply queue later.
  ASSERT_TRUE(wait_for([&] {
    return node.find_service("ledger")->queued_messages() == 1 + kExpiring + kPlainSends;
  }));

  // Every caller gives up while the lane is still held.
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_TRUE(wait_for([&] { return client->async_callbacks.load() == 1; }));
  for (const auto& r : blocking) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Errc::timeout) << r.error().to_string();
  }
  EXPECT_EQ(client->async_code.load(), static_cast<int>(Errc::timeout));
  ASSERT_FALSE(relayed);
  EXPECT_EQ(relayed.error().code(), Errc::timeout) << relayed.error().to_string();
  EXPECT_EQ(node.stats().expired, 0u);
  ASSERT_TRUE(wait_for([&] { return std::chrono::steady_clock::now() > sends_expire; }));

  gate.open();
  ASSERT_TRUE(wait_for([&] { return node.stats().expired == kExpiring; }))
      << node.stats().expired << " expired, " << ledger->runs.load() << " ran";
  ASSERT_TRUE(wait_for([&] { return ledger->runs.load() == kPlainSends; }));
  // One more request proves the lane got past every queued one, and nothing expired ran.
  auto after = bus.call<pb::SumResp>("RpcAdd", sum_req(20, 22));
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(after->sum(), 42);
  EXPECT_EQ(ledger->runs.load(), kPlainSends + 1);
  EXPECT_EQ(node.stats().expired, static_cast<std::uint64_t>(kExpiring));
  EXPECT_EQ(node.find_service("ledger")->expired_requests(), static_cast<std::uint64_t>(kExpiring));
  EXPECT_EQ(node.find_service("client")->expired_requests(), 0u);
  // Callers that had given up are not answered again, so nothing counts as a late reply, and
  // the async callback ran exactly once.
  EXPECT_EQ(node.stats().late_replies, 0u);
  EXPECT_EQ(client->async_callbacks.load(), 1);
  EXPECT_TRUE(wait_for([&] { return node.stats().pending_calls == 0; }));
}

// A caller can still be waiting when its request expires (its clock ran on another node, or the
// wall-clock deadline of a remote request was earlier): it is told why.
TEST(Deadline, ACallerStillWaitingIsToldTheRequestExpiredBeforeItsHandlerRan) {
  ember::Node node(two_threads());
  auto* ledger =
      static_cast<Ledger*>(*node.add_service(std::make_unique<Ledger>(), named("ledger")));
  ASSERT_TRUE(node.start());
  namespace d = ember::detail;
  auto pending = std::make_shared<d::PendingCall>(d::PendingCall::Mode::blocking,
                                                  &ember::detail::NodeAccess::impl(node));
  ember::Context ctx;
  ember::detail::state(ctx).deadline = ember::Context::Clock::now() - 1500ms;
  auto* request = new d::Request("RpcAdd", std::make_shared<const pb::SumReq>(sum_req(1, 2)),
                                 &typeid(pb::SumResp), &pb::SumResp::default_instance(),
                                 std::make_shared<d::LocalResponder>(pending), std::move(ctx));
  ASSERT_TRUE(d::ServiceCore::of(*node.find_service("ledger"))->post(request, true));
  ASSERT_TRUE(wait_for([&] { return pending->ready.load(); }));
  auto result = d::take_result(*pending);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), Errc::timeout);
  const std::string& text = result.error().message();
  EXPECT_NE(text.find("'RpcAdd' expired 15"), std::string::npos) << text;  // 1500 ms and more
  EXPECT_NE(text.find("before its handler could run on n1/ledger"), std::string::npos) << text;
  EXPECT_EQ(ledger->runs.load(), 0);
  EXPECT_EQ(node.stats().expired, 1u);
}

// A Send's deadline is its own timeout only: the deadline of the handler that sends it does not
// apply to a one-way message.
TEST(Deadline, ASendFromAHandlerDoesNotInheritTheHandlersDeadline) {
  ember::Node node(two_threads());
  auto* ledger =
      static_cast<Ledger*>(*node.add_service(std::make_unique<Ledger>(), named("ledger")));
  ASSERT_TRUE(node.add_service(std::make_unique<Client>(), named("client")));
  ASSERT_TRUE(node.start());
  Gate gate;
  auto entered = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("ledger", gate.blocker(entered)));
  ASSERT_TRUE(wait_for([&] { return entered->load(); }));
  // The handler's own deadline is 50 ms; the Send it makes has none.
  ember::Context parent;
  ember::detail::state(parent).deadline = ember::Context::Clock::now() + 50ms;
  ASSERT_TRUE(run_in(node, "client", [&] {
    ember::detail::ContextScope scope(&parent);
    EXPECT_TRUE(node.find_service("client")
                    ->select(Selector::name("ledger"))
                    .send("RpcAdd", sum_req(1, 1)));
  }));
  ASSERT_TRUE(wait_for(
      [&] { return ember::Context::Clock::now() > ember::detail::state(parent).deadline + 50ms; }));
  gate.open();
  ASSERT_TRUE(wait_for([&] { return ledger->runs.load() == 1; }));
  EXPECT_EQ(node.stats().expired, 0u);
}

}  // namespace
