// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <bitset>
#include <deque>
#include <ember/event.hpp>
#include <ember/node.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "net/transport.hpp"
#include "rpc/remote.hpp"

namespace ember::wire {
class RemoteRequest;
class RemoteReply;
class EventFrame;
}  // namespace ember::wire

namespace ember::detail {

class NodeImpl;
class RemoteCall;
class Responder;

/// Carries calls between nodes: the remote branch of Call / AsyncCall / Send / co_call. Requests
/// and replies travel as `wire.Envelope` frames on the node's transport; pending calls wait in a
/// table keyed by a per-node request id; a peer that goes down fails its pending calls at once.
class ClusterLink final : public RemoteRouter, public std::enable_shared_from_this<ClusterLink> {
 public:
  /// Starts the transport and makes `node` route calls to remote targets through it. Call it before
  /// the node's services start calling out (the router pointer is set once, unsynchronized);
  /// Node::stop stops the link after its services have drained.
  static Result<std::shared_ptr<ClusterLink>> attach(Node& node, net::TransportOptions options,
                                                     std::string advertise_host);
  /// The same without installing it as the node's router (the cluster membership wraps it).
  /// `advertise`: "host" (the bound port is appended) or "host:port" (kept as is).
  static Result<std::shared_ptr<ClusterLink>> create(NodeImpl& node, net::TransportOptions options,
                                                     std::string advertise);
  ~ClusterLink() override;

  Status send_request(const Target& target, const CallSpec& spec, const Context& context,
                      const std::shared_ptr<PendingCall>& pending) override;
  Status send_serialized_request(const Target& target, std::string_view method,
                                 std::string_view payload, const Context& context,
                                 const std::shared_ptr<Responder>& responder) override;
  void send_origin_ended(const std::string& node, const std::string& address,
                         std::string_view identity) override;

  /// "host:port" other nodes use to reach this one.
  [[nodiscard]] std::string address() const override { return address_; }
  [[nodiscard]] net::TransportStats transport_stats() const { return transport_->stats(); }
  [[nodiscard]] std::uint64_t duplicates_dropped() const noexcept { return duplicates_.load(); }
  /// Stops the transport; every pending remote call fails with node_unreachable. Idempotent.
  void stop() override;

  // Called from the transport's I/O thread.
  void on_frame(const std::string& from, std::string_view bytes);
  void on_peer(const std::string& node, bool up, const net::Transport::PeerLoss& loss);
  /// Sends an event to each of `nodes` (node id, address): at most once, in order per node; a
  /// node that cannot be reached misses it.
  void send_event(const AnyMessage& payload, const EventInfo& info,
                  const std::vector<std::pair<std::string, std::string>>& nodes);
  /// Event frames: sent, received, not sent (peer unreachable), received but unreadable.
  [[nodiscard]] EventStats event_stats() const noexcept {
    EventStats s;
    s.sent = events_out_.load(std::memory_order_relaxed);
    s.received = events_in_.load(std::memory_order_relaxed);
    s.send_failures = event_send_failures_.load(std::memory_order_relaxed);
    s.receive_errors = event_errors_.load(std::memory_order_relaxed);
    return s;
  }
  /// Sends a reply frame (from a callee lane).
  void reply(const std::string& to, const std::string& address, std::string bytes);

 private:
  explicit ClusterLink(NodeImpl& node) : node_(node) {}

  struct Waiting {
    // Owned here: for a remote AsyncCall nothing else keeps the call alive until its reply.
    std::shared_ptr<PendingCall> pending;
    // Instead of `pending`, for a request sent serialized: takes the reply's payload unparsed.
    std::shared_ptr<Responder> serialized;
    const AnyMessage* prototype = nullptr;
    std::string node;
    std::chrono::steady_clock::time_point deadline;
    /// No reply will come: the caller hears `why`.
    void fail(Error why) const;
  };
  void handle_request(const std::string& from, std::unique_ptr<RemoteCall> call);
  /// Adds a Send to the I/O thread's burst when one is open and the target takes it; false: post
  /// it on its own.
  bool gather(const Target& target, runtime::Message* m);
  void handle_reply(wire::RemoteReply& reply);
  void handle_event(const wire::EventFrame& event);
  /// Whether (from, incarnation, id) ran already. `send_responder`, when given, receives the
  /// sender's shared responder for Sends (under the same lock).
  bool seen(const std::string& from, std::uint64_t incarnation, std::uint64_t id,
            std::shared_ptr<Responder>* send_responder);
  void purge_locked();
  /// Registers the wait for a reply and sends the framed request; on failure nothing waits.
  Status send_framed(const Pid& pid, std::uint64_t id, Waiting waiting, bool wants_reply,
                     const std::string& frame);

  NodeImpl& node_;
  std::unique_ptr<net::Transport> transport_;
  std::string address_;
  std::atomic<std::uint64_t> next_id_{1};
  std::uint64_t incarnation_ = 0;  // random per process: tells a restarted sender from a retry
  std::atomic<std::uint64_t> duplicates_{0};
  std::atomic<std::uint64_t> events_in_{0};
  std::atomic<std::uint64_t> events_out_{0};
  std::atomic<std::uint64_t> event_send_failures_{0};
  std::atomic<std::uint64_t> event_errors_{0};

  std::mutex mu_;
  std::unordered_map<std::uint64_t, Waiting> waiting_;
  std::uint64_t inserts_ = 0;

  std::mutex dedup_mu_;
  static constexpr std::size_t kDedupWindow = 4096;  // request ids remembered per sender
  struct Recent {
    std::uint64_t incarnation = 0;
    std::uint64_t highest = 0;
    // Bit id % window: seen, for ids in (highest - window, highest].
    std::bitset<kDedupWindow> bits;
    std::shared_ptr<Responder> send_responder;  // for this sender's Sends: they need no reply
  };
  std::unordered_map<std::string, Recent> recent_;
  // The last target a request named (I/O thread only) and the repository version it was read at.
  std::string cached_uid_;
  std::uint64_t cached_version_ = ~std::uint64_t{0};
  std::optional<Target> cached_target_;
};

}  // namespace ember::detail
