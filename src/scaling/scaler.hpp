// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <ember/config.hpp>
#include <ember/log.hpp>
#include <ember/node.hpp>
#include <ember/scaling.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/mailbox.hpp"
#include "runtime/scheduler.hpp"
#include "scaling/probe.hpp"

namespace ember::detail {

/// One thread per node that evaluates every autoscaled service at its Interval and resizes its
/// mailbox. Resizing goes through Mailbox::resize, which keeps per-key order and loses nothing,
/// so the scaler never touches messages. The thread starts with the first service added.
class Scaler final : public runtime::TimeDriven {
 public:
  struct Target {
    std::string name;  ///< for the decision log
    runtime::Mailbox* mailbox = nullptr;
    ScalingProbe* probe = nullptr;
    const Logger* logger = nullptr;
    const ScalingConfig* config = nullptr;
    std::unique_ptr<ScalingStrategy> strategy;
  };

  Scaler();
  ~Scaler() override;
  Scaler(const Scaler&) = delete;
  Scaler& operator=(const Scaler&) = delete;

  /// Everything `target` points to must outlive its remove().
  void add(Target target);
  /// After this returns, the scaler no longer touches the service (an evaluation in progress
  /// has finished).
  void remove(const runtime::Mailbox* mailbox);
  /// Joins the thread. Idempotent.
  void stop();
  [[nodiscard]] ScalingTotals totals() const;

  /// No thread: a runtime::Driver evaluates through TimeDriven (the simulator).
  void drive_manually();
  [[nodiscard]] std::optional<Clock::time_point> next_wake() const override;
  void advance_to(Clock::time_point now) override;

 private:
  struct Entry;
  void run();
  void evaluate(Entry& e, Clock::time_point now);
  void evaluate_due(Clock::time_point now);  // mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Entry>> entries_;  // mu_
  bool stopping_ = false;                        // mu_
  bool driven_ = false;                          // mu_
  std::thread thread_;                           // mu_ to start
  std::atomic<std::uint64_t> evaluations_{0};
  std::atomic<std::uint64_t> grows_{0};
  std::atomic<std::uint64_t> shrinks_{0};
  std::atomic<std::uint64_t> strategy_failures_{0};
};

}  // namespace ember::detail
