// SPDX-License-Identifier: Apache-2.0
// The clock of measurements on the message path. A message is stamped when it is queued, when
// its handler starts and when it ends: on x86-64 that is the time-stamp counter (~10 ns a read
// here, where a steady_clock read through the vDSO costs ~26 ns), converted to seconds only when
// somebody reads the figures. Elsewhere it is steady_clock in nanoseconds.
#pragma once

#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#else
#include <chrono>
#endif

namespace ember::metrics {

inline std::uint64_t now_ticks() noexcept {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

/// Ticks per second, measured against steady_clock: the first call waits ~2 ms, and later calls
/// refine the figure from the time since then. Thread-safe.
double ticks_per_second() noexcept;

inline double ticks_to_seconds(std::uint64_t ticks) noexcept {
  return static_cast<double>(ticks) / ticks_per_second();
}
inline std::int64_t ticks_to_ns(std::uint64_t ticks) noexcept {
  return static_cast<std::int64_t>(static_cast<double>(ticks) * 1e9 / ticks_per_second());
}
inline std::uint64_t seconds_to_ticks(double seconds) noexcept {
  return static_cast<std::uint64_t>(seconds * ticks_per_second());
}

}  // namespace ember::metrics
