// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ember/node.hpp>
#include <ember/scaling.hpp>
#include <optional>
#include <thread>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"

namespace ember {

namespace detail {
ServiceFactory find_factory(std::string_view class_name);
std::string unknown_class(const std::string& class_name);

namespace {
std::string where(const NodeConfig& node, const ServiceConfig& c) {
  if (c.line > 0 && !node.source.empty()) {
    return node.source + ":" + std::to_string(c.line) + ": ";
  }
  return {};
}
}  // namespace

std::size_t allocate_subsystem_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed);
}

std::size_t allocate_attachment_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  const std::size_t slot = next.fetch_add(1, std::memory_order_relaxed);
  if (slot >= kAttachmentSlots) {
    // A subsystem added without raising kAttachmentSlots: a bug in Ember, caught by any test.
    std::fputs("ember: more per-service attachment types than kAttachmentSlots\n", stderr);
    std::abort();
  }
  return slot;
}

NodeImpl::NodeImpl(NodeConfig cfg)
    : config(std::move(cfg)), log(config.node_id), local_zone(timer::TimeZone::utc()) {
  if (auto zone = timer::TimeZone::load("Local")) {
    local_zone = std::move(*zone);
  }
  auto pid = std::make_shared<Pid>();
  pid->node_id = config.node_id;
  node_pid = std::move(pid);
}

void NodeImpl::add_subsystem(std::size_t slot, std::shared_ptr<Subsystem> subsystem) {
  if (by_slot_.size() <= slot) {
    by_slot_.resize(slot + 1, nullptr);
  }
  by_slot_[slot] = subsystem.get();
  subsystems_.push_back(std::move(subsystem));
}

Status NodeImpl::start_subsystems() {
  for (; started_subsystems_ < subsystems_.size(); ++started_subsystems_) {
    Subsystem& s = *subsystems_[started_subsystems_];
    if (Status st = s.start(); !st) {
      stop_subsystems();
      return st;
    }
  }
  return {};
}

void NodeImpl::stop_subsystems() {
  while (started_subsystems_ > 0) {
    subsystems_[--started_subsystems_]->stop();
  }
}

void NodeImpl::make_visible(Service& s) {
  {
    std::unique_lock lock(visible_mu);
    s.core_->visible.store(true, std::memory_order_release);
  }
  each_subsystem([&](Subsystem& sub) { sub.service_visible(*s.core_); });
}

void NodeImpl::make_invisible(Service& s) {
  each_subsystem_reversed([&](Subsystem& sub) { sub.service_hidden(*s.core_); });
  // Under the lock: a poster that found the service finishes its post before we go on.
  std::unique_lock lock(visible_mu);
  s.core_->visible.store(false, std::memory_order_release);
}

void NodeImpl::start_runtime(int threads) {
  timers = std::make_unique<timer::TimerService>(config.timer_tick);
  driver = runtime::Driver::current();
  if (driver != nullptr) {
    scheduler = std::make_unique<runtime::Scheduler>(*driver, config.node_id);
    driver->attach(*timers);
    return;
  }
  scheduler = std::make_unique<runtime::Scheduler>(threads, config.node_id);
  timers->start();
}

void NodeImpl::stop_time_driven() {
  timers->stop();
  if (driver != nullptr) {
    driver->detach(*timers);
  }
}

void NodeImpl::forget(Service& s) {
  std::unique_lock lock(visible_mu);
  auto it = by_identity.find(std::pair<std::string, std::string>{s.name(), s.service_id()});
  if (it != by_identity.end() && it->second == &s) {
    by_identity.erase(it);
  }
}

bool NodeImpl::is_visible(const Service& s) {
  return s.core_ != nullptr && s.core_->visible.load(std::memory_order_acquire);
}

Service* NodeImpl::find_visible(std::string_view name, std::string_view id) const {
  std::shared_lock lock(visible_mu);
  auto it =
      by_identity.find(std::pair<std::string, std::string>{std::string(name), std::string(id)});
  if (it == by_identity.end() || !is_visible(*it->second)) {
    return nullptr;
  }
  return it->second;
}

