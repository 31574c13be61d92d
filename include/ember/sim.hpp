// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/requires_cxx20.hpp>

// Deterministic simulation: whole nodes in one thread, on virtual time, in an order drawn from a
// seed. The same seed replays the same run, so a failure found under one of thousands of seeds
// can be replayed, stepped through and kept as a regression test.
//
//   ember::sim::World world(seed);
//   ember::Node node(config);      // created and started on the world's thread: simulated
//   node.start();
//   world.run_for(std::chrono::seconds(10));   // ten virtual seconds, in milliseconds of CPU
//   node.stop();
//
// While a World exists, nodes started on its thread run no threads of their own: every runnable
// service lane is handed to the world, which picks the next one to run with its seeded
// generator. ember::Clock (and so timers, deadlines and Context::remaining()) reads the world's
// virtual time, which jumps to the next timer when nothing is runnable. A synchronous Call, a
// wait_for or a service's drain at stop runs the rest of the world until its condition holds,
// instead of blocking the only thread.

#include <chrono>
#include <cstdint>
#include <ember/clock.hpp>
#include <ember/error.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace ember {
class Node;
}

namespace ember::sim {

struct WorldOptions {
  std::uint64_t seed = 1;
  /// A run that takes more steps than this is reported as a livelock (with the seed).
  std::uint64_t max_steps = 50'000'000;
  /// Chance that a runnable service lane, when picked, is held back instead (a thread descheduled,
  /// a long GC-like pause, an overloaded core): it runs again after a virtual delay drawn
  /// uniformly from (0, max_stall]. Stalls are what let deadlines expire under load.
  double stall_probability = 0.0;
  std::chrono::nanoseconds max_stall = std::chrono::milliseconds(50);
  /// One-way latency of a frame between simulated nodes, uniform in [min, max].
  std::chrono::nanoseconds min_latency = std::chrono::microseconds(100);
  std::chrono::nanoseconds max_latency = std::chrono::milliseconds(2);
};

/// Faults of the links between simulated nodes, beyond what TCP would allow: they test the
/// cluster layer's own duplicate and order handling. Each applies to every frame sent.
struct NetworkFaults {
  double drop = 0;       ///< the frame is lost, the connection stays up
  double duplicate = 0;  ///< the frame arrives twice
  double reorder = 0;    ///< the frame overtakes the one sent before it on the same link
};

class World {
 public:
  explicit World(std::uint64_t seed);
  explicit World(WorldOptions options);
  /// Nodes started in this world must be stopped (or destroyed) before it.
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  [[nodiscard]] std::uint64_t seed() const noexcept;
  /// Virtual time (what ember::Clock::now() returns while the world exists).
  [[nodiscard]] Clock::time_point now() const noexcept;
  /// Virtual time since the world began.
  [[nodiscard]] std::chrono::nanoseconds elapsed() const noexcept;

  /// Runs until nothing is runnable and nothing is planned, or `limit` of virtual time has
  /// passed. A timer that re-arms itself forever (a ticker) keeps a world busy: use run_for.
  Status run(std::chrono::nanoseconds limit = std::chrono::hours(24));
  /// Runs everything due within `span` of virtual time; the clock then reads now() + span.
  Status run_for(std::chrono::nanoseconds span);
  /// Runs at most `count` steps (moving time on when idle), then returns.
  Status run_steps(std::uint64_t count);
  /// Runs until `done()` holds (checked between steps) or `limit` of virtual time has passed:
  /// true when done() held, false at the limit, an error after a livelock.
  Result<bool> run_until(const std::function<bool()>& done,
                         std::chrono::nanoseconds limit = std::chrono::hours(24));

  /// Kills a simulated node as SIGKILL would: from now on none of its handlers, timers or
  /// threads runs again, its network connections break, and what it held in the coordinator
  /// stays until its lease expires. The node object is kept (never destroyed or stopped); start a
  /// new Node with the same id to restart it. Not for a node that was not started in this world.
  void crash(std::unique_ptr<Node> node);

  // --- the network between simulated nodes (nodes with ClusterConf) -------------------------
  /// Cuts the links between nodes `a` and `b` both ways: connections break (each side's pending
  /// calls to the other fail), frames in flight are lost, sends fail until heal().
  void partition(std::string_view a, std::string_view b);
  /// Cuts `node` off from every other node (its coordinator stays reachable).
  void isolate(std::string_view node);
  /// Restores every link (new frames flow; nothing lost is replayed).
  void heal();
  void set_network_faults(NetworkFaults faults);
  /// Frames delivered and frames lost (dropped, cut or sent to a node that went away) so far.
  [[nodiscard]] std::uint64_t frames_delivered() const noexcept;
  [[nodiscard]] std::uint64_t frames_lost() const noexcept;

  /// Draws from the world's generator: tests take their random choices here so that the seed
  /// replays them too.
  std::uint64_t random() noexcept;
  /// Uniform in [0, n); 0 when n is 0.
  std::uint64_t uniform(std::uint64_t n) noexcept;
  /// True with probability `p`.
  bool chance(double p) noexcept;

  /// Adds an observation to the trace: two runs of one seed must record the same observations
  /// in the same order, which trace_hash() compares in one number.
  void record(std::string_view observation);
  /// A hash of every scheduling choice and every recorded observation so far.
  [[nodiscard]] std::uint64_t trace_hash() const noexcept;
  /// Runnables run so far.
  [[nodiscard]] std::uint64_t steps() const noexcept;
  /// "seed N", for failure messages: what to pass to World to replay this run.
  [[nodiscard]] std::string replay_hint() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember::sim
