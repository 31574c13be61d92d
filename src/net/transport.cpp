// SPDX-License-Identifier: Apache-2.0
#include "net/transport.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <deque>
#include <ember/log.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/connection.hpp"
#include "net/frame_codec.hpp"
#include "net/log_text.hpp"
#include "net/reject.hpp"
#include "net/reject_log.hpp"

namespace ember::net {

namespace {

using namespace detail;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kChunkReserve = 64 * 1024;

struct Peer {
  std::string address;
  std::shared_ptr<Connection> active;  // the connection frames to this node use
  std::deque<Chunk> pending;           // waiting for `active` to open
  int failures = 0;
};

class TransportImpl final : public Transport, public ConnectionOwner {
 public:
  TransportImpl(TransportOptions options, OnFrame on_frame, OnPeer on_peer)
      : ConnectionOwner(std::move(options), std::move(on_frame)),
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
        return Error{it->second.refused ? Errc::node_unreachable : Errc::unavailable,
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
        if (written == payload.size() + kLengthPrefix) {
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
    if (static_cast<std::size_t>(n) == payload.size() + kLengthPrefix) {
      frames_out.fetch_add(1, std::memory_order_relaxed);
      bytes_out.fetch_add(payload.size() + kLengthPrefix, std::memory_order_relaxed);
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
  void drop_direct(const Connection* conn) override {
    std::lock_guard lock(stage_mu_);
    auto it = direct_.find(conn->peer());
    if (it != direct_.end() && it->second.conn.get() == conn) {
      direct_.erase(it);
    }
  }
  /// `conn` wrote everything it had: direct writes may resume unless more is staged.
  void write_idle(const std::shared_ptr<Connection>& conn) override {
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

  void recycle(std::vector<Chunk>& written) override {
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
      failed(node, "no address for node " + node, false, true);
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
  void refused(const std::string& ip, Reject reason, const std::string& why) override {
    // The reason first: whoever sees the total sees every reason that makes it up.
    rejected_by[reason_index(reason)].fetch_add(1);
    rejected.fetch_add(1);
    system_log().debug("transport {}: refused a connection from {}: {}", options.node_id, ip, why);
    reject_log_.add(ip, reason, why);
  }

  void opened(const std::shared_ptr<Connection>& conn) override {
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

  void closed(const std::shared_ptr<Connection>& conn, const std::string& why, bool was_open,
              bool refused) override {
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
    failed(conn->peer(), why, refused, !was_open);
  }

  [[nodiscard]] std::string address_of(const std::string& node) const override {
    auto it = peers_.find(node);
    return it == peers_.end() ? std::string() : it->second.address;
  }

  void failed(const std::string& node, const std::string& why, bool refused, bool sent_nothing) {
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
      down_until_[node] = Down{Clock::now() + backoff, why, refused};
      nodes_down_.store(down_until_.size(), std::memory_order_release);
    }
    system_log().warn("transport {}: node {} unreachable: {}", options.node_id, node, why);
    if (on_peer) {
      on_peer(node, false, PeerLoss{why, refused, sent_nothing});
    }
  }

  OnPeer on_peer;
  std::atomic<std::uint64_t> rejected{0}, connections{0}, accept_failures{0};
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
    bool refused = false;
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
