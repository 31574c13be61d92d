// SPDX-License-Identifier: Apache-2.0
// Messaging between local services: the verbs, every error path, nesting, cycles, deadlines,
// exactly-once completion, selectors and coroutine handlers.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>
#include <ember/rpc.hpp>
#include <set>
#include <thread>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
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
using ember::testing::ScopeExit;
using ember::testing::wait_for;
namespace pb = ember::test;

pb::SumReq sum_req(std::int64_t a, std::int64_t b) {
  pb::SumReq r;
  r.set_a(a);
  r.set_b(b);
  return r;
}

// A calculator whose behaviour the tests steer through its methods.
class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcSum", &Calc::sum); !st) {
      return st;
    }
    if (auto st = handle(
            "RpcFail",
            [](const pb::SumReq&) -> Result<pb::SumResp> {
              return ember::Error{Errc::invalid_argument, "negative numbers are not allowed"};
            });
        !st) {
      return st;
    }
    if (auto st = handle(
            "RpcThrow",
            [](const pb::SumReq&) -> Result<pb::SumResp> { throw std::runtime_error("kaboom"); });
        !st) {
      return st;
    }
    if (auto st = handle("RpcBlock",
                         [this](const pb::SumReq&) -> Result<pb::SumResp> {
                           gate_wait();
                           return pb::SumResp{};
                         });
        !st) {
      return st;
    }
    return handle("RpcProbe",
                  [](const pb::Echo& e, const ember::Context& ctx) -> Result<pb::Probe> {
                    pb::Probe p;
                    p.set_trace_id(ctx.trace_id());
                    p.set_remaining_ms(ctx.remaining().count());
                    p.set_caller(ctx.caller().name);
                    p.set_header(std::string(ctx.header("h")));
                    (void)e;
                    return p;
                  });
  }
  Result<pb::SumResp> sum(const pb::SumReq& req) {
    calls.fetch_add(1);
    pb::SumResp resp;
    resp.set_sum(req.a() + req.b());
    return resp;
  }
  void gate_wait() {
    blocking.fetch_add(1);
    auto flag = gate;
    while (flag && !flag->load()) {
      std::this_thread::yield();
    }
  }
  std::shared_ptr<std::atomic<bool>> gate;
  std::atomic<int> calls{0};
  std::atomic<int> blocking{0};  // handlers that entered RpcBlock
};

ember::ServiceConfig named(std::string name, std::string id = {}, int lanes = 1) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  c.id = std::move(id);
  c.worker.lanes = lanes;
  return c;
}

ember::NodeConfig two_threads() {
  ember::NodeConfig c;
  c.worker_threads = 2;
  return c;
}

TEST(Rpc, CallReturnsTheHandlersValue) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("calc")).call<pb::SumResp>("RpcSum", sum_req(2, 3));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 5);
}

TEST(Rpc, TypedMethodConstant) {
  static constexpr ember::Method<pb::SumReq, pb::SumResp> kSum{"RpcSum"};
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("calc")).call(kSum, sum_req(40, 2));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sum(), 42);
}

TEST(Rpc, EveryErrorPathHasItsCode) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto bus = ember::select(node, Selector::name("calc"));

  auto missing =
      ember::select(node, Selector::name("nope")).call<pb::SumResp>("RpcSum", sum_req(1, 1));
  EXPECT_EQ(missing.error().code(), Errc::not_found);

  auto no_method = bus.call<pb::SumResp>("RpcMissing", sum_req(1, 1));
  EXPECT_EQ(no_method.error().code(), Errc::no_such_method);
  EXPECT_NE(no_method.error().message().find("RpcMissing"), std::string::npos);

  pb::Echo wrong;
  auto bad_arg = bus.call<pb::SumResp>("RpcSum", wrong);
  EXPECT_EQ(bad_arg.error().code(), Errc::bad_argument_type);
  EXPECT_NE(bad_arg.error().message().find("ember.test.SumReq"), std::string::npos);

  auto bad_resp = bus.call<pb::Echo>("RpcSum", sum_req(1, 1));
  EXPECT_EQ(bad_resp.error().code(), Errc::bad_argument_type);
  // Protobuf full names, never a mangled C++ name.
  EXPECT_NE(bad_resp.error().message().find(
                "method 'RpcSum' returns ember.test.SumResp, the caller expects ember.test.Echo"),
            std::string::npos)
      << bad_resp.error().message();

  auto failed = bus.call<pb::SumResp>("RpcFail", sum_req(1, 1));
  EXPECT_EQ(failed.error().code(), Errc::invalid_argument);  // the handler's own code
  EXPECT_NE(failed.error().message().find("negative"), std::string::npos);

  auto thrown = bus.call<pb::SumResp>("RpcThrow", sum_req(1, 1));
  EXPECT_EQ(thrown.error().code(), Errc::handler_failed);
  EXPECT_NE(thrown.error().message().find("kaboom"), std::string::npos);

  // The service survives all of it.
  EXPECT_TRUE(bus.call<pb::SumResp>("RpcSum", sum_req(1, 1)));
}

TEST(Rpc, TimeoutIsReportedOnceAndTheLateReplyIsCounted) {
  ember::Node node(two_threads());
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  Gate gate;
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  auto t0 = std::chrono::steady_clock::now();
  auto r = ember::select(node, Selector::name("calc"))
               .call<pb::SumResp>("RpcBlock", sum_req(0, 0), {.timeout = 50ms});
  EXPECT_EQ(r.error().code(), Errc::timeout);
  EXPECT_NE(r.error().message().find("'RpcBlock' to calc@"), std::string::npos);
  EXPECT_NE(r.error().message().find(" timed out after 50 ms (CallOptions::timeout; the default is "
                                     "NodeConf.CallTimeout = 1000 ms)"),
            std::string::npos)
      << r.error().message();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  flag->store(true);
  EXPECT_TRUE(wait_for([&] { return node.stats().late_replies == 1; }));
  EXPECT_TRUE(wait_for([&] { return node.stats().pending_calls == 0; }));
}

