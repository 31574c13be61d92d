// SPDX-License-Identifier: Apache-2.0
// Calls between two nodes over real loopback TCP: the local API, unchanged, reaching a service on
// another node; errors cross the wire with their codes; a peer that goes away fails calls at once.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>

#include "cluster/cluster_link.hpp"
#include "core/node_impl.hpp"
#include "ember/wire.pb.h"
#include "rpc/messaging.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"
#include "wire/wire_codec.hpp"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::Selector;
using ember::testing::wait_for;
namespace pb = ember::test;

class RemoteCalc : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st =
            handle("RpcSum",
                   [this](const pb::SumReq& r, const ember::Context& ctx) -> Result<pb::SumResp> {
                     last_caller = ctx.caller().name + "@" + ctx.caller().node_id;
                     last_trace = ctx.trace_id();
                     sums.fetch_add(1);
                     pb::SumResp out;
                     out.set_sum(r.a() + r.b());
                     return out;
                   });
        !st) {
      return st;
    }
    if (auto st = handle("RpcFail",
                         [](const pb::SumReq&) -> Result<pb::SumResp> {
                           return ember::Error{Errc::invalid_argument, "not today"};
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcPush",
                         [this](const pb::Echo&) -> ember::Status {
                           pushes.fetch_add(1);
                           return {};
                         });
        !st) {
      return st;
    }
    return handle("RpcHang", [this](const pb::SumReq&) -> Result<pb::SumResp> {
      hanging.store(true);
      auto flag = gate;
      while (flag && !flag->load()) {
        std::this_thread::yield();
      }
      return pb::SumResp{};
    });
  }
  std::string last_caller;
  std::uint64_t last_trace = 0;
  std::atomic<int> pushes{0};
  std::atomic<int> sums{0};
  std::atomic<bool> hanging{false};
  std::shared_ptr<std::atomic<bool>> gate = std::make_shared<std::atomic<bool>>(false);
};

class Asker : public ember::Service {
 public:
  std::atomic<int> callbacks{0};
  std::atomic<std::int64_t> last_sum{-1};
  std::atomic<int> last_code{-1};
};

ember::net::TransportOptions transport(std::string id) {
  ember::net::TransportOptions o;
  o.cluster = "test";
  o.node_id = std::move(id);
  o.secret = "s3cret";
  return o;
}

class TwoNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    ember::NodeConfig ca;
    ca.node_id = "a";
    ca.worker_threads = 2;
    ember::NodeConfig cb;
    cb.node_id = "b";
    cb.worker_threads = 2;
    a_ = std::make_unique<ember::Node>(ca);
    b_ = std::make_unique<ember::Node>(cb);
    ember::ServiceConfig calc;
    calc.name = "calc";
    calc_ = static_cast<RemoteCalc*>(*b_->add_service(std::make_unique<RemoteCalc>(), calc));
    ember::ServiceConfig asker;
    asker.name = "asker";
    asker_ = static_cast<Asker*>(*a_->add_service(std::make_unique<Asker>(), asker));
    ASSERT_TRUE(a_->start());
    ASSERT_TRUE(b_->start());
    auto la = ember::detail::ClusterLink::attach(*a_, transport("a"), "127.0.0.1");
    auto lb = ember::detail::ClusterLink::attach(*b_, transport("b"), "127.0.0.1");
    ASSERT_TRUE(la && lb);
    link_a_ = *la;
    link_b_ = *lb;
    // What discovery will do: a's repository learns about b's calc.
    auto pid = std::make_shared<ember::Pid>(b_->find_service("calc") != nullptr ? remote_calc_pid()
                                                                                : ember::Pid{});
    ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*a_))
        .repository()
        .add(pid, nullptr);
  }
  void TearDown() override {
    calc_->gate->store(true);
    link_a_->stop();
    link_b_->stop();
    (void)a_->stop();
    (void)b_->stop();
  }
  ember::Pid remote_calc_pid() const {
    ember::Pid p;
    p.node_id = "b";
    p.name = "calc";
    p.address = link_b_->address();
    return p;
  }
  pb::SumReq sum(int a, int b) {
    pb::SumReq r;
    r.set_a(a);
    r.set_b(b);
    return r;
  }

  std::unique_ptr<ember::Node> a_;
  std::unique_ptr<ember::Node> b_;
  RemoteCalc* calc_ = nullptr;
  Asker* asker_ = nullptr;
  std::shared_ptr<ember::detail::ClusterLink> link_a_;
  std::shared_ptr<ember::detail::ClusterLink> link_b_;
};

