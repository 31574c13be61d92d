// SPDX-License-Identifier: Apache-2.0
#include "net/transport.hpp"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <atomic>
#include <cstring>
#include <deque>
#include <ember/log.hpp>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ember/wire.pb.h"

namespace ember::net {

std::string hmac_sha256(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kVersion = 1;
// Handshake frames are tiny: anything bigger before authentication is garbage or an attack.
constexpr std::size_t kHandshakeMaxFrame = 4096;
constexpr std::size_t kNonceBytes = 16;

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

std::string proof(const std::string& secret, const char* role, const std::string& first_nonce,
                  const std::string& second_nonce, const std::string& client_id,
                  const std::string& server_id) {
  std::string text =
      std::string(role) + '\0' + first_nonce + second_nonce + client_id + '\0' + server_id;
  return hmac_sha256(secret, text);
}

bool same(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::array<char, 4> encode_length(std::size_t n) {
  auto v = static_cast<std::uint32_t>(n);
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

/// Why a connection was refused. The order is that of the summary lines and of TransportStats.
enum class Reject : std::uint8_t {
  none,
  bad_handshake,
  wrong_secret,
  wrong_cluster,
  bad_frame,
  hung_up,
  handshake_timeout,
  too_many_pending,
};
constexpr std::size_t kRejectReasons = 7;
constexpr std::array<const char*, kRejectReasons> kRejectNames = {"bad handshake",
                                                                  "wrong secret",
                                                                  "wrong cluster",
                                                                  "bad frame",
                                                                  "hung up",
                                                                  "handshake timeout",
                                                                  "too many pending handshakes"};

std::size_t reason_index(Reject r) {
  return static_cast<std::size_t>(r) - 1;
}

/// 1234567 -> "1,234,567": summary lines are read by people, often with large counts.
std::string thousands(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return out;
}

std::string describe_span(std::chrono::milliseconds span) {
  if (span.count() % 1000 == 0) {
    return std::to_string(span.count() / 1000) + " s";
  }
  return std::to_string(span.count()) + " ms";
}

/// The peer's IP without the port: refusals are grouped by host, since an attacker's every
/// connection comes from a new port. IPv4 peers of a dual-stack listener count as IPv4.
std::string remote_ip(const tcp::socket& socket) {
  asio::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) {
    return "an unknown address";
  }
  auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address.to_string();
}

/// Refused connections, summarised per peer IP. The first refusal from an address is logged at
/// once (with its detail, for whoever debugs a misconfigured node); later ones in the same window
/// are only counted, and one line per window reports them. A window that ends without refusals
/// forgets the address, so the next refusal is again logged at once. A stranger reconnecting in a
/// loop thus costs two lines per window instead of one per attempt, and memory stays bounded:
/// past `max_addresses` tracked IPs, refusals share an "other addresses" window. I/O thread only.
class RejectLog {
 public:
  RejectLog(asio::io_context& io, std::chrono::milliseconds window, std::size_t max_addresses)
      : timer_(io), window_(window), max_addresses_(max_addresses) {}

  void set_node(std::string node_id) { node_id_ = std::move(node_id); }

  void add(const std::string& ip, Reject reason, const std::string& why) {
    const auto now = Clock::now();
    Window* window = nullptr;
    bool shared = false;
    if (auto it = windows_.find(ip); it != windows_.end()) {
      window = &it->second;
    } else if (windows_.size() < max_addresses_) {
      window = &windows_[ip];
    } else {
      window = &others_;
      shared = true;
    }
    const bool first = window->total == 0 && !window->rolled;
    if (first) {
      window->start = now;
      window->end = now + window_;
      arm(window->end);
    }
    ++window->counts[reason_index(reason)];
    ++window->total;
    if (!first) {
      return;
    }
    window->logged = 1;
    system_log().warn(
        "transport {}: refused a connection from {}: {} ({}); {} are summarised "
        "every {}",
        node_id_, ip, kRejectNames[reason_index(reason)], why,
        shared ? "refusals from addresses beyond the " + thousands(max_addresses_) + " tracked"
               : "further refusals from " + ip,
        describe_span(window_));
  }

  /// Reports what the open windows counted and not yet logged (at shutdown).
  void flush() {
    timer_.cancel();
    // Cut short: the lines say how long the windows actually ran.
    const auto now = Clock::now();
    auto so_far = [&](const Window& w) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(now - w.start);
    };
    for (auto& [ip, window] : windows_) {
      summarise(ip, window, so_far(window));
    }
    summarise("other addresses", others_, so_far(others_));
    windows_.clear();
    others_ = {};
  }

 private:
  struct Window {
    Clock::time_point start;
    Clock::time_point end;
    std::array<std::uint64_t, kRejectReasons> counts{};
    std::uint64_t total = 0;   // refusals in this window
    std::uint64_t logged = 0;  // of which logged one by one
    bool rolled = false;       // follows a window that had a summary: no line at its start
  };

  void arm(Clock::time_point at) {
    if (armed_) {
      return;  // every window is as long, so the armed one ends first
    }
    armed_ = true;
    timer_.expires_at(at);
    timer_.async_wait([this](const asio::error_code& ec) {
      armed_ = false;
      if (!ec) {
        expire();
      }
    });
  }

  void expire() {
    const auto now = Clock::now();
    std::optional<Clock::time_point> next;
    auto roll = [&](const std::string& who, Window& w) {  // false: forget the window
      if (w.total == 0 && !w.rolled) {
        return true;  // not in use (others_)
      }
      if (w.end > now) {
        next = next ? std::min(*next, w.end) : w.end;
        return true;
      }
      if (w.total == w.logged) {
        return false;  // quiet window: the next refusal is news again
      }
      summarise(who, w, window_);
      w = Window{};
      w.rolled = true;
      w.start = now;
      w.end = now + window_;
      next = next ? std::min(*next, w.end) : w.end;
      return true;
    };
    for (auto it = windows_.begin(); it != windows_.end();) {
      it = roll(it->first, it->second) ? std::next(it) : windows_.erase(it);
    }
    if (!roll("other addresses", others_)) {
      others_ = {};
    }
    if (next) {
      arm(*next);
    }
  }

  void summarise(const std::string& who, const Window& w, std::chrono::milliseconds span) const {
    if (w.total == w.logged) {
      return;
    }
    std::string by_reason;
    for (std::size_t i = 0; i < kRejectReasons; ++i) {
      if (w.counts[i] > 0) {
        by_reason += (by_reason.empty() ? "" : ", ") + std::string(kRejectNames[i]) + ": " +
                     thousands(w.counts[i]);
      }
    }
    system_log().warn("transport {}: refused {} connection{} from {} in the last {} ({})", node_id_,
                      thousands(w.total), w.total == 1 ? "" : "s", who, describe_span(span),
                      by_reason);
  }

  asio::steady_timer timer_;
  std::chrono::milliseconds window_;
  std::size_t max_addresses_;
  std::string node_id_;
  bool armed_ = false;
  std::unordered_map<std::string, Window> windows_;  // by peer IP
  Window others_;                                    // IPs past max_addresses_
};

class TransportImpl;

constexpr std::size_t kChunkReserve = 64 * 1024;

/// Bytes ready for the socket: one or more frames, each already prefixed with its length. Senders
/// on any thread append to a chunk; the I/O thread writes chunks whole. No allocation per frame
/// crosses threads.
struct Chunk {
  std::string bytes;
  std::size_t frames = 0;
  void append(std::string_view payload) {
    const auto header = encode_length(payload.size());
    bytes.append(header.data(), header.size());
    bytes.append(payload);
    ++frames;
  }
  /// The part of a frame a direct write did not get out (`written` bytes, header included).
  void append_rest(std::string_view payload, std::size_t written) {
    const auto header = encode_length(payload.size());
    if (written < header.size()) {
      bytes.append(header.data() + written, header.size() - written);
      written = header.size();
    }
    bytes.append(payload.substr(written - header.size()));
    ++frames;
  }
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Side { client, server };

  Connection(TransportImpl& t, tcp::socket socket, Side side, std::string expected_peer)
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
  /// An inbound connection counted in TransportImpl's pending handshakes until it opens or closes.
  bool pending = false;
  tcp::socket& socket() noexcept { return socket_; }
  asio::steady_timer& timer() noexcept { return timer_; }

 private:
  void read_frame(std::size_t limit, std::function<void(std::string&&)> then);
  void read_loop();
  bool consume_frames();  // false once the connection closed
  void write_handshake(const google::protobuf::Message& m);
  void opened();
  void arm_handshake_timer();

  TransportImpl& t_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  Side side_;
  std::string peer_;
  std::string remote_ip_;
  bool open_ = false;
  bool closed_ = false;
  std::string local_nonce_;
  std::string remote_nonce_;
  std::array<unsigned char, 4> header_{};
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

struct Peer {
  std::string address;
  std::shared_ptr<Connection> active;  // the connection frames to this node use
  std::deque<Chunk> pending;           // waiting for `active` to open
  int failures = 0;
};

class TransportImpl final : public Transport {
 public:
  TransportImpl(TransportOptions options, OnFrame on_frame, OnPeer on_peer)
      : options(std::move(options)),
        on_frame(std::move(on_frame)),
        on_peer(std::move(on_peer)),
        work_(asio::make_work_guard(io_)),
        acceptor_(io_),
        accept_timer_(io_),
        reject_log_(io_, this->options.reject_log_window, this->options.reject_log_addresses) {
    reject_log_.set_node(this->options.node_id);
  }

  ~TransportImpl() override { stop(); }

  Status listen() {
    asio::error_code ec;
    auto address = asio::ip::make_address(options.listen_host, ec);
    if (ec) {
      return Error{Errc::invalid_argument,
                   "listen address '" + options.listen_host + "': " + ec.message()};
    }
    tcp::endpoint endpoint(address, options.listen_port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) {
      acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec) {
      acceptor_.bind(endpoint, ec);
    }
    if (!ec) {
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return Error{Errc::io_error, "cannot listen on " + options.listen_host + ":" +
                                       std::to_string(options.listen_port) + ": " + ec.message()};
    }
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
    return {};
  }

  [[nodiscard]] std::uint16_t port() const noexcept override { return port_; }

  Status send(const std::string& node, const std::string& address, std::string_view payload,
              bool urgent) override {
    if (stopped_.load(std::memory_order_acquire)) {
      return Error{Errc::stopping, "transport stopped"};
    }
    if (payload.size() > options.max_frame) {
      // Sent anyway, it would make the peer close the connection that everyone else shares.
      return Error{Errc::invalid_argument,
                   "a frame of " + std::to_string(payload.size()) + " bytes is over the limit of " +
                       std::to_string(options.max_frame) + " (ClusterConf.MaxFrameSize)"};
    }
    if (nodes_down_.load(std::memory_order_acquire) != 0) {  // no lock while all is well
      std::lock_guard lock(backoff_mu_);
      auto it = down_until_.find(node);
      if (it != down_until_.end() && Clock::now() < it->second.until) {
        // The reason of the last failure: "wrong secret" must not read like a network glitch.
        return Error{Errc::node_unreachable,
                     "node " + node + " is unreachable (retrying later): " + it->second.why};
      }
    }
    // One post per batch, not per frame: senders append while the I/O thread is busy, and it
    // takes everything staged in one go.
    bool post = false;
    {
      std::lock_guard lock(stage_mu_);
      auto direct = direct_.find(node);
      std::size_t written = 0;
      if (urgent && direct != direct_.end() && !direct->second.busy) {
        // Idle connection: write from this thread. Nothing else is queued for the node (busy
        // would be set), so the order of frames holds.
        written = write_direct(direct->second.fd, payload);
        if (written == payload.size() + 4) {
          return {};
        }
      }
      Staged& staged = staged_[node];
      if (staged.chunk.bytes.capacity() == 0) {
        staged.chunk.bytes.reserve(kChunkReserve);
      }
      if (staged.address != address && !address.empty()) {
        staged.address = address;
      }
      if (written == 0) {
        staged.chunk.append(payload);  // copied: the caller's buffer stays on the caller's thread
      } else {
        staged.chunk.append_rest(payload, written);  // a partial write: the rest follows
      }
      if (direct != direct_.end()) {
        direct->second.busy = true;
      }
      if (!drain_posted_) {
        drain_posted_ = true;
        post = true;
      }
    }
    if (post) {
      asio::post(io_, [this] { drain_staged(); });
    }
    return {};
  }

  [[nodiscard]] TransportStats stats() const override {
    TransportStats s;
    s.frames_in = frames_in.load();
    s.frames_out = frames_out.load();
    s.bytes_in = bytes_in.load();
    s.bytes_out = bytes_out.load();
    s.rejected = rejected.load();
    s.rejected_bad_handshake = rejected_by[reason_index(Reject::bad_handshake)].load();
    s.rejected_wrong_secret = rejected_by[reason_index(Reject::wrong_secret)].load();
    s.rejected_wrong_cluster = rejected_by[reason_index(Reject::wrong_cluster)].load();
    s.rejected_bad_frame = rejected_by[reason_index(Reject::bad_frame)].load();
    s.rejected_hung_up = rejected_by[reason_index(Reject::hung_up)].load();
    s.rejected_handshake_timeout = rejected_by[reason_index(Reject::handshake_timeout)].load();
    s.rejected_too_many_pending = rejected_by[reason_index(Reject::too_many_pending)].load();
    s.accept_failures = accept_failures.load();
    s.pending_handshakes = pending_handshakes_.load();
    s.dropped = dropped.load();
    s.connections = connections.load();
    return s;
  }

  void stop() override {
    if (stopped_.exchange(true)) {
      return;
    }
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
      accept_timer_.cancel();
      auto all = all_;
      for (auto& c : all) {
        c->close("transport stopping");
      }
      peers_.clear();
      reject_log_.flush();
    });
    work_.reset();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  /// Returns the bytes written (header included); 0 when the socket would block or failed (the
  /// I/O thread then writes the frame and sees the error).
  std::size_t write_direct(int fd, std::string_view payload) {
    const auto header = encode_length(payload.size());
    iovec parts[2] = {{const_cast<char*>(header.data()), header.size()},
                      {const_cast<char*>(payload.data()), payload.size()}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    const ssize_t n = ::sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) {
      return 0;
    }
    if (static_cast<std::size_t>(n) == payload.size() + 4) {
      frames_out.fetch_add(1, std::memory_order_relaxed);
      bytes_out.fetch_add(payload.size() + 4, std::memory_order_relaxed);
    }
    return static_cast<std::size_t>(n);
  }

  // --- called on the I/O thread -----------------------------------------------------------------

  bool has_staged_locked(const std::string& node) const {
    auto staged = staged_.find(node);
    return staged != staged_.end() && !staged->second.chunk.bytes.empty();
  }

  /// `conn` carries the frames to its node: senders may write to it directly while it is idle.
  void set_direct(const std::shared_ptr<Connection>& conn) {
    std::lock_guard lock(stage_mu_);
    direct_[conn->peer()] = Direct{conn, conn->socket().native_handle(),
                                   has_staged_locked(conn->peer()) || conn->busy()};
  }
  /// Before `conn`'s socket closes: no sender may write to its descriptor any more.
  void drop_direct(const Connection* conn) {
    std::lock_guard lock(stage_mu_);
    auto it = direct_.find(conn->peer());
    if (it != direct_.end() && it->second.conn.get() == conn) {
      direct_.erase(it);
    }
  }
  /// `conn` wrote everything it had: direct writes may resume unless more is staged.
  void write_idle(const std::shared_ptr<Connection>& conn) {
    std::lock_guard lock(stage_mu_);
    auto it = direct_.find(conn->peer());
    if (it == direct_.end() || it->second.conn != conn) {
      return;
    }
    if (has_staged_locked(conn->peer())) {
      return;  // a drain is on its way; it will come back here when written
    }
    it->second.busy = false;
  }

  void drain_staged() {
    // Entries stay in the map and buffers come back after their write: a steady stream of frames
    // allocates nothing here, and no buffer is freed on another thread than the one that made it.
    drain_batch_.clear();
    {
      std::lock_guard lock(stage_mu_);
      for (auto& [node, staged] : staged_) {
        if (!staged.chunk.bytes.empty()) {
          drain_batch_.push_back(Outgoing{&node, staged.address, std::move(staged.chunk)});
          staged.chunk = Chunk{};
          if (!spare_.empty()) {
            staged.chunk.bytes = std::move(spare_.back());
            spare_.pop_back();
          } else {
            // Room for a typical batch: growing from empty would reallocate and copy a dozen times.
            staged.chunk.bytes.reserve(kChunkReserve);
          }
        }
      }
      drain_posted_ = false;
    }
    drain_touched_.clear();
    for (auto& item : drain_batch_) {
      // Map nodes are stable and only this thread erases them, so `node` is still valid.
      if (auto conn = enqueue(*item.node, item.address, std::move(item.chunk), true)) {
        if (std::find(drain_touched_.begin(), drain_touched_.end(), conn) == drain_touched_.end()) {
          drain_touched_.push_back(std::move(conn));
        }
      }
    }
    for (auto& conn : drain_touched_) {
      conn->flush();
    }
    drain_touched_.clear();
  }

  /// Written chunks give their buffers back for senders to fill again.
  void recycle(std::vector<Chunk>& written) {
    constexpr std::size_t kKeepBelow = 4u << 20;
    constexpr std::size_t kSpares = 16;
    std::lock_guard lock(stage_mu_);
    for (auto& chunk : written) {
      if (spare_.size() < kSpares && chunk.bytes.capacity() <= kKeepBelow) {
        chunk.bytes.clear();
        spare_.push_back(std::move(chunk.bytes));
      }
    }
    written.clear();
  }

  /// Returns the open connection the frame was queued on when `defer` left its flush to the
  /// caller.
  std::shared_ptr<Connection> enqueue(const std::string& node, const std::string& address,
                                      Chunk payload, bool defer = false) {
    Peer& peer = peers_[node];
    if (!address.empty()) {
      peer.address = address;
    }
    if (peer.active && peer.active->open()) {
      peer.active->send(std::move(payload), defer);
      return defer ? peer.active : nullptr;
    }
    peer.pending.push_back(std::move(payload));
    if (!peer.active) {
      connect(node, peer);
    }
    return nullptr;
  }

  void connect(const std::string& node, Peer& peer) {
    auto colon = peer.address.rfind(':');
    if (peer.address.empty() || colon == std::string::npos) {
      failed(node, "no address for node " + node);
      return;
    }
    std::string host = peer.address.substr(0, colon);
    std::string port = peer.address.substr(colon + 1);
    auto conn =
        std::make_shared<Connection>(*this, tcp::socket(io_), Connection::Side::client, node);
    peer.active = conn;
    all_.insert(conn);
    auto resolver = std::make_shared<tcp::resolver>(io_);
    conn->timer().expires_after(options.connect_timeout);
    conn->timer().async_wait([conn](const asio::error_code& ec) {
      if (!ec) {
        conn->close("connect timeout");
      }
    });
    resolver->async_resolve(host, port,
                            [this, conn, resolver, node](const asio::error_code& ec,
                                                         tcp::resolver::results_type results) {
                              if (conn->is_closed()) {
                                return;  // closed while resolving: do not reopen the socket
                              }
                              if (ec) {
                                conn->close("cannot resolve: " + ec.message());
                                return;
                              }
                              asio::async_connect(
                                  conn->socket(), results,
                                  [conn](const asio::error_code& ec2, const tcp::endpoint&) {
                                    if (conn->is_closed()) {
                                      return;
                                    }
                                    if (ec2) {
                                      conn->close("cannot connect: " + ec2.message());
                                      return;
                                    }
                                    asio::error_code ignored;
                                    conn->socket().set_option(tcp::no_delay(true), ignored);
                                    conn->connected();
                                    conn->start_client();
                                  });
                            });
  }

  void accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket socket) {
      if (stopped_.load()) {
        return;  // stop() closed the acceptor
      }
      if (ec) {
        accept_failed(ec);
        return;
      }
      if (accept_episode_failures_ > 0) {
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - accept_episode_);
        system_log().info("transport {}: accepting again after {} ms / {} failures",
                          options.node_id, took.count(), thousands(accept_episode_failures_));
        accept_episode_failures_ = 0;
      }
      take(std::move(socket));
      accept();
    });
  }

  /// A failed accept (descriptors or kernel memory exhausted, mostly) says nothing about the next
  /// one: a node that stopped accepting here would stay deaf to its cluster until restarted. So
  /// it retries, backing off so as not to spin while the condition lasts, and logs the episode
  /// once rather than each attempt.
  void accept_failed(const asio::error_code& ec) {
    accept_failures.fetch_add(1);
    if (accept_episode_failures_++ == 0) {
      accept_episode_ = Clock::now();
      accept_backoff_ = options.accept_retry_min;
      system_log().warn(
          "transport {}: accept failed: {}; retrying (backoff {} doubling to {}) until it works",
          options.node_id, ec.message(), describe_span(options.accept_retry_min),
          describe_span(options.accept_retry_max));
    } else {
      accept_backoff_ = std::min(accept_backoff_ * 2, options.accept_retry_max);
    }
    accept_timer_.expires_after(accept_backoff_);
    accept_timer_.async_wait([this](const asio::error_code& wait_ec) {
      if (!wait_ec && !stopped_.load()) {
        accept();
      }
    });
  }

  void take(tcp::socket socket) {
    if (pending_handshakes_.load(std::memory_order_relaxed) >= options.max_pending_handshakes) {
      // Closed before any byte is read: silent connections cannot hold more descriptors than
      // the cap while they wait for their handshake timeout.
      const std::string ip = remote_ip(socket);
      asio::error_code ignored;
      socket.close(ignored);
      refused(ip, Reject::too_many_pending,
              "ClusterConf.MaxPendingHandshakes is " + thousands(options.max_pending_handshakes));
      return;
    }
    asio::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn =
        std::make_shared<Connection>(*this, std::move(socket), Connection::Side::server, "");
    conn->pending = true;
    pending_handshakes_.fetch_add(1, std::memory_order_relaxed);
    all_.insert(conn);
    conn->start_server();
  }

  void handshake_over(Connection& conn) {
    if (conn.pending) {
      conn.pending = false;
      pending_handshakes_.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  /// Counts a refused connection; the log line, if any, is the RejectLog's call.
  void refused(const std::string& ip, Reject reason, const std::string& why) {
    // The reason first: whoever sees the total sees every reason that makes it up.
    rejected_by[reason_index(reason)].fetch_add(1);
    rejected.fetch_add(1);
    system_log().debug("transport {}: refused a connection from {}: {}", options.node_id, ip, why);
    reject_log_.add(ip, reason, why);
  }

  /// A connection finished its handshake.
  void opened(const std::shared_ptr<Connection>& conn) {
    handshake_over(*conn);
    connections.fetch_add(1);
    Peer& peer = peers_[conn->peer()];
    if (peer.active && peer.active != conn && peer.active->open()) {
      return;  // an open connection to this node exists: keep using it; this one only receives
    }
    peer.active = conn;
    peer.failures = 0;
    {
      std::lock_guard lock(backoff_mu_);
      down_until_.erase(conn->peer());
      nodes_down_.store(down_until_.size(), std::memory_order_release);
    }
    while (!peer.pending.empty()) {
      conn->send(std::move(peer.pending.front()));
      peer.pending.pop_front();
    }
    set_direct(conn);
    if (on_peer) {
      on_peer(conn->peer(), true, PeerLoss{});
    }
  }

  /// A connection ended (before or after its handshake).
  void closed(const std::shared_ptr<Connection>& conn, const std::string& why, bool was_open,
              bool refused) {
    handshake_over(*conn);
    all_.erase(conn);
    if (was_open) {
      connections.fetch_sub(1);
    }
    if (conn->peer().empty() || stopped_.load()) {
      return;  // an inbound connection that never identified itself, or shutdown
    }
    auto it = peers_.find(conn->peer());
    if (it == peers_.end() || it->second.active != conn) {
      return;
    }
    Peer& peer = it->second;
    peer.active.reset();
    for (const auto& other : all_) {  // another open connection to the same node takes over
      if (other->open() && other->peer() == conn->peer()) {
        peer.active = other;
        set_direct(other);
        return;
      }
    }
    failed(conn->peer(), why, refused);
  }

  /// Where frames to `node` go ("host:port"), for messages. I/O thread only.
  std::string address_of(const std::string& node) const {
    auto it = peers_.find(node);
    return it == peers_.end() ? std::string() : it->second.address;
  }

  void failed(const std::string& node, const std::string& why, bool refused = false) {
    Peer& peer = peers_[node];
    for (const auto& chunk : peer.pending) {
      dropped.fetch_add(chunk.frames);
    }
    peer.pending.clear();
    peer.failures = std::min(peer.failures + 1, 16);
    auto backoff =
        std::min(options.reconnect_max, options.reconnect_min * (1 << (peer.failures - 1)));
    {
      std::lock_guard lock(backoff_mu_);
      down_until_[node] = Down{Clock::now() + backoff, why};
      nodes_down_.store(down_until_.size(), std::memory_order_release);
    }
    system_log().warn("transport {}: node {} unreachable: {}", options.node_id, node, why);
    if (on_peer) {
      on_peer(node, false, PeerLoss{why, refused});
    }
  }

  TransportOptions options;
  OnFrame on_frame;
  OnPeer on_peer;
  std::atomic<std::uint64_t> frames_in{0}, frames_out{0}, bytes_in{0}, bytes_out{0}, rejected{0},
      dropped{0}, connections{0}, accept_failures{0};
  std::array<std::atomic<std::uint64_t>, kRejectReasons> rejected_by{};

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  // Accept errors (I/O thread only): the retry timer and the episode being retried.
  asio::steady_timer accept_timer_;
  std::chrono::milliseconds accept_backoff_{0};
  std::uint64_t accept_episode_failures_ = 0;
  Clock::time_point accept_episode_;
  std::atomic<std::uint64_t> pending_handshakes_{0};  // written on the I/O thread only
  RejectLog reject_log_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::unordered_map<std::string, Peer> peers_;  // I/O thread only
  std::set<std::shared_ptr<Connection>> all_;    // I/O thread only
  std::mutex backoff_mu_;
  struct Down {
    Clock::time_point until;
    std::string why;  // of the failure that started the backoff
  };
  std::unordered_map<std::string, Down> down_until_;
  std::atomic<std::size_t> nodes_down_{0};  // entries in down_until_
  struct Staged {
    std::string address;
    Chunk chunk;
  };
  struct Direct {
    std::shared_ptr<Connection> conn;
    int fd = -1;
    bool busy = false;  // the I/O thread has bytes for this node: direct writes would reorder
  };
  std::mutex stage_mu_;
  std::unordered_map<std::string, Staged> staged_;  // by node: frames waiting for the I/O thread
  std::unordered_map<std::string, Direct> direct_;  // by node: its open, active connection
  std::vector<std::string> spare_;                  // empty buffers with capacity, for chunks
  struct Outgoing {
    const std::string* node;
    std::string address;
    Chunk chunk;
  };
  std::vector<Outgoing> drain_batch_;                       // I/O thread only
  std::vector<std::shared_ptr<Connection>> drain_touched_;  // I/O thread only
  bool drain_posted_ = false;
};

// ---------------------------------------------------------------------------------------------

void Connection::arm_handshake_timer() {
  timer_.expires_after(t_.options.handshake_timeout);
  timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (!ec && !self->open_) {
      // The socket closes with the connection: a peer that went silent (or never meant to speak)
      // holds no descriptor past the timeout.
      self->close("no handshake within " + describe_span(self->t_.options.handshake_timeout),
                  Reject::handshake_timeout);
    }
  });
}

