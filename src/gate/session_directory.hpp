// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/subsystem.hpp"
#include "ops/observable.hpp"
#include "runtime/thread.hpp"

namespace ember::detail {
class NodeImpl;
class LeasedKeys;
}  // namespace ember::detail

namespace ember::gate {

/// Where a player's session is: the session directory's value for a UID.
struct Binding {
  std::string gate_node;
  std::string session_id;
  friend bool operator==(const Binding&, const Binding&) = default;
};

/// The cluster-wide session directory: UID -> (gateway node, session), kept in the coordinator
/// under each gateway's lease (LeasedKeys "sessions/<uid>"), so a gateway's bindings vanish
/// with it. A login writes its binding whatever held it and learns in the same step whom it
/// displaced (the last writer wins); a closing session deletes its binding only if it is still
/// its own. Every node of a program that links the gateway has one: backends look players up
/// here to push to them, through a cache that only a failed push invalidates.
///
/// Outside a cluster there is no directory: the node's gateway is the only one, and its own
/// registry decides.
class SessionDirectory final : public detail::Subsystem, public ops::Observable {
 public:
  explicit SessionDirectory(detail::NodeImpl& node);
  ~SessionDirectory() override;
  static SessionDirectory* of(detail::NodeImpl& node) noexcept;

  // ops::Observable (gate_ops.cpp), on a node without a gateway of its own: where a UID is
  // logged in, and kicking it there.
  std::optional<Result<std::string>> query(std::string_view topic,
                                           const ops::Request& request) const override;
  std::optional<Result<std::string>> act(std::string_view action,
                                         const ops::Request& request) override;

  [[nodiscard]] std::string_view name() const noexcept override { return "gate directory"; }
  /// Takes the cluster's keys (none outside a cluster) and starts the workers.
  Status start() override;
  /// Drops the work still queued (the node's lease, revoked next, takes its bindings) and joins
  /// the workers; a store call under way ends within the store's timeout.
  void stop() override;

  [[nodiscard]] bool clustered() const noexcept {
    return keys_.load(std::memory_order_acquire) != nullptr;
  }

  /// Runs `job` on one of the workers, which may block on the coordinator. False (and `job`
  /// dropped) once the directory stops.
  bool run(std::function<void()> job);

  // --- blocking calls (bounded by the coordinator's timeout). claim, rewrite and release are
  // for the workers (run()); lookup is for any thread while clustered() --------------------------
  struct Claim {
    std::int64_t revision = 0;
    std::optional<Binding> previous;  ///< the session this claim displaced
  };
  Result<Claim> claim(std::string_view uid, const Binding& mine);
  /// After a new lease: the binding again, if it is still this one's. nullopt: another session
  /// took the UID meanwhile.
  Result<std::optional<std::int64_t>> rewrite(std::string_view uid, const Binding& mine);
  Status release(std::string_view uid, std::int64_t revision);
  /// The binding of `uid`, from the cache unless `fresh`; nullopt when nobody is logged in.
  Result<std::optional<Binding>> lookup(std::string_view uid, bool fresh);
  /// Drops a cached binding that proved stale (its gateway no longer holds that session).
  void forget(std::string_view uid, const Binding& stale);

 private:
  void work();

  detail::NodeImpl& node_;
  // Null outside a cluster, and after stop: the cluster's keys outlive the stop only.
  std::atomic<detail::LeasedKeys*> keys_{nullptr};

  std::mutex jobs_mu_;
  runtime::CondVar jobs_cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<runtime::Thread> workers_;

  std::mutex cache_mu_;
  std::unordered_map<std::string, Binding> cache_;
};

}  // namespace ember::gate
