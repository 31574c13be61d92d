// SPDX-License-Identifier: Apache-2.0
// A frame from another node after the handshake, decoded as the receiving side does: the fast
// path for a lone request, the whole Envelope otherwise, then what the codec makes of it before
// any service runs (a request's Context and caller, a reply's outcome, the event payload parsed by
// its type name).
#include <google/protobuf/empty.pb.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ember/config.hpp>
#include <ember/log.hpp>
#include <ember/node.hpp>
#include <string_view>

#include "core/node_impl.hpp"
#include "ember/wire.pb.h"
#include "wire/wire_codec.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wire_envelope fuzzer: %s\n", what);
    std::abort();
  }
}

void read_request(const ember::wire::RemoteRequest& request) {
  ember::Context context;
  ember::detail::decode_context(request, ember::Clock::time_point::max(), context);
  const ember::Pid& caller = context.caller();
  check(caller.uid().size() >= 3 && !caller.to_string().empty(), "caller identity");
  check(context.headers().size() <= static_cast<std::size_t>(request.headers().size()),
        "header map");
  check(context.method() == request.method(), "method");
}

void read_reply(const ember::wire::RemoteReply& reply) {
  // An outcome for a caller that expects google.protobuf.Empty: a response, or an error whose
  // code is one this node knows (an unknown one must become internal, never another code).
  const google::protobuf::Empty prototype;
  ember::detail::AnyReply outcome = ember::detail::decode_reply(reply, &prototype, "fuzz");
  if (!outcome) {
    const auto code = static_cast<std::uint32_t>(outcome.error().code());
    check(code > 0 && code <= static_cast<std::uint32_t>(ember::last_errc), "reply code");
    check(!outcome.error().to_string().empty(), "reply error");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Every rejected event would log a line, and protobuf one more for bad UTF-8 in a string field.
  ember::set_log_level(ember::LogLevel::off);
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A node with no services and no subscribers: an event is parsed, then reaches nobody.
  static auto* node = new ember::Node(ember::NodeConfig{});

  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  ember::wire::RemoteRequest fast;
  const bool fast_ok = ember::detail::parse_request_frame(frame, fast);
  ember::wire::Envelope envelope;
  const bool ok = envelope.ParseFromArray(data, static_cast<int>(size));
  // The fast path is an optimisation only: where both decode, they must read the same request.
  // (They may differ on acceptance at protobuf's nesting limit, the Envelope being one level
  // deeper; such a frame is then simply taken by the fast path.)
  if (fast_ok && ok) {
    check(envelope.has_request(), "fast path took a frame that is not a request");
    check(google::protobuf::util::MessageDifferencer::Equals(fast, envelope.request()),
          "fast path and Envelope decode different requests");
  }
  if (fast_ok) {
    read_request(fast);
  }
  if (!ok) {
    return 0;
  }
  if (envelope.has_request()) {
    read_request(envelope.request());
  } else if (envelope.has_reply()) {
    read_reply(envelope.reply());
  } else if (envelope.has_event()) {
    ember::detail::deliver_event(ember::detail::NodeAccess::impl(*node), "fuzz", envelope.event());
  }
  return 0;
}
