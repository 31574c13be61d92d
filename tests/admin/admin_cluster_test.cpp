// SPDX-License-Identifier: Apache-2.0
// The admin listeners of a two-node cluster on a real etcd: cluster and transport figures (and
// promtool on them), the cluster view, retiring a group's master, and the dashboard in headless
// Chromium.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "admin/admin.hpp"
#include "core/node_impl.hpp"
#include "support/etcd_server.hpp"
#include "support/http_client.hpp"
#include "support/prometheus_text.hpp"
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

// A master/slave group member that says who it is; only the master answers.
class Keeper : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcNap",
                         [](const pb::Echo&) -> Result<pb::Echo> {
                           std::this_thread::sleep_for(15ms);  // over SlowHandler (10 ms)
                           return pb::Echo{};
                         });
        !st) {
      return st;
    }
    return handle("RpcWho", [this](const pb::Echo& e) -> Result<pb::Who> {
      if (!e.text().empty()) {
        log().info("asked by {}", e.text());
      }
      if (!is_master()) {
        return ember::Error{Errc::unavailable, "not the master"};
      }
      pb::Who who;
      who.set_node(pid().node_id);
      who.set_epoch(epoch());
      who.set_master(true);
      return who;
    });
  }
};

// On one node: relays to the keeper master (on either node), logging on the way.
class Front : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcRelay", [this](const pb::Echo& e) -> Result<pb::Who> {
      log().info("relaying {}", e.text());
      return select(ember::Selector::name("keeper").role(ember::Role::master))
          .call<pb::Who>("RpcWho", e);
    });
  }
};

// The first series of `name` with any labels, or NaN.
double first_value(const std::string& scrape, const std::string& name) {
  std::istringstream lines(scrape);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0) {
      return std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    }
  }
  return std::nan("");
}

class AdminCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    for (const char* id : {"alpha", "beta"}) {
      auto cfg =
          ember::parse_node_config(std::string("NodeConf: {NodeId: ") + id +
                                       ", WorkerThreads: 2}\n"
                                       "AdminConf: {}\n"
                                       "ClusterConf:\n  Name: admin\n  Secret: s3cret\n"
                                       "  ListenAddr: 127.0.0.1:0\n  AdvertiseAddr: 127.0.0.1\n"
                                       "  ETCDConf: {Endpoints: [" +
                                       etcd_.endpoint() + "]}\n  DiscoveryConf: {TTL: 2s}\n",
                                   id);
      ASSERT_TRUE(cfg) << cfg.error().to_string();
      auto node = std::make_unique<ember::Node>(std::move(*cfg));
      ember::ServiceConfig keeper;
      keeper.name = "keeper";
      keeper.primary_secondary = true;
      ASSERT_TRUE(node->add_service(std::make_unique<Keeper>(), keeper));
      ASSERT_TRUE(node->start());
      addresses_.push_back(
          ember::admin::Admin::of(ember::detail::NodeAccess::impl(*node))->address());
      nodes_.push_back(std::move(node));
    }
  }
  void TearDown() override {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
      (void)(*it)->stop();
    }
  }

  // The node whose keeper is master now (-1: none yet).
  int master() const {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      ember::Service* keeper = nodes_[i]->find_service("keeper");
      if (keeper != nullptr && keeper->is_master() && keeper->epoch() > 0) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  Result<pb::Who> who(std::size_t from) {
    return ember::select(*nodes_[from], ember::Selector::name("keeper").role(ember::Role::master))
        .call<pb::Who>("RpcWho", pb::Echo{}, {.timeout = 2s});
  }

  ember::testing::EtcdServer etcd_;
  std::vector<std::unique_ptr<ember::Node>> nodes_;
  std::vector<std::string> addresses_;
};

