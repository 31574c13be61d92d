// SPDX-License-Identifier: Apache-2.0
#include "cluster/store/memory_store.hpp"

#include <algorithm>
#include <atomic>

namespace ember::store {

using Clock = ember::Clock;

namespace {
/// The end of the range [key, end) that holds `key` alone.
std::string only(std::string_view key) {
  std::string end(key);
  end.push_back('\0');
  return end;
}
/// Whether `key` lies in [from, to); a `to` of one NUL byte (prefix_end("")) means no end, as
/// in etcd.
bool in_range(std::string_view key, std::string_view from, std::string_view to) {
  return key >= from && (to == std::string_view("\0", 1) || key < to);
}
}  // namespace

/// A keep-alive or a watch. The store thread runs its callbacks holding `call_mu`, so a handle's
/// destructor that takes it knows no callback of it runs any more.
struct MemoryStore::Registration {
  std::mutex call_mu;
  std::atomic<bool> cancelled{false};
  // keep-alive
  LeaseId lease = 0;
  std::chrono::milliseconds interval{0};
  Clock::time_point next_renewal;
  std::atomic<std::int64_t> renewals{0};
  std::function<void(const Error&)> on_lost;
  // watch
  bool watch = false;
  std::string from;
  std::string to;
  std::function<void(std::vector<Event>&&, std::int64_t)> on_events;
  std::function<void(const Error&)> on_end;
};

void MemoryStore::release(Registration& reg) {
  {
    std::lock_guard lock(mu_);
    reg.cancelled.store(true);
  }
  // A callback that destroys its own handle runs on the store thread, holding call_mu.
  if (!thread_.is_current()) {
    std::lock_guard wait_for_callback(reg.call_mu);
  }
}

class MemoryStore::KeepAliveHandle final : public Store::KeepAlive {
 public:
  KeepAliveHandle(MemoryStore& store, std::shared_ptr<Registration> reg)
      : store_(store), reg_(std::move(reg)) {}
  ~KeepAliveHandle() override { store_.release(*reg_); }
  [[nodiscard]] std::int64_t renewals() const noexcept override { return reg_->renewals.load(); }

 private:
  MemoryStore& store_;
  std::shared_ptr<Registration> reg_;
};

class MemoryStore::WatchHandle final : public Store::Watch {
 public:
  WatchHandle(MemoryStore& store, std::shared_ptr<Registration> reg)
      : store_(store), reg_(std::move(reg)) {}
  ~WatchHandle() override { store_.release(*reg_); }

