// SPDX-License-Identifier: Apache-2.0
// The code shown in README.md and docs/*.md, adapted only as far as needed to form functions and
// classes (bodies shown as "..." filled in, names the text assumes declared). It is compiled with
// the warnings a careful user enables, as errors, so that copying a snippet never costs a warning.
// When a snippet changes in the docs, change it here too.
#include <ember/ember.hpp>

#include "snippets.pb.h"

using namespace std::chrono_literals;
namespace pb = ember::snippets;

// --- README.md: a first service -----------------------------------------------------------------
namespace readme {

class Lobby : public ember::Service {
 public:
  ember::Status on_init() override {  // before any message; add modules here
    heartbeat_ = every(1s, [this] { log().info("{} players", players_); });
    return {};
  }
  void on_started() override { log().info("lobby is up"); }  // first message of its mailbox
  void join() { ++players_; }                                // runs in the mailbox: no locks needed

 private:
  int players_ = 0;
  ember::TimerId heartbeat_;
};
EMBER_REGISTER_SERVICE(Lobby);

// --- README.md: messaging
// -------------------------------------------------------------------------
class Caller : public ember::Service {
 public:
  void talk(const pb::JoinReq& req, const pb::Notice& notice) {
    auto lobby = select(ember::Selector::name("lobby"));
    ember::Result<pb::JoinResp> r =
        lobby.call<pb::JoinResp>("RpcJoin", req);  // waits (1 s default)
    auto pending =
        lobby.async_call<pb::JoinResp>("RpcJoin", req, [this](ember::Result<pb::JoinResp> r) {
          if (r)
            seat_ = r->seat();  // runs later, in my mailbox
        });
    if (!pending)
      log().warn("not sent: {}", pending.error().to_string());  // no callback then
    if (auto st = lobby.send("RpcNotice", notice); !st)
      log().warn("{}", st.error().to_string());  // fire and forget
    (void)r;
  }

 private:
  int seat_ = 0;
};

}  // namespace readme

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}  // --config node.yaml

// --- docs/messaging.md ------------------------------------------------------------------------
namespace messaging {

class Calc : public ember::Service {
 public:
  ember::Status on_init() override;
  ember::Result<pb::SumResp> sum(const pb::SumReq& req);

 private:
  std::int64_t total_ = 0;
};

ember::Status Calc::on_init() {
  if (auto st = handle("RpcSum", &Calc::sum); !st)
    return st;                                                           // member function
  return handle("RpcReset", [this](const pb::Empty&) -> ember::Status {  // lambda, no reply body
    total_ = 0;
    return {};
  });
}
ember::Result<pb::SumResp> Calc::sum(const pb::SumReq& req) {
  pb::SumResp out;
  out.set_sum(req.a() + req.b());
  total_ += out.sum();
  return out;
}

inline constexpr ember::Method<pb::SumReq, pb::SumResp> kSum{"RpcSum"};

class Room : public ember::Service {
 public:
  ember::Status on_init() override {
    auto bus = select(ember::Selector::name("room").server_id(3));  // from a service/module
    ember::Result<pb::SumResp> r = bus.call(kSum, pb::SumReq{});
    return r ? ember::Status{} : r.error();
  }
};

ember::Bus from_outside(ember::Node& node) {
  auto bus = ember::select(node, ember::Selector::type("game"));  // from outside any service
  return bus;
}

ember::Status call_options(const ember::Bus& bus, const pb::SumReq& req) {
  auto r = bus.call<pb::SumResp>("RpcSum", req, {.timeout = 500ms});
  if (!r)
    return r.error();
  return bus.send("RpcSum", req, {.priority = ember::Priority::system, .key = "player-7"});
}

// Waiting for a service to appear.
ember::Status fail(const ember::Error& e) {
  return e;
}

ember::Status wait_outside(ember::Node& node) {
  // outside any service (main thread, tests, tools): blocks, at most 5 s
  ember::Result<ember::Bus> calc = ember::wait_for(node, ember::Selector::name("calc"), 5s);
  if (!calc)
    return fail(calc.error());  // timeout: "no service matched name=calc within 5000 ms"
  return {};
}

class Client : public ember::Service {
 public:
  ember::Status on_init() override {
    // in a service or module: returns at once, the callback runs later in this service's mailbox
    auto waiting = when_available(
        ember::Selector::name("calc"),
        [this](ember::Result<ember::Bus> calc) {
          if (!calc) {
            log().warn("{}", calc.error().to_string());
            return;
          }
          ready_ = true;  // calc->call / async_call / send as from select(...)
        },
        30s);
    if (!waiting)
      return waiting.error();
    return {};
  }

