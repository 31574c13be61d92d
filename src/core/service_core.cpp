// SPDX-License-Identifier: Apache-2.0
#include "core/service_core.hpp"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <new>
#include <thread>

#include "core/node_impl.hpp"

namespace ember::detail {
namespace {

thread_local ServiceCore* tls_current = nullptr;
thread_local int tls_lane = -1;

// Under overload requests expire by the thousand: one summary line per service at most this often.
constexpr std::chrono::seconds kExpiredWarningEvery{10};

std::string describe(const ServiceConfig& c) {
  return c.id.empty() ? c.name : c.name + "#" + c.id;
}

/// Runs a user hook; an exception becomes handler_failed. `who()` is only built on failure.
template <class Who, class Fn>
Status guarded(const char* hook, Who&& who, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Error{Errc::handler_failed, who() + ": " + hook + " threw: " + e.what()};
  } catch (...) {
    return Error{Errc::handler_failed, who() + ": " + hook + " threw a non-standard exception"};
  }
}

runtime::Mailbox::Options mailbox_options(const ServiceConfig& c) {
  runtime::Mailbox::Options o;
  o.lanes = c.worker.lanes;
  o.virtual_nodes = c.worker.virtual_nodes;
  o.user_bound = c.worker.mailbox_bound;
  o.timed_slices = c.worker.scaling != nullptr;
  return o;
}

}  // namespace

ServiceCore::ServiceCore(NodeImpl& node, Service& self, ServiceConfig config,
                         runtime::Scheduler* scheduler,
                         std::unique_ptr<runtime::Scheduler> dedicated)
    : node_(node),
      self_(self),
      config_(std::move(config)),
      logger_(node.config.node_id + "/" + describe(config_)),
      anchor_(std::make_shared<ServiceAnchor>(this)),
      dedicated_(std::move(dedicated)),
      scaling_(config_.worker.scaling
                   ? std::make_unique<Autoscaling>(config_.worker.max_lanes > 0
                                                       ? config_.worker.max_lanes
                                                       : runtime::Mailbox::kMaxLanes)
                   : nullptr),
      mailbox_(this, dedicated_ ? dedicated_.get() : scheduler, mailbox_options(config_)) {
  auto pid = std::make_shared<Pid>();
  pid->node_id = node.config.node_id;
  pid->name = config_.name;
  pid->id = config_.id;
  pid->type = config_.type;
  pid->server_id = config_.server_id;
  pid->version = config_.version;
  // In a cluster a group member is a slave until it wins the election; without a cluster every
  // service is master (there is nobody to share the role with).
  pid->master = !(config_.primary_secondary && node.config.cluster.enabled);
  pids_.push_front(std::move(pid));
  pid_.store(&pids_.front(), std::memory_order_release);
  // Nothing runs until start() opens the gates: timers set in on_init queue up meanwhile.
  mailbox_.hold();
}

std::shared_ptr<const Pid> ServiceCore::set_role(bool master, std::uint64_t epoch) {
  // Role changes are rare and short: they share the module table's lock rather than have one
  // of their own (40 bytes in every service).
  std::lock_guard lock(modules_mu_);
  auto next = std::make_shared<Pid>(*pids_.front());
  next->master = master;
  next->epoch = epoch;
  pids_.push_front(std::move(next));
  pid_.store(&pids_.front(), std::memory_order_release);
  return pids_.front();
}

void ServiceCore::notify_role(RoleChange change, std::uint64_t epoch) {
  auto* m = runtime::make_message(
      [this, change, epoch] {
        try {
          self_.on_role_change(change, epoch);
        } catch (const std::exception& e) {
          logger_.error("on_role_change threw: {}", e.what());
        }
      },
      "on_role_change");
  m->priority = Priority::system;
  (void)post(m, false);
}

ServiceCore::~ServiceCore() {
  anchor_->detach();
  delete expired_.load(std::memory_order_acquire);
}

void ServiceCore::count_expired(std::string_view method,
                                std::chrono::steady_clock::duration late) noexcept {
  using namespace std::chrono;
  node_.expired.fetch_add(1, std::memory_order_relaxed);
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
    logger_.warn(
        "{} request(s) expired in the queue and were dropped before their handler ran ({} in "
        "total; the last: '{}', {} ms past its deadline); next summary in {} s at the earliest",
        since, total, method, duration_cast<milliseconds>(late).count(),
        duration_cast<seconds>(kExpiredWarningEvery).count());
  } catch (...) {
    // Logging must not turn a dropped request into a failed lane.
  }
}