TEST_F(AdminCluster, FiguresShowTheClusterItsMasterAndTheTraffic) {
  ASSERT_TRUE(wait_for([&] { return master() >= 0; }, 15s));
  const int m = master();
  const int other = 1 - m;
  // Calls from the other node cross the transport.
  ASSERT_TRUE(
      wait_for([&] { return static_cast<bool>(who(static_cast<std::size_t>(other))); }, 10s));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(who(static_cast<std::size_t>(other)));
  }
  const std::uint64_t epoch = nodes_[m]->find_service("keeper")->epoch();
  const auto at_master = http_get(addresses_[m], "/metrics");
  ASSERT_EQ(at_master.status, 200);
  EXPECT_EQ(series_value(at_master.body, "ember_cluster_etcd_connected"), 1);
  EXPECT_EQ(series_value(at_master.body, R"(ember_cluster_master_epoch{group="keeper..0"})"),
            static_cast<double>(epoch))
      << at_master.body.substr(0, 4000);
  EXPECT_EQ(series_value(at_master.body, "ember_cluster_elections_won_total"), 1);
  EXPECT_EQ(series_value(at_master.body, R"(ember_service_master{service="keeper",id=""})"), 1);
  EXPECT_EQ(series_value(at_master.body, R"(ember_service_epoch{service="keeper",id=""})"),
            static_cast<double>(epoch));
  EXPECT_GE(series_value(at_master.body,
                         R"(ember_service_calls_total{service="keeper",id="",code="ok"})"),
            21);
  EXPECT_GE(series_value(at_master.body, "ember_transport_connections"), 1);
  EXPECT_GE(series_value(at_master.body, "ember_transport_frames_received_total"), 21);
  EXPECT_GT(series_value(at_master.body, "ember_transport_received_bytes_total"), 0);
  EXPECT_EQ(series_value(at_master.body,
                         R"(ember_transport_rejected_connections_total{reason="wrong_secret"})"),
            0);
  const auto at_other = http_get(addresses_[other], "/metrics");
  EXPECT_EQ(series_value(at_other.body, "ember_cluster_elections_lost_total"), 1);
  EXPECT_EQ(series_value(at_other.body, R"(ember_service_master{service="keeper",id=""})"), 0);
  EXPECT_GE(series_value(at_other.body, "ember_transport_frames_sent_total"), 21);
  EXPECT_GE(first_value(at_other.body, "ember_cluster_lease_renewals_total"), 0);

  // promtool on a clustered node's scrape: the cluster and transport families too.
  ember::testing::ScratchDir scratch("ember-promtool-cluster");
  const auto [rc, printed] =
      ember::testing::promtool_check(at_master.body, scratch.path().string());
  EXPECT_EQ(rc, 0) << printed;

  // The cluster view: both nodes, the master with its epoch.
  const auto view = http_get(addresses_[other], "/api/cluster");
  ASSERT_EQ(view.status, 200);
  EXPECT_NE(view.body.find(R"("node":"alpha")"), std::string::npos) << view.body;
  EXPECT_NE(view.body.find(R"("node":"beta")"), std::string::npos) << view.body;
  EXPECT_NE(view.body.find(R"("epoch":)" + std::to_string(epoch)), std::string::npos) << view.body;
  EXPECT_EQ(http_get(addresses_[0], "/readyz").status, 200);
  EXPECT_NE(http_get(addresses_[0], "/api/node").body.find(R"("connected":true)"),
            std::string::npos);
}

TEST_F(AdminCluster, RetiringTheMasterHandsTheGroupToTheOtherNode) {
  ASSERT_TRUE(wait_for([&] { return master() >= 0; }, 15s));
  const int m = master();
  const int other = 1 - m;
  const std::uint64_t old_epoch = nodes_[m]->find_service("keeper")->epoch();
  const auto retired = http_post(addresses_[m], "/api/retire?service=keeper");
  ASSERT_EQ(retired.status, 200) << retired.body;
  // The other instance wins, with a higher epoch, and every node's calls go to it.
  ASSERT_TRUE(wait_for([&] { return master() == other; }, 15s));
  EXPECT_GT(nodes_[other]->find_service("keeper")->epoch(), old_epoch);
  for (std::size_t from : {std::size_t{0}, std::size_t{1}}) {
    Result<pb::Who> answer = pb::Who{};
    ASSERT_TRUE(wait_for(
        [&] {
          answer = who(from);
          return answer && answer->node() == nodes_[other]->id();
        },
        10s))
        << (answer ? answer->node() : answer.error().to_string());
  }
  const auto scrape = http_get(addresses_[m], "/metrics");
  EXPECT_EQ(series_value(scrape.body, R"(ember_service_retired{service="keeper",id=""})"), 1);
  EXPECT_EQ(series_value(scrape.body, "ember_cluster_demotions_total"), 1);
}

