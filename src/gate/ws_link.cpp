// SPDX-License-Identifier: Apache-2.0
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <filesystem>
#include <mutex>
#include <utility>  // before Boost.Asio (see io_pool.hpp)

#include "core/node_impl.hpp"
#include "gate/gate_core.hpp"
#include "gate/io_pool.hpp"
#include "gate/link.hpp"
#include "gate/links.hpp"
#include "gate/session.hpp"

namespace ember::gate {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 8 * 1024;

std::string_view mime_type(std::string_view path) {
  const auto dot = path.rfind('.');
  const std::string_view ext = dot == std::string_view::npos ? "" : path.substr(dot + 1);
  if (ext == "html" || ext == "htm")
    return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs")
    return "text/javascript; charset=utf-8";
  if (ext == "css")
    return "text/css; charset=utf-8";
  if (ext == "json")
    return "application/json";
  if (ext == "png")
    return "image/png";
  if (ext == "svg")
    return "image/svg+xml";
  if (ext == "ico")
    return "image/x-icon";
  if (ext == "wasm")
    return "application/wasm";
  return "application/octet-stream";
}

/// The file under `root` that an URL path names, or "" when it names none or tries to leave it.
std::string static_file(const std::string& root, std::string_view target) {
  std::string_view path = target.substr(0, target.find_first_of("?#"));
  if (path.empty() || path.front() != '/' || path.find("..") != std::string_view::npos ||
      path.find('\\') != std::string_view::npos || path.find('\0') != std::string_view::npos) {
    return {};
  }
  std::string file = root + std::string(path);
  if (file.back() == '/') {
    file += "index.html";
  }
  std::error_code ec;
  return std::filesystem::is_regular_file(file, ec) ? file : std::string{};
}

/// The read buffer as Beast's read sees it. Beast prepares its read size hint (up to 1,536
/// bytes) in the caller's buffer before any byte arrives, so every idle session would hold that
/// much while it waits. Reporting room for one byte while the buffer is empty keeps the wait free:
/// the first byte of a message is read when it comes, the rest sized from its frame header.
class LazyReadBuffer {
 public:
  using const_buffers_type = beast::flat_buffer::const_buffers_type;
  using mutable_buffers_type = beast::flat_buffer::mutable_buffers_type;

  explicit LazyReadBuffer(beast::flat_buffer& buffer) noexcept : buffer_(buffer) {}

  [[nodiscard]] std::size_t size() const noexcept { return buffer_.size(); }
  [[nodiscard]] std::size_t max_size() const noexcept {
    return buffer_.size() == 0 ? 1 : buffer_.max_size();
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return buffer_.capacity(); }
  [[nodiscard]] const_buffers_type data() const noexcept { return buffer_.data(); }
  [[nodiscard]] const_buffers_type cdata() const noexcept { return buffer_.cdata(); }
  mutable_buffers_type data() noexcept { return buffer_.data(); }
  mutable_buffers_type prepare(std::size_t n) { return buffer_.prepare(n); }
  void commit(std::size_t n) noexcept { buffer_.commit(n); }
  void consume(std::size_t n) noexcept { buffer_.consume(n); }

