// SPDX-License-Identifier: Apache-2.0
// A whole node: YAML config, lifecycle order, messages, timers, lanes, bounded drain.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ember/ember.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/service_core.hpp"
#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::testing::EventLog;
using ember::testing::Gate;
using ember::testing::run_in;
using ember::testing::wait_for;

EventLog g_log;

class Leaf : public ember::Module {
 public:
  explicit Leaf(std::string name) : name_(std::move(name)) {}
  ember::Status on_init() override {
    g_log.add("init " + name_);
    return {};
  }
  void on_release() override { g_log.add("release " + name_); }

 private:
  std::string name_;
};

class Tracked : public ember::Service {
 public:
  ember::Status on_init() override {
    g_log.add("init " + name());
    if (param("fail") == "init") {
      return ember::Error{ember::Errc::invalid_argument, "configured to fail"};
    }
    if (param("modules") == "yes") {
      auto match = add_module<Leaf>(name() + ".match");
      if (!match) {
        return match.error();
      }
      if (auto score = (*match)->add_module<Leaf>(name() + ".match.score"); !score) {
        return score.error();
      }
      if (auto chat = add_module<Leaf>(name() + ".chat"); !chat) {
        return chat.error();
      }
    }
    return {};
  }
  ember::Status on_start() override {
    g_log.add("start " + name());
    if (param("fail") == "start") {
      return ember::Error{ember::Errc::invalid_argument, "configured to fail"};
    }
    return {};
  }
  void on_started() override { g_log.add("started " + name()); }
  void on_release() override { g_log.add("release " + name()); }
};
EMBER_REGISTER_SERVICE(Tracked);

ember::NodeConfig parse(const std::string& yaml) {
  auto config = ember::parse_node_config(yaml, "node.yaml");
  EXPECT_TRUE(config) << (config ? "" : config.error().message());
  return config ? *config : ember::NodeConfig{};
}

std::vector<std::string> filter(const std::vector<std::string>& events, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    if (e.rfind(prefix, 0) == 0) {
      out.push_back(e);
    }
  }
  return out;
}

TEST(Node, StartsFromYamlRunsHooksInOrderAndStopsInReverse) {
  g_log.clear();
  ember::Node node(parse(R"(
NodeConf:
  NodeId: test-node
  WorkerThreads: 2
ServiceConf:
  StartServices:
    - ClassName: Tracked
      ServiceName: gate
    - ClassName: Tracked
      ServiceName: room
      WorkerConf: { WorkerNum: 3 }
      Params: { modules: "yes" }
    - ClassName: Tracked
      ServiceName: store
      Pinned: true
)"));
  ASSERT_TRUE(node.start());
  ASSERT_TRUE(wait_for([] { return g_log.contains("started store"); }));
  auto events = g_log.events();
  // Every on_init (config order) before any on_start; each on_start in order.
  std::vector<std::string> phases;
  for (const auto& e : events) {
    if (e.rfind("init ", 0) == 0 && e.find('.') == std::string::npos) {
      phases.push_back(e);
    }
    if (e.rfind("start ", 0) == 0) {
      phases.push_back(e);
    }
  }
  EXPECT_EQ(phases, (std::vector<std::string>{"init gate", "init room", "init store", "start gate",
                                              "start room", "start store"}));
  EXPECT_NE(node.find_service("room"), nullptr);
  EXPECT_EQ(node.find_service("room")->lane_count(), 3);
  EXPECT_EQ(node.find_service("nope"), nullptr);

  g_log.clear();
  ASSERT_TRUE(node.stop());
  EXPECT_EQ(
      filter(g_log.events(), "release"),
      (std::vector<std::string>{"release store", "release room.chat", "release room.match.score",
                                "release room.match", "release room", "release gate"}));
  EXPECT_EQ(node.find_service("gate"), nullptr);
}

TEST(Node, OnStartedIsTheFirstMessageAndVisibleBeforeIt) {
  g_log.clear();
  ember::Node node(
      parse("ServiceConf:\n  StartServices:\n    - ClassName: Tracked\n      ServiceName: solo\n"));
  ASSERT_TRUE(node.start());
  ASSERT_TRUE(run_in(node, "solo", [] { g_log.add("message"); }));
  auto events = g_log.events();
  auto started = std::find(events.begin(), events.end(), "started solo");
  auto message = std::find(events.begin(), events.end(), "message");
  ASSERT_NE(started, events.end());
  EXPECT_LT(started, message);
}

TEST(Node, UnknownClassRefusesToStartNamingLineAndKey) {
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: Tracked
    - ClassName: NoSuchService
)"));
  ember::Status st = node.start();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ember::Errc::invalid_argument);
  EXPECT_NE(st.error().message().find("node.yaml:4:"), std::string::npos) << st.error().message();
  EXPECT_NE(st.error().message().find("NoSuchService"), std::string::npos);
  EXPECT_NE(st.error().message().find("Tracked"), std::string::npos);  // lists what exists
  EXPECT_FALSE(node.running());
}

