// SPDX-License-Identifier: Apache-2.0
#include "cluster/cluster_keys.hpp"

namespace ember::detail {

ClusterKeys::ClusterKeys(std::shared_ptr<store::Store> store, std::string root)
    : store_(std::move(store)), root_(std::move(root) + ".") {}

std::string ClusterKeys::path(std::string_view key) const {
  std::string out = root_;
  out += key;
  return out;
}

Result<store::LeaseId> ClusterKeys::lease() const {
  const store::LeaseId lease = lease_.load(std::memory_order_acquire);
  if (lease == 0) {
    return Error{Errc::node_unreachable, "this node has no session with the coordinator now"};
  }
  return lease;
}

Result<LeasedKeys::Exchanged> ClusterKeys::exchange(std::string_view key, std::string_view value) {
  Result<store::LeaseId> lease = this->lease();
  if (!lease) {
    return lease.error();
  }
  auto done = store_->exchange(path(key), value, *lease);
  if (!done) {
    return done.error();
  }
  Exchanged out;
  out.revision = done->mod_revision;
  if (done->previous) {
    out.previous = Held{std::move(done->previous->value), done->previous->mod_revision};
  }
  return out;
}

Result<std::optional<std::int64_t>> ClusterKeys::rewrite(std::string_view key,
                                                         std::string_view value) {
  Result<store::LeaseId> lease = this->lease();
  if (!lease) {
    return lease.error();
  }
  const std::string full = path(key);
  // Twice at most: the key may go (its old lease revoked or expiring) between the read and the
  // swap, and then it is absent, which is ours to take.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto held = store_->get(full);
    if (!held) {
      return held.error();
    }
    std::int64_t seen = 0;
    if (!held->kvs.empty()) {
      if (held->kvs[0].value != value) {
        return std::optional<std::int64_t>{};  // another holder took it meanwhile
      }
      seen = held->kvs[0].mod_revision;
    }
    auto written = store_->put_if_unchanged(full, value, seen, *lease);
    if (!written) {
      return written.error();
    }
    if (*written != 0) {
      return std::optional<std::int64_t>{*written};
    }
  }
  return std::optional<std::int64_t>{};
}

Result<std::optional<LeasedKeys::Held>> ClusterKeys::read(std::string_view key) {
  auto held = store_->get(path(key));
  if (!held) {
    return held.error();
  }
  if (held->kvs.empty()) {
    return std::optional<Held>{};
  }
  return std::optional<Held>{Held{std::move(held->kvs[0].value), held->kvs[0].mod_revision}};
}

Result<bool> ClusterKeys::erase(std::string_view key, std::int64_t revision) {
  return store_->erase_if_unchanged(path(key), revision);
}

void ClusterKeys::on_new_lease(std::function<void()> renew) {
  std::lock_guard lock(renew_mu_);
  renew_ = std::move(renew);
}

void ClusterKeys::lease_started(store::LeaseId lease) {
  lease_.store(lease, std::memory_order_release);
  std::lock_guard lock(renew_mu_);
  if (renew_) {
    renew_();
  }
}

}  // namespace ember::detail
