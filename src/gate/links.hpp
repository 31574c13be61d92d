// SPDX-License-Identifier: Apache-2.0
// The transports a client connection can take. Each takes a socket the acceptor gave, on the
// socket's I/O thread, and carries one session from then on.
#pragma once

#include <cstddef>
#include <ember/error.hpp>
#include <memory>
#include <string>
#include <utility>  // before Boost.Asio (see io_pool.hpp)

#include "gate/acceptor.hpp"

namespace boost::asio::ssl {
class context;
}

namespace ember::gate {

class GateCore;
class IoPool;

/// HTTP/1.1 upgraded to a WebSocket at WebSocketPath (StaticDir's files for plain GETs), over TLS
/// when `tls` is set (Boost.Beast, kept in its own file: it is heavy to compile).
void start_websocket(GateCore& gate, IoPool& pool, std::size_t index, ClientSocket socket,
                     boost::asio::ssl::context* tls);

/// Frames of a 4-byte big-endian length and that many bytes, over TLS when `tls` is set.
void start_tcp(GateCore& gate, IoPool& pool, std::size_t index, ClientSocket socket,
               boost::asio::ssl::context* tls);

/// "host:port" of the socket's peer, or "?" once it is gone.
std::string peer_address(const ClientSocket& socket);

/// A server TLS context from GateConf.TlsConf (PEM chain and key), or why not.
Result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(const std::string& cert_file,
                                                                    const std::string& key_file);

}  // namespace ember::gate
