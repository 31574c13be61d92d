// SPDX-License-Identifier: Apache-2.0
// The challenge-response handshake between two nodes, apart from the socket that carries it:
// client Hello{cluster, node, nonce} -> server Hello{..., proof} -> client Proof. Each proof is an
// HMAC of both nonces and both ids under the cluster secret, so the secret never crosses the wire
// and each side authenticates the other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "ember/wire.pb.h"
#include "net/reject.hpp"
#include "net/transport.hpp"

namespace ember::net::detail {

inline constexpr std::uint32_t kVersion = 1;
// Handshake frames are tiny: anything bigger before authentication is garbage or an attack.
inline constexpr std::size_t kHandshakeMaxFrame = 4096;
inline constexpr std::size_t kNonceBytes = 16;

/// A handshake that cannot go on: the connection closes.
struct Refusal {
  Refusal(Reject reason, std::string why, std::optional<wire::Proof> last = std::nullopt)
      : reason(reason), why(std::move(why)), last(std::move(last)) {}

  Reject reason;
  std::string why;
  /// When set, written before the connection closes, and the loss is marked refused: retrying
  /// will not help, and the peer should hear why.
  std::optional<wire::Proof> last;
};

/// One side's state between handshake frames: the nonces, and on a server the client's claimed id.
/// Either side may use it, one side per connection.
class Handshake {
 public:
  /// Client: the first frame.
  wire::Hello client_hello(const TransportOptions& options);
  /// Client: answers the server's Hello from `expected`, the node dialled at `address`. Returns
  /// the Proof that completes the handshake, or why the connection is refused.
  std::variant<wire::Proof, Refusal> answer_server(const TransportOptions& options,
                                                   const std::string& body,
                                                   const std::string& expected,
                                                   const std::string& address);
  /// Server: answers a client's Hello with this node's, which proves the secret first.
  std::variant<wire::Hello, Refusal> answer_client(const TransportOptions& options,
                                                   const std::string& body);
  /// Server: checks the client's Proof; nothing when the client is authenticated as client_id().
  std::optional<Refusal> check_client_proof(const TransportOptions& options,
                                            const std::string& body) const;
  [[nodiscard]] const std::string& client_id() const noexcept { return client_id_; }

 private:
  std::string local_nonce_;
  std::string remote_nonce_;
  std::string client_id_;
};

}  // namespace ember::net::detail
