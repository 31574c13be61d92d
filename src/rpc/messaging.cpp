// SPDX-License-Identifier: Apache-2.0
#include "rpc/messaging.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <ember/node.hpp>
#include <new>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"

namespace ember::detail {

namespace {
// Under overload requests expire by the thousand: one summary line per service at most this often.
constexpr std::chrono::seconds kExpiredWarningEvery{10};

std::atomic<ClusterFactory> installed_cluster_factory{nullptr};
// Indexed by EventBackend; only cluster and nats are ever installed.
std::array<std::atomic<EventRouterFactory>, 4> installed_event_router_factories{};
}  // namespace

void install_cluster_factory(ClusterFactory factory) noexcept {
  installed_cluster_factory.store(factory, std::memory_order_release);
}
ClusterFactory cluster_factory() noexcept {
  return installed_cluster_factory.load(std::memory_order_acquire);
}

void install_event_router_factory(EventBackend backend, EventRouterFactory factory) noexcept {
  installed_event_router_factories.at(static_cast<std::size_t>(backend))
      .store(factory, std::memory_order_release);
}
EventRouterFactory event_router_factory(EventBackend backend) noexcept {
  return installed_event_router_factories.at(static_cast<std::size_t>(backend))
      .load(std::memory_order_acquire);
}

// ---------------------------------------------------------------------------------------------
// The node's part

Messaging::Messaging(NodeImpl& node) : node_(node) {}

Messaging::~Messaging() = default;

Messaging& Messaging::of(NodeImpl& node) noexcept {
  return *static_cast<Messaging*>(node.subsystem(subsystem_slot<Messaging>()));
}

Status Messaging::start() {
  const EventBackend backend = event_backend(node_.config);
  if (backend == EventBackend::local) {
    return {};
  }
  EventRouterFactory make = event_router_factory(backend);
  if (make == nullptr) {
    const bool nats = backend == EventBackend::nats;
    return Error{Errc::invalid_argument,
                 fmt::format("EventBusConf.Backend is \"{0}\", but this program does not "
                             "link Ember's {1} component: link ember::{0} (or ember::ember) "
                             "with CMake, or ember-{0} with pkg-config",
                             nats ? "nats" : "cluster", nats ? "NATS" : "cluster")};
  }
  auto router = make(node_);
  if (!router) {
    return std::move(router).error();
  }
  event_router_ = std::move(*router);
  events_.set_on_channel(
      [router = event_router_.get()](EventType type, EventScope scope, bool wanted) {
        router->want(type, scope, wanted);
      });
  return {};
}

void Messaging::service_visible(ServiceCore& service) {
  repository_.add(service.shared_pid(), service.anchor());
}

void Messaging::service_hidden(ServiceCore& service) {
  repository_.remove(service.pid().uid());
}

void Messaging::service_drained(ServiceCore& service) {
  if (ServiceMessaging* state = ServiceMessaging::find(service)) {
    state->destroy_suspended_coroutines();
  }
}

Status Messaging::settle() {
  // The cluster backend's subscriptions are keys the cluster subsystem has flushed already.
  if (event_router_ && event_backend(node_.config) == EventBackend::nats) {
    return event_router_->flush(node_.config.events.nats.timeout);
  }
  return {};
}

void Messaging::stop() {
  events_.set_on_channel(nullptr);
  if (event_router_) {
    event_router_->close();
  }
  if (remote_ && owns_remote_) {
    remote_->stop();
  }
}

void Messaging::add_stats(NodeStats& stats) const {
  stats.late_replies = late_replies_.load(std::memory_order_relaxed);
  stats.pending_calls = pending_calls_.load(std::memory_order_relaxed);
  stats.expired = expired_.load(std::memory_order_relaxed);
  stats.services = repository_.size();
  if (event_router_) {
    stats.events = event_router_->event_stats();
  }
  stats.events.published = events_.published.load(std::memory_order_relaxed);
  stats.events.delivered = events_.delivered.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// A service's part

ServiceMessaging::~ServiceMessaging() {
  delete expired_.load(std::memory_order_acquire);
  delete results_.load(std::memory_order_acquire);
}

ServiceMessaging* ServiceMessaging::find(const ServiceCore& service) noexcept {
  return static_cast<ServiceMessaging*>(service.attachment(attachment_slot<ServiceMessaging>()));
}

ServiceMessaging& ServiceMessaging::of(ServiceCore& service) {
  if (ServiceMessaging* state = find(service)) {
    return *state;
  }
  return static_cast<ServiceMessaging&>(service.attach_state(
      attachment_slot<ServiceMessaging>(), std::make_unique<ServiceMessaging>(service)));
}

Status ServiceMessaging::add_method(MethodEntry entry) {
  Module* owner = entry.owner;
  std::string name = entry.name;
  if (name.empty()) {
    return Error{Errc::invalid_argument, "handle: empty method name"};
  }
  {
    std::unique_lock lock(methods_mu_);
    if (!methods_) {
      methods_ = std::make_unique<MethodTable>();
    }
    auto it = methods_->find(name);
    if (it != methods_->end()) {
      return Error{Errc::already_exists, "method '" + name + "' is already registered in service " +
                                             service_.self().name()};
    }
    methods_->emplace(name, std::make_shared<const MethodEntry>(std::move(entry)));
    methods_version_.store(next_methods_version(), std::memory_order_release);
  }
  if (owner != nullptr) {
    ServiceCore::add_cleanup(*owner, [this, name, owner] { (void)remove_method(name, owner); });
  }
  return {};
}

Status ServiceMessaging::remove_method(std::string_view name, const Module* owner) {
  std::unique_lock lock(methods_mu_);
  auto it = methods_ ? methods_->find(name) : MethodTable::iterator{};
  if (!methods_ || it == methods_->end() || (owner != nullptr && it->second->owner != owner)) {
    return Error{Errc::not_found,
                 "no method '" + std::string(name) + "' registered by this module"};
  }
  methods_->erase(it);
  methods_version_.store(next_methods_version(), std::memory_order_release);
  return {};
}

namespace {
// A few entries, because a worker thread alternates between services (a ping-pong pair, a
// producer and its sink): with one entry every message missed, and the miss takes the table's
// lock and copies a shared_ptr.
struct MethodCache {
  struct Slot {
    const ServiceMessaging* owner = nullptr;
    std::uint64_t version = 0;
    std::string name;
    std::shared_ptr<const MethodEntry> entry;
  };
  std::array<Slot, 4> slots;
  std::size_t next_victim = 0;
};
thread_local MethodCache tls_method_cache;
}  // namespace

const MethodEntry* ServiceMessaging::find_method(std::string_view name) const {
  MethodCache& cache = tls_method_cache;
  std::uint64_t version = methods_version_.load(std::memory_order_acquire);
  for (const MethodCache::Slot& slot : cache.slots) {
    if (slot.owner == this && slot.version == version && slot.name == name) {
      return slot.entry.get();
    }
  }
  std::shared_ptr<const MethodEntry> found;
  {
    std::shared_lock lock(methods_mu_);
    if (methods_) {
      if (auto it = methods_->find(name); it != methods_->end()) {
        found = it->second;
      }
    }
  }
  MethodCache::Slot& slot = cache.slots[cache.next_victim];
  cache.next_victim = (cache.next_victim + 1) % cache.slots.size();
  slot.owner = this;
  slot.version = version;
  slot.name.assign(name);
  slot.entry = std::move(found);
  return slot.entry.get();
}

std::uint64_t ServiceMessaging::next_methods_version() noexcept {
  static std::atomic<std::uint64_t> versions{0};
  return versions.fetch_add(1, std::memory_order_relaxed) + 1;
}

namespace {
// Per thread, a few services' last looked-up method: a worker that relays between services (a
// ping-pong on one thread) would make a single entry miss on every Send.
struct RequestTypeCacheEntry {
  const ServiceMessaging* owner = nullptr;
  std::uint64_t version = 0;
  std::string name;
  ServiceMessaging::RequestType found;
};
thread_local std::array<RequestTypeCacheEntry, 8> tls_request_types;  // slot: top 3 hash bits
}  // namespace

ServiceMessaging::RequestType ServiceMessaging::request_type(std::string_view name) const {
  // Fibonacci hashing: the blocks are heap blocks of one size, so their low address bits repeat.
  const std::uint64_t slot = (static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(this)) *
                              0x9E3779B97F4A7C15ull) >>
                             61;
  RequestTypeCacheEntry& cache = tls_request_types[slot];
  const std::uint64_t version = methods_version_.load(std::memory_order_acquire);
  if (cache.owner == this && cache.version == version && cache.name == name) {
    return cache.found;
  }
  RequestType found;
  {
    std::shared_lock lock(methods_mu_);
    if (methods_) {
      if (auto it = methods_->find(name); it != methods_->end()) {
        found = RequestType{it->second->request_typeid, it->second->request_type};
      }
    }
  }
  cache.owner = this;
  cache.version = version;
  cache.name.assign(name);
  cache.found = found;
  return found;
}

bool ServiceMessaging::has_rpc_methods() const {
  std::shared_lock lock(methods_mu_);
  return methods_ && std::any_of(methods_->begin(), methods_->end(), [](const auto& m) {
           return m.first.rfind("Rpc", 0) == 0 || m.first.rfind("RPC", 0) == 0;
         });
}

void ServiceMessaging::track_coroutine(std::coroutine_handle<> root,
                                       std::function<void()> abandon) {
  std::unique_lock lock(methods_mu_);
  if (!coroutines_) {
    coroutines_ = std::make_unique<std::unordered_map<void*, std::function<void()>>>();
  }
  (*coroutines_)[root.address()] = std::move(abandon);
}

void ServiceMessaging::untrack_coroutine(std::coroutine_handle<> root) {
  std::unique_lock lock(methods_mu_);
  if (coroutines_) {
    coroutines_->erase(root.address());
  }
}

void ServiceMessaging::destroy_suspended_coroutines() {
  std::unordered_map<void*, std::function<void()>> left;
  {
    std::unique_lock lock(methods_mu_);
    if (coroutines_) {
      left.swap(*coroutines_);
    }
  }
  for (auto& [address, abandon] : left) {
    std::coroutine_handle<>::from_address(address).destroy();
    abandon();  // tells the caller 'stopping'
  }
  if (!left.empty()) {
    service_.logger().warn("destroyed {} handlers suspended in co_await at stop", left.size());
  }
}

void ServiceMessaging::count_expired(std::string_view method,
                                     std::chrono::steady_clock::duration late) noexcept {
  using namespace std::chrono;
  Messaging::of(service_.node()).count_expired();
  Expired* e = expired_.load(std::memory_order_acquire);
  if (e == nullptr) {
    auto* fresh = new (std::nothrow) Expired;
    if (fresh == nullptr) {
      return;  // counted for the node; the service's figure and its warning are best effort
    }
    if (expired_.compare_exchange_strong(e, fresh, std::memory_order_acq_rel)) {
      e = fresh;
    } else {
      delete fresh;  // another lane won; `e` is its block
    }
  }
  const std::uint64_t total = e->count.fetch_add(1, std::memory_order_relaxed) + 1;
  const std::int64_t now =
      duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
  std::int64_t next = e->next_warning_ns.load(std::memory_order_relaxed);
  if (now < next || !e->next_warning_ns.compare_exchange_strong(
                        next, now + duration_cast<nanoseconds>(kExpiredWarningEvery).count(),
                        std::memory_order_relaxed)) {
    return;
  }
  const std::uint64_t since = total - e->reported.exchange(total, std::memory_order_relaxed);
  try {
    service_.logger().warn(
        "{} request(s) expired in the queue and were dropped before their handler ran ({} in "
        "total; the last: '{}', {} ms past its deadline); next summary in {} s at the earliest",
        since, total, method, duration_cast<milliseconds>(late).count(),
        duration_cast<seconds>(kExpiredWarningEvery).count());
  } catch (...) {
    // Logging must not turn a dropped request into a failed lane.
  }
}

std::uint64_t ServiceMessaging::expired() const noexcept {
  const Expired* e = expired_.load(std::memory_order_acquire);
  return e != nullptr ? e->count.load(std::memory_order_relaxed) : 0;
}

void ServiceMessaging::count_result(Errc code) noexcept {
  Results* r = results_.load(std::memory_order_acquire);
  if (r == nullptr) {
    auto* fresh = new (std::nothrow) Results{};
    if (fresh == nullptr) {
      return;  // a figure for the admin: best effort
    }
    if (results_.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) {
      r = fresh;
    } else {
      delete fresh;
    }
  }
  const auto index = static_cast<std::size_t>(code);
  if (index < kCodes) {
    (*r)[index].fetch_add(1, std::memory_order_relaxed);
  }
}

std::array<std::uint64_t, ServiceMessaging::kCodes> ServiceMessaging::results() const noexcept {
  std::array<std::uint64_t, kCodes> out{};
  if (const Results* r = results_.load(std::memory_order_acquire)) {
    for (std::size_t i = 0; i < kCodes; ++i) {
      out[i] = (*r)[i].load(std::memory_order_relaxed);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// What handlers and modules call

void track_coroutine(std::coroutine_handle<> root, std::function<void()> abandon) {
  if (ServiceCore* core = ServiceCore::current()) {
    ServiceMessaging::of(*core).track_coroutine(root, std::move(abandon));
  }
}

void untrack_coroutine(std::coroutine_handle<> root) {
  if (ServiceCore* core = ServiceCore::current()) {
    if (ServiceMessaging* state = ServiceMessaging::find(*core)) {
      state->untrack_coroutine(root);
    }
  }
}

Status register_method(Module& owner, MethodEntry entry) {
  ServiceCore* core = ServiceCore::of(owner);
  if (core == nullptr) {
    return Error{Errc::bad_state, "handle(" + entry.name +
                                      "): the module is not attached to a service yet (register "
                                      "handlers from on_init or later)"};
  }
  return detail::ServiceMessaging::of(*core).add_method(std::move(entry));
}

}  // namespace ember::detail

namespace ember {

// Service's messaging accessors live with messaging: the kernel's Service knows no method table.
bool Service::is_private() const {
  const auto* state = core_ ? detail::ServiceMessaging::find(*core_) : nullptr;
  return state == nullptr || !state->has_rpc_methods();
}

std::uint64_t Service::expired_requests() const {
  const auto* state = core_ ? detail::ServiceMessaging::find(*core_) : nullptr;
  return state != nullptr ? state->expired() : 0;
}

Status Module::unhandle(std::string_view name) {
  detail::ServiceCore* c = core();
  if (c == nullptr) {
    return Error{Errc::bad_state,
                 "unhandle(" + std::string(name) + "): the module is not attached to a service"};
  }
  // Another module's handler of that name is not this module's to remove: not_found, as for a
  // name nobody registered.
  return detail::ServiceMessaging::of(*c).remove_method(name, this);
}

}  // namespace ember
