// SPDX-License-Identifier: Apache-2.0
// A node process for the process tests: `ember_test_node --config FILE`. Hosts an Echo service
// (sums, ordered pushes, a tally), a Leader service for master/slave groups, a Listener for
// events, and a Ledger (with its LedgerControl) for deadlines.
#include <chrono>
#include <condition_variable>
#include <ember/ember.hpp>
#include <map>
#include <mutex>

#include "test.pb.h"

namespace pb = ember::test;
using ember::Result;

class Echo : public ember::Service {
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
    // Pushes carry a sequence number per (sender node, key): each must be above the last one.
    if (auto st = handle("RpcPush",
                         [this](const pb::Echo& e, const ember::Context& ctx) -> ember::Status {
                           std::lock_guard lock(mu_);
                           auto& last = last_[{ctx.caller().node_id, e.key()}];
                           if (e.seq() <= last) {
                             tally_.set_out_of_order(tally_.out_of_order() + 1);
                           }
                           last = e.seq();
                           tally_.set_received(tally_.received() + 1);
                           if (ctx.priority() == ember::Priority::system) {
                             tally_.set_system_received(tally_.system_received() + 1);
                           }
                           return {};
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcTally",
                         [this](const pb::Echo&) -> Result<pb::Tally> {
                           std::lock_guard lock(mu_);
                           return tally_;
                         });
        !st) {
      return st;
    }
    // `master` here reports whether the request came at system priority.
    return handle("RpcWho", [this](const pb::Echo&, const ember::Context& ctx) -> Result<pb::Who> {
      pb::Who who;
      who.set_node(pid().node_id);
      who.set_master(ctx.priority() == ember::Priority::system);
      return who;
    });
  }

 private:
  std::mutex mu_;  // several lanes
  std::map<std::pair<std::string, std::uint64_t>, std::int64_t> last_;
  pb::Tally tally_;
};
EMBER_REGISTER_SERVICE(Echo);

class Leader : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcWho", [this](const pb::Echo&) -> Result<pb::Who> {
      pb::Who who;
      who.set_node(pid().node_id);
      who.set_epoch(epoch());
      who.set_master(is_master());
      return who;
    });
  }
  void on_role_change(ember::RoleChange change, std::uint64_t epoch) override {
    static constexpr const char* kNames[] = {"become_master", "become_slave", "lose_master"};
    log().info("role: {} (epoch {})", kNames[static_cast<int>(change)], epoch);
  }
};
EMBER_REGISTER_SERVICE(Leader);

// Subscribes to pb::Echo events of type Params.EventType, global or (with Params.ServerId) in
// one zone. Main events (text "main") must arrive in order per publishing node.
class Listener : public ember::Service {
 public:
  ember::Status on_init() override {
    const int type = std::stoi(std::string(param("EventType", "50")));
    const std::string zone(param("ServerId"));
    const ember::EventScope scope =
        zone.empty() ? ember::EventScope::global() : ember::EventScope::server(std::stoi(zone));
    auto sub =
        subscribe<pb::Echo>(type, scope, [this](const pb::Echo& e, const ember::EventInfo& info) {
          std::lock_guard lock(mu_);
          if (!info.scope.is_global()) {
            tally_.set_scoped_received(tally_.scoped_received() + 1);
          }
          if (e.text() != "main") {
            return;  // warm-up
          }
          auto& last = last_[info.publisher.node_id];
          if (e.seq() != last + 1) {
            tally_.set_out_of_order(tally_.out_of_order() + 1);
          }
          last = e.seq();
          tally_.set_received(tally_.received() + 1);
        });
    if (!sub) {
      return sub.error();
    }
    return handle("RpcTally", [this](const pb::Echo&) -> Result<pb::Tally> {
      std::lock_guard lock(mu_);
      pb::Tally out = tally_;
      out.set_wire_received(static_cast<std::int64_t>(node().stats().events.received));
      return out;
    });
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::int64_t> last_;  // per publishing node
  pb::Tally tally_;
};
EMBER_REGISTER_SERVICE(Listener);

// The Ledger counts the RpcAdd handlers that ran: a request that expired before its handler
// could run must never count. RpcHold keeps its lane busy until LedgerControl's RpcRelease (or
// 60 s), so requests queue behind it; LedgerControl, another service with its own mailbox,
// answers while the ledger's lane is held.
struct LedgerState {
  std::mutex mu;
  std::condition_variable cv;
  bool holding = false;
  bool released = false;
  std::int64_t adds = 0;
};
LedgerState& ledger_state() {
  static LedgerState state;
  return state;
}

class Ledger : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcAdd",
                         [](const pb::Echo&) -> ember::Status {
                           std::lock_guard lock(ledger_state().mu);
                           ++ledger_state().adds;
                           return {};
                         });
        !st) {
      return st;
    }
    return handle("RpcHold", [](const pb::Echo&) -> ember::Status {
      LedgerState& s = ledger_state();
      std::unique_lock lock(s.mu);
      s.holding = true;
      s.released = false;
      s.cv.wait_for(lock, std::chrono::seconds(60), [&] { return s.released; });
      s.holding = false;
      return {};
    });
  }
};
EMBER_REGISTER_SERVICE(Ledger);

class LedgerControl : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcRelease",
                         [](const pb::Echo&) -> ember::Status {
                           LedgerState& s = ledger_state();
                           {
                             std::lock_guard lock(s.mu);
                             s.released = true;
                           }
                           s.cv.notify_all();
                           return {};
                         });
        !st) {
      return st;
    }
    return handle("RpcStatus", [this](const pb::Echo&) -> Result<pb::LedgerStatus> {
      pb::LedgerStatus out;
      {
        std::lock_guard lock(ledger_state().mu);
        out.set_adds(ledger_state().adds);
        out.set_holding(ledger_state().holding);
      }
      if (const ember::Service* ledger = node().find_service("ledger")) {
        out.set_queued(ledger->queued_messages());
        out.set_ledger_expired(ledger->expired_requests());
      }
      out.set_expired(node().stats().expired);
      return out;
    });
  }
};
EMBER_REGISTER_SERVICE(LedgerControl);

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
