// SPDX-License-Identifier: Apache-2.0
#include "wire/wire_codec.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/message.h>

#include <algorithm>
#include <cassert>
#include <ember/log.hpp>

#include "ember/wire.pb.h"
#include "rpc/events.hpp"

namespace ember::detail {
namespace {

/// Reads a varint at `p`; returns the byte after it, or nullptr.
const char* read_varint(const char* p, const char* end, std::uint64_t& value) {
  value = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    const auto byte = static_cast<unsigned char>(*p++);
    value |= std::uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80u) == 0) {
      return p;
    }
  }
  return nullptr;
}

}  // namespace

void to_wire(const Pid& pid, wire::CallerPid& out) {
  out.set_node_id(pid.node_id);
  out.set_name(pid.name);
  out.set_id(pid.id);
  out.set_type(pid.type);
  out.set_server_id(pid.server_id);
  out.set_master(pid.master);
  out.set_epoch(pid.epoch);
  out.set_version(pid.version);
}

std::shared_ptr<const Pid> from_wire(const wire::CallerPid& in, const std::string& address) {
  auto pid = std::make_shared<Pid>();
  pid->node_id = in.node_id();
  pid->name = in.name();
  pid->id = in.id();
  pid->type = in.type();
  pid->server_id = in.server_id();
  pid->master = in.master();
  pid->epoch = in.epoch();
  pid->version = in.version();
  pid->address = address;
  return pid;
}

namespace {
// Values from the wire are clamped before they meet a time_point: a hostile or broken frame must
// not overflow the clock's representation. Ten years is "no practical deadline".
constexpr std::int64_t kMaxWireMicros = std::int64_t{10} * 366 * 24 * 3600 * 1'000'000;
}  // namespace

WireDeadline to_wire_deadline(std::chrono::steady_clock::time_point deadline,
                              std::chrono::steady_clock::time_point now,
                              std::chrono::system_clock::time_point wall_now) noexcept {
  using namespace std::chrono;
  const auto left = deadline - now;
  WireDeadline out;
  out.timeout_ms = std::max<std::int64_t>(duration_cast<milliseconds>(left).count(), 1);
  out.deadline_unix_us = duration_cast<microseconds>(wall_now.time_since_epoch()).count() +
                         std::clamp<std::int64_t>(duration_cast<microseconds>(left).count(),
                                                  -kMaxWireMicros, kMaxWireMicros);
  return out;
}

std::chrono::steady_clock::time_point local_deadline(
    std::int64_t timeout_ms, std::int64_t deadline_unix_us,
    std::chrono::steady_clock::time_point now,
    std::chrono::system_clock::time_point wall_now) noexcept {
  using namespace std::chrono;
  auto deadline = steady_clock::time_point::max();
  if (timeout_ms > 0) {
    deadline = now + microseconds(std::min(timeout_ms, kMaxWireMicros / 1000) * 1000);
  }
  if (deadline_unix_us > 0) {
    const std::int64_t left_us =
        deadline_unix_us - duration_cast<microseconds>(wall_now.time_since_epoch()).count();
    deadline = std::min(deadline,
                        now + microseconds(std::clamp(left_us, -kMaxWireMicros, kMaxWireMicros)));
  }
  return deadline;
}

void encode_event(const AnyMessage& payload, const EventInfo& info,
                  const std::string& publisher_address, wire::EventFrame& out) {
  out.set_type(info.type);
  out.set_server_scope(!info.scope.is_global());
  out.set_server_id(info.scope.server_id());
  out.set_payload_type(payload.GetDescriptor()->full_name());
  payload.SerializeToString(out.mutable_payload());
  out.set_priority(info.priority == Priority::system ? 1 : 0);
  out.set_key_hash(info.key.has_value() ? info.key.hash() : 0);
  out.set_trace_id(info.trace_id);
  to_wire(info.publisher, *out.mutable_publisher());
  out.set_publisher_address(publisher_address);
}