TEST_F(TwoNodes, CallReachesAServiceOnAnotherNode) {
  auto bus = ember::select(*a_, Selector::name("calc"));
  ASSERT_EQ(bus.size(), 1u);
  EXPECT_EQ(bus.targets()[0].node_id, "b");
  auto r = bus.call<pb::SumResp>("RpcSum", sum(20, 22));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 42);
  EXPECT_EQ(calc_->last_caller, "@a");  // from outside any service of node a
  EXPECT_NE(calc_->last_trace, 0u);
}

TEST_F(TwoNodes, ErrorsCrossTheWireWithTheirCodes) {
  auto bus = ember::select(*a_, Selector::name("calc"));
  EXPECT_EQ(bus.call<pb::SumResp>("RpcNope", sum(1, 1)).error().code(), Errc::no_such_method);
  EXPECT_EQ(bus.call<pb::SumResp>("RpcFail", sum(1, 1)).error().code(), Errc::invalid_argument);
  EXPECT_EQ(bus.call<pb::SumResp>("RpcSum", pb::Echo{}).error().code(), Errc::bad_argument_type);
  EXPECT_EQ(bus.call<pb::Echo>("RpcSum", sum(1, 1)).error().code(), Errc::bad_argument_type);
  auto slow = bus.call<pb::SumResp>("RpcHang", sum(1, 1), {.timeout = 100ms});
  EXPECT_EQ(slow.error().code(), Errc::timeout);
}

TEST_F(TwoNodes, AServiceTheNodeDoesNotHostIsUnavailableNotRun) {
  ember::Pid ghost = remote_calc_pid();
  ghost.name = "ghost";
  ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*a_))
      .repository()
      .add(std::make_shared<ember::Pid>(ghost), nullptr);
  auto r = ember::select(*a_, Selector::name("ghost")).call<pb::SumResp>("RpcSum", sum(1, 1));
  ASSERT_FALSE(r);
  // a's view is behind b's: nothing ran, and asking again (once a's view caught up) is safe.
  EXPECT_EQ(r.error().code(), Errc::unavailable);
}

TEST_F(TwoNodes, SendAndAsyncCallWorkAcrossNodes) {
  pb::Echo e;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(ember::select(*a_, Selector::name("calc")).send("RpcPush", e));
  }
  ASSERT_TRUE(wait_for([&] { return calc_->pushes.load() == 100; }));
  ASSERT_TRUE(a_->post("asker", [this] {
    auto h = asker_->select(Selector::name("calc"))
                 .async_call<pb::SumResp>("RpcSum", sum(2, 3), [this](Result<pb::SumResp> r) {
                   asker_->last_sum = r ? r->sum() : -1;
                   asker_->callbacks.fetch_add(1);
                 });
    EXPECT_TRUE(h);
  }));
  ASSERT_TRUE(wait_for([&] { return asker_->callbacks.load() == 1; }));
  EXPECT_EQ(asker_->last_sum.load(), 5);
}

TEST_F(TwoNodes, APeerThatGoesAwayFailsItsPendingCallsAtOnce) {
  Result<pb::SumResp> result = ember::Error{Errc::internal, "unset"};
  std::jthread caller([&] {
    result = ember::select(*a_, Selector::name("calc"))
                 .call<pb::SumResp>("RpcHang", sum(1, 1), {.timeout = 20s});
  });
  // In b's handler, so it was sent: b's loss leaves its outcome unknown (node_unreachable).
  ASSERT_TRUE(wait_for([&] { return calc_->hanging.load(); }));
  auto t0 = std::chrono::steady_clock::now();
  link_b_->stop();  // node b leaves: its connection closes
  caller.join();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), Errc::node_unreachable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

}  // namespace