TEST(Node, UnknownClassSaysWhichRegistrationIsMissing) {
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: Arena
)"));
  ember::Status st = node.start();
  ASSERT_FALSE(st);
  const std::string& text = st.error().message();
  EXPECT_NE(text.find("node.yaml:3: ServiceConf.StartServices[0].ClassName: unknown service class "
                      "\"Arena\": no EMBER_REGISTER_SERVICE(Arena) in this program (registered: "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Tracked"), std::string::npos) << text;
}

}  // namespace

// A qualified name cannot be pasted into an identifier: the macro must not try.
namespace spaced {
class Lobby : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcPing", [](const ember::NoReply&) -> ember::Status { return {}; });
  }
};
}  // namespace spaced
EMBER_REGISTER_SERVICE(spaced::Lobby);

namespace {

TEST(Node, AQualifiedClassRegistersUnderItsNameAsWritten) {
  const auto names = ember::registered_services();
  EXPECT_NE(std::find(names.begin(), names.end(), "spaced::Lobby"), names.end());
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: spaced::Lobby
      ServiceName: lobby
)"));
  ASSERT_TRUE(node.start());
  EXPECT_TRUE(ember::select(node, ember::Selector::name("lobby"))
                  .call<ember::NoReply>("RpcPing", ember::NoReply{}));
}

TEST(Node, AClassNamedWithoutItsNamespaceNamesTheRegisteredOne) {
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: Lobby
)"));
  ember::Status st = node.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find(
                "no EMBER_REGISTER_SERVICE(Lobby) in this program; \"spaced::Lobby\" is registered "
                "(a class registers under its name as written in EMBER_REGISTER_SERVICE, namespace "
                "included)"),
            std::string::npos)
      << st.error().message();
}

TEST(Node, AnUnknownScalingStrategyRefusesToStartNamingItsKey) {
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: Tracked
      WorkerConf:
        MaxWorkerNum: 4
        Scaling: {Strategy: {Name: queue_lenght}}
)"));
  ember::Status st = node.start();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ember::Errc::invalid_argument);
  EXPECT_NE(st.error().message().find("WorkerConf.Scaling.Strategy (line 6): strategy "
                                      "queue_lenght: unknown strategy"),
            std::string::npos)
      << st.error().message();
  EXPECT_FALSE(node.running());
}

TEST(Node, FailingOnInitRollsBackWhatWasInitialized) {
  g_log.clear();
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: Tracked
      ServiceName: first
    - ClassName: Tracked
      ServiceName: second
      Params: { fail: init }
    - ClassName: Tracked
      ServiceName: third
)"));
  ember::Status st = node.start();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("configured to fail"), std::string::npos);
  EXPECT_FALSE(g_log.contains("init third"));
  EXPECT_FALSE(g_log.contains("start first"));
  EXPECT_TRUE(g_log.contains("release first"));
  EXPECT_FALSE(node.running());
}

