// SPDX-License-Identifier: Apache-2.0
// What crosses the wire for more than one backend: the identity of a caller or publisher, and
// the event frame that both event backends ("cluster" and "nats") carry; and the fast decoding of
// the commonest frame between nodes, a request.
#pragma once

#include <ember/event.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "rpc/calls.hpp"

namespace ember::wire {
class CallerPid;
class EventFrame;
class RemoteRequest;
}  // namespace ember::wire

namespace ember::detail {

class NodeImpl;

void to_wire(const Pid& pid, wire::CallerPid& out);
std::shared_ptr<const Pid> from_wire(const wire::CallerPid& in, const std::string& address);

/// Fills `out` with one event. `publisher_address` is where the publisher's node can be reached
/// ("" when the backend has no node addresses).
void encode_event(const AnyMessage& payload, const EventInfo& info,
                  const std::string& publisher_address, wire::EventFrame& out);

/// Parses the payload by its protobuf name and delivers it to this node's subscribers of the
/// event's type and scope (never forwarded again). False, with an error in the log naming the
/// publishing node and the backend (`via`), when the payload type is not linked into this
/// program or the bytes do not parse.
bool deliver_event(NodeImpl& node, std::string_view via, const wire::EventFrame& frame);

/// Decodes the common frame between nodes, an Envelope holding only a request (field 1,
/// length-delimited, spanning the whole frame), straight into `out` without an Envelope around
/// it, so a recycled request can be reused. `out` must be empty (new or reset). False when the
/// frame has another form or does not parse: then it is to be parsed as a whole Envelope.
bool parse_request_frame(std::string_view frame, wire::RemoteRequest& out);

}  // namespace ember::detail
