// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ember/pid.hpp>
#include <ember/rpc.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/service_anchor.hpp"

namespace ember::detail {

struct Target {
  std::shared_ptr<const Pid> pid_ptr;  // shared with the service: no copy per entry
  const Pid& pid() const { return *pid_ptr; }
  std::shared_ptr<ServiceAnchor> anchor;  // local instance; null for remote ones (cluster issue)
};

/// The node's view of every service instance it can reach: local ones now, remote ones once
/// discovery feeds it. Indexed by uid, name and type. Thread-safe.
class Repository {
 public:
  void add(std::shared_ptr<const Pid> pid, std::shared_ptr<ServiceAnchor> anchor);
  void remove(const std::string& uid);
  [[nodiscard]] std::vector<Target> select(const Selector& selector) const;
  [[nodiscard]] std::optional<Target> find(const std::string& uid) const;
  [[nodiscard]] std::size_t size() const;
  /// Every entry, by uid (the admin's cluster view).
  [[nodiscard]] std::vector<Target> all() const;
  /// Changes on every add and remove: a cached lookup is valid while it stays the same.
  [[nodiscard]] std::uint64_t version() const noexcept {
    return version_.load(std::memory_order_acquire);
  }
  /// Waits until version() differs from `seen` or `deadline` passes. True on a change.
  bool wait_changed(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) const;
  /// Calls `on_change` after every add and remove, on the thread that made it (the membership
  /// loop, a node starting or stopping a service), under the watch lock: it must only hand work
  /// on (post to a mailbox) and never call back into the repository. After unwatch returns it is
  /// not called again.
  std::uint64_t watch(std::function<void()> on_change);
  void unwatch(std::uint64_t id);
  [[nodiscard]] std::size_t watch_count() const;

 private:
  void remove_locked(const std::string& uid);
  void changed();

  // Change notification: waiters use the condition variable, services a watcher that posts.
  mutable std::mutex change_mu_;
  mutable std::condition_variable change_cv_;
  std::map<std::uint64_t, std::function<void()>> watchers_;  // change_mu_
  std::uint64_t next_watch_ = 1;                             // change_mu_

  mutable std::shared_mutex mu_;
  std::atomic<std::uint64_t> version_{0};
  // Entries of by_uid_ never move (node-based map), so the indexes hold pointers to them.
  std::map<std::string, Target> by_uid_;
  std::map<std::string, std::set<const Target*>, std::less<>> by_name_;
  std::map<std::string, std::set<const Target*>, std::less<>> by_type_;
};

/// Rendezvous hashing: the instance with the highest hash(key, uid) wins, so a key moves only
/// when its instance leaves.
std::size_t pick_by_key(const std::vector<Target>& targets, DispatchKey key);

}  // namespace ember::detail