namespace {

TEST_F(TwoNodes, StoppingTheCallingNodeFailsItsRemoteCalls) {
  Result<pb::SumResp> result = ember::Error{Errc::internal, "unset"};
  std::jthread caller([&] {
    result = ember::select(*a_, Selector::name("calc"))
                 .call<pb::SumResp>("RpcHang", sum(1, 1), {.timeout = 20s});
  });
  // In b's handler: the request left a and waits for its reply in a's link.
  ASSERT_TRUE(wait_for([&] { return calc_->hanging.load(); }));
  ASSERT_TRUE(a_->stop());  // drains a's services, then leaves the cluster
  caller.join();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), Errc::node_unreachable);
}

}  // namespace

namespace {

TEST_F(TwoNodes, ARestartedCallerWithTheSameIdIsNotTakenForARetry) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(ember::select(*a_, Selector::name("calc")).call<pb::SumResp>("RpcSum", sum(i, 1)));
  }
  link_a_->stop();
  ASSERT_TRUE(a_->stop());
  // Node a comes back as a new process would: same node id, request ids starting over.
  ember::NodeConfig ca;
  ca.node_id = "a";
  ca.worker_threads = 2;
  a_ = std::make_unique<ember::Node>(ca);
  ember::ServiceConfig asker;
  asker.name = "asker";
  asker_ = static_cast<Asker*>(*a_->add_service(std::make_unique<Asker>(), asker));
  ASSERT_TRUE(a_->start());
  auto la = ember::detail::ClusterLink::attach(*a_, transport("a"), "127.0.0.1");
  ASSERT_TRUE(la);
  link_a_ = *la;
  ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*a_))
      .repository()
      .add(std::make_shared<ember::Pid>(remote_calc_pid()), nullptr);
  for (int i = 0; i < 5; ++i) {
    auto r = ember::select(*a_, Selector::name("calc"))
                 .call<pb::SumResp>("RpcSum", sum(i, 1), {.timeout = 3s});
    ASSERT_TRUE(r) << i << ": " << r.error().to_string();
    EXPECT_EQ(r->sum(), i + 1);
  }
  EXPECT_EQ(link_b_->duplicates_dropped(), 0u);
}

}  // namespace

namespace {

// A retried request (same sender, incarnation and id) runs once; neighbours swapped by concurrent
// senders still run.
TEST_F(TwoNodes, ARetriedRequestRunsOnce) {
  auto frame = [&](std::uint64_t incarnation, std::uint64_t id) {
    ember::wire::Envelope envelope;
    auto* r = envelope.mutable_request();
    r->set_id(id);
    r->set_incarnation(incarnation);
    r->set_target_uid(remote_calc_pid().uid());
    r->set_method("RpcPush");
    r->set_payload_type(pb::Echo::descriptor()->full_name());
    r->set_payload(pb::Echo{}.SerializeAsString());
    return envelope.SerializeAsString();
  };
  link_b_->on_frame("x", frame(1, 10));
  link_b_->on_frame("x", frame(1, 10));  // the retry
  link_b_->on_frame("x", frame(1, 9));   // an earlier id arriving late
  link_b_->on_frame("x", frame(1, 9));
  link_b_->on_frame("x", frame(2, 10));  // the sender restarted: a new request
  ASSERT_TRUE(wait_for([&] { return calc_->pushes.load() == 3; }));
  EXPECT_EQ(link_b_->duplicates_dropped(), 2u);
}

}  // namespace

