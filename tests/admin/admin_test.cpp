// SPDX-License-Identifier: Apache-2.0
// The admin listener of one node, over real HTTP: metrics after known traffic (and promtool's
// verdict on them), the bearer token, health and readiness, and the operator's actions.
#include "admin/admin.hpp"

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <ember/client.hpp>
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/node_impl.hpp"
#include "gate/gate_services.hpp"
#include "support/http_client.hpp"
#include "support/prometheus_text.hpp"
#include "support/raw_socket.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::testing::http_get;
using ember::testing::http_post;
using ember::testing::series_value;
using ember::testing::wait_for;
namespace pb = ember::test;

constexpr ember::EventType kTick = 41;

// A service whose handlers the tests steer: a sum, a failure, a slow one, a blocking one.
class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcSum",
                         [](const pb::SumReq& r) -> Result<pb::SumResp> {
                           pb::SumResp out;
                           out.set_sum(r.a() + r.b());
                           return out;
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcFail",
                         [](const pb::SumReq&) -> Result<pb::SumResp> {
                           return ember::Error{Errc::invalid_argument, "no"};
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcSlow",
                         [](const pb::SumReq& r) -> Result<pb::SumResp> {
                           std::this_thread::sleep_for(std::chrono::milliseconds(r.a()));
                           return pb::SumResp{};
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcBlock",
                         [this](const pb::SumReq&) -> Result<pb::SumResp> {
                           blocked.fetch_add(1);
                           (void)wait_for([&] { return release.load(); }, 20s);
                           finished.fetch_add(1);
                           return pb::SumResp{};
                         });
        !st) {
      return st;
    }
    auto sub = subscribe<pb::Echo>(kTick, [this](const pb::Echo&) { ticks.fetch_add(1); });
    return sub ? ember::ok_status() : ember::Status(sub.error());
  }
  void on_retire() override { retired_hook.store(true); }

  std::atomic<int> blocked{0};
  std::atomic<int> finished{0};
  std::atomic<bool> release{false};
  std::atomic<int> ticks{0};
  std::atomic<bool> retired_hook{false};
};

ember::ServiceConfig named(std::string name, std::string id = {}) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  c.id = std::move(id);
  return c;
}

pb::SumReq sum(std::int64_t a, std::int64_t b) {
  pb::SumReq r;
  r.set_a(a);
  r.set_b(b);
  return r;
}

struct AdminNode {
  explicit AdminNode(const std::string& admin_conf = "AdminConf: {}\n",
                     const std::string& extra = "") {
    auto cfg = ember::parse_node_config(
        "NodeConf: {NodeId: admin-test, WorkerThreads: 2}\n" + admin_conf + extra, "test");
    EXPECT_TRUE(cfg) << cfg.error().to_string();
    node = std::make_unique<ember::Node>(std::move(*cfg));
    calc = static_cast<Calc*>(*node->add_service(std::make_unique<Calc>(), named("calc")));
  }
  ember::Status start() {
    ember::Status started = node->start();
    if (started) {
      address = ember::admin::Admin::of(ember::detail::NodeAccess::impl(*node))->address();
    }
    return started;
  }
  ~AdminNode() {
    if (calc != nullptr) {
      calc->release.store(true);
    }
    (void)node->stop();
  }
  ember::Bus calc_bus() { return ember::select(*node, ember::Selector::name("calc")); }

  std::unique_ptr<ember::Node> node;
  Calc* calc = nullptr;
  std::string address;
};