bool deliver_event(NodeImpl& node, std::string_view via, const wire::EventFrame& frame) {
  const auto* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
          frame.payload_type());
  const AnyMessage* prototype =
      descriptor == nullptr
          ? nullptr
          : google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor);
  if (prototype == nullptr) {
    system_log().error(
        "cluster event {} from node {} (via {}): payload type '{}' is not linked into this "
        "program; event dropped",
        frame.type(), frame.publisher().node_id(), via, frame.payload_type());
    return false;
  }
  std::shared_ptr<AnyMessage> payload(prototype->New());
  if (!payload->ParseFromString(frame.payload())) {
    system_log().error(
        "cluster event {} from node {} (via {}): the payload does not parse as {}; event dropped",
        frame.type(), frame.publisher().node_id(), via, frame.payload_type());
    return false;
  }
  PublishOptions options;
  options.priority = frame.priority() != 0 ? Priority::system : Priority::user;
  options.key = frame.key_hash() != 0 ? DispatchKey::from_hash(frame.key_hash()) : DispatchKey{};
  const EventScope scope =
      frame.server_scope() ? EventScope::server(frame.server_id()) : EventScope::global();
  deliver_remote_event(node, frame.type(), scope, std::move(payload), options, frame.trace_id(),
                       from_wire(frame.publisher(), frame.publisher_address()));
  return true;
}

bool parse_request_frame(std::string_view frame, wire::RemoteRequest& out) {
  if (frame.empty() || frame[0] != '\x0a') {
    return false;
  }
  const char* end = frame.data() + frame.size();
  std::uint64_t length = 0;
  const char* body = read_varint(frame.data() + 1, end, length);
  if (body == nullptr || length != static_cast<std::uint64_t>(end - body)) {
    return false;
  }
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const std::uint8_t*>(body),
                                            static_cast<int>(length));
  return out.MergeFromCodedStream(&in) && in.ConsumedEntireMessage();
}

void reset_request(wire::RemoteRequest& r) {
  r.set_id(0);
  r.clear_target_uid();
  r.clear_method();
  r.clear_payload_type();
  r.clear_payload();
  r.set_priority(0);
  r.set_key_hash(0);
  r.set_timeout_ms(0);
  r.set_trace_id(0);
  if (!r.headers().empty()) {
    r.mutable_headers()->clear();
  }
  r.set_wants_reply(false);
  r.mutable_caller()->Clear();  // a sub-message's Clear keeps its strings' capacity
  r.clear_response_type();
  r.clear_reply_address();
  r.set_incarnation(0);
  r.set_deadline_unix_us(0);
  r.clear_origin();
  r.set_ends_with_origin(false);
  r.set_serialized_payload(false);
  const auto* reflection = r.GetReflection();
  if (!reflection->GetUnknownFields(r).empty()) {
    reflection->MutableUnknownFields(&r)->Clear();
  }
  // A field added to wire.proto but not reset above would leak from one request to the next.
  // (The caller stays present but empty: its tag and a zero length, two bytes.)
  assert(r.ByteSizeLong() == 2 && "reset_request misses a field of wire.RemoteRequest");
}

namespace {

// Everything but the payload and the types.
void encode_request_head(const Pid& target, std::string_view method, const Context& context,
                         RequestIdentity identity, bool wants_reply,
                         const std::string& reply_address, wire::RemoteRequest& out) {
  reset_request(out);
  out.set_id(identity.id);
  out.set_incarnation(identity.incarnation);
  {
    std::string& uid = *out.mutable_target_uid();  // Pid::uid() without a temporary
    uid.append(std::to_string(target.server_id)).append(".").append(target.name).append(".");
    uid.append(target.id).append(".").append(target.node_id);
  }
  out.mutable_method()->assign(method);
  const ContextState& state = detail::state(context);
  out.set_priority(state.priority == Priority::system ? 1 : 0);
  out.set_key_hash(state.key.has_value() ? state.key.hash() : 0);
  if (state.deadline != Context::Clock::time_point::max()) {
    // Both forms: the receiver cannot see from a relative timeout how long the frame waited in
    // socket buffers (the wall clock costs one more vDSO read per request with a deadline).
    const WireDeadline d = to_wire_deadline(state.deadline, std::chrono::steady_clock::now(),
                                            std::chrono::system_clock::now());
    out.set_timeout_ms(d.timeout_ms);
    out.set_deadline_unix_us(d.deadline_unix_us);
  }
  out.set_trace_id(state.trace_id);
  for (const auto& [k, v] : context.headers()) {
    (*out.mutable_headers())[k] = v;
  }
  out.set_wants_reply(wants_reply);
  to_wire(context.caller(), *out.mutable_caller());
  out.set_reply_address(reply_address);
  if (state.origin() && state.origin()->wire_identity(*out.mutable_origin())) {
    out.set_ends_with_origin(state.ends_with_origin);
  }
}

}  // namespace

