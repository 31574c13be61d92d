// SPDX-License-Identifier: Apache-2.0
#include "admin/http_listener.hpp"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <list>
#include <thread>
#include <utility>  // before Boost.Asio: g++ 12 in C++20 needs std::exchange declared first

namespace ember::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// An operator's browser, a scraper or two and the probes need a handful of connections. Beyond
// the cap the oldest connection is closed for the new one, so a stranger who opens many and
// sends nothing cannot lock the probes out; the read timeout frees them anyway.
constexpr std::size_t kMaxConnections = 128;
constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
constexpr std::uint64_t kMaxBodyBytes = 64 * 1024;
constexpr auto kReadTimeout = std::chrono::seconds(10);
// An answer gets its own deadline: the read's may have run out while the request waited for the
// request thread.
constexpr auto kWriteTimeout = std::chrono::seconds(10);

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

ops::Params parse_query(std::string_view query) {
  ops::Params params;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const std::size_t eq = pair.find('=');
    std::string key = url_decode(pair.substr(0, eq));
    std::string value =
        eq == std::string_view::npos ? std::string() : url_decode(pair.substr(eq + 1));
    params.insert_or_assign(std::move(key), std::move(value));
  }
  return params;
}

struct HttpListener::Impl {
  Impl(Prompt p, Handler h, Logger l)
      : prompt(std::move(p)), handler(std::move(h)), log(std::move(l)) {}

  struct Connection : std::enable_shared_from_this<Connection> {
    Connection(Impl* owner, tcp::socket socket) : impl(owner), stream(std::move(socket)) {
      impl->open.push_back(this);
      place = std::prev(impl->open.end());
      boost::system::error_code ec;
      const tcp::endpoint remote = stream.socket().remote_endpoint(ec);
      if (!ec) {
        peer = remote.address().to_string() + ":" + std::to_string(remote.port());
      }
    }
    ~Connection() { impl->open.erase(place); }

    void read() {
      parser.emplace();
      parser->header_limit(kMaxHeaderBytes);
      parser->body_limit(kMaxBodyBytes);
      stream.expires_after(kReadTimeout);
      http::async_read(
          stream, buffer, *parser,
          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
      if (ec) {
        if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
            ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
          // A malformed request gets an answer saying so, then the connection closes.
          respond_and_close(http::status::bad_request, "bad request: " + ec.message() + "\n");
        }
        return;
      }
      const auto& request = parser->get();
      HttpRequest req;
      req.method = std::string(request.method_string());
      const std::string_view target(request.target().data(), request.target().size());
      const std::size_t q = target.find('?');
      req.path = url_decode(target.substr(0, q));
      if (q != std::string_view::npos) {
        req.query = parse_query(target.substr(q + 1));
      }
      if (auto it = request.find(http::field::authorization); it != request.end()) {
        req.authorization = std::string(it->value());
      }
      if (auto it = request.find("X-Ember-Operator"); it != request.end()) {
        req.operator_name = std::string(it->value().substr(0, 64));
      }
      if (auto it = request.find(http::field::host); it != request.end()) {
        req.host = std::string(it->value());
      }
      if (auto it = request.find(http::field::origin); it != request.end()) {
        req.origin = std::string(it->value());
      }
      req.peer = peer;
      const Reply reply{request.version(), request.keep_alive(),
                        request.method() == http::verb::head};
      std::optional<HttpResponse> prompt_answer;
      try {
        prompt_answer = impl->prompt(req);
      } catch (const std::exception& e) {
        prompt_answer = internal_error(e);
      }
      if (prompt_answer) {
        respond(reply, std::move(*prompt_answer));
        return;
      }
      // The request thread answers; the write goes back to this thread, which owns the stream.
      asio::post(
          impl->requests, [self = shared_from_this(), req = std::move(req), reply]() mutable {
            HttpResponse answer;
            try {
              answer = self->impl->handler(req);
            } catch (const std::exception& e) {
              answer = internal_error(e);
            }
            Impl* owner = self->impl;
            asio::post(owner->io,
                       [self = std::move(self), reply, answer = std::move(answer)]() mutable {
                         self->respond(reply, std::move(answer));
                       });
          });
    }

    struct Reply {
      unsigned version;
      bool keep_alive;
      bool head;
    };

    static HttpResponse internal_error(const std::exception& e) {
      return HttpResponse{
          500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what() + "\n", {}};
    }

