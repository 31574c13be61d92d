// SPDX-License-Identifier: Apache-2.0
#include "scaling/scaler.hpp"

#include <algorithm>

#include "scaling/controller.hpp"

namespace ember::detail {

using Clock = ember::Clock;

struct Scaler::Entry {
  explicit Entry(Target t) : target(std::move(t)), controller(*target.config) {}
  Target target;
  ScaleController controller;
  Clock::time_point last_sample;
  Clock::time_point next_evaluation;
  ScalingProbe::Status status;
};

Scaler::Scaler() = default;

Scaler::~Scaler() {
  stop();
}

void Scaler::add(Target target) {
  auto entry = std::make_unique<Entry>(std::move(target));
  const auto now = Clock::now();
  // Zero the probe's running totals as seen from here: the first sample covers one interval.
  ScalingSample discard;
  entry->target.probe->collect(discard);
  entry->last_sample = now;
  entry->next_evaluation = now + entry->target.config->interval;
  std::lock_guard lock(mu_);
  if (stopping_) {
    return;
  }
  entries_.push_back(std::move(entry));
  if (!thread_.joinable() && !driven_) {
    thread_ = std::thread([this] { run(); });
  }
  cv_.notify_all();
}

void Scaler::remove(const runtime::Mailbox* mailbox) {
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [&](const auto& e) { return e->target.mailbox == mailbox; });
}

void Scaler::stop() {
  std::thread joining;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    entries_.clear();
    joining = std::move(thread_);
  }
  cv_.notify_all();
  if (joining.joinable()) {
    joining.join();
  }
}

ScalingTotals Scaler::totals() const {
  ScalingTotals t;
  {
    std::lock_guard lock(mu_);
    t.services = entries_.size();
  }
  t.evaluations = evaluations_.load(std::memory_order_relaxed);
  t.grows = grows_.load(std::memory_order_relaxed);
  t.shrinks = shrinks_.load(std::memory_order_relaxed);
  t.strategy_failures = strategy_failures_.load(std::memory_order_relaxed);
  return t;
}

void Scaler::drive_manually() {
  std::lock_guard lock(mu_);
  driven_ = true;
}

std::optional<Clock::time_point> Scaler::next_wake() const {
  std::lock_guard lock(mu_);
  std::optional<Clock::time_point> wake;
  for (const auto& e : entries_) {
    if (!wake || e->next_evaluation < *wake) {
      wake = e->next_evaluation;
    }
  }
  return wake;
}

void Scaler::advance_to(Clock::time_point now) {
  std::lock_guard lock(mu_);
  evaluate_due(now);
}

void Scaler::evaluate_due(Clock::time_point now) {
  for (auto& e : entries_) {
    if (!stopping_ && e->next_evaluation <= now) {
      evaluate(*e, now);
      // From now, not from the due time: a late wake-up must not cause a burst of catch-ups.
      e->next_evaluation = now + e->target.config->interval;
    }
  }
}

void Scaler::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto wake = Clock::now() + std::chrono::hours(1);
    for (const auto& e : entries_) {
      wake = std::min(wake, e->next_evaluation);
    }
    cv_.wait_until(lock, wake);
    evaluate_due(Clock::now());
  }
}

void Scaler::evaluate(Entry& e, Clock::time_point now) {
  const ScalingConfig& config = *e.target.config;
  runtime::Mailbox& mailbox = *e.target.mailbox;
  ScalingSample sample;
  sample.lanes = mailbox.lane_count();
  sample.min_lanes = config.min_lanes;
  sample.max_lanes = config.max_lanes;
  sample.interval = std::chrono::duration_cast<std::chrono::milliseconds>(now - e.last_sample);
  e.last_sample = now;
  for (std::int64_t size : mailbox.lane_sizes()) {
    sample.queued += size;
    sample.longest_lane = std::max(sample.longest_lane, size);
  }
  e.target.probe->collect(sample);
  evaluations_.fetch_add(1, std::memory_order_relaxed);

  ScaleVerdict verdict;
  try {
    verdict = e.target.strategy->evaluate(sample);
  } catch (const std::exception& ex) {
    strategy_failures_.fetch_add(1, std::memory_order_relaxed);
    e.target.logger->error("scaling strategy {} threw: {}; holding at {} lanes",
                           config.strategy.name, ex.what(), sample.lanes);
  } catch (...) {
    strategy_failures_.fetch_add(1, std::memory_order_relaxed);
    e.target.logger->error("scaling strategy {} threw a non-standard exception; holding",
                           config.strategy.name);
  }
  const double busy_lanes = sample.busy_lanes();
  const ScaleController::Decision d =
      e.controller.decide(sample.lanes, verdict.vote, now, busy_lanes);

  ++e.status.evaluations;
  e.status.user_wait_p99 = sample.user_wait.percentile(99);
  e.status.system_wait_p99 = sample.system_wait.percentile(99);
  e.status.cpu_per_lane = sample.cpu_per_lane();
  e.status.busy_per_lane = busy_lanes / std::max(1, sample.lanes);
  const bool change = e.controller.changes(d);
  if (change) {
    (d.target > sample.lanes ? grows_ : shrinks_).fetch_add(1, std::memory_order_relaxed);
    ++(d.target > sample.lanes ? e.status.grows : e.status.shrinks);
    e.status.last_decision =
        fmt::format("lanes {} -> {} ({}{}): {}", sample.lanes, d.target, to_string(d.outcome),
                    d.outcome == ScaleController::Outcome::into_bounds
                        ? ""
                        : fmt::format(", {} votes in a row", d.streak),
                    verdict.why);
    e.target.logger->info(
        "scaling: {}; {} messages started in {} ms, {} queued, lanes {:.0f}% busy",
        e.status.last_decision, sample.handled, sample.interval.count(), sample.queued,
        e.status.busy_per_lane * 100);
  } else if (d.outcome == ScaleController::Outcome::too_busy) {
    e.target.logger->debug(
        "scaling: shrink wanted at {} lanes, held: {:.2f} lanes' worth of handler time would "
        "leave the remaining lanes {:.0f}% busy (ShrinkMaxBusy {:.0f}%): {}",
        sample.lanes, busy_lanes,
        100 * busy_lanes / std::max(1, e.controller.shrink_target(sample.lanes)),
        config.shrink_max_busy * 100, verdict.why);
  } else if (d.outcome != ScaleController::Outcome::hold) {
    e.target.logger->debug("scaling: {} wanted at {} lanes, {} ({}/{}): {}",
                           to_string(verdict.vote), sample.lanes, to_string(d.outcome), d.streak,
                           config.hysteresis, verdict.why);
  }
  // Published before resizing: whoever sees the new lane count also sees the decision.
  e.target.probe->publish(e.status);
  if (change) {
    mailbox.resize(d.target);
  }
}

}  // namespace ember::detail