TEST(AdminMetrics, KnownTrafficShowsItsCountsPerServiceAndCode) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  auto bus = n.calc_bus();
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(bus.call<pb::SumResp>("RpcSum", sum(i, 1)));
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(bus.call<pb::SumResp>("RpcFail", sum(i, 1)));
  }
  for (int i = 0; i < 4; ++i) {
    pb::Echo e;
    e.set_text("tick");
    ASSERT_TRUE(ember::publish(*n.node, kTick, e));
  }
  ASSERT_TRUE(wait_for([&] { return n.calc->ticks.load() == 4; }));

  const auto scrape = http_get(n.address, "/metrics");
  ASSERT_EQ(scrape.status, 200) << scrape.error << scrape.body;
  EXPECT_EQ(scrape.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = scrape.body;
  EXPECT_EQ(series_value(m, R"(ember_service_calls_total{service="calc",id="",code="ok"})"), 50);
  // A handler's own error goes back with its code.
  EXPECT_EQ(
      series_value(m, R"(ember_service_calls_total{service="calc",id="",code="invalid_argument"})"),
      3);
  EXPECT_EQ(series_value(m, "ember_events_published_total"), 4);
  EXPECT_EQ(series_value(m, "ember_events_delivered_total"), 4);
  // 53 calls, 4 events and on_started: every message the service ran, each timed once.
  const double handled = series_value(m, R"(ember_service_messages_total{service="calc",id=""})");
  EXPECT_EQ(handled, 58);
  EXPECT_EQ(series_value(m, R"(ember_service_handler_seconds_count{service="calc",id=""})"),
            handled);
  EXPECT_EQ(
      series_value(m, R"(ember_service_handler_seconds_bucket{service="calc",id="",le="+Inf"})"),
      handled);
  EXPECT_EQ(series_value(m, R"(ember_service_queue_wait_seconds_count{service="calc",id=""})"),
            handled);
  EXPECT_GE(series_value(m, R"(ember_service_handler_seconds_sum{service="calc",id=""})"), 0);
  EXPECT_EQ(series_value(m, R"(ember_service_queued_messages{service="calc",id=""})"), 0);
  EXPECT_EQ(series_value(m, R"(ember_service_lanes{service="calc",id=""})"), 1);
  EXPECT_EQ(series_value(m, R"(ember_node_info{node="admin-test",version=")" +
                                std::string(EMBER_TEST_VERSION) + "\"}"),
            1);
  EXPECT_EQ(series_value(m, "ember_node_ready"), 1);
  EXPECT_GT(series_value(m, "process_resident_memory_bytes"), 1e6);
  EXPECT_GT(series_value(m, "process_open_fds"), 3);
  EXPECT_GE(series_value(m, "process_threads"), 4);  // main, 2 workers, timer, admin
}

TEST(AdminMetrics, PromtoolChecksTheScrapeWithoutAProblem) {
  ember::testing::ScratchDir scratch("ember-promtool");
  AdminNode n("AdminConf: {SlowHandler: 1ms}\n");
  ASSERT_TRUE(n.start());
  auto bus = n.calc_bus();
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcSum", sum(1, 2)));
  ASSERT_FALSE(bus.call<pb::SumResp>("RpcFail", sum(1, 2)));
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcSlow", sum(3, 0)));  // a slow-handler series too
  const auto scrape = http_get(n.address, "/metrics");
  ASSERT_EQ(scrape.status, 200);
  ASSERT_EQ(std::system("command -v promtool > /dev/null"), 0)
      << "promtool is missing: run scripts/setup.sh (Debian package prometheus)";
  const auto [rc, printed] = ember::testing::promtool_check(scrape.body, scratch.path().string());
  EXPECT_EQ(rc, 0) << printed << "\n--- scrape ---\n" << scrape.body;
  EXPECT_EQ(printed.find("problem"), std::string::npos) << printed;
}

TEST(AdminAuth, EveryPageButTheProbesNeedsTheToken) {
  AdminNode n("AdminConf: {Token: s3cret-admin-token-0123}\n");
  ASSERT_TRUE(n.start());
  const std::string token = "s3cret-admin-token-0123";
  EXPECT_EQ(http_get(n.address, "/metrics").status, 401);
  EXPECT_EQ(http_get(n.address, "/metrics", "wrong-token-wrong-token").status, 401);
  EXPECT_EQ(http_get(n.address, "/metrics", token + "x").status, 401);
  EXPECT_EQ(http_get(n.address, "/api/node").status, 401);
  EXPECT_EQ(http_post(n.address, "/api/log-level?level=debug").status, 401);
  EXPECT_EQ(ember::log_level(), ember::LogLevel::info);  // the refused action did nothing
  EXPECT_EQ(http_get(n.address, "/metrics", token).status, 200);
  EXPECT_EQ(http_get(n.address, "/api/node", token).status, 200);
  EXPECT_EQ(http_get(n.address, "/healthz").status, 200);
  EXPECT_EQ(http_get(n.address, "/readyz").status, 200);
}