 private:
  MemoryStore& store_;
  std::shared_ptr<Registration> reg_;
};

MemoryStore::MemoryStore() : thread_([this] { run(); }) {}

MemoryStore::~MemoryStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

Status MemoryStore::check_available() const {
  if (!available_) {
    return Error{Errc::node_unreachable, "the memory store is unavailable"};
  }
  return {};
}

std::int64_t MemoryStore::apply_put(std::string_view key, std::string_view value, LeaseId lease) {
  const std::int64_t rev = ++revision_;
  auto it = kvs_.find(key);
  if (it == kvs_.end()) {
    it = kvs_.emplace(std::string(key), KeyValue{}).first;
    it->second.key = std::string(key);
    it->second.create_revision = rev;
  }
  KeyValue& kv = it->second;
  kv.value = std::string(value);
  kv.mod_revision = rev;
  kv.version += 1;
  kv.lease = lease;
  publish({Event{Event::Type::put, kv}}, rev);
  return rev;
}

std::int64_t MemoryStore::apply_erase_range(std::string_view from, std::string_view to) {
  auto first = kvs_.lower_bound(from);
  auto last = to == std::string_view("\0", 1) ? kvs_.end() : kvs_.lower_bound(to);
  if (first == last) {
    return 0;
  }
  const std::int64_t rev = ++revision_;
  std::vector<Event> events;
  for (auto it = first; it != last; ++it) {
    Event e{Event::Type::erase, {}};
    e.kv.key = it->first;
    e.kv.mod_revision = rev;
    events.push_back(std::move(e));
  }
  const auto count = static_cast<std::int64_t>(events.size());
  kvs_.erase(first, last);
  publish(std::move(events), rev);
  return count;
}

void MemoryStore::publish(std::vector<Event> events, std::int64_t revision) {
  for (const auto& reg : registrations_) {
    if (!reg->watch) {
      continue;
    }
    std::vector<Event> mine;
    for (const auto& e : events) {
      if (in_range(e.kv.key, reg->from, reg->to)) {
        mine.push_back(e);
      }
    }
    if (!mine.empty()) {
      post(reg, [reg, mine = std::move(mine), revision]() mutable {
        reg->on_events(std::move(mine), revision);
      });
    }
  }
  history_.emplace_back(std::move(events), revision);
}

void MemoryStore::post(std::shared_ptr<Registration> to, std::function<void()> call) {
  auto due = Clock::now();
  if (watch_lag_.count() > 0) {
    due += std::chrono::milliseconds(runtime::random_seed() %
                                     static_cast<std::uint64_t>(watch_lag_.count() + 1));
  }
  if (!calls_.empty()) {
    due = std::max(due, calls_.back().due);
  }
  calls_.push_back(Call{std::move(to), std::move(call), due});
  wake_.notify_all();
}

void MemoryStore::set_watch_lag(std::chrono::milliseconds max) {
  std::lock_guard lock(mu_);
  watch_lag_ = std::max(max, std::chrono::milliseconds{0});
}

void MemoryStore::drop_lease(LeaseId lease, const Error* lost) {
  if (leases_.erase(lease) == 0) {
    return;
  }
  std::vector<std::string> keys;
  for (const auto& [key, kv] : kvs_) {
    if (kv.lease == lease) {
      keys.push_back(key);
    }
  }
  if (!keys.empty()) {
    const std::int64_t rev = ++revision_;
    std::vector<Event> events;
    for (const auto& key : keys) {
      Event e{Event::Type::erase, {}};
      e.kv.key = key;
      e.kv.mod_revision = rev;
      events.push_back(std::move(e));
      kvs_.erase(key);
    }
    publish(std::move(events), rev);
  }
  if (lost != nullptr) {
    auto it = std::remove_if(registrations_.begin(), registrations_.end(), [&](const auto& reg) {
      if (reg->watch || reg->lease != lease) {
        return false;
      }
      post(reg, [reg, why = *lost] { reg->on_lost(why); });
      return true;
    });
    registrations_.erase(it, registrations_.end());
  }
}

void MemoryStore::end_all(const Error& why) {
  for (const auto& reg : registrations_) {
    post(reg, [reg, why] {
      if (reg->watch) {
        reg->on_end(why);
      } else {
        reg->on_lost(why);
      }
    });
  }
  registrations_.clear();
}

Result<GetResult> MemoryStore::get(std::string_view key) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  GetResult out;
  out.revision = revision_;
  if (auto it = kvs_.find(key); it != kvs_.end()) {
    out.kvs.push_back(it->second);
  }
  return out;
}

Result<GetResult> MemoryStore::get_prefix(std::string_view prefix) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  GetResult out;
  out.revision = revision_;
  const std::string end = prefix_end(prefix);
  for (auto it = kvs_.lower_bound(prefix); it != kvs_.end() && in_range(it->first, prefix, end);
       ++it) {
    out.kvs.push_back(it->second);
  }
  return out;
}

Result<std::int64_t> MemoryStore::put(std::string_view key, std::string_view value, LeaseId lease) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  if (lease != 0 && !leases_.contains(lease)) {
    return Error{Errc::not_found, "requested lease not found"};
  }
  return apply_put(key, value, lease);
}

Result<std::int64_t> MemoryStore::erase(std::string_view key) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  return apply_erase_range(key, only(key));
}

