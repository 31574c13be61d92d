// SPDX-License-Identifier: Apache-2.0
// The node the gateway benchmark drives: a login that lets anyone in, an echo, and a room that
// every bot joins and that a trigger floods with broadcasts. GateConf comes from the YAML
// (scripts/bench_gate.sh writes it).
#include <ember/ember.hpp>
#include <ember/gate.hpp>

#include "ember/gate.pb.h"
#include "gate_bench.pb.h"

using ember::Result;
namespace gate = ember::gate;

class Auth : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcLogin", [](const gate::LoginRequest& req) -> Result<gate::LoginReply> {
      gate::LoginReply reply;
      reply.set_uid(req.token());
      return reply;
    });
  }
};

class Bench : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcEcho",
                         [](const gatebench::Blob& b) -> Result<gatebench::Blob> { return b; });
        !st) {
      return st;
    }
    if (auto st = handle(
            "RpcJoinAll",
            [this](const gatebench::Blob&, const ember::Context& ctx) -> Result<gatebench::Blob> {
              gate::Gate& g = gate::Gate::of(node());
              (void)g.create_group("all");
              if (auto st = g.join("all", gate::session_of(ctx)->id); !st) {
                return st.error();
              }
              return gatebench::Blob{};
            });
        !st) {
      return st;
    }
    // Broadcasts std::stoi(data) small messages to the whole room.
    return handle("RpcBlast", [this](const gatebench::Blob& b) -> Result<gatebench::Blob> {
      const int count = b.data().empty() ? 1 : std::stoi(b.data());
      gatebench::Blob message;
      message.set_data("tick");
      gate::Gate& g = gate::Gate::of(node());
      for (int i = 0; i < count; ++i) {
        if (auto st = g.broadcast("all", "bench.OnTick", message); !st) {
          return st.error();
        }
      }
      return gatebench::Blob{};
    });
  }
};

EMBER_REGISTER_SERVICE(Auth);
EMBER_REGISTER_SERVICE(Bench);

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