std::uint64_t ServiceCore::expired() const noexcept {
  const Expired* e = expired_.load(std::memory_order_acquire);
  return e != nullptr ? e->count.load(std::memory_order_relaxed) : 0;
}

ServiceCore* ServiceCore::current() noexcept {
  return tls_current;
}
int ServiceCore::current_lane() noexcept {
  return tls_lane;
}

std::weak_ptr<void> ServiceCore::alive_token(Module& m) {
  return m.extras_ ? std::weak_ptr<void>(m.extras_->alive) : std::weak_ptr<void>();
}

void ServiceCore::add_cleanup(Module& m, std::function<void()> fn) {
  if (m.extras_) {
    m.extras_->cleanups.push_back(std::move(fn));
  }
}

timer::TimerOwnerList* ServiceCore::timer_owner(Module& m) {
  return m.extras_ ? &m.extras_->timers : nullptr;
}

Status ServiceCore::add_method(MethodEntry entry) {
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
                                             describe(config_) + " (by module " +
                                             std::to_string(it->second->owner->id()) + ")"};
    }
    methods_->emplace(name, std::make_shared<const MethodEntry>(std::move(entry)));
    methods_version_.store(next_methods_version(), std::memory_order_release);
  }
  if (owner->extras_) {
    owner->extras_->cleanups.push_back([this, name, owner] { (void)remove_method(name, owner); });
  }
  return {};
}

Status ServiceCore::remove_method(std::string_view name, const Module* owner) {
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
struct MethodCache {
  const ServiceCore* core = nullptr;
  std::uint64_t version = 0;
  std::string name;
  std::shared_ptr<const MethodEntry> entry;
};
thread_local MethodCache tls_method_cache;
}  // namespace