TEST_F(AdminCluster, TheDashboardShowsServicesMastersSlowHandlersAndNodes) {
  ASSERT_TRUE(wait_for([&] { return master() >= 0; }, 15s));
  const int m = master();
  ASSERT_TRUE(
      wait_for([&] { return static_cast<bool>(who(0)) && static_cast<bool>(who(1)); }, 10s));
  ASSERT_TRUE(ember::select(*nodes_[m], ember::Selector::name("keeper"))
                  .call<pb::Echo>("RpcNap", pb::Echo{}, {.timeout = 2s}));
  const std::string chrome = "/usr/bin/chromium";
  ASSERT_TRUE(std::filesystem::exists(chrome)) << "chromium is missing: run scripts/setup.sh";
  ember::testing::ScratchDir scratch("ember-dashboard");
  const std::filesystem::path artifacts = std::filesystem::path(EMBER_ARTIFACT_DIR);
  std::filesystem::create_directories(artifacts);
  const std::string screenshot = (artifacts / "dashboard.png").string();
  std::filesystem::remove(screenshot);
  // Every part the page shows, in one expression: it answers DASHBOARD-OK once all are there.
  const std::string expression =
      "(() => { const t = id => (document.querySelector(id) || {}).textContent || '';"
      " const s = t('#services tbody'), k = t('#masters tbody'), n = t('#nodes tbody'),"
      " w = t('#slow tbody'), r = t('#ready');"
      " const ok = s.includes('keeper') && s.includes('master') && k.includes('keeper') &&"
      " n.includes('alpha') && n.includes('beta') && w.includes('RpcNap') && r === 'ready';"
      " return (ok ? 'DASHBOARD-OK ' : 'waiting ') + [r, s, k, n, w].join(' | '); })()";
  const std::string command = std::string("timeout 90 ") + EMBER_BROWSER_PROBE + " --chrome " +
                              chrome + " --profile " + (scratch.path() / "chrome").string() +
                              " --timeout-ms 45000" + " --url http://" + addresses_[m] + "/" +
                              " --expression \"" + expression +
                              "\" --expect DASHBOARD-OK --screenshot " + screenshot + " > " +
                              (scratch.path() / "probe.log").string() + " 2>&1";
  const int rc = std::system(command.c_str());
  std::stringstream printed;
  printed << std::ifstream(scratch.path() / "probe.log").rdbuf();
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << printed.str();
  EXPECT_NE(printed.str().find("DASHBOARD-OK"), std::string::npos) << printed.str();
  ASSERT_TRUE(std::filesystem::exists(screenshot));
  EXPECT_GT(std::filesystem::file_size(screenshot), 10'000u);
}

TEST_F(AdminCluster, ARequestsTraceIdIsOnEveryLineOfItsPathAcrossNodes) {
  ember::testing::ScratchDir scratch("ember-trace");
  const std::string log_file = (scratch.path() / "nodes.log").string();
  ASSERT_TRUE(ember::configure_logging(ember::LogLevel::info, log_file));
  struct RestoreLog {
    ~RestoreLog() { (void)ember::configure_logging(ember::LogLevel::info); }
  } restore;
  ASSERT_TRUE(wait_for([&] { return master() >= 0; }, 15s));
  const int other = 1 - master();
  ember::ServiceConfig front;
  front.name = "front";
  ASSERT_TRUE(nodes_[other]->add_service(std::make_unique<Front>(), front));
  pb::Echo e;
  e.set_text("request-7");
  auto who = ember::select(*nodes_[other], ember::Selector::name("front"))
                 .call<pb::Who>("RpcRelay", e, {.timeout = 5s});
  ASSERT_TRUE(who) << who.error().to_string();
  EXPECT_NE(who->node(), nodes_[other]->id());  // it crossed to the other node
  ember::flush_logs();
  std::ifstream file(log_file);
  std::string line;
  std::string relay_line;
  std::string who_line;
  while (std::getline(file, line)) {
    if (line.find("relaying request-7") != std::string::npos)
      relay_line = line;
    if (line.find("asked by request-7") != std::string::npos)
      who_line = line;
  }
  ASSERT_FALSE(relay_line.empty());
  ASSERT_FALSE(who_line.empty());
  auto trace_of = [](const std::string& l) {
    const auto at = l.find("[trace ");
    return at == std::string::npos ? std::string() : l.substr(at + 7, 16);
  };
  const std::string trace = trace_of(relay_line);
  ASSERT_EQ(trace.size(), 16u) << relay_line;
  EXPECT_EQ(trace_of(who_line), trace) << relay_line << "\n" << who_line;
  EXPECT_NE(relay_line.find(nodes_[other]->id() + "/front"), std::string::npos) << relay_line;
  EXPECT_NE(who_line.find(who->node() + "/keeper"), std::string::npos) << who_line;
}

}  // namespace