TEST(Node, FailingOnStartStopsTheServicesAlreadyStarted) {
  g_log.clear();
  ember::Node node(parse(R"(ServiceConf:
  StartServices:
    - ClassName: Tracked
      ServiceName: a
    - ClassName: Tracked
      ServiceName: b
      Params: { fail: start }
)"));
  ASSERT_FALSE(node.start());
  EXPECT_TRUE(g_log.contains("release a"));
  EXPECT_TRUE(g_log.contains("release b"));
  EXPECT_EQ(node.find_service("a"), nullptr);
}

class Plain : public ember::Service {};
EMBER_REGISTER_SERVICE(Plain);

ember::NodeConfig one_service(std::string extra = {}) {
  return parse(
      "NodeConf:\n  WorkerThreads: 2\nServiceConf:\n  StartServices:\n    - ClassName: Plain\n"
      "      ServiceName: svc\n" +
      extra);
}

TEST(Node, HandlerThatThrowsIsLoggedAndTheServiceKeepsRunning) {
  ember::Node node(one_service());
  ASSERT_TRUE(node.start());
  ASSERT_TRUE(node.post("svc", [] { throw std::runtime_error("boom"); }, {.name = "explode"}));
  std::atomic<bool> after{false};
  ASSERT_TRUE(node.post("svc", [&] { after = true; }));
  EXPECT_TRUE(wait_for([&] { return after.load(); }));
  auto* core = node.find_service("svc");
  ASSERT_NE(core, nullptr);
  EXPECT_EQ(node.find_service("svc")->state(), ember::ServiceState::running);
}

TEST(Node, PostToUnknownServiceIsNotFound) {
  ember::Node node(one_service());
  ASSERT_TRUE(node.start());
  ember::Status st = node.post("ghost", [] {});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ember::Errc::not_found);
}

TEST(Node, StopProcessesEveryQueuedMessage) {
  ember::Node node(one_service());
  ASSERT_TRUE(node.start());
  auto handled = std::make_shared<std::atomic<int>>(0);
  Gate gate;
  ASSERT_TRUE(node.post("svc", gate.blocker()));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(node.post("svc", [handled] { handled->fetch_add(1); }));
  }
  std::thread opener([&] { gate.open(); });
  ASSERT_TRUE(node.stop());
  opener.join();
  EXPECT_EQ(handled->load(), 1000);
}

TEST(Node, DrainDeadlineRejectsTheRestInsteadOfHanging) {
  ember::Node node(parse(R"(NodeConf:
  ShutdownTimeout: 50ms
ServiceConf:
  StartServices:
    - ClassName: Plain
      ServiceName: svc
)"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("svc");
  auto handled = std::make_shared<std::atomic<int>>(0);
  Gate gate;
  ASSERT_TRUE(node.post("svc", gate.blocker()));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(node.post("svc", [handled] { handled->fetch_add(1); }));
  }
  // Unblock only after the drain deadline has passed: the queue must then be refused, not run.
  std::thread releaser([&] {
    wait_for([&] { return svc->state() == ember::ServiceState::stopped; });
    gate.open();
  });
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(node.stop());
  releaser.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(handled->load(), 0);
}

TEST(Node, BoundedMailboxRefusesOverflowWithOverloaded) {
  ember::Node node(one_service("      WorkerConf: { MailboxSize: 2 }\n"));
  ASSERT_TRUE(node.start());
  Gate gate;
  auto running = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(node.post("svc", gate.blocker(running)));
  ASSERT_TRUE(wait_for([&] { return running->load(); }));
  ASSERT_TRUE(node.post("svc", [] {}));
  ASSERT_TRUE(node.post("svc", [] {}));
  ember::Status over = node.post("svc", [] {});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ember::Errc::overloaded);
  // System priority is control traffic and bypasses the bound.
  EXPECT_TRUE(node.post("svc", [] {}, {.priority = ember::Priority::system}));
  gate.open();
}