const MethodEntry* ServiceCore::find_method(std::string_view name) const {
  MethodCache& cache = tls_method_cache;
  std::uint64_t version = methods_version_.load(std::memory_order_acquire);
  if (cache.core == this && cache.version == version && cache.name == name) {
    return cache.entry.get();
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
  cache.core = this;
  cache.version = version;
  cache.name.assign(name);
  cache.entry = std::move(found);
  return cache.entry.get();
}

std::uint64_t ServiceCore::next_methods_version() noexcept {
  static std::atomic<std::uint64_t> versions{0};
  return versions.fetch_add(1, std::memory_order_relaxed) + 1;
}

namespace {
// Per thread, a few services' last looked-up method: a worker that relays between services (a
// ping-pong on one thread) would make a single entry miss on every Send.
struct RequestTypeCacheEntry {
  const ServiceCore* core = nullptr;
  std::uint64_t version = 0;
  std::string name;
  ServiceCore::RequestType found;
};
thread_local std::array<RequestTypeCacheEntry, 8> tls_request_types;  // slot: top 3 hash bits
}  // namespace

ServiceCore::RequestType ServiceCore::request_type(std::string_view name) const {
  // Fibonacci hashing: cores are heap blocks of one size, so their low address bits repeat.
  const std::uint64_t slot = (static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(this)) *
                              0x9E3779B97F4A7C15ull) >>
                             61;
  RequestTypeCacheEntry& cache = tls_request_types[slot];
  const std::uint64_t version = methods_version_.load(std::memory_order_acquire);
  if (cache.core == this && cache.version == version && cache.name == name) {
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
  cache.core = this;
  cache.version = version;
  cache.name.assign(name);
  cache.found = found;
  return found;
}

bool ServiceCore::has_rpc_methods() const {
  std::shared_lock lock(methods_mu_);
  return methods_ && std::any_of(methods_->begin(), methods_->end(), [](const auto& m) {
           return m.first.rfind("Rpc", 0) == 0 || m.first.rfind("RPC", 0) == 0;
         });
}

void ServiceCore::track_coroutine(std::coroutine_handle<> root, std::function<void()> abandon) {
  std::lock_guard lock(modules_mu_);
  if (!coroutines_) {
    coroutines_ = std::make_unique<std::unordered_map<void*, std::function<void()>>>();
  }
  (*coroutines_)[root.address()] = std::move(abandon);
}

void ServiceCore::untrack_coroutine(std::coroutine_handle<> root) {
  std::lock_guard lock(modules_mu_);
  if (coroutines_) {
    coroutines_->erase(root.address());
  }
}

void ServiceCore::destroy_suspended_coroutines() {
  std::unordered_map<void*, std::function<void()>> left;
  {
    std::lock_guard lock(modules_mu_);
    if (coroutines_) {
      left.swap(*coroutines_);
    }
  }
  for (auto& [address, abandon] : left) {
    std::coroutine_handle<>::from_address(address).destroy();
    abandon();  // tells the caller 'stopping'
  }
  if (!left.empty()) {
    logger_.warn("destroyed {} handlers suspended in co_await at stop", left.size());
  }
}

timer::TimerService& ServiceCore::timers() noexcept {
  return *node_.timers;
}

Status ServiceCore::post(runtime::Message* m, bool external) noexcept {
  ServiceState s = state_.load(std::memory_order_acquire);
  if (s == ServiceState::stopped || (external && s == ServiceState::stopping)) {
    std::string why = "service " + describe(config_) +
                      (s == ServiceState::stopped ? " has stopped" : " is stopping");
    delete m;
    return Error{Errc::stopping, std::move(why)};
  }
  if (external && m->priority == Priority::user && mailbox_.bounded()) {
    m->counted = true;
  }
  if (scaling_) {
    m->enqueued_ns = ScalingProbe::now_ns();
  }
  Status pushed = mailbox_.push(m);
  if (!pushed) {
    delete m;
    return Error{pushed.error().code(),
                 "service " + describe(config_) + ": " + pushed.error().message()};
  }
  return {};
}

void ServiceCore::post_timer_fire(runtime::Message* m) noexcept {
  if (state_.load(std::memory_order_acquire) == ServiceState::stopped) {
    m->reject(Error{Errc::stopping, "service stopped"});
    delete m;
    return;
  }
  if (scaling_) {
    m->enqueued_ns = ScalingProbe::now_ns();
  }
  Status pushed = mailbox_.push(m);  // not counted: timer fires are never refused for the bound
  if (!pushed) {
    m->reject(pushed.error());
    delete m;
  }
}

void ServiceCore::execute(runtime::Message* m, int lane) noexcept {
  if (m->counted) {
    // The bound limits messages waiting, so the one starting now frees its slot.
    mailbox_.on_counted_done();
    m->counted = false;
  }
  // Autoscaled services: queueing delay, and handler wall time per message (a vDSO clock read at
  // each end; a message still running counts towards its lane's busy time as it goes).
  std::int64_t started_ns = 0;
  if (scaling_) {
    started_ns = ScalingProbe::now_ns();
    scaling_->probe.message_started(lane, m->priority, m->enqueued_ns, started_ns);
  }
  if (state_.load(std::memory_order_acquire) == ServiceState::stopped && !m->is_control()) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    m->reject(
        Error{Errc::stopping, "service " + describe(config_) + " stopped before handling it"});
  } else {
    ServiceCore* outer = tls_current;
    int outer_lane = tls_lane;
    tls_current = this;
    tls_lane = lane;
    try {
      m->run();
    } catch (const std::exception& e) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      logger_.error("handler '{}' threw: {}", m->name(), e.what());
    } catch (...) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      logger_.error("handler '{}' threw a non-standard exception", m->name());
    }
    tls_current = outer;
    tls_lane = outer_lane;
  }
  delete m;
  if (scaling_) {
    scaling_->probe.message_finished(lane, started_ns, ScalingProbe::now_ns());
  }
  if (graveyard_dirty_.load(std::memory_order_acquire)) {
    flush_graveyard();
  }
}

void ServiceCore::slice_done(int lane, std::int64_t cpu_ns) noexcept {
  scaling_->probe.record_cpu(lane, cpu_ns);
}

void ServiceCore::flush_graveyard() {
  std::vector<std::unique_ptr<Module>> dead;
  {
    std::lock_guard lock(modules_mu_);
    dead.swap(graveyard_);
    graveyard_dirty_.store(false, std::memory_order_release);
  }
  dead.clear();
}

Status ServiceCore::init() {
  Status st = guarded(
      "on_init", [this] { return describe(config_); }, [this] { return self_.on_init(); });
  if (!st) {
    return st;
  }
  state_.store(ServiceState::initialized, std::memory_order_release);
  return {};
}

Status ServiceCore::start() {
  Status st = guarded(
      "on_start", [this] { return describe(config_); }, [this] { return self_.on_start(); });
  if (!st) {
    return st;
  }
  state_.store(ServiceState::running, std::memory_order_release);
  node_.make_visible(self_);
  auto* started = runtime::make_message(
      [this] {
        try {
          self_.on_started();
        } catch (const std::exception& e) {
          logger_.error("on_started threw: {}", e.what());
        }
      },
      "on_started");
  started->priority = Priority::system;
  (void)post(started, false);
  mailbox_.release();
  if (scaling_ && scaling_->strategy) {
    node_.scaler->add(Scaler::Target{describe(config_), &mailbox_, &scaling_->probe, &logger_,
                                     config_.worker.scaling.get(), std::move(scaling_->strategy)});
    scaling_->registered = true;
  }
  return {};
}

