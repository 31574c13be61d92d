// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ember/sim.hpp>
#include <map>
#include <set>
#include <stdexcept>
#include <typeinfo>
#include <vector>

#include "core/node_impl.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/thread.hpp"
#include "runtime/time_source.hpp"
#include "sim/network.hpp"

namespace ember::sim {
namespace {

// Virtual time starts far from zero so that "now minus a day" never underflows, and at a fixed
// wall-clock date so that cron schedules replay too.
constexpr auto kVirtualEpoch = Clock::time_point(std::chrono::hours(10'000));
constexpr auto kWallEpoch = std::chrono::sys_days{std::chrono::year{2026} / 1 / 1};

// One world per process: ember::Clock has one time source.
std::atomic<bool> g_world_exists{false};

// SplitMix64: small, fast, and its whole state is one word, so a seed is a full replay key.
std::uint64_t splitmix(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The runs that report only whether they livelocked.
Status without_value(Result<bool> result) {
  if (!result) {
    return std::move(result).error();
  }
  return {};
}

constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

}  // namespace

class World::Impl final : public runtime::Driver, public runtime::TimeSource, public NetworkHost {
 public:
  explicit Impl(WorldOptions options)
      : options_(options),
        rng_(options.seed),
        network_(*this, options.min_latency, options.max_latency) {
    if (runtime::Driver::current() != nullptr || g_world_exists.exchange(true)) {
      throw std::logic_error("ember::sim::World: one world at a time per process");
    }
    runtime::install_time_source(this);
    runtime::Driver::set_current(this);
    parts_.push_back(&network_);
  }

  ~Impl() override {
    std::erase(parts_, static_cast<runtime::TimeDriven*>(&network_));
    if (!parts_.empty()) {
      // Their schedulers and timers would point at a destroyed driver.
      std::fprintf(stderr,
                   "ember::sim::World destroyed while %zu parts of simulated nodes still run: "
                   "stop the nodes first (create the World before them)\n",
                   parts_.size());
      for (runtime::TimeDriven* part : parts_) {
        std::fprintf(stderr, "  still attached: %s (group %u)\n", typeid(*part).name(),
                     part_groups_[part]);
      }
      std::abort();
    }
    runtime::Driver::set_current(nullptr);
    runtime::install_time_source(nullptr);
    g_world_exists.store(false);
  }

  // --- runtime::Driver ---
  void ready(runtime::Scheduler* pool, runtime::Runnable* r) noexcept override {
    const std::uint32_t group = pool != nullptr ? pool->driver_group() : r->driver_group();
    if (group != 0 && crashed_.contains(group)) {
      return;  // its process is gone: nothing of it runs again
    }
    ready_.push_back(Ready{pool, r, group});
  }

  void forget(runtime::Scheduler& pool) noexcept override {
    std::erase_if(ready_, [&](const Ready& e) { return e.pool == &pool; });
    std::erase_if(stalled_, [&](const Stalled& s) { return s.what.pool == &pool; });
  }

  bool run_until(const std::function<bool()>& done, Clock::time_point deadline) override {
    if (runtime::on_driven_thread()) {
      // Such a thread runs only while the world waits for it: it cannot run the world itself.
      std::fprintf(stderr,
                   "ember::sim: a subsystem thread waited on something other than a CondVar "
                   "(a synchronous call, wait_for, a node's stop); the simulation cannot go on\n");
      std::abort();
    }
    int stalled = 0;  // time looks that neither moved the clock nor readied work
    while (!done()) {
      if (livelock_) {
        return false;
      }
      if (!ready_.empty()) {
        run_one();
        stalled = 0;
        continue;
      }
      std::optional<Clock::time_point> next;
      if (!stalled_.empty()) {
        next = stalled_.front().wake;
      }
      for (runtime::TimeDriven* part : parts_) {
        if (auto wake = part->next_wake(); wake && (!next || *wake < *next)) {
          next = wake;
        }
      }
      if (!next || *next > deadline) {
        if (deadline != Clock::time_point::max()) {
          now_ = std::max(now_, deadline);
        }
        return done();
      }
      if (*next > now_) {
        now_ = *next;
        stalled = 0;
      } else if (++stalled > 1000) {
        now_ += std::chrono::milliseconds(1);  // a part that keeps asking for "now": move on
        stalled = 0;
      }
      mix(0x7157);  // a time step
      mix(static_cast<std::uint64_t>((now_ - kVirtualEpoch).count()));
      wake_stalled();
      // A copy: a part may be detached by what it fires (a node stopping).
      const std::vector<runtime::TimeDriven*> parts = parts_;
      for (runtime::TimeDriven* part : parts) {
        if (std::find(parts_.begin(), parts_.end(), part) != parts_.end()) {
          part->advance_to(now_);
        }
      }
    }
    return true;
  }

  void attach(runtime::TimeDriven& part) override {
    parts_.push_back(&part);
    part_groups_[&part] = runtime::Driver::current_group();
  }

  void detach(runtime::TimeDriven& part) noexcept override {
    std::erase(parts_, &part);
    part_groups_.erase(&part);
  }

  std::uint32_t new_group() noexcept override { return ++groups_; }

  // Stops everything of `group` for good, as SIGKILL stops a process.
  void crash(std::uint32_t group) {
    crashed_.insert(group);
    std::erase_if(ready_, [&](const Ready& r) { return r.group == group; });
    std::erase_if(stalled_, [&](const Stalled& s) { return s.what.group == group; });
    std::erase_if(parts_, [&](runtime::TimeDriven* part) {
      auto it = part_groups_.find(part);
      return it != part_groups_.end() && it->second == group;
    });
  }

  // --- runtime::TimeSource ---
  [[nodiscard]] Clock::time_point now() const noexcept override { return now_; }
  [[nodiscard]] std::chrono::system_clock::time_point wall_now() const noexcept override {
    return std::chrono::system_clock::time_point(kWallEpoch) +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(now_ - kVirtualEpoch);
  }

  Result<bool> run_until_for(const std::function<bool()>& done, std::chrono::nanoseconds limit) {
    return run_until_checked(
        done, limit >= std::chrono::hours(24 * 365) ? Clock::time_point::max() : now_ + limit);
  }

  // run_until, with a livelock reported as an error.
  Result<bool> run_until_checked(const std::function<bool()>& done, Clock::time_point deadline) {
    const bool held = run_until(done, deadline);
    if (livelock_) {
      return Error{Errc::internal,
                   "simulation livelock: more than " + std::to_string(options_.max_steps) +
                       " steps (replay with seed " + std::to_string(options_.seed) + ")"};
    }
    return held;
  }

  void mix(std::uint64_t value) noexcept override {
    for (int i = 0; i < 8; ++i) {
      hash_ = (hash_ ^ ((value >> (8 * i)) & 0xff)) * kFnvPrime;
    }
  }

  void record(std::string_view observation) noexcept {
    mix(0x0b5e);
    for (char c : observation) {
      hash_ = (hash_ ^ static_cast<unsigned char>(c)) * kFnvPrime;
    }
  }

  std::uint64_t random() noexcept override { return splitmix(rng_); }
  runtime::Network& network() noexcept override { return network_; }
  // NetworkHost
  void ready(runtime::Runnable* r) noexcept override { ready_.push_back(Ready{nullptr, r, 0}); }

  WorldOptions options_;
  Clock::time_point now_ = kVirtualEpoch;
  std::uint64_t rng_;
  std::uint64_t hash_ = kFnvOffset;
  std::uint64_t steps_ = 0;
  bool livelock_ = false;
  SimNetwork network_;

 private:
  struct Ready {
    runtime::Scheduler* pool;
    runtime::Runnable* runnable;
    std::uint32_t group = 0;
    bool woke_from_stall = false;  // runs when next picked: a stall is not repeated at once
  };
  struct Stalled {
    Clock::time_point wake;
    Ready what;
  };

  void wake_stalled() {
    // stalled_ is ordered by wake time (ties in stall order): due ones go back in that order.
    auto due = std::find_if(stalled_.begin(), stalled_.end(),
                            [&](const Stalled& s) { return s.wake > now_; });
    for (auto it = stalled_.begin(); it != due; ++it) {
      ready_.push_back(it->what);
      ready_.back().woke_from_stall = true;
    }
    stalled_.erase(stalled_.begin(), due);
  }

  void stall(const Ready& r) {
    const auto span = static_cast<std::uint64_t>(std::max<std::int64_t>(
        1, std::chrono::duration_cast<Clock::duration>(options_.max_stall).count()));
    const Clock::time_point wake = now_ + Clock::duration(1 + random() % span);
    auto at = std::upper_bound(stalled_.begin(), stalled_.end(), wake,
                               [](Clock::time_point t, const Stalled& s) { return t < s.wake; });
    stalled_.insert(at, Stalled{wake, r});
  }

  void run_one() {
    const std::size_t count = ready_.size();
    const std::size_t pick = count == 1 ? 0 : random() % count;
    const Ready chosen = ready_[pick];
    // Order-preserving: what has waited longest stays first, so a run does not depend on how
    // earlier picks happened to shuffle the list.
    ready_.erase(ready_.begin() + static_cast<std::ptrdiff_t>(pick));
    mix(pick);
    mix(count);
    if (options_.stall_probability > 0 && !chosen.woke_from_stall &&
        bits_below(random(), options_.stall_probability)) {
      mix(0x57a1);
      stall(chosen);
      return;
    }
    if (++steps_ > options_.max_steps) {
      livelock_ = true;
      return;
    }
    if (chosen.pool != nullptr) {
      chosen.pool->run_driven(chosen.runnable);
    } else {
      chosen.runnable->run_slice();  // a runtime::Thread: runs until it waits again
    }
  }

  std::vector<Ready> ready_;
  std::vector<Stalled> stalled_;
  std::map<runtime::TimeDriven*, std::uint32_t> part_groups_;
  std::set<std::uint32_t> crashed_;
  std::uint32_t groups_ = 0;
  std::vector<runtime::TimeDriven*> parts_;

 public:
  // Crashed nodes: never run, never freed (their threads wait forever on a turn that will not
  // come, and destroying them would run their stop). Reachable, so not reported as leaks.
  static std::vector<std::unique_ptr<Node>>& graveyard() {
    static auto* nodes = new std::vector<std::unique_ptr<Node>>();
    return *nodes;
  }
};

World::World(std::uint64_t seed) : World(WorldOptions{seed}) {}
World::World(WorldOptions options) : impl_(std::make_unique<Impl>(options)) {}
World::~World() = default;

std::uint64_t World::seed() const noexcept {
  return impl_->options_.seed;
}

Clock::time_point World::now() const noexcept {
  return impl_->now_;
}

std::chrono::nanoseconds World::elapsed() const noexcept {
  return impl_->now_ - kVirtualEpoch;
}

Status World::run(std::chrono::nanoseconds limit) {
  return without_value(impl_->run_until_for([] { return false; }, limit));
}

Status World::run_for(std::chrono::nanoseconds span) {
  // Never done: it returns once nothing is due before the deadline, with the clock on it.
  return without_value(impl_->run_until_checked([] { return false; }, impl_->now_ + span));
}

Status World::run_steps(std::uint64_t count) {
  const std::uint64_t until = impl_->steps_ + count;
  return without_value(impl_->run_until_for([&] { return impl_->steps_ >= until; },
                                            std::chrono::hours(24 * 365 * 10)));
}

Result<bool> World::run_until(const std::function<bool()>& done, std::chrono::nanoseconds limit) {
  return impl_->run_until_for(done, limit);
}

void World::crash(std::unique_ptr<Node> node) {
  if (!node) {
    return;
  }
  const std::uint32_t group = detail::NodeAccess::impl(*node).driver_group;
  if (group == 0) {
    throw std::logic_error("ember::sim::World::crash: the node was not started in this world");
  }
  impl_->crash(group);
  impl_->network_.unbind(node->id());
  Impl::graveyard().push_back(std::move(node));
}

void World::partition(std::string_view a, std::string_view b) {
  impl_->network_.cut(std::string(a), std::string(b));
}

void World::isolate(std::string_view node) {
  impl_->network_.isolate(std::string(node));
}

void World::heal() {
  impl_->network_.heal();
}

void World::set_network_faults(NetworkFaults faults) {
  impl_->network_.set_faults(LinkFaults{faults.drop, faults.duplicate, faults.reorder});
}

std::uint64_t World::frames_delivered() const noexcept {
  return impl_->network_.delivered();
}

std::uint64_t World::frames_lost() const noexcept {
  return impl_->network_.lost();
}

std::uint64_t World::random() noexcept {
  return impl_->random();
}

std::uint64_t World::uniform(std::uint64_t n) noexcept {
  return n == 0 ? 0 : impl_->random() % n;
}

bool World::chance(double p) noexcept {
  return bits_below(impl_->random(), p);
}

void World::record(std::string_view observation) {
  impl_->record(observation);
}

std::uint64_t World::trace_hash() const noexcept {
  return impl_->hash_;
}

std::uint64_t World::steps() const noexcept {
  return impl_->steps_;
}

std::string World::replay_hint() const {
  return "seed " + std::to_string(impl_->options_.seed);
}

}  // namespace ember::sim
