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
  /// Inbound connections still in their handshake, at most: beyond it a new connection is closed
  /// at once, so silent connections cannot pile up until the process runs out of descriptors.
  std::size_t max_pending_handshakes = 256;
  std::chrono::milliseconds accept_retry_min{50};    ///< after a failed accept (EMFILE...)...
  std::chrono::milliseconds accept_retry_max{1000};  ///< ...doubling up to this
  /// Refused connections are logged per peer IP: the first at once, the rest of the window as one
  /// summary line when it ends.
  std::chrono::milliseconds reject_log_window{10000};
  /// Peer IPs with their own summary; refusals from further ones share an "other addresses" line.
  std::size_t reject_log_addresses = 1024;
  /// Runs on the I/O thread after the frames of one read have gone to OnFrame (none when a read
  /// completed no frame): a receiver that gathers what a burst of frames carries hands it on
  /// here. Optional.
  std::function<void()> after_frames;
};

struct TransportStats {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  /// Connections refused, every reason: the sum of the rejected_* counters below.
  std::uint64_t rejected = 0;
  std::uint64_t rejected_bad_handshake = 0;  ///< unreadable Hello, wrong version, unexpected node
  std::uint64_t rejected_wrong_secret = 0;   ///< failed to prove the cluster secret
  std::uint64_t rejected_wrong_cluster = 0;  ///< the peer belongs to another cluster
  std::uint64_t rejected_bad_frame =
      0;                               ///< oversized (garbage usually reads so) or truncated frame
  std::uint64_t rejected_hung_up = 0;  ///< the peer closed or reset during the handshake
  std::uint64_t rejected_handshake_timeout = 0;  ///< no handshake within handshake_timeout
  std::uint64_t rejected_too_many_pending = 0;   ///< closed at accept: max_pending_handshakes
  std::uint64_t accept_failures = 0;     ///< accepts that failed (EMFILE, ENFILE...), then retried
  std::uint64_t pending_handshakes = 0;  ///< inbound connections in their handshake now
  std::uint64_t dropped = 0;             ///< frames dropped because their peer went down
  std::uint64_t connections = 0;         ///< open, authenticated connections now
};

/// Node-to-node TCP: length-prefixed frames, normally one connection per node pair, writes
/// coalesced, TCP_NODELAY, a challenge-response handshake on a shared secret, lazy reconnection
/// with backoff. Runs one I/O thread; asio stays inside src/net.
///
/// Keeps accepting through accept errors (a full descriptor table, say): it retries with a
/// doubling backoff and logs one warning per episode. Refused connections are counted per reason
/// and logged at most once per peer IP and window, so a stranger cannot flood the log.
class Transport {
 public:
  /// Runs on the I/O thread for every frame received from an authenticated peer. Keep it short
  /// (decode, post to a mailbox).
  /// `payload` is valid during the call only.
  using OnFrame = std::function<void(const std::string& from_node, std::string_view payload)>;
  /// Why a peer was lost. `refused`: its handshake failed for a reason that retrying will not
  /// fix (the cluster secrets differ); `why` then says so and what to change, e.g.
  /// "handshake with n2 (127.0.0.1:7001) refused: cluster secret does not match ...".
  /// `sent_nothing`: no connection to it was ever open, so no frame queued for it was written
  /// (the peer was not listening, or the handshake failed): what waited on it did not run.
  struct PeerLoss {
    std::string why;
    bool refused = false;
    bool sent_nothing = false;
  };
  /// Runs on the I/O thread when a peer becomes reachable (true) or is lost (false). After
  /// `false`, frames queued for it were dropped: the caller fails what waited on them.
  using OnPeer = std::function<void(const std::string& node, bool up, const PeerLoss& loss)>;

  static Result<std::unique_ptr<Transport>> start(TransportOptions options, OnFrame on_frame,
                                                  OnPeer on_peer);
  virtual ~Transport() = default;

  [[nodiscard]] virtual std::uint16_t port() const noexcept = 0;
  /// Queues `payload` for `node`, reachable at `address` ("host:port"). Connects on first use.
  /// Frames to one node keep their order. Thread-safe. Fails at once while the node is in its
  /// reconnect backoff after a failure: unavailable (nothing was sent), or node_unreachable when
  /// the peer refused the handshake (retrying will not help until the configuration changes).
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
