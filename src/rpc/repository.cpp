// SPDX-License-Identifier: Apache-2.0
#include "rpc/repository.hpp"

#include <algorithm>
#include <mutex>

#include "runtime/scheduler.hpp"

namespace ember::detail {

void Repository::add(std::shared_ptr<const Pid> pid, std::shared_ptr<ServiceAnchor> anchor) {
  std::string uid = pid->uid();
  std::unique_lock lock(mu_);
  remove_locked(uid);  // re-adding an instance replaces it
  std::string name = pid->name;
  std::string type = pid->type;
  auto [it, inserted] = by_uid_.emplace(std::move(uid), Target{std::move(pid), std::move(anchor)});
  by_name_[name].insert(&it->second);
  by_type_[type].insert(&it->second);
  version_.fetch_add(1, std::memory_order_release);
  lock.unlock();
  changed();
}

void Repository::remove(const std::string& uid) {
  std::unique_lock lock(mu_);
  remove_locked(uid);
  version_.fetch_add(1, std::memory_order_release);
  lock.unlock();
  changed();
}

void Repository::changed() {
  {
    // Taken after the version moved: a waiter that saw the old version is either not yet
    // checking (and will see the new one) or already asleep (and gets the notify).
    std::lock_guard lock(change_mu_);
    for (auto& [id, on_change] : watchers_) {
      on_change();
    }
  }
  change_cv_.notify_all();
}

bool Repository::wait_changed(std::uint64_t seen,
                              std::chrono::steady_clock::time_point deadline) const {
  if (runtime::Driver* driver = runtime::Driver::current()) {
    return driver->run_until([&] { return version() != seen; }, deadline);
  }
  std::unique_lock lock(change_mu_);
  return change_cv_.wait_until(lock, deadline, [&] { return version() != seen; });
}

std::uint64_t Repository::watch(std::function<void()> on_change) {
  std::lock_guard lock(change_mu_);
  std::uint64_t id = next_watch_++;
  watchers_.emplace(id, std::move(on_change));
  return id;
}

void Repository::unwatch(std::uint64_t id) {
  std::lock_guard lock(change_mu_);
  watchers_.erase(id);
}

std::size_t Repository::watch_count() const {
  std::lock_guard lock(change_mu_);
  return watchers_.size();
}

void Repository::remove_locked(const std::string& uid) {
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) {
    return;
  }
  const Target* target = &it->second;
  auto drop = [&](auto& index, const std::string& key) {
    auto entry = index.find(key);
    if (entry != index.end()) {
      entry->second.erase(target);
      if (entry->second.empty()) {
        index.erase(entry);
      }
    }
  };
  drop(by_name_, it->second.pid().name);
  drop(by_type_, it->second.pid().type);
  by_uid_.erase(it);
}

std::optional<Target> Repository::find(const std::string& uid) const {
  std::shared_lock lock(mu_);
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::size_t Repository::size() const {
  std::shared_lock lock(mu_);
  return by_uid_.size();
}

std::vector<Target> Repository::all() const {
  std::shared_lock lock(mu_);
  std::vector<Target> out;
  out.reserve(by_uid_.size());
  for (const auto& [uid, target] : by_uid_) {
    out.push_back(target);
  }
  return out;
}

std::vector<Target> Repository::select(const Selector& s) const {
  std::vector<Target> out;
  auto matches = [&](const Target& t) {
    const Pid& p = t.pid();
    if (!s.name_.empty() && p.name != s.name_) {
      return false;
    }
    if (!s.type_.empty() && p.type != s.type_) {
      return false;
    }
    if (s.has_id_ && p.id != s.id_) {
      return false;
    }
    if (s.has_server_id_ && p.server_id != s.server_id_) {
      return false;
    }
    if (s.uid_.empty()) {  // an exact pid reaches the instance whatever its role
      if (s.role_ == Role::master && !p.master) {
        return false;
      }
      if (s.role_ == Role::slave && p.master) {
        return false;
      }
    }
    return !s.predicate_ || s.predicate_(p);
  };
  {
    std::shared_lock lock(mu_);
    if (!s.uid_.empty()) {
      auto it = by_uid_.find(s.uid_);
      if (it != by_uid_.end() && matches(it->second)) {
        out.push_back(it->second);
      }
    } else if (!s.name_.empty() || !s.type_.empty()) {
      const auto& index = !s.name_.empty() ? by_name_ : by_type_;
      auto it = index.find(!s.name_.empty() ? s.name_ : s.type_);
      if (it != index.end()) {
        for (const Target* t : it->second) {
          if (matches(*t)) {
            out.push_back(*t);
          }
        }
        // Index order is by address: sort by uid so results do not depend on allocation.
        std::sort(out.begin(), out.end(),
                  [](const Target& a, const Target& b) { return a.pid().uid() < b.pid().uid(); });
      }
    } else {
      for (const auto& [uid, t] : by_uid_) {
        if (matches(t)) {
          out.push_back(t);
        }
      }
    }
  }
  if (s.key_.has_value() && out.size() > 1) {
    Target chosen = out[pick_by_key(out, s.key_)];
    out.clear();
    out.push_back(std::move(chosen));
  }
  return out;
}

std::size_t pick_by_key(const std::vector<Target>& targets, DispatchKey key) {
  std::size_t best = 0;
  std::uint64_t best_score = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    std::uint64_t score = hash_key(key.hash() ^ hash_key(targets[i].pid().uid()));
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace ember::detail
