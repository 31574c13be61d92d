// SPDX-License-Identifier: Apache-2.0
// What the admin listener shows of the gateway and the session directory, and what it can do
// through them: drain the gateway, kick a player wherever they are.
#include <ember/node.hpp>
#include <nlohmann/json.hpp>

#include "core/node_impl.hpp"
#include "gate/gate_core.hpp"
#include "gate/session_directory.hpp"

namespace ember::gate {

namespace {

using json = nlohmann::json;

Result<std::string> required(const ops::Request& request, std::string_view name) {
  const std::string* value = request.param(name);
  if (value == nullptr || value->empty()) {
    return Error{Errc::invalid_argument, std::string(name) + "= is required"};
  }
  return *value;
}

// Where the directory says `uid` is logged in (any gateway of the cluster).
Result<json> directory_lookup(SessionDirectory* directory, const std::string& uid) {
  if (directory == nullptr || !directory->clustered()) {
    return json{{"uid", uid}, {"online", false}};
  }
  Result<std::optional<Binding>> binding = directory->lookup(uid, /*fresh=*/true);
  if (!binding) {
    return binding.error();
  }
  if (!*binding) {
    return json{{"uid", uid}, {"online", false}};
  }
  return json{{"uid", uid},
              {"online", true},
              {"gateway", (*binding)->gate_node},
              {"session", (*binding)->session_id}};
}

Result<std::string> kick_anywhere(detail::NodeImpl& node, const ops::Request& request) {
  Result<std::string> uid = required(request, "uid");
  if (!uid) {
    return uid.error();
  }
  const std::string* reason = request.param("reason");
  const std::string why = reason != nullptr && !reason->empty() ? *reason : "kicked by an operator";
  Status kicked = kick_uid(*node.owner, *uid, why);
  if (!kicked) {
    return kicked.error();
  }
  return json{{"ok", true}, {"done", "kicked uid " + *uid + ": " + why}}.dump();
}

}  // namespace

void GateCore::collect(metrics::Sink& sink) const {
  const GateStats s = stats();
  auto count = [&](std::string_view name, std::string_view help, std::uint64_t value) {
    sink.counter(name, help, {}, static_cast<double>(value));
  };
  sink.gauge("ember_gate_connections", "Client connections open now, logged in or not.", {},
             static_cast<double>(s.connections));
  sink.gauge("ember_gate_sessions", "Sessions logged in now.", {}, static_cast<double>(s.sessions));
  sink.gauge("ember_gate_detached_sessions",
             "Resumable sessions waiting for their client to come back.", {},
             static_cast<double>(s.detached));
  sink.gauge("ember_gate_draining", "1 while the gateway drains.", {}, draining() ? 1 : 0);
  count("ember_gate_connections_accepted_total", "Client connections accepted.", s.accepted);
  sink.counter("ember_gate_logins_total", "Logins, by result.", {{"result", "ok"}},
               static_cast<double>(s.logins));
  sink.counter("ember_gate_logins_total", "Logins, by result.", {{"result", "failed"}},
               static_cast<double>(s.logins_failed));
  count("ember_gate_requests_total", "Client requests routed to a service.", s.requests);
  count("ember_gate_pushes_total", "Frames pushed to clients (a broadcast counts each).", s.pushes);
  count("ember_gate_kicks_total", "Connections the gateway closed with a reason.", s.kicks);
  count("ember_gate_replaced_sessions_total",
        "Sessions closed because a newer login of their UID won.", s.replaced);
  count("ember_gate_relayed_pushes_total", "Pushes other nodes sent to this gateway.", s.relayed);
  count("ember_gate_resumed_sessions_total", "Sessions resumed on this gateway.", s.resumed);
  for (std::size_t i = 0; i < static_cast<std::size_t>(Limit::count); ++i) {
    const auto limit = static_cast<Limit>(i);
    sink.counter("ember_gate_rejections_total",
                 "Requests refused or connections closed by a GateConf limit, by limit.",
                 {{"limit", limit_name(limit)}}, static_cast<double>(limited(limit)));
  }
}

std::string GateCore::status() const {
  const GateStats s = stats();
  return json{{"connections", s.connections},     {"sessions", s.sessions},
              {"detached", s.detached},           {"draining", draining()},
              {"websocket", websocket_address()}, {"tcp", tcp_address()},
              {"public_urls", public_urls()}}
      .dump();
}

std::optional<Result<std::string>> GateCore::query(std::string_view topic,
                                                   const ops::Request& request) const {
  if (topic != "sessions") {
    return std::nullopt;
  }
  const GateStats s = stats();
  json out{{"gateway", node_.config.node_id},
           {"connections", s.connections},
           {"sessions", s.sessions},
           {"detached", s.detached},
           {"draining", draining()}};
  if (const std::string* uid = request.param("uid"); uid != nullptr && !uid->empty()) {
    if (std::shared_ptr<Session> here = find_uid(*uid)) {
      out["found"] = json{
          {"uid", *uid},           {"online", true},           {"gateway", node_.config.node_id},
          {"session", here->id()}, {"remote", here->remote()}, {"detached", here->detached()}};
    } else {
      Result<json> elsewhere = directory_lookup(SessionDirectory::of(node_), *uid);
      if (!elsewhere) {
        return Result<std::string>(elsewhere.error());
      }
      out["found"] = std::move(*elsewhere);
    }
  }
  return Result<std::string>(out.dump());
}

std::optional<Result<std::string>> GateCore::act(std::string_view action,
                                                 const ops::Request& request) {
  if (action == "drain") {
    const bool already = draining();
    drain();
    return Result<std::string>(
        json{{"ok", true},
             {"done", already ? "the gateway was draining already" : "draining the gateway"}}
            .dump());
  }
  if (action == "kick") {
    return kick_anywhere(node_, request);
  }
  return std::nullopt;
}

std::string GateCore::not_ready() const {
  return draining() ? "the gateway is draining" : std::string();
}

std::optional<Result<std::string>> SessionDirectory::query(std::string_view topic,
                                                           const ops::Request& request) const {
  if (topic != "sessions") {
    return std::nullopt;
  }
  json out{{"gateway", nullptr}};
  if (const std::string* uid = request.param("uid"); uid != nullptr && !uid->empty()) {
    Result<json> found = directory_lookup(const_cast<SessionDirectory*>(this), *uid);
    if (!found) {
      return Result<std::string>(found.error());
    }
    out["found"] = std::move(*found);
  }
  return Result<std::string>(out.dump());
}

std::optional<Result<std::string>> SessionDirectory::act(std::string_view action,
                                                         const ops::Request& request) {
  if (action == "kick") {
    return kick_anywhere(node_, request);
  }
  return std::nullopt;
}

}  // namespace ember::gate
