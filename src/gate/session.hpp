// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <ember/context.hpp>
#include <ember/gate.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gate/link.hpp"

namespace ember::detail {
struct Target;
class Responder;
}  // namespace ember::detail

namespace ember::gate {

class GateCore;
class ClientResponder;
class LoginResponder;
class Hello;            // gate.proto
class Request;          // gate.proto
class SessionHandover;  // gate.proto

/// Where a push went, for a pusher on another node that waits to keep its pushes in order.
using PushDone = std::function<void(Status)>;
/// What a handover ends with: the session's state for its new connection, or why not.
using HandoverDone = std::function<void(Result<std::shared_ptr<SessionHandover>>)>;

/// One client connection, from its Hello to its close: the protocol's state machine. It is also
/// the origin of every request it makes (Context::origin), which is how a handler finds its
/// session and how a request whose session closed is dropped before its handler starts.
///
/// A resumable session (Hello.resumable, with a ResumeWindow) outlives a lost connection: it is
/// detached, still registered and still answering its requests into a ledger and buffering its
/// pushes, until a new connection resumes it or the window passes. A resume moves its state to
/// the new connection's Session (a handover) once its requests in flight are answered, so every
/// answer is in what moves; the old object then ends without a close event.
///
/// Threads: on_*(), tick() and the send path run on the link's I/O thread only; post_*(), the
/// data and ended() are for any thread.
class Session final : public detail::RequestOrigin, public std::enable_shared_from_this<Session> {
 public:
  using SteadyClock = std::chrono::steady_clock;

  Session(GateCore& gate, Link& link, std::string id);
  ~Session() override;
  /// Session objects alive in the process, for tests that prove a closed session leaves nothing.
  static std::int64_t live() noexcept { return live_.load(std::memory_order_acquire); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // --- I/O thread ---------------------------------------------------------------------------
  void on_open(SteadyClock::time_point now);
  void on_frame(std::string_view bytes, SteadyClock::time_point now);
  /// The link is gone (closed by either side): the session ends, once, or is detached to wait
  /// for a resume.
  void on_link_closed();
  /// Deadlines: handshake, idle, and requests whose handler never answered.
  void tick(SteadyClock::time_point now);
  /// Sends a frame, or kicks a client whose unsent bytes would exceed SendQueueBytes.
  void send_frame(std::shared_ptr<const std::string> frame);
  void kick_now(KickCode code, std::string_view reason);
  /// The gateway drains: a logged-in client is told to move (`moving`, a Moving frame) and keeps
  /// being served; one still logging in is refused.
  void move_elsewhere(const std::shared_ptr<const std::string>& moving);
  /// Closes the session once its requests in flight are answered (or timed out); requests it
  /// sends meanwhile are refused with `stopping`.
  void finish(KickCode code, std::string reason);
  /// Ends the session without telling the client (its link failed or cannot be written).
  void end(std::string_view reason);

  // --- any thread ---------------------------------------------------------------------------
  /// A Push frame for this session (encoded once for many; a resumable session numbers it).
  /// `delivered`, if given, runs once the frame is queued for the client or kept for its resume
  /// (or passed on to where the session moved): a pusher that waits for it keeps its order.
  /// `forwarded`: passed on by the session this one took over (see hold_pushes_until_drained).
  void post_push(std::shared_ptr<const std::string> frame, PushDone delivered = {},
                 bool forwarded = false);
  /// Called before this session takes over the registry entry of `predecessor` on this gateway:
  /// pushes posted to it directly wait until every push already queued on the predecessor's
  /// thread has been passed on here, so that a push never overtakes an earlier one.
  void hold_pushes_until_drained(const std::shared_ptr<Session>& predecessor);
  void post_kick(KickCode code, std::string reason);
  /// A newer login of its UID displaced it: from now on none of its requests starts anywhere
  /// the check reaches, and its client is told (KickCode::replaced) on its I/O thread.
  void replace();
  /// The outcome of claiming its UID (GateCore::claim), on its I/O thread.
  void post_claimed(Result<std::int64_t> revision);
  /// Hands this session over to a new connection once its requests in flight are answered:
  /// `done` gets its state, on this session's I/O thread, and this session ends silently. Fails
  /// for a wrong secret, a session that is not resumable any more, or one that ended.
  void post_handover(std::string secret, std::uint64_t last_push_seq, HandoverDone done);
  /// The outcome of this connection's resume: the handed-over state, on its I/O thread.
  /// `same_gateway`: it came from this gateway, whose registry already points here.
  void post_resumed(Result<std::shared_ptr<SessionHandover>> handover, bool same_gateway);
  /// After a handover on this gateway: pushes that still reach this object go to `successor`.
  void set_successor(std::shared_ptr<Session> successor);
  /// After a handover to another gateway: pushes that still reach this object go there.
  void set_successor_node(std::string node);
  /// A resume's new connection takes the session's id before it is registered under it.
  void take_id(std::string id) { id_ = std::move(id); }
  [[nodiscard]] bool ended() const noexcept override {
    return ended_.load(std::memory_order_acquire) || replaced();
  }
  [[nodiscard]] bool replaced() const noexcept { return replaced_.load(std::memory_order_acquire); }
  /// The revision of its binding in the session directory (0: none yet); ordered cluster-wide,
  /// so the higher of two sessions of one UID is the newer login.
  [[nodiscard]] std::int64_t binding_revision() const noexcept {
    return binding_revision_.load(std::memory_order_acquire);
  }
  void set_binding_revision(std::int64_t revision) noexcept {
    binding_revision_.store(revision, std::memory_order_release);
  }
  /// An ember.gate.SessionIdentity: how requests carry the session to other nodes.
  bool wire_identity(std::string& out) const override;
  /// The node this gateway runs on.
  [[nodiscard]] const std::string& gate_node() const noexcept;
  /// Set once at login, before the session is registered: stable to whoever finds it there.
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] bool detached() const noexcept { return detached_.load(std::memory_order_acquire); }
  [[nodiscard]] const std::string& uid() const noexcept { return uid_; }
  [[nodiscard]] const std::string& remote() const noexcept { return remote_; }

