// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// The coordinator's store as the cluster uses it: a revisioned key-value store with leases,
// transactions for compare-and-swap and election, and prefix watches. etcd is the production
// implementation (cluster/etcd/); MemoryStore (cluster/store/memory_store.hpp) keeps the same
// semantics in one process, with faults on demand, for tests and the simulator.
namespace ember::store {

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

struct GetResult {
  std::vector<KeyValue> kvs;
  std::int64_t revision = 0;  ///< store revision the read saw (start a watch at revision + 1)
};

struct Event {
  enum class Type { put, erase };
  Type type = Type::put;
  KeyValue kv;  ///< for erase: key and mod_revision only
};

using LeaseId = std::int64_t;

/// The end of the key range covering every key that starts with `prefix` (etcd's convention:
/// the prefix with its last byte incremented, carrying over 0xff).
std::string prefix_end(std::string_view prefix);

class Store {
 public:
  class KeepAlive;
  class Watch;

  virtual ~Store() = default;

  /// Where the store is reached now ("127.0.0.1:2379", "memory"), for logs.
  [[nodiscard]] virtual std::string endpoint() const = 0;

  virtual Result<GetResult> get(std::string_view key) = 0;
  virtual Result<GetResult> get_prefix(std::string_view prefix) = 0;
  /// Returns the new store revision.
  virtual Result<std::int64_t> put(std::string_view key, std::string_view value,
                                   LeaseId lease = 0) = 0;
  /// Returns how many keys were deleted.
  virtual Result<std::int64_t> erase(std::string_view key) = 0;
  virtual Result<std::int64_t> erase_prefix(std::string_view prefix) = 0;

  virtual Result<LeaseId> grant(std::chrono::seconds ttl) = 0;
  /// A lease the store does not know (expired, or the store lost its data) counts as revoked.
  virtual Status revoke(LeaseId lease) = 0;

  /// Puts `value` under `key` (held by `lease`, 0: none) only if the key's mod revision is still
  /// `mod_revision` (0: the key does not exist): the compare-and-swap primitive. Returns the
  /// key's new mod revision, or 0 when it was not written (the key had changed).
  virtual Result<std::int64_t> put_if_unchanged(std::string_view key, std::string_view value,
                                                std::int64_t mod_revision, LeaseId lease) = 0;
  /// Puts `value` under `key` (held by `lease`) whatever held it, and returns in the same step
  /// what it replaced: a claim where the last writer wins and learns whom it displaced.
  struct Exchanged {
    std::int64_t mod_revision = 0;     ///< the key's new mod revision
    std::optional<KeyValue> previous;  ///< what the key held before; nullopt: nothing
  };
  virtual Result<Exchanged> exchange(std::string_view key, std::string_view value,
                                     LeaseId lease) = 0;
  /// Deletes `key` only if its mod revision is still `mod_revision` (a holder giving up a key
  /// must not delete the value that replaced its own). Returns whether it was deleted.
  virtual Result<bool> erase_if_unchanged(std::string_view key, std::int64_t mod_revision) = 0;

  /// One transaction: if `key` does not exist, put `value` under `lease`. Either way, says who
  /// holds the key now (the election primitive).
  struct CreateResult {
    bool created = false;
    std::int64_t create_revision = 0;  ///< of the key now in place
    std::string value;                 ///< the holder's value
    std::int64_t revision = 0;         ///< store revision of the transaction
    std::string also_value;  ///< value of `also_read` in the same transaction ("" if none)
  };
  /// `also_read`, when not empty, is read in the same transaction (the election reads the epoch
  /// base with it, so the base and the create revision belong to one moment).
  virtual Result<CreateResult> create_if_absent(std::string_view key, std::string_view value,
                                                LeaseId lease, std::string_view also_read = {}) = 0;

  /// Deletes `key` only if it is still the incarnation created at `create_revision` (a master
  /// giving up its key must not delete a successor's). Returns whether it was deleted.
  virtual Result<bool> erase_if_created(std::string_view key, std::int64_t create_revision) = 0;

  /// Renews `lease` every `interval` until destroyed. `on_lost` runs once (on a thread of the
  /// store's) if the lease expired or the store stopped answering.
  virtual Result<std::unique_ptr<KeepAlive>> keep_alive(
      LeaseId lease, std::chrono::milliseconds interval,
      std::function<void(const Error&)> on_lost) = 0;

  /// Watches every key under `prefix`, starting at `start_revision` (0 = now). `on_events` runs
  /// on a thread of the store's, in revision order. `on_end` runs once if the watch ends without
  /// being destroyed (store gone: node_unreachable; history compacted: bad_state with the
  /// revision).
  virtual Result<std::unique_ptr<Watch>> watch_prefix(
      std::string_view prefix, std::int64_t start_revision,
      std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
      std::function<void(const Error&)> on_end) = 0;
};

class Store::KeepAlive {
 public:
  virtual ~KeepAlive() = default;
  /// Renewals acknowledged so far.
  [[nodiscard]] virtual std::int64_t renewals() const noexcept = 0;
};

class Store::Watch {
 public:
  virtual ~Watch() = default;
};

}  // namespace ember::store