namespace {

// --- deadlines across the wire ----------------------------------------------------------------

TEST(WireDeadline, TheReceiverKeepsTheEarlierOfTheRelativeAndTheWallClockDeadline) {
  using ember::detail::local_deadline;
  using ember::detail::to_wire_deadline;
  using SteadyClock = std::chrono::steady_clock;
  using WallClock = std::chrono::system_clock;
  const auto now = SteadyClock::now();
  const auto wall = WallClock::now();
  const auto wall_us = [&](std::chrono::microseconds offset) {
    return std::chrono::duration_cast<std::chrono::microseconds>(wall.time_since_epoch() + offset)
        .count();
  };
  // Neither: no deadline (a Send without timeout).
  EXPECT_EQ(local_deadline(0, 0, now, wall), SteadyClock::time_point::max());
  // Relative only (an older sender): as before, from the time the frame is read.
  EXPECT_EQ(local_deadline(1000, 0, now, wall), now + 1000ms);
  // The frame waited 3 s before it could be read: only the wall clock knows.
  EXPECT_EQ(local_deadline(1000, wall_us(-2s), now, wall), now - 2s);
  // A wall-clock deadline later than the relative one (this clock behind the caller's): the
  // relative timeout bounds how late the request can run.
  EXPECT_EQ(local_deadline(1000, wall_us(5s), now, wall), now + 1000ms);
  EXPECT_EQ(local_deadline(0, wall_us(500ms), now, wall), now + 500ms);
  // Hostile values do not overflow the clock.
  const auto far = local_deadline(INT64_MAX, INT64_MAX, now, wall);
  EXPECT_GT(far, now + std::chrono::hours(24 * 365));
  EXPECT_LT(local_deadline(1000, 1, now, wall), now);  // 1970: long gone
  // The sender's two forms describe one instant.
  const auto sent = to_wire_deadline(now + 1500ms, now, wall);
  EXPECT_EQ(sent.timeout_ms, 1500);
  EXPECT_EQ(sent.deadline_unix_us, wall_us(1500ms));
  EXPECT_EQ(to_wire_deadline(now - 10ms, now, wall).timeout_ms, 1);  // passed: still a deadline
}

// Frames as another node would send them, straight into node b's link.
TEST_F(TwoNodes, AFrameWhoseWallClockDeadlinePassedIsDroppedUnrun) {
  std::uint64_t next_id = 1;
  auto frame = [&](std::int64_t timeout_ms, std::int64_t deadline_unix_us) {
    ember::wire::Envelope envelope;
    auto* r = envelope.mutable_request();
    r->set_id(next_id++);
    r->set_incarnation(7);
    r->set_target_uid(remote_calc_pid().uid());
    r->set_method("RpcPush");
    r->set_payload_type(pb::Echo::descriptor()->full_name());
    r->set_payload(pb::Echo{}.SerializeAsString());
    r->set_timeout_ms(timeout_ms);
    r->set_deadline_unix_us(deadline_unix_us);
    return envelope.SerializeAsString();
  };
  const auto wall_us = [](std::chrono::microseconds offset) {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch() + offset)
        .count();
  };
  // 10 s left by the relative timeout, but its wall-clock deadline passed a second ago: it sat
  // somewhere (a socket buffer of a paused node) for longer than its caller waits.
  link_b_->on_frame("x", frame(10'000, wall_us(-1s)));
  ASSERT_TRUE(wait_for([&] { return b_->stats().expired == 1; }));
  // Without the wall-clock field (an older sender) the relative timeout alone decides.
  link_b_->on_frame("x", frame(10'000, 0));
  // Both in the future.
  link_b_->on_frame("x", frame(10'000, wall_us(10s)));
  ASSERT_TRUE(wait_for([&] { return calc_->pushes.load() == 2; }));
  EXPECT_EQ(b_->stats().expired, 1u);
  EXPECT_EQ(b_->find_service("calc")->expired_requests(), 1u);
}

TEST_F(TwoNodes, ARemoteRequestThatExpiredInTheCalleesMailboxDoesNotRun) {
  // b's calc is held by a long handler; a timed Send and a call queue behind it.
  auto bus = ember::select(*a_, Selector::name("calc"));
  ASSERT_TRUE(bus.send("RpcHang", sum(0, 0)));
  ASSERT_TRUE(wait_for([&] { return calc_->hanging.load(); }));
  pb::Echo e;
  ASSERT_TRUE(bus.send("RpcPush", e, {.timeout = 200ms}));
  auto r = bus.call<pb::SumResp>("RpcSum", sum(1, 2), {.timeout = 200ms});  // the Send's passed
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::timeout);
  ASSERT_TRUE(wait_for([&] { return b_->find_service("calc")->queued_messages() == 3; }));
  calc_->gate->store(true);
  ASSERT_TRUE(wait_for([&] { return b_->stats().expired == 2; }));
  // The timeout answer crosses the wire after a gave up: a late reply, not a second outcome.
  ASSERT_TRUE(wait_for([&] { return a_->stats().late_replies == 1; }));
  auto after = bus.call<pb::SumResp>("RpcSum", sum(2, 3));
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(calc_->sums.load(), 1);  // only the last one
  EXPECT_EQ(calc_->pushes.load(), 0);
}

TEST_F(TwoNodes, NoMatchInAClusterMentionsPrivateServices) {
  auto r = ember::select(*a_, Selector::name("lobby")).call<pb::SumResp>("RpcSum", sum(1, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::not_found);
  EXPECT_EQ(r.error().message(),
            "no service matches name=lobby (a service on another node is visible only if one of "
            "its methods starts with \"Rpc\" or \"RPC\"; one without is private and reachable from "
            "its own "
            "node only)");
}

TEST(RemoteCall, ADifferentClusterSecretIsWhatTheCallerIsTold) {
  ember::NodeConfig ca;
  ca.node_id = "a";
  ca.worker_threads = 2;
  ember::NodeConfig cb;
  cb.node_id = "b";
  cb.worker_threads = 2;
  ember::Node a(ca);
  ember::Node b(cb);
  ember::ServiceConfig calc;
  calc.name = "calc";
  ASSERT_TRUE(b.add_service(std::make_unique<RemoteCalc>(), calc));
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  auto other = transport("b");
  other.secret = "another";
  auto la = ember::detail::ClusterLink::attach(a, transport("a"), "127.0.0.1");
  auto lb = ember::detail::ClusterLink::attach(b, other, "127.0.0.1");
  ASSERT_TRUE(la && lb);
  ember::Pid pid;
  pid.node_id = "b";
  pid.name = "calc";
  pid.address = (*lb)->address();
  ember::detail::Messaging::of(ember::detail::NodeAccess::impl(a))
      .repository()
      .add(std::make_shared<ember::Pid>(pid), nullptr);
  const std::string expected = "handshake with b (" + pid.address +
                               ") refused: cluster secret does not match (b proved another "
                               "ClusterConf.Secret than this node's)";
  auto bus = ember::select(a, Selector::name("calc"));
  auto r = bus.call<pb::SumResp>("RpcSum", pb::SumReq{}, {.timeout = 3s});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::node_unreachable);
  EXPECT_EQ(r.error().message(), expected);
  // The next call, while the transport backs off, fails at once and says the same.
  auto again = bus.call<pb::SumResp>("RpcSum", pb::SumReq{}, {.timeout = 3s});
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find(expected), std::string::npos) << again.error().message();
  (*la)->stop();
  (*lb)->stop();
  (void)a.stop();
  (void)b.stop();
}

}  // namespace

namespace {

// --- framing a stream of requests from cached bytes ---------------------------------------------

std::shared_ptr<const ember::Pid> make_pid(std::string name, std::string node,
                                           std::uint64_t epoch) {
  auto pid = std::make_shared<ember::Pid>();
  pid->name = std::move(name);
  pid->node_id = std::move(node);
  pid->id = "7";
  pid->type = "calc";
  pid->server_id = 3;
  pid->master = true;
  pid->epoch = epoch;
  pid->version = 12;
  return pid;
}

ember::wire::Envelope parse_frame(const std::string& frame) {
  ember::wire::Envelope envelope;
  EXPECT_TRUE(envelope.ParseFromString(frame));
  return envelope;
}

// The receiver must not be able to tell the two framings apart, request after request, whatever
// changes between them (target, caller, method, types, deadline, key, priority, trace id).
TEST(RequestFramer, FramesWhatTheFullEncoderFrames) {
  using ember::detail::CallSpec;
  using ember::detail::RequestFramer;
  using ember::detail::RequestIdentity;
  std::vector<std::shared_ptr<const ember::Pid>> targets;
  for (int i = 0; i < 6; ++i) {  // more than the framer keeps: entries are replaced
    targets.push_back(make_pid("calc" + std::to_string(i), "node-b", 0));
  }
  auto caller = make_pid("client", "node-a", 4);
  RequestFramer framer;
  std::string fast;
  std::string full;
  ember::wire::RemoteRequest reused;
  for (int round = 0; round < 200; ++round) {
    const bool wants_reply = round % 3 == 0;
    pb::Echo echo;
    echo.set_text(round % 5 == 0 ? "" : "payload " + std::to_string(round));
    echo.set_seq(round);
    pb::SumResp prototype;
    CallSpec spec;
    spec.method = round % 2 == 0 ? "RpcEcho" : "RpcEchoAgain";
    spec.request = std::make_shared<pb::Echo>(echo);
    spec.response_prototype = wants_reply ? &prototype : nullptr;
    if (round % 7 == 0) {
      spec.request = std::make_shared<pb::Echo>();  // an empty payload has no bytes at all
    }
    ember::Context context;
    auto& state = ember::detail::state(context);
    state.caller = round % 4 == 0 ? nullptr : caller;
    state.trace_id = round % 6 == 0 ? 0 : 0x1234567890abcdefULL + static_cast<unsigned>(round);
    state.priority = round % 8 == 0 ? ember::Priority::system : ember::Priority::user;
    if (round % 3 == 1) {
      state.key = ember::DispatchKey::from_int(static_cast<std::uint64_t>(round));
    }
    if (round % 2 == 1) {
      state.deadline = ember::Context::Clock::now() + std::chrono::milliseconds(500 + round);
    }
    const auto& target = targets[static_cast<std::size_t>(round) % targets.size()];
    const RequestIdentity identity{static_cast<std::uint64_t>(round) * 1000,
                                   round % 9 == 0 ? 0 : 0xfeedfacecafebeefULL};
    const std::string address = round % 10 == 0 ? "" : "127.0.0.1:7001";
    bool framed = false;
    ASSERT_TRUE(framer.frame(target, spec, context, identity, wants_reply, address, fast, framed));
    ASSERT_TRUE(framed);
    ASSERT_TRUE(ember::detail::encode_request(*target, spec, context, identity, wants_reply,
                                              address, reused));
    ember::detail::frame_request(reused, full);
    ember::wire::Envelope a = parse_frame(fast);
    ember::wire::Envelope b = parse_frame(full);
    // Deadlines are read from the clock by each encoder: compare them apart, within a bound.
    auto* ra = a.mutable_request();
    auto* rb = b.mutable_request();
    EXPECT_NEAR(static_cast<double>(ra->deadline_unix_us()),
                static_cast<double>(rb->deadline_unix_us()), 50'000);
    EXPECT_NEAR(static_cast<double>(ra->timeout_ms()), static_cast<double>(rb->timeout_ms()), 50);
    EXPECT_EQ(ra->timeout_ms() == 0, rb->timeout_ms() == 0);
    ra->clear_deadline_unix_us();
    rb->clear_deadline_unix_us();
    ra->clear_timeout_ms();
    rb->clear_timeout_ms();
    ASSERT_EQ(a.SerializeAsString(), b.SerializeAsString()) << "round " << round;
    ASSERT_EQ(ra->target_uid(), target->uid());
  }
}

// Headers and an origin are rare and varied: such requests take the full encoder.
TEST(RequestFramer, LeavesRequestsWithHeadersToTheFullEncoder) {
  ember::detail::RequestFramer framer;
  ember::detail::CallSpec spec;
  spec.method = "RpcEcho";
  spec.request = std::make_shared<pb::Echo>();
  ember::Context context;
  ember::detail::state(context).edit().headers =
      std::make_shared<const ember::Headers>(ember::Headers{{"k", "v"}});
  std::string frame = "untouched";
  bool framed = true;
  ASSERT_TRUE(
      framer.frame(make_pid("calc", "node-b", 0), spec, context, {1, 2}, false, "", frame, framed));
  EXPECT_FALSE(framed);
  EXPECT_EQ(frame, "untouched");
}

}  // namespace
