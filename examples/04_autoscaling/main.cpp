// SPDX-License-Identifier: Apache-2.0
// Autoscaling in one node. Players sends queue requests to Matchmaker: calm, then a burst of
// Params.burst_per_s for Params.burst_ms, then calm again. Each request blocks its lane for 1 ms
// (a rating lookup), so one lane carries about 1,000 per second. Matchmaker's WorkerConf.Scaling
// (node.yaml) adds lanes while requests queue and removes them when the burst is over; the node
// logs each decision, and Players prints what Service::scaling() reports twice a second.
// The demo stops itself once Matchmaker is back at one lane, and exits non-zero unless it grew,
// came back, handled every request and kept each player's requests in order.
#include <atomic>
#include <charconv>
#include <ember/ember.hpp>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::atomic<int> g_failures{0};

void check(const ember::Logger& log, bool ok, std::string_view what) {
  if (ok) {
    log.info("ok: {}", what);
  } else {
    log.error("FAILED: {}", what);
    g_failures.fetch_add(1);
  }
}

int int_param(const ember::Service& s, std::string_view key, int fallback) {
  std::string_view text = s.param(key);
  int value = fallback;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

constexpr int kPlayers = 1000;

}  // namespace

class Matchmaker : public ember::Service {
 public:
  // Runs on the lane of `player`'s dispatch key: one player's requests never run at once, so
  // the per-player slot needs no lock even while lanes are added and removed.
  void enqueue(int player, std::uint32_t seq) {
    std::uint32_t& last = last_seq_[static_cast<std::size_t>(player)];
    if (seq != last + 1) {
      out_of_order_.fetch_add(1);
    }
    last = seq;
    std::this_thread::sleep_for(1ms);  // the rating lookup
    handled_.fetch_add(1);
  }
  std::uint64_t handled() const { return handled_.load(); }
  std::uint64_t out_of_order() const { return out_of_order_.load(); }

 private:
  std::vector<std::uint32_t> last_seq_ = std::vector<std::uint32_t>(kPlayers, 0);
  std::atomic<std::uint64_t> handled_{0};
  std::atomic<std::uint64_t> out_of_order_{0};
};

class Players : public ember::Service {
 public:
  void on_started() override {
    matchmaker_ = static_cast<Matchmaker*>(node().find_service("Matchmaker"));
    calm_per_s_ = int_param(*this, "calm_per_s", 300);
    burst_per_s_ = int_param(*this, "burst_per_s", 2500);
    burst_ = std::chrono::milliseconds(int_param(*this, "burst_ms", 2500));
    started_ = std::chrono::steady_clock::now();
    every(10ms, [this] { offer(); });
    every(500ms, [this] { report(); });
  }

 private:
  enum class Phase { calm_before, burst, calm_after };

  Phase phase(std::chrono::milliseconds t) const {
    if (t < 1s) {
      return Phase::calm_before;
    }
    return t < 1s + burst_ ? Phase::burst : Phase::calm_after;
  }

  std::chrono::milliseconds elapsed() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 started_);
  }

  void offer() {
    if (finished_) {
      return;
    }
    const int per_s = phase(elapsed()) == Phase::burst ? burst_per_s_ : calm_per_s_;
    // Whole messages per 10 ms tick, carrying the remainder so the rate is exact on average.
    owed_ += per_s / 100.0;
    for (; owed_ >= 1; owed_ -= 1) {
      const int player = next_player_++ % kPlayers;
      const std::uint32_t seq = ++seq_[static_cast<std::size_t>(player)];
      ember::Status st =
          node().post("Matchmaker", [mm = matchmaker_, player, seq] { mm->enqueue(player, seq); },
                      {.key = ember::DispatchKey::from_int(static_cast<std::uint64_t>(player)),
                       .name = "enqueue"});
      if (!st) {
        log().error("request refused: {}", st.error().to_string());
        g_failures.fetch_add(1);
        continue;
      }
      ++sent_;
    }
  }

  void report() {
    if (finished_) {
      return;
    }
    const auto t = elapsed();
    const Phase p = phase(t);
    const ember::ScalingStatus s = matchmaker_->scaling();
    max_lanes_ = std::max(max_lanes_, s.lanes);
    log().info(
        "t={:.1f}s {:<5} {:>4}/s offered | lanes {} | queued {:>4} | p99 wait {:>6.1f} ms | "
        "busy {:>3.0f}% per lane",
        static_cast<double>(t.count()) / 1000, p == Phase::burst ? "burst" : "calm",
        p == Phase::burst ? burst_per_s_ : calm_per_s_, s.lanes, matchmaker_->queued_messages(),
        static_cast<double>(s.user_wait_p99.count()) / 1000, s.busy_per_lane * 100);
    // Settled: back at Min for two reports in a row after the burst.
    at_min_reports_ = p == Phase::calm_after && s.lanes == s.min_lanes ? at_min_reports_ + 1 : 0;
    if (at_min_reports_ >= 2 || t > 1s + burst_ + 20s) {
      finished_ = true;  // no more requests; check once the last ones have run
      verify(s, 0);
    }
  }

  void verify(const ember::ScalingStatus& s, int attempt) {
    if (matchmaker_->handled() < sent_ && attempt < 100) {
      after(20ms, [this, s, attempt] { verify(s, attempt + 1); });
      return;
    }
    log().info("Matchmaker: {} grows, {} shrinks, {} evaluations; last: {}", s.grows, s.shrinks,
               s.evaluations, s.last_decision);
    check(log(), s.grows > 0 && max_lanes_ > 1,
          "Matchmaker grew during the burst (seen at " + std::to_string(max_lanes_) + " lanes)");
    check(log(), s.lanes == s.min_lanes, "and shrank back to Min after it");
    check(log(), matchmaker_->handled() == sent_,
          "every request ran (" + std::to_string(matchmaker_->handled()) + " of " +
              std::to_string(sent_) + ")");
    check(log(), matchmaker_->out_of_order() == 0,
          "each player's requests ran in the order sent, across lane changes");
    node().request_stop();
  }

  Matchmaker* matchmaker_ = nullptr;
  int calm_per_s_ = 0;
  int burst_per_s_ = 0;
  std::chrono::milliseconds burst_{0};
  std::chrono::steady_clock::time_point started_;
  double owed_ = 0;
  int next_player_ = 0;
  std::vector<std::uint32_t> seq_ = std::vector<std::uint32_t>(kPlayers, 0);
  std::uint64_t sent_ = 0;
  int max_lanes_ = 1;
  int at_min_reports_ = 0;
  bool finished_ = false;
};

EMBER_REGISTER_SERVICE(Matchmaker);
EMBER_REGISTER_SERVICE(Players);

int main(int argc, char** argv) {
  int code = ember::run_node(argc, argv);
  return code != 0 ? code : (g_failures.load() == 0 ? 0 : 1);
}
