// SPDX-License-Identifier: Apache-2.0
// A node with three services from node.yaml: a gateway that feeds player actions to a
// two-lane room (per-player order kept by dispatch key), a room with nested modules and
// timers, and a clock driven by cron. The gateway stops the node after Params.run_for_ms.
#include <atomic>
#include <charconv>
#include <ember/ember.hpp>
#include <string>

using namespace std::chrono_literals;

namespace demo {

// A module inside Room: counts actions per player. Runs on the room's lanes.
class Scoreboard : public ember::Module {
 public:
  void record(int player) {
    total_.fetch_add(1);
    (void)player;
  }
  int total() const { return total_.load(); }
  void on_release() override { log().info("scoreboard released after {} actions", total()); }

 private:
  std::atomic<int> total_{0};  // two lanes touch it: different players run in parallel
};

class Match : public ember::Module {
 public:
  ember::Status on_init() override {
    auto board = add_module<Scoreboard>();
    if (!board) {
      return board.error();
    }
    scoreboard_ = *board;
    round_timer_ =
        every(500ms, [this] { log().info("round tick: {} actions so far", scoreboard_->total()); });
    return {};
  }
  void on_release() override { log().info("match released (its round timer goes with it)"); }
  Scoreboard& scoreboard() { return *scoreboard_; }

 private:
  Scoreboard* scoreboard_ = nullptr;
  ember::TimerId round_timer_;
};

class Room : public ember::Service {
 public:
  ember::Status on_init() override {
    auto match = add_module<Match>();
    if (!match) {
      return match.error();
    }
    match_ = *match;
    return {};
  }
  void on_started() override {
    log().info("room up with {} lanes; modules: match #{}", lane_count(), match_->id());
  }
  // Called through the room's mailbox: one player's actions always run in order on one lane.
  void act(int player, int seq) {
    if (seq % 5 == 0) {
      log().info("player {} action {} on lane {}", player, seq,
                 lane_of(ember::DispatchKey::from_int(static_cast<std::uint64_t>(player))));
    }
    match_->scoreboard().record(player);
  }
  void on_release() override { log().info("room released"); }

 private:
  Match* match_ = nullptr;
};

class Gateway : public ember::Service {
 public:
  void on_started() override {
    int run_for_ms = 3000;
    std::string_view text = param("run_for_ms", "3000");
    std::from_chars(text.data(), text.data() + text.size(), run_for_ms);
    every(100ms, [this] { feed(); });
    after(std::chrono::milliseconds(run_for_ms), [this] {
      log().info("demo time is up: stopping the node");
      node().request_stop();
    });
  }

 private:
  void feed() {
    ++seq_;
    auto* room = static_cast<Room*>(node().find_service("room"));
    for (int player = 1; player <= 4; ++player) {
      int seq = seq_;
      ember::Status st = node().post(
          "room", [room, player, seq] { room->act(player, seq); },
          {.key = ember::DispatchKey::from_int(static_cast<std::uint64_t>(player)), .name = "act"});
      if (!st) {
        log().warn("room refused action: {}", st.error().to_string());
      }
    }
  }
  int seq_ = 0;
};

class Clock : public ember::Service {
 public:
  ember::Status on_init() override {
    auto every_second = cron("@every 1s", [this] { log().info("clock: @every 1s"); });
    if (!every_second) {
      return every_second.error();
    }
    auto even_seconds = cron("*/2 * * * * *", [this] { log().info("clock: cron */2 seconds"); });
    if (!even_seconds) {
      return even_seconds.error();
    }
    return {};
  }
};

}  // namespace demo

using demo::Clock;
using demo::Gateway;
using demo::Room;
EMBER_REGISTER_SERVICE(Gateway);
EMBER_REGISTER_SERVICE(Room);
EMBER_REGISTER_SERVICE(Clock);

int main(int argc, char** argv) {
  return ember::run_node(argc, argv);
}