TEST(Rpc, ATimeoutNamesTheSettingBehindIt) {
  ember::NodeConfig config = two_threads();
  config.call_timeout = 80ms;
  ember::Node node(config);
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  ScopeExit open([&] { flag->store(true); });
  auto r = ember::select(node, Selector::name("calc")).call<pb::SumResp>("RpcBlock", sum_req(0, 0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::timeout);
  EXPECT_NE(r.error().message().find(" timed out after 80 ms (NodeConf.CallTimeout = 80 ms, the "
                                     "default; CallOptions::timeout sets it per call)"),
            std::string::npos)
      << r.error().message();
}

TEST(Rpc, ASendOfTheWrongTypeToALocalServiceFailsAtTheSender) {
  ember::Node node(two_threads());
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto bus = ember::select(node, Selector::name("calc"));
  ember::Status st = bus.send("RpcSum", pb::Echo{});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::bad_argument_type);
  EXPECT_NE(st.error().message().find(
                "'RpcSum' to calc@" + node.config().node_id +
                ": method 'RpcSum' takes ember.test.SumReq, the request is ember.test.Echo"),
            std::string::npos)
      << st.error().message();
  // The right type still goes through, and the wrong one never reached the handler.
  ASSERT_TRUE(bus.send("RpcSum", sum_req(1, 2)));
  ASSERT_TRUE(wait_for([&] { return calc->calls.load() == 1; }));
  EXPECT_TRUE(bus.call<pb::SumResp>("RpcSum", sum_req(1, 1)));
  EXPECT_EQ(calc->calls.load(), 2);
}

TEST(Rpc, NoMatchOnANodeWithoutClusterHasNoClusterHint) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("nope")).call<pb::SumResp>("RpcSum", sum_req(1, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "no service matches name=nope");
}

TEST(Rpc, FinishedCallsFreeTheirMemory) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto bus = ember::select(node, Selector::name("calc"));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(bus.call<pb::SumResp>("RpcSum", sum_req(i, i)));
    (void)bus.call<pb::SumResp>("RpcMissing", sum_req(i, i));
  }
  EXPECT_TRUE(wait_for([&] { return node.stats().pending_calls == 0; }));
  EXPECT_EQ(node.stats().pending_timers, 0u);
  EXPECT_TRUE(node.find_service("calc")->is_private() == false);
}

TEST(Rpc, OverloadedAndStoppingAreTypedErrors) {
  ember::Node node(two_threads());
  auto cfg = named("calc");
  cfg.worker.mailbox_bound = 1;
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), cfg));
  ASSERT_TRUE(node.start());
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  auto bus = ember::select(node, Selector::name("calc"));
  std::jthread blocked(
      [&] { (void)bus.call<pb::SumResp>("RpcBlock", sum_req(0, 0), {.timeout = 5s}); });
  ScopeExit unblock([flag] { flag->store(true); });
  ASSERT_TRUE(wait_for([&] { return calc->blocking.load() == 1; }));
  // One waiting message fills the bound of 1 (the running one does not count).
  std::jthread queued(
      [&] { (void)bus.call<pb::SumResp>("RpcSum", sum_req(1, 1), {.timeout = 5s}); });
  ASSERT_TRUE(wait_for([&] { return calc->queued_messages() == 2; }));
  auto over = bus.call<pb::SumResp>("RpcSum", sum_req(1, 1));
  EXPECT_EQ(over.error().code(), Errc::overloaded);
  flag->store(true);
  blocked.join();
  queued.join();

  // A call queued behind a message that outlives the drain deadline is answered with stopping.
  ASSERT_TRUE(node.stop());
}

TEST(Rpc, QueuedCallsAreAnsweredWithStoppingWhenTheDrainDeadlinePasses) {
  ember::NodeConfig config = two_threads();
  config.shutdown_timeout = 50ms;
  ember::Node node(config);
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  auto bus = ember::select(node, Selector::name("calc"));
  std::jthread blocked(
      [&] { (void)bus.call<pb::SumResp>("RpcBlock", sum_req(0, 0), {.timeout = 10s}); });
  ScopeExit unblock([flag] { flag->store(true); });
  ASSERT_TRUE(wait_for([&] { return calc->blocking.load() == 1; }));
  Result<pb::SumResp> queued_result = ember::Error{Errc::internal, "not set"};
  std::jthread queued(
      [&] { queued_result = bus.call<pb::SumResp>("RpcSum", sum_req(1, 1), {.timeout = 10s}); });
  ASSERT_TRUE(wait_for([&] { return calc->queued_messages() == 2; }));
  std::jthread releaser([&] {
    wait_for([&] { return calc->state() == ember::ServiceState::stopped; });
    flag->store(true);
  });
  ASSERT_TRUE(node.stop());
  blocked.join();
  queued.join();
  releaser.join();
  ASSERT_FALSE(queued_result);
  EXPECT_EQ(queued_result.error().code(), Errc::stopping);
}

TEST(Rpc, DuplicateMethodNamesAreRefused) {
  class Dup : public ember::Service {
    ember::Status on_init() override {
      EXPECT_TRUE(
          handle("RpcX", [](const pb::SumReq&) -> Result<pb::SumResp> { return pb::SumResp{}; }));
      auto again =
          handle("RpcX", [](const pb::SumReq&) -> Result<pb::SumResp> { return pb::SumResp{}; });
      EXPECT_EQ(again.error().code(), Errc::already_exists);
      return {};
    }
  };
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Dup>(), named("dup")));
  ASSERT_TRUE(node.start());
}

// --- nesting and cycles ---------------------------------------------------------------------

class Relay : public ember::Service {
 public:
  explicit Relay(std::string next) : next_(std::move(next)) {}
  ember::Status on_init() override {
    return handle("RpcHop", [this](const pb::Hop& hop) -> Result<pb::Hop> {
      if (next_.empty()) {
        pb::Hop done;
        done.set_remaining(hop.remaining());
        return done;
      }
      pb::Hop forward;
      forward.set_remaining(hop.remaining() + 1);
      return select(Selector::name(next_)).call<pb::Hop>("RpcHop", forward, {.timeout = 10s});
    });
  }

