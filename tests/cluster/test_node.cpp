// SPDX-License-Identifier: Apache-2.0
// A node process for the process tests: `ember_test_node --config FILE`. Hosts an Echo service
// (sums, ordered pushes, a tally, the transport's counters), a Leader service for master/slave
// groups, a Listener for events, a Ledger replicated across a group (coordinator faults) and a
// Counter (with its CounterControl) for deadlines, and the gateway tests' login method.
#include <chrono>
#include <condition_variable>
#include <ember/ember.hpp>
#include <map>
#include <mutex>
#include <set>

#include "cluster/membership.hpp"
#include "core/node_impl.hpp"
#include "gate/gate_services.hpp"
#include "rpc/messaging.hpp"
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
    // Counters of a process are out of a test's reach otherwise.
    if (auto st = handle("RpcTransport",
                         [this](const pb::Echo&) -> Result<pb::TransportCounters> {
                           auto* membership = ember::detail::Membership::of(
                               ember::detail::NodeAccess::impl(node()));
                           if (membership == nullptr) {
                             return ember::Error{ember::Errc::bad_state, "not in a cluster"};
                           }
                           const auto s = membership->link().transport_stats();
                           pb::TransportCounters out;
                           out.set_rejected(s.rejected);
                           out.set_bad_handshake(s.rejected_bad_handshake);
                           out.set_wrong_secret(s.rejected_wrong_secret);
                           out.set_wrong_cluster(s.rejected_wrong_cluster);
                           out.set_bad_frame(s.rejected_bad_frame);
                           out.set_hung_up(s.rejected_hung_up);
                           out.set_handshake_timeout(s.rejected_handshake_timeout);
                           out.set_too_many_pending(s.rejected_too_many_pending);
                           out.set_accept_failures(s.accept_failures);
                           out.set_pending_handshakes(s.pending_handshakes);
                           out.set_connections(s.connections);
                           return out;
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

// A ledger kept by every member of a master/slave group. The master acknowledges an append only
// once every other member (Params.Replicas in all) has it, so any later master has every
// acknowledged entry; members refuse entries from a master below the highest epoch they have
// seen, so an epoch that went backwards shows up as failing writes.
class Ledger : public ember::Service {
 public:
  ember::Status on_init() override {
    replicas_ = std::stoi(std::string(param("Replicas", "3")));
    if (auto st = handle("RpcAppend", &Ledger::append); !st) {
      return st;
    }
    if (auto st = handle("RpcReplicate", &Ledger::replicate); !st) {
      return st;
    }
    return handle("RpcState", [this](const pb::Echo&) -> Result<pb::LedgerState> {
      pb::LedgerState out;
      for (std::int64_t seq : seqs_) {
        out.add_seqs(seq);
      }
      out.set_highest_epoch(highest_epoch_);
      out.set_stale_refused(stale_refused_);
      out.set_epoch_regressions(epoch_regressions_);
      out.set_master(is_master());
      out.set_slaves_known(static_cast<std::int64_t>(
          select(ember::Selector::name(name()).role(ember::Role::slave)).targets().size()));
      return out;
    });
  }
  void on_role_change(ember::RoleChange change, std::uint64_t epoch) override {
    if (change != ember::RoleChange::become_master) {
      return;
    }
    if (epoch <= highest_epoch_) {
      ++epoch_regressions_;
      log().error("elected with epoch {}, not above {} seen before", epoch, highest_epoch_);
    }
    highest_epoch_ = std::max(highest_epoch_, epoch);
  }

 private:
  Result<pb::LedgerAck> append(const pb::LedgerEntry& request) {
    if (!is_master()) {
      // Refused before anything was written: the caller may send it again (to the next master).
      return ember::Error{ember::Errc::unavailable, "not the master"};
    }
    pb::LedgerEntry entry = request;
    entry.set_epoch(epoch());
    auto others = select(ember::Selector::name(name()).role(ember::Role::slave)).targets();
    if (static_cast<int>(others.size()) < replicas_ - 1) {
      return ember::Error{ember::Errc::bad_state,
                          "only " + std::to_string(others.size()) + " other members known"};
    }
    for (const auto& member : others) {
      auto done = select(ember::Selector::pid(member))
                      .call<pb::Echo>("RpcReplicate", entry, {.timeout = std::chrono::seconds(1)});
      if (!done) {
        // Not the nested call's code: `unavailable` there says that copy was not made, not that
        // this append did nothing (other members may have it).
        return ember::Error{ember::Errc::handler_failed,
                            member.node_id + " did not take it: " + done.error().to_string()};
      }
    }
    seqs_.insert(entry.seq());
    pb::LedgerAck ack;
    ack.set_node(pid().node_id);
    ack.set_epoch(epoch());
    return ack;
  }

  Result<pb::Echo> replicate(const pb::LedgerEntry& entry) {
    if (entry.epoch() < highest_epoch_) {
      ++stale_refused_;
      return ember::Error{ember::Errc::bad_state, "stale master: epoch " +
                                                      std::to_string(entry.epoch()) + " < " +
                                                      std::to_string(highest_epoch_)};
    }
    highest_epoch_ = entry.epoch();
    seqs_.insert(entry.seq());
    return pb::Echo{};
  }

  int replicas_ = 3;
  std::set<std::int64_t> seqs_;
  std::uint64_t highest_epoch_ = 0;
  std::int64_t stale_refused_ = 0;
  std::int64_t epoch_regressions_ = 0;
};
EMBER_REGISTER_SERVICE(Ledger);

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

#if defined(EMBER_UBSAN_VPTR)
#include <dlfcn.h>
#include <unistd.h>

// transport_fault_test fills this process's descriptor table. UBSan's vptr check reads the object
// through a pipe, which it cannot open then: it reports every virtual call it checks as a bad
// object and aborts. Checks it can run still run (and abort on a real error); the ones it cannot
// are skipped instead of reported.
extern "C" void __ubsan_handle_dynamic_type_cache_miss_abort(void* data, void* pointer,
                                                             void* hash) {
  using Handler = void (*)(void*, void*, void*);
  static const auto real =
      reinterpret_cast<Handler>(::dlsym(RTLD_NEXT, "__ubsan_handle_dynamic_type_cache_miss_abort"));
  int probe[2];
  if (::pipe(probe) != 0) {
    return;
  }
  ::close(probe[0]);
  ::close(probe[1]);
  real(data, pointer, hash);
}
#endif

// The Counter counts the RpcAdd handlers that ran: a request that expired before its handler
// could run must never count. RpcHold keeps its lane busy until CounterControl's RpcRelease (or
// 60 s), so requests queue behind it; CounterControl, another service with its own mailbox,
// answers while the counter's lane is held.
struct CounterState {
  std::mutex mu;
  std::condition_variable cv;
  bool holding = false;
  bool released = false;
  std::int64_t adds = 0;
};
CounterState& counter_state() {
  static CounterState state;
  return state;
}

class Counter : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcAdd",
                         [](const pb::Echo&) -> ember::Status {
                           std::lock_guard lock(counter_state().mu);
                           ++counter_state().adds;
                           return {};
                         });
        !st) {
      return st;
    }
    return handle("RpcHold", [](const pb::Echo&) -> ember::Status {
      CounterState& s = counter_state();
      std::unique_lock lock(s.mu);
      s.holding = true;
      s.released = false;
      s.cv.wait_for(lock, std::chrono::seconds(60), [&] { return s.released; });
      s.holding = false;
      return {};
    });
  }
};
EMBER_REGISTER_SERVICE(Counter);

class CounterControl : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcRelease",
                         [](const pb::Echo&) -> ember::Status {
                           CounterState& s = counter_state();
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
    return handle("RpcStatus", [this](const pb::Echo&) -> Result<pb::CounterStatus> {
      pb::CounterStatus out;
      {
        std::lock_guard lock(counter_state().mu);
        out.set_adds(counter_state().adds);
        out.set_holding(counter_state().holding);
      }
      if (const ember::Service* counter = node().find_service("counter")) {
        out.set_queued(counter->queued_messages());
        out.set_counter_expired(counter->expired_requests());
      }
      out.set_expired(node().stats().expired);
      return out;
    });
  }
};
EMBER_REGISTER_SERVICE(CounterControl);

// The gateway tests' login method, so a gateway process can host one (ClassName GateAuth).
using GateAuth = ember::testing::TestAuth;
EMBER_REGISTER_SERVICE(GateAuth);

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
