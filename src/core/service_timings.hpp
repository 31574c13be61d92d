// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ember/log.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/histogram.hpp"

namespace ember::detail {

/// What a node measures about every message when asked to (its admin listener is configured):
/// how long each waited in its mailbox and how long its handler ran, and which handlers ran
/// longer than the slow thresholds.
struct TimingOptions {
  std::chrono::nanoseconds slow{std::chrono::milliseconds(10)};
  std::chrono::nanoseconds very_slow{std::chrono::seconds(1)};
};

/// A handler method that ran over a slow threshold.
struct SlowMethod {
  std::string method;
  std::uint64_t slow = 0;       ///< runs over TimingOptions::slow (very slow ones included)
  std::uint64_t very_slow = 0;  ///< runs over TimingOptions::very_slow
  double max_seconds = 0;       ///< the longest run
  std::uint64_t last_trace_id = 0;
};

/// One service's message timings. Lane 0 (every message of a one-lane service) writes its own
/// histograms without a locked instruction, since one thread at a time runs a lane; the other
/// lanes share a second set, written with atomic additions.
class ServiceTimings {
 public:
  ServiceTimings(const TimingOptions& options, Logger logger);

  [[nodiscard]] std::uint64_t slow_ticks() const noexcept { return slow_ticks_; }

  /// On the lane's thread, after a handler: `enqueued` is the message's stamp (0: none).
  void record(int lane, std::uint64_t enqueued, std::uint64_t started,
              std::uint64_t finished) noexcept {
    const std::uint64_t wait = enqueued != 0 && started > enqueued ? started - enqueued : 0;
    const std::uint64_t run = finished > started ? finished - started : 0;
    if (lane == 0) {
      if (enqueued != 0) {
        lane0_.wait.observe(wait);
      }
      lane0_.run.observe(run);
    } else {
      Lanes<true>& others = other_lanes();
      if (enqueued != 0) {
        others.wait.observe(wait);
      }
      others.run.observe(run);
    }
  }

  /// A handler ran `ticks` (at least slow_ticks()): counted per method and logged, at most one
  /// line a second per service and level (those in between are counted in the next line).
  void report_slow(std::string_view method, std::uint64_t ticks, std::uint64_t trace_id);

  struct Snapshot {
    metrics::HistogramSnapshot wait;  ///< messages with a queueing stamp
    metrics::HistogramSnapshot run;   ///< every handled message
  };
  [[nodiscard]] Snapshot snapshot() const noexcept;
  /// Methods that ran slow, slowest first.
  [[nodiscard]] std::vector<SlowMethod> slow_methods() const;

 private:
  template <bool Shared>
  struct Lanes {
    metrics::TickHistogram<Shared> wait;
    metrics::TickHistogram<Shared> run;
  };
  Lanes<true>& other_lanes() noexcept;

  const std::uint64_t slow_ticks_;
  const std::uint64_t very_slow_ticks_;
  const Logger logger_;
  Lanes<false> lane0_;
  std::atomic<Lanes<true>*> others_{nullptr};  // owned; created by the first message off lane 0

  mutable std::mutex slow_mu_;
  std::map<std::string, SlowMethod, std::less<>> slow_;
  // Per level (slow, very slow): a very slow handler is not hidden behind a slow one's line.
  std::chrono::steady_clock::time_point last_log_[2]{};
  std::uint64_t unlogged_[2]{};

 public:
  ~ServiceTimings();
  ServiceTimings(const ServiceTimings&) = delete;
  ServiceTimings& operator=(const ServiceTimings&) = delete;
};

}  // namespace ember::detail