 private:
  std::string next_;
};

TEST(Rpc, ChainOfFiftyNestedBlockingCallsCompletesOnTwoThreads) {
  ember::Node node(two_threads());
  constexpr int kChain = 50;
  for (int i = 0; i < kChain; ++i) {
    std::string next = i + 1 < kChain ? "relay" + std::to_string(i + 1) : "";
    ASSERT_TRUE(
        node.add_service(std::make_unique<Relay>(next), named("relay" + std::to_string(i))));
  }
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("relay0"))
               .call<pb::Hop>("RpcHop", pb::Hop{}, {.timeout = 20s});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->remaining(), kChain - 1);
}

TEST(Rpc, CycleFailsAtOnceNamingTheCycle) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Relay>("b"), named("a")));
  ASSERT_TRUE(node.add_service(std::make_unique<Relay>("c"), named("b")));
  ASSERT_TRUE(node.add_service(std::make_unique<Relay>("a"), named("c")));
  ASSERT_TRUE(node.start());
  auto t0 = std::chrono::steady_clock::now();
  auto r =
      ember::select(node, Selector::name("a")).call<pb::Hop>("RpcHop", pb::Hop{}, {.timeout = 5s});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::call_cycle) << r.error().to_string();
  EXPECT_NE(r.error().message().find("a@"), std::string::npos);
  EXPECT_NE(r.error().message().find("c@"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(Rpc, SelfCallIsACycle) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Relay>("self"), named("self")));
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("self")).call<pb::Hop>("RpcHop", pb::Hop{});
  EXPECT_EQ(r.error().code(), Errc::call_cycle);
}

// --- context propagation ---------------------------------------------------------------------

class Front : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle(
        "RpcFront", [this](const pb::Echo&, const ember::Context& ctx) -> Result<pb::Probe> {
          seen_trace = ctx.trace_id();
          seen_remaining = ctx.remaining().count();
          return select(Selector::name("calc"))
              .call<pb::Probe>("RpcProbe", pb::Echo{}, {.timeout = 10s, .headers = {{"h", "v"}}});
        });
  }
  std::atomic<std::uint64_t> seen_trace{0};
  std::atomic<std::int64_t> seen_remaining{0};
};

TEST(Rpc, NestedCallsInheritTraceIdAndRemainingDeadline) {
  ember::Node node(two_threads());
  auto* front = static_cast<Front*>(*node.add_service(std::make_unique<Front>(), named("front")));
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("front"))
               .call<pb::Probe>("RpcFront", pb::Echo{}, {.timeout = 300ms});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->trace_id(), 0u);
  EXPECT_EQ(r->trace_id(), front->seen_trace.load());
  EXPECT_LE(r->remaining_ms(), 300);  // capped by the caller's 300 ms, not the inner 10 s
  EXPECT_EQ(r->caller(), "front");
  EXPECT_EQ(r->header(), "v");
}

// Headers are per call: a nested call does not carry its caller's, and what the nested call adds
// to its own context (the blocked caller in its chain) leaves the caller's context as it was.
class HeaderKeeper : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle(
        "RpcFront", [this](const pb::Echo&, const ember::Context& ctx) -> Result<pb::Probe> {
          auto inner = select(Selector::name("calc")).call<pb::Probe>("RpcProbe", pb::Echo{});
          if (!inner) {
            return inner.error();
          }
          after_call = std::string(ctx.header("h"));
          headers_after_call = ctx.headers().size();
          return inner;
        });
  }
  std::string after_call;
  std::size_t headers_after_call = 0;
};

TEST(Rpc, HeadersStayWithTheirCallAndANestedCallLeavesTheCallersContextAlone) {
  ember::Node node(two_threads());
  auto* front =
      static_cast<HeaderKeeper*>(*node.add_service(std::make_unique<HeaderKeeper>(), named("f")));
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto r = ember::select(node, Selector::name("f"))
               .call<pb::Probe>("RpcFront", pb::Echo{}, {.headers = {{"h", "outer"}, {"x", "y"}}});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->header(), "");  // the nested call set none
  EXPECT_EQ(front->after_call, "outer");
  EXPECT_EQ(front->headers_after_call, 2u);
}

TEST(Rpc, AChangedCopyOfAContextLeavesTheOriginalAlone) {
  ember::Context original;
  auto& state = ember::detail::state(original);
  EXPECT_EQ(state.headers(), nullptr);
  EXPECT_TRUE(state.chain().empty());
  EXPECT_EQ(state.origin(), nullptr);
  state.edit().headers = std::make_shared<const ember::Headers>(ember::Headers{{"h", "v"}});
  const auto* owned = state.extras.get();
  state.edit().chain.push_back({});
  EXPECT_EQ(state.extras.get(), owned) << "a context that owns its extras alone changes them";

  ember::Context copy = original;
  EXPECT_EQ(ember::detail::state(copy).extras, state.extras) << "a copy shares them";
  ember::detail::state(copy).edit().chain.push_back({});
  ember::detail::state(copy).edit().headers.reset();
  EXPECT_EQ(original.header("h"), "v");
  EXPECT_EQ(state.chain().size(), 1u);
  EXPECT_EQ(ember::detail::state(copy).chain().size(), 2u);
  EXPECT_EQ(copy.header("h"), "");
}

// --- AsyncCall --------------------------------------------------------------------------------

class Asker : public ember::Service {
 public:
  std::atomic<int> callbacks{0};
  std::atomic<int> wrong_thread{0};
  std::atomic<int> last_code{-1};
  std::atomic<std::int64_t> last_sum{-1};
  ember::CallHandle handle_;
  std::string last_error() {
    std::lock_guard lock(mu_);
    return last_error_;
  }
  std::mutex mu_;
  std::string last_error_;