void Connection::start_client() {
  if (closed_) {
    return;
  }
  arm_handshake_timer();
  local_nonce_ = random_bytes(kNonceBytes);
  wire::Hello hello;
  hello.set_version(kVersion);
  hello.set_cluster(t_.options.cluster);
  hello.set_node_id(t_.options.node_id);
  hello.set_nonce(local_nonce_);
  write_handshake(hello);
  read_frame(kHandshakeMaxFrame, [self = shared_from_this()](std::string&& body) {
    wire::Hello server;
    if (!server.ParseFromString(body) || server.version() != kVersion) {
      self->close("bad handshake from server", Reject::bad_handshake);
      return;
    }
    if (server.cluster() != self->t_.options.cluster) {
      self->close("server is in cluster '" + server.cluster() + "'", Reject::wrong_cluster);
      return;
    }
    if (server.node_id() != self->peer_) {
      self->close("expected node " + self->peer_ + ", reached " + server.node_id(),
                  Reject::bad_handshake);
      return;
    }
    const auto& opts = self->t_.options;
    std::string expected = proof(opts.secret, "server", self->local_nonce_, server.nonce(),
                                 opts.node_id, server.node_id());
    if (!same(expected, server.proof())) {
      // Said to the server too: otherwise it only sees a client hang up, and whoever reads its
      // log never learns that the secrets differ.
      wire::Proof refusal;
      refusal.set_refusal("cluster secret does not match");
      self->refuse(refusal,
                   "handshake with " + self->peer_ + " (" + self->t_.address_of(self->peer_) +
                       ") refused: cluster secret does not match (" + self->peer_ +
                       " proved another ClusterConf.Secret than this node's)",
                   Reject::wrong_secret);
      return;
    }
    wire::Proof mine;
    mine.set_proof(proof(opts.secret, "client", server.nonce(), self->local_nonce_, opts.node_id,
                         server.node_id()));
    self->write_handshake(mine);
    self->opened();
  });
}

