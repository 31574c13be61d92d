// SPDX-License-Identifier: Apache-2.0
// Writes the seed corpus of the wire_envelope fuzzer: frames as nodes send them (a request framed
// like ClusterLink::send_request, replies, events from encode_event) and a few near misses.
//   cmake --build --preset fuzz --target ember_wire_corpus
//   build/fuzz/fuzz/ember_wire_corpus fuzz/corpus/wire_envelope
#include <cstdio>
#include <ember/event.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "ember/wire.pb.h"
#include "wire/wire_codec.hpp"

namespace {

namespace wire = ember::wire;

void write(const std::filesystem::path& dir, const std::string& name, const std::string& bytes) {
  std::ofstream(dir / name, std::ios::binary) << bytes;
  std::printf("%s: %zu bytes\n", name.c_str(), bytes.size());
}

ember::Pid caller() {
  ember::Pid pid;
  pid.node_id = "game-1";
  pid.name = "room";
  pid.id = "7";
  pid.type = "game";
  pid.server_id = 1;
  pid.version = 3;
  pid.master = true;
  pid.epoch = 42;
  return pid;
}

wire::RemoteRequest call_request() {
  wire::RemoteRequest r;
  r.set_id(1001);
  r.set_target_uid("1.login..game-2");
  r.set_method("Login");
  // Any message type linked into the receiver will do as a payload.
  wire::ServiceRecord payload;
  payload.set_node_id("game-2");
  payload.set_name("login");
  payload.set_address("127.0.0.1:7100");
  r.set_payload_type(payload.GetDescriptor()->full_name());
  r.set_payload(payload.SerializeAsString());
  r.set_priority(1);
  r.set_key_hash(0x9e3779b97f4a7c15);
  r.set_timeout_ms(1000);
  r.set_trace_id(77);
  (*r.mutable_headers())["tenant"] = "t1";
  (*r.mutable_headers())["locale"] = "en";
  r.set_wants_reply(true);
  ember::detail::to_wire(caller(), *r.mutable_caller());
  r.set_response_type("ember.wire.ServiceRecord");
  r.set_reply_address("127.0.0.1:7101");
  r.set_incarnation(0x0123456789abcdef);
  return r;
}

std::string frame(const wire::RemoteRequest& request) {
  wire::Envelope envelope;
  *envelope.mutable_request() = request;
  return envelope.SerializeAsString();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  const wire::RemoteRequest call = call_request();
  const std::string call_frame = frame(call);
  write(dir, "request_call.bin", call_frame);

  wire::RemoteRequest send;  // a Send: no reply wanted, no deadline, an empty message
  send.set_id(1002);
  send.set_target_uid("0.chat..game-2");
  send.set_method("Say");
  send.set_payload_type("ember.wire.CallerPid");
  send.mutable_caller();
  send.set_reply_address("127.0.0.1:7101");
  send.set_incarnation(0x0123456789abcdef);
  write(dir, "request_send.bin", frame(send));

  wire::Envelope reply;
  reply.mutable_reply()->set_id(1001);
  reply.mutable_reply()->set_payload_type("ember.wire.ServiceRecord");
  reply.mutable_reply()->set_payload(call.payload());
  write(dir, "reply_ok.bin", reply.SerializeAsString());

  wire::Envelope failed;
  failed.mutable_reply()->set_id(1003);
  failed.mutable_reply()->set_code(static_cast<std::uint32_t>(ember::Errc::no_such_method));
  failed.mutable_reply()->set_message("service room#7@game-1 has no method 'Leave'");
  write(dir, "reply_error.bin", failed.SerializeAsString());

  ember::EventInfo info;
  info.type = 12;
  info.scope = ember::EventScope::server(3);
  info.priority = ember::Priority::system;
  info.key = ember::DispatchKey::from_int(1234);
  info.publisher = caller();
  info.trace_id = 99;
  wire::CallerPid payload;
  ember::detail::to_wire(caller(), payload);
  wire::Envelope event;
  ember::detail::encode_event(payload, info, "127.0.0.1:7100", *event.mutable_event());
  write(dir, "event_server.bin", event.SerializeAsString());

  wire::Envelope unknown = event;  // a type this program does not link
  unknown.mutable_event()->set_payload_type("game.PlayerJoined");
  write(dir, "event_unknown_type.bin", unknown.SerializeAsString());

  // Near misses: cut short, a request and a reply in one envelope (the last wins), a length
  // prefix one byte too long, and two requests back to back (protobuf merges them).
  write(dir, "request_truncated.bin", call_frame.substr(0, call_frame.size() - 5));
  write(dir, "request_then_reply.bin", call_frame + reply.SerializeAsString());
  std::string overlong = call_frame;
  overlong[1] = static_cast<char>(overlong[1] + 1);
  write(dir, "request_bad_length.bin", overlong);
  write(dir, "request_twice.bin", call_frame + frame(send));
  return 0;
}
