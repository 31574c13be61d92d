// SPDX-License-Identifier: Apache-2.0
#include "gate/acceptor.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/node_impl.hpp"
#include "gate/gate_core.hpp"
#include "gate/io_pool.hpp"

namespace ember::gate {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Acceptor::Impl : std::enable_shared_from_this<Acceptor::Impl> {
  Impl(GateCore& g, IoPool& p, OnSocket on) : gate(g), pool(p), on_socket(std::move(on)) {}

  void accept() {
    const std::size_t index = pool.next_index();
    acceptor.async_accept(
        pool.context(index),
        [self = shared_from_this(), index](boost::system::error_code ec, ClientSocket socket) {
          self->on_accept(ec, std::move(socket), index);
        });
  }

  void on_accept(boost::system::error_code ec, ClientSocket socket, std::size_t index) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      return;
    }
    if (ec) {
      if (!logged_error) {
        logged_error = true;
        gate.node().log.warn("gateway: accept on {} failed: {} (retrying every 100 ms)", address,
                             ec.message());
      }
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
        if (!wait_ec) {
          self->accept();
        }
      });
      return;
    }
    logged_error = false;
    gate.accepted.fetch_add(1, std::memory_order_relaxed);
    if (gate.connections.load(std::memory_order_relaxed) >= gate.config().max_connections) {
      gate.refused.fetch_add(1, std::memory_order_relaxed);
      gate.count_limit(GateCore::Limit::connections);
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      // Counted now, not when the connection's thread gets to it: a burst of accepts must not
      // overshoot the cap.
      gate.connections.fetch_add(1, std::memory_order_relaxed);
      asio::post(pool.context(index), [self = shared_from_this(), s = std::move(socket),
                                       index]() mutable { self->on_socket(std::move(s), index); });
    }
    accept();
  }

  GateCore& gate;
  IoPool& pool;
  OnSocket on_socket;
  tcp::acceptor acceptor{pool.context(0)};
  asio::steady_timer retry{pool.context(0)};
  bool logged_error = false;
  std::string address;
};

Result<std::unique_ptr<Acceptor>> Acceptor::open(GateCore& gate, IoPool& io,
                                                 const std::string& text, OnSocket on_socket) {
  const std::size_t colon = text.rfind(':');
  std::string host = text.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  const auto port = static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1)));
  auto impl = std::make_shared<Impl>(gate, io, std::move(on_socket));
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec) {
    return Error{Errc::invalid_argument, "'" + host + "' is not an IP address"};
  }
  const tcp::endpoint endpoint(address, port);
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
    return Error{Errc::io_error, "cannot listen on " + text + ": " + ec.message()};
  }
  const tcp::endpoint bound = impl->acceptor.local_endpoint(ec);
  impl->address = bound.address().to_string() + ":" + std::to_string(bound.port());
  asio::post(io.context(0), [impl] { impl->accept(); });  // runs once the pool starts
  return std::unique_ptr<Acceptor>(new Acceptor(std::move(impl)));
}

Acceptor::Acceptor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Acceptor::~Acceptor() = default;

void Acceptor::stop_accepting() {
  auto impl = impl_;
  asio::post(impl->pool.context(0), [impl] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
    impl->retry.cancel();
  });
}

std::string Acceptor::address() const {
  return impl_->address;
}

}  // namespace ember::gate