  Result<std::string> data(std::string_view key) const;
  void set_data(std::string_view key, std::string value);

  /// Groups this session is in; guarded by the gate's group lock.
  std::vector<std::string> groups;
  /// Its place in its I/O thread's list of sessions to tick (IoPool).
  std::size_t io_slot = static_cast<std::size_t>(-1);
  std::size_t io_index = 0;

 private:
  friend class ClientResponder;
  friend class LoginResponder;
  // claim: logged in, its UID being claimed in the session directory; no Welcome yet.
  // resuming: waiting for the handover of the session it resumes. detached: its connection was
  // lost and it waits for a resume; it has no link.
  enum class Phase : std::uint8_t { hello, login, resuming, claim, open, detached, closing };

  // What a resumable session keeps so that a resume loses nothing (allocated only for those).
  struct Resumable {
    std::string secret;
    std::uint64_t push_seq = 0;  // the last given
    // Pushes given and not acknowledged, and what was dropped for room (then a resume that
    // needs them fails).
    std::deque<std::pair<std::uint64_t, std::shared_ptr<const std::string>>> pushes;
    std::uint64_t pushes_dropped_through = 0;
    // Answers the client may not have seen (a request's seq, its Response frame), oldest first.
    std::deque<std::pair<std::uint32_t, std::shared_ptr<const std::string>>> answers;
    std::uint32_t forgotten_through = 0;  // answers up to this seq dropped for room
    // Requests refused before they ran (rate, in flight, no instance), not yet acknowledged: sent
    // again, they run, even below forgotten_through. Bounded; the oldest go first.
    std::deque<std::uint32_t> refused;
    std::uint32_t highest_seq = 0;  // of the requests received
    std::size_t bytes = 0;          // of pushes and answers kept
    SteadyClock::time_point detached_until{};
    // A handover asked for while requests were in flight: completed once they are answered.
    std::unique_ptr<std::pair<std::uint64_t, HandoverDone>> handover;
    // Pushes that reached a resuming connection before the handover: numbered after its pushes.
    std::vector<std::shared_ptr<const std::string>> early;
    std::weak_ptr<Session> successor;
    std::string successor_node;
    bool handed_over = false;
    bool resumed = false;  // this connection resumed the session (no new session for backends)
  };

