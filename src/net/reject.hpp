// SPDX-License-Identifier: Apache-2.0
// Why the transport refuses a connection: shared by the connections that refuse, the counters in
// TransportStats and the refusal log.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ember::net::detail {

/// Why a connection was refused. The order is that of the summary lines and of TransportStats.
enum class Reject : std::uint8_t {
  none,
  bad_handshake,
  wrong_secret,
  wrong_cluster,
  bad_frame,
  hung_up,
  handshake_timeout,
  too_many_pending,
};
inline constexpr std::size_t kRejectReasons = 7;
inline constexpr std::array<const char*, kRejectReasons> kRejectNames = {
    "bad handshake",
    "wrong secret",
    "wrong cluster",
    "bad frame",
    "hung up",
    "handshake timeout",
    "too many pending handshakes"};

inline std::size_t reason_index(Reject r) {
  return static_cast<std::size_t>(r) - 1;
}

}  // namespace ember::net::detail
