// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ember/context.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ember::detail {

/// An origin (a client session) that entered the cluster on another node, as requests from it
/// carry it here: its owner's encoding, and whether its node said it ended.
class RemoteOrigin final : public RequestOrigin {
 public:
  explicit RemoteOrigin(std::string identity) : identity_(std::move(identity)) {}
  [[nodiscard]] bool ended() const noexcept override {
    return ended_.load(std::memory_order_acquire);
  }
  bool wire_identity(std::string& out) const override {
    out.assign(identity_);
    return true;
  }
  [[nodiscard]] const std::string& identity() const noexcept { return identity_; }
  void end() noexcept { ended_.store(true, std::memory_order_release); }

 private:
  const std::string identity_;
  std::atomic<bool> ended_{false};
};

/// The origins that requests from other nodes named, one object per identity, so that every
/// request of a session sees its end at once. An ended origin is remembered for `remember_ended`
/// (a request of it that arrives late is dropped too); one that is still open is forgotten when no
/// request holds it.
class RemoteOrigins {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RemoteOrigins(std::chrono::seconds remember_ended = std::chrono::seconds(60))
      : remember_ended_(remember_ended) {}

  std::shared_ptr<RemoteOrigin> find_or_add(std::string_view identity);
  /// Its node said it ended: requests of it not yet started are dropped, later ones too.
  void end(std::string_view identity);
  [[nodiscard]] std::size_t size() const;
  /// Ends heard so far (OriginEnded frames).
  [[nodiscard]] std::uint64_t ends_heard() const noexcept {
    return ends_heard_.load(std::memory_order_relaxed);
  }

 private:
  struct Entry {
    std::shared_ptr<RemoteOrigin> origin;
    Clock::time_point ended_at{};  // epoch: still open
  };
  void purge_locked(Clock::time_point now);

  const std::chrono::seconds remember_ended_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::uint64_t changes_ = 0;
  std::atomic<std::uint64_t> ends_heard_{0};
};

}  // namespace ember::detail