  void ask(const std::string& method, std::chrono::milliseconds timeout, bool cancel = false) {
    auto self = ember::detail::ServiceCore::current();
    auto h = select(Selector::name("calc"))
                 .async_call<pb::SumResp>(
                     method, sum_req(20, 22),
                     [this, self](Result<pb::SumResp> r) {
                       if (ember::detail::ServiceCore::current() != self) {
                         wrong_thread.fetch_add(1);
                       }
                       last_code = r ? 0 : static_cast<int>(r.error().code());
                       {
                         std::lock_guard lock(mu_);
                         last_error_ = r ? "" : r.error().message();
                       }
                       last_sum = r ? r->sum() : -1;
                       callbacks.fetch_add(1);  // last: tests read the fields above once this moves
                     },
                     {.timeout = timeout});
    ASSERT_TRUE(h);
    if (cancel) {
      EXPECT_TRUE(h->cancel());
      EXPECT_FALSE(h->cancel());
    }
  }
};

TEST(Rpc, AsyncCallRunsTheCallbackOnceOnTheCallersService) {
  ember::Node node(two_threads());
  auto* asker = static_cast<Asker*>(*node.add_service(std::make_unique<Asker>(), named("asker")));
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  ASSERT_TRUE(run_in(node, "asker", [&] { asker->ask("RpcSum", 1s); }));
  ASSERT_TRUE(wait_for([&] { return asker->callbacks.load() == 1; }));
  EXPECT_EQ(asker->last_sum.load(), 42);
  EXPECT_EQ(asker->wrong_thread.load(), 0);
  ASSERT_TRUE(run_in(node, "asker", [&] { asker->ask("RpcMissing", 1s); }));
  ASSERT_TRUE(wait_for([&] { return asker->callbacks.load() == 2; }));
  EXPECT_EQ(asker->last_code.load(), static_cast<int>(Errc::no_such_method));
}

TEST(Rpc, AsyncCallTimeoutFiresOnceAndTheLateReplyIsDropped) {
  ember::Node node(two_threads());
  auto* asker = static_cast<Asker*>(*node.add_service(std::make_unique<Asker>(), named("asker")));
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  ASSERT_TRUE(run_in(node, "asker", [&] { asker->ask("RpcBlock", 30ms); }));
  ASSERT_TRUE(wait_for([&] { return asker->callbacks.load() == 1; }));
  EXPECT_EQ(asker->last_code.load(), static_cast<int>(Errc::timeout));
  EXPECT_NE(asker->last_error().find("'RpcBlock' to calc@"), std::string::npos);
  EXPECT_NE(asker->last_error().find(" timed out after 30 ms (CallOptions::timeout; the default is "
                                     "NodeConf.CallTimeout = 1000 ms)"),
            std::string::npos)
      << asker->last_error();
  flag->store(true);
  ASSERT_TRUE(wait_for([&] { return node.stats().late_replies == 1; }));
  // A sentinel call proves the late reply did not produce a second callback.
  ASSERT_TRUE(run_in(node, "asker", [&] { asker->ask("RpcSum", 1s); }));
  ASSERT_TRUE(wait_for([&] { return asker->callbacks.load() == 2; }));
  EXPECT_EQ(asker->last_sum.load(), 42);
  // Every pending call, its timeout timer included, is gone once completed.
  EXPECT_TRUE(wait_for(
      [&] { return node.stats().pending_calls == 0 && node.stats().pending_timers == 0; }));
}

TEST(Rpc, CancelledAsyncCallNeverCallsBack) {
  ember::Node node(two_threads());
  auto* asker = static_cast<Asker*>(*node.add_service(std::make_unique<Asker>(), named("asker")));
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  // The callee is held busy until the cancel is made: otherwise, on a loaded machine, it can
  // answer between async_call and cancel, and the cancel rightly finds nothing to cancel.
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  ScopeExit open_gate([gate = calc->gate] { gate->store(true); });
  ASSERT_TRUE(node.post("calc", [calc] { calc->gate_wait(); }));
  ASSERT_TRUE(wait_for([&] { return calc->blocking.load() == 1; }));
  ASSERT_TRUE(run_in(node, "asker", [&] { asker->ask("RpcSum", 1s, /*cancel=*/true); }));
  calc->gate->store(true);
  ASSERT_TRUE(wait_for([&] { return calc->calls.load() == 1; }));
  ASSERT_TRUE(run_in(node, "asker", [&] { asker->ask("RpcSum", 1s); }));
  ASSERT_TRUE(wait_for([&] { return asker->callbacks.load() == 1; }));
  EXPECT_EQ(asker->callbacks.load(), 1);
}

TEST(Rpc, AsyncCallFromOutsideAServiceIsRefused) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  auto h = ember::select(node, Selector::name("calc"))
               .async_call<pb::SumResp>("RpcSum", sum_req(1, 1), [](Result<pb::SumResp>) {});
  EXPECT_EQ(h.error().code(), Errc::bad_state);
}

// --- Send, selectors, priorities, lanes -------------------------------------------------------

class Sink : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcPush", [this](const pb::Echo& e) -> ember::Status {
      if (last_seq[e.key()] + 1 != e.seq()) {
        out_of_order.fetch_add(1);
      }
      last_seq[e.key()] = e.seq();
      {
        std::lock_guard lock(mu);
        order.push_back(e.text());
      }
      received.fetch_add(1);  // last: a test that waits on it then reads `order` sees the entry
      if (count_into) {
        count_into->fetch_add(1);
      }
      return {};
    });
  }
  std::shared_ptr<std::atomic<int>> count_into;  // outlives the service
  std::atomic<int> received{0};
  std::atomic<int> out_of_order{0};
  std::vector<std::int64_t> last_seq = std::vector<std::int64_t>(64, -1);
  std::mutex mu;
  std::vector<std::string> order;
};