 private:
  beast::flat_buffer& buffer_;
};

/// One accepted socket: HTTP until it upgrades, then a WebSocket carrying one session.
/// `NextLayer` is the socket itself, or a TLS stream over it.
template <class NextLayer>
class WsConnection final : public Link,
                           public std::enable_shared_from_this<WsConnection<NextLayer>> {
  static constexpr bool kTls = !std::is_same_v<NextLayer, ClientSocket>;

 public:
  using std::enable_shared_from_this<WsConnection<NextLayer>>::shared_from_this;

  template <class... Args>
  WsConnection(GateCore& gate, IoPool& pool, std::size_t index, Args&&... stream_args)
      : gate_(gate), pool_(pool), index_(index), ws_(std::forward<Args>(stream_args)...) {}
  // Counted by the acceptor when it handed the socket over.
  ~WsConnection() override { gate_.connections.fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    session_ = std::make_shared<Session>(gate_, *this, gate_.next_session_id());
    session_->io_index = index_;
    pool_.watch(index_, session_.get());
    session_->on_open(std::chrono::steady_clock::now());  // the deadline covers TLS and HTTP
    if constexpr (kTls) {
      ws_.next_layer().async_handshake(asio::ssl::stream_base::server,
                                       [self = shared_from_this()](beast::error_code ec) {
                                         if (ec) {
                                           self->finish();
                                           return;
                                         }
                                         self->read_http();
                                       });
    } else {
      read_http();
    }
  }

  // --- Link -------------------------------------------------------------------------------------
  void send(std::shared_ptr<const std::string> frame) override {
    if (!upgraded_ || finished_) {
      return;
    }
    queued_bytes_ += frame->size();
    queue_.push_back(std::move(frame));
    if (!writing_) {
      write_next();
    }
  }
  void close(std::string_view reason) override {
    if (finished_ || closing_) {
      return;
    }
    closing_ = true;
    close_reason_ = std::string(reason.substr(0, 120));  // a close frame holds 123 bytes
    if (!upgraded_) {
      abort();
    } else if (!writing_) {
      close_websocket();
    }
  }
  void abort() override {
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);  // pending operations end with an error
    finish();
  }
  [[nodiscard]] std::size_t queued_bytes() const noexcept override { return queued_bytes_; }
  asio::io_context& io() noexcept override { return pool_.context(index_); }
  [[nodiscard]] std::string remote() const override {
    return peer_address(beast::get_lowest_layer(ws_));
  }

