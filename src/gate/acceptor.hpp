// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <ember/error.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>  // before Boost.Asio (see io_pool.hpp)

namespace ember::gate {

/// An accepted client socket, bound to its I/O thread's io_context by type: every operation on
/// it carries a one-pointer executor instead of a polymorphic one, which a pending read of each
/// idle session would otherwise hold.
using ClientSocket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

class GateCore;
class IoPool;

/// A listening socket of the gateway. Each accepted connection goes to the next I/O thread;
/// beyond MaxConnections it is closed at once, so a flood cannot fill the kernel's backlog; a
/// failing accept (out of descriptors) is retried every 100 ms and logged once per episode.
class Acceptor {
 public:
  /// Runs on the connection's own I/O thread.
  using OnSocket = std::function<void(ClientSocket socket, std::size_t io_index)>;

  /// Listens on "host:port" (`what` names the setting in errors). Accepting starts with the pool.
  static Result<std::unique_ptr<Acceptor>> open(GateCore& gate, IoPool& io,
                                                const std::string& address, OnSocket on_socket);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  /// Closes the listening socket; open connections stay.
  void stop_accepting();
  /// host:port it listens on (the port chosen when the config asked for 0).
  [[nodiscard]] std::string address() const;

  struct Impl;

 private:
  explicit Acceptor(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace ember::gate
