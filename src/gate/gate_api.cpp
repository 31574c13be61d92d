// SPDX-License-Identifier: Apache-2.0
// The Gate API backend code calls: push, kick, session data, groups. Thread-safe: each finds its
// session under the registry's lock and hands the work to the session's I/O thread.
#include <algorithm>
#include <ember/node.hpp>
#include <ember/rpc.hpp>

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_core.hpp"
#include "gate/session.hpp"

namespace ember::gate {

namespace {
Error no_session(std::string_view id) {
  return Error{Errc::not_found, "no session " + std::string(id) + " on this gateway"};
}
Error no_uid(std::string_view uid) {
  return Error{Errc::not_found, "no session of uid " + std::string(uid) + " on this gateway"};
}
Result<std::string> serialize_push(std::string_view route,
                                   const google::protobuf::Message& message) {
  std::string payload;
  if (!message.SerializeToString(&payload)) {
    return Error{Errc::invalid_argument, "the push on " + std::string(route) +
                                             " does not serialize (missing required fields?)"};
  }
  return payload;
}
}  // namespace

Result<std::shared_ptr<const std::string>> GateCore::push_frame(
    std::string_view route, const google::protobuf::Message& message) {
  Result<std::string> payload = serialize_push(route, message);
  if (!payload) {
    return payload.error();
  }
  return push_frame_serialized(route, std::move(*payload));
}

std::shared_ptr<const std::string> GateCore::push_frame_serialized(std::string_view route,
                                                                   std::string payload) {
  ServerFrame frame;
  Push& push = *frame.mutable_push();
  {
    std::shared_lock lock(routes_mu_);
    if (auto it = route_ids_.find(std::string(route)); it != route_ids_.end()) {
      push.set_route_id(it->second);
    } else {
      push.set_route(std::string(route));
    }
  }
  push.set_payload(std::move(payload));
  auto bytes = std::make_shared<std::string>();
  frame.SerializeToString(bytes.get());
  return bytes;
}

Status GateCore::push(std::string_view session_id, std::string_view route,
                      const google::protobuf::Message& message) {
  Result<std::string> payload = serialize_push(route, message);
  if (!payload) {
    return payload.error();
  }
  return push_serialized(session_id, route, std::move(*payload));
}

Status GateCore::push_serialized(std::string_view session_id, std::string_view route,
                                 std::string payload) {
  std::shared_ptr<Session> s = find(session_id);
  if (!s) {
    return no_session(session_id);
  }
  pushes.fetch_add(1, std::memory_order_relaxed);
  s->post_frame(push_frame_serialized(route, std::move(payload)));
  return {};
}

Status GateCore::push_to_uid(std::string_view uid, std::string_view route,
                             const google::protobuf::Message& message) {
  std::shared_ptr<Session> s = find_uid(uid);
  if (!s) {
    return no_uid(uid);
  }
  return push(s->id(), route, message);
}

Status GateCore::kick(std::string_view session_id, std::string_view reason) {
  std::shared_ptr<Session> s = find(session_id);
  if (!s) {
    return no_session(session_id);
  }
  s->post_kick(KickCode::by_server, std::string(reason));
  return {};
}

Status GateCore::kick_uid(std::string_view uid, std::string_view reason) {
  std::shared_ptr<Session> s = find_uid(uid);
  if (!s) {
    return no_uid(uid);
  }
  s->post_kick(KickCode::by_server, std::string(reason));
  return {};
}

Result<std::string> GateCore::data(std::string_view session_id, std::string_view key) {
  std::shared_ptr<Session> s = find(session_id);
  if (!s) {
    return no_session(session_id);
  }
  return s->data(key);
}

Status GateCore::set_data(std::string_view session_id, std::string_view key, std::string value) {
  std::shared_ptr<Session> s = find(session_id);
  if (!s) {
    return no_session(session_id);
  }
  s->set_data(key, std::move(value));
  return {};
}

Result<std::string> GateCore::session_of_uid(std::string_view uid) {
  std::shared_ptr<Session> s = find_uid(uid);
  if (!s) {
    return no_uid(uid);
  }
  return s->id();
}

Status GateCore::create_group(std::string_view group) {
  std::lock_guard lock(groups_mu_);
  if (!groups_.emplace(std::string(group), std::vector<std::shared_ptr<Session>>{}).second) {
    return Error{Errc::already_exists, "group " + std::string(group) + " exists"};
  }
  return {};
}

Status GateCore::remove_group(std::string_view group) {
  std::lock_guard lock(groups_mu_);
  auto it = groups_.find(std::string(group));
  if (it == groups_.end()) {
    return Error{Errc::not_found, "no group " + std::string(group)};
  }
  for (const auto& member : it->second) {
    std::erase(member->groups, it->first);
  }
  groups_.erase(it);
  return {};
}

Status GateCore::join(std::string_view group, std::string_view session_id) {
  std::shared_ptr<Session> s = find(session_id);
  if (!s) {
    return no_session(session_id);
  }
  std::lock_guard lock(groups_mu_);
  auto it = groups_.find(std::string(group));
  if (it == groups_.end()) {
    return Error{Errc::not_found, "no group " + std::string(group)};
  }
  if (s->ended()) {
    return no_session(session_id);  // closed between the lookup and the lock
  }
  if (std::find(s->groups.begin(), s->groups.end(), it->first) != s->groups.end()) {
    return {};
  }
  it->second.push_back(s);
  s->groups.push_back(it->first);
  return {};
}

Status GateCore::leave(std::string_view group, std::string_view session_id) {
  std::lock_guard lock(groups_mu_);
  auto it = groups_.find(std::string(group));
  if (it == groups_.end()) {
    return Error{Errc::not_found, "no group " + std::string(group)};
  }
  auto m = std::find_if(it->second.begin(), it->second.end(),
                        [&](const auto& s) { return s->id() == session_id; });
  if (m == it->second.end()) {
    return Error{Errc::not_found,
                 "session " + std::string(session_id) + " is not in group " + std::string(group)};
  }
  std::erase((*m)->groups, it->first);
  it->second.erase(m);
  return {};
}

Result<std::vector<std::string>> GateCore::members(std::string_view group) {
  std::lock_guard lock(groups_mu_);
  auto it = groups_.find(std::string(group));
  if (it == groups_.end()) {
    return Error{Errc::not_found, "no group " + std::string(group)};
  }
  std::vector<std::string> ids;
  ids.reserve(it->second.size());
  for (const auto& s : it->second) {
    ids.push_back(s->id());
  }
  return ids;
}

Status GateCore::broadcast(std::string_view group, std::string_view route,
                           const google::protobuf::Message& message) {
  auto frame = push_frame(route, message);
  if (!frame) {
    return frame.error();
  }
  std::vector<std::shared_ptr<Session>> members;
  {
    std::lock_guard lock(groups_mu_);
    auto it = groups_.find(std::string(group));
    if (it == groups_.end()) {
      return Error{Errc::not_found, "no group " + std::string(group)};
    }
    members = it->second;
  }
  pushes.fetch_add(members.size(), std::memory_order_relaxed);
  for (const auto& s : members) {
    s->post_frame(*frame);  // the same bytes for everyone
  }
  return {};
}

namespace {

// The session's gateway when it runs on this node (nullptr: it is another node's).
GateCore* local_gateway(Node& node, const SessionRef& session) {
  detail::NodeImpl& impl = detail::NodeAccess::impl(node);
  GateCore* local = GateCore::of(impl);
  return local != nullptr && session.gate_node == impl.config.node_id ? local : nullptr;
}

// Sends `request` to the gateway service of the session's node, or not_found.
template <class Request>
Status send_to_gateway(Node& node, const SessionRef& session, std::string_view method,
                       Request request) {
  Bus gateway = select(node, Selector::name(std::string(kGateServiceName)).id(session.gate_node));
  if (gateway.empty()) {
    return Error{Errc::not_found,
                 "no gateway on node " + session.gate_node + " (it left the cluster)"};
  }
  return gateway.send(method, std::move(request));
}

}  // namespace

Status push(Node& node, const SessionRef& session, std::string_view route,
            const google::protobuf::Message& message) {
  if (GateCore* local = local_gateway(node, session)) {
    return local->push(session.id, route, message);
  }
  Result<std::string> payload = serialize_push(route, message);
  if (!payload) {
    return payload.error();
  }
  GatePush push;
  push.set_session_id(session.id);
  push.set_route(std::string(route));
  push.set_payload(std::move(*payload));
  return send_to_gateway(node, session, "RpcPush", std::move(push));
}

Status kick(Node& node, const SessionRef& session, std::string_view reason) {
  if (GateCore* local = local_gateway(node, session)) {
    return local->kick(session.id, reason);
  }
  GateKick kick;
  kick.set_session_id(session.id);
  kick.set_reason(std::string(reason));
  return send_to_gateway(node, session, "RpcKick", std::move(kick));
}

}  // namespace ember::gate
