// SPDX-License-Identifier: Apache-2.0
#include "assembly/scaling_subsystem.hpp"

#include <ember/node.hpp>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"

namespace ember::detail {

Status ScalingSubsystem::start() {
  if (node_.driver != nullptr) {
    scaler_.drive_manually();
    node_.driver->attach(scaler_);
  }
  return {};
}

void ScalingSubsystem::service_started(ServiceCore& service) {
  std::unique_ptr<ScalingStrategy> strategy = service.take_scaling_strategy();
  if (!strategy) {
    return;
  }
  scaler_.add(Scaler::Target{describe(service.config()), &service.mailbox(),
                             service.scaling_probe(), &service.logger(),
                             service.config().worker.scaling.get(), std::move(strategy)});
  registered_.insert(&service);
}

void ScalingSubsystem::service_stopping(ServiceCore& service) {
  if (registered_.erase(&service) != 0) {
    scaler_.remove(&service.mailbox());
  }
}

void ScalingSubsystem::stop() {
  scaler_.stop();  // every service has left it already
  if (node_.driver != nullptr) {
    node_.driver->detach(scaler_);
  }
}

void ScalingSubsystem::add_stats(NodeStats& stats) const {
  stats.scaling = scaler_.totals();
}

}  // namespace ember::detail