TEST(AdminListener, GarbageAndAFloodOfIdleConnectionsDoNotLockTheProbesOut) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  // Bytes that are not HTTP: answered 400, then closed.
  const int garbage = ember::testing::connect_to(n.address);
  ASSERT_GE(garbage, 0);
  const std::string junk = "\x16\x03\x01 this is not http\r\n\r\n";
  ASSERT_EQ(::send(garbage, junk.data(), junk.size(), 0), static_cast<ssize_t>(junk.size()));
  char reply[64] = {};
  ASSERT_GT(::recv(garbage, reply, sizeof reply - 1, 0), 0);
  EXPECT_EQ(std::string(reply).rfind("HTTP/1.1 400", 0), 0u) << reply;
  ::close(garbage);
  // A header over the limit: refused, not buffered.
  const int big = ember::testing::connect_to(n.address);
  const std::string huge =
      "GET /healthz HTTP/1.1\r\nX-Pad: " + std::string(20000, 'a') + "\r\n\r\n";
  (void)::send(big, huge.data(), huge.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(ember::testing::closed_by_peer(big));
  ::close(big);
  // 300 connections that say nothing: the oldest make way, and the probe still gets in.
  std::vector<int> idle;
  for (int i = 0; i < 300; ++i) {
    const int fd = ember::testing::connect_to(n.address);
    ASSERT_GE(fd, 0) << i;
    idle.push_back(fd);
  }
  const auto probe = http_get(n.address, "/healthz");
  EXPECT_EQ(probe.status, 200) << probe.error;
  EXPECT_EQ(http_get(n.address, "/readyz").status, 200);
  for (int fd : idle) {
    ::close(fd);
  }
}

// Holds the node's lifecycle (add_service waits for its start) until released.
class SlowStarter : public ember::Service {
 public:
  ember::Status on_start() override {
    starting.store(true);
    (void)wait_for([&] { return release.load(); }, 20s);
    return ember::ok_status();
  }
  std::atomic<bool> starting{false};
  std::atomic<bool> release{false};
};

TEST(AdminListener, ProbesAnswerWhileAnActionWaits) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  auto starter = std::make_unique<SlowStarter>();
  SlowStarter* slow = starter.get();
  std::thread adding([&] { (void)n.node->add_service(std::move(starter), named("slow-starter")); });
  struct Release {
    SlowStarter* s;
    std::thread& t;
    ~Release() {
      s->release.store(true);
      t.join();
    }
  } release{slow, adding};
  ASSERT_TRUE(wait_for([&] { return slow->starting.load(); }));
  // The retire waits for the lifecycle a service start holds, and gives up after 2 s.
  std::atomic<bool> retire_done{false};
  ember::testing::HttpReply retire;
  std::thread retiring([&] {
    retire = http_post(n.address, "/api/retire?service=calc");
    retire_done.store(true);
  });
  int answered_meanwhile = 0;
  int late = 0;
  while (!retire_done.load()) {
    const auto probe = ember::testing::http_request(n.address, "GET", "/healthz", {}, 1s);
    if (probe.status == 200 && !retire_done.load()) {
      ++answered_meanwhile;
    } else if (probe.status != 200) {
      ++late;
    }
  }
  retiring.join();
  EXPECT_EQ(retire.status, 503) << retire.body;
  EXPECT_EQ(late, 0);
  EXPECT_GT(answered_meanwhile, 0);
}

