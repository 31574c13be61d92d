// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <ember/config.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include "rpc/remote.hpp"

namespace ember::detail {

class NodeImpl;

/// The "nats" event backend: events travel through a NATS server on the seed's subjects,
/// `<GlobalPrefix>.<type>` and `<ServerPrefix>.<type>.<serverId>`, as serialized wire.EventFrame.
/// The node subscribes to a subject only while one of its services subscribes to that channel
/// (on demand), so the server sends it nothing else. The node's own publications are not echoed
/// back (its local subscribers already have them).
class NatsEvents final : public EventRouter {
 public:
  /// Connects to one of NatsConf.Endpoints. Fails, naming them, when none answers within
  /// NatsConf.Timeout; once connected, reconnects on its own for as long as the node runs.
  /// `address`: where this node's services can be called ("" without a cluster).
  static Result<std::shared_ptr<NatsEvents>> connect(NodeImpl& node, std::string address);
  ~NatsEvents() override;
  NatsEvents(const NatsEvents&) = delete;
  NatsEvents& operator=(const NatsEvents&) = delete;

  void want(EventType type, EventScope scope, bool wanted) override;
  void forward(const AnyMessage& payload, const EventInfo& info) override;
  Status flush(std::chrono::milliseconds timeout) override;
  [[nodiscard]] EventStats event_stats() const override;
  void close() override;

  [[nodiscard]] std::string subject(EventType type, EventScope scope) const;

 private:
  NatsEvents(NodeImpl& node, std::string address);
  void run();  // applies subscription wishes, off the bus's lock
  void subscribe(const std::string& subject);
  void unsubscribe(const std::string& subject);
  static void on_message(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* self);
  static void on_complete(void* self);
  static void on_error(natsConnection* nc, natsSubscription* sub, natsStatus status, void* self);
  static void on_disconnected(natsConnection* nc, void* self);
  static void on_reconnected(natsConnection* nc, void* self);
  static void on_closed(natsConnection* nc, void* self);

  NodeImpl& node_;
  const NatsConfig config_;
  const std::string address_;
  std::string endpoints_;  // for logs

  // forward() holds it shared while it uses the connection; close() exclusively to end it.
  mutable std::shared_mutex conn_mu_;
  natsConnection* conn_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, bool> wishes_;             // subject -> wanted, not applied yet
  std::map<std::string, natsSubscription*> subs_;  // applied subscriptions
  int running_handlers_ = 0;  // subscriptions whose handler may still run (until on_complete)
  // Written under mu_ (the worker and flush() wait on it); atomic because connection callbacks
  // read it without locking.
  std::atomic<bool> closing_{false};
  bool applying_ = false;  // the worker holds wishes taken from wishes_ and not yet applied
  // The library's last callback for the connection ran: only then may `this` go (its callbacks
  // arrive on its own thread, after natsConnection_Close returned, even after Destroy).
  bool connection_closed_ = false;
  std::int64_t dropped_by_closed_ = 0;  // slow-consumer drops of subscriptions already gone

  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> send_failures_{0};
  std::atomic<std::uint64_t> receive_errors_{0};
  std::thread worker_;
};

}  // namespace ember::detail