  void on_hello(const Hello& hello, SteadyClock::time_point now);
  void on_push(std::shared_ptr<const std::string> frame, PushDone delivered, bool forwarded);
  void release_held_pushes();
  void on_handover(std::string secret, std::uint64_t last_push_seq, HandoverDone done);
  void complete_handover_if_quiet();
  void on_resumed(Result<std::shared_ptr<SessionHandover>> handover, bool same_gateway);
  void adopt(const SessionHandover& handover, bool same_gateway);
  /// Welcome, then (resumed) the pushes the client missed and those that came meanwhile.
  void welcome();
  /// Sends a Push frame numbered and kept for a resume (resumable sessions).
  void give_push(const std::shared_ptr<const std::string>& frame);
  /// A request's answer: sent if connected, and (resumable sessions) kept in the ledger unless
  /// it says the request did not run, so that sending it again runs it.
  void deliver_answer(std::uint32_t seq, std::shared_ptr<const std::string> frame, bool keep);
  /// A resumable session's request whose seq was seen before (a retry): true when handled.
  bool answered_before(const Request& request);
  void forget_acknowledged(std::uint32_t ack, std::uint64_t push_seq);
  /// A request answered without running: its seq may come again and must run then.
  void note_refused(std::uint32_t seq);
  void make_room();
  void expire_overdue(SteadyClock::time_point now);
  /// The connection was lost: wait for a resume, or end.
  void detach();
  /// The client left on purpose (Bye).
  void leave();
  void set_detached(bool detached);
  /// Posts the login request, to an instance of the login service on a node other than
  /// `avoid_node` if given.
  void post_login(std::string_view avoid_node);
  void on_login_result(Result<std::pair<std::string, std::map<std::string, std::string>>> result);
  void on_claimed(Result<std::int64_t> revision);
  void on_request(const Request& request, SteadyClock::time_point now);
  void answer(std::uint32_t seq, Errc code, std::string_view error, std::uint32_t route_id = 0);
  /// Posts a request the session makes itself, to this node or another; a node it reaches is told
  /// when the session ends.
  Status post(const detail::Target& target, std::string method, std::string payload,
              Context context, std::shared_ptr<detail::Responder> responder);
  void on_answered(ClientResponder* responder, std::shared_ptr<const std::string> frame);
  void kick_if_finished();

  GateCore& gate_;
  Link* link_;  // null once the link closed
  boost::asio::io_context& link_io_;
  std::string id_;
  std::string uid_;
  std::string remote_;
  Phase phase_ = Phase::hello;
  std::atomic<bool> ended_{false};
  std::atomic<bool> replaced_{false};
  std::atomic<bool> detached_{false};
  // Set on the predecessor's thread, cleared on this session's (hold_pushes_until_drained).
  std::atomic<bool> holding_pushes_{false};
  std::vector<std::shared_ptr<const std::string>> held_pushes_;  // this session's I/O thread
  std::atomic<std::int64_t> binding_revision_{0};
  std::string end_reason_;
  SteadyClock::time_point deadline_{};  // handshake, then idle
  // Token bucket of RequestsPerSecond / RequestBurst.
  double tokens_ = 0;
  SteadyClock::time_point refilled_{};
  std::uint32_t refused_in_a_row_ = 0;
  // While the login method runs: its request and the node it went to, to try another node when
  // that one turns out to be gone (it stays in discovery until its lease expires).
  struct LoginAttempt {
    std::string request;
    std::string node;
    int attempts = 0;
  };
  std::unique_ptr<LoginAttempt> login_;
  // Set by finish(): the kick that follows the last answer.
  std::unique_ptr<std::pair<KickCode, std::string>> finishing_;
  std::vector<std::shared_ptr<ClientResponder>> in_flight_;
  // Other nodes (id, address) its requests went to; allocated at the first (I/O thread only).
  std::unique_ptr<std::vector<std::pair<std::string, std::string>>> remote_nodes_;
  mutable std::mutex data_mu_;
  // Allocated at the first value: most sessions keep none, and an empty map is 48 bytes.
  std::unique_ptr<std::map<std::string, std::string, std::less<>>> data_;
  std::unique_ptr<Resumable> resume_;  // I/O thread
  static inline std::atomic<std::int64_t> live_{0};
};

}  // namespace ember::gate
