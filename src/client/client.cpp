// SPDX-License-Identifier: Apache-2.0
#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
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

constexpr std::uint32_t kResumeFailed = 11;  // KickCode::resume_failed (ember/gate.hpp)

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
                                      : default_runtime().impl().next()),
        timer(io),
        attempt_timer(io) {}

  /// One connection to a gateway; a resumed session has had several. Callbacks hold theirs and
  /// do nothing once it is not the current one.
  struct Connection {
    std::unique_ptr<Wire> wire;
    std::string incoming;
    std::deque<std::string> queue;
    bool writing = false;
  };

  std::unique_ptr<Wire> make_wire(const Url& url) {
    if (url.tls && !tls) {
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
      return std::make_unique<WsWire<beast::ssl_stream<tcp::socket>>>(io, *tls);
    }
    if (url.websocket) {
      return std::make_unique<WsWire<tcp::socket>>(io);
    }
    if (url.tls) {
      return std::make_unique<TcpWire<asio::ssl::stream<tcp::socket>>>(io, *tls);
    }
    return std::make_unique<TcpWire<tcp::socket>>(io);
  }

  // --- on the I/O thread ------------------------------------------------------------------------
  void start(const Url& url) {
    auto c = std::make_shared<Connection>();
    c->wire = make_wire(url);
    conn = c;
    bool resuming = false;
    {
      std::lock_guard lock(mu);
      resuming = logged_in;
    }
    if (resuming) {
      // Bounded like a login: an address that never answers does not hold the resume.
      attempt_timer.expires_after(options.timeout);
      attempt_timer.async_wait([self = shared_from_this(), c](boost::system::error_code ec) {
        if (!ec && c == self->conn && !self->live_now()) {
          self->lost(c, Error{Errc::timeout, "a resume attempt got no Welcome in time"});
        }
      });
    }
    boost::system::error_code ec;
    tcp::socket& socket = c->wire->socket();
    const tcp::endpoint target(asio::ip::make_address(url.host, ec),
                               static_cast<std::uint16_t>(std::stoi(url.port)));
    if (ec) {
      lost(c, Error{Errc::invalid_argument, "'" + url.host + "' is not an IP address"});
      return;
    }
    socket.open(target.protocol(), ec);
    if (!ec && !options.local_address.empty()) {
      socket.set_option(asio::socket_base::reuse_address(true), ec);
      socket.bind(tcp::endpoint(asio::ip::make_address(options.local_address, ec), 0), ec);
    }
    if (ec) {
      lost(c, Error{Errc::io_error, "cannot open a socket: " + ec.message()});
      return;
    }
    socket.async_connect(target, [self = shared_from_this(), c, url](boost::system::error_code e) {
      if (e) {
        self->lost(c, Error{Errc::io_error, "cannot connect: " + e.message()});
        return;
      }
      c->wire->handshake(url, self->options.origin,
                         [self, c](boost::system::error_code he) { self->on_upgraded(c, he); });
    });
  }

  void on_upgraded(const std::shared_ptr<Connection>& c, boost::system::error_code ec) {
    if (c != conn) {
      return;
    }
    if (ec) {
      lost(c, Error{Errc::io_error, "handshake failed: " + ec.message()});
      return;
    }
    gate::ClientFrame frame;
    gate::Hello& hello = *frame.mutable_hello();
    hello.set_version(1);
    hello.set_token(options.token);
    hello.set_client(options.client_name);
    hello.set_resumable(options.resume);
    {
      std::lock_guard lock(mu);
      if (logged_in && !resume_token.empty()) {
        hello.set_resume_session(welcome.session_id);
        hello.set_resume_token(resume_token);
        hello.set_last_push_seq(last_push_seq);
      }
    }
    send_frame(c, frame.SerializeAsString());
    read_next(c);
  }

  void read_next(const std::shared_ptr<Connection>& c) {
    c->wire->read(c->incoming, [self = shared_from_this(), c](boost::system::error_code ec) {
      self->on_read(c, ec);
    });
  }

  void on_read(const std::shared_ptr<Connection>& c, boost::system::error_code ec) {
    if (c != conn) {
      return;
    }
    if (ec) {
      lost(c, Error{Errc::io_error, "the connection closed: " + ec.message()});
      return;
    }
    gate::ServerFrame frame;
    if (!frame.ParseFromString(c->incoming)) {
      lost(c, Error{Errc::io_error, "the gateway sent a frame that does not parse"});
      return;
    }
    handle(c, frame);
    if (c == conn) {
      read_next(c);
    }
  }

  void handle(const std::shared_ptr<Connection>& c, const gate::ServerFrame& frame) {
    std::unique_lock lock(mu);
    switch (frame.kind_case()) {
      case gate::ServerFrame::kWelcome: {
        const gate::Welcome& w = frame.welcome();
        resume_token = w.resume_token();
        welcome.resume_window = std::chrono::milliseconds(w.resume_window_ms());
        // Route ids are the gateway's: another gateway has others.
        welcome.routes = std::map<std::string, std::uint32_t>(w.routes().begin(), w.routes().end());
        named.clear();
        live = true;
        lost_at.reset();
        attempts = 0;
        if (w.resumed()) {
          ++resumed;
          // What is unanswered goes again, with its seq: answered once, whichever connection
          // it ran from.
          std::vector<std::string> frames;
          for (auto& [seq, request] : sent) {
            request.retry_due = false;  // it goes now
            frames.push_back(encode(seq, request.route, request.payload));
          }
          for (const auto& [route, payload] : later) {
            frames.push_back(encode(0, route, payload));
          }
          later.clear();
          lock.unlock();
          for (std::string& bytes : frames) {
            send_frame(c, std::move(bytes));
          }
          cv.notify_all();
          return;
        }
        welcome.session_id = w.session_id();
        welcome.uid = w.uid();
        welcome.heartbeat_ms = w.heartbeat_ms();
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
        if (r.status() == static_cast<std::uint32_t>(Errc::unavailable) && retry_later(r.seq())) {
          return;  // it did not run: it goes again, with its seq
        }
        sent.erase(r.seq());
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
          done(Error{static_cast<Errc>(r.status() <= static_cast<std::uint32_t>(last_errc)
                                           ? r.status()
                                           : static_cast<std::uint32_t>(Errc::internal)),
                     r.error()});
        }
        return;
      }
      case gate::ServerFrame::kPush: {
        const gate::Push& p = frame.push();
        if (p.seq() != 0) {
          if (p.seq() <= last_push_seq) {
            return;  // had it before the resume
          }
          last_push_seq = p.seq();
        }
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
        if (logged_in && !live && frame.kick().code() != kResumeFailed) {
          // A gateway that turned this resume attempt away (it drains, say) while the session
          // still waits elsewhere: the next URL is tried.
          return;
        }
        kicked = Kicked{frame.kick().code(), frame.kick().reason()};
        cv.notify_all();
        return;
      case gate::ServerFrame::kMoving: {
        moving = Moving{{frame.moving().urls().begin(), frame.moving().urls().end()},
                        std::chrono::milliseconds(frame.moving().within_ms())};
        moving_urls = moving->urls;
        const bool move_now = options.resume && !resume_token.empty() && !moving_urls.empty();
        cv.notify_all();
        lock.unlock();
        if (move_now) {
          // The session moves with its requests in flight: the gateway hands it over once
          // they are answered.
          lost(c, Error{Errc::io_error, "moving to another gateway"}, moving_urls.front());
        }
        return;
      }
      case gate::ServerFrame::kHeartbeat:
      case gate::ServerFrame::KIND_NOT_SET: return;
    }
  }

  /// A request frame, with the acknowledgement of what is answered. Under mu.
  std::string encode(std::uint32_t seq, const std::string& route, const std::string& payload) {
    gate::ClientFrame frame;
    gate::Request& r = *frame.mutable_request();
    r.set_seq(seq);
    auto it = welcome.routes.find(route);
    if (it != welcome.routes.end()) {
      r.set_route_id(it->second);
    } else {
      r.set_route(route);
      if (seq != 0) {
        named.emplace_back(route, seq);
        if (named.size() > 64) {
          named.erase(named.begin());
        }
      }
    }
    r.set_payload(payload);
    if (options.resume) {
      r.set_ack(pending.empty() ? next_seq : pending.begin()->first);
    }
    return frame.SerializeAsString();
  }

  /// A request answered `unavailable` (nothing could take it; it did not run) goes again after
  /// a pause, doubling from 25 ms to 1 s, while its time (Options::timeout from when it was
  /// made) lasts: a master/slave group between masters has one again within a lease TTL. Under
  /// `mu`; false when its time is up (the error is the answer).
  bool retry_later(std::uint32_t seq) {
    auto it = sent.find(seq);
    if (it == sent.end() || closed) {
      return false;
    }
    Sent& request = it->second;
    request.pause = request.pause == std::chrono::milliseconds(0)
                        ? std::chrono::milliseconds(25)
                        : std::min(request.pause * 2, std::chrono::milliseconds(1000));
    if (std::chrono::steady_clock::now() + request.pause >= request.give_up) {
      return false;
    }
    request.retry_due = true;
    ++retried;
    auto pause = std::make_shared<asio::steady_timer>(io, request.pause);
    pause->async_wait([self = shared_from_this(), pause, seq](boost::system::error_code) {
      std::string bytes;
      {
        std::lock_guard lock(self->mu);
        auto again = self->sent.find(seq);
        // Not live: a resume sends it, as it sends everything unanswered.
        if (self->closed || !self->live || again == self->sent.end() || !again->second.retry_due) {
          return;
        }
        again->second.retry_due = false;
        bytes = self->encode(seq, again->second.route, again->second.payload);
      }
      self->send_frame(self->conn, std::move(bytes));
    });
    return true;
  }

  void send_request(std::uint32_t seq, std::string route, std::string payload) {
    std::string bytes;
    {
      std::lock_guard lock(mu);
      if (closed) {
        return;
      }
      if (!live) {
        // Resuming: a request goes once the session is back (sent keeps it); a notification
        // waits here.
        if (seq == 0) {
          later.emplace_back(std::move(route), std::move(payload));
        }
        return;
      }
      bytes = encode(seq, route, payload);
    }
    send_frame(conn, std::move(bytes));
  }

  void send_frame(const std::shared_ptr<Connection>& c, std::string bytes) {
    if (!c || c != conn) {
      return;
    }
    c->queue.push_back(std::move(bytes));
    if (!c->writing) {
      write_next(c);
    }
  }

  void write_next(const std::shared_ptr<Connection>& c) {
    c->writing = true;
    c->wire->write(c->queue.front(), [self = shared_from_this(), c](boost::system::error_code ec) {
      c->writing = false;
      if (c != self->conn) {
        return;
      }
      if (ec) {
        self->lost(c, Error{Errc::io_error, "write failed: " + ec.message()});
        return;
      }
      c->queue.pop_front();
      if (!c->queue.empty()) {
        self->write_next(c);
      } else if (self->leaving) {
        self->fail(Error{Errc::cancelled, "closed by the client"});
      }
    });
  }

  /// The connection `c` is gone: resume the session elsewhere if it can be, or close.
  void lost(const std::shared_ptr<Connection>& c, Error why, std::string next_url = {}) {
    if (c != conn) {
      return;
    }
    boost::system::error_code ignored;
    c->wire->socket().close(ignored);
    conn.reset();
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu);
      live = false;
      const bool can = options.resume && !resume_token.empty() && !kicked && !leaving && !closed &&
                       welcome.resume_window.count() > 0;
      if (kicked) {
        why = Error{Errc::cancelled, kicked->reason};  // what the gateway said, not the close
      }
      if (can && !lost_at) {
        lost_at = now;
      }
      if (!can || now - *lost_at >= welcome.resume_window) {
        why_lost.reset();
      } else {
        why_lost = why;
      }
    }
    if (!why_lost) {
      fail(std::move(why));
      return;
    }
    schedule_resume(std::move(next_url));
  }

  void schedule_resume(std::string url) {
    if (url.empty()) {
      // The URLs a Moving frame named, then ours, in turn.
      std::vector<std::string> urls = moving_urls;
      urls.push_back(options.url);
      urls.insert(urls.end(), options.resume_urls.begin(), options.resume_urls.end());
      url = urls[attempts % urls.size()];
    }
    // At once, then backing off to a second: a gateway restarting takes a moment.
    const auto delay = attempts == 0
                           ? std::chrono::milliseconds(0)
                           : std::min(std::chrono::milliseconds(50 << std::min(attempts, 5)),
                                      std::chrono::milliseconds(1000));
    ++attempts;
    timer.expires_after(delay);
    timer.async_wait([self = shared_from_this(), url](boost::system::error_code ec) {
      if (ec || self->conn || self->closed_now()) {
        return;
      }
      Result<Url> parsed = parse_url(url);
      if (!parsed) {
        self->fail(parsed.error());
        return;
      }
      self->start(*parsed);
    });
  }

  bool closed_now() {
    std::lock_guard lock(mu);
    return closed;
  }
  bool live_now() {
    std::lock_guard lock(mu);
    return live;
  }

  void fail(Error why) {
    std::map<std::uint32_t, std::function<void(Result<std::string>)>> orphans;
    {
      std::lock_guard lock(mu);
      if (closed) {
        return;
      }
      closed = true;
      live = false;
      close_error = why;
      orphans.swap(pending);
      sent.clear();
      cv.notify_all();
    }
    timer.cancel();
    attempt_timer.cancel();
    if (conn) {
      boost::system::error_code ignored;
      conn->wire->socket().close(ignored);
      conn.reset();
    }
    for (auto& [seq, done] : orphans) {
      done(why);
    }
  }

  /// Leaves: Bye, then the socket closes once it is written (or at once when not connected).
  void leave() {
    if (closed_now()) {
      return;
    }
    leaving = true;
    bool connected_now = false;
    {
      std::lock_guard lock(mu);
      connected_now = live && conn != nullptr;
    }
    if (!connected_now) {
      fail(Error{Errc::cancelled, "closed by the client"});
      return;
    }
    gate::ClientFrame frame;
    frame.mutable_bye();
    send_frame(conn, frame.SerializeAsString());
    // Bounded: a gateway that does not read still lets the client close.
    timer.expires_after(std::chrono::milliseconds(500));
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) {
        self->fail(Error{Errc::cancelled, "closed by the client"});
      }
    });
  }

  // --- any thread -------------------------------------------------------------------------------
  void request(std::string_view route, std::string payload,
               std::function<void(Result<std::string>)> done) {
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
        sent.emplace(seq, Sent{std::string(route), payload,
                               std::chrono::steady_clock::now() + options.timeout});
      }
    }
    asio::post(io, [self = shared_from_this(), seq, route = std::string(route),
                    payload = std::move(payload)]() mutable {
      self->send_request(seq, std::move(route), std::move(payload));
    });
  }

  Options options;
  asio::io_context& io;
  std::unique_ptr<asio::ssl::context> tls;
  // I/O thread
  std::shared_ptr<Connection> conn;
  asio::steady_timer timer;
  asio::steady_timer attempt_timer;
  int attempts = 0;
  bool leaving = false;
  std::vector<std::string> moving_urls;
  std::optional<Error> why_lost;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool logged_in = false;
  bool live = false;  // the current connection has its Welcome
  bool closed = false;
  std::optional<Error> close_error;
  Welcome welcome;
  std::string resume_token;
  std::uint64_t last_push_seq = 0;
  std::uint64_t resumed = 0;
  std::optional<std::chrono::steady_clock::time_point> lost_at;
  std::optional<Kicked> kicked;
  std::optional<Moving> moving;
  std::deque<Pushed> pushes;
  std::uint32_t next_seq = 1;
  // Ordered: the lowest seq still pending is the acknowledgement a resumable client sends.
  std::map<std::uint32_t, std::function<void(Result<std::string>)>> pending;
  // The requests not answered yet: sent again after a resume, or after an `unavailable`.
  struct Sent {
    std::string route;
    std::string payload;
    std::chrono::steady_clock::time_point give_up;  // no retry after this
    std::chrono::milliseconds pause{0};             // before the last retry
    bool retry_due = false;                         // a retry waits for its pause
  };
  std::map<std::uint32_t, Sent> sent;
  std::uint64_t retried = 0;
  std::vector<std::pair<std::string, std::string>> later;    // notifications while resuming
  std::vector<std::pair<std::string, std::uint32_t>> named;  // routes sent by name, by seq
};

