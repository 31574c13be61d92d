// SPDX-License-Identifier: Apache-2.0
#include "scaling/probe.hpp"

#include <algorithm>

namespace ember::detail {

struct alignas(64) ScalingProbe::Slot {
  // Written by the lane's thread (single writer), read by the scaler.
  std::array<std::atomic<std::uint64_t>, WaitHistogram::kBuckets> user{};
  std::array<std::atomic<std::uint64_t>, WaitHistogram::kBuckets> system{};
  std::atomic<std::int64_t> cpu_ns{0};
  std::atomic<std::int64_t> busy_ns{0};
  // The scaler's view at its previous collect (scaler thread only).
  std::array<std::uint64_t, WaitHistogram::kBuckets> seen_user{};
  std::array<std::uint64_t, WaitHistogram::kBuckets> seen_system{};
  std::int64_t seen_cpu_ns = 0;
  std::int64_t seen_busy_ns = 0;
};

namespace {
template <class T>
void bump(std::atomic<T>& counter, T by) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}
}  // namespace

ScalingProbe::ScalingProbe(int max_lanes)
    : max_lanes_(std::max(1, max_lanes)),
      slots_(std::make_unique<std::atomic<Slot*>[]>(static_cast<std::size_t>(max_lanes_))) {}

ScalingProbe::~ScalingProbe() {
  for (int i = 0; i < max_lanes_; ++i) {
    delete slots_[static_cast<std::size_t>(i)].load(std::memory_order_acquire);
  }
}

ScalingProbe::Slot& ScalingProbe::slot(int lane) noexcept {
  // Lanes never exceed the mailbox's maximum, which is what the probe was sized by; clamp anyway
  // so a mismatch costs accuracy, not memory safety (the slot is then shared, still counted).
  auto& cell = slots_[static_cast<std::size_t>(std::clamp(lane, 0, max_lanes_ - 1))];
  Slot* s = cell.load(std::memory_order_acquire);
  if (s == nullptr) {
    auto fresh = std::make_unique<Slot>();
    if (cell.compare_exchange_strong(s, fresh.get(), std::memory_order_acq_rel)) {
      s = fresh.release();
    }
  }
  return *s;
}

void ScalingProbe::record_wait(int lane, Priority priority, std::int64_t wait_ns) noexcept {
  Slot& s = slot(lane);
  const auto bucket = static_cast<std::size_t>(WaitHistogram::bucket_of(
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait_ns)) / 1000));
  bump<std::uint64_t>((priority == Priority::system ? s.system : s.user)[bucket], 1);
}

void ScalingProbe::record_slice(int lane, std::int64_t cpu_ns, std::int64_t wall_ns) noexcept {
  Slot& s = slot(lane);
  bump<std::int64_t>(s.cpu_ns, std::max<std::int64_t>(0, cpu_ns));
  bump<std::int64_t>(s.busy_ns, std::max<std::int64_t>(0, wall_ns));
}

void ScalingProbe::collect(ScalingSample& sample) {
  std::int64_t cpu_ns = 0;
  std::int64_t busy_ns = 0;
  for (int i = 0; i < max_lanes_; ++i) {
    Slot* s = slots_[static_cast<std::size_t>(i)].load(std::memory_order_acquire);
    if (s == nullptr) {
      continue;
    }
    for (int b = 0; b < WaitHistogram::kBuckets; ++b) {
      const auto k = static_cast<std::size_t>(b);
      const std::uint64_t user = s->user[k].load(std::memory_order_relaxed);
      const std::uint64_t system = s->system[k].load(std::memory_order_relaxed);
      sample.user_wait.add_to_bucket(b, user - s->seen_user[k]);
      sample.system_wait.add_to_bucket(b, system - s->seen_system[k]);
      s->seen_user[k] = user;
      s->seen_system[k] = system;
    }
    const std::int64_t cpu = s->cpu_ns.load(std::memory_order_relaxed);
    cpu_ns += cpu - s->seen_cpu_ns;
    s->seen_cpu_ns = cpu;
    const std::int64_t busy = s->busy_ns.load(std::memory_order_relaxed);
    busy_ns += busy - s->seen_busy_ns;
    s->seen_busy_ns = busy;
  }
  sample.handler_cpu += std::chrono::microseconds{cpu_ns / 1000};
  sample.handler_busy += std::chrono::microseconds{busy_ns / 1000};
  sample.handled = sample.user_wait.count() + sample.system_wait.count();
}

void ScalingProbe::publish(Status status) {
  std::lock_guard lock(status_mu_);
  status_ = std::move(status);
}

ScalingProbe::Status ScalingProbe::status() const {
  std::lock_guard lock(status_mu_);
  return status_;
}

}  // namespace ember::detail
