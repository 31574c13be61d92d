// SPDX-License-Identifier: Apache-2.0
// The Gate API backend code calls: push, kick, session data, groups. Thread-safe: each finds its
// session under the registry's lock and hands the work to the session's I/O thread.
#include <algorithm>
#include <ember/node.hpp>
#include <ember/rpc.hpp>
#include <functional>
#include <map>

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_core.hpp"
#include "gate/session.hpp"
#include "gate/session_directory.hpp"

namespace ember::gate {

namespace {
Error no_session(std::string_view id) {
  return Error{Errc::not_found, "no session " + std::string(id) + " on this gateway"};
}
Error no_uid(std::string_view uid) {
  return Error{Errc::not_found, "no session of uid " + std::string(uid) + " on this gateway"};
}
Error not_logged_in(std::string_view uid) {
  return Error{Errc::not_found, "uid " + std::string(uid) + " is not logged in"};
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

Session* GateCore::push_target_locked(std::string_view session_id) {
  auto it = by_id_.find(session_id);
  if (it == by_id_.end()) {
    return nullptr;
  }
  pushes.fetch_add(1, std::memory_order_relaxed);
  return it->second.get();
}

Status GateCore::push_serialized(std::string_view session_id, std::string_view route,
                                 std::string payload) {
  auto frame = push_frame_serialized(route, std::move(payload));
  // Found and posted under the registry lock: a session that takes this one's entry over
  // (a resume) then knows every push that went to the old object is queued on its thread.
  std::shared_lock lock(sessions_mu_);
  Session* session = push_target_locked(session_id);
  if (session == nullptr) {
    lock.unlock();
    return no_session(session_id);
  }
  session->post_push(std::move(frame));
  return {};
}

void GateCore::push_serialized(std::string_view session_id, std::string_view route,
                               std::string payload, PushDone delivered) {
  auto frame = push_frame_serialized(route, std::move(payload));
  std::shared_lock lock(sessions_mu_);  // as above
  Session* session = push_target_locked(session_id);
  if (session == nullptr) {
    lock.unlock();
    delivered(no_session(session_id));
    return;
  }
  session->post_push(std::move(frame), std::move(delivered));
}

void GateCore::push_each_serialized(
    const google::protobuf::RepeatedPtrField<std::string>& session_ids, std::string_view route,
    std::string payload) {
  std::shared_ptr<const std::string> frame;
  std::shared_lock lock(sessions_mu_);  // as above
  for (const std::string& id : session_ids) {
    Session* session = push_target_locked(id);
    if (session == nullptr) {
      continue;
    }
    if (!frame) {
      frame = push_frame_serialized(route, std::move(payload));
    }
    session->post_push(frame);
  }
}

Status GateCore::push_to_uid(std::string_view uid, std::string_view route,
                             const google::protobuf::Message& message) {
  return gate::push_to_uid(*node_.owner, uid, route, message);
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
  return gate::kick_uid(*node_.owner, uid, reason);
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
    s->post_push(*frame);  // the same bytes for everyone
  }
  return {};
}

namespace {

// The gateway service of `gate_node`, or not_found.
Result<Bus> gateway_of(Node& node, const std::string& gate_node) {
  Bus gateway = select(node, Selector::name(std::string(kGateServiceName)).id(gate_node));
  if (gateway.empty()) {
    return Error{Errc::not_found, "no gateway on node " + gate_node + " (it left the cluster)"};
  }
  return gateway;
}

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
  Result<Bus> gateway = gateway_of(node, session.gate_node);
  if (!gateway) {
    return gateway.error();
  }
  return gateway->send(method, std::move(request));
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

namespace {

// Runs `here` on this node's gateway when it holds `uid`, or `there` on the gateway that the
// directory names for it. A binding that proves stale (that gateway answers not_found: the
// player logged out, or in again elsewhere) is forgotten and read again from the coordinator,
// once.
Status reach_uid(Node& node, std::string_view uid,
                 const std::function<Status(GateCore&, const std::string& session_id)>& here,
                 const std::function<Status(const Bus&, const std::string& session_id)>& there) {
  detail::NodeImpl& impl = detail::NodeAccess::impl(node);
  GateCore* local = GateCore::of(impl);
  if (local != nullptr) {
    if (std::shared_ptr<Session> s = local->find_uid(uid)) {
      return here(*local, s->id());
    }
  }
  SessionDirectory* directory = SessionDirectory::of(impl);
  if (directory == nullptr || !directory->clustered()) {
    return local != nullptr ? no_uid(uid) : not_logged_in(uid);
  }
  Status outcome = not_logged_in(uid);
  for (const bool fresh : {false, true}) {
    auto binding = directory->lookup(uid, fresh);
    if (!binding) {
      return binding.error();
    }
    if (!*binding) {
      return not_logged_in(uid);
    }
    const Binding& where = **binding;
    if (where.gate_node == impl.config.node_id) {
      // This gateway does not hold it (checked above): the player has gone since.
      outcome = local != nullptr ? here(*local, where.session_id) : not_logged_in(uid);
    } else if (Result<Bus> gateway = gateway_of(node, where.gate_node); gateway) {
      outcome = there(*gateway, where.session_id);
    } else {
      outcome = gateway.error();
    }
    // not_found: the session left that gateway; unavailable: no gateway service there now.
    if (outcome || (outcome.error().code() != Errc::not_found &&
                    outcome.error().code() != Errc::unavailable)) {
      return outcome;
    }
    directory->forget(uid, where);
  }
  return outcome;
}

}  // namespace

Status push_to_uid(Node& node, std::string_view uid, std::string_view route,
                   const google::protobuf::Message& message) {
  Result<std::string> payload = serialize_push(route, message);
  if (!payload) {
    return payload.error();
  }
  return reach_uid(
      node, uid,
      [&](GateCore& gate, const std::string& id) {
        return gate.push_serialized(id, route, *payload);
      },
      [&](const Bus& gateway, const std::string& id) -> Status {
        GatePush push;
        push.set_session_id(id);
        push.set_route(std::string(route));
        push.set_payload(*payload);
        auto acked = gateway.call<GateAck>("RpcPush", std::move(push));
        return acked ? Status{} : Status{acked.error()};
      });
}

Status kick_uid(Node& node, std::string_view uid, std::string_view reason) {
  return reach_uid(
      node, uid, [&](GateCore& gate, const std::string& id) { return gate.kick(id, reason); },
      [&](const Bus& gateway, const std::string& id) -> Status {
        GateKick kick;
        kick.set_session_id(id);
        kick.set_reason(std::string(reason));
        auto acked = gateway.call<GateAck>("RpcKick", std::move(kick));
        return acked ? Status{} : Status{acked.error()};
      });
}

Status broadcast(Node& node, const std::vector<SessionRef>& sessions, std::string_view route,
                 const google::protobuf::Message& message) {
  Result<std::string> payload = serialize_push(route, message);
  if (!payload) {
    return payload.error();
  }
  // One message per gateway, naming its sessions: a room of players spread over gateways costs
  // the network one frame per gateway, not one per player.
  std::map<std::string_view, GateBroadcast> by_gateway;
  for (const SessionRef& s : sessions) {
    by_gateway[s.gate_node].add_session_ids(s.id);
  }
  detail::NodeImpl& impl = detail::NodeAccess::impl(node);
  Status outcome;
  for (auto& [gate_node, batch] : by_gateway) {
    if (GateCore* local = GateCore::of(impl);
        local != nullptr && gate_node == impl.config.node_id) {
      local->push_each_serialized(batch.session_ids(), route, *payload);
      continue;
    }
    Result<Bus> gateway = gateway_of(node, std::string(gate_node));
    if (!gateway) {
      outcome = gateway.error();
      continue;  // the others still get theirs
    }
    batch.set_route(std::string(route));
    batch.set_payload(*payload);
    if (Status sent = gateway->send("RpcBroadcast", std::move(batch)); !sent) {
      outcome = sent;
    }
  }
  return outcome;
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