namespace {
/// WorkerConf.Scaling as the parser would leave it: Min/Max defaults from WorkerNum/MaxWorkerNum,
/// every bound checked. YAML configs arrive resolved; configs built in code may not.
Status resolve_scaling(WorkerConfig& worker) {
  ScalingConfig sc = *worker.scaling;
  sc.min_lanes = sc.min_lanes == 0 ? worker.lanes : sc.min_lanes;
  sc.max_lanes = sc.max_lanes == 0 ? worker.max_lanes : sc.max_lanes;
  auto bad = [](const std::string& what) {
    return Error{Errc::invalid_argument, "WorkerConf.Scaling: " + what};
  };
  if (sc.min_lanes < 1 || sc.max_lanes <= sc.min_lanes ||
      sc.max_lanes > runtime::Mailbox::kMaxLanes) {
    return bad("Min and Max must satisfy 1 <= Min < Max <= " +
               std::to_string(runtime::Mailbox::kMaxLanes) + " (Min " +
               std::to_string(sc.min_lanes) + ", Max " + std::to_string(sc.max_lanes) + ")");
  }
  if (worker.lanes < sc.min_lanes || worker.lanes > sc.max_lanes) {
    return bad("WorkerNum " + std::to_string(worker.lanes) + " is outside Min..Max");
  }
  if (worker.max_lanes != 0 && sc.max_lanes > worker.max_lanes) {
    return bad("Max " + std::to_string(sc.max_lanes) + " is above MaxWorkerNum " +
               std::to_string(worker.max_lanes));
  }
  if (sc.interval < std::chrono::milliseconds(10) || sc.cooldown.count() < 0 || sc.hysteresis < 1 ||
      sc.grow.of(1) < 1 || sc.shrink.of(1) < 1 ||
      !(sc.shrink_max_busy >= 0 && sc.shrink_max_busy <= 1)) {
    return bad(
        "Interval >= 10ms, Cooldown >= 0, Hysteresis >= 1, steps >= 1 and ShrinkMaxBusy "
        "in 0..1 are required");
  }
  worker.scaling = std::make_shared<const ScalingConfig>(std::move(sc));
  return {};
}
}  // namespace

Status NodeImpl::create_and_init(std::unique_ptr<Service> service, ServiceConfig cfg,
                                 std::vector<Service*>& out) {
  if (cfg.name.empty()) {
    cfg.name = cfg.class_name;
  }
  if (cfg.name.empty()) {
    return Error{Errc::invalid_argument, "a service needs a ServiceName or ClassName"};
  }
  std::unique_ptr<ScalingStrategy> strategy;
  if (cfg.worker.scaling) {
    if (Status st = resolve_scaling(cfg.worker); !st) {
      return Error{Errc::invalid_argument, where(config, cfg) + st.error().message()};
    }
    // Built here, not by the parser: strategies of the program's own are registered by then.
    auto built = make_scaling_strategy(cfg.worker.scaling->strategy);
    if (!built) {
      return Error{Errc::invalid_argument, where(config, cfg) + built.error().message()};
    }
    strategy = std::move(*built);
  }
  {
    std::unique_lock lock(visible_mu);
    if (!by_identity.emplace(std::pair{cfg.name, cfg.id}, service.get()).second) {
      return Error{Errc::already_exists, where(config, cfg) + "service " + describe(cfg) +
                                             " already exists on node " + config.node_id};
    }
  }
  std::unique_ptr<runtime::Scheduler> dedicated;
  if (cfg.pinned) {
    // An autoscaled pinned service gets a thread per lane it may grow to (idle ones park).
    const int threads = cfg.worker.scaling ? cfg.worker.scaling->max_lanes : cfg.worker.lanes;
    if (driver != nullptr) {
      const runtime::Driver::GroupScope group(driver_group);
      dedicated = std::make_unique<runtime::Scheduler>(*driver, describe(cfg));
    } else {
      dedicated = std::make_unique<runtime::Scheduler>(std::max(1, threads), describe(cfg));
    }
  }
  Service* raw = service.get();
  auto core =
      std::make_unique<ServiceCore>(*this, *raw, cfg, scheduler.get(), std::move(dedicated));
  {
    // by_identity holds the service from the check above; readers skip it until its core is set.
    std::unique_lock lock(visible_mu);
    raw->core_ = std::move(core);
  }
  raw->service_ = raw;
  raw->id_ = 1'000'000;
  raw->extras_ = std::make_unique<ModuleExtras>();
  if (strategy) {
    raw->core_->set_scaling_strategy(std::move(strategy));
  }
  // The service's liveness is its anchor's: saves an allocation per service.
  raw->extras_->alive = raw->core_->anchor();
  services.push_back(std::move(service));
  Status st = raw->core_->init();
  if (!st) {
    return Error{st.error().code(), where(config, cfg) + st.error().message()};
  }
  out.push_back(raw);
  return {};
}

