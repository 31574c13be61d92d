// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/requires_cxx20.hpp>

#include <chrono>

namespace ember {

/// The monotonic clock Ember's deadlines, timers and leases are measured on. Its time points are
/// std::chrono::steady_clock's, so it mixes with code written against steady_clock; it differs
/// in one way: under the simulator (ember/sim.hpp) it reads virtual time, which advances only
/// when the simulated cluster is idle. Handlers that read time through ember::Clock::now() (or
/// Context::remaining()) behave the same in a simulation as in production.
struct Clock {
  using duration = std::chrono::steady_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr bool is_steady = true;

  static time_point now() noexcept;
  /// Wall-clock time (cron schedules, deadlines sent to other nodes); virtual under the
  /// simulator too, starting from a fixed date.
  static std::chrono::system_clock::time_point wall_now() noexcept;
};

}  // namespace ember
