// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "cluster/store/store.hpp"
#include "rpc/leased_keys.hpp"

namespace ember::detail {

/// The cluster's LeasedKeys: a subsystem's keys under `<root>.<name>` (outside the prefix the
/// membership watches, so a login on one gateway wakes no other node), held by the membership's
/// current lease. The membership tells it when a lease starts and ends.
class ClusterKeys final : public LeasedKeys {
 public:
  ClusterKeys(std::shared_ptr<store::Store> store, std::string root);

  Result<Exchanged> exchange(std::string_view key, std::string_view value) override;
  Result<std::optional<std::int64_t>> rewrite(std::string_view key,
                                              std::string_view value) override;
  Result<std::optional<Held>> read(std::string_view key) override;
  Result<bool> erase(std::string_view key, std::int64_t revision) override;
  void on_new_lease(std::function<void()> renew) override;

  /// The membership's session: a new lease (its keys must be written again), or none (0).
  void lease_started(store::LeaseId lease);
  void lease_ended() { lease_.store(0, std::memory_order_release); }

 private:
  [[nodiscard]] std::string path(std::string_view key) const;
  Result<store::LeaseId> lease() const;

  const std::shared_ptr<store::Store> store_;
  const std::string root_;  // "<cluster prefix>."
  std::atomic<store::LeaseId> lease_{0};
  std::mutex renew_mu_;
  std::function<void()> renew_;
};

}  // namespace ember::detail
