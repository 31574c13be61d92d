// SPDX-License-Identifier: Apache-2.0
#include "gate/session_directory.hpp"

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_core.hpp"
#include "rpc/leased_keys.hpp"
#include "rpc/messaging.hpp"

namespace ember::gate {

namespace {

// Claims block on the coordinator for a round trip each, so a gateway runs several at once:
// one claimer gets about 1.4 k logins/s from a local etcd, eight about 4.5 k (docs/gateway.md).
// A backend only looks players up.
constexpr std::size_t kGatewayWorkers = 8;
constexpr std::size_t kBackendWorkers = 1;
// A player's binding stays cached until a push through it fails; the cache forgets arbitrary
// entries beyond this many.
constexpr std::size_t kCacheLimit = 200'000;

std::string key_of(std::string_view uid) {
  std::string key = "sessions/";
  key += uid;
  return key;
}

std::string encode(const Binding& binding) {
  SessionBinding out;
  out.set_gate_node(binding.gate_node);
  out.set_session_id(binding.session_id);
  return out.SerializeAsString();
}

std::optional<Binding> decode(const std::string& bytes) {
  SessionBinding in;
  if (!in.ParseFromString(bytes) || in.gate_node().empty() || in.session_id().empty()) {
    return std::nullopt;
  }
  return Binding{in.gate_node(), in.session_id()};
}

Error bad_binding(std::string_view uid) {
  return Error{Errc::internal, "the session directory holds a value for uid " + std::string(uid) +
                                   " that is not an ember.gate.SessionBinding"};
}

}  // namespace

SessionDirectory::SessionDirectory(detail::NodeImpl& node) : node_(node) {}

SessionDirectory::~SessionDirectory() {
  stop();
}

SessionDirectory* SessionDirectory::of(detail::NodeImpl& node) noexcept {
  return static_cast<SessionDirectory*>(node.subsystem(detail::subsystem_slot<SessionDirectory>()));
}

Status SessionDirectory::start() {
  detail::LeasedKeys* keys = detail::Messaging::of(node_).leased_keys();
  if (keys == nullptr) {
    return {};
  }
  {
    std::lock_guard lock(jobs_mu_);
    stopping_ = false;
  }
  const std::size_t workers = node_.config.gate.enabled ? kGatewayWorkers : kBackendWorkers;
  for (std::size_t i = 0; i < workers; ++i) {
    workers_.emplace_back([this] { work(); });
  }
  keys_.store(keys, std::memory_order_release);
  if (GateCore* gate = GateCore::of(node_)) {
    keys->on_new_lease([this, gate] { (void)run([gate] { gate->renew_bindings(); }); });
  }
  return {};
}

void SessionDirectory::stop() {
  if (detail::LeasedKeys* keys = keys_.load(std::memory_order_acquire)) {
    keys->on_new_lease(nullptr);  // the cluster's keys outlive this stop, not this object
  }
  {
    std::lock_guard lock(jobs_mu_);
    stopping_ = true;
    jobs_.clear();
  }
  jobs_cv_.notify_all();
  for (auto& worker : workers_) {
    worker.join();
  }
  workers_.clear();
  keys_.store(nullptr, std::memory_order_release);
}

bool SessionDirectory::run(std::function<void()> job) {
  {
    std::lock_guard lock(jobs_mu_);
    if (stopping_ || workers_.empty()) {
      return false;
    }
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_one();
  return true;
}

void SessionDirectory::work() {
  std::unique_lock lock(jobs_mu_);
  for (;;) {
    jobs_cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) {
      return;
    }
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;  // what it holds goes outside the lock
    lock.lock();
  }
}

Result<SessionDirectory::Claim> SessionDirectory::claim(std::string_view uid, const Binding& mine) {
  auto done = keys_.load(std::memory_order_acquire)->exchange(key_of(uid), encode(mine));
  if (!done) {
    return done.error();
  }
  Claim out;
  out.revision = done->revision;
  if (done->previous) {
    // An undecodable value displaced is nobody's session: nothing to close.
    out.previous = decode(done->previous->value);
  }
  std::lock_guard lock(cache_mu_);
  if (auto it = cache_.find(std::string(uid)); it != cache_.end()) {
    it->second = mine;
  }
  return out;
}

Result<std::optional<std::int64_t>> SessionDirectory::rewrite(std::string_view uid,
                                                              const Binding& mine) {
  return keys_.load(std::memory_order_acquire)->rewrite(key_of(uid), encode(mine));
}

Status SessionDirectory::release(std::string_view uid, std::int64_t revision) {
  auto done = keys_.load(std::memory_order_acquire)->erase(key_of(uid), revision);
  if (!done) {
    return done.error();
  }
  return {};
}

Result<std::optional<Binding>> SessionDirectory::lookup(std::string_view uid, bool fresh) {
  const std::string key(uid);
  if (!fresh) {
    std::lock_guard lock(cache_mu_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      return std::optional<Binding>{it->second};
    }
  }
  detail::LeasedKeys* keys = keys_.load(std::memory_order_acquire);
  if (keys == nullptr) {
    return Error{Errc::stopping, "the node is stopping"};
  }
  auto held = keys->read(key_of(uid));
  if (!held) {
    return held.error();
  }
  if (!*held) {
    std::lock_guard lock(cache_mu_);
    cache_.erase(key);
    return std::optional<Binding>{};
  }
  std::optional<Binding> binding = decode((*held)->value);
  if (!binding) {
    return bad_binding(uid);
  }
  std::lock_guard lock(cache_mu_);
  if (cache_.size() >= kCacheLimit) {
    cache_.erase(cache_.begin());
  }
  cache_.insert_or_assign(key, *binding);
  return binding;
}

void SessionDirectory::forget(std::string_view uid, const Binding& stale) {
  std::lock_guard lock(cache_mu_);
  if (auto it = cache_.find(std::string(uid)); it != cache_.end() && it->second == stale) {
    cache_.erase(it);
  }
}

}  // namespace ember::gate