 private:
  void read_http() {
    parser_ = std::make_unique<http::request_parser<http::empty_body>>();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(0);
    http::async_read(
        ws_.next_layer(), buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_http(ec); });
  }

  void on_http(beast::error_code ec) {
    if (ec || finished_) {
      finish();
      return;
    }
    const auto& request = parser_->get();
    if (websocket::is_upgrade(request)) {
      const std::string_view target(request.target().data(), request.target().size());
      if (target.substr(0, target.find('?')) != gate_.config().websocket_path) {
        respond(http::status::not_found, "no WebSocket endpoint here\n");
        return;
      }
      if (!origin_allowed(request)) {
        respond(http::status::forbidden, "origin not allowed\n");
        return;
      }
      ws_.read_message_max(gate_.config().max_frame);
      ws_.auto_fragment(false);
      ws_.set_option(websocket::stream_base::decorator(
          [](websocket::response_type& res) { res.set(http::field::server, "ember-gate"); }));
      ws_.async_accept(request, [self = shared_from_this()](beast::error_code accept_ec) {
        self->on_upgraded(accept_ec);
      });
      return;
    }
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      respond(http::status::method_not_allowed, "GET only\n");
      return;
    }
    serve_file(request);
  }

  template <class Request>
  bool origin_allowed(const Request& request) const {
    const auto& allowed = gate_.config().allowed_origins;
    if (allowed.empty()) {
      return true;
    }
    // The check keeps other sites' pages from using a player's browser; a program that is not
    // a browser sends no Origin (and could send any), so none passes.
    auto it = request.find(http::field::origin);
    if (it == request.end()) {
      return true;
    }
    const std::string_view value(it->value().data(), it->value().size());
    return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
  }

  template <class Request>
  void serve_file(const Request& request) {
    const std::string& root = gate_.config().static_dir;
    const std::string file =
        root.empty()
            ? std::string{}
            : static_file(root, std::string_view(request.target().data(), request.target().size()));
    if (file.empty()) {
      respond(http::status::not_found, "not found\n");
      return;
    }
    beast::error_code ec;
    http::file_body::value_type body;
    body.open(file.c_str(), beast::file_mode::scan, ec);
    if (ec) {
      respond(http::status::not_found, "not found\n");
      return;
    }
    auto response = std::make_shared<http::response<http::file_body>>(
        std::piecewise_construct, std::make_tuple(std::move(body)),
        std::make_tuple(http::status::ok, request.version()));
    response->set(http::field::server, "ember-gate");
    const std::string_view type = mime_type(file);
    response->set(http::field::content_type, beast::string_view(type.data(), type.size()));
    response->prepare_payload();
    response->keep_alive(false);
    http::async_write(
        ws_.next_layer(), *response,
        [self = shared_from_this(), response](beast::error_code, std::size_t) { self->abort(); });
  }

  void respond(http::status status, std::string_view text) {
    auto response = std::make_shared<http::response<http::string_body>>(status, 11);
    response->set(http::field::server, "ember-gate");
    response->set(http::field::content_type, "text/plain; charset=utf-8");
    response->body() = std::string(text);
    response->prepare_payload();
    response->keep_alive(false);
    http::async_write(
        ws_.next_layer(), *response,
        [self = shared_from_this(), response](beast::error_code, std::size_t) { self->abort(); });
  }

  void on_upgraded(beast::error_code ec) {
    if (ec || finished_) {
      finish();
      return;
    }
    upgraded_ = true;
    parser_.reset();
    buffer_.consume(buffer_.size());
    buffer_.shrink_to_fit();
    ws_.binary(true);
    read_next();
  }

  void read_next() {
    ws_.async_read(read_buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    // finished_: a read that completed while the connection was being closed for another reason
    // (a write failed, the session was kicked) still reaches here, with its data.
    if (finished_) {
      return;
    }
    if (ec) {
      if (ec == websocket::error::message_too_big) {
        // Beast answers it with a close frame (1009) itself; writing a kick now would race it.
        gate_.kicks.fetch_add(1, std::memory_order_relaxed);
        gate_.count_limit(GateCore::Limit::frame_size);
        session_->end("a frame over MaxFrameBytes");
      }
      finish();
      return;
    }
    const auto data = buffer_.cdata();
    // Held: the frame may close the link (a slow reader), which drops session_.
    const std::shared_ptr<Session> session = session_;
    session->on_frame(std::string_view(static_cast<const char*>(data.data()), data.size()),
                      std::chrono::steady_clock::now());
    buffer_.consume(buffer_.size());
    buffer_.shrink_to_fit();  // an idle session keeps no buffer (LazyReadBuffer)
    if (!finished_) {
      read_next();
    }
  }

  void write_next() {
    writing_ = true;
    ws_.async_write(
        asio::buffer(*queue_.front()),
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_written(ec); });
  }

  void on_written(beast::error_code ec) {
    writing_ = false;
    if (ec || finished_) {
      finish();
      return;
    }
    queued_bytes_ -= queue_.front()->size();
    queue_.erase(queue_.begin());  // short queues: cheaper than a deque's blocks
    if (queue_.empty() && queue_.capacity() > 8) {
      queue_ = {};
    }
    if (!queue_.empty()) {
      write_next();
    } else if (closing_) {
      close_websocket();
    }
  }

  void close_websocket() {
    ws_.async_close(websocket::close_reason(websocket::close_code::normal, close_reason_),
                    [self = shared_from_this()](beast::error_code) { self->abort(); });
  }

  void finish() {
    if (finished_) {
      return;
    }
    finished_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
    if (session_) {
      pool_.forget(index_, session_.get());
      session_->on_link_closed();
      session_.reset();
    }
  }

  GateCore& gate_;
  IoPool& pool_;
  const std::size_t index_;
  websocket::stream<NextLayer, /*deflateSupported=*/false> ws_;
  beast::flat_buffer buffer_;
  LazyReadBuffer read_buffer_{buffer_};
  // Only while the connection speaks HTTP: an idle WebSocket keeps nothing of it.
  std::unique_ptr<http::request_parser<http::empty_body>> parser_;
  std::shared_ptr<Session> session_;
  // A vector, not a deque: an empty deque still holds a 512-byte block, on every idle session.
  std::vector<std::shared_ptr<const std::string>> queue_;
  std::size_t queued_bytes_ = 0;
  std::string close_reason_;
  bool upgraded_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

}  // namespace

void start_websocket(GateCore& gate, IoPool& pool, std::size_t index, ClientSocket socket,
                     asio::ssl::context* tls) {
  if (tls != nullptr) {
    std::make_shared<WsConnection<beast::ssl_stream<ClientSocket>>>(gate, pool, index,
                                                                    std::move(socket), *tls)
        ->start();
  } else {
    std::make_shared<WsConnection<ClientSocket>>(gate, pool, index, std::move(socket))->start();
  }
}

}  // namespace ember::gate
