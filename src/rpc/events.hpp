// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <ember/event.hpp>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "rpc/service_anchor.hpp"

namespace ember::detail {

/// Subscriptions of one node, by event type. Publishing snapshots the subscribers of the type and
/// posts one delivery per subscriber into its mailbox.
class LocalEventBus {
 public:
  struct Subscriber {
    std::uint64_t id = 0;
    EventSubscription subscription;
    std::shared_ptr<ServiceAnchor> anchor;
    std::weak_ptr<void> module_alive;
    std::atomic<bool> active{true};
    std::string name;  // "service module N", for logs
  };

  std::uint64_t add(std::shared_ptr<Subscriber> s);
  bool remove(std::uint64_t id);
  std::vector<std::shared_ptr<Subscriber>> subscribers_of(EventType type, EventScope scope) const;
  [[nodiscard]] std::size_t size() const;

 private:
  mutable std::shared_mutex mu_;
  std::atomic<std::uint64_t> next_id_{1};
  struct Channel {
    EventType type;
    EventScope scope;
    friend bool operator==(const Channel&, const Channel&) = default;
  };
  struct ChannelHash {
    std::size_t operator()(const Channel& c) const noexcept {
      const std::uint64_t scope =
          c.scope.is_global()
              ? 0
              : (std::uint64_t{1} << 32) | static_cast<std::uint32_t>(c.scope.server_id());
      return std::hash<std::uint64_t>{}(scope * 0x9E3779B97F4A7C15ull ^
                                        static_cast<std::uint32_t>(c.type));
    }
  };
  std::unordered_map<Channel, std::vector<std::shared_ptr<Subscriber>>, ChannelHash> by_channel_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Subscriber>> by_id_;
};

}  // namespace ember::detail
