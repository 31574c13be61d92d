// SPDX-License-Identifier: Apache-2.0
//
// How a message is placed in a service's mailbox: its priority and its dispatch key.
//
// A system-priority message runs before every queued user message of its lane, after the message
// in progress. Messages with the same dispatch key (say a player UID) always run in order on one
// lane; messages without a key are spread over the lanes with no order between them.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <cstdint>
#include <string_view>

namespace ember {

enum class Priority : std::uint8_t { user = 0, system = 1 };

/// 64-bit FNV-1a followed by a murmur-style finalizer: FNV alone spreads short numeric strings
/// badly.
constexpr std::uint64_t hash_key(std::string_view text) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

constexpr std::uint64_t hash_key(std::uint64_t value) noexcept {
  std::uint64_t h = value + 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

/// A hashed dispatch key. 8 bytes: every message carries one. A zero hash means "no key"; the
/// hash functions never return 0 for a real key.
class DispatchKey {
 public:
  constexpr DispatchKey() = default;
  constexpr DispatchKey(std::string_view text) : hash_(nonzero(hash_key(text))) {}  // NOLINT
  constexpr DispatchKey(const char* text) : DispatchKey(std::string_view(text)) {}  // NOLINT
  /// Integer keys (player UIDs) hash differently from their decimal text; use one form per key.
  static constexpr DispatchKey from_int(std::uint64_t value) noexcept {
    DispatchKey key;
    key.hash_ = nonzero(hash_key(value));
    return key;
  }
  static constexpr DispatchKey from_hash(std::uint64_t hash) noexcept {
    DispatchKey key;
    key.hash_ = nonzero(hash);
    return key;
  }

  [[nodiscard]] constexpr bool has_value() const noexcept { return hash_ != 0; }
  [[nodiscard]] constexpr std::uint64_t hash() const noexcept { return hash_; }

 private:
  static constexpr std::uint64_t nonzero(std::uint64_t h) noexcept { return h == 0 ? 1 : h; }
  std::uint64_t hash_ = 0;
};

struct PostOptions {
  Priority priority = Priority::user;
  DispatchKey key{};
  /// Shown in logs when the handler throws or the message is refused. Must outlive the message.
  std::string_view name = "post";
};

}  // namespace ember
