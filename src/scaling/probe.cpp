// SPDX-License-Identifier: Apache-2.0
#include "scaling/probe.hpp"

#include <algorithm>

namespace ember::detail {

struct alignas(64) ScalingProbe::Slot {
  // Written by the lane's thread (single writer), read by the scaler.
  std::array<std::atomic<std::uint64_t>, WaitHistogram::kBuckets> user{};
  std::array<std::atomic<std::uint64_t>, WaitHistogram::kBuckets> system{};
  std::atomic<std::int64_t> cpu_ns{0};
  std::atomic<std::int64_t> busy_ns{0};        // handlers that finished
  std::atomic<std::int64_t> running_since{0};  // start of the handler running now; 0 = none
  // The scaler's view at its previous collect (scaler thread only).
  std::array<std::uint64_t, WaitHistogram::kBuckets> seen_user{};
  std::array<std::uint64_t, WaitHistogram::kBuckets> seen_system{};
  std::int64_t seen_cpu_ns = 0;
  std::int64_t seen_busy_ns = 0;
  // The part of a still-running handler already counted, and which handler (its start).
  std::int64_t credited_start = 0;
  std::int64_t credited_ns = 0;
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
  record_wait(slot(lane), priority, wait_ns);
}

void ScalingProbe::record_wait(Slot& s, Priority priority, std::int64_t wait_ns) noexcept {
  const auto bucket = static_cast<std::size_t>(WaitHistogram::bucket_of(
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait_ns)) / 1000));
  bump<std::uint64_t>((priority == Priority::system ? s.system : s.user)[bucket], 1);
}

void ScalingProbe::record_cpu(int lane, std::int64_t cpu_ns) noexcept {
  bump<std::int64_t>(slot(lane).cpu_ns, std::max<std::int64_t>(0, cpu_ns));
}

void ScalingProbe::message_started(int lane, Priority priority, std::int64_t enqueued_ns,
                                   std::int64_t now_ns) noexcept {
  Slot& s = slot(lane);
  if (enqueued_ns != 0) {
    record_wait(s, priority, now_ns - enqueued_ns);
  }
  s.running_since.store(now_ns, std::memory_order_relaxed);
}

void ScalingProbe::message_finished(int lane, std::int64_t started_ns,
                                    std::int64_t now_ns) noexcept {
  Slot& s = slot(lane);
  bump<std::int64_t>(s.busy_ns, std::max<std::int64_t>(0, now_ns - started_ns));
  s.running_since.store(0, std::memory_order_relaxed);
}

void ScalingProbe::collect(ScalingSample& sample) {
  const std::int64_t now = now_ns();
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
    // Finished handlers, plus what elapsed of the running one. A handler credited earlier and
    // finished since is in the finished total whole: take back what was credited. The two reads
    // are not one snapshot, so one interval may be off by a handler; the sum over intervals is
    // exact, because every credit is taken back exactly once.
    const std::int64_t running = s->running_since.load(std::memory_order_relaxed);
    const std::int64_t busy = s->busy_ns.load(std::memory_order_relaxed);
    busy_ns += busy - s->seen_busy_ns;
    s->seen_busy_ns = busy;
    if (s->credited_start != 0 && s->credited_start != running) {
      busy_ns -= s->credited_ns;
      s->credited_start = 0;
      s->credited_ns = 0;
    }
    if (running != 0) {
      const std::int64_t elapsed = std::max<std::int64_t>(0, now - running);
      busy_ns += elapsed - s->credited_ns;
      s->credited_start = running;
      s->credited_ns = elapsed;
    }
  }
  sample.handler_cpu += std::chrono::microseconds{cpu_ns / 1000};
  sample.handler_busy += std::chrono::microseconds{std::max<std::int64_t>(0, busy_ns) / 1000};
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
