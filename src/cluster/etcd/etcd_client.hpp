// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ember::etcd {

/// etcd v3 over gRPC, reduced to what discovery and election need. gRPC headers stay in the .cpp:
/// this header is cheap to include.
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

struct Options {
  std::vector<std::string> endpoints;  ///< "127.0.0.1:2379"; the first that answers is used
  /// Per request, and for connecting. A request made while etcd is unreachable waits for the
  /// connection up to this long (and then fails with timeout), which is what lets it drive the
  /// reconnection.
  std::chrono::milliseconds timeout{3000};
};

/// How the client's connection to etcd fares (read any time).
struct ClientStats {
  std::uint64_t requests_failed = 0;   ///< unary requests that failed for a transport reason
  std::uint64_t channel_rebuilds = 0;  ///< connections replaced after failing requests
  std::string endpoint;                ///< the endpoint in use now
};

/// The end of the key range covering every key that starts with `prefix` (etcd's convention:
/// the prefix with its last byte incremented, carrying over 0xff).
std::string prefix_end(std::string_view prefix);

class Client {
 public:
  class KeepAlive;
  class Watch;

  /// Connects to the first endpoint that answers within `options.timeout`. unavailable endpoints:
  /// node_unreachable naming them.
  static Result<std::unique_ptr<Client>> connect(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// The endpoint in use now (it changes when the connection is rebuilt on another endpoint).
  [[nodiscard]] std::string endpoint() const;
  [[nodiscard]] ClientStats stats() const;

  Result<GetResult> get(std::string_view key);
  Result<GetResult> get_prefix(std::string_view prefix);
  /// Returns the new store revision.
  Result<std::int64_t> put(std::string_view key, std::string_view value, LeaseId lease = 0);
  /// Returns how many keys were deleted.
  Result<std::int64_t> erase(std::string_view key);
  Result<std::int64_t> erase_prefix(std::string_view prefix);

  Result<LeaseId> grant(std::chrono::seconds ttl);
  /// A lease etcd does not know (expired, or etcd lost its data) counts as revoked.
  Status revoke(LeaseId lease);

  /// Puts `value` under `key` only if the key's mod revision is still `mod_revision` (0: the key
  /// does not exist). Returns whether it was written (the compare-and-swap primitive).
  Result<bool> put_if_unchanged(std::string_view key, std::string_view value,
                                std::int64_t mod_revision);

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
  Result<CreateResult> create_if_absent(std::string_view key, std::string_view value, LeaseId lease,
                                        std::string_view also_read = {});

  /// Deletes `key` only if it is still the incarnation created at `create_revision` (a master
  /// giving up its key must not delete a successor's). Returns whether it was deleted.
  Result<bool> erase_if_created(std::string_view key, std::int64_t create_revision);

  /// Renews `lease` every `interval` on a background stream until destroyed. `on_lost` runs once
  /// (on the keep-alive thread) if the lease expired or etcd stopped answering.
  Result<std::unique_ptr<KeepAlive>> keep_alive(LeaseId lease, std::chrono::milliseconds interval,
                                                std::function<void(const Error&)> on_lost);

  /// Watches every key under `prefix`, starting at `start_revision` (0 = now). `on_events` runs on
  /// the watch thread, in revision order. `on_end` runs once if the watch ends without being
  /// destroyed (etcd gone: node_unreachable; history compacted: bad_state with the revision).
  Result<std::unique_ptr<Watch>> watch_prefix(
      std::string_view prefix, std::int64_t start_revision,
      std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
      std::function<void(const Error&)> on_end);

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Client::KeepAlive {
 public:
  virtual ~KeepAlive() = default;
  /// Renewals acknowledged so far.
  [[nodiscard]] virtual std::int64_t renewals() const noexcept = 0;
};

class Client::Watch {
 public:
  virtual ~Watch() = default;
};

}  // namespace ember::etcd
