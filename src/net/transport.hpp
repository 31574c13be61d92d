// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace ember::net {

struct TransportOptions {
  std::string cluster = "ember";  ///< nodes of another cluster are refused at the handshake
  std::string node_id;            ///< required, unique in the cluster
  std::string secret;             ///< required: proves membership (never sent)
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 0;      ///< 0: any free port (see Transport::port)
  std::size_t max_frame = 16u << 20;  ///< a larger frame closes the connection
  std::chrono::milliseconds handshake_timeout{3000};
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds reconnect_min{50};    ///< backoff after a failed connection...
  std::chrono::milliseconds reconnect_max{2000};  ///< ...doubling up to this
};

struct TransportStats {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t rejected = 0;     ///< connections closed for a failed handshake or a bad frame
  std::uint64_t dropped = 0;      ///< frames dropped because their peer went down
  std::uint64_t connections = 0;  ///< open, authenticated connections now
};

/// Node-to-node TCP: length-prefixed frames, normally one connection per node pair, writes
/// coalesced, TCP_NODELAY, a challenge-response handshake on a shared secret, lazy reconnection
/// with backoff. Runs one I/O thread; asio stays inside the .cpp.
class Transport {
 public:
  /// Runs on the I/O thread for every frame received from an authenticated peer. Keep it short
  /// (decode, post to a mailbox).
  /// `payload` is valid during the call only.
  using OnFrame = std::function<void(const std::string& from_node, std::string_view payload)>;
  /// Runs on the I/O thread when a peer becomes reachable (true) or is lost (false). After
  /// `false`, frames queued for it were dropped: the caller fails what waited on them.
  using OnPeer = std::function<void(const std::string& node, bool up)>;

  static Result<std::unique_ptr<Transport>> start(TransportOptions options, OnFrame on_frame,
                                                  OnPeer on_peer);
  virtual ~Transport() = default;

  [[nodiscard]] virtual std::uint16_t port() const noexcept = 0;
  /// Queues `payload` for `node`, reachable at `address` ("host:port"). Connects on first use.
  /// Frames to one node keep their order. Thread-safe. Fails at once with node_unreachable while
  /// the node is in its reconnect backoff after a failure.
  /// The bytes are copied before it returns. `urgent` (a call or a reply: latency matters more
  /// than batching): when the connection has nothing else to write, the frame is written from the
  /// calling thread at once instead of waking the I/O thread.
  virtual Status send(const std::string& node, const std::string& address, std::string_view payload,
                      bool urgent = false) = 0;
  [[nodiscard]] virtual TransportStats stats() const = 0;
  /// Closes everything and joins the I/O thread. Idempotent.
  virtual void stop() = 0;
};

/// HMAC-SHA256 (exposed for tests that speak the handshake by hand).
std::string hmac_sha256(const std::string& key, const std::string& data);

}  // namespace ember::net
