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

#include "cluster/store/store.hpp"

namespace ember::etcd {

// etcd v3 over gRPC, reduced to what discovery and election need: the production Store. gRPC
// headers stay in the .cpp: this header is cheap to include.
using store::Event;
using store::GetResult;
using store::KeyValue;
using store::LeaseId;
using store::prefix_end;

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

class Client final : public store::Store {
 public:
  /// Connects to the first endpoint that answers within `options.timeout`. unavailable endpoints:
  /// node_unreachable naming them.
  static Result<std::unique_ptr<Client>> connect(Options options);
  ~Client() override;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// The endpoint in use now (it changes when the connection is rebuilt on another endpoint).
  [[nodiscard]] std::string endpoint() const override;
  [[nodiscard]] ClientStats stats() const;

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
  /// Renews on a background gRPC stream.
  Result<std::unique_ptr<KeepAlive>> keep_alive(LeaseId lease, std::chrono::milliseconds interval,
                                                std::function<void(const Error&)> on_lost) override;
  Result<std::unique_ptr<Watch>> watch_prefix(
      std::string_view prefix, std::int64_t start_revision,
      std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
      std::function<void(const Error&)> on_end) override;

  struct Impl;

 private:
  // Deletes `key` if its revision of kind `target` (an etcd Compare target) is `revision`.
  Result<bool> erase_if(std::string_view key, int target, std::int64_t revision);
  // A put; `previous`: it also returns what it replaced.
  Result<Exchanged> exchange(std::string_view key, std::string_view value, LeaseId lease,
                             bool previous);
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember::etcd
