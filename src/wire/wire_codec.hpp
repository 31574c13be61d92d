// SPDX-License-Identifier: Apache-2.0
// Every mapping between the wire and what handlers and callers see, in one place: a request
// and its Context (caller Pid, deadline, key, priority, headers), a reply and its outcome, the
// event frame that both event backends ("cluster" and "nats") carry, and the fast framing and
// decoding of the commonest frame between nodes, a request.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <ember/event.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "rpc/calls.hpp"

namespace ember::wire {
class CallerPid;
class EventFrame;
class RemoteReply;
class RemoteRequest;
}  // namespace ember::wire

namespace ember::detail {

class NodeImpl;

void to_wire(const Pid& pid, wire::CallerPid& out);
/// The caller as the callee's handler sees it: `address` is where its node answers.
std::shared_ptr<const Pid> from_wire(const wire::CallerPid& in, const std::string& address);

/// A request's deadline as it crosses the wire: the remaining time (`timeout_ms`) and the same
/// instant as wall-clock time (`deadline_unix_us`), both taken from the caller's steady deadline
/// `deadline` at `now` / `wall_now`. A deadline already passed still sends 1 ms, so the request
/// keeps a deadline (and the receiver drops it).
struct WireDeadline {
  std::int64_t timeout_ms = 0;
  std::int64_t deadline_unix_us = 0;
};
WireDeadline to_wire_deadline(std::chrono::steady_clock::time_point deadline,
                              std::chrono::steady_clock::time_point now,
                              std::chrono::system_clock::time_point wall_now) noexcept;

/// The local deadline of a request read from the wire at `now` / `wall_now`: the earlier of
/// `now + timeout_ms` and the caller's wall-clock deadline moved onto this node's steady clock.
/// The relative timeout restarts when the frame is read, so only the wall-clock deadline counts
/// the time the frame spent in socket buffers (a receiver paused or far behind); the relative one
/// bounds the damage when the clocks disagree. 0 means absent (older senders send no wall-clock
/// deadline; a Send without timeout sends neither): no deadline at all is time_point::max().
std::chrono::steady_clock::time_point local_deadline(
    std::int64_t timeout_ms, std::int64_t deadline_unix_us,
    std::chrono::steady_clock::time_point now,
    std::chrono::system_clock::time_point wall_now) noexcept;

/// Fills `out` with one event. `publisher_address` is where the publisher's node can be reached
/// ("" when the backend has no node addresses).
void encode_event(const AnyMessage& payload, const EventInfo& info,
                  const std::string& publisher_address, wire::EventFrame& out);

/// Parses the payload by its protobuf name and delivers it to this node's subscribers of the
/// event's type and scope (never forwarded again). False, with an error in the log naming the
/// publishing node and the backend (`via`), when the payload type is not linked into this
/// program or the bytes do not parse.
bool deliver_event(NodeImpl& node, std::string_view via, const wire::EventFrame& frame);

/// Resets every field of a reused request without freeing anything: Clear() would delete the
/// caller sub-message and so allocate it again for every request. Keep in step with wire.proto.
void reset_request(wire::RemoteRequest& r);

/// Who sends a request: its per-node id (the reply names it) and the sending node's incarnation
/// (the receiver's duplicate filter is per incarnation).
struct RequestIdentity {
  std::uint64_t id = 0;
  std::uint64_t incarnation = 0;
};
/// Fills a reused request (reset here) for `target`: method, payload, the context's priority,
/// key, deadline (both forms, see to_wire_deadline), trace id, headers and caller, and where the
/// reply goes. Fails, naming the method, when the payload does not serialize.
Status encode_request(const Pid& target, const CallSpec& spec, const Context& context,
                      RequestIdentity identity, bool wants_reply, const std::string& reply_address,
                      wire::RemoteRequest& out);
/// The same for a payload kept serialized (a client's, through the gateway): no types are sent;
/// the callee parses it as its method's request type, and the reply's payload is not parsed.
void encode_serialized_request(const Pid& target, std::string_view method, std::string_view payload,
                               const Context& context, RequestIdentity identity, bool wants_reply,
                               const std::string& reply_address, wire::RemoteRequest& out);
/// Frames a request as an Envelope holding it (field 1, length-delimited) into `frame`, reused:
/// after warm-up no allocation.
void frame_request(const wire::RemoteRequest& request, std::string& frame);

/// encode_request + frame_request for a stream of requests: the fields that stay the same from
/// one request to the next between one caller, target and method (target uid, method, types,
/// caller, reply address) are serialized once and copied as bytes; only id, deadline, trace id,
/// key and payload are encoded per request. Protobuf reads fields in any order, so the receiver
/// parses the same request that encode_request would have made. One per thread.
class RequestFramer {
 public:
  /// `framed` false (and nothing written): the request carries what the cached bytes do not
  /// cover (headers, an origin); encode it with encode_request.
  Status frame(const std::shared_ptr<const Pid>& target, const CallSpec& spec,
               const Context& context, RequestIdentity identity, bool wants_reply,
               const std::string& reply_address, std::string& frame, bool& framed);

 private:
  // Holds the Pids it was built for: an address cannot be reused by another Pid meanwhile.
  struct Prefix {
    std::shared_ptr<const Pid> target;
    std::shared_ptr<const Pid> caller;
    std::string method;
    const void* payload_type = nullptr;   // protobuf Descriptor
    const void* response_type = nullptr;  // protobuf Descriptor, when a reply is wanted
    bool wants_reply = false;
    std::string reply_address;
    std::string bytes;
  };
  const Prefix& prefix_for(const std::shared_ptr<const Pid>& target, const CallSpec& spec,
                           const Context& context, bool wants_reply,
                           const std::string& reply_address);

  static constexpr std::size_t kPrefixes = 4;
  std::array<Prefix, kPrefixes> prefixes_;
  std::size_t next_victim_ = 0;
  std::string fields_;  // the per-request fields, reused
};
/// The Context a handler of a request read from the wire sees; `deadline` is this node's, fixed
/// when the frame was read (local_deadline).
void decode_context(const wire::RemoteRequest& request,
                    std::chrono::steady_clock::time_point deadline, Context& out);

/// A handler's outcome as a reply to request `id`.
void encode_reply(std::uint64_t id, const AnyReply& result, wire::RemoteReply& out);
/// A reply as the caller's outcome: the response parsed as `prototype`'s type, or the error the
/// callee sent. An error code this node does not know becomes internal, never another code;
/// `node` names the callee in errors.
AnyReply decode_reply(const wire::RemoteReply& reply, const AnyMessage* prototype,
                      const std::string& node);

/// Decodes the common frame between nodes, an Envelope holding only a request (field 1,
/// length-delimited, spanning the whole frame), straight into `out` without an Envelope around
/// it, so a recycled request can be reused. `out` must be empty (new or reset). False when the
/// frame has another form or does not parse: then it is to be parsed as a whole Envelope.
bool parse_request_frame(std::string_view frame, wire::RemoteRequest& out);

}  // namespace ember::detail
