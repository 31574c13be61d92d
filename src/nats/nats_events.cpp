// SPDX-License-Identifier: Apache-2.0
#include "nats/nats_events.hpp"

#include <bit>
#include <climits>
#include <ember/log.hpp>
#include <vector>

#include "core/node_impl.hpp"
#include "ember/wire.pb.h"
#include "wire/wire_codec.hpp"

namespace ember::detail {
namespace {

std::string describe(natsStatus status) {
  std::string text = natsStatus_GetText(status);
  const char* detail = nats_GetLastError(nullptr);
  if (detail != nullptr && *detail != '\0' && text != detail) {
    text += std::string(" (") + detail + ")";
  }
  return text;
}

// Logs the 1st, 2nd, 4th, 8th... occurrence: a flood of failures stays readable.
bool worth_logging(std::uint64_t count) noexcept {
  return std::has_single_bit(count);
}

}  // namespace

NatsEvents::NatsEvents(NodeImpl& node, std::string address)
    : node_(node), config_(node.config.events.nats), address_(std::move(address)) {
  for (const auto& endpoint : config_.endpoints) {
    endpoints_ += (endpoints_.empty() ? "" : ", ") + endpoint;
  }
}

Result<std::shared_ptr<NatsEvents>> NatsEvents::connect(NodeImpl& node, std::string address) {
  std::shared_ptr<NatsEvents> self(new NatsEvents(node, std::move(address)));
  const NatsConfig& cfg = self->config_;
  natsOptions* options = nullptr;
  if (natsStatus s = natsOptions_Create(&options); s != NATS_OK) {
    return Error{Errc::internal, "NATS client: " + describe(s)};
  }
  std::vector<const char*> servers;
  for (const auto& endpoint : cfg.endpoints) {
    servers.push_back(endpoint.c_str());
  }
  const std::string name = "ember node " + node.config.node_id;
  natsStatus s = natsOptions_SetServers(options, servers.data(), static_cast<int>(servers.size()));
  if (s == NATS_OK && !cfg.user.empty()) {
    s = natsOptions_SetUserInfo(options, cfg.user.c_str(), cfg.password.c_str());
  }
  if (s == NATS_OK && !cfg.token.empty()) {
    s = natsOptions_SetToken(options, cfg.token.c_str());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetName(options, name.c_str());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetTimeout(options, cfg.timeout.count());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetNoEcho(options, true);  // local subscribers are served by the bus
  }
  if (s == NATS_OK) {
    s = natsOptions_SetMaxReconnect(options, INT_MAX);  // for as long as the node runs
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectWait(options, cfg.reconnect_wait.count());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectBufSize(options, static_cast<int>(cfg.reconnect_buffer));
  }
  if (s == NATS_OK) {
    // One shared delivery thread instead of one per subscription; order per subject is kept.
    s = natsOptions_UseGlobalMessageDelivery(options, true);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetErrorHandler(options, &NatsEvents::on_error, self.get());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(options, &NatsEvents::on_disconnected, self.get());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(options, &NatsEvents::on_reconnected, self.get());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetClosedCB(options, &NatsEvents::on_closed, self.get());
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(options);
    return Error{Errc::invalid_argument, "EventBusConf.NatsConf: " + describe(s)};
  }
  s = natsConnection_Connect(&self->conn_, options);
  natsOptions_Destroy(options);
  if (s != NATS_OK) {
    self->conn_ = nullptr;
    return Error{Errc::node_unreachable,
                 "cannot reach NATS at " + self->endpoints_ + ": " + describe(s)};
  }
  self->worker_ = std::thread([raw = self.get()] { raw->run(); });
  node.log.info("events go through NATS at {} (subjects {}.<type>, {}.<type>.<serverId>)",
                self->endpoints_, cfg.global_prefix, cfg.server_prefix);
  return self;
}

NatsEvents::~NatsEvents() {
  close();
}

std::string NatsEvents::subject(EventType type, EventScope scope) const {
  if (scope.is_global()) {
    return config_.global_prefix + "." + std::to_string(type);
  }
  return config_.server_prefix + "." + std::to_string(type) + "." +
         std::to_string(scope.server_id());
}

void NatsEvents::want(EventType type, EventScope scope, bool wanted) {
  std::lock_guard lock(mu_);
  wishes_[subject(type, scope)] = wanted;  // a later wish for the same subject replaces it
  cv_.notify_all();
}

void NatsEvents::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return closing_ || !wishes_.empty(); });
    if (closing_) {
      return;
    }
    std::map<std::string, bool> wishes;
    wishes.swap(wishes_);
    applying_ = true;
    lock.unlock();
    for (const auto& [subject, wanted] : wishes) {
      if (wanted) {
        subscribe(subject);
      } else {
        unsubscribe(subject);
      }
    }
    // A round trip: the server has the interest once this returns, so publishers elsewhere
    // reach this node from here on.
    (void)natsConnection_FlushTimeout(conn_, config_.timeout.count());
    lock.lock();
    applying_ = false;
    cv_.notify_all();
  }
}

