// SPDX-License-Identifier: Apache-2.0
// A lobby + room game behind Ember's client gateway. Players log in with their name, join a
// room, and move on a 10x10 grid; every move is pushed to everyone in the room. The browser page
// (web/index.html, served by the gateway) and check.cpp play it.
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <map>
#include <mutex>
#include <set>

#include "ember/gate.pb.h"
#include "game.pb.h"

using ember::Errc;
using ember::Result;
namespace gate = ember::gate;

namespace {

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 16) {
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

}  // namespace

// The login method GateConf names: the token is the player's name (a real game checks a
// signed token here).
class Auth : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcLogin", [](const gate::LoginRequest& req) -> Result<gate::LoginReply> {
      if (!valid_name(req.token())) {
        return ember::Error{Errc::invalid_argument,
                            "a name is 1 to 16 letters, digits, '_' or '-'"};
      }
      gate::LoginReply reply;
      reply.set_uid(req.token());
      return reply;
    });
  }
};

// Rooms are gateway groups; the lobby keeps who is in which, and forgets players who leave.
class Lobby : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = subscribe<gate::SessionEvent>(
            gate::kSessionClosed, [this](const gate::SessionEvent& e) { forget(e.uid()); });
        !st) {
      return st.error();
    }
    return handle(
        "RpcJoin",
        [this](const game::Join& join, const ember::Context& ctx) -> Result<game::Joined> {
          auto session = gate::session_of(ctx);
          if (!session || !valid_name(join.room())) {
            return ember::Error{Errc::invalid_argument,
                                "a room name is 1 to 16 "
                                "letters, digits, '_' or '-'"};
          }
          gate::Gate& g = gate::Gate::of(node());
          (void)g.create_group(join.room());  // already_exists is fine
          if (auto st = g.join(join.room(), session->id); !st) {
            return st.error();
          }
          (void)g.set_data(session->id, "room", join.room());
          game::Joined joined;
          joined.set_room(join.room());
          {
            std::lock_guard lock(mu_);
            rooms_[join.room()].insert(session->uid);
            for (const auto& uid : rooms_[join.room()]) {
              joined.add_players(uid);
            }
          }
          log().info("{} joined {}", session->uid, join.room());
          return joined;
        });
  }

 private:
  void forget(const std::string& uid) {
    std::lock_guard lock(mu_);
    for (auto& [room, players] : rooms_) {
      players.erase(uid);
    }
  }
  std::mutex mu_;
  std::map<std::string, std::set<std::string>> rooms_;
};

// Moves: checked, then pushed to the whole room with one encoding.
class Room : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcMove",
                  [this](const game::Move& move, const ember::Context& ctx) -> Result<game::Ack> {
                    auto session = gate::session_of(ctx);
                    if (!session) {
                      return ember::Error{Errc::bad_state, "only players move"};
                    }
                    if (move.x() > 9 || move.y() > 9) {
                      return ember::Error{Errc::invalid_argument, "the grid is 10x10"};
                    }
                    gate::Gate& g = gate::Gate::of(node());
                    auto room = g.data(session->id, "room");
                    if (!room) {
                      return ember::Error{Errc::bad_state, "join a room first"};
                    }
                    game::Moved moved;
                    moved.set_uid(session->uid);
                    moved.set_x(move.x());
                    moved.set_y(move.y());
                    if (auto st = g.broadcast(*room, "room.OnMoved", moved); !st) {
                      return st.error();
                    }
                    return game::Ack{};
                  });
  }
};

EMBER_REGISTER_SERVICE(Auth);
EMBER_REGISTER_SERVICE(Lobby);
EMBER_REGISTER_SERVICE(Room);

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
