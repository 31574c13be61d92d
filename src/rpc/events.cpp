// SPDX-License-Identifier: Apache-2.0
#include "rpc/events.hpp"

#include <algorithm>
#include <ember/node.hpp>
#include <mutex>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"
#include "runtime/scheduler.hpp"

namespace ember::detail {

void LocalEventBus::set_on_channel(std::function<void(EventType, EventScope, bool)> fn) {
  std::unique_lock lock(mu_);
  on_channel = std::move(fn);
  if (on_channel) {
    for (const auto& [channel, list] : by_channel_) {
      on_channel(channel.type, channel.scope, true);
    }
  }
}

std::uint64_t LocalEventBus::add(std::shared_ptr<Subscriber> s) {
  s->id = next_id_.fetch_add(1);
  std::unique_lock lock(mu_);
  auto& list = by_channel_[Channel{s->subscription.type, s->subscription.scope}];
  list.push_back(s);
  if (list.size() == 1 && on_channel) {
    on_channel(s->subscription.type, s->subscription.scope, true);
  }
  by_id_[s->id] = s;
  return s->id;
}

bool LocalEventBus::remove(std::uint64_t id) {
  std::unique_lock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return false;
  }
  std::shared_ptr<Subscriber> s = it->second;
  s->active.store(false);  // deliveries already queued see this and skip
  by_id_.erase(it);
  const Channel key{s->subscription.type, s->subscription.scope};
  auto& list = by_channel_[key];
  list.erase(std::remove(list.begin(), list.end(), s), list.end());
  if (list.empty()) {
    by_channel_.erase(key);
    if (on_channel) {
      on_channel(key.type, key.scope, false);
    }
  }
  return true;
}

std::vector<std::shared_ptr<LocalEventBus::Subscriber>> LocalEventBus::subscribers_of(
    EventType type, EventScope scope) const {
  std::shared_lock lock(mu_);
  auto it = by_channel_.find(Channel{type, scope});
  return it == by_channel_.end() ? std::vector<std::shared_ptr<Subscriber>>{} : it->second;
}

std::size_t LocalEventBus::size() const {
  std::shared_lock lock(mu_);
  return by_id_.size();
}

namespace {

/// What every delivery of one publish shares: built once, not per subscriber.
struct Published {
  std::shared_ptr<const AnyMessage> payload;
  EventInfo info;
  std::shared_ptr<const Pid> publisher;  // the same identity, shareable by handler contexts
};

class Delivery final : public runtime::Message {
 public:
  Delivery(std::shared_ptr<LocalEventBus::Subscriber> to, std::shared_ptr<const Published> event)
      : to_(std::move(to)), event_(std::move(event)) {}

  void run() override {
    if (!to_->active.load() || to_->module_alive.expired()) {
      return;  // unsubscribed or released after the publish
    }
    const AnyMessage& payload = *event_->payload;
    const EventInfo& info = event_->info;
    if (payload.GetDescriptor() != to_->subscription.payload_type) {
      if (ServiceCore* core = ServiceCore::current()) {
        core->logger().error("event {}: {} expects {}, the publisher sent {}; event skipped",
                             info.type, to_->name, to_->subscription.payload_type->full_name(),
                             payload.GetDescriptor()->full_name());
      }
      return;
    }
    Context ctx;
    detail::state(ctx).priority = info.priority;
    detail::state(ctx).key = info.key;
    detail::state(ctx).trace_id = info.trace_id;
    detail::state(ctx).caller = event_->publisher;
    detail::state(ctx).deadline = Context::Clock::now() + std::chrono::hours(24);
    if (ServiceCore* core = ServiceCore::current()) {
      Messaging::of(core->node()).events().delivered.fetch_add(1, std::memory_order_relaxed);
    }
    ContextScope scope(&ctx);
    to_->subscription.invoke(payload, info);
  }
  [[nodiscard]] std::string_view name() const noexcept override { return "event"; }
  [[nodiscard]] std::uint64_t trace_id() const noexcept override { return event_->info.trace_id; }

