// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <set>

#include "core/subsystem.hpp"
#include "scaling/scaler.hpp"

namespace ember::detail {

class NodeImpl;

/// Lane autoscaling as a node subsystem: the scaler evaluates every autoscaled service from its
/// start to the beginning of its stop. The probe that measures a service's lanes stays in the
/// service's mailbox path; this part owns the decisions and their thread.
class ScalingSubsystem final : public Subsystem {
 public:
  explicit ScalingSubsystem(NodeImpl& node) : node_(node) {}

  [[nodiscard]] std::string_view name() const noexcept override { return "scaling"; }
  /// Under a simulation the scaler is one of the world's time-driven parts, not a thread.
  Status start() override;
  void service_started(ServiceCore& service) override;
  /// Before the drain: the lane count must not change under the drain markers.
  void service_stopping(ServiceCore& service) override;
  void stop() override;
  void add_stats(NodeStats& stats) const override;

 private:
  NodeImpl& node_;
  Scaler scaler_;  // its thread starts with the first autoscaled service
  std::set<const ServiceCore*> registered_;
};

}  // namespace ember::detail
