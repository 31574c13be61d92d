// SPDX-License-Identifier: Apache-2.0
// The cluster against faults of its coordinator, between real processes: etcd (by PID) is
// SIGKILLed and restarted on its data, replaced by an empty etcd on the same port, paused with
// SIGSTOP, or cut off by a network partition (etcd in a network namespace, the link taken down),
// each for longer than the lease TTL and three rounds in a row. Three ember_test_node processes
// keep a Ledger (a master/slave group replicating every append to all members before it is
// acknowledged); the node inside this test appends through whichever member is master.
//
// After each round: a write succeeds within TTL + 2 s of etcd answering again, the master's epoch
// is above every epoch seen before (also after a wipe), and at the end every acknowledged append
// is held by every member.
#include <gtest/gtest.h>
#include <unistd.h>

#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>
#include <set>

#include "cluster/etcd/etcd_client.hpp"
#include "support/etcd_server.hpp"
#include "support/net_namespace.hpp"
#include "support/node_process.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ember::Selector;
using ember::testing::EtcdServer;
using ember::testing::NetNamespace;
using ember::testing::NodeProcess;
using ember::testing::wait_for;
namespace pb = ember::test;

constexpr auto kTtl = 2s;
// After a wipe, survivors hold their elections for TTL + 1 s (so that each raises the epoch base
// first): recovery takes that hold on top of what the other faults take.
constexpr auto kWipeHold = kTtl + 1s;
constexpr auto kOutage = 3500ms;  // longer than the TTL, as real maintenance is
constexpr int kRounds = 3;

enum class Fault { restart, wipe, pause, partition };

std::string fault_name(Fault fault) {
  switch (fault) {
    case Fault::restart: return "restart";
    case Fault::wipe: return "wipe";
    case Fault::pause: return "pause";
    case Fault::partition: return "partition";
  }
  return "?";
}

long long ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

class CoordinatorFault : public ::testing::TestWithParam<Fault> {
 protected:
  void SetUp() override {
    if (GetParam() == Fault::partition) {
      const std::string why = netns_.start();
      if (!why.empty()) {
        GTEST_SKIP() << "partition test skipped: " << why;
      }
      etcd_.place_in(netns_.name(), netns_.inner_ip());
    }
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    for (int i = 1; i <= 3; ++i) {
      const std::string id = "c" + std::to_string(i);
      const std::string config = (dir_ / (id + ".yaml")).string();
      std::ofstream(config) << node_yaml(id);
      auto& proc = procs_.emplace_back(std::make_unique<NodeProcess>());
      why = proc->start(id, config, (dir_ / (id + ".log")).string());
      ASSERT_TRUE(why.empty()) << why;
    }
    ember::NodeConfig c;
    c.node_id = "driver";
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "coord";
    c.cluster.secret = "s3cret";
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = kTtl;
    node_ = std::make_unique<ember::Node>(c);
    ASSERT_TRUE(node_->start());
    ASSERT_TRUE(wait_for([&] { return members() == 3 && append_once(500ms); }, 30s)) << logs();
  }

  void TearDown() override {
    if (node_) {
      (void)node_->stop();
    }
    for (auto& p : procs_) {
      p->stop();
    }
    if (HasFailure()) {
      std::cerr << logs();
    }
    etcd_.stop();
    netns_.remove();
  }

  std::string node_yaml(const std::string& id) const {
    return ember::testing::cluster_node_yaml(id, "coord", etcd_.endpoint()) +
           "ServiceConf:\n"
           "  StartServices:\n"
           "    - {ClassName: Ledger, ServiceName: ledger, IsPrimarySecondaryMode: true,"
           " Params: {Replicas: \"3\"}}\n";
  }

  std::size_t members() const {
    return ember::select(*node_, Selector::name("ledger").role(ember::Role::any)).size();
  }

  /// One append through the current master; on success its sequence number joins `acked_`.
  bool append_once(std::chrono::milliseconds timeout) {
    pb::LedgerEntry entry;
    entry.set_seq(++next_seq_);
    auto ack = ember::select(*node_, Selector::name("ledger"))
                   .call<pb::LedgerAck>("RpcAppend", entry, {.timeout = timeout});
    if (!ack) {
      last_error_ = ack.error().to_string();
      return false;
    }
    acked_.insert(entry.seq());
    last_ack_ = *ack;
    return true;
  }

  /// True once etcd answers a read from this process (a fresh connection each time).
  bool etcd_answers() const {
    auto client = ember::etcd::Client::connect({{etcd_.endpoint()}, 200ms});
    return client && (*client)->get("/probe");
  }