void ServiceCore::cancel_all_timers() {
  std::vector<Module*> all;
  {
    std::lock_guard lock(modules_mu_);
    all.push_back(&self_);  // the service's own timers, too
    if (modules_) {
      for (auto& [id, m] : *modules_) {
        all.push_back(m);
      }
    }
  }
  for (Module* m : all) {
    timers().cancel_all(m->extras_->timers);
  }
}

Status ServiceCore::stop(std::chrono::milliseconds drain_timeout) {
  ServiceState before = state_.load(std::memory_order_acquire);
  if (before == ServiceState::stopping || before == ServiceState::stopped) {
    return {};
  }
  if (scaling_ && scaling_->registered) {
    // Before the drain: the lane count must not change under the drain markers.
    node_.scaler->remove(&mailbox_);
    scaling_->registered = false;
  }
  state_.store(ServiceState::stopping, std::memory_order_release);
  cancel_all_timers();
  const auto deadline = Clock::now() + drain_timeout;

  if (before == ServiceState::running) {
    struct DrainState {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
    };
    auto drain = std::make_shared<DrainState>();
    mailbox_.post_drain_markers([drain] {
      std::lock_guard lock(drain->mu);
      drain->done = true;
      drain->cv.notify_all();
    });
    auto drained = [&] {
      std::lock_guard lock(drain->mu);
      return drain->done;
    };
    bool in_time = false;
    if (runtime::Driver* driver = runtime::Driver::current()) {
      in_time = driver->run_until(drained, deadline);
    } else {
      std::unique_lock lock(drain->mu);
      in_time = drain->cv.wait_until(lock, deadline, [&] { return drain->done; });
    }
    if (!in_time) {
      logger_.warn(
          "drain did not finish within {} ms ({} messages queued); refusing the rest "
          "with 'stopping'",
          drain_timeout.count(), mailbox_.queued());
    }
  }
  state_.store(ServiceState::stopped, std::memory_order_release);
  if (before != ServiceState::running) {
    mailbox_.release();  // never started: queued messages are now rejected, not run
  }

  // Closed lanes only reject now, which is fast; a lane still busy is stuck in a handler.
  const auto grace = std::max(deadline, Clock::now() + std::chrono::seconds(1));
  auto backoff = std::chrono::microseconds(50);
  if (runtime::Driver* driver = runtime::Driver::current();
      driver != nullptr && !driver->run_until([this] { return mailbox_.quiescent(); }, grace)) {
    logger_.error("a handler is still running after the drain deadline in the simulation");
    return Error{Errc::timeout, "service " + describe(config_) + " is stuck in a handler"};
  }
  while (!mailbox_.quiescent()) {
    if (Clock::now() > grace) {
      logger_.error(
          "a handler is still running after the drain deadline; the service is left "
          "allocated and its on_release is skipped");
      return Error{Errc::timeout, "service " + describe(config_) + " is stuck in a handler"};
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(10'000));
  }

  if (std::uint64_t refused = rejected_.load(std::memory_order_relaxed); refused > 0) {
    logger_.warn("refused {} queued messages with 'stopping' (callers were told)", refused);
  }
  // Lanes are closed and idle: the tree can be released here without racing a handler.
  destroy_suspended_coroutines();
  release_tree(self_);
  flush_graveyard();
  if (dedicated_) {
    dedicated_->stop();
  }
  return {};
}

Result<ModuleId> ServiceCore::attach(Module& parent, std::unique_ptr<Module> child,
                                     ModuleId preset_id) {
  if (!child) {
    return Error{Errc::invalid_argument, "add_module: null module"};
  }
  if (child->service_ != nullptr) {
    return Error{Errc::invalid_argument, "add_module: the module is already part of a service"};
  }
  Module* raw = child.get();
  ModuleId id = 0;
  {
    std::lock_guard lock(modules_mu_);
    if (parent.released_) {
      return Error{Errc::bad_state, "add_module: parent module was released"};
    }
    if (preset_id != 0) {
      if (!modules_) {
        modules_ = std::make_unique<std::unordered_map<ModuleId, Module*>>();
      }
      if (modules_->count(preset_id) != 0) {
        return Error{Errc::already_exists, "add_module: module id " + std::to_string(preset_id) +
                                               " is taken in service " + describe(config_)};
      }
      id = preset_id;
    } else {
      if (!modules_) {
        modules_ = std::make_unique<std::unordered_map<ModuleId, Module*>>();
      }
      while (modules_->count(next_module_id_) != 0) {
        ++next_module_id_;
      }
      id = next_module_id_++;
    }
    raw->parent_ = &parent;
    raw->service_ = &self_;
    raw->id_ = id;
    raw->extras_ = std::make_unique<ModuleExtras>();
    modules_->emplace(id, raw);
    parent.children_.push_back(std::move(child));
  }
  Status st = guarded(
      "on_init", [this, id] { return describe(config_) + " module " + std::to_string(id); },
      [raw] { return raw->on_init(); });
  if (!st) {
    // Refused: undo as if it had never been added (its timers and children go too).
    (void)release(parent, id);
    return st.error();
  }
  return id;
}

Status ServiceCore::release(Module& ancestor, ModuleId id) {
  Module* target = nullptr;
  {
    std::lock_guard lock(modules_mu_);
    auto it = modules_ ? modules_->find(id) : decltype(modules_->find(id)){};
    if (!modules_ || it == modules_->end()) {
      return Error{Errc::not_found, "module " + std::to_string(id) + " is not in service " +
                                        describe(config_) + " (released already?)"};
    }
    target = it->second;
    if (target == &ancestor) {
      return Error{Errc::invalid_argument,
                   "a module cannot release itself; release it from its parent"};
    }
    bool in_subtree = false;
    for (Module* p = target->parent_; p != nullptr; p = p->parent_) {
      if (p == &ancestor) {
        in_subtree = true;
        break;
      }
    }
    if (!in_subtree) {
      return Error{Errc::not_found, "module " + std::to_string(id) + " is not below module " +
                                        std::to_string(ancestor.id_)};
    }
  }
  release_tree(*target);
  return {};
}

void ServiceCore::release_tree(Module& m) {
  for (;;) {
    Module* child = nullptr;
    {
      std::lock_guard lock(modules_mu_);
      if (m.children_.empty()) {
        break;
      }
      child = m.children_.back().get();
    }
    release_tree(*child);
  }
  {
    std::lock_guard lock(modules_mu_);
    if (m.released_) {
      return;
    }
    m.released_ = true;
  }
  try {
    m.on_release();
  } catch (const std::exception& e) {
    logger_.error("on_release of module {} threw: {}", m.id_, e.what());
  } catch (...) {
    logger_.error("on_release of module {} threw a non-standard exception", m.id_);
  }
  if (m.extras_) {
    for (auto it = m.extras_->cleanups.rbegin(); it != m.extras_->cleanups.rend(); ++it) {
      try {
        (*it)();
      } catch (...) {
        logger_.error("a release cleanup of module {} threw", m.id_);
      }
    }
    m.extras_->cleanups.clear();
    timers().cancel_all(m.extras_->timers);
  }
  if (&m == &self_) {
    std::lock_guard lock(modules_mu_);
    if (modules_) {
      modules_->erase(m.id_);
    }
    return;
  }
  std::unique_ptr<Module> owned;
  {
    std::lock_guard lock(modules_mu_);
    if (modules_) {
      modules_->erase(m.id_);
    }
    auto& siblings = m.parent_->children_;
    auto it = std::find_if(siblings.begin(), siblings.end(),
                           [&](const auto& p) { return p.get() == &m; });
    if (it != siblings.end()) {
      owned = std::move(*it);
      siblings.erase(it);
    }
    if (owned && tls_current == this) {
      // The module may be the one whose code is running right now: free it after the message.
      graveyard_.push_back(std::move(owned));
      graveyard_dirty_.store(true, std::memory_order_release);
    }
  }
}

Module* ServiceCore::find(ModuleId id) const {
  std::lock_guard lock(modules_mu_);
  if (!modules_) {
    return nullptr;
  }
  auto it = modules_->find(id);
  return it == modules_->end() ? nullptr : it->second;
}

std::vector<Module*> ServiceCore::children_of(const Module& m) const {
  std::lock_guard lock(modules_mu_);
  std::vector<Module*> out;
  out.reserve(m.children_.size());
  for (const auto& c : m.children_) {
    out.push_back(c.get());
  }
  return out;
}

}  // namespace ember::detail
