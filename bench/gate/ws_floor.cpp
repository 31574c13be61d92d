// SPDX-License-Identifier: Apache-2.0
// The gateway benchmark's floor: a bare WebSocket server on the same library (Boost.Beast) and
// the same I/O model (one io_context per thread), answering just enough of the client protocol
// for ember-bot: Welcome to a Hello, and each Request echoed back as its Response. No sessions,
// no routing, no services: what is left is the cost of the WebSocket and the frames.
//   ws_floor [port] [threads]     prints "listening on 127.0.0.1:<port>"
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>  // before Boost.Asio: g++ 12 in C++20 needs std::exchange declared first
#include <vector>

#include "ember/gate.pb.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(tcp::socket socket) : ws_(std::move(socket)) {}
  void start() {
    ws_.async_accept([self = shared_from_this()](beast::error_code ec) {
      if (!ec) {
        self->ws_.binary(true);
        self->read();
      }
    });
  }

 private:
  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        return;
      }
      self->on_frame();
      self->read();
    });
  }
  void on_frame() {
    ember::gate::ClientFrame in;
    const auto data = buffer_.cdata();
    const bool ok = in.ParseFromArray(data.data(), static_cast<int>(data.size()));
    buffer_.consume(buffer_.size());
    if (!ok) {
      return;
    }
    ember::gate::ServerFrame out;
    if (in.has_hello()) {
      out.mutable_welcome()->set_version(1);
      out.mutable_welcome()->set_uid(in.hello().token());
    } else if (in.has_request()) {
      out.mutable_response()->set_seq(in.request().seq());
      out.mutable_response()->set_payload(in.request().payload());
    } else {
      return;
    }
    queue_.push_back(out.SerializeAsString());
    if (queue_.size() == 1) {
      write();
    }
  }
  void write() {
    ws_.async_write(asio::buffer(queue_.front()),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      if (ec) {
                        return;
                      }
                      self->queue_.pop_front();
                      if (!self->queue_.empty()) {
                        self->write();
                      }
                    });
  }

  websocket::stream<tcp::socket> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::stoi(argv[1]) : 0);
  const int threads = argc > 2 ? std::stoi(argv[2]) : 1;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (int i = 0; i < threads; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
  }
  tcp::acceptor acceptor(*contexts[0], tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  std::printf("listening on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  std::size_t next = 0;
  std::function<void()> accept = [&] {
    asio::io_context& io = *contexts[next];
    next = (next + 1) % contexts.size();
    acceptor.async_accept(io, [&](beast::error_code ec, tcp::socket socket) {
      if (!ec) {
        auto executor = socket.get_executor();
        auto c = std::make_shared<Connection>(std::move(socket));
        asio::post(executor, [c] { c->start(); });
      }
      accept();
    });
  };
  accept();
  std::vector<std::thread> workers;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& io : contexts) {
    guards.emplace_back(asio::make_work_guard(*io));
  }
  for (std::size_t i = 1; i < contexts.size(); ++i) {
    workers.emplace_back([&, i] { contexts[i]->run(); });
  }
  contexts[0]->run();
  return 0;
}