void Connection::start_server() {
  arm_handshake_timer();
  read_frame(kHandshakeMaxFrame, [self = shared_from_this()](std::string&& body) {
    wire::Hello client;
    if (!client.ParseFromString(body) || client.version() != kVersion || client.node_id().empty() ||
        client.nonce().size() != kNonceBytes) {
      self->close("bad handshake from client", Reject::bad_handshake);
      return;
    }
    const auto& opts = self->t_.options;
    if (client.cluster() != opts.cluster) {
      self->close("client is in cluster '" + client.cluster() + "'", Reject::wrong_cluster);
      return;
    }
    self->local_nonce_ = random_bytes(kNonceBytes);
    self->remote_nonce_ = client.nonce();
    std::string client_id = client.node_id();
    wire::Hello mine;
    mine.set_version(kVersion);
    mine.set_cluster(opts.cluster);
    mine.set_node_id(opts.node_id);
    mine.set_nonce(self->local_nonce_);
    mine.set_proof(
        proof(opts.secret, "server", client.nonce(), self->local_nonce_, client_id, opts.node_id));
    self->write_handshake(mine);
    self->read_frame(kHandshakeMaxFrame, [self, client_id](std::string&& body2) {
      wire::Proof theirs;
      const auto& o = self->t_.options;
      if (theirs.ParseFromString(body2) && !theirs.refusal().empty()) {
        // The client's words are not echoed: a stranger must not write into this log.
        self->close("client " + client_id + ": cluster secret does not match (" + client_id +
                        " could not verify this node's proof: its ClusterConf.Secret differs from "
                        "this node's)",
                    Reject::wrong_secret);
        return;
      }
      if (!theirs.ParseFromString(body2) ||
          !same(theirs.proof(), proof(o.secret, "client", self->local_nonce_, self->remote_nonce_,
                                      client_id, o.node_id))) {
        self->close("client " + client_id + " failed to prove the cluster secret",
                    Reject::wrong_secret);
        return;
      }
      self->peer_ = client_id;
      self->opened();
    });
  });
}

