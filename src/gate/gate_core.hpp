// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <ember/gate.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/subsystem.hpp"
#include "gate/session.hpp"
#include "gate/session_directory.hpp"
#include "ops/observable.hpp"
#include "rpc/repository.hpp"

namespace ember::detail {
class NodeImpl;
}

namespace google::protobuf {
template <class T>
class RepeatedPtrField;
}

namespace boost::asio::ssl {
class context;
}

namespace ember::gate {

class Session;
class IoPool;
class Acceptor;
class ResumeRequest;    // gate.proto
class SessionHandover;  // gate.proto

/// The service through which other nodes push to and kick this gateway's sessions; its id is
/// the node id.
inline constexpr std::string_view kGateServiceName = "ember.gate";
/// Adds it to a node with a GateConf, to start with the node's services.
void add_gate_service(detail::NodeImpl& node);

/// A route clients may call, with the id they send instead of its name.
struct Route {
  std::uint32_t id = 0;
  std::string name;     // "lobby.RpcJoin"
  std::string service;  // "lobby"
  std::string method;   // "RpcJoin"
};

/// The gateway subsystem: the listeners and their I/O threads, the logged-in sessions by id and
/// UID, groups, the route dictionary, and the Gate API backend code calls.
class GateCore final : public detail::Subsystem, public Gate, public ops::Observable {
 public:
  explicit GateCore(detail::NodeImpl& node);
  ~GateCore() override;

  static GateCore* of(detail::NodeImpl& node) noexcept;

  // --- Subsystem ------------------------------------------------------------------------------
  [[nodiscard]] std::string_view name() const noexcept override { return "gate"; }
  Status start() override;
  /// Opens the listeners, once every service has started: a client never meets a half-started
  /// node.
  Status settle() override;
  /// Stops accepting, tells every client the node shuts down, and waits (bounded) until their
  /// answered requests went out, while the services still run.
  void stopping() override;
  void stop() override;

  // --- Gate -------------------------------------------------------------------------------------
  Status push(std::string_view session_id, std::string_view route,
              const google::protobuf::Message& message) override;
  Status push_to_uid(std::string_view uid, std::string_view route,
                     const google::protobuf::Message& message) override;
  Status kick(std::string_view session_id, std::string_view reason) override;
  Status kick_uid(std::string_view uid, std::string_view reason) override;
  Result<std::string> data(std::string_view session_id, std::string_view key) override;
  Status set_data(std::string_view session_id, std::string_view key, std::string value) override;
  Result<std::string> session_of_uid(std::string_view uid) override;
  Status create_group(std::string_view group) override;
  Status remove_group(std::string_view group) override;
  Status join(std::string_view group, std::string_view session_id) override;
  Status leave(std::string_view group, std::string_view session_id) override;
  Result<std::vector<std::string>> members(std::string_view group) override;
  Status broadcast(std::string_view group, std::string_view route,
                   const google::protobuf::Message& message) override;
  void drain() override;
  [[nodiscard]] bool draining() const noexcept override {
    return draining_.load(std::memory_order_acquire);
  }
  [[nodiscard]] std::vector<std::string> public_urls() const override;
  [[nodiscard]] std::string websocket_address() const override;
  [[nodiscard]] std::string tcp_address() const override;
  [[nodiscard]] GateStats stats() const override;

  // ops::Observable (gate_ops.cpp): the gateway's figures, its sessions (find one by UID), and
  // the actions drain and kick; not ready while draining.
  void collect(metrics::Sink& sink) const override;
  [[nodiscard]] std::string_view status_key() const override { return "gateway"; }
  [[nodiscard]] std::string status() const override;
  std::optional<Result<std::string>> query(std::string_view topic,
                                           const ops::Request& request) const override;
  std::optional<Result<std::string>> act(std::string_view action,
                                         const ops::Request& request) override;
  [[nodiscard]] std::string not_ready() const override;

