// SPDX-License-Identifier: Apache-2.0
#include "core/service_core.hpp"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <new>
#include <thread>

#include "core/node_impl.hpp"
#include "core/send_batch.hpp"
#include "metrics/ticks.hpp"

namespace ember::detail {

std::string describe(const ServiceConfig& c) {
  return c.id.empty() ? c.name : c.name + "#" + c.id;
}

namespace {

thread_local ServiceCore* tls_current = nullptr;
thread_local int tls_lane = -1;

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
      // Not under a simulation: real-time figures of virtual time would mean nothing.
      timings_(node.timing && node.driver == nullptr
                   ? std::make_unique<ServiceTimings>(*node.timing, logger_)
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
  for (auto& slot : attachments_) {
    delete slot.load(std::memory_order_acquire);
  }
}

ServiceAttachment& ServiceCore::attach_state(std::size_t slot,
                                             std::unique_ptr<ServiceAttachment> state) {
  ServiceAttachment* expected = nullptr;
  if (attachments_[slot].compare_exchange_strong(expected, state.get(),
                                                 std::memory_order_acq_rel)) {
    return *state.release();
  }
  return *expected;  // another thread attached first; ours is freed
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

timer::TimerService& ServiceCore::timers() noexcept {
  return *node_.timers;
}

Status ServiceCore::post(runtime::Message* m, bool external) noexcept {
  SendBatch::flush_current();  // what this thread sent before goes first
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
  if (timings_) {
    m->enqueued = static_cast<std::int64_t>(metrics::now_ticks());
  } else if (scaling_) {
    m->enqueued = ScalingProbe::now_ns();
  }
  Status pushed = mailbox_.push(m);
  if (!pushed) {
    delete m;
    return Error{pushed.error().code(),
                 "service " + describe(config_) + ": " + pushed.error().message()};
  }
  return {};
}

bool ServiceCore::post_chain(runtime::Message* first, runtime::Message* last,
                             std::int64_t count) noexcept {
  // Its first message was accepted while the service ran: like the messages queued before the
  // stop, the chain is handled while the service drains (or rejected once it has stopped).
  if (state_.load(std::memory_order_acquire) == ServiceState::stopped) {
    rejected_.fetch_add(static_cast<std::uint64_t>(count), std::memory_order_relaxed);
    return false;
  }
  if (timings_ || scaling_) {
    const std::int64_t now =
        timings_ ? static_cast<std::int64_t>(metrics::now_ticks()) : ScalingProbe::now_ns();
    for (runtime::Message* m = first; m != nullptr; m = m->next.load(std::memory_order_relaxed)) {
      m->enqueued = now;
    }
  }
  mailbox_.push_chain(first, last, count);
  return true;
}

void ServiceCore::post_timer_fire(runtime::Message* m) noexcept {
  if (state_.load(std::memory_order_acquire) == ServiceState::stopped) {
    m->reject(Error{Errc::stopping, "service stopped"});
    delete m;
    return;
  }
  if (timings_) {
    m->enqueued = static_cast<std::int64_t>(metrics::now_ticks());
  } else if (scaling_) {
    m->enqueued = ScalingProbe::now_ns();
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
  const std::uint64_t run_started = timings_ ? metrics::now_ticks() : 0;
  std::int64_t started_ns = 0;
  if (scaling_) {
    started_ns = ScalingProbe::now_ns();
    std::int64_t enqueued_ns = m->enqueued;
    if (timings_ && enqueued_ns != 0) {  // stamped in ticks: the same wait, on the probe's clock
      const auto enqueued_ticks = static_cast<std::uint64_t>(enqueued_ns);
      enqueued_ns =
          started_ns -
          (run_started > enqueued_ticks ? metrics::ticks_to_ns(run_started - enqueued_ticks) : 0);
    }
    scaling_->probe.message_started(lane, m->priority, enqueued_ns, started_ns);
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
    {
      SendBatch::Scope batching;  // the handler's Sends to one service go out together
      try {
        m->run();
      } catch (const std::exception& e) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        logger_.error("handler '{}' threw: {}", m->name(), e.what());
      } catch (...) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        logger_.error("handler '{}' threw a non-standard exception", m->name());
      }
    }
    tls_current = outer;
    tls_lane = outer_lane;
    if (timings_ && !m->is_control()) {
      const std::uint64_t run_finished = metrics::now_ticks();
      timings_->record(lane, static_cast<std::uint64_t>(m->enqueued), run_started, run_finished);
      if (run_finished > run_started && run_finished - run_started >= timings_->slow_ticks()) {
        timings_->report_slow(m->name(), run_finished - run_started, m->trace_id());
      }
    }
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
  node_.each_subsystem([this](Subsystem& s) { s.service_started(*this); });
  return {};
}

void ServiceCore::notify_retired() {
  auto* retire = runtime::make_message(
      [this] {
        try {
          self_.on_retire();
        } catch (const std::exception& e) {
          logger_.error("on_retire threw: {}", e.what());
        }
      },
      "on_retire");
  retire->priority = Priority::system;
  (void)post(retire, false);
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
  // Before the drain: the scaler, for one, must not change the lane count under the markers.
  node_.each_subsystem_reversed([this](Subsystem& s) { s.service_stopping(*this); });
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
  node_.each_subsystem_reversed([this](Subsystem& s) { s.service_drained(*this); });
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