 private:
  std::shared_ptr<LocalEventBus::Subscriber> to_;
  std::shared_ptr<const Published> event_;
};

void post_to_subscribers(NodeImpl& node, const std::shared_ptr<const Published>& event) {
  const EventInfo& info = event->info;
  runtime::Scheduler::SubmitBatch batch;  // thousands of subscribers: queue them in one go
  for (auto& s : Messaging::of(node).events().subscribers_of(info.type, info.scope)) {
    auto* m = new Delivery(s, event);
    m->priority = info.priority;
    m->key = info.key;
    (void)s->anchor->post(m, false);  // a subscriber that is stopping simply misses it
  }
}

}  // namespace

Result<SubscriptionId> subscribe(Module& subscriber, EventSubscription subscription) {
  ServiceCore* core = ServiceCore::of(subscriber);
  if (core == nullptr || subscriber.released()) {
    return Error{Errc::bad_state, "subscribe: the module is not attached to a running service"};
  }
  auto s = std::make_shared<LocalEventBus::Subscriber>();
  s->subscription = std::move(subscription);
  s->anchor = core->anchor();
  s->module_alive = ServiceCore::alive_token(subscriber);
  s->name = "service " + core->pid().to_string() + " module " + std::to_string(subscriber.id());
  LocalEventBus& bus = Messaging::of(core->node()).events();
  std::uint64_t id = bus.add(std::move(s));
  ServiceCore::add_cleanup(subscriber, [&bus, id] { bus.remove(id); });
  return SubscriptionId{id};
}

Status publish(Node* node, Module* publisher, EventType type,
               std::shared_ptr<const AnyMessage> payload, PublishOptions options) {
  NodeImpl* impl = nullptr;
  auto event = std::make_shared<Published>();
  event->payload = std::move(payload);
  EventInfo& info = event->info;
  info.type = type;
  info.scope = options.scope;
  info.priority = options.priority;
  info.key = options.key;
  const Context* parent = current_context();
  info.trace_id = parent != nullptr && detail::state(*parent).trace_id != 0
                      ? detail::state(*parent).trace_id
                      : new_trace_id();
  if (publisher != nullptr) {
    ServiceCore* core = ServiceCore::of(*publisher);
    if (core == nullptr) {
      return Error{Errc::bad_state, "publish: the module is not attached to a running service"};
    }
    impl = &core->node();
    event->publisher = core->shared_pid();
  } else {
    impl = &detail::NodeAccess::impl(*node);
    event->publisher = impl->node_pid;
  }
  info.publisher = *event->publisher;
  std::shared_ptr<const Published> shared = std::move(event);
  Messaging::of(*impl).events().published.fetch_add(1, std::memory_order_relaxed);
  post_to_subscribers(*impl, shared);
  if (Messaging::of(*impl).event_router() != nullptr) {
    // Only to the nodes that subscribed to (type, scope); failures there are theirs (at most once).
    Messaging::of(*impl).event_router()->forward(*shared->payload, shared->info);
  }
  return {};
}

void deliver_remote_event(NodeImpl& node, EventType type, EventScope scope,
                          std::shared_ptr<const google::protobuf::Message> payload,
                          PublishOptions options, std::uint64_t trace_id,
                          std::shared_ptr<const Pid> publisher) {
  auto event = std::make_shared<Published>();
  event->payload = std::move(payload);
  event->info.type = type;
  event->info.scope = scope;
  event->info.priority = options.priority;
  event->info.key = options.key;
  event->info.trace_id = trace_id;
  event->publisher = std::move(publisher);
  event->info.publisher = *event->publisher;
  post_to_subscribers(node, event);
}

}  // namespace ember::detail

namespace ember {

bool Module::unsubscribe(SubscriptionId id) {
  detail::ServiceCore* c = core();
  return c != nullptr && detail::Messaging::of(c->node()).events().remove(id.value);
}

}  // namespace ember
