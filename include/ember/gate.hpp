// SPDX-License-Identifier: Apache-2.0
//
// The client gateway, as backend code sees it. A node with a GateConf section (and linked with
// ember::gate) accepts game clients over WebSocket and TCP; a client logs in through the method
// GateConf.Login names, and then calls routes "service.Method". Each such request reaches the
// service as a Call keyed by the player's UID (so one player's requests run in order), with the
// session in its context:
//
//   handle("RpcMove", [this](const pb::Move& move, const ember::Context& ctx) -> Result<pb::Ack> {
//     auto session = ember::gate::session_of(ctx);            // {id, uid}
//     ember::gate::Gate& gate = ember::gate::Gate::of(node());
//     (void)gate.broadcast("room-7", "room.OnMoved", moved);   // every member, one encoding
//     return pb::Ack{};
//   });
//
// A request whose session closed before its handler started never runs (its handler would act
// for a player who is gone); subscribe to kSessionClosed to clean up after a player.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <ember/context.hpp>
#include <ember/error.hpp>
#include <ember/event.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
}

namespace ember {
class Node;
}

namespace ember::gate {

/// Published on the node's event bus, payload ember.gate.SessionEvent (gate.pb.h), keyed by the
/// UID: a subscriber's lane sees a player's opened, requests and closed in that order.
inline constexpr EventType kSessionOpened = 2'100'000'001;
inline constexpr EventType kSessionClosed = 2'100'000'002;

/// Close codes the client sees in a Kick frame (docs/gateway.md lists them).
enum class KickCode : std::uint32_t {
  by_server = 1,          ///< Gate::kick
  replaced = 2,           ///< the same UID logged in on another connection
  login_failed = 3,       ///< the login method refused or failed
  protocol_error = 4,     ///< a frame that does not parse or comes out of order
  too_large = 5,          ///< a frame over MaxFrameBytes
  rate_limited = 6,       ///< over RequestsPerSecond/RequestBurst
  too_many_requests = 7,  ///< over MaxInFlight
  slow_reader = 8,        ///< the client does not read: SendQueueBytes reached
  timed_out = 9,          ///< no Hello within HandshakeTimeout, or silent for IdleTimeout
  shutting_down = 10,     ///< the node stops
  resume_failed = 11,     ///< a resume was refused (the session ended, or a wrong token): log in
};

/// The session of a request, as its handler sees it.
struct SessionRef {
  std::string id;
  std::string uid;
  std::string gate_node;  ///< the node whose gateway holds the client's connection
};

/// The client session a request came from (directly or through other services' calls), or
/// nullopt when no client is behind it.
std::optional<SessionRef> session_of(const Context& context);

/// Pushes to a session held by any gateway of the cluster, from any node that links ember::gate
/// (a backend without a GateConf too): through the service "ember.gate" of the session's
/// gateway node, or this node's gateway directly. Returns once sent (at most once): a session
/// that closed meanwhile is not_found at its gateway, which logs it. No gateway on
/// `session.gate_node` (it left the cluster) is not_found at once.
Status push(Node& node, const SessionRef& session, std::string_view route,
            const google::protobuf::Message& message);
/// Kicks (by_server) a session held by any gateway of the cluster; like push().
Status kick(Node& node, const SessionRef& session, std::string_view reason);

/// Pushes to the player `uid` wherever it is logged in, from any node of the cluster that links
/// ember::gate. The gateway is found through the cluster's session directory, cached on this
/// node (no coordinator read per push; a binding that proved stale is read again once). Waits
/// until that gateway took the push, bounded by the node's CallTimeout: not_found when the
/// player is not logged in (or its gateway left the cluster); unavailable (the push was not
/// sent), node_unreachable or timeout when its gateway does not answer. Never hangs.
Status push_to_uid(Node& node, std::string_view uid, std::string_view route,
                   const google::protobuf::Message& message);
/// Kicks (by_server) the player `uid` wherever it is logged in; like push_to_uid().
Status kick_uid(Node& node, std::string_view uid, std::string_view reason);
/// Pushes one message to each of `sessions`, wherever they are (the players of a room spread
/// over gateways): encoded once, and one frame to each gateway that holds some of them, not one
/// per player. Returns once sent (at most once); sessions that closed meanwhile are skipped.
/// not_found names a gateway that left the cluster (the others still got theirs).
Status broadcast(Node& node, const std::vector<SessionRef>& sessions, std::string_view route,
                 const google::protobuf::Message& message);

struct GateStats {
  std::uint64_t connections = 0;  ///< open now, logged in or not
  std::uint64_t sessions = 0;     ///< logged in now
  std::uint64_t accepted = 0;     ///< connections accepted since start
  std::uint64_t refused = 0;      ///< closed at accept: MaxConnections reached
  std::uint64_t logins = 0;       ///< logins that opened a session
  std::uint64_t logins_failed = 0;
  std::uint64_t requests = 0;  ///< client requests routed to a service
  std::uint64_t pushes = 0;    ///< frames pushed to clients (a broadcast counts each)
  std::uint64_t kicks = 0;     ///< connections closed by the gateway with a reason
  std::uint64_t replaced = 0;  ///< sessions closed because a newer login of their UID won
  std::uint64_t relayed = 0;   ///< pushes other nodes sent here (one per gateway for a broadcast)
  std::uint64_t detached = 0;  ///< resumable sessions waiting for their client to resume, now
  std::uint64_t resumed = 0;   ///< sessions resumed here (from this gateway or another)
};

/// The node's gateway. Thread-safe; every call returns at once (sending happens on the
/// gateway's I/O threads), except push_to_uid and kick_uid for a player on another gateway (see
/// the functions of the same names). Errors: not_found for an unknown session, UID or group.
class Gate {
 public:
  /// The gateway of `node`. Throws std::logic_error when the node has no GateConf: asking for a
  /// gateway that is not configured is a bug of the program, not a runtime condition.
  static Gate& of(Node& node);
  /// Whether the node runs a gateway.
  static bool exists(Node& node) noexcept;