Result<std::int64_t> MemoryStore::erase_prefix(std::string_view prefix) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  return apply_erase_range(prefix, prefix_end(prefix));
}

Result<LeaseId> MemoryStore::grant(std::chrono::seconds ttl) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  const LeaseId id = ++next_lease_;
  leases_[id] = Lease{ttl, Clock::now() + ttl};
  wake_.notify_all();
  return id;
}

Status MemoryStore::revoke(LeaseId lease) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st;
  }
  const Error revoked{Errc::not_found, "the lease was revoked"};
  drop_lease(lease, &revoked);
  return {};
}

Result<std::int64_t> MemoryStore::put_if_unchanged(std::string_view key, std::string_view value,
                                                   std::int64_t mod_revision, LeaseId lease) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  auto it = kvs_.find(key);
  const std::int64_t now = it == kvs_.end() ? 0 : it->second.mod_revision;
  if (now != mod_revision) {
    return std::int64_t{0};
  }
  if (lease != 0 && !leases_.contains(lease)) {
    return Error{Errc::not_found, "requested lease not found"};
  }
  return apply_put(key, value, lease);
}

Result<Store::Exchanged> MemoryStore::exchange(std::string_view key, std::string_view value,
                                               LeaseId lease) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  if (lease != 0 && !leases_.contains(lease)) {
    return Error{Errc::not_found, "requested lease not found"};
  }
  Exchanged out;
  if (auto it = kvs_.find(key); it != kvs_.end()) {
    out.previous = it->second;
  }
  out.mod_revision = apply_put(key, value, lease);
  return out;
}

Result<bool> MemoryStore::erase_if_unchanged(std::string_view key, std::int64_t mod_revision) {
  return erase_if(key, &KeyValue::mod_revision, mod_revision);
}

Result<Store::CreateResult> MemoryStore::create_if_absent(std::string_view key,
                                                          std::string_view value, LeaseId lease,
                                                          std::string_view also_read) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  CreateResult out;
  if (!kvs_.contains(key)) {
    if (lease != 0 && !leases_.contains(lease)) {
      return Error{Errc::not_found, "requested lease not found"};
    }
    apply_put(key, value, lease);
    out.created = true;
  }
  const KeyValue& holder = kvs_.find(key)->second;
  out.create_revision = holder.create_revision;
  out.value = holder.value;
  out.revision = revision_;
  if (!also_read.empty()) {
    if (auto it = kvs_.find(also_read); it != kvs_.end()) {
      out.also_value = it->second.value;
    }
  }
  return out;
}

Result<bool> MemoryStore::erase_if_created(std::string_view key, std::int64_t create_revision) {
  return erase_if(key, &KeyValue::create_revision, create_revision);
}

Result<bool> MemoryStore::erase_if(std::string_view key, std::int64_t KeyValue::*revision,
                                   std::int64_t expected) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  auto it = kvs_.find(key);
  if (it == kvs_.end() || it->second.*revision != expected) {
    return false;
  }
  apply_erase_range(key, only(key));
  return true;
}

Result<std::unique_ptr<Store::KeepAlive>> MemoryStore::keep_alive(
    LeaseId lease, std::chrono::milliseconds interval, std::function<void(const Error&)> on_lost) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  if (!leases_.contains(lease)) {
    return Error{Errc::not_found, "requested lease not found"};
  }
  auto reg = std::make_shared<Registration>();
  reg->lease = lease;
  reg->interval = std::max(interval, std::chrono::milliseconds(1));
  reg->next_renewal = Clock::now();  // the first renewal at once, as etcd's stream does
  reg->on_lost = std::move(on_lost);
  registrations_.push_back(reg);
  wake_.notify_all();
  return std::unique_ptr<KeepAlive>(new KeepAliveHandle(*this, std::move(reg)));
}

