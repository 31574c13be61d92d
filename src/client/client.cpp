// SPDX-License-Identifier: Apache-2.0
#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <condition_variable>
#include <deque>
#include <ember/client.hpp>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>  // before Boost.Asio: g++ 12 in C++20 needs std::exchange declared first
#include <vector>

#include "ember/gate.pb.h"

namespace ember::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

struct Runtime::Impl {
  explicit Impl(int threads) {
    // OpenSSL first: its exit handler then runs after a static runtime's destructor has joined
    // the threads, so their per-thread OpenSSL state is released rather than left behind.
    OPENSSL_init_ssl(0, nullptr);
    for (int i = 0; i < std::max(1, threads); ++i) {
      contexts.push_back(std::make_unique<asio::io_context>(1));
      guards.emplace_back(asio::make_work_guard(*contexts.back()));
    }
    for (auto& io : contexts) {
      asio::io_context* ctx = io.get();
      workers.emplace_back([ctx] { ctx->run(); });
    }
  }
  ~Impl() {
    guards.clear();
    for (auto& io : contexts) {
      io->stop();
    }
    for (auto& t : workers) {
      t.join();
    }
  }
  asio::io_context& next() {
    std::lock_guard lock(mu);
    asio::io_context& io = *contexts[next_index];
    next_index = (next_index + 1) % contexts.size();
    return io;
  }

  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> workers;
  std::mutex mu;
  std::size_t next_index = 0;
};

Runtime::Runtime(int threads) : impl_(std::make_unique<Impl>(threads)) {}
Runtime::~Runtime() = default;

namespace {
Runtime& default_runtime() {
  static Runtime runtime(1);
  return runtime;
}

struct Url {
  bool websocket = true;
  bool tls = false;
  std::string host;
  std::string port;
  std::string path;
};

Result<Url> parse_url(const std::string& url) {
  Url out;
  const std::size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme == "ws" || scheme == "wss") {
    out.tls = scheme == "wss";
  } else if (scheme == "tcp" || scheme == "tls") {
    out.websocket = false;
    out.tls = scheme == "tls";
  } else {
    return Error{Errc::invalid_argument,
                 "expected ws://, wss://, tcp:// or tls://host:port, got '" + url + "'"};
  }
  const std::string rest = url.substr(scheme_end + 3);
  const std::size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  const std::size_t colon = authority.rfind(':');
  if (colon == std::string::npos) {
    return Error{Errc::invalid_argument, "the URL '" + url + "' has no port"};
  }
  out.host = authority.substr(0, colon);
  out.port = authority.substr(colon + 1);
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  return out;
}

/// How frames travel: WebSocket messages or length-prefixed TCP frames, with or without TLS.
/// Used on the client's I/O thread only.
class Wire {
 public:
  using Done = std::function<void(boost::system::error_code)>;
  virtual ~Wire() = default;
  virtual tcp::socket& socket() = 0;
  /// After the TCP connect: TLS and WebSocket handshakes, as the URL asks.
  virtual void handshake(const Url& url, const std::string& origin, Done done) = 0;
  /// One frame into `out`.
  virtual void read(std::string& out, Done done) = 0;
  virtual void write(const std::string& frame, Done done) = 0;
};

template <class Stream>
class WsWire final : public Wire {
 public:
  template <class... Args>
  explicit WsWire(Args&&... args) : ws_(std::forward<Args>(args)...) {}
  tcp::socket& socket() override { return beast::get_lowest_layer(ws_); }
  void handshake(const Url& url, const std::string& origin, Done done) override {
    auto upgrade = [this, url, origin, done] {
      ws_.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
        if (!origin.empty()) {
          req.set(beast::http::field::origin, origin);
        }
      }));
      ws_.async_handshake(url.host + ":" + url.port, url.path,
                          [this, done](boost::system::error_code ec) {
                            if (!ec) {
                              ws_.binary(true);
                            }
                            done(ec);
                          });
    };
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      upgrade();
    } else {
      ws_.next_layer().async_handshake(asio::ssl::stream_base::client,
                                       [upgrade, done](boost::system::error_code ec) {
                                         if (ec) {
                                           done(ec);
                                         } else {
                                           upgrade();
                                         }
                                       });
    }
  }
  void read(std::string& out, Done done) override {
    ws_.async_read(buffer_, [this, &out, done](boost::system::error_code ec, std::size_t) {
      if (!ec) {
        const auto data = buffer_.cdata();
        out.assign(static_cast<const char*>(data.data()), data.size());
        buffer_.consume(buffer_.size());
      }
      done(ec);
    });
  }
  void write(const std::string& frame, Done done) override {
    ws_.async_write(asio::buffer(frame),
                    [done](boost::system::error_code ec, std::size_t) { done(ec); });
  }

 private:
  websocket::stream<Stream> ws_;
  beast::flat_buffer buffer_;
};

