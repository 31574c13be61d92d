// SPDX-License-Identifier: Apache-2.0
//
// Local events: publish/subscribe by event type inside a node.
//
//   subscribe<pb::PlayerJoined>(kPlayerJoined, [this](const pb::PlayerJoined& e) { greet(e); });
//   publish(kPlayerJoined, joined);                          // every subscriber, any service
//   publish(kPlayerJoined, joined, {.priority = ember::Priority::system});
//   subscribe<pb::ZoneOpened>(kZoneOpened, ember::EventScope::server(3), on_zone);  // zone 3 only
//   publish(kZoneOpened, opened, {.scope = ember::EventScope::server(3)});
//
// Callbacks run in the subscriber's mailbox with the event's priority and dispatch key. A
// subscriber expecting another payload type gets an error in its log, not a crash. Releasing a
// module drops its subscriptions.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <google/protobuf/message.h>

#include <cstdint>
#include <ember/dispatch.hpp>
#include <ember/error.hpp>
#include <ember/module.hpp>
#include <ember/pid.hpp>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace ember {

using EventType = std::int32_t;

/// Where an event goes: every subscriber of its type (global), or only those of one server id (a
/// zone). The two are separate channels, as in the seed's `event.global.<type>` and
/// `event.server.<type>.<serverId>`: a global subscriber does not see server-scoped events.
class EventScope {
 public:
  static constexpr EventScope global() noexcept { return EventScope{}; }
  static constexpr EventScope server(std::int32_t server_id) noexcept {
    EventScope scope;
    scope.server_ = true;
    scope.server_id_ = server_id;
    return scope;
  }
  [[nodiscard]] constexpr bool is_global() const noexcept { return !server_; }
  [[nodiscard]] constexpr std::int32_t server_id() const noexcept { return server_id_; }
  friend constexpr bool operator==(EventScope, EventScope) = default;

 private:
  bool server_ = false;
  std::int32_t server_id_ = 0;
};

struct PublishOptions {
  Priority priority = Priority::user;
  DispatchKey key{};
  EventScope scope = EventScope::global();
};

/// What a subscriber learns about an event besides its payload.
struct EventInfo {
  EventType type = 0;
  EventScope scope{};
  Priority priority = Priority::user;
  DispatchKey key{};
  Pid publisher{};  ///< empty name when published from outside any service
  std::uint64_t trace_id = 0;
};

struct SubscriptionId {
  std::uint64_t value = 0;
  [[nodiscard]] constexpr bool valid() const noexcept { return value != 0; }
  friend constexpr bool operator==(SubscriptionId, SubscriptionId) = default;
};

namespace detail {

struct EventSubscription {
  EventType type = 0;
  EventScope scope{};
  const google::protobuf::Descriptor* payload_type = nullptr;
  std::function<void(const google::protobuf::Message&, const EventInfo&)> invoke;
};

Result<SubscriptionId> subscribe(Module& subscriber, EventSubscription subscription);
Status publish(Node* node, Module* publisher, EventType type,
               std::shared_ptr<const google::protobuf::Message> payload, PublishOptions options);

}  // namespace detail

template <class Payload, class F>
Result<SubscriptionId> Module::subscribe(EventType type, F&& fn) {
  return subscribe<Payload>(type, EventScope::global(), std::forward<F>(fn));
}

template <class Payload, class F>
Result<SubscriptionId> Module::subscribe(EventType type, EventScope scope, F&& fn) {
  static_assert(std::is_base_of_v<google::protobuf::Message, Payload>,
                "event payloads must be protobuf messages");
  detail::EventSubscription s;
  s.type = type;
  s.scope = scope;
  s.payload_type = Payload::descriptor();
  s.invoke = [fn = std::forward<F>(fn)](const google::protobuf::Message& any,
                                        const EventInfo& info) mutable {
    const auto& payload = static_cast<const Payload&>(any);  // descriptor checked by the runtime
    if constexpr (std::is_invocable_v<F&, const Payload&, const EventInfo&>) {
      fn(payload, info);
    } else {
      (void)info;
      fn(payload);
    }
  };
  return detail::subscribe(*this, std::move(s));
}

template <class Payload>
Status Module::publish(EventType type, Payload&& payload, PublishOptions options) {
  using P = std::decay_t<Payload>;
  static_assert(std::is_base_of_v<google::protobuf::Message, P>,
                "event payloads must be protobuf messages");
  return detail::publish(nullptr, this, type,
                         std::make_shared<const P>(std::forward<Payload>(payload)), options);
}

template <class Payload>
Status Module::publish(EventType type, Payload&& payload) {
  return publish(type, std::forward<Payload>(payload), PublishOptions{});
}

/// Publishes from outside any service (main thread, tools, tests).
template <class Payload>
Status publish(Node& node, EventType type, Payload&& payload, PublishOptions options = {}) {
  using P = std::decay_t<Payload>;
  return detail::publish(&node, nullptr, type,
                         std::make_shared<const P>(std::forward<Payload>(payload)), options);
}

}  // namespace ember