TEST(Rpc, SendReachesEveryTargetOfASelection) {
  ember::Node node(two_threads());
  std::vector<Sink*> sinks;
  for (std::string id : {"1", "2", "3"}) {
    sinks.push_back(
        static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink", id))));
  }
  ASSERT_TRUE(node.start());
  auto bus = ember::select(node, Selector::name("sink"));
  EXPECT_EQ(bus.size(), 3u);
  pb::Echo e;
  e.set_seq(0);
  ASSERT_TRUE(bus.send("RpcPush", e));
  for (Sink* s : sinks) {
    EXPECT_TRUE(wait_for([&] { return s->received.load() == 1; }));
  }
  auto ambiguous = bus.call<ember::NoReply>("RpcPush", e);
  EXPECT_EQ(ambiguous.error().code(), Errc::invalid_argument);
  auto one =
      ember::select(node, Selector::name("sink").id("2")).call<ember::NoReply>("RpcPush", [] {
        pb::Echo x;
        x.set_seq(1);
        return x;
      }());
  EXPECT_TRUE(one) << one.error().to_string();
  EXPECT_EQ(sinks[1]->received.load(), 2);
}

TEST(Rpc, SelectorsByTypeServerIdPidKeyAndPredicate) {
  ember::Node node(two_threads());
  auto add = [&](std::string name, std::string id, std::string type, int server) {
    auto c = named(std::move(name), std::move(id));
    c.type = std::move(type);
    c.server_id = server;
    ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), c));
  };
  add("room", "1", "game", 1);
  add("room", "2", "game", 2);
  add("room", "3", "game", 2);
  add("chat", "", "social", 1);
  ASSERT_TRUE(node.start());
  EXPECT_EQ(ember::select(node, Selector::type("game")).size(), 3u);
  EXPECT_EQ(ember::select(node, Selector::type("game").server_id(2)).size(), 2u);
  EXPECT_EQ(ember::select(node, Selector::all()).size(), 4u);
  EXPECT_EQ(ember::select(node, Selector::all().server_id(1)).size(), 2u);
  EXPECT_EQ(ember::select(node, Selector::name("room").role(ember::Role::slave)).size(), 0u);
  auto pid = ember::select(node, Selector::name("chat")).targets().at(0);
  EXPECT_EQ(ember::select(node, Selector::pid(pid)).targets().at(0).name, "chat");
  EXPECT_EQ(ember::select(node, Selector::all().where([](const ember::Pid& p) {
              return p.id == "3";
            })).size(),
            1u);
  // A key picks one instance, the same one every time.
  for (std::uint64_t uid = 0; uid < 20; ++uid) {
    auto a = ember::select(node, Selector::name("room").key(ember::DispatchKey::from_int(uid)))
                 .targets();
    auto b = ember::select(node, Selector::name("room").key(ember::DispatchKey::from_int(uid)))
                 .targets();
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].id, b[0].id);
  }
}

TEST(Rpc, StoppedServiceLeavesTheRepositoryAtOnce) {
  ember::Node node(two_threads());
  ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), named("sink")));
  ASSERT_TRUE(node.start());
  EXPECT_EQ(ember::select(node, Selector::name("sink")).size(), 1u);
  ASSERT_TRUE(node.stop_service("sink"));
  EXPECT_EQ(ember::select(node, Selector::name("sink")).size(), 0u);
}

TEST(Rpc, SystemPriorityRequestsOvertakeQueuedUserRequests) {
  ember::Node node(two_threads());
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  ASSERT_TRUE(node.start());
  (void)calc;
  Gate gate;
  auto entered = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("sink", gate.blocker(entered)));
  ASSERT_TRUE(wait_for([&] { return entered->load(); }));
  auto bus = ember::select(node, Selector::name("sink"));
  for (const char* text : {"u1", "u2"}) {
    pb::Echo e;
    e.set_text(text);
    e.set_seq(0);
    ASSERT_TRUE(bus.send("RpcPush", e));
  }
  pb::Echo urgent;
  urgent.set_text("sys");
  urgent.set_seq(0);
  ASSERT_TRUE(bus.send("RpcPush", urgent, {.priority = ember::Priority::system}));
  gate.open();
  ASSERT_TRUE(wait_for([&] { return sink->received.load() == 3; }));
  std::lock_guard lock(sink->mu);
  EXPECT_EQ(sink->order, (std::vector<std::string>{"sys", "u1", "u2"}));
}

TEST(Rpc, KeyedSendsKeepPerKeyOrderOnManyLanes) {
  ember::Node node(two_threads());
  auto* sink =
      static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink", "", 4)));
  ASSERT_TRUE(node.start());
  auto bus = ember::select(node, Selector::name("sink"));
  constexpr int kKeys = 16;
  constexpr int kPerKey = 200;
  for (int seq = 0; seq < kPerKey; ++seq) {
    for (std::uint64_t key = 0; key < kKeys; ++key) {
      pb::Echo e;
      e.set_key(key);
      e.set_seq(seq);
      ASSERT_TRUE(bus.send("RpcPush", e, {.key = ember::DispatchKey::from_int(key)}));
    }
  }
  ASSERT_TRUE(wait_for([&] { return sink->received.load() == kKeys * kPerKey; }));
  EXPECT_EQ(sink->out_of_order.load(), 0);
}

// --- Sends a handler makes are enqueued in batches ---------------------------------------------

pb::Echo echo(std::string text, std::int64_t seq = 0, std::uint64_t key = 0) {
  pb::Echo e;
  e.set_text(std::move(text));
  e.set_seq(seq);
  e.set_key(key);
  return e;
}