    void respond(const Reply& reply, HttpResponse answer) {
      auto response = std::make_shared<http::response<http::string_body>>(
          static_cast<http::status>(answer.status), reply.version);
      response->set(http::field::server, "ember-admin");
      response->set(http::field::content_type, answer.content_type);
      response->set(http::field::cache_control, "no-store");
      if (!answer.www_authenticate.empty()) {
        response->set(http::field::www_authenticate, answer.www_authenticate);
      }
      response->keep_alive(reply.keep_alive);
      if (!reply.head) {
        response->body() = std::move(answer.body);
      }
      response->prepare_payload();
      stream.expires_after(kWriteTimeout);
      http::async_write(
          stream, *response,
          [self = shared_from_this(), response](beast::error_code write_ec, std::size_t) {
            if (!write_ec && response->keep_alive()) {
              self->read();
            } else {
              beast::error_code ignored;
              self->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
            }
          });
    }

    void respond_and_close(http::status status, std::string text) {
      auto response = std::make_shared<http::response<http::string_body>>(status, 11);
      response->set(http::field::server, "ember-admin");
      response->set(http::field::content_type, "text/plain; charset=utf-8");
      response->body() = std::move(text);
      response->keep_alive(false);
      response->prepare_payload();
      stream.expires_after(kWriteTimeout);
      http::async_write(stream, *response,
                        [self = shared_from_this(), response](beast::error_code, std::size_t) {
                          beast::error_code ignored;
                          self->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
                        });
    }

    Impl* impl;  // outlives the connection: see the member order of Impl
    std::list<Connection*>::iterator place;  // in impl->open
    bool evicted = false;
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> parser;
    std::string peer;
  };

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      on_accept(ec, std::move(socket));
    });
  }

  void on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      return;
    }
    if (ec) {
      if (!accept_failing) {
        accept_failing = true;
        log.warn("admin: accept on {} failed: {} (retrying every 100 ms)", address, ec.message());
      }
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec) {
          accept();
        }
      });
      return;
    }
    accept_failing = false;
    if (open.size() >= kMaxConnections) {
      // The oldest one still open: its pending operation fails, and it goes (leaving the list)
      // once that handler has run.
      for (Connection* oldest : open) {
        if (!oldest->evicted) {
          oldest->evicted = true;
          beast::error_code ignored;
          oldest->stream.socket().close(ignored);
          break;
        }
      }
    }
    std::make_shared<Connection>(this, std::move(socket))->read();
    accept();
  }

  Prompt prompt;
  Handler handler;
  Logger log;
  // Before the contexts: connections still queued in them are destroyed with them, and leave this.
  std::list<Connection*> open;  // oldest first; the network thread only
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  bool accept_failing = false;
  std::string address;
  std::thread thread;
  // After io: a connection queued here holds a socket of io, so this goes first.
  asio::io_context requests{1};
  asio::executor_work_guard<asio::io_context::executor_type> requests_wanted{
      requests.get_executor()};
  std::thread request_thread;
  std::atomic<bool> stopped{false};
};

Result<std::unique_ptr<HttpListener>> HttpListener::open(const std::string& text, Prompt prompt,
                                                         Handler handler, Logger log) {
  const std::size_t colon = text.rfind(':');
  std::string host = text.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  const auto port = static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1)));
  auto impl = std::make_unique<Impl>(std::move(prompt), std::move(handler), std::move(log));
  boost::system::error_code ec;
  const asio::ip::address ip = host == "localhost" ? asio::ip::make_address("127.0.0.1", ec)
                                                   : asio::ip::make_address(host, ec);
  if (ec) {
    return Error{Errc::invalid_argument,
                 "AdminConf.ListenAddr: '" + host + "' is not an IP address: " + ec.message()};
  }
  const tcp::endpoint endpoint(ip, port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    impl->acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return Error{Errc::io_error, "admin listener cannot listen on " + text + ": " + ec.message()};
  }
  const tcp::endpoint bound = impl->acceptor.local_endpoint(ec);
  impl->address = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                           : bound.address().to_string()) +
                  ":" + std::to_string(bound.port());
  impl->accept();
  impl->thread = std::thread([raw = impl.get()] { raw->io.run(); });
  impl->request_thread = std::thread([raw = impl.get()] { raw->requests.run(); });
  return std::unique_ptr<HttpListener>(new HttpListener(std::move(impl)));
}

HttpListener::HttpListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpListener::~HttpListener() {
  stop();
}

std::string HttpListener::address() const {
  return impl_->address;
}

void HttpListener::stop() {
  if (impl_->stopped.exchange(true)) {
    return;
  }
  // Stopping the contexts abandons every connection's pending operation (a request in progress
  // runs to its end first); the handlers hold the connections, and they are destroyed with the
  // contexts' queues. The sockets close now, so that no client waits for that.
  impl_->io.stop();
  impl_->requests.stop();
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
  if (impl_->request_thread.joinable()) {
    impl_->request_thread.join();
  }
  for (Impl::Connection* connection : impl_->open) {
    beast::error_code ignored;
    connection->stream.socket().close(ignored);
  }
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace ember::admin