  /// Sends `message` on route `route` (any name the client understands, "room.OnMoved").
  virtual Status push(std::string_view session_id, std::string_view route,
                      const google::protobuf::Message& message) = 0;
  /// The player on this gateway, or on any gateway of the cluster (gate::push_to_uid).
  virtual Status push_to_uid(std::string_view uid, std::string_view route,
                             const google::protobuf::Message& message) = 0;
  /// Closes the session after telling its client `reason`.
  virtual Status kick(std::string_view session_id, std::string_view reason) = 0;
  virtual Status kick_uid(std::string_view uid, std::string_view reason) = 0;

  /// Session data: small key/value strings a backend keeps with a player's connection (login
  /// fills the first from LoginReply.data). Gone with the session.
  virtual Result<std::string> data(std::string_view session_id, std::string_view key) = 0;
  virtual Status set_data(std::string_view session_id, std::string_view key, std::string value) = 0;
  /// The session of a logged-in UID on this node.
  virtual Result<std::string> session_of_uid(std::string_view uid) = 0;

  // --- groups (rooms) -----------------------------------------------------------------------
  /// Groups of this gateway's sessions. A room whose players are on several gateways keeps
  /// their SessionRefs and uses gate::broadcast. Creating an existing group is already_exists;
  /// joining creates nothing.
  virtual Status create_group(std::string_view group) = 0;
  virtual Status remove_group(std::string_view group) = 0;
  virtual Status join(std::string_view group, std::string_view session_id) = 0;
  virtual Status leave(std::string_view group, std::string_view session_id) = 0;
  /// Session ids of the members. A closed session leaves every group by itself.
  virtual Result<std::vector<std::string>> members(std::string_view group) = 0;
  /// Pushes to every member, serializing the message once.
  virtual Status broadcast(std::string_view group, std::string_view route,
                           const google::protobuf::Message& message) = 0;

  // --- draining (a deploy) -------------------------------------------------------------------
  /// Stops accepting, refuses logins still under way, and tells every client to reconnect to
  /// another gateway of the cluster (a Moving frame naming their URLs; none known: the same
  /// address later), while its requests are still handled. Returns at once; idempotent. The
  /// node's stop (SIGTERM) drains first, waits up to GateConf.DrainTimeout for the clients to
  /// leave, answers what the rest have in flight, then closes them (shutting_down).
  virtual void drain() = 0;
  [[nodiscard]] virtual bool draining() const noexcept = 0;
  /// Where clients reach this gateway: GateConf.PublicUrls, or its listeners' addresses.
  [[nodiscard]] virtual std::vector<std::string> public_urls() const = 0;

  /// Where clients connect ("127.0.0.1:40123"); "" for a listener not configured.
  [[nodiscard]] virtual std::string websocket_address() const = 0;
  [[nodiscard]] virtual std::string tcp_address() const = 0;
  [[nodiscard]] virtual GateStats stats() const = 0;

 protected:
  Gate() = default;
  ~Gate() = default;
};

}  // namespace ember::gate