TEST(AdminListener, RefusesRebindingNamesAndActionsFromOtherSites) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  using Headers = std::vector<std::pair<std::string, std::string>>;
  auto request = [&](const std::string& method, const std::string& target, Headers headers) {
    return ember::testing::http_request(n.address, method, target, {}, 10s, headers);
  };
  const std::string port = n.address.substr(n.address.rfind(':') + 1);
  // A name that is not this listener's: a page that rebound its own name to 127.0.0.1.
  EXPECT_EQ(request("GET", "/api/node", {{"Host", "evil.example:" + port}}).status, 403);
  EXPECT_EQ(request("GET", "/", {{"Host", "evil.example:" + port}}).status, 403);
  EXPECT_EQ(request("GET", "/healthz", {{"Host", "evil.example:" + port}}).status, 200);
  EXPECT_EQ(request("GET", "/api/node", {{"Host", "localhost:" + port}}).status, 200);
  // An action posted from another site's page: refused, and nothing changed.
  ember::set_log_level(ember::LogLevel::info);
  const auto forged =
      request("POST", "/api/log-level?level=off", {{"Origin", "http://evil.example"}});
  EXPECT_EQ(forged.status, 403) << forged.body;
  EXPECT_EQ(ember::log_level(), ember::LogLevel::info);
  const auto own =
      request("POST", "/api/log-level?level=info", {{"Origin", "http://" + n.address}});
  EXPECT_EQ(own.status, 200) << own.body;
}

TEST(AdminListener, StoppingTheNodeClosesTheConnectionsItHolds) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  const int idle = ember::testing::connect_to(n.address);
  ASSERT_GE(idle, 0);
  // Accepted before the stop: a probe on the same port answered after it connected.
  ASSERT_EQ(http_get(n.address, "/healthz").status, 200);
  ASSERT_TRUE(n.node->stop());
  n.calc = nullptr;  // freed by the stop
  EXPECT_TRUE(ember::testing::closed_by_peer(idle));
  ::close(idle);
}

TEST(AdminConfig, AListenerOtherMachinesReachNeedsAToken) {
  auto open = ember::parse_node_config("AdminConf: {ListenAddr: \"0.0.0.0:9464\"}\n", "t");
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message().find("Token"), std::string::npos) << open.error().message();
  auto short_token =
      ember::parse_node_config("AdminConf: {ListenAddr: \"0.0.0.0:9464\", Token: short}\n", "t");
  ASSERT_FALSE(short_token);
  auto fine = ember::parse_node_config(
      "AdminConf: {ListenAddr: \"0.0.0.0:9464\", Token: abcdefghijklmnop}\n", "t");
  EXPECT_TRUE(fine) << fine.error().to_string();
  auto order = ember::parse_node_config("AdminConf: {SlowHandler: 2s, VerySlowHandler: 1s}\n", "t");
  ASSERT_FALSE(order);
  EXPECT_NE(order.error().message().find("VerySlowHandler"), std::string::npos);
}