Status NodeImpl::stop_one(Service& s) {
  if (!s.core_->retired.load(std::memory_order_acquire)) {
    make_invisible(s);  // a retired service left already
  }
  return s.core_->stop(config.shutdown_timeout);
}

}  // namespace detail

Node::~Node() {
  (void)stop();
}

const NodeConfig& Node::config() const noexcept {
  return impl_->config;
}

NodeStats Node::stats() const {
  NodeStats s;
  s.pending_timers = impl_->timers ? impl_->timers->pending() : 0;
  impl_->each_subsystem([&s](detail::Subsystem& sub) { sub.add_stats(s); });
  return s;
}
const std::string& Node::id() const noexcept {
  return impl_->config.node_id;
}

bool Node::running() const noexcept {
  return impl_->phase == detail::NodeImpl::Phase::running;
}

Status Node::start() {
  auto& n = *impl_;
  std::lock_guard lifecycle(n.lifecycle_mu);
  if (n.phase != detail::NodeImpl::Phase::idle) {
    return Error{Errc::bad_state, "node " + n.config.node_id + " was already started"};
  }
  std::optional<runtime::Driver::GroupScope> group;
  if (runtime::Driver* driver = runtime::Driver::current()) {
    // Everything the node creates from here on is one group: the simulator can crash it whole.
    n.driver_group = driver->new_group();
    group.emplace(n.driver_group);
  }
  if (runtime::Driver::current() != nullptr && event_backend(n.config) == EventBackend::nats) {
    // libnats runs threads of its own, which would call into a world that runs on one thread.
    return Error{Errc::invalid_argument,
                 "the simulator cannot run the NATS event backend: use \"cluster\" or \"local\" "
                 "in EventBusConf.Backend for nodes started in a sim::World"};
  }
  // Resolve every class before running any hook: a typo must not half-start the node.
  std::vector<std::pair<std::unique_ptr<Service>, ServiceConfig>> planned;
  for (std::size_t i = 0; i < n.config.services.size(); ++i) {
    const ServiceConfig& cfg = n.config.services[i];
    ServiceFactory factory = detail::find_factory(cfg.class_name);
    if (!factory) {
      return Error{Errc::invalid_argument,
                   detail::where(n.config, cfg) + "ServiceConf.StartServices[" + std::to_string(i) +
                       "].ClassName: " + detail::unknown_class(cfg.class_name)};
    }
    std::unique_ptr<Service> instance;
    try {
      instance = factory();
    } catch (const std::exception& e) {
      return Error{Errc::handler_failed, "constructing " + cfg.class_name + " threw: " + e.what()};
    }
    if (!instance) {
      return Error{Errc::internal, "the factory of " + cfg.class_name + " returned null"};
    }
    planned.emplace_back(std::move(instance), cfg);
  }
  for (auto& early : n.added_before_start) {
    planned.push_back(std::move(early));
  }
  n.added_before_start.clear();

  n.phase = detail::NodeImpl::Phase::starting;
  int threads = n.config.worker_threads > 0
                    ? n.config.worker_threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n.start_runtime(threads);

  std::vector<Service*> initialized;
  // Before any on_init: subscriptions made there must reach the cluster, and on_start may call
  // services on other nodes.
  Status failure = n.start_subsystems();
  for (auto& [instance, cfg] : planned) {
    if (!failure) {
      break;
    }
    failure = n.create_and_init(std::move(instance), cfg, initialized);
  }
  if (failure) {
    for (Service* s : initialized) {
      failure = s->core_->start();
      if (!failure) {
        break;
      }
    }
  }
  if (failure) {
    n.each_subsystem([&failure](detail::Subsystem& sub) {
      if (failure) {
        failure = sub.settle();
      }
    });
  }
  if (!failure) {
    n.log.error("start failed: {}", failure.error().to_string());
    for (auto it = n.services.rbegin(); it != n.services.rend(); ++it) {
      (void)n.stop_one(**it);
    }
    {
      // Before the services are freed: the admin listener walks by_identity until it stops.
      std::unique_lock lock(n.visible_mu);
      n.by_identity.clear();
    }
    n.services.clear();
    n.stop_subsystems();
    n.stop_time_driven();
    n.scheduler->stop();
    n.phase = detail::NodeImpl::Phase::stopped;
    return failure;
  }
  n.phase = detail::NodeImpl::Phase::running;
  if (n.driver != nullptr) {
    n.log.info("started {} services in a simulation", n.services.size());
  } else {
    n.log.info("started {} services on {} worker threads", n.services.size(), threads);
  }
  return {};
}

