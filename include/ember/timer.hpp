// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/requires_cxx20.hpp>

#include <cstdint>
#include <ember/dispatch.hpp>

namespace ember {

/// Names one scheduled timer. Cancelling a stale id (fired, cancelled, or from a released
/// module) is a harmless no-op that returns false.
struct TimerId {
  std::uint64_t value = 0;
  [[nodiscard]] constexpr bool valid() const noexcept { return value != 0; }
  friend constexpr bool operator==(TimerId, TimerId) = default;
};

struct TimerOptions {
  /// Lane of a multi-lane service the callback runs on. Default: a key derived from the timer,
  /// so the fires of one ticker never run concurrently with each other.
  DispatchKey key{};
  Priority priority = Priority::user;
};

}  // namespace ember
