// SPDX-License-Identifier: Apache-2.0
#include "rpc/remote_origins.hpp"

namespace ember::detail {

std::shared_ptr<RemoteOrigin> RemoteOrigins::find_or_add(std::string_view identity) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(std::string(identity));
  if (it != entries_.end()) {
    return it->second.origin;
  }
  if (++changes_ % 1024 == 0) {
    purge_locked(Clock::now());
  }
  auto origin = std::make_shared<RemoteOrigin>(std::string(identity));
  entries_.emplace(std::string(identity), Entry{origin, {}});
  return origin;
}

void RemoteOrigins::end(std::string_view identity) {
  const auto now = Clock::now();
  std::lock_guard lock(mu_);
  auto [it, added] = entries_.try_emplace(std::string(identity));
  if (added) {
    it->second.origin = std::make_shared<RemoteOrigin>(std::string(identity));
  }
  it->second.origin->end();
  it->second.ended_at = now;
  ends_heard_.fetch_add(1, std::memory_order_relaxed);
  if (++changes_ % 1024 == 0) {
    purge_locked(now);
  }
}

std::size_t RemoteOrigins::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void RemoteOrigins::purge_locked(Clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& e = it->second;
    const bool open_and_unused = e.ended_at == Clock::time_point{} && e.origin.use_count() == 1;
    const bool ended_long_ago =
        e.ended_at != Clock::time_point{} && now - e.ended_at > remember_ended_;
    it = open_and_unused || ended_long_ago ? entries_.erase(it) : std::next(it);
  }
}

}  // namespace ember::detail
