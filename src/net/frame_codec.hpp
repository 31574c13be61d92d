// SPDX-License-Identifier: Apache-2.0
// Frames between nodes: a 4-byte big-endian length, then that many bytes. No sockets here, so the
// framing can be read (and tested) apart from the I/O that moves it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ember::net::detail {

inline constexpr std::size_t kLengthPrefix = 4;

inline std::array<char, kLengthPrefix> encode_length(std::size_t n) {
  auto v = static_cast<std::uint32_t>(n);
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

/// `header` holds kLengthPrefix bytes.
inline std::size_t decode_length(const char* header) {
  const auto* h = reinterpret_cast<const unsigned char*>(header);
  return (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) | (std::size_t{h[2]} << 8) |
         std::size_t{h[3]};
}

/// Why a frame of `length` bytes is refused under `limit` (the caller checked that it is over).
std::string describe_over_limit(std::size_t length, std::size_t limit);

/// Bytes ready for the socket: one or more frames, each already prefixed with its length. Senders
/// on any thread append to a chunk; the I/O thread writes chunks whole. No allocation per frame
/// crosses threads.
struct Chunk {
  std::string bytes;
  std::size_t frames = 0;
  void append(std::string_view payload) {
    const auto header = encode_length(payload.size());
    bytes.append(header.data(), header.size());
    bytes.append(payload);
    ++frames;
  }
  /// The part of a frame a direct write did not get out (`written` bytes, header included).
  void append_rest(std::string_view payload, std::size_t written);
};

}  // namespace ember::net::detail