TEST(AdminActions, RetireStopsNewSelectionsWhileTheServiceFinishesItsQueue) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  auto bus = n.calc_bus();
  // One call runs and blocks; four more wait behind it in the mailbox.
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 5; ++i) {
    callers.emplace_back([&, i] {
      auto r = bus.call<pb::SumResp>("RpcBlock", sum(i, 0), {.timeout = 20s});
      (r ? ok : failed).fetch_add(1);
    });
  }
  struct Join {
    std::vector<std::thread>& threads;
    AdminNode& n;
    ~Join() {
      if (n.calc != nullptr) {
        n.calc->release.store(true);
      }
      for (auto& t : threads) {
        t.join();
      }
    }
  } join{callers, n};
  // The running message counts as queued until it ends: all five are in.
  ASSERT_TRUE(wait_for([&] {
    return n.calc->blocked.load() == 1 && n.calc->queued_messages() == 5;
  })) << n.calc->blocked.load()
      << " blocked, " << n.calc->queued_messages() << " queued";
  const auto retired = http_post(n.address, "/api/retire?service=calc");
  ASSERT_EQ(retired.status, 200) << retired.body;
  EXPECT_TRUE(n.calc->retired());
  // Nobody selects it any more.
  auto after = n.calc_bus().call<pb::SumResp>("RpcSum", sum(1, 1), {.timeout = 1s});
  ASSERT_FALSE(after);
  EXPECT_TRUE(after.error().code() == Errc::not_found || after.error().code() == Errc::unavailable)
      << after.error().to_string();
  EXPECT_EQ(n.node->find_service("calc"), nullptr);
  // What it had runs to the end.
  n.calc->release.store(true);
  ASSERT_TRUE(wait_for([&] { return ok.load() == 5; })) << ok.load() << " ok, " << failed.load();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_TRUE(wait_for([&] { return n.calc->retired_hook.load(); }));
  // Retiring twice, or what does not exist, says so.
  EXPECT_EQ(http_post(n.address, "/api/retire?service=calc").status, 409);
  EXPECT_EQ(http_post(n.address, "/api/retire?service=ghost").status, 404);
  EXPECT_EQ(http_post(n.address, "/api/retire").status, 400);
  const auto services = http_get(n.address, "/api/services");
  EXPECT_NE(services.body.find(R"("retired":true)"), std::string::npos) << services.body;
  // Stopping a retired service still drains and releases it.
  EXPECT_TRUE(n.node->stop_service("calc"));
  n.calc = nullptr;
}

TEST(AdminActions, LogLevelChangesAndBadArgumentsAreRefused) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  const auto bad = http_post(n.address, "/api/log-level?level=loud");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(ember::log_level(), ember::LogLevel::info);
  const auto set = http_post(n.address, "/api/log-level?level=warn");
  EXPECT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(ember::log_level(), ember::LogLevel::warn);
  EXPECT_NE(http_get(n.address, "/api/node").body.find(R"("log_level":"warn")"), std::string::npos);
  ember::set_log_level(ember::LogLevel::info);
  EXPECT_EQ(http_post(n.address, "/api/no-such-action").status, 404);
  EXPECT_EQ(http_get(n.address, "/api/no-such-topic").status, 404);
  EXPECT_EQ(ember::testing::http_request(n.address, "DELETE", "/api/node").status, 405);
}

// The process's log into a file for one test, then back to the console at info.
struct CapturedLog {
  explicit CapturedLog(const char* name)
      : scratch(name), file((scratch.path() / "node.log").string()) {
    EXPECT_TRUE(ember::configure_logging(ember::LogLevel::info, file));
  }
  ~CapturedLog() {
    ember::set_log_level(ember::LogLevel::info);
    (void)ember::configure_logging(ember::LogLevel::info);
  }
  // What was logged so far.
  std::string text() const {
    ember::flush_logs();
    std::ifstream in(file);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }
  ember::testing::ScratchDir scratch;
  std::string file;
};

TEST(AdminActions, EveryActionIsLoggedWithWhoAsked) {
  const CapturedLog log("ember-audit");
  AdminNode n;
  ASSERT_TRUE(n.start());
  const auto set = ember::testing::http_request(n.address, "POST", "/api/log-level?level=error", {},
                                                10s, {{"X-Ember-Operator", "alice"}});
  ASSERT_EQ(set.status, 200) << set.body;
  const auto refused = ember::testing::http_request(n.address, "POST", "/api/retire?service=ghost",
                                                    {}, 10s, {{"X-Ember-Operator", "bob"}});
  ASSERT_EQ(refused.status, 404) << refused.body;
  const std::string text = log.text();
  // Logged above the level just set: an operator's action is never filtered out.
  EXPECT_NE(text.find("admin: log level set to error (asked by alice@127.0.0.1:"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("admin: retire ghost refused: no service ghost (asked by bob@127.0.0.1:"),
            std::string::npos)
      << text;
}

// A client request's trace id: on the gateway's line for it and on the backend handler's lines.
class Tracer : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcNote", [this](const pb::Echo& e) -> Result<pb::Echo> {
      log().info("noting {}", e.text());
      return e;
    });
  }
};