  void inject(Fault fault) {
    switch (fault) {
      case Fault::restart:
      case Fault::wipe: etcd_.kill_hard(); break;
      case Fault::pause: etcd_.pause(); break;
      case Fault::partition: ASSERT_TRUE(netns_.cut()); break;
    }
  }
  void repair(Fault fault) {
    switch (fault) {
      case Fault::restart: ASSERT_EQ(etcd_.start(false), ""); break;
      case Fault::wipe: ASSERT_EQ(etcd_.start(true), ""); break;
      case Fault::pause: etcd_.resume(); break;
      case Fault::partition: ASSERT_TRUE(netns_.heal()); break;
    }
  }

  std::string logs() const { return ember::testing::logs_of(procs_); }

  NetNamespace netns_;
  EtcdServer etcd_;
  ember::testing::ScratchDir dir_{"ember-coord-" + fault_name(GetParam())};
  std::vector<std::unique_ptr<NodeProcess>> procs_;
  std::unique_ptr<ember::Node> node_;
  std::int64_t next_seq_ = 0;
  std::set<std::int64_t> acked_;
  pb::LedgerAck last_ack_;
  std::string last_error_;
};

TEST_P(CoordinatorFault, TheClusterRecoversWithinItsBoundEveryRound) {
  const Fault fault = GetParam();
  std::uint64_t highest_epoch = last_ack_.epoch();
  for (int round = 1; round <= kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(wait_for([&] { return append_once(1s); }, 10s)) << last_error_;
    }
    highest_epoch = std::max(highest_epoch, last_ack_.epoch());

    inject(fault);
    // Appends keep being tried during the outage: whatever is acknowledged must survive.
    const auto outage_ends = Clock::now() + kOutage;
    while (Clock::now() < outage_ends) {
      (void)append_once(200ms);
    }
    repair(fault);
    ASSERT_TRUE(wait_for([&] { return etcd_answers(); }, 15s)) << "etcd did not come back";
    const auto answered = Clock::now();

    ASSERT_TRUE(wait_for([&] { return append_once(500ms); }, 20s))
        << fault_name(fault)
        << ": no write succeeded within 20 s of etcd answering; last: " << last_error_;
    const auto took = Clock::now() - answered;
    std::cout << fault_name(fault) << " round " << round << ": a write succeeded " << ms(took)
              << " ms after etcd answered again (master " << last_ack_.node() << ", epoch "
              << last_ack_.epoch() << ")\n";
    const auto bound = kTtl + 2s + (fault == Fault::wipe ? kWipeHold : 0s);
    EXPECT_LE(took, bound) << fault_name(fault) << ": " << ms(took) << " ms";
    EXPECT_GT(last_ack_.epoch(), highest_epoch) << "the epoch did not move above " << highest_epoch;
    highest_epoch = std::max(highest_epoch, last_ack_.epoch());
    for (const auto& p : procs_) {
      EXPECT_TRUE(p->alive()) << p->id();
    }
  }

  // Every acknowledged append is held by every member.
  ASSERT_TRUE(wait_for([&] { return members() == 3; }, 10s));
  const auto all = ember::select(*node_, Selector::name("ledger").role(ember::Role::any)).targets();
  ASSERT_EQ(all.size(), 3u);
  for (const auto& member : all) {
    auto state = ember::select(*node_, Selector::pid(member))
                     .call<pb::LedgerState>("RpcState", pb::Echo{}, {.timeout = 2s});
    ASSERT_TRUE(state) << member.node_id << ": " << state.error().to_string();
    const std::set<std::int64_t> held(state->seqs().begin(), state->seqs().end());
    std::size_t missing = 0;
    for (std::int64_t seq : acked_) {
      missing += held.count(seq) == 0 ? 1 : 0;
    }
    EXPECT_EQ(missing, 0u) << member.node_id << " lost " << missing << " of " << acked_.size()
                           << " acknowledged appends";
    EXPECT_EQ(state->epoch_regressions(), 0) << member.node_id;
  }
  std::cout << fault_name(fault) << ": " << acked_.size() << " appends acknowledged of "
            << next_seq_ << " tried, none lost\n";
}

INSTANTIATE_TEST_SUITE_P(Etcd, CoordinatorFault,
                         ::testing::Values(Fault::restart, Fault::wipe, Fault::pause,
                                           Fault::partition),
                         [](const auto& info) { return fault_name(info.param); });

}  // namespace
