// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/frame_codec.hpp"
#include "net/handshake.hpp"
#include "net/reject.hpp"
#include "net/transport.hpp"

namespace ember::net::detail {

using asio::ip::tcp;

class Connection;

/// The transport as its connections see it: its settings and counters, and what a connection
/// reports back. Everything but the counters is used on the I/O thread only.
class ConnectionOwner {
 public:
  ConnectionOwner(TransportOptions options, Transport::OnFrame on_frame)
      : options(std::move(options)), on_frame(std::move(on_frame)) {}
  ConnectionOwner(const ConnectionOwner&) = delete;
  ConnectionOwner& operator=(const ConnectionOwner&) = delete;
  virtual ~ConnectionOwner() = default;

  /// A connection finished its handshake.
  virtual void opened(const std::shared_ptr<Connection>& conn) = 0;
  /// A connection ended (before or after its handshake).
  virtual void closed(const std::shared_ptr<Connection>& conn, const std::string& why,
                      bool was_open, bool refused) = 0;
  /// Counts a refused connection from `ip`.
  virtual void refused(const std::string& ip, Reject reason, const std::string& why) = 0;
  /// Before `conn`'s socket closes: no sender may write to its descriptor any more.
  virtual void drop_direct(const Connection* conn) = 0;
  /// `conn` wrote everything it had.
  virtual void write_idle(const std::shared_ptr<Connection>& conn) = 0;
  /// Written chunks give their buffers back for senders to fill again.
  virtual void recycle(std::vector<Chunk>& written) = 0;
  /// Where frames to `node` go ("host:port"), for messages.
  [[nodiscard]] virtual std::string address_of(const std::string& node) const = 0;

  TransportOptions options;
  Transport::OnFrame on_frame;
  std::atomic<std::uint64_t> frames_in{0}, frames_out{0}, bytes_in{0}, bytes_out{0}, dropped{0};
};

/// The peer's IP without the port: refusals are grouped by host, since an attacker's every
/// connection comes from a new port. IPv4 peers of a dual-stack listener count as IPv4.
std::string remote_ip(const tcp::socket& socket);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Side { client, server };

  Connection(ConnectionOwner& t, tcp::socket socket, Side side, std::string expected_peer)
      : t_(t),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        side_(side),
        peer_(std::move(expected_peer)) {
    if (side_ == Side::server) {
      remote_ip_ = remote_ip(socket_);
    }
  }

  void start_client();
  void start_server();
  /// Queues framed bytes; `defer` leaves the write to a later flush() (the caller batches).
  void send(Chunk chunk, bool defer = false);
  void flush();
  void close(const std::string& why, Reject rejected = Reject::none);
  /// Writes `last` (the handshake's final frame), then closes as close(why, rejected) would, the
  /// loss marked refused: retrying will not help, and the peer should hear why.
  void refuse(const google::protobuf::Message& last, std::string why, Reject rejected);
  /// Once connected: where refusals of this connection are counted (the socket may be gone then).
  void connected() { remote_ip_ = remote_ip(socket_); }

  [[nodiscard]] bool open() const noexcept { return open_; }
  [[nodiscard]] bool busy() const noexcept { return writing_ || !queue_.empty(); }
  [[nodiscard]] bool is_closed() const noexcept { return closed_; }
  [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
  /// An inbound connection counted in the transport's pending handshakes until it opens or closes.
  bool pending = false;
  tcp::socket& socket() noexcept { return socket_; }
  asio::steady_timer& timer() noexcept { return timer_; }

 private:
  void read_frame(std::size_t limit, std::function<void(std::string&&)> then);
  void read_loop();
  bool consume_frames();  // false once the connection closed
  void write_handshake(const google::protobuf::Message& m);
  void give_up(Refusal refusal);
  void opened();
  void arm_handshake_timer();

  ConnectionOwner& t_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  Side side_;
  std::string peer_;
  std::string remote_ip_;
  bool open_ = false;
  bool closed_ = false;
  Handshake handshake_;
  std::array<char, kLengthPrefix> header_{};
  std::string body_;
  // After the handshake: bytes read but not yet consumed. One read takes in as many frames as the
  // socket holds, so a stream of small frames costs few syscalls.
  std::vector<char> in_buf_;
  std::size_t in_len_ = 0;
  std::deque<Chunk> queue_;
  std::vector<Chunk> in_flight_;
  bool writing_ = false;
  std::size_t handshake_frames_ = 0;  // queued handshake frames not yet written
  // refuse(): close once the refusal is written.
  bool refused_ = false;
  bool close_when_written_ = false;
  std::string refusal_why_;
  Reject refusal_reason_ = Reject::none;
};

}  // namespace ember::net::detail
