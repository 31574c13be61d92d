// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ember::detail {

/// Keys a subsystem keeps in the cluster's coordinator under this node's lease, so that they
/// vanish with the node (the gateway's session directory). The cluster component implements it;
/// a node outside a cluster has none. Keys are names in the subsystem's own space
/// ("sessions/alice"): the cluster places them where its own watch does not see them, so that
/// nodes are not woken by each other's keys.
///
/// Every call blocks on the coordinator (bounded by its timeout) and may run on any thread:
/// make them off I/O threads and service lanes. Without a lease (the coordinator unreachable)
/// writes fail with node_unreachable.
class LeasedKeys {
 public:
  struct Held {
    std::string value;
    std::int64_t revision = 0;  ///< the key's mod revision
  };
  struct Exchanged {
    std::int64_t revision = 0;     ///< the key's new mod revision
    std::optional<Held> previous;  ///< what it replaced
  };

  virtual ~LeasedKeys() = default;
  /// Writes `value` under this node's lease whatever held `key`, and says what it replaced:
  /// the last writer wins and learns whom it displaced.
  virtual Result<Exchanged> exchange(std::string_view key, std::string_view value) = 0;
  /// After a new lease: writes `value` under it again if `key` still holds `value` or is gone.
  /// Returns the new revision, or nullopt when another value holds the key now.
  virtual Result<std::optional<std::int64_t>> rewrite(std::string_view key,
                                                      std::string_view value) = 0;
  virtual Result<std::optional<Held>> read(std::string_view key) = 0;
  /// Deletes `key` if it is still at `revision`: a holder leaving spares its successor.
  virtual Result<bool> erase(std::string_view key, std::int64_t revision) = 0;
  /// `renew` runs each time the node takes a new lease (the old one's keys are gone or going):
  /// briefly, on the cluster's thread; it queues the rewrites and returns. One per node.
  virtual void on_new_lease(std::function<void()> renew) = 0;
};

}  // namespace ember::detail