Status NatsEvents::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return closing_ || (wishes_.empty() && !applying_); })) {
    node_.log.warn(
        "NATS did not confirm this node's subscriptions within {} ms; they take "
        "effect when it answers",
        timeout.count());
  }
  return {};
}

void NatsEvents::subscribe(const std::string& subject) {
  {
    std::lock_guard lock(mu_);
    if (subs_.contains(subject)) {
      return;
    }
  }
  natsSubscription* sub = nullptr;
  natsStatus s =
      natsConnection_Subscribe(&sub, conn_, subject.c_str(), &NatsEvents::on_message, this);
  if (s == NATS_OK) {
    // Bounded by count only: the node reads as fast as it posts into mailboxes, and a burst
    // beyond the limit is dropped (and counted) rather than held without bound.
    s = natsSubscription_SetPendingLimits(sub, static_cast<int>(config_.pending_limit), -1);
  }
  if (s == NATS_OK) {
    s = natsSubscription_SetOnCompleteCB(sub, &NatsEvents::on_complete, this);
  }
  if (s != NATS_OK) {
    node_.log.error("NATS subscribe {}: {}; this node misses those events", subject, describe(s));
    if (sub != nullptr) {
      (void)natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
    return;
  }
  std::lock_guard lock(mu_);
  subs_.emplace(subject, sub);
  ++running_handlers_;
}

void NatsEvents::unsubscribe(const std::string& subject) {
  natsSubscription* sub = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = subs_.find(subject);
    if (it == subs_.end()) {
      return;
    }
    sub = it->second;
    subs_.erase(it);
    std::int64_t dropped = 0;
    if (natsSubscription_GetDropped(sub, &dropped) == NATS_OK) {
      dropped_by_closed_ += dropped;
    }
  }
  if (natsStatus s = natsSubscription_Unsubscribe(sub); s != NATS_OK) {
    node_.log.warn("NATS unsubscribe {}: {}", subject, describe(s));
  }
  natsSubscription_Destroy(sub);  // the library keeps its own reference until on_complete
}