TEST(Rpc, AHandlersSendsKeepTheirOrderAcrossBatchesKeysAndCalls) {
  ember::Node node(two_threads());
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  auto* other = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("other")));
  ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), named("producer")));
  ASSERT_TRUE(node.start());
  constexpr int kSends = 300;  // several batches of SendBatch::kLimit
  std::atomic<int> refused{0};
  ASSERT_TRUE(run_in(node, "producer", [&] {
    auto to_sink = ember::select(node, Selector::name("sink"));
    auto to_other = ember::select(node, Selector::name("other"));
    for (int i = 0; i < kSends; ++i) {
      // A key and another target break a batch; a call must not overtake what was sent.
      ember::CallOptions options;
      if (i % 9 == 0) {
        options.key = ember::DispatchKey::from_int(7);
      }
      if (!to_sink.send("RpcPush", echo(std::to_string(i)), options)) {
        refused.fetch_add(1);
      }
      if (i % 7 == 0 && !to_other.send("RpcPush", echo("o"))) {
        refused.fetch_add(1);
      }
      if (i % 50 == 49) {
        auto answered = to_sink.call<ember::NoReply>("RpcPush", echo("call " + std::to_string(i)));
        EXPECT_TRUE(answered) << answered.error().to_string();
      }
    }
  }));
  EXPECT_EQ(refused.load(), 0);
  constexpr int kCalls = kSends / 50;
  ASSERT_TRUE(wait_for([&] { return sink->received.load() == kSends + kCalls; }));
  EXPECT_TRUE(wait_for([&] { return other->received.load() == (kSends + 6) / 7; }));
  std::vector<std::string> expected;
  for (int i = 0; i < kSends; ++i) {
    expected.push_back(std::to_string(i));
    if (i % 50 == 49) {
      expected.push_back("call " + std::to_string(i));
    }
  }
  std::lock_guard lock(sink->mu);
  EXPECT_EQ(sink->order, expected);
}

TEST(Rpc, WhatAHandlerSentIsDeliveredBeforeItBlocks) {
  ember::Node node(two_threads());
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), named("producer")));
  ASSERT_TRUE(node.start());
  auto done = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("producer", [&node, done] {
    auto to_sink = ember::select(node, Selector::name("sink"));
    for (int i = 0; i < 5; ++i) {
      (void)to_sink.send("RpcPush", echo(std::to_string(i)));
    }
    // Waits without posting anything: only the hook before blocking can let the Sends out.
    (void)ember::wait_for(node, Selector::name("never-started"), 3s);
    done->store(true);
  }));
  EXPECT_TRUE(wait_for([&] { return sink->received.load() == 5; }, 2s));
  EXPECT_FALSE(done->load()) << "the handler was not blocked while the sends arrived";
  EXPECT_TRUE(wait_for([&] { return done->load(); }, 10s));
}

TEST(Rpc, SendsHeldForATargetThatStopsMeanwhileAreDroppedNotLeaked) {
  ember::Node node(two_threads());
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), named("producer")));
  ASSERT_TRUE(node.start());
  // Every request holds its caller's Pid: the count of its holders shows the requests alive.
  const std::shared_ptr<const ember::Pid>& producer_pid =
      ember::detail::ServiceCore::of(*node.find_service("producer"))->shared_pid();
  const long holders_before = producer_pid.use_count();
  auto received = std::make_shared<std::atomic<int>>(0);
  sink->count_into = received;
  Gate gate;
  auto sent = std::make_shared<std::atomic<bool>>(false);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  ember::Service* producer = node.find_service("producer");
  ASSERT_TRUE(node.post("producer", [producer, sent, returned, hold = gate.blocker()] {
    auto to_sink = producer->select(Selector::name("sink"));  // the producer is the caller
    for (int i = 0; i < 10; ++i) {
      EXPECT_TRUE(to_sink.send("RpcPush", echo(std::to_string(i))));
    }
    sent->store(true);
    hold();  // a handler busy with its own work: the batch is still held
    returned->store(true);
  }));
  ASSERT_TRUE(wait_for([&] { return sent->load(); }));
  EXPECT_EQ(producer_pid.use_count(), holders_before + 10) << "the sends are not held back";
  ASSERT_TRUE(node.stop_service("sink"));  // destroys the sink
  gate.open();
  ASSERT_TRUE(wait_for([&] { return returned->load(); }));
  EXPECT_TRUE(wait_for([&] { return producer_pid.use_count() == holders_before; }))
      << producer_pid.use_count() - holders_before << " requests were never freed";
  EXPECT_EQ(received->load(), 0);
}

// Sends ten messages to "sink", then answers: the caller acts on the answer at once.
class Forwarder : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcForward", [this](const pb::Echo& e) -> Result<pb::Echo> {
      auto to_sink = select(Selector::name("sink"));
      for (int i = 0; i < 10; ++i) {
        (void)to_sink.send("RpcPush", echo(e.text() + "/" + std::to_string(i)));
      }
      return e;
    });
  }
};

TEST(Rpc, AnAnswerNeverOvertakesWhatTheAnsweringHandlerSent) {
  ember::Node node(two_threads());
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  ASSERT_TRUE(node.add_service(std::make_unique<Forwarder>(), named("forwarder")));
  ASSERT_TRUE(node.start());
  auto forwarder = ember::select(node, Selector::name("forwarder"));
  auto to_sink = ember::select(node, Selector::name("sink"));
  constexpr int kRounds = 200;
  for (int round = 0; round < kRounds; ++round) {
    // A blocking caller wakes on the answer without a post: the ten Sends must be queued by then.
    ASSERT_TRUE(forwarder.call<pb::Echo>("RpcForward", echo(std::to_string(round))));
    ASSERT_TRUE(to_sink.send("RpcPush", echo(std::to_string(round) + "/after")));
  }
  ASSERT_TRUE(wait_for([&] { return sink->received.load() == kRounds * 11; }));
  std::lock_guard lock(sink->mu);
  int overtaken = 0;
  for (std::size_t i = 0; i < sink->order.size(); i += 11) {
    for (std::size_t j = 0; j < 10; ++j) {
      if (sink->order[i + j].ends_with("/after")) {
        ++overtaken;
        break;
      }
    }
  }
  EXPECT_EQ(overtaken, 0) << "rounds in which the caller's Send came before the handler's";
}

// Records the lane each message ran on.
class LaneRecorder : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcPush", [this](const pb::Echo&) -> ember::Status {
      std::lock_guard lock(mu);
      lanes.insert(ember::detail::ServiceCore::current_lane());
      ++received;
      return {};
    });
  }
  std::mutex mu;
  std::set<int> lanes;
  int received = 0;
};

