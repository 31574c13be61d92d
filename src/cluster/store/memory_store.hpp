// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "cluster/store/store.hpp"
#include "runtime/thread.hpp"

namespace ember::store {

/// The coordinator's store in one process, with etcd's semantics as the cluster relies on them
/// (revisions, leases whose keys go with them, compare-and-swap, election, prefix watches that
/// replay from a revision) and faults on demand: the store going away and coming back, losing
/// its data, a lease expiring. Callbacks run on the store's one thread, in revision order.
/// Every operation is atomic; nothing is persisted.
class MemoryStore final : public Store {
 public:
  MemoryStore();
  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  [[nodiscard]] std::string endpoint() const override { return "memory"; }

  Result<GetResult> get(std::string_view key) override;
  Result<GetResult> get_prefix(std::string_view prefix) override;
  Result<std::int64_t> put(std::string_view key, std::string_view value,
                           LeaseId lease = 0) override;
  Result<std::int64_t> erase(std::string_view key) override;
  Result<std::int64_t> erase_prefix(std::string_view prefix) override;
  Result<LeaseId> grant(std::chrono::seconds ttl) override;
  Status revoke(LeaseId lease) override;
  Result<std::int64_t> put_if_unchanged(std::string_view key, std::string_view value,
                                        std::int64_t mod_revision, LeaseId lease) override;
  Result<bool> erase_if_unchanged(std::string_view key, std::int64_t mod_revision) override;
  Result<Exchanged> exchange(std::string_view key, std::string_view value, LeaseId lease) override;
  Result<CreateResult> create_if_absent(std::string_view key, std::string_view value, LeaseId lease,
                                        std::string_view also_read = {}) override;
  Result<bool> erase_if_created(std::string_view key, std::int64_t create_revision) override;
  Result<std::unique_ptr<KeepAlive>> keep_alive(LeaseId lease, std::chrono::milliseconds interval,
                                                std::function<void(const Error&)> on_lost) override;
  Result<std::unique_ptr<Watch>> watch_prefix(
      std::string_view prefix, std::int64_t start_revision,
      std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
      std::function<void(const Error&)> on_end) override;

  // --- faults ---------------------------------------------------------------------------------
  /// Unavailable: every call fails with node_unreachable, watches end and keep-alives report
  /// their lease lost (as when etcd stops). Available again: calls work; leases that were not
  /// renewed meanwhile have expired by their TTL.
  void set_available(bool available);
  /// Loses every key, lease and the history, and restarts revisions at 1 (an etcd replaced by an
  /// empty one). Watches end (node_unreachable) and keep-alives report their lease lost.
  void wipe();
  /// Expires a lease now, as its TTL passing would: its keys go, its keep-alive reports it lost.
  void expire(LeaseId lease);
  /// Watch events (and every callback queued after them) arrive up to `max` late, drawn at
  /// random, as etcd's watch streams lag behind its writes; 0 (the default): at once.
  void set_watch_lag(std::chrono::milliseconds max);

  /// One process's connection to the store (a simulated node's): forwards every call, and can be
  /// severed as the death of that process severs it. Its keep-alives then stop renewing (so its
  /// leases expire by their TTL, not at once), its watches stop, and its calls fail.
  static std::shared_ptr<Store> connect(std::shared_ptr<MemoryStore> store);
  /// Severs a connection made by connect().
  static void sever(Store& connection);

 private:
  struct Lease {
    std::chrono::seconds ttl{0};
    std::chrono::steady_clock::time_point expires;
  };
  struct Registration;  // a keep-alive or a watch: what the store thread calls back
  class KeepAliveHandle;
  class WatchHandle;

  void release(Registration& reg);  // a handle's destructor: no callback of it runs afterwards
  Status check_available() const;   // under mu_
  std::int64_t apply_put(std::string_view key, std::string_view value, LeaseId lease);
  /// Deletes `key` if its `revision` (create or mod) is `expected`.
  Result<bool> erase_if(std::string_view key, std::int64_t KeyValue::*revision,
                        std::int64_t expected);
  std::int64_t apply_erase_range(std::string_view from, std::string_view to);  // [from, to)
  void drop_lease(LeaseId lease, const Error* lost);                           // under mu_
  void end_all(const Error& why);                                              // under mu_
  void publish(std::vector<Event> events, std::int64_t revision);              // under mu_
  void post(std::shared_ptr<Registration> to, std::function<void()> call);     // under mu_
  void run();

  mutable std::mutex mu_;
  runtime::CondVar wake_;
  bool available_ = true;
  bool stopping_ = false;
  std::int64_t revision_ = 1;
  LeaseId next_lease_ = 0x1000;
  std::map<std::string, KeyValue, std::less<>> kvs_;
  std::map<LeaseId, Lease> leases_;
  std::vector<std::pair<std::vector<Event>, std::int64_t>> history_;  // one entry per revision
  std::vector<std::shared_ptr<Registration>> registrations_;
  struct Call {
    std::shared_ptr<Registration> to;
    std::function<void()> run;
    std::chrono::steady_clock::time_point due;
  };
  std::deque<Call> calls_;  // in order: a later call never runs before an earlier one
  std::chrono::milliseconds watch_lag_{0};
  runtime::Thread thread_;
};

}  // namespace ember::store
