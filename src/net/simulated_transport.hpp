// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>

#include "net/transport.hpp"
#include "runtime/network.hpp"

namespace ember::net {

/// A Transport over a simulated world's network: no socket, no thread, no handshake (the world
/// admits only its own nodes). What ClusterLink uses for a node started under a runtime::Driver.
Result<std::unique_ptr<Transport>> start_simulated(runtime::Network& network,
                                                   TransportOptions options,
                                                   Transport::OnFrame on_frame,
                                                   Transport::OnPeer on_peer);

}  // namespace ember::net
