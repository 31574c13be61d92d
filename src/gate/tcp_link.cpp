// SPDX-License-Identifier: Apache-2.0
// Clients over plain TCP (or TLS): frames of a 4-byte big-endian length and that many bytes.
#include <array>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <utility>  // before Boost.Asio (see io_pool.hpp)
#include <vector>

#include "gate/gate_core.hpp"
#include "gate/io_pool.hpp"
#include "gate/link.hpp"
#include "gate/links.hpp"
#include "gate/session.hpp"

namespace ember::gate {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// The socket under a plain or TLS stream.
template <class Stream>
auto& lowest(Stream& stream) {
  if constexpr (std::is_same_v<std::remove_const_t<Stream>, ClientSocket>) {
    return stream;
  } else {
    return stream.next_layer();
  }
}

template <class Stream>
class TcpConnection final : public Link,
                            public std::enable_shared_from_this<TcpConnection<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, ClientSocket>;

 public:
  using std::enable_shared_from_this<TcpConnection<Stream>>::shared_from_this;

  template <class... Args>
  TcpConnection(GateCore& gate, IoPool& pool, std::size_t index, Args&&... stream_args)
      : gate_(gate), pool_(pool), index_(index), stream_(std::forward<Args>(stream_args)...) {
    boost::system::error_code ec;
    lowest(stream_).set_option(tcp::no_delay(true), ec);
  }
  ~TcpConnection() override { gate_.connections.fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    session_ = std::make_shared<Session>(gate_, *this, gate_.next_session_id());
    session_->io_index = index_;
    pool_.watch(index_, session_.get());
    session_->on_open(std::chrono::steady_clock::now());
    if constexpr (kTls) {
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = shared_from_this()](boost::system::error_code ec) {
                                if (ec) {
                                  self->finish();
                                  return;
                                }
                                self->ready_ = true;
                                self->read_header();
                              });
    } else {
      ready_ = true;
      read_header();
    }
  }

  // --- Link -------------------------------------------------------------------------------------
  void send(std::shared_ptr<const std::string> frame) override {
    if (!ready_ || finished_) {
      return;
    }
    Outgoing out;
    const auto size = static_cast<std::uint32_t>(frame->size());
    out.header = {static_cast<std::uint8_t>(size >> 24), static_cast<std::uint8_t>(size >> 16),
                  static_cast<std::uint8_t>(size >> 8), static_cast<std::uint8_t>(size)};
    out.frame = std::move(frame);
    queued_bytes_ += out.frame->size() + 4;
    queue_.push_back(std::move(out));
    if (!writing_) {
      write_next();
    }
  }
  void close(std::string_view) override {
    if (finished_ || closing_) {
      return;
    }
    closing_ = true;
    if (!ready_) {
      abort();
    } else if (!writing_) {
      shut_down();
    }
  }
  void abort() override {
    boost::system::error_code ignored;
    lowest(stream_).close(ignored);
    finish();
  }
  [[nodiscard]] std::size_t queued_bytes() const noexcept override { return queued_bytes_; }
  asio::io_context& io() noexcept override { return pool_.context(index_); }
  [[nodiscard]] std::string remote() const override { return peer_address(lowest(stream_)); }

 private:
  struct Outgoing {
    std::array<std::uint8_t, 4> header{};
    std::shared_ptr<const std::string> frame;
  };

  void read_header() {
    asio::async_read(stream_, asio::buffer(header_),
                     [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                       self->on_header(ec);
                     });
  }

  void on_header(boost::system::error_code ec) {
    if (ec || finished_) {
      finish();
      return;
    }
    const std::size_t size = (std::size_t{header_[0]} << 24) | (std::size_t{header_[1]} << 16) |
                             (std::size_t{header_[2]} << 8) | std::size_t{header_[3]};
    if (size > gate_.config().max_frame) {
      // Refused from its length alone: nothing of it is read, let alone buffered.
      gate_.count_limit(GateCore::Limit::frame_size);
      const std::shared_ptr<Session> session = session_;
      session->kick_now(KickCode::too_large, "a frame of " + std::to_string(size) +
                                                 " bytes; at most " +
                                                 std::to_string(gate_.config().max_frame));
      return;
    }
    body_.resize(size);
    asio::async_read(stream_, asio::buffer(body_),
                     [self = shared_from_this()](boost::system::error_code body_ec, std::size_t) {
                       self->on_body(body_ec);
                     });
  }

  void on_body(boost::system::error_code ec) {
    if (ec || finished_) {
      finish();
      return;
    }
    const std::shared_ptr<Session> session = session_;  // see ws_link.cpp
    session->on_frame(body_, std::chrono::steady_clock::now());
    if (body_.capacity() > 4096) {
      body_ = std::string();  // an idle session keeps no large buffer
    }
    if (!finished_ && !closing_) {
      read_header();
    }
  }

  void write_next() {
    writing_ = true;
    const Outgoing& out = queue_.front();
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(out.header),
                                                    asio::buffer(*out.frame)};
    asio::async_write(stream_, buffers,
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(boost::system::error_code ec) {
    writing_ = false;
    if (ec || finished_) {
      finish();
      return;
    }
    queued_bytes_ -= queue_.front().frame->size() + 4;
    queue_.erase(queue_.begin());
    if (queue_.empty() && queue_.capacity() > 8) {
      queue_ = {};
    }
    if (!queue_.empty()) {
      write_next();
    } else if (closing_) {
      shut_down();
    }
  }

  void shut_down() {
    if constexpr (kTls) {
      stream_.async_shutdown(
          [self = shared_from_this()](boost::system::error_code) { self->abort(); });
    } else {
      boost::system::error_code ignored;
      stream_.shutdown(ClientSocket::shutdown_send, ignored);
      abort();
    }
  }

  void finish() {
    if (finished_) {
      return;
    }
    finished_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    boost::system::error_code ignored;
    lowest(stream_).close(ignored);
    if (session_) {
      pool_.forget(index_, session_.get());
      session_->on_link_closed();
      session_.reset();
    }
  }

  GateCore& gate_;
  IoPool& pool_;
  const std::size_t index_;
  Stream stream_;
  std::array<std::uint8_t, 4> header_{};
  std::string body_;
  std::shared_ptr<Session> session_;
  std::vector<Outgoing> queue_;  // not a deque: see ws_link.cpp
  std::size_t queued_bytes_ = 0;
  bool ready_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

}  // namespace

void start_tcp(GateCore& gate, IoPool& pool, std::size_t index, ClientSocket socket,
               asio::ssl::context* tls) {
  if (tls != nullptr) {
    std::make_shared<TcpConnection<asio::ssl::stream<ClientSocket>>>(gate, pool, index,
                                                                     std::move(socket), *tls)
        ->start();
  } else {
    std::make_shared<TcpConnection<ClientSocket>>(gate, pool, index, std::move(socket))->start();
  }
}

std::string peer_address(const ClientSocket& socket) {
  boost::system::error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  return ec ? std::string("?") : peer.address().to_string() + ":" + std::to_string(peer.port());
}

Result<std::shared_ptr<asio::ssl::context>> make_tls_context(const std::string& cert_file,
                                                             const std::string& key_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  boost::system::error_code ec;
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use,
                       ec);
  context->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    return Error{Errc::invalid_argument,
                 "GateConf.TlsConf.CertFile: cannot use '" + cert_file + "': " + ec.message()};
  }
  context->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) {
    return Error{Errc::invalid_argument,
                 "GateConf.TlsConf.KeyFile: cannot use '" + key_file + "': " + ec.message()};
  }
  return context;
}

}  // namespace ember::gate
