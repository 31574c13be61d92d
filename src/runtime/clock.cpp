// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <ember/clock.hpp>

#include "runtime/time_source.hpp"

namespace ember {
namespace {
std::atomic<const runtime::TimeSource*> g_source{nullptr};
}  // namespace

Clock::time_point Clock::now() noexcept {
  if (const runtime::TimeSource* source = g_source.load(std::memory_order_acquire)) [[unlikely]] {
    return source->now();
  }
  return std::chrono::steady_clock::now();
}

std::chrono::system_clock::time_point Clock::wall_now() noexcept {
  if (const runtime::TimeSource* source = g_source.load(std::memory_order_acquire)) [[unlikely]] {
    return source->wall_now();
  }
  return std::chrono::system_clock::now();
}

namespace runtime {
void install_time_source(const TimeSource* source) noexcept {
  g_source.store(source, std::memory_order_release);
}

bool virtual_time() noexcept {
  return g_source.load(std::memory_order_acquire) != nullptr;
}
}  // namespace runtime

}  // namespace ember
