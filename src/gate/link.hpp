// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace boost::asio {
class io_context;
}

namespace ember::gate {

/// One client connection as a session sees it, whatever carries it (WebSocket, TCP, with or
/// without TLS). A link lives on one I/O thread: everything but io() is called there.
class Link {
 public:
  virtual ~Link() = default;
  /// Queues one whole frame (a serialized ServerFrame); frames leave in the order queued.
  virtual void send(std::shared_ptr<const std::string> frame) = 0;
  /// Sends what is queued, then closes politely (a WebSocket close frame carrying `reason`).
  virtual void close(std::string_view reason) = 0;
  /// Closes now, dropping what is queued: a client that does not read, a protocol violation.
  virtual void abort() = 0;
  /// Bytes queued and not yet written to the socket.
  [[nodiscard]] virtual std::size_t queued_bytes() const noexcept = 0;
  /// The I/O thread's context, to post work onto it from another thread.
  virtual boost::asio::io_context& io() noexcept = 0;
  /// host:port the client connected from ("?" once the socket closed). Asked once, by the
  /// session, which keeps it: a link stores no copy.
  [[nodiscard]] virtual std::string remote() const = 0;
};

}  // namespace ember::gate