TEST(Node, LaneCountChangesAtRunTimeKeepPerKeyOrder) {
  ember::Node node(one_service("      WorkerConf: { WorkerNum: 2, MaxWorkerNum: 8 }\n"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("svc");
  constexpr int kKeys = 32;
  constexpr int kPerKey = 300;
  std::vector<int> last(kKeys, -1);
  std::atomic<int> bad{0};
  std::atomic<int> handled{0};
  std::thread resizer([&] {
    for (int i = 0; i < 40; ++i) {
      svc->set_lane_count(1 + (i * 5) % 8);
      std::this_thread::yield();
    }
  });
  for (int seq = 0; seq < kPerKey; ++seq) {
    for (int key = 0; key < kKeys; ++key) {
      ASSERT_TRUE(
          node.post("svc",
                    [&, key, seq] {
                      if (last[key] + 1 != seq) {
                        bad.fetch_add(1);
                      }
                      last[key] = seq;
                      handled.fetch_add(1);
                    },
                    {.key = ember::DispatchKey::from_int(static_cast<std::uint64_t>(key))}));
    }
  }
  resizer.join();
  ASSERT_TRUE(wait_for([&] { return handled.load() == kKeys * kPerKey; }));
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(svc->lane_count(), 8);
}

class TimerUser : public ember::Service {};
EMBER_REGISTER_SERVICE(TimerUser);

TEST(Node, TimersFireExactlyOnceAndCancelWins) {
  ember::Node node(parse("ServiceConf:\n  StartServices:\n    - ClassName: TimerUser\n"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("TimerUser");
  std::atomic<int> once{0};
  std::atomic<int> cancelled{0};
  std::atomic<bool> sentinel{false};
  ASSERT_TRUE(run_in(node, "TimerUser", [&] {
    svc->after(10ms, [&] { once.fetch_add(1); });
    ember::TimerId doomed = svc->after(30ms, [&] { cancelled.fetch_add(1); });
    EXPECT_TRUE(svc->cancel_timer(doomed));
    EXPECT_FALSE(svc->cancel_timer(doomed));
    svc->after(80ms, [&] { sentinel = true; });
  }));
  ASSERT_TRUE(wait_for([&] { return sentinel.load(); }));
  EXPECT_EQ(once.load(), 1);
  EXPECT_EQ(cancelled.load(), 0);
}

TEST(Node, TickerAndCronRunInTheServiceMailbox) {
  ember::Node node(parse("ServiceConf:\n  StartServices:\n    - ClassName: TimerUser\n"));
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("TimerUser");
  std::atomic<int> ticks{0};
  std::atomic<int> crons{0};
  std::atomic<int> wrong_thread{0};
  ASSERT_TRUE(run_in(node, "TimerUser", [&] {
    svc->every(5ms, [&] {
      ticks.fetch_add(1);
      if (ember::detail::ServiceCore::current() == nullptr) {
        wrong_thread.fetch_add(1);
      }
    });
    auto id = svc->cron("@every 20ms", [&] { crons.fetch_add(1); });
    EXPECT_TRUE(id);
    auto bad = svc->cron("61 * * * * *", [] {});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), ember::Errc::invalid_argument);
  }));
  EXPECT_TRUE(wait_for([&] { return ticks.load() >= 5 && crons.load() >= 2; }));
  EXPECT_EQ(wrong_thread.load(), 0);
}

class Stopper : public ember::Service {
  void on_started() override {
    after(20ms, [this] { node().request_stop(); });
  }
};
EMBER_REGISTER_SERVICE(Stopper);

TEST(Node, RunReturnsAfterRequestStopFromAHandler) {
  ember::Node node(parse("ServiceConf:\n  StartServices:\n    - ClassName: Stopper\n"));
  EXPECT_EQ(node.run(), 0);
  EXPECT_FALSE(node.running());
}

TEST(Node, StopFromAHandlerIsRefused) {
  ember::Node node(one_service());
  ASSERT_TRUE(node.start());
  ember::Status inner;
  ASSERT_TRUE(run_in(node, "svc", [&] { inner = node.stop(); }));
  ASSERT_FALSE(inner);
  EXPECT_EQ(inner.error().code(), ember::Errc::bad_state);
}

TEST(Node, AddServiceBeforeAndAfterStart) {
  g_log.clear();
  ember::Node node(ember::NodeConfig{});
  ember::ServiceConfig early;
  early.name = "early";
  ASSERT_TRUE(node.add_service(std::make_unique<Tracked>(), early));
  ASSERT_TRUE(node.start());
  EXPECT_NE(node.find_service("early"), nullptr);
  ember::ServiceConfig late;
  late.name = "late";
  auto added = node.add_service(std::make_unique<Tracked>(), late);
  ASSERT_TRUE(added);
  EXPECT_EQ(node.find_service("late"), *added);
  auto dup = node.add_service(std::make_unique<Tracked>(), late);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), ember::Errc::already_exists);
  ASSERT_TRUE(node.stop_service("late"));
  EXPECT_EQ(node.find_service("late"), nullptr);
  EXPECT_TRUE(g_log.contains("release late"));
  ember::Status again = node.stop_service("late");
  EXPECT_EQ(again.error().code(), ember::Errc::not_found);
}