TEST(Rpc, KeylessSendsFromAHandlerSpreadOverTheTargetsLanes) {
  ember::Node node(two_threads());
  auto* pool = static_cast<LaneRecorder*>(
      *node.add_service(std::make_unique<LaneRecorder>(), named("pool", "", 4)));
  ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), named("producer")));
  ASSERT_TRUE(node.start());
  ASSERT_TRUE(run_in(node, "producer", [&] {
    auto to_pool = ember::select(node, Selector::name("pool"));
    for (int i = 0; i < 64; ++i) {
      EXPECT_TRUE(to_pool.send("RpcPush", echo(std::to_string(i))));
    }
  }));
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(pool->mu);
    return pool->received == 64;
  }));
  std::lock_guard lock(pool->mu);
  EXPECT_EQ(pool->lanes.size(), 4u) << "keyless Sends went to fewer lanes than the service has";
}

TEST(Rpc, SendsToABoundedMailboxAreCountedOneByOne) {
  ember::Node node(two_threads());
  auto cfg = named("sink");
  cfg.worker.mailbox_bound = 3;
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), cfg));
  ASSERT_TRUE(node.add_service(std::make_unique<Sink>(), named("producer")));
  ASSERT_TRUE(node.start());
  Gate gate;
  auto entered = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("sink", gate.blocker(entered)));
  ASSERT_TRUE(wait_for([&] { return entered->load(); }));
  std::vector<ember::Errc> outcomes;
  ASSERT_TRUE(run_in(node, "producer", [&] {
    auto to_sink = ember::select(node, Selector::name("sink"));
    for (int i = 0; i < 5; ++i) {
      ember::Status st = to_sink.send("RpcPush", echo(std::to_string(i)));
      outcomes.push_back(st ? ember::Errc::ok : st.error().code());
    }
  }));
  EXPECT_EQ(outcomes, (std::vector<ember::Errc>{Errc::ok, Errc::ok, Errc::ok, Errc::overloaded,
                                                Errc::overloaded}));
  gate.open();
  EXPECT_TRUE(wait_for([&] { return sink->received.load() == 3; }));
}

// --- local calls never share a mutable object ------------------------------------------------

TEST(Rpc, TheCallerMayChangeItsRequestRightAfterSending) {
  ember::Node node(two_threads());
  auto* sink = static_cast<Sink*>(*node.add_service(std::make_unique<Sink>(), named("sink")));
  ASSERT_TRUE(node.start());
  pb::Echo e;
  e.set_text("original");
  e.set_seq(0);
  ASSERT_TRUE(ember::select(node, Selector::name("sink")).send("RpcPush", e));
  e.set_text("changed");  // the callee got its own immutable copy
  ASSERT_TRUE(wait_for([&] { return sink->received.load() == 1; }));
  std::lock_guard lock(sink->mu);
  EXPECT_EQ(sink->order.at(0), "original");
}

// --- modules own their handlers ---------------------------------------------------------------

class Plugin : public ember::Module {
 public:
  ember::Status on_init() override {
    return handle("RpcPlugin", [](const pb::SumReq& r) -> Result<pb::SumResp> {
      pb::SumResp s;
      s.set_sum(r.a() * r.b());
      return s;
    });
  }
};

class PluginHost : public ember::Service {};

TEST(Rpc, AReleasedModulesHandlersGoWithIt) {
  ember::Node node(two_threads());
  auto* host = *node.add_service(std::make_unique<PluginHost>(), named("host"));
  ASSERT_TRUE(node.start());
  ember::ModuleId id = 0;
  ASSERT_TRUE(run_in(node, "host", [&] {
    auto plugin = host->add_module<Plugin>();
    ASSERT_TRUE(plugin);
    id = (*plugin)->id();
  }));
  auto bus = ember::select(node, Selector::name("host"));
  auto r = bus.call<pb::SumResp>("RpcPlugin", sum_req(6, 7));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sum(), 42);
  ASSERT_TRUE(run_in(node, "host", [&] { ASSERT_TRUE(host->release_module(id)); }));
  EXPECT_EQ(bus.call<pb::SumResp>("RpcPlugin", sum_req(6, 7)).error().code(), Errc::no_such_method);
  // The name is free again.
  ASSERT_TRUE(run_in(node, "host", [&] { EXPECT_TRUE(host->add_module<Plugin>()); }));
}

TEST(Rpc, UnhandleRemovesOnlyThisModulesHandler) {
  ember::Node node(two_threads());
  auto* host = *node.add_service(std::make_unique<PluginHost>(), named("host"));
  ASSERT_TRUE(node.start());
  Plugin* plugin = nullptr;
  ASSERT_TRUE(run_in(node, "host", [&] {
    auto added = host->add_module<Plugin>();
    ASSERT_TRUE(added);
    plugin = *added;
  }));
  auto bus = ember::select(node, Selector::name("host"));
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcPlugin", sum_req(6, 7)));
  ASSERT_TRUE(run_in(node, "host", [&] {
    // The service did not register RpcPlugin: its plugin module did.
    ember::Status foreign = host->unhandle("RpcPlugin");
    ASSERT_FALSE(foreign);
    EXPECT_EQ(foreign.error().code(), Errc::not_found);
    EXPECT_TRUE(plugin->unhandle("RpcPlugin"));
    ember::Status again = plugin->unhandle("RpcPlugin");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code(), Errc::not_found);
    EXPECT_NE(again.error().message().find("RpcPlugin"), std::string::npos);
  }));
  EXPECT_EQ(bus.call<pb::SumResp>("RpcPlugin", sum_req(6, 7)).error().code(), Errc::no_such_method);
}

TEST(Rpc, ASelectorDescribesItselfAsErrorsQuoteIt) {
  EXPECT_EQ(Selector::all().to_string(), "all");
  EXPECT_EQ(Selector::name("calc").id("1").server_id(3).role(ember::Role::any).to_string(),
            "name=calc id=1 server_id=3 role=any");
}

// --- coroutines -----------------------------------------------------------------------------

