// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/context.hpp>
#include <ember/error.hpp>
#include <memory>
#include <string>

#include "rpc/calls.hpp"
#include "rpc/repository.hpp"

namespace ember::detail {

class NodeImpl;

/// Posts a request whose payload is still serialized (a game client's, through the gateway) to
/// a service of this node or, through the cluster, of another. The callee parses it as its
/// method's request type on its own lane, so the sender needs no type and the parsing is spread
/// over the workers; from there it takes the one inbound path (expiry, a closed origin, method,
/// types). The context's key chooses the lane and its priority the queue. The outcome goes to
/// `responder` (from another node through Responder::deliver_serialized); a failure to post (the
/// service is gone, its mailbox is full, no cluster) is returned and nothing was queued.
Status post_bytes_request(NodeImpl& node, const Target& target, std::string method,
                          std::string payload, Context context,
                          std::shared_ptr<Responder> responder);

}  // namespace ember::detail
