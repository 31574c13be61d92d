// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>

#include "cluster/store/store.hpp"
#include "rpc/remote.hpp"

namespace ember {
class Logger;
}

namespace ember::detail {

class ClusterLink;

/// The "cluster" event backend: which nodes want which event channel (global.<type> or
/// server.<id>.<type>), and the sending of each event to those nodes over the cluster transport.
///
/// A node's wishes are keys <prefix><node id>/<channel> holding its address, written under the
/// node's lease so that they vanish with the node. Membership drives this object: it writes the
/// due keys from its loop while its session is up, and hands over the channel keys of its
/// snapshots and watch. Nothing here talks to the store on its own.
class EventChannels final : public EventRouter {
 public:
  /// `wake` asks the membership loop to run a pass (a wish is waiting to be written).
  EventChannels(std::string prefix, std::string node_id, std::shared_ptr<ClusterLink> link,
                std::function<void()> wake);

  // EventRouter.
  void want(EventType type, EventScope scope, bool wanted) override;
  void forward(const AnyMessage& payload, const EventInfo& info) override;
  [[nodiscard]] EventStats event_stats() const override;
  void close() override {}  // frames go out with the transport; the lease takes the keys

  // Driven by the membership loop.
  /// A new lease: the old one took this node's keys with it, so every wish is written again.
  void session_opened();
  /// Writes the due keys under `lease`. On a failure the rest stays due for the next pass.
  void write_due(store::Store& store, store::LeaseId lease, const Logger& log);
  /// Nothing is waiting to be written.
  [[nodiscard]] bool settled() const;
  [[nodiscard]] bool owns(const std::string& key) const { return key.starts_with(prefix_); }
  /// A full snapshot follows: what other nodes want is rebuilt from it.
  void forget_others();
  /// A channel key of the snapshot or the watch (`erased`: the key is gone).
  void apply(const std::string& key, const std::string& value, bool erased);

  static std::string channel_name(EventType type, EventScope scope);

 private:
  const std::string prefix_;  // <root>/events/
  const std::string node_id_;
  const std::shared_ptr<ClusterLink> link_;
  const std::function<void()> wake_;

  mutable std::mutex mu_;
  std::set<std::string> wanted_;     // channels this node's services subscribe to
  std::map<std::string, bool> due_;  // channel -> present, not yet written

  // Channel -> (node id -> address) of the other nodes that subscribed. Read by publishers on
  // any thread.
  mutable std::shared_mutex others_mu_;
  std::map<std::string, std::map<std::string, std::string>> others_;
};

}  // namespace ember::detail
