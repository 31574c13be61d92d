// SPDX-License-Identifier: Apache-2.0
// A simulated process's connection to the in-memory store, severed as that process's death
// severs its etcd sessions.
#include <algorithm>
#include <mutex>

#include "cluster/store/memory_store.hpp"

namespace ember::store {

namespace {

// One process's connection: what it set up with the store dies with it.
class Connection final : public Store, public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(std::shared_ptr<MemoryStore> store) : store_(std::move(store)) {}

  class Handle final : public KeepAlive, public Watch {
   public:
    Handle(std::shared_ptr<Connection> owner, std::unique_ptr<KeepAlive> keep_alive,
           std::unique_ptr<Watch> watch)
        : owner_(std::move(owner)), keep_alive_(std::move(keep_alive)), watch_(std::move(watch)) {}
    ~Handle() override {
      Parts parts;
      {
        std::lock_guard lock(owner_->mu_);
        std::erase(owner_->handles_, this);
        parts = take();
      }
      // Destroyed without the connection's lock: releasing a registration waits for its callback,
      // which may be waiting for a lock whose holder asks this connection for renewals.
    }
    [[nodiscard]] std::int64_t renewals() const noexcept override {
      std::lock_guard lock(owner_->mu_);
      return keep_alive_ ? keep_alive_->renewals() : 0;
    }
    using Parts = std::pair<std::unique_ptr<KeepAlive>, std::unique_ptr<Watch>>;
    Parts take() {  // owner_->mu_ held
      return {std::move(keep_alive_), std::move(watch_)};
    }

   private:
    std::shared_ptr<Connection> owner_;
    std::unique_ptr<KeepAlive> keep_alive_;
    std::unique_ptr<Watch> watch_;
  };

  void sever() {
    std::shared_ptr<MemoryStore> store;
    std::vector<Handle::Parts> parts;
    {
      std::lock_guard lock(mu_);
      for (Handle* h : handles_) {
        parts.push_back(h->take());
      }
      store.swap(store_);
    }
    parts.clear();  // outside the lock, as in ~Handle
  }

  [[nodiscard]] std::string endpoint() const override { return "memory"; }
  Result<GetResult> get(std::string_view key) override {
    if (auto s = live()) {
      return s->get(key);
    }
    return gone();
  }
  Result<GetResult> get_prefix(std::string_view prefix) override {
    if (auto s = live()) {
      return s->get_prefix(prefix);
    }
    return gone();
  }
  Result<std::int64_t> put(std::string_view key, std::string_view value, LeaseId lease) override {
    if (auto s = live()) {
      return s->put(key, value, lease);
    }
    return gone();
  }
  Result<std::int64_t> erase(std::string_view key) override {
    if (auto s = live()) {
      return s->erase(key);
    }
    return gone();
  }
  Result<std::int64_t> erase_prefix(std::string_view prefix) override {
    if (auto s = live()) {
      return s->erase_prefix(prefix);
    }
    return gone();
  }
  Result<LeaseId> grant(std::chrono::seconds ttl) override {
    if (auto s = live()) {
      return s->grant(ttl);
    }
    return gone();
  }
  Status revoke(LeaseId lease) override {
    if (auto s = live()) {
      return s->revoke(lease);
    }
    return gone();
  }
  Result<std::int64_t> put_if_unchanged(std::string_view key, std::string_view value,
                                        std::int64_t mod_revision, LeaseId lease) override {
    if (auto s = live()) {
      return s->put_if_unchanged(key, value, mod_revision, lease);
    }
    return gone();
  }
  Result<Exchanged> exchange(std::string_view key, std::string_view value, LeaseId lease) override {
    if (auto s = live()) {
      return s->exchange(key, value, lease);
    }
    return gone();
  }
  Result<bool> erase_if_unchanged(std::string_view key, std::int64_t mod_revision) override {
    if (auto s = live()) {
      return s->erase_if_unchanged(key, mod_revision);
    }
    return gone();
  }
  Result<CreateResult> create_if_absent(std::string_view key, std::string_view value, LeaseId lease,
                                        std::string_view also_read) override {
    if (auto s = live()) {
      return s->create_if_absent(key, value, lease, also_read);
    }
    return gone();
  }
  Result<bool> erase_if_created(std::string_view key, std::int64_t create_revision) override {
    if (auto s = live()) {
      return s->erase_if_created(key, create_revision);
    }
    return gone();
  }
  Result<std::unique_ptr<KeepAlive>> keep_alive(
      LeaseId lease, std::chrono::milliseconds interval,
      std::function<void(const Error&)> on_lost) override {
    auto s = live();
    if (!s) {
      return gone();
    }
    auto inner = s->keep_alive(lease, interval, std::move(on_lost));
    if (!inner) {
      return std::move(inner).error();
    }
    return track(std::move(*inner), nullptr);
  }
  Result<std::unique_ptr<Watch>> watch_prefix(
      std::string_view prefix, std::int64_t start_revision,
      std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
      std::function<void(const Error&)> on_end) override {
    auto s = live();
    if (!s) {
      return gone();
    }
    auto inner = s->watch_prefix(prefix, start_revision, std::move(on_events), std::move(on_end));
    if (!inner) {
      return std::move(inner).error();
    }
    auto handle = track(nullptr, std::move(*inner));
    return std::unique_ptr<Watch>(static_cast<Handle*>(handle.release()));
  }

 private:
  // The store while connected; null once severed (a severed connection no longer keeps the
  // store alive).
  std::shared_ptr<MemoryStore> live() const {
    std::lock_guard lock(mu_);
    return store_;
  }
  static Error gone() {
    return Error{Errc::node_unreachable, "the connection to the store is severed"};
  }
  std::unique_ptr<KeepAlive> track(std::unique_ptr<KeepAlive> keep_alive,
                                   std::unique_ptr<Watch> watch) {
    auto handle =
        std::make_unique<Handle>(shared_from_this(), std::move(keep_alive), std::move(watch));
    std::lock_guard lock(mu_);
    handles_.push_back(handle.get());
    return handle;
  }

  std::shared_ptr<MemoryStore> store_;
  mutable std::mutex mu_;
  std::vector<Handle*> handles_;
};

}  // namespace

std::shared_ptr<Store> MemoryStore::connect(std::shared_ptr<MemoryStore> store) {
  return std::make_shared<Connection>(std::move(store));
}

void MemoryStore::sever(Store& connection) {
  if (auto* c = dynamic_cast<Connection*>(&connection)) {
    c->sever();
  }
}

}  // namespace ember::store