Status encode_request(const Pid& target, const CallSpec& spec, const Context& context,
                      RequestIdentity identity, bool wants_reply, const std::string& reply_address,
                      wire::RemoteRequest& out) {
  encode_request_head(target, spec.method, context, identity, wants_reply, reply_address, out);
  const AnyMessage& payload = spec.message();
  out.mutable_payload_type()->assign(payload.GetDescriptor()->full_name());
  if (!payload.SerializeToString(out.mutable_payload())) {
    return Error{Errc::invalid_argument,
                 "the request of '" + std::string(spec.method) + "' does not serialize"};
  }
  if (wants_reply && spec.response_prototype != nullptr) {
    out.set_response_type(spec.response_prototype->GetDescriptor()->full_name());
  }
  return {};
}

void encode_serialized_request(const Pid& target, std::string_view method, std::string_view payload,
                               const Context& context, RequestIdentity identity, bool wants_reply,
                               const std::string& reply_address, wire::RemoteRequest& out) {
  encode_request_head(target, method, context, identity, wants_reply, reply_address, out);
  out.mutable_payload()->assign(payload);
  out.set_serialized_payload(true);
}

namespace {
void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

}  // namespace

void frame_request(const wire::RemoteRequest& request, std::string& frame) {
  const std::size_t size = request.ByteSizeLong();
  frame.clear();
  frame.push_back('\x0a');  // Envelope field 1 (request), length-delimited
  put_varint(frame, size);
  const std::size_t head = frame.size();
  frame.resize(head + size);
  request.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(frame.data() + head));
}

namespace {

// Field numbers and wire types of wire.RemoteRequest.
enum : std::uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2 };
void put_tag(std::string& out, std::uint32_t field, std::uint32_t type) {
  put_varint(out, (field << 3) | type);
}
void put_varint_field(std::string& out, std::uint32_t field, std::uint64_t v) {
  if (v != 0) {
    put_tag(out, field, kVarint);
    put_varint(out, v);
  }
}

}  // namespace

const RequestFramer::Prefix& RequestFramer::prefix_for(const std::shared_ptr<const Pid>& target,
                                                       const CallSpec& spec, const Context& context,
                                                       bool wants_reply,
                                                       const std::string& reply_address) {
  const std::shared_ptr<const Pid>& caller = detail::state(context).caller;
  const void* payload_type = spec.message().GetDescriptor();
  const void* response_type = wants_reply && spec.response_prototype != nullptr
                                  ? spec.response_prototype->GetDescriptor()
                                  : nullptr;
  for (const Prefix& p : prefixes_) {
    if (p.target == target && p.caller == caller && p.payload_type == payload_type &&
        p.response_type == response_type && p.wants_reply == wants_reply &&
        p.method == spec.method && p.reply_address == reply_address) {
      return p;
    }
  }
  wire::RemoteRequest fixed;
  fixed.set_target_uid(target->uid());
  fixed.set_method(std::string(spec.method));
  fixed.set_payload_type(spec.message().GetDescriptor()->full_name());
  fixed.set_wants_reply(wants_reply);
  to_wire(context.caller(), *fixed.mutable_caller());
  fixed.set_reply_address(reply_address);
  if (response_type != nullptr) {
    fixed.set_response_type(spec.response_prototype->GetDescriptor()->full_name());
  }
  std::string bytes = fixed.SerializeAsString();
  std::string method(spec.method);
  std::string address = reply_address;
  // Everything that can throw is done: an entry is never left with one request's key and
  // another's bytes.
  Prefix& p = prefixes_[next_victim_];
  next_victim_ = (next_victim_ + 1) % kPrefixes;
  p.target = target;
  p.caller = caller;
  p.method = std::move(method);
  p.payload_type = payload_type;
  p.response_type = response_type;
  p.wants_reply = wants_reply;
  p.reply_address = std::move(address);
  p.bytes = std::move(bytes);
  return p;
}

