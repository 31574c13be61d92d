// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "admin/http_listener.hpp"
#include "core/subsystem.hpp"
#include "metrics/histogram.hpp"
#include "timer/timer_service.hpp"

namespace ember::detail {
class NodeImpl;
class ServiceCore;
}  // namespace ember::detail

namespace ember::admin {

/// The node's admin listener (AdminConf), as a node subsystem: Prometheus metrics, health
/// probes, the JSON API and the dashboard. It reads the kernel and messaging directly and
/// every other subsystem through ops::Observable, so it links none of them.
///
/// Added last: it starts after every other subsystem (it asks them for figures) and its stop,
/// which closes the listener, comes first, so no request reaches a subsystem that stopped.
class Admin final : public detail::Subsystem, private timer::TimerTarget {
 public:
  explicit Admin(detail::NodeImpl& node);
  ~Admin() override;

  /// The node's admin, or nullptr without AdminConf.
  static Admin* of(detail::NodeImpl& node) noexcept;

  [[nodiscard]] std::string_view name() const noexcept override { return "admin"; }
  /// Opens the listener: the probes answer while the services start (not ready yet).
  Status start() override;
  /// Every service started and every subsystem settled: ready.
  Status settle() override;
  /// The node stops: not ready any more, while the services drain.
  void stopping() override;
  void stop() override;

  /// host:port of the listener.
  [[nodiscard]] std::string address() const;

 private:
  enum class Readiness : std::uint8_t { starting, ready, stopping };

  /// The network thread's part: the probes, the page, and refusals (Host, Origin, token).
  [[nodiscard]] std::optional<HttpResponse> answer_promptly(const HttpRequest& request) const;
  /// The request thread's part, for what answer_promptly passed on: /metrics and /api/*.
  HttpResponse serve(const HttpRequest& request);

  // The heartbeat that shows the node's loops turn: a one-shot timer (a second, or a quarter of
  // HealthStall) whose fire runs on a worker, which arms the next one.
  void post_timer_fire(runtime::Message* m) noexcept override;
  void arm_heartbeat();  // with heartbeat_mu_ held

  [[nodiscard]] std::string unhealthy() const;
  [[nodiscard]] std::vector<std::string> not_ready() const;
  [[nodiscard]] bool authorized(const HttpRequest& request) const;
  HttpResponse metrics();
  HttpResponse api_get(std::string_view topic, const HttpRequest& request);
  HttpResponse api_post(std::string_view action, const HttpRequest& request);
  std::string node_json() const;
  std::string services_json();
  std::string slow_json() const;
  std::string cluster_json() const;
  void sample_history();
  void audit(const std::string& line) const;

  detail::NodeImpl& node_;
  std::unique_ptr<HttpListener> listener_;
  std::atomic<Readiness> readiness_{Readiness::starting};
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  timer::TimerOwnerList ticker_owner_;
  std::mutex heartbeat_mu_;           // arming a beat against stopping
  std::atomic<bool> ticking_{false};  // read by the listener's thread
  std::atomic<std::int64_t> timer_turned_ns_{0};
  std::atomic<std::int64_t> worker_turned_ns_{0};

  // Per service, what its histograms held at each of the last samples (every 5 s, one minute):
  // wait and run figures over the last minute come from the difference. Request thread only.
  struct Sample {
    std::chrono::steady_clock::time_point at;
    metrics::HistogramSnapshot wait;
    metrics::HistogramSnapshot run;
  };
  std::map<std::string, std::deque<Sample>> history_;
  std::chrono::steady_clock::time_point last_sample_{};
};

}  // namespace ember::admin
