// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <ember/pid.hpp>
#include <ember/rpc.hpp>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "rpc/service_anchor.hpp"

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
  /// Changes on every add and remove: a cached lookup is valid while it stays the same.
  [[nodiscard]] std::uint64_t version() const noexcept {
    return version_.load(std::memory_order_acquire);
  }

 private:
  void remove_locked(const std::string& uid);

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