void Connection::opened() {
  asio::error_code ignored;
  timer_.cancel();
  open_ = true;
  t_.opened(shared_from_this());
  read_loop();
}

void Connection::read_loop() {
  constexpr std::size_t kReadChunk = 64 * 1024;
  if (in_buf_.size() - in_len_ < kReadChunk / 4) {
    in_buf_.resize(std::max(in_buf_.size() * 2, in_len_ + kReadChunk));
  }
  socket_.async_read_some(
      asio::buffer(in_buf_.data() + in_len_, in_buf_.size() - in_len_),
      [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
        if (ec) {
          if (self->in_len_ > 0 && ec == asio::error::eof) {
            self->close("truncated frame: peer closed the connection");
          } else {
            self->close(ec == asio::error::eof ? "peer closed the connection" : ec.message());
          }
          return;
        }
        self->in_len_ += n;
        if (self->consume_frames()) {
          self->read_loop();
        }
      });
}

bool Connection::consume_frames() {
  // Authenticated: from now on frames may be as large as the configured limit.
  const std::size_t limit = t_.options.max_frame;
  std::size_t pos = 0;
  while (in_len_ - pos >= 4) {
    const auto* h = reinterpret_cast<const unsigned char*>(in_buf_.data() + pos);
    const std::size_t length = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                               (std::size_t{h[2]} << 8) | std::size_t{h[3]};
    if (length > limit) {
      close("frame of " + std::to_string(length) + " bytes is over the limit of " +
                std::to_string(limit),
            Reject::bad_frame);
      return false;
    }
    if (in_len_ - pos - 4 < length) {
      if (in_buf_.size() < length + 4) {
        in_buf_.resize(length + 4);  // room for this frame (bounded by the limit)
      }
      break;
    }
    t_.frames_in.fetch_add(1, std::memory_order_relaxed);
    t_.bytes_in.fetch_add(length + 4, std::memory_order_relaxed);
    if (t_.on_frame) {
      t_.on_frame(peer_, std::string_view(in_buf_.data() + pos + 4, length));
    }
    pos += 4 + length;
    if (closed_) {
      return false;
    }
  }
  if (pos > 0) {
    std::memmove(in_buf_.data(), in_buf_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
  return true;
}

void Connection::read_frame(std::size_t limit, std::function<void(std::string&&)> then) {
  auto self = shared_from_this();
  asio::async_read(
      socket_, asio::buffer(header_),
      [self, limit, then = std::move(then)](const asio::error_code& ec, std::size_t n) mutable {
        if (ec == asio::error::operation_aborted) {
          self->close(ec.message());  // closed already (timeout, shutdown)
          return;
        }
        if (ec) {
          // Hanging up in the middle of the handshake counts as a refused attempt.
          if (n > 0) {
            self->close("truncated frame header: " + ec.message(), Reject::bad_frame);
          } else {
            self->close(ec == asio::error::eof ? "peer closed the connection" : ec.message(),
                        Reject::hung_up);
          }
          return;
        }
        std::size_t length = (std::size_t{self->header_[0]} << 24) |
                             (std::size_t{self->header_[1]} << 16) |
                             (std::size_t{self->header_[2]} << 8) | std::size_t{self->header_[3]};
        if (length > limit) {
          self->close("frame of " + std::to_string(length) + " bytes is over the limit of " +
                          std::to_string(limit),
                      Reject::bad_frame);
          return;
        }
        self->body_.resize(length);
        asio::async_read(
            self->socket_, asio::buffer(self->body_),
            [self, then = std::move(then)](const asio::error_code& ec2, std::size_t) mutable {
              if (ec2) {
                self->close(
                    "truncated frame: " + ec2.message(),
                    ec2 == asio::error::operation_aborted ? Reject::none : Reject::bad_frame);
                return;
              }
              then(std::move(self->body_));
            });
      });
}

void Connection::write_handshake(const google::protobuf::Message& m) {
  Chunk chunk;
  chunk.append(m.SerializeAsString());
  queue_.push_front(std::move(chunk));  // handshake frames go before anything queued
  ++handshake_frames_;
  flush();
}

void Connection::send(Chunk chunk, bool defer) {
  if (closed_) {
    t_.dropped.fetch_add(chunk.frames);
    return;
  }
  queue_.push_back(std::move(chunk));
  if (!writing_ && open_ && !defer) {
    flush();
  }
}

void Connection::flush() {
  if (writing_ || queue_.empty() || closed_) {
    return;
  }
  // Everything queued goes out in one gather write: coalescing small frames into few syscalls.
  in_flight_.clear();
  std::vector<asio::const_buffer> buffers;
  buffers.reserve(queue_.size());
  std::size_t bytes = 0;
  std::size_t all_frames = 0;
  while (!queue_.empty()) {
    in_flight_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  for (const auto& chunk : in_flight_) {
    buffers.emplace_back(asio::buffer(chunk.bytes));
    bytes += chunk.bytes.size();
    all_frames += chunk.frames;
  }
  writing_ = true;
  // Handshake frames are not payload: keep them out of the counters.
  std::size_t handshake = std::min(handshake_frames_, all_frames);
  handshake_frames_ -= handshake;
  std::size_t frames = all_frames - handshake;
  asio::async_write(
      socket_, buffers,
      [self = shared_from_this(), frames, bytes](const asio::error_code& ec, std::size_t) {
        self->writing_ = false;
        if (self->close_when_written_ && (ec || self->queue_.empty())) {
          self->t_.recycle(self->in_flight_);
          self->close(self->refusal_why_, self->refusal_reason_);
          return;
        }
        if (ec) {
          self->close("write failed: " + ec.message());
          return;
        }
        self->t_.frames_out.fetch_add(frames);
        self->t_.bytes_out.fetch_add(bytes);
        self->t_.recycle(self->in_flight_);
        if (!self->queue_.empty()) {
          self->flush();
        } else if (self->open_) {
          self->t_.write_idle(self);
        }
      });
}

void Connection::close(const std::string& why, Reject rejected) {
  if (closed_) {
    return;
  }
  closed_ = true;
  bool was_open = open_;
  open_ = false;
  t_.drop_direct(this);
  asio::error_code ignored;
  timer_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  if (rejected != Reject::none) {
    t_.refused(remote_ip_.empty() ? "an unknown address" : remote_ip_, rejected,
               peer_.empty() ? why : "node " + peer_ + ": " + why);
  }
  for (const auto& chunk : queue_) {
    t_.dropped.fetch_add(chunk.frames);
  }
  queue_.clear();
  t_.closed(shared_from_this(), why, was_open, refused_);
}

void Connection::refuse(const google::protobuf::Message& last, std::string why, Reject rejected) {
  refused_ = true;
  close_when_written_ = true;
  refusal_why_ = std::move(why);
  refusal_reason_ = rejected;
  write_handshake(last);
  if (!writing_) {
    close(refusal_why_, refusal_reason_);  // nothing could be written (closed already)
  }
}

}  // namespace

Result<std::unique_ptr<Transport>> Transport::start(TransportOptions options, OnFrame on_frame,
                                                    OnPeer on_peer) {
  if (options.node_id.empty()) {
    return Error{Errc::invalid_argument, "transport: a node id is required"};
  }
  if (options.secret.empty()) {
    return Error{Errc::invalid_argument, "transport: a cluster secret is required"};
  }
  if (options.max_frame < 64) {
    return Error{Errc::invalid_argument, "transport: max frame must be at least 64 bytes"};
  }
  if (options.max_pending_handshakes == 0) {
    return Error{Errc::invalid_argument, "transport: max pending handshakes must be at least 1"};
  }
  auto impl =
      std::make_unique<TransportImpl>(std::move(options), std::move(on_frame), std::move(on_peer));
  if (Status st = impl->listen(); !st) {
    return st.error();
  }
  return std::unique_ptr<Transport>(std::move(impl));
}

}  // namespace ember::net