Status Node::stop() {
  auto& n = *impl_;
  if (runtime::Scheduler::current() != nullptr) {
    return Error{Errc::bad_state, "Node::stop() called from a handler; use request_stop()"};
  }
  std::lock_guard lifecycle(n.lifecycle_mu);
  if (n.phase != detail::NodeImpl::Phase::running) {
    return {};
  }
  n.phase = detail::NodeImpl::Phase::stopping;
  n.log.info("stopping {} services", n.services.size());
  n.each_subsystem_reversed([](detail::Subsystem& sub) { sub.stopping(); });
  Status result;
  for (auto it = n.services.rbegin(); it != n.services.rend(); ++it) {
    Status st = n.stop_one(**it);
    if (!st) {
      n.log.error("{}", st.error().to_string());
      result = st;
    }
  }
  n.stop_subsystems();  // after the drain: services could still publish while draining
  n.stop_time_driven();
  // Destroy in reverse start order; a service stuck in a handler is kept, never freed under it.
  while (!n.services.empty()) {
    std::unique_ptr<Service> s = std::move(n.services.back());
    n.services.pop_back();
    n.forget(*s);
    if (s->core_->mailbox().quiescent()) {
      s.reset();
    } else {
      n.stuck.push_back(std::move(s));
    }
  }
  if (n.stuck.empty()) {
    n.scheduler->stop();
  } else {
    n.log.error("{} services are stuck in handlers; their worker threads are left running",
                n.stuck.size());
  }
  n.phase = detail::NodeImpl::Phase::stopped;
  n.log.info("stopped");
  flush_logs();
  return result;
}

void Node::request_stop() noexcept {
  impl_->stop_requested.store(true, std::memory_order_release);
  std::lock_guard lock(impl_->run_mu);
  impl_->run_cv.notify_all();
}

