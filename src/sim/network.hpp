// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <ember/clock.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "runtime/network.hpp"
#include "runtime/scheduler.hpp"

namespace ember::sim {

/// True with probability `p`, from 64 random bits (53 of them make a double in [0, 1)).
inline bool bits_below(std::uint64_t bits, double p) noexcept {
  return static_cast<double>(bits >> 11) * 0x1.0p-53 < p;
}

/// What the network needs from its world.
class NetworkHost {
 public:
  virtual ~NetworkHost() = default;
  [[nodiscard]] virtual Clock::time_point now() const noexcept = 0;
  virtual std::uint64_t random() noexcept = 0;
  virtual void ready(runtime::Runnable* r) noexcept = 0;
  virtual void mix(std::uint64_t value) noexcept = 0;
};

struct LinkFaults {
  double drop = 0;       ///< a frame is lost (the connection stays up)
  double duplicate = 0;  ///< a frame arrives twice
  double reorder = 0;    ///< a frame overtakes the one sent before it
};

/// The simulated nodes' network: per ordered pair of nodes a link that delivers frames after a
/// latency drawn from the seed, in order (TCP) unless faults say otherwise. A link with a due
/// frame becomes a runnable of the world, so deliveries interleave with handlers in the seed's
/// order. Cuts (partitions) break connections both ways and drop what is in flight.
class SimNetwork final : public runtime::Network, public runtime::TimeDriven {
 public:
  SimNetwork(NetworkHost& host, std::chrono::nanoseconds min_latency,
             std::chrono::nanoseconds max_latency)
      : host_(host), min_latency_(min_latency), max_latency_(max_latency) {}

  Status bind(const std::string& node, OnFrame on_frame, OnPeer on_peer) override;
  void unbind(const std::string& node) noexcept override;
  Status send(const std::string& from, const std::string& to, std::string_view payload) override;

  [[nodiscard]] std::optional<Clock::time_point> next_wake() const override;
  void advance_to(Clock::time_point now) override;

  void cut(const std::string& a, const std::string& b);
  void isolate(const std::string& node);
  void heal();
  void set_faults(LinkFaults faults) noexcept { faults_ = faults; }

  [[nodiscard]] std::uint64_t delivered() const noexcept { return delivered_; }
  [[nodiscard]] std::uint64_t lost() const noexcept { return lost_; }

 private:
  struct Frame {
    Clock::time_point due;
    std::string payload;
  };
  struct Link final : runtime::Runnable {
    SimNetwork* network = nullptr;
    std::string from;
    std::string to;
    std::deque<Frame> frames;
    bool queued = false;
    void run_slice() override { network->deliver(*this); }
  };
  struct Endpoint {
    OnFrame on_frame;
    OnPeer on_peer;
  };

  void deliver(Link& link);
  [[nodiscard]] bool is_cut(const std::string& a, const std::string& b) const;
  void break_link(const std::string& a, const std::string& b);  // drops both ways, tells both
  bool chance(double p) noexcept;

  NetworkHost& host_;
  std::chrono::nanoseconds min_latency_;
  std::chrono::nanoseconds max_latency_;
  LinkFaults faults_;
  std::map<std::string, Endpoint> endpoints_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Link>> links_;
  std::set<std::pair<std::string, std::string>> cuts_;  // (smaller, larger) node id
  std::set<std::string> isolated_;
  std::uint64_t delivered_ = 0;
  std::uint64_t lost_ = 0;
};

}  // namespace ember::sim