Result<std::unique_ptr<Store::Watch>> MemoryStore::watch_prefix(
    std::string_view prefix, std::int64_t start_revision,
    std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
    std::function<void(const Error&)> on_end) {
  std::lock_guard lock(mu_);
  if (Status st = check_available(); !st) {
    return st.error();
  }
  auto reg = std::make_shared<Registration>();
  reg->watch = true;
  reg->from = std::string(prefix);
  reg->to = prefix_end(prefix);
  reg->on_events = std::move(on_events);
  reg->on_end = std::move(on_end);
  if (start_revision > 0) {  // replay what happened since, in order, before anything new
    for (const auto& [events, revision] : history_) {
      if (revision < start_revision) {
        continue;
      }
      std::vector<Event> mine;
      for (const auto& e : events) {
        if (in_range(e.kv.key, reg->from, reg->to)) {
          mine.push_back(e);
        }
      }
      if (!mine.empty()) {
        post(reg, [reg, mine = std::move(mine), revision = revision]() mutable {
          reg->on_events(std::move(mine), revision);
        });
      }
    }
  }
  registrations_.push_back(reg);
  return std::unique_ptr<Watch>(new WatchHandle(*this, std::move(reg)));
}

void MemoryStore::set_available(bool available) {
  std::lock_guard lock(mu_);
  if (available_ == available) {
    return;
  }
  available_ = available;
  if (!available) {
    end_all(Error{Errc::node_unreachable, "the memory store is unavailable"});
  }
  wake_.notify_all();
}

void MemoryStore::wipe() {
  std::lock_guard lock(mu_);
  end_all(Error{Errc::node_unreachable, "the memory store lost its data"});
  kvs_.clear();
  leases_.clear();
  history_.clear();
  revision_ = 1;
}

void MemoryStore::expire(LeaseId lease) {
  std::lock_guard lock(mu_);
  const Error expired{Errc::timeout, "the lease expired"};
  drop_lease(lease, &expired);
}

void MemoryStore::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const auto now = Clock::now();
    // Renew what is kept alive; then expire what was not renewed in time (nothing is renewed
    // while the store is unavailable, so an outage longer than a TTL loses the lease).
    if (available_) {
      for (const auto& reg : registrations_) {
        if (!reg->watch && !reg->cancelled.load() && reg->next_renewal <= now) {
          if (auto it = leases_.find(reg->lease); it != leases_.end()) {
            it->second.expires = now + it->second.ttl;
            reg->renewals.fetch_add(1);
          }
          reg->next_renewal = now + reg->interval;
        }
      }
    }
    std::vector<LeaseId> expired;
    for (const auto& [id, lease] : leases_) {
      if (lease.expires <= now) {
        expired.push_back(id);
      }
    }
    const Error lost{Errc::timeout, "the lease expired"};
    for (LeaseId id : expired) {
      drop_lease(id, &lost);
    }
    registrations_.erase(std::remove_if(registrations_.begin(), registrations_.end(),
                                        [](const auto& reg) { return reg->cancelled.load(); }),
                         registrations_.end());
    while (!calls_.empty() && calls_.front().due <= Clock::now()) {
      auto reg = std::move(calls_.front().to);
      auto call = std::move(calls_.front().run);
      calls_.pop_front();
      lock.unlock();
      {
        std::lock_guard running(reg->call_mu);
        if (!reg->cancelled.load()) {
          call();
        }
      }
      lock.lock();
    }
    auto next = now + std::chrono::seconds(1);
    for (const auto& [id, lease] : leases_) {
      next = std::min(next, lease.expires);
    }
    for (const auto& reg : registrations_) {
      if (!reg->watch) {
        next = std::min(next, reg->next_renewal);
      }
    }
    if (!calls_.empty()) {
      next = std::min(next, calls_.front().due);
    }
    wake_.wait_until(lock, next, [&] {
      return stopping_ || (!calls_.empty() && calls_.front().due <= Clock::now());
    });
  }
}

}  // namespace ember::store