TEST(AdminTrace, AClientRequestsTraceIdIsOnTheGatewaysLineAndTheHandlers) {
  const CapturedLog log("ember-gate-trace");
  AdminNode n("AdminConf: {}\n",
              "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
              "  Routes: [tracer.*]\n");
  ASSERT_TRUE(n.node->add_service(std::make_unique<ember::testing::TestAuth>(), named("auth")));
  ASSERT_TRUE(n.node->add_service(std::make_unique<Tracer>(), named("tracer")));
  ASSERT_TRUE(n.start());
  // The gateway's line is at debug: an operator turns it on when following a request.
  ASSERT_EQ(http_post(n.address, "/api/log-level?level=debug").status, 200);
  const std::string url = "ws://" + ember::gate::Gate::of(*n.node).websocket_address() + "/ws";
  auto alice = ember::client::Client::connect({.url = url, .token = "alice", .timeout = 5s});
  ASSERT_TRUE(alice) << alice.error().to_string();
  pb::Echo e;
  e.set_text("note-42");
  ASSERT_TRUE((*alice)->call<pb::Echo>("tracer.RpcNote", e));
  const std::string text = log.text();
  std::istringstream lines(text);
  std::string line;
  std::string gate_line;
  std::string handler_line;
  while (std::getline(lines, line)) {
    if (line.find("gateway: uid alice calls tracer.RpcNote") != std::string::npos)
      gate_line = line;
    if (line.find("noting note-42") != std::string::npos)
      handler_line = line;
  }
  ASSERT_FALSE(gate_line.empty()) << text;
  ASSERT_FALSE(handler_line.empty()) << text;
  const auto trace_of = [](const std::string& l) {
    const auto at = l.find("[trace ");
    return at == std::string::npos ? std::string() : l.substr(at + 7, 16);
  };
  ASSERT_EQ(trace_of(gate_line).size(), 16u) << gate_line;
  EXPECT_EQ(trace_of(handler_line), trace_of(gate_line)) << gate_line << "\n" << handler_line;
}

TEST(AdminSlow, SlowHandlersAreCountedPerMethodAndLoggedWithTheirTrace) {
  const CapturedLog log("ember-slow");
  AdminNode n("AdminConf: {SlowHandler: 20ms, VerySlowHandler: 200ms}\n");
  ASSERT_TRUE(n.start());
  auto bus = n.calc_bus();
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcSlow", sum(30, 0)));   // slow
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcSlow", sum(250, 0)));  // very slow
  ASSERT_TRUE(bus.call<pb::SumResp>("RpcSum", sum(1, 0)));     // fast: not listed
  const auto scrape = http_get(n.address, "/metrics");
  EXPECT_EQ(
      series_value(
          scrape.body,
          R"(ember_service_slow_handlers_total{service="calc",id="",method="RpcSlow",level="slow"})"),
      2);
  EXPECT_EQ(
      series_value(
          scrape.body,
          R"(ember_service_slow_handlers_total{service="calc",id="",method="RpcSlow",level="very_slow"})"),
      1);
  EXPECT_TRUE(std::isnan(series_value(
      scrape.body,
      R"(ember_service_slow_handlers_total{service="calc",id="",method="RpcSum",level="slow"})")));
  const auto slow = http_get(n.address, "/api/slow");
  ASSERT_EQ(slow.status, 200);
  EXPECT_NE(slow.body.find(R"("method":"RpcSlow")"), std::string::npos) << slow.body;
  EXPECT_EQ(slow.body.find("RpcSum"), std::string::npos) << slow.body;
  // The log line names the method and the trace, so a grep finds the request's other lines.
  const std::string text = log.text();
  EXPECT_NE(text.find("slow handler 'RpcSlow'"), std::string::npos) << text;
  EXPECT_NE(text.find("very slow handler 'RpcSlow'"), std::string::npos) << text;
  EXPECT_NE(text.find("(trace "), std::string::npos) << text;
}