template <class Stream>
class TcpWire final : public Wire {
 public:
  template <class... Args>
  explicit TcpWire(Args&&... args) : stream_(std::forward<Args>(args)...) {}
  tcp::socket& socket() override {
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      return stream_;
    } else {
      return stream_.next_layer();
    }
  }
  void handshake(const Url&, const std::string&, Done done) override {
    boost::system::error_code ignored;
    socket().set_option(tcp::no_delay(true), ignored);
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      done({});
    } else {
      stream_.async_handshake(asio::ssl::stream_base::client, std::move(done));
    }
  }
  void read(std::string& out, Done done) override {
    asio::async_read(stream_, asio::buffer(header_),
                     [this, &out, done](boost::system::error_code ec, std::size_t) {
                       if (ec) {
                         done(ec);
                         return;
                       }
                       const std::size_t size =
                           (std::size_t{header_[0]} << 24) | (std::size_t{header_[1]} << 16) |
                           (std::size_t{header_[2]} << 8) | std::size_t{header_[3]};
                       out.resize(size);
                       asio::async_read(stream_, asio::buffer(out),
                                        [done](boost::system::error_code body_ec, std::size_t) {
                                          done(body_ec);
                                        });
                     });
  }
  void write(const std::string& frame, Done done) override {
    const auto size = static_cast<std::uint32_t>(frame.size());
    out_header_ = {static_cast<std::uint8_t>(size >> 24), static_cast<std::uint8_t>(size >> 16),
                   static_cast<std::uint8_t>(size >> 8), static_cast<std::uint8_t>(size)};
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(out_header_), asio::buffer(frame)};
    asio::async_write(stream_, buffers,
                      [done](boost::system::error_code ec, std::size_t) { done(ec); });
  }

 private:
  Stream stream_;
  std::array<std::uint8_t, 4> header_{};
  std::array<std::uint8_t, 4> out_header_{};
};

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  explicit Impl(Options opts)
      : options(std::move(opts)),
        io(options.runtime != nullptr ? options.runtime->impl().next()
                                      : default_runtime().impl().next()) {}

  void make_wire(const Url& url) {
    if (url.tls) {
      tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
      if (options.ca_file.empty()) {
        tls->set_verify_mode(asio::ssl::verify_none);
      } else {
        boost::system::error_code ignored;
        tls->load_verify_file(options.ca_file, ignored);
        tls->set_verify_mode(asio::ssl::verify_peer);
      }
    }
    if (url.websocket && url.tls) {
      wire = std::make_unique<WsWire<beast::ssl_stream<tcp::socket>>>(io, *tls);
    } else if (url.websocket) {
      wire = std::make_unique<WsWire<tcp::socket>>(io);
    } else if (url.tls) {
      wire = std::make_unique<TcpWire<asio::ssl::stream<tcp::socket>>>(io, *tls);
    } else {
      wire = std::make_unique<TcpWire<tcp::socket>>(io);
    }
  }

  // --- on the I/O thread ------------------------------------------------------------------------
  void start(const Url& url) {
    boost::system::error_code ec;
    tcp::socket& socket = wire->socket();
    const tcp::endpoint target(asio::ip::make_address(url.host, ec),
                               static_cast<std::uint16_t>(std::stoi(url.port)));
    if (ec) {
      fail(Error{Errc::invalid_argument, "'" + url.host + "' is not an IP address"});
      return;
    }
    socket.open(target.protocol(), ec);
    if (!ec && !options.local_address.empty()) {
      socket.set_option(asio::socket_base::reuse_address(true), ec);
      socket.bind(tcp::endpoint(asio::ip::make_address(options.local_address, ec), 0), ec);
    }
    if (ec) {
      fail(Error{Errc::io_error, "cannot open a socket: " + ec.message()});
      return;
    }
    socket.async_connect(target, [self = shared_from_this(), url](boost::system::error_code cec) {
      if (cec) {
        self->fail(Error{Errc::io_error, "cannot connect: " + cec.message()});
        return;
      }
      self->wire->handshake(url, self->options.origin,
                            [self](boost::system::error_code hec) { self->on_upgraded(hec); });
    });
  }

  void on_upgraded(boost::system::error_code ec) {
    if (ec) {
      fail(Error{Errc::io_error, "handshake failed: " + ec.message()});
      return;
    }
    gate::ClientFrame frame;
    gate::Hello& hello = *frame.mutable_hello();
    hello.set_version(1);
    hello.set_token(options.token);
    hello.set_client(options.client_name);
    send_frame(frame.SerializeAsString());
    read_next();
  }

  void read_next() {
    wire->read(incoming,
               [self = shared_from_this()](boost::system::error_code ec) { self->on_read(ec); });
  }

  void on_read(boost::system::error_code ec) {
    if (ec) {
      fail(Error{Errc::io_error, "the connection closed: " + ec.message()});
      return;
    }
    gate::ServerFrame frame;
    const bool parsed = frame.ParseFromString(incoming);
    if (!parsed) {
      fail(Error{Errc::io_error, "the gateway sent a frame that does not parse"});
      return;
    }
    handle(frame);
    read_next();
  }

  void handle(const gate::ServerFrame& frame) {
    std::unique_lock lock(mu);
    switch (frame.kind_case()) {
      case gate::ServerFrame::kWelcome: {
        const gate::Welcome& w = frame.welcome();
        welcome.session_id = w.session_id();
        welcome.uid = w.uid();
        welcome.heartbeat_ms = w.heartbeat_ms();
        welcome.routes = std::map<std::string, std::uint32_t>(w.routes().begin(), w.routes().end());
        logged_in = true;
        cv.notify_all();
        return;
      }
      case gate::ServerFrame::kResponse: {
        const gate::Response& r = frame.response();
        if (r.route_id() != 0) {
          // The gateway gave the route we named an id: use it from now on.
          for (auto& [name, pending_seq] : named) {
            if (pending_seq == r.seq()) {
              welcome.routes[name] = r.route_id();
            }
          }
        }
        auto it = pending.find(r.seq());
        if (it == pending.end()) {
          return;
        }
        auto done = std::move(it->second);
        pending.erase(it);
        lock.unlock();
        if (r.status() == 0) {
          done(r.payload());
        } else {
          done(Error{static_cast<Errc>(r.status() <= static_cast<std::uint32_t>(Errc::internal)
                                           ? r.status()
                                           : static_cast<std::uint32_t>(Errc::internal)),
                     r.error()});
        }
        return;
      }
      case gate::ServerFrame::kPush: {
        const gate::Push& p = frame.push();
        std::string route = p.route();
        if (route.empty()) {
          for (const auto& [name, id] : welcome.routes) {
            if (id == p.route_id()) {
              route = name;
            }
          }
        }
        if (options.on_push) {
          lock.unlock();
          options.on_push(Pushed{std::move(route), p.payload()});
          return;
        }
        pushes.push_back(Pushed{std::move(route), p.payload()});
        cv.notify_all();
        return;
      }
      case gate::ServerFrame::kKick:
        kicked = Kicked{frame.kick().code(), frame.kick().reason()};
        cv.notify_all();
        return;
      case gate::ServerFrame::kMoving:
        moving = Moving{{frame.moving().urls().begin(), frame.moving().urls().end()},
                        std::chrono::milliseconds(frame.moving().within_ms())};
        cv.notify_all();
        return;
      case gate::ServerFrame::kHeartbeat:
      case gate::ServerFrame::KIND_NOT_SET: return;
    }
  }

  void send_frame(std::string bytes) {
    queue.push_back(std::move(bytes));
    if (!writing) {
      write_next();
    }
  }

  void write_next() {
    writing = true;
    wire->write(queue.front(), [self = shared_from_this()](boost::system::error_code ec) {
      self->writing = false;
      if (ec) {
        self->fail(Error{Errc::io_error, "write failed: " + ec.message()});
        return;
      }
      self->queue.pop_front();
      if (!self->queue.empty()) {
        self->write_next();
      }
    });
  }

  void fail(Error why) {
    std::unordered_map<std::uint32_t, std::function<void(Result<std::string>)>> orphans;
    {
      std::lock_guard lock(mu);
      if (closed) {
        return;
      }
      closed = true;
      close_error = why;
      orphans.swap(pending);
      cv.notify_all();
    }
    boost::system::error_code ignored;
    wire->socket().close(ignored);
    for (auto& [seq, done] : orphans) {
      done(why);
    }
  }

  // --- any thread -------------------------------------------------------------------------------
  void request(std::string_view route, std::string payload,
               std::function<void(Result<std::string>)> done) {
    gate::ClientFrame frame;
    gate::Request& r = *frame.mutable_request();
    std::uint32_t seq = 0;
    {
      std::lock_guard lock(mu);
      if (closed) {
        Error why = close_error.value_or(Error{Errc::bad_state, "closed"});
        if (done) {
          done(why);
        }
        return;
      }
      if (done) {
        seq = next_seq++;
        if (next_seq == 0) {
          next_seq = 1;
        }
        pending.emplace(seq, std::move(done));
      }
      auto it = welcome.routes.find(std::string(route));
      if (it != welcome.routes.end()) {
        r.set_route_id(it->second);
      } else {
        r.set_route(std::string(route));
        named.emplace_back(std::string(route), seq);
        if (named.size() > 64) {
          named.erase(named.begin());
        }
      }
    }
    r.set_seq(seq);
    r.set_payload(std::move(payload));
    asio::post(io, [self = shared_from_this(), bytes = frame.SerializeAsString()]() mutable {
      self->send_frame(std::move(bytes));
    });
  }

  Options options;
  asio::io_context& io;
  std::unique_ptr<asio::ssl::context> tls;
  std::unique_ptr<Wire> wire;
  std::string incoming;
  std::deque<std::string> queue;  // I/O thread
  bool writing = false;           // I/O thread

  mutable std::mutex mu;
  std::condition_variable cv;
  bool logged_in = false;
  bool closed = false;
  std::optional<Error> close_error;
  Welcome welcome;
  std::optional<Kicked> kicked;
  std::optional<Moving> moving;
  std::deque<Pushed> pushes;
  std::uint32_t next_seq = 1;
  std::unordered_map<std::uint32_t, std::function<void(Result<std::string>)>> pending;
  std::vector<std::pair<std::string, std::uint32_t>> named;  // routes sent by name, by seq
};