Status RequestFramer::frame(const std::shared_ptr<const Pid>& target, const CallSpec& spec,
                            const Context& context, RequestIdentity identity, bool wants_reply,
                            const std::string& reply_address, std::string& frame, bool& framed) {
  const ContextState& state = detail::state(context);
  framed = false;
  if (!target || state.headers() != nullptr || state.origin()) {
    return {};
  }
  const Prefix& prefix = prefix_for(target, spec, context, wants_reply, reply_address);
  fields_.clear();
  put_varint_field(fields_, 1, identity.id);
  if (identity.incarnation != 0) {
    put_tag(fields_, 15, kFixed64);
    for (int i = 0; i < 8; ++i) {
      fields_.push_back(static_cast<char>((identity.incarnation >> (8 * i)) & 0xff));
    }
  }
  put_varint_field(fields_, 6, state.priority == Priority::system ? 1 : 0);
  put_varint_field(fields_, 7, state.key.has_value() ? state.key.hash() : 0);
  if (state.deadline != Context::Clock::time_point::max()) {
    const WireDeadline d = to_wire_deadline(state.deadline, std::chrono::steady_clock::now(),
                                            std::chrono::system_clock::now());
    put_varint_field(fields_, 8, static_cast<std::uint64_t>(d.timeout_ms));
    put_varint_field(fields_, 16, static_cast<std::uint64_t>(d.deadline_unix_us));
  }
  put_varint_field(fields_, 9, state.trace_id);
  const AnyMessage& payload = spec.message();
  const std::size_t payload_size = payload.ByteSizeLong();
  if (payload_size != 0) {
    put_tag(fields_, 5, kBytes);
    put_varint(fields_, payload_size);
  }
  const std::size_t body = prefix.bytes.size() + fields_.size() + payload_size;
  frame.clear();
  frame.push_back('\x0a');  // Envelope field 1 (request), length-delimited
  put_varint(frame, body);
  frame.append(prefix.bytes);
  frame.append(fields_);
  const std::size_t at = frame.size();
  frame.resize(at + payload_size);
  if (payload_size != 0 &&
      payload.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(frame.data() + at)) !=
          reinterpret_cast<std::uint8_t*>(frame.data() + at + payload_size)) {
    return Error{Errc::invalid_argument,
                 "the request of '" + std::string(spec.method) + "' does not serialize"};
  }
  framed = true;
  return {};
}

void decode_context(const wire::RemoteRequest& request,
                    std::chrono::steady_clock::time_point deadline, Context& out) {
  ContextState& state = detail::state(out);
  state.priority = request.priority() != 0 ? Priority::system : Priority::user;
  state.key = request.key_hash() != 0 ? DispatchKey::from_hash(request.key_hash()) : DispatchKey{};
  state.trace_id = request.trace_id();
  state.deadline = deadline;
  if (!request.headers().empty()) {
    auto headers = std::make_shared<Headers>();
    for (const auto& [k, v] : request.headers()) {
      headers->emplace(k, v);
    }
    state.edit().headers = std::move(headers);
  }
  state.caller = from_wire(request.caller(), request.reply_address());
  state.method = request.method();
}

void encode_reply(std::uint64_t id, const AnyReply& result, wire::RemoteReply& out) {
  out.set_id(id);
  if (result) {
    const AnyMessage& payload = **result;
    out.set_payload_type(payload.GetDescriptor()->full_name());
    payload.SerializeToString(out.mutable_payload());
  } else {
    out.set_code(static_cast<std::uint32_t>(result.error().code()));
    out.set_message(result.error().message());
  }
}

AnyReply decode_reply(const wire::RemoteReply& reply, const AnyMessage* prototype,
                      const std::string& node) {
  if (reply.code() != 0) {
    // A code this node does not know (a newer peer, or a damaged frame) must not narrow into
    // another one, least of all into ok.
    const bool known = reply.code() > 0 && reply.code() <= static_cast<std::uint32_t>(last_errc);
    return Error{
        known ? static_cast<Errc>(reply.code()) : Errc::internal,
        known ? reply.message()
              : "unknown error code " + std::to_string(reply.code()) + ": " + reply.message()};
  }
  if (prototype == nullptr || reply.payload_type() != prototype->GetDescriptor()->full_name()) {
    return Error{Errc::bad_argument_type,
                 "node " + node + " answered with " + reply.payload_type()};
  }
  std::shared_ptr<AnyMessage> payload(prototype->New());
  if (!payload->ParseFromString(reply.payload())) {
    return Error{Errc::bad_argument_type, "the reply from node " + node + " does not parse"};
  }
  return payload;
}

}  // namespace ember::detail