class CoFront : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcViaCoroutine", &CoFront::via); !st) {
      return st;
    }
    return handle("RpcQuick", [this](const pb::SumReq&) -> Result<pb::SumResp> {
      quick_calls.fetch_add(1);
      pb::SumResp r;
      r.set_sum(suspended.load());
      return r;
    });
  }
  ember::Task<Result<pb::SumResp>> via(const pb::SumReq& req) {
    suspended.fetch_add(1);
    auto first = co_await select(Selector::name("calc"))
                     .co_call<pb::SumResp>("RpcBlock", req, {.timeout = 10s});
    suspended.fetch_sub(1);
    if (!first) {
      co_return first.error();
    }
    auto second = co_await select(Selector::name("calc")).co_call<pb::SumResp>("RpcSum", req);
    if (!second) {
      co_return second.error();
    }
    pb::SumResp out;
    out.set_sum(second->sum() * 10);
    co_return out;
  }
  std::atomic<int> suspended{0};
  std::atomic<int> quick_calls{0};
};

TEST(Rpc, CoroutineHandlerSuspendsWithoutBlockingItsService) {
  ember::Node node(two_threads());
  auto* front =
      static_cast<CoFront*>(*node.add_service(std::make_unique<CoFront>(), named("front")));
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  Result<pb::SumResp> slow = ember::Error{Errc::internal, "unset"};
  std::jthread caller([&] {
    slow = ember::select(node, Selector::name("front"))
               .call<pb::SumResp>("RpcViaCoroutine", sum_req(1, 2), {.timeout = 10s});
  });
  ScopeExit unblock([flag] { flag->store(true); });
  ASSERT_TRUE(wait_for([&] { return front->suspended.load() == 1; }));
  // The single-lane front service answers other requests while the coroutine waits.
  auto quick =
      ember::select(node, Selector::name("front")).call<pb::SumResp>("RpcQuick", sum_req(0, 0));
  ASSERT_TRUE(quick) << quick.error().to_string();
  EXPECT_EQ(quick->sum(), 1);
  flag->store(true);
  caller.join();
  ASSERT_TRUE(slow) << slow.error().to_string();
  EXPECT_EQ(slow->sum(), 30);
}

TEST(Rpc, CoroutineSuspendedAtStopAnswersStopping) {
  ember::NodeConfig config = two_threads();
  config.shutdown_timeout = 100ms;
  ember::Node node(config);
  auto* front =
      static_cast<CoFront*>(*node.add_service(std::make_unique<CoFront>(), named("front")));
  auto* calc = static_cast<Calc*>(*node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  calc->gate = std::make_shared<std::atomic<bool>>(false);
  auto flag = calc->gate;
  Result<pb::SumResp> slow = ember::Error{Errc::internal, "unset"};
  std::jthread caller([&] {
    slow = ember::select(node, Selector::name("front"))
               .call<pb::SumResp>("RpcViaCoroutine", sum_req(1, 2), {.timeout = 10s});
  });
  ScopeExit unblock([flag] { flag->store(true); });
  ASSERT_TRUE(wait_for([&] { return front->suspended.load() == 1; }));
  ASSERT_TRUE(node.stop_service("front"));
  caller.join();
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code(), Errc::stopping);
  flag->store(true);
}

}  // namespace

namespace {

TEST(Rpc, BlockingCallsBetweenPinnedServices) {
  ember::Node node(two_threads());
  auto caller_cfg = named("front");
  caller_cfg.pinned = true;
  auto callee_cfg = named("calc");
  callee_cfg.pinned = true;
  ASSERT_TRUE(node.add_service(std::make_unique<Relay>("calc2"), caller_cfg));
  ASSERT_TRUE(node.add_service(std::make_unique<Relay>(""), [] {
    auto c = named("calc2");
    c.pinned = true;
    return c;
  }()));
  ASSERT_TRUE(node.start());
  for (int i = 0; i < 100; ++i) {
    auto r = ember::select(node, Selector::name("front"))
                 .call<pb::Hop>("RpcHop", pb::Hop{}, {.timeout = 5s});
    ASSERT_TRUE(r) << i << ": " << r.error().to_string();
  }
}

}  // namespace

namespace {

// The request and context a coroutine handler receives must stay valid across suspensions even
// when nobody else keeps them (the caller used async_call or send).
class CoKeeper : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle(
        "RpcKeep",
        [this](const pb::Echo& e, const ember::Context& ctx) -> ember::Task<ember::Status> {
          co_await select(Selector::name("calc")).co_call<pb::SumResp>("RpcSum", sum_req(1, 1));
          co_await select(Selector::name("calc")).co_call<pb::SumResp>("RpcSum", sum_req(2, 2));
          seen_text = e.text();         // the request after two suspensions
          seen_trace = ctx.trace_id();  // the context too
          seen_method = std::string(ctx.method());
          done.fetch_add(1);
          co_return ember::Status{};
        });
  }
  std::string seen_text;
  std::uint64_t seen_trace = 0;
  std::string seen_method;
  std::atomic<int> done{0};
};

TEST(Rpc, CoroutineHandlerKeepsItsRequestAndContextAcrossSuspensions) {
  ember::Node node(two_threads());
  auto* keeper =
      static_cast<CoKeeper*>(*node.add_service(std::make_unique<CoKeeper>(), named("keeper")));
  ASSERT_TRUE(node.add_service(std::make_unique<Calc>(), named("calc")));
  ASSERT_TRUE(node.start());
  {
    pb::Echo e;
    e.set_text(std::string(100, 'x'));  // long enough to live on the heap
    ASSERT_TRUE(ember::select(node, Selector::name("keeper")).send("RpcKeep", std::move(e)));
  }
  ASSERT_TRUE(wait_for([&] { return keeper->done.load() == 1; }));
  EXPECT_EQ(keeper->seen_text, std::string(100, 'x'));
  EXPECT_NE(keeper->seen_trace, 0u);
  EXPECT_EQ(keeper->seen_method, "RpcKeep");
}

}  // namespace