 private:
  bool ready_ = false;
};

class Lobby : public ember::Service {
 public:
  ember::Task<ember::Result<pb::Profile>> load(const pb::Query& q);

 private:
  static pb::Profile to_profile(const pb::Row& row) {
    pb::Profile p;
    p.set_name(row.value());
    return p;
  }
};

ember::Task<ember::Result<pb::Profile>> Lobby::load(const pb::Query& q) {
  auto row = co_await select(ember::Selector::name("db")).co_call<pb::Row>("RpcGet", q);
  if (!row)
    co_return row.error();
  co_return to_profile(*row);
}

class Events : public ember::Service {
 public:
  ember::Status on_init() override {
    const pb::PlayerJoined joined;
    const std::uint64_t uid = 42;
    constexpr ember::EventType kJoined = 1001;
    auto joins = subscribe<pb::PlayerJoined>(
        kJoined, [this](const pb::PlayerJoined& e, const ember::EventInfo& info) {
          seen_ += e.uid() + info.trace_id;
        });
    if (!joins)
      return joins.error();
    if (auto st = publish(
            kJoined, joined,
            {.priority = ember::Priority::system, .key = ember::DispatchKey::from_int(uid)});
        !st)
      log().warn("{}", st.error().to_string());
    if (auto st = ember::publish(node(), kJoined, joined); !st) { /* ... */
    }                                                             // from outside any service
    return {};
  }

 private:
  std::uint64_t seen_ = 0;
};

}  // namespace messaging

// --- docs/events.md
// -------------------------------------------------------------------------------
namespace events {

constexpr ember::EventType kNotice = 2002;

class Zones : public ember::Service {
 public:
  ember::Status on_init() override {
    ember::Node& node = this->node();
    const pb::ZoneOpened opened;
    const pb::Notice notice;
    const std::uint64_t uid = 7;
    constexpr ember::EventType kZoneOpened = 2001;
    // in a service or module (on_init or later); released with the module
    auto zones = subscribe<pb::ZoneOpened>(kZoneOpened, ember::EventScope::server(3),
                                           [this](const pb::ZoneOpened& z) { zone_ = z.zone(); });
    auto notices =
        subscribe<pb::Notice>(kNotice, [this](const pb::Notice& n, const ember::EventInfo& info) {
          last_ = n.text() + std::to_string(info.trace_id);
        });  // global
    if (!zones || !notices)
      return !zones ? zones.error() : notices.error();  // keep the ids to unsubscribe early

    ember::Status st = publish(kZoneOpened, opened, {.scope = ember::EventScope::server(3)});
    if (st)
      st = publish(kNotice, notice,
                   {.priority = ember::Priority::system, .key = ember::DispatchKey::from_int(uid)});
    if (!st)
      log().warn("{}", st.error().to_string());  // e.g. bad_state: not attached to a service
    if (auto sent = ember::publish(node, kNotice, notice); !sent) { /* ... */
    }                                                               // from outside any service
    return {};
  }

 private:
  std::int32_t zone_ = 0;
  std::string last_;
};

}  // namespace events

// --- docs/configuration.md ----------------------------------------------------------------------
namespace configuration {

void autoscale(ember::ServiceConfig& cfg) {
  auto scaling = std::make_shared<ember::ScalingConfig>();
  scaling->min_lanes = 1;
  scaling->max_lanes = 8;
  scaling->strategy.name = "queue_delay";
  scaling->strategy.params["Target"] = "5ms";
  cfg.worker.max_lanes = 8;
  cfg.worker.scaling = scaling;
}

// Designated initializers of the option and config structs leave the other fields at their
// defaults without a warning.
ember::ServiceConfig named() {
  return {.class_name = "Calc", .name = "calc"};
}
ember::NodeConfig node() {
  return {.node_id = "n1", .worker_threads = 2};
}
ember::PostOptions post() {
  return {.priority = ember::Priority::system};
}
ember::TimerOptions timer() {
  return {.priority = ember::Priority::system};
}
ember::PublishOptions publish() {
  return {.scope = ember::EventScope::server(3)};
}

}  // namespace configuration