  // --- for sessions and listeners ---------------------------------------------------------------
  [[nodiscard]] const GateConfig& config() const noexcept { return config_; }
  [[nodiscard]] detail::NodeImpl& node() noexcept { return node_; }
  std::string next_session_id();
  /// The route with this id, or nullptr.
  [[nodiscard]] std::optional<Route> route_by_id(std::uint32_t id) const;
  /// The route with this name if clients may call it (giving it an id on first use), or the
  /// error the client is told.
  Result<Route> route_by_name(std::string_view name);
  /// The dictionary a Welcome carries: the routes named exactly in GateConf.Routes, and those
  /// that earlier clients called.
  std::vector<Route> dictionary() const;
  /// The instance of `service` that serves `key` now (by the key's hash among several), on a node
  /// other than `avoid_node` when one is given (a node that just failed to answer, still in
  /// discovery until its lease expires).
  Result<detail::Target> target(const std::string& service, DispatchKey key,
                                std::string_view avoid_node = {});
  /// A session's login succeeded: it becomes findable by id (a kick reaches it), and its UID is
  /// claimed in the session directory (in this gateway's registry outside a cluster). The session
  /// it displaced is closed (KickCode::replaced) before the claim completes (Session::on_claimed):
  /// a newer login is welcomed only once the older one's requests no longer start.
  void claim(const std::shared_ptr<Session>& session);
  /// After its claim: the session becomes its UID's on this gateway, unless a newer login of it
  /// already did (false: this one lost and closes as replaced).
  bool register_uid(const std::shared_ptr<Session>& session);
  /// Deletes an ended session's binding from the directory, if it is still its own.
  void release(const Session& session);
  /// The node took a new lease: every binding is written under it again, and a session whose
  /// UID another gateway took meanwhile is closed.
  void renew_bindings();
  /// A session ended: unregistered, removed from its groups, kSessionClosed published.
  void session_ended(Session& session, std::string_view reason);
  void publish_opened(const Session& session);
  /// Encodes a Push frame once, for one session or many.
  Result<std::shared_ptr<const std::string>> push_frame(std::string_view route,
                                                        const google::protobuf::Message& message);
  std::shared_ptr<const std::string> push_frame_serialized(std::string_view route,
                                                           std::string payload);
  /// A push whose message another node serialized (GatePush).
  Status push_serialized(std::string_view session_id, std::string_view route, std::string payload);
  /// The same for RpcPush: `delivered` runs once the push is where it is going
  /// (Session::post_push).
  void push_serialized(std::string_view session_id, std::string_view route, std::string payload,
                       PushDone delivered);
  /// One push to several sessions of this gateway (GateBroadcast): encoded once; sessions it no
  /// longer holds are skipped.
  void push_each_serialized(const google::protobuf::RepeatedPtrField<std::string>& session_ids,
                            std::string_view route, std::string payload);
  /// Closes a session that a newer login of its UID displaced; not_found if it is not here.
  Status replace(std::string_view session_id);
  /// A session of this gateway that holds `uid` now, or nullptr.
  std::shared_ptr<Session> find_uid(std::string_view uid) const;