void NatsEvents::forward(const AnyMessage& payload, const EventInfo& info) {
  thread_local wire::EventFrame frame;
  thread_local std::string bytes;
  std::shared_lock lock(conn_mu_);
  if (conn_ == nullptr) {
    return;  // closed: the node is stopping
  }
  frame.Clear();
  encode_event(payload, info, address_, frame);
  bytes.clear();
  frame.SerializeToString(&bytes);
  const std::string to = subject(info.type, info.scope);
  // Buffered by the client (and kept while reconnecting, up to ReconnectBufSize); never blocks.
  const natsStatus s =
      natsConnection_Publish(conn_, to.c_str(), bytes.data(), static_cast<int>(bytes.size()));
  if (s == NATS_OK) {
    sent_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (worth_logging(send_failures_.fetch_add(1, std::memory_order_relaxed) + 1)) {
    node_.log.error("NATS publish {} ({} bytes): {}; event lost for other nodes", to, bytes.size(),
                    describe(s));
  }
}

EventStats NatsEvents::event_stats() const {
  EventStats stats;
  stats.sent = sent_.load(std::memory_order_relaxed);
  stats.received = received_.load(std::memory_order_relaxed);
  stats.send_failures = send_failures_.load(std::memory_order_relaxed);
  stats.receive_errors = receive_errors_.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  std::int64_t dropped = dropped_by_closed_;
  for (const auto& [subject, sub] : subs_) {
    std::int64_t n = 0;
    if (natsSubscription_GetDropped(sub, &n) == NATS_OK) {
      dropped += n;
    }
  }
  stats.dropped = static_cast<std::uint64_t>(dropped);
  return stats;
}

void NatsEvents::close() {
  {
    std::lock_guard lock(mu_);
    if (closing_) {
      return;
    }
    closing_ = true;
    cv_.notify_all();
  }
  if (worker_.joinable()) {
    worker_.join();
  }
  natsConnection* conn = nullptr;
  {
    std::unique_lock lock(conn_mu_);  // waits for publishes in progress
    std::swap(conn, conn_);
  }
  if (conn == nullptr) {
    return;
  }
  // What the services published while draining goes out before the connection ends.
  if (natsStatus s = natsConnection_FlushTimeout(conn, config_.timeout.count()); s != NATS_OK) {
    node_.log.warn("NATS: events published at stop may be lost: {}", describe(s));
  }
  natsConnection_Close(conn);
  std::unique_lock lock(mu_);
  const bool quiet = cv_.wait_for(lock, config_.timeout + std::chrono::seconds(1),
                                  [&] { return running_handlers_ == 0 && connection_closed_; });
  if (!quiet) {
    // A handler or a connection callback may still run: freeing what it uses would crash, so
    // it is left to the process end.
    node_.log.error("NATS: {} subscription handlers did not finish{}; connection left open",
                    running_handlers_,
                    connection_closed_ ? "" : " and the connection's closed callback did not come");
    return;
  }
  for (auto& [subject, sub] : subs_) {
    natsSubscription_Destroy(sub);
  }
  subs_.clear();
  lock.unlock();
  natsConnection_Destroy(conn);
}

void NatsEvents::on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* self_ptr) {
  auto* self = static_cast<NatsEvents*>(self_ptr);
  self->received_.fetch_add(1, std::memory_order_relaxed);
  thread_local wire::EventFrame frame;
  bool ok = frame.ParseFromArray(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  if (!ok) {
    system_log().error("NATS message on {} ({} bytes) is not an Ember event frame; dropped",
                       natsMsg_GetSubject(msg), natsMsg_GetDataLength(msg));
  } else {
    ok = deliver_event(self->node_, "NATS", frame);
  }
  if (!ok) {
    self->receive_errors_.fetch_add(1, std::memory_order_relaxed);
  }
  natsMsg_Destroy(msg);
}

void NatsEvents::on_complete(void* self_ptr) {
  auto* self = static_cast<NatsEvents*>(self_ptr);
  std::lock_guard lock(self->mu_);
  --self->running_handlers_;
  self->cv_.notify_all();
}

void NatsEvents::on_error(natsConnection*, natsSubscription* sub, natsStatus status,
                          void* self_ptr) {
  auto* self = static_cast<NatsEvents*>(self_ptr);
  if (status == NATS_SLOW_CONSUMER && sub != nullptr) {
    self->node_.log.warn(
        "NATS: events arrive faster than this node takes them; over PendingLimit ({}) they are "
        "dropped (see NodeStats::events.dropped)",
        self->config_.pending_limit);
    return;
  }
  self->node_.log.warn("NATS: {}", describe(status));
}

void NatsEvents::on_disconnected(natsConnection*, void* self_ptr) {
  auto* self = static_cast<NatsEvents*>(self_ptr);
  if (self->closing_.load()) {
    return;  // our own close
  }
  self->node_.log.warn(
      "NATS connection lost; reconnecting to {} (events published meanwhile are "
      "buffered up to {} bytes, events to this node are missed)",
      self->endpoints_, self->config_.reconnect_buffer);
}

void NatsEvents::on_closed(natsConnection*, void* self_ptr) {
  auto* self = static_cast<NatsEvents*>(self_ptr);
  std::lock_guard lock(self->mu_);
  self->connection_closed_ = true;
  self->cv_.notify_all();  // under the lock: close() may free `self` once it holds the lock
}

void NatsEvents::on_reconnected(natsConnection*, void* self_ptr) {
  static_cast<NatsEvents*>(self_ptr)->node_.log.info("NATS connection back; subscriptions renewed");
}

}  // namespace ember::detail