Result<std::unique_ptr<Client>> Client::connect(Options options) {
  Result<Url> url = parse_url(options.url);
  if (!url) {
    return url.error();
  }
  auto impl = std::make_shared<Impl>(std::move(options));
  impl->make_wire(*url);
  asio::post(impl->io, [impl, u = *url] { impl->start(u); });
  std::unique_lock lock(impl->mu);
  const bool done = impl->cv.wait_for(lock, impl->options.timeout,
                                      [&] { return impl->logged_in || impl->closed; });
  if (impl->logged_in) {
    return std::unique_ptr<Client>(new Client(impl));
  }
  std::optional<Kicked> kicked = impl->kicked;
  std::optional<Error> why = impl->close_error;
  lock.unlock();
  if (!done) {
    asio::post(impl->io, [impl] { impl->fail(Error{Errc::timeout, "login timed out"}); });
    return Error{Errc::timeout,
                 "no Welcome within " + std::to_string(impl->options.timeout.count()) + " ms"};
  }
  if (kicked) {
    return Error{Errc::cancelled, kicked->reason};
  }
  return why.value_or(Error{Errc::io_error, "the connection closed"});
}

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  close();
}

const Welcome& Client::welcome() const noexcept {
  return impl_->welcome;
}

Result<std::string> Client::call_bytes(std::string_view route, std::string payload) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<std::string>> result;
  };
  auto waiter = std::make_shared<Waiter>();
  impl_->request(route, std::move(payload), [waiter](Result<std::string> r) {
    std::lock_guard lock(waiter->mu);
    waiter->result.emplace(std::move(r));
    waiter->cv.notify_all();
  });
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, impl_->options.timeout,
                           [&] { return waiter->result.has_value(); })) {
    return Error{Errc::timeout, "no response to " + std::string(route) + " within " +
                                    std::to_string(impl_->options.timeout.count()) + " ms"};
  }
  return std::move(*waiter->result);
}