Result<std::unique_ptr<Client>> Client::connect(Options options) {
  Result<Url> url = parse_url(options.url);
  if (!url) {
    return url.error();
  }
  auto impl = std::make_shared<Impl>(std::move(options));
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

Welcome Client::welcome() const {
  std::lock_guard lock(impl_->mu);
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
  asio::post(impl_->io, [impl = impl_] {
    gate::ClientFrame frame;
    gate::Heartbeat& beat = *frame.mutable_heartbeat();
    {
      std::lock_guard lock(impl->mu);
      if (!impl->live) {
        return;  // resuming: there is nobody to tell yet
      }
      if (impl->options.resume) {
        beat.set_ack(impl->pending.empty() ? impl->next_seq : impl->pending.begin()->first);
        beat.set_push_seq(impl->last_push_seq);
      }
    }
    impl->send_frame(impl->conn, frame.SerializeAsString());
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
  asio::post(impl_->io, [impl = impl_] { impl->leave(); });
}

void Client::drop() {
  asio::post(impl_->io, [impl = impl_] {
    if (impl->conn) {
      impl->lost(impl->conn, Error{Errc::io_error, "the connection was dropped"});
    }
  });
}

Status Client::resume(std::string url) {
  std::uint64_t before = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->options.resume || impl_->resume_token.empty()) {
      return Error{Errc::bad_state,
                   "this session is not resumable (Options::resume, and a "
                   "gateway with a ResumeWindow)"};
    }
    if (impl_->closed) {
      return impl_->close_error.value_or(Error{Errc::bad_state, "closed"});
    }
    before = impl_->resumed;
  }
  asio::post(impl_->io, [impl = impl_, url = std::move(url)]() mutable {
    impl->attempts = 0;
    if (impl->conn) {
      impl->lost(impl->conn, Error{Errc::io_error, "resuming elsewhere"}, std::move(url));
    } else {
      impl->timer.cancel();
      impl->schedule_resume(std::move(url));
    }
  });
  std::unique_lock lock(impl_->mu);
  if (!impl_->cv.wait_for(lock, impl_->options.timeout,
                          [&] { return impl_->resumed > before || impl_->closed; })) {
    return Error{Errc::timeout,
                 "no resume within " + std::to_string(impl_->options.timeout.count()) + " ms"};
  }
  if (impl_->closed) {
    return impl_->close_error.value_or(Error{Errc::cancelled, "closed"});
  }
  return {};
}

std::uint64_t Client::resumes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->resumed;
}

std::uint64_t Client::retries() const {
  std::lock_guard lock(impl_->mu);
  return impl_->retried;
}

}  // namespace ember::client
