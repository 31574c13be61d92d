// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <ember/clock.hpp>

namespace ember::runtime {

/// Replaces the time ember::Clock reads: the simulator's virtual time. One per process at a time.
class TimeSource {
 public:
  virtual ~TimeSource() = default;
  [[nodiscard]] virtual Clock::time_point now() const noexcept = 0;
  [[nodiscard]] virtual std::chrono::system_clock::time_point wall_now() const noexcept = 0;
};

/// Installs `source` (nullptr: back to the real clocks). Not thread-safe against concurrent
/// readers of a node that is running on real threads: install before creating nodes.
void install_time_source(const TimeSource* source) noexcept;
[[nodiscard]] bool virtual_time() noexcept;

}  // namespace ember::runtime
