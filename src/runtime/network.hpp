// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/error.hpp>
#include <functional>
#include <string>
#include <string_view>

namespace ember::runtime {

/// Frames between the nodes of one simulated world: what the cluster transport uses instead of
/// sockets when a node runs under a Driver. Nodes are addressed by node id. Within one pair of
/// nodes frames keep their order and arrive once, as on a TCP connection, unless the world
/// injects faults that break exactly that.
class Network {
 public:
  using OnFrame = std::function<void(const std::string& from, std::string_view payload)>;
  /// `up == false`: the connection to `node` broke; frames in flight to it were dropped.
  using OnPeer = std::function<void(const std::string& node, bool up)>;

  virtual ~Network() = default;
  /// Makes `node` reachable. already_exists while another endpoint holds the id.
  virtual Status bind(const std::string& node, OnFrame on_frame, OnPeer on_peer) = 0;
  /// `node` goes away (its process ended): peers see their connection to it break.
  virtual void unbind(const std::string& node) noexcept = 0;
  /// Queues a frame. unavailable (nothing was sent) when `to` is not bound or is cut off from
  /// `from`.
  virtual Status send(const std::string& from, const std::string& to, std::string_view payload) = 0;
};

}  // namespace ember::runtime