void Client::async_call(std::string_view route, std::string payload,
                        std::function<void(Result<std::string>)> done) {
  impl_->request(route, std::move(payload), std::move(done));
}

Status Client::notify(std::string_view route, std::string payload) {
  if (!connected()) {
    return Error{Errc::bad_state, "the client is not connected"};
  }
  impl_->request(route, std::move(payload), nullptr);
  return {};
}

Status Client::heartbeat() {
  if (!connected()) {
    return Error{Errc::bad_state, "the client is not connected"};
  }
  gate::ClientFrame frame;
  frame.mutable_heartbeat()->set_client_time_ms(0);
  asio::post(impl_->io, [impl = impl_, bytes = frame.SerializeAsString()]() mutable {
    impl->send_frame(std::move(bytes));
  });
  return {};
}

std::optional<Pushed> Client::next_push(std::chrono::milliseconds wait) {
  std::unique_lock lock(impl_->mu);
  if (!impl_->cv.wait_for(lock, wait, [&] { return !impl_->pushes.empty(); })) {
    return std::nullopt;
  }
  Pushed p = std::move(impl_->pushes.front());
  impl_->pushes.pop_front();
  return p;
}

std::optional<Moving> Client::moving() const {
  std::lock_guard lock(impl_->mu);
  return impl_->moving;
}

std::optional<Kicked> Client::kicked() const {
  std::lock_guard lock(impl_->mu);
  return impl_->kicked;
}

bool Client::wait_closed(std::chrono::milliseconds wait) {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, wait, [&] { return impl_->closed; });
}

bool Client::connected() const {
  std::lock_guard lock(impl_->mu);
  return !impl_->closed;
}

void Client::close() {
  asio::post(impl_->io, [impl = impl_] {
    impl->fail(Error{Errc::cancelled, "closed by the client"});
  });
}

}  // namespace ember::client
