// SPDX-License-Identifier: Apache-2.0
// Plays the demo game as two players through the C++ client: log in, join a room, move, and
// see the other's move pushed. Exits non-zero with the reason when anything is off.
#include <cstdio>
#include <ember/client.hpp>
#include <string>

#include "game.pb.h"

using namespace std::chrono_literals;

namespace {

int fail(const std::string& why) {
  std::fprintf(stderr, "FAILED: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: game_check ws://host:port/ws\n");
    return 2;
  }
  const std::string url = argv[1];
  auto alice = ember::client::Client::connect({.url = url, .token = "alice"});
  if (!alice)
    return fail("alice: " + alice.error().to_string());
  auto bob = ember::client::Client::connect({.url = url, .token = "bob"});
  if (!bob)
    return fail("bob: " + bob.error().to_string());
  auto refused = ember::client::Client::connect({.url = url, .token = "no spaces allowed"});
  if (refused)
    return fail("a bad name was let in");

  game::Join join;
  join.set_room("room-1");
  auto a = (*alice)->call<game::Joined>("lobby.RpcJoin", join);
  if (!a)
    return fail("alice join: " + a.error().to_string());
  auto b = (*bob)->call<game::Joined>("lobby.RpcJoin", join);
  if (!b)
    return fail("bob join: " + b.error().to_string());
  if (b->players_size() != 2)
    return fail("bob should see 2 players, sees " + std::to_string(b->players_size()));

  game::Move move;
  move.set_x(3);
  move.set_y(4);
  auto moved = (*alice)->call<game::Ack>("room.RpcMove", move);
  if (!moved)
    return fail("alice move: " + moved.error().to_string());
  auto push = (*bob)->next_push(5s);
  if (!push)
    return fail("bob saw no move");
  game::Moved seen;
  if (push->route != "room.OnMoved" || !seen.ParseFromString(push->payload) ||
      seen.uid() != "alice" || seen.x() != 3 || seen.y() != 4) {
    return fail("bob saw the wrong push on " + push->route);
  }
  move.set_x(42);
  auto off_grid = (*bob)->call<game::Ack>("room.RpcMove", move);
  if (off_grid)
    return fail("a move off the grid was accepted");
  std::printf("ok: two players logged in, joined room-1, and bob saw alice move to (3,4)\n");
  return 0;
}