TEST(AdminHealth, HealthzFailsWhileEveryWorkerIsStuckAndRecovers) {
  AdminNode n("AdminConf: {HealthStall: 1s}\n");
  ASSERT_TRUE(n.start());
  ASSERT_TRUE(wait_for([&] { return http_get(n.address, "/healthz").status == 200; }));
  // Both workers stuck in handlers: no heartbeat gets through.
  auto bus = n.calc_bus();
  ember::Service* second = *n.node->add_service(std::make_unique<Calc>(), named("calc2"));
  auto* other = static_cast<Calc*>(second);
  std::thread first([&] { (void)bus.call<pb::SumResp>("RpcBlock", sum(0, 0), {.timeout = 20s}); });
  std::thread second_call([&] {
    (void)ember::select(*n.node, ember::Selector::name("calc2"))
        .call<pb::SumResp>("RpcBlock", sum(0, 0), {.timeout = 20s});
  });
  struct Join {
    Calc* a;
    Calc* b;
    std::thread& t1;
    std::thread& t2;
    ~Join() {
      a->release.store(true);
      b->release.store(true);
      t1.join();
      t2.join();
    }
  } join{n.calc, other, first, second_call};
  ASSERT_TRUE(wait_for([&] { return n.calc->blocked.load() == 1 && other->blocked.load() == 1; }));
  ember::testing::HttpReply sick;
  ASSERT_TRUE(wait_for(
      [&] {
        sick = http_get(n.address, "/healthz");
        return sick.status == 503;
      },
      10s))
      << sick.status << " " << sick.body;
  EXPECT_NE(sick.body.find("worker"), std::string::npos) << sick.body;
  n.calc->release.store(true);
  other->release.store(true);
  EXPECT_TRUE(wait_for([&] { return http_get(n.address, "/healthz").status == 200; }, 10s));
}

