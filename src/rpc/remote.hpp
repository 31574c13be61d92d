// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/context.hpp>
#include <ember/rpc.hpp>
#include <memory>

#include "rpc/repository.hpp"

namespace ember::detail {

class PendingCall;

/// How the call paths reach a service on another node. Implemented by the cluster layer, so the
/// core does not depend on the network library.
class RemoteRouter {
 public:
  virtual ~RemoteRouter() = default;
  /// Serializes and sends one request to a remote target. `pending` null means Send (no reply).
  /// On failure nothing was sent and the error says why.
  virtual Status send_request(const Target& target, const CallSpec& spec, const Context& context,
                              const std::shared_ptr<PendingCall>& pending) = 0;
  /// Leaves the cluster: called by Node::stop once its services have drained.
  virtual void stop() = 0;
};

}  // namespace ember::detail