  // --- resume -----------------------------------------------------------------------------------
  /// A new connection resumes the session whose id it took (Session::take_id): handed over from
  /// this gateway, or from the gateway its token names (RpcResume). The outcome goes to
  /// Session::post_resumed.
  void resume(const std::shared_ptr<Session>& session, const std::string& token,
              std::uint64_t last_push_seq);
  /// RpcResume: hands a session of this gateway over to the gateway its client resumed on.
  void hand_over(const ResumeRequest& request, HandoverDone done);
  /// A resume failed: the connection gives up the id it took.
  void resume_failed(const Session& session);
  /// A pushed frame that reached a session after it moved to another gateway.
  void forward_push(const std::string& node, const std::string& session_id,
                    const std::string& frame, PushDone delivered);
  /// The groups a session is in (a handover carries them).
  std::vector<std::string> groups_of(const Session& session);
  /// A resume on this gateway: the registry and groups point to the new connection's session.
  void adopt_local(const std::shared_ptr<Session>& old, const std::shared_ptr<Session>& session);
  /// After a resume on this gateway, once the new connection has the UID: its entry points there.
  /// False: a newer login of the UID took it while the session moved (the session lost).
  bool take_uid(const std::shared_ptr<Session>& session);
  /// Whether a resumed session's id can be registered here: another gateway's, or one this
  /// gateway gave out (not one it will give out later: ids are predictable).
  bool issued_here_or_elsewhere(const std::string& session_id) const;
  /// Out of the registry (where it is still this session's) and its groups: on its end, or,
  /// silently, when it moved to another gateway.
  void unregister(Session& session);
  /// Route names instead of this gateway's route ids in what a handover to another gateway
  /// carries.
  void portable_routes(SessionHandover& handover) const;
  /// A session resumed from another gateway joins its groups here.
  void join_groups(const std::shared_ptr<Session>& session,
                   const google::protobuf::RepeatedPtrField<std::string>& groups);
  /// A detached session is ticked (on its I/O thread) until it ends or is handed over.
  void watch(Session& session);
  void unwatch(Session& session);

  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> logins{0};
  std::atomic<std::uint64_t> logins_failed{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> pushes{0};
  std::atomic<std::uint64_t> kicks{0};
  std::atomic<std::uint64_t> replaced{0};
  std::atomic<std::uint64_t> relayed{0};
  std::atomic<std::uint64_t> resumed{0};
  std::atomic<std::int64_t> detached_now{0};  // sessions waiting for a resume

  /// The limits a client can hit, each counted when it refuses a request or closes a connection.
  enum class Limit : std::uint8_t { connections, rate, in_flight, frame_size, send_queue, count };
  static constexpr std::string_view limit_name(Limit limit) noexcept {
    constexpr std::string_view kNames[] = {"max_connections", "requests_per_second",
                                           "max_in_flight", "max_frame_bytes", "send_queue_bytes"};
    return kNames[static_cast<std::size_t>(limit)];
  }
  void count_limit(Limit limit) noexcept {
    limited_[static_cast<std::size_t>(limit)].fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t limited(Limit limit) const noexcept {
    return limited_[static_cast<std::size_t>(limit)].load(std::memory_order_relaxed);
  }

 private:
  std::shared_ptr<Session> find(std::string_view session_id) const;
  /// The session a push goes to, counted as pushed; nullptr if it is not here. Called with
  /// sessions_mu_ held (shared), and the caller posts to it before letting go (see
  /// push_serialized).
  Session* push_target_locked(std::string_view session_id);
  /// Where this gateway's clients may go instead: the other gateways that are not draining.
  std::vector<std::string> other_gateways();
  /// Waits (bounded) until no connection and no detached session is left; false when some
  /// still are.
  bool wait_connections_closed(std::chrono::steady_clock::duration bound) const;
  /// Tells the session a claim displaced to close, wherever it is (bounded).
  void displace(const Binding& previous);
  bool allowed(std::string_view service, std::string_view method) const;

  detail::NodeImpl& node_;
  const GateConfig config_;
  const std::string id_prefix_;
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(Limit::count)> limited_{};
  std::atomic<std::uint64_t> next_session_{1};
  // Orders the logins of one UID on a gateway outside a cluster, as the directory's revisions do
  // within one.
  std::atomic<std::int64_t> local_revision_{0};
  std::atomic<bool> draining_{false};

  mutable std::shared_mutex routes_mu_;
  std::vector<Route> routes_;  // by id - 1
  std::unordered_map<std::string, std::uint32_t> route_ids_;
  std::size_t exact_routes_ = 0;  // routes_[0, exact_routes_) were named in GateConf.Routes

  struct ServiceTargets {
    std::uint64_t version = 0;
    std::vector<detail::Target> targets;
  };
  std::mutex targets_mu_;
  std::unordered_map<std::string, ServiceTargets> targets_;

  // Keyed by views of the session's own id and UID: the entry holds the session, so the key
  // lives as long as the entry (a UID's entry is re-keyed when another session takes it).
  mutable std::shared_mutex sessions_mu_;
  std::unordered_map<std::string_view, std::shared_ptr<Session>> by_id_;
  std::unordered_map<std::string_view, std::shared_ptr<Session>> by_uid_;

  // Gateways that did not answer a displacement kick, until when their kicks are not waited for.
  std::mutex unresponsive_mu_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> unresponsive_;

  std::mutex groups_mu_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Session>>> groups_;

  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::unique_ptr<IoPool> io_;
  std::unique_ptr<Acceptor> websocket_;
  std::unique_ptr<Acceptor> tcp_;
};

}  // namespace ember::gate