TEST(Node, StoppingServiceLeavesTheIndexAtOnce) {
  ember::Node node(one_service());
  ASSERT_TRUE(node.start());
  ember::Service* svc = node.find_service("svc");
  Gate gate;
  ASSERT_TRUE(node.post("svc", gate.blocker()));
  std::thread stopper([&] { (void)node.stop(); });
  ASSERT_TRUE(wait_for([&] { return svc->state() == ember::ServiceState::stopping; }));
  // The service left the index at once: from outside it is gone.
  EXPECT_EQ(node.post("svc", [] {}).error().code(), ember::Errc::not_found);
  gate.open();
  stopper.join();
}

}  // namespace

namespace {

std::atomic<int> g_pongs{0};

class Pong : public ember::Service {
 public:
  ember::Status on_init() override {
    auto outer = add_module<Leaf>("pong.outer");
    if (!outer) {
      return outer.error();
    }
    auto inner = (*outer)->add_module<Leaf>("pong.outer.inner");
    return inner ? ember::Status{} : inner.error();
  }
  void ping(int n) {
    (void)node().post("ping", [n, this] {
      auto* ping = node().find_service("ping");
      (void)ping;
      g_pongs.fetch_add(1);
      (void)n;
    });
  }
};
EMBER_REGISTER_SERVICE(Pong);

class Ping : public ember::Service {
 public:
  void on_started() override {
    every(5ms, [this] {
      auto* pong = static_cast<Pong*>(node().find_service("pong"));
      if (pong != nullptr) {
        int n = ++sent_;
        (void)node().post("pong", [pong, n] { pong->ping(n); },
                          {.key = ember::DispatchKey::from_int(1)});
      }
    });
  }

 private:
  int sent_ = 0;
};
EMBER_REGISTER_SERVICE(Ping);

TEST(Node, FullNodeFromAYamlFileExchangesMessagesFiresTimersAndStops) {
  g_log.clear();
  g_pongs = 0;
  std::string path = ::testing::TempDir() + "ember_full_node.yaml";
  {
    std::ofstream out(path);
    out << "NodeConf:\n  NodeId: ${EMBER_TEST_NODE_ID:-full}\n  WorkerThreads: 2\n"
           "ServiceConf:\n  StartServices:\n"
           "    - ClassName: Pong\n      ServiceName: pong\n      WorkerConf: { WorkerNum: 2 }\n"
           "    - ClassName: Ping\n      ServiceName: ping\n";
  }
  auto config = ember::load_node_config(path);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->node_id, "full");
  EXPECT_EQ(config->source, path);
  ember::Node node(std::move(*config));
  ASSERT_TRUE(node.start());
  EXPECT_TRUE(wait_for([] { return g_pongs.load() >= 20; }));
  ASSERT_TRUE(node.stop());
  EXPECT_EQ(filter(g_log.events(), "release"),
            (std::vector<std::string>{"release pong.outer.inner", "release pong.outer"}));
  std::remove(path.c_str());
}

}  // namespace

TEST(Errc, StreamsAsItsName) {
  std::ostringstream out;
  out << ember::Errc::timeout << ' ' << ember::Errc::invalid_argument;
  EXPECT_EQ(out.str(), "timeout invalid_argument");  // what a failed EXPECT_EQ on codes prints
}
