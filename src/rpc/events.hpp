// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <ember/event.hpp>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/service_anchor.hpp"

namespace ember::detail {

class NodeImpl;

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

  /// Runs (under the bus's lock, so keep it short) when a (type, scope) gets its first subscriber
  /// (true) or loses its last (false): the event backend subscribes this node on demand. Channels
  /// that already have subscribers are reported at once.
  void set_on_channel(std::function<void(EventType, EventScope, bool)> fn);

  std::uint64_t add(std::shared_ptr<Subscriber> s);
  bool remove(std::uint64_t id);
  std::vector<std::shared_ptr<Subscriber>> subscribers_of(EventType type, EventScope scope) const;
  [[nodiscard]] std::size_t size() const;
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> delivered{0};  // handler runs, on this node

 private:
  mutable std::shared_mutex mu_;
  std::function<void(EventType, EventScope, bool)> on_channel;
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

/// Delivers an event that arrived from another node to this node's subscribers of (type, scope)
/// only (never forwarded again).
void deliver_remote_event(NodeImpl& node, EventType type, EventScope scope,
                          std::shared_ptr<const google::protobuf::Message> payload,
                          PublishOptions options, std::uint64_t trace_id,
                          std::shared_ptr<const Pid> publisher);

}  // namespace ember::detail