int Node::run() {
  // Block the stop signals before any thread exists so every thread inherits the mask and only
  // this loop receives them (no async-signal-safety concerns in handlers).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Status started = start();
  if (!started) {
    system_log().error("{}", started.error().to_string());
    // invalid_argument at start is the config's fault (unknown class, a component the program
    // does not link, Params a service rejects): the same exit code as a config that fails to
    // parse, so that a supervisor does not restart it in a loop.
    return started.error().code() == Errc::invalid_argument ? 2 : 1;
  }
  auto& n = *impl_;
  while (!n.stop_requested.load(std::memory_order_acquire)) {
    timespec wait{0, 100'000'000};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      n.log.info("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
  }
  Status stopped = stop();
  return stopped ? 0 : 1;
}

Result<Service*> Node::add_service(std::unique_ptr<Service> service, ServiceConfig config) {
  auto& n = *impl_;
  if (!service) {
    return Error{Errc::invalid_argument, "add_service: null service"};
  }
  if (runtime::Scheduler::current() != nullptr) {
    return Error{Errc::bad_state, "add_service must not be called from a handler"};
  }
  std::lock_guard lifecycle(n.lifecycle_mu);
  if (config.name.empty()) {
    config.name = config.class_name;
  }
  if (n.phase == detail::NodeImpl::Phase::idle) {
    Service* raw = service.get();
    n.added_before_start.emplace_back(std::move(service), std::move(config));
    return raw;  // duplicates are reported by start()
  }
  if (n.phase != detail::NodeImpl::Phase::running) {
    return Error{Errc::bad_state, "add_service: node is not running"};
  }
  std::vector<Service*> initialized;
  Service* raw = service.get();
  Status st = n.create_and_init(std::move(service), config, initialized);
  // create_and_init appends the service last once it took it in (a scan here made adding N
  // services quadratic).
  const bool created = !n.services.empty() && n.services.back().get() == raw;
  if (st) {
    st = raw->core_->start();
  }
  if (!st) {
    if (created) {  // otherwise create_and_init refused it before taking it in
      (void)n.stop_one(*raw);
      auto it = std::find_if(n.services.begin(), n.services.end(),
                             [&](auto& p) { return p.get() == raw; });
      n.forget(*raw);
      n.services.erase(it);
    }
    return st.error();
  }
  return raw;
}

Status Node::stop_service(std::string_view name, std::string_view id) {
  auto& n = *impl_;
  if (runtime::Scheduler::current() != nullptr) {
    return Error{Errc::bad_state, "stop_service must not be called from a handler"};
  }
  std::lock_guard lifecycle(n.lifecycle_mu);
  auto it = std::find_if(n.services.begin(), n.services.end(),
                         [&](auto& p) { return p->name() == name && p->service_id() == id; });
  if (it == n.services.end()) {
    std::string who{name};
    if (!id.empty()) {
      who.append("#").append(id);
    }
    return Error{Errc::not_found, "no service " + who};
  }
  Status st = n.stop_one(**it);
  n.forget(**it);
  if (!st) {
    n.stuck.push_back(std::move(*it));
  }
  n.services.erase(it);
  return st;
}

Status Node::retire_service(std::string_view name, std::string_view id) {
  if (runtime::Scheduler::current() != nullptr) {
    return Error{Errc::bad_state, "retire_service must not be called from a handler"};
  }
  std::lock_guard lifecycle(impl_->lifecycle_mu);
  return impl_->retire_locked(name, id);
}

namespace detail {

Status NodeImpl::retire_locked(std::string_view name, std::string_view id) {
  auto it = std::find_if(services.begin(), services.end(),
                         [&](auto& p) { return p->name() == name && p->service_id() == id; });
  const std::string who =
      id.empty() ? std::string(name) : std::string(name) + "#" + std::string(id);
  if (it == services.end()) {
    return Error{Errc::not_found, "no service " + who};
  }
  ServiceCore& core = *(*it)->core_;
  if (core.retired.load(std::memory_order_acquire)) {
    return Error{Errc::bad_state, "service " + who + " is retired already"};
  }
  if (core.state() != ServiceState::running || !core.visible.load(std::memory_order_acquire)) {
    return Error{Errc::bad_state, "service " + who + " is not running"};
  }
  core.retired.store(true, std::memory_order_release);
  make_invisible(**it);
  core.notify_retired();
  return {};
}

}  // namespace detail

Service* Node::find_service(std::string_view name, std::string_view id) const {
  return impl_->find_visible(name, id);
}

std::vector<Service*> Node::services() const {
  std::shared_lock lock(impl_->visible_mu);
  std::vector<Service*> out;
  for (const auto& [key, s] : impl_->by_identity) {
    if (detail::NodeImpl::is_visible(*s)) {
      out.push_back(s);
    }
  }
  return out;
}

Status Node::post(std::string_view service_name, std::function<void()> fn, PostOptions options) {
  if (!fn) {
    return Error{Errc::invalid_argument, "post: empty function"};
  }
  std::shared_lock lock(impl_->visible_mu);
  // The instance without an id, else the first visible instance of that name.
  auto it = impl_->by_identity.lower_bound(
      std::pair<std::string, std::string>{std::string(service_name), std::string()});
  while (it != impl_->by_identity.end() && it->first.first == service_name &&
         !detail::NodeImpl::is_visible(*it->second)) {
    ++it;
  }
  if (it == impl_->by_identity.end() || it->first.first != service_name) {
    return Error{Errc::not_found, "no running service named '" + std::string(service_name) + "'"};
  }
  auto* m = runtime::make_message(std::move(fn), options.name);
  m->priority = options.priority;
  m->key = options.key;
  // Posting under the shared lock: the service cannot be stopped and freed meanwhile.
  return it->second->core_->post(m, true);
}

}  // namespace ember