TEST(AdminReadiness, ReadyOnceStartedAndNotWhileTheGatewayDrains) {
  AdminNode n("AdminConf: {}\n",
              "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
              "  Routes: [lobby.*]\n");
  ASSERT_TRUE(n.node->add_service(std::make_unique<ember::testing::TestAuth>(), named("auth")));
  ASSERT_TRUE(n.node->add_service(std::make_unique<ember::testing::TestLobby>(), named("lobby")));
  ASSERT_TRUE(n.start());
  EXPECT_EQ(http_get(n.address, "/readyz").status, 200);
  const auto drained = http_post(n.address, "/api/drain");
  EXPECT_EQ(drained.status, 200) << drained.body;
  const auto ready = http_get(n.address, "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("draining"), std::string::npos) << ready.body;
  EXPECT_EQ(http_get(n.address, "/healthz").status, 200);  // draining is not sick
  EXPECT_NE(http_get(n.address, "/api/node").body.find(R"("draining":true)"), std::string::npos);
}

TEST(AdminReadiness, NotReadyFromTheMomentTheNodeStartsToStop) {
  AdminNode n;
  ASSERT_TRUE(n.start());
  EXPECT_EQ(http_get(n.address, "/readyz").status, 200);
  // A handler holds the stop in its drain; meanwhile the probes still answer.
  auto bus = n.calc_bus();
  std::thread caller([&] { (void)bus.call<pb::SumResp>("RpcBlock", sum(0, 0), {.timeout = 20s}); });
  ASSERT_TRUE(wait_for([&] { return n.calc->blocked.load() == 1; }));
  std::thread stopper([&] { (void)n.node->stop(); });
  ember::testing::HttpReply ready;
  EXPECT_TRUE(wait_for(
      [&] {
        ready = http_get(n.address, "/readyz");
        return ready.status == 503;
      },
      10s))
      << ready.status << " " << ready.body << ready.error;
  EXPECT_NE(ready.body.find("stopping"), std::string::npos) << ready.body;
  EXPECT_EQ(http_get(n.address, "/healthz").status, 200);
  n.calc->release.store(true);
  stopper.join();
  caller.join();
  n.calc = nullptr;  // freed with the node's services
  // Stopped: the listener is closed.
  EXPECT_EQ(http_get(n.address, "/healthz").status, 0);
}

TEST(AdminActions, KickByUidClosesThePlayersConnectionWithTheReason) {
  AdminNode n("AdminConf: {}\n",
              "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
              "  Routes: [lobby.*]\n");
  ASSERT_TRUE(n.node->add_service(std::make_unique<ember::testing::TestAuth>(), named("auth")));
  ASSERT_TRUE(n.node->add_service(std::make_unique<ember::testing::TestLobby>(), named("lobby")));
  ASSERT_TRUE(n.start());
  const std::string url = "ws://" + ember::gate::Gate::of(*n.node).websocket_address() + "/ws";
  auto alice = ember::client::Client::connect({.url = url, .token = "alice", .timeout = 5s});
  ASSERT_TRUE(alice) << alice.error().to_string();
  const auto found = http_get(n.address, "/api/sessions?uid=alice");
  ASSERT_EQ(found.status, 200);
  EXPECT_NE(found.body.find(R"("online":true)"), std::string::npos) << found.body;
  EXPECT_NE(http_get(n.address, "/api/sessions?uid=bob").body.find(R"("online":false)"),
            std::string::npos);
  const auto kicked = http_post(n.address, "/api/kick?uid=alice&reason=cheating+detected");
  ASSERT_EQ(kicked.status, 200) << kicked.body;
  ASSERT_TRUE((*alice)->wait_closed(5s));
  ASSERT_TRUE((*alice)->kicked());
  EXPECT_EQ((*alice)->kicked()->reason, "cheating detected");
  EXPECT_EQ(http_post(n.address, "/api/kick?uid=nobody-here").status, 404);
  EXPECT_EQ(http_post(n.address, "/api/kick").status, 400);
}

}  // namespace

namespace {

// The node.yaml of the example Kubernetes config map, as a node in a pod would read it.
TEST(DeployManifests, TheExampleNodeConfigIsOneANodeAccepts) {
  std::ifstream file(std::string(EMBER_SOURCE_DIR) + "/deploy/k8s/ember-config.yaml");
  ASSERT_TRUE(file) << "deploy/k8s/ember-config.yaml is missing";
  std::string line;
  std::string node_yaml;
  bool inside = false;
  while (std::getline(file, line)) {
    if (line.find("node.yaml: |") != std::string::npos) {
      inside = true;
      continue;
    }
    if (inside) {
      if (!line.empty() && line.rfind("    ", 0) != 0) {
        break;
      }
      node_yaml += (line.size() >= 4 ? line.substr(4) : std::string()) + "\n";
    }
  }
  ASSERT_FALSE(node_yaml.empty());
  setenv("POD_NAME", "ember-0", 1);
  setenv("POD_IP", "10.1.2.3", 1);
  setenv("EMBER_CLUSTER_SECRET", "a-cluster-secret-of-some-length", 1);
  setenv("EMBER_ADMIN_TOKEN", "an-admin-token-of-some-length", 1);
  auto expanded = ember::expand_env(node_yaml, "ember-config.yaml");
  ASSERT_TRUE(expanded) << expanded.error().to_string();
  auto config = ember::parse_node_config(*expanded, "ember-config.yaml");
  ASSERT_TRUE(config) << config.error().to_string();
  EXPECT_EQ(config->node_id, "ember-0");
  EXPECT_TRUE(config->admin.enabled);
  EXPECT_EQ(config->admin.listen_addr, "0.0.0.0:9464");
  EXPECT_EQ(config->admin.token, "an-admin-token-of-some-length");
  EXPECT_TRUE(config->cluster.enabled);
  EXPECT_TRUE(config->gate.enabled);
}

}  // namespace
