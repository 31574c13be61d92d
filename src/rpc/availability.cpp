// SPDX-License-Identifier: Apache-2.0
// Waiting until a selector matches: blocking (wait_for) or in a service's mailbox
// (Module::when_available). Both wake on repository changes, never on a polling timer.
#include <algorithm>
#include <ember/node.hpp>
#include <ember/rpc.hpp>
#include <map>
#include <mutex>
#include <optional>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"
#include "runtime/message.hpp"
#include "runtime/scheduler.hpp"

namespace ember::detail {
namespace {

using Clock = ember::Clock;

// milliseconds::max() reads as "no limit" but overflows a steady_clock time point (and the
// timer's nanoseconds): ten years is as good as forever here.
std::chrono::milliseconds bounded(std::chrono::milliseconds timeout) {
  constexpr std::chrono::milliseconds kLongest = std::chrono::hours(24 * 365 * 10);
  return std::clamp(timeout, std::chrono::milliseconds(0), kLongest);
}

Error not_in_time(const std::string& description, std::chrono::milliseconds timeout) {
  return Error{Errc::timeout, "no service matched " + description + " within " +
                                  std::to_string(timeout.count()) + " ms"};
}

}  // namespace

/// One pending when_available. Owned by what can still act on it: the repository watch, its
/// timeout timer and a queued check; the handle and the module's WaitSet only observe it.
/// Every caller of finish() holds a reference, since finish() drops the watch's.
struct AvailabilityWait {
  NodeImpl* node = nullptr;
  ServiceCore* core = nullptr;
  Module* module = nullptr;
  Selector selector;
  std::string description;
  std::chrono::milliseconds timeout{0};
  std::function<void(Result<Bus>)> fn;
  std::shared_ptr<ServiceAnchor> anchor;
  std::weak_ptr<void> module_alive;
  DispatchKey key;

  std::atomic<bool> done{false};
  // One check in the mailbox at a time, however many changes arrive meanwhile.
  std::atomic<bool> check_queued{false};
  std::mutex mu;  // watch_id and timer: set up on one lane, finished on any
  std::uint64_t watch_id = 0;
  TimerId timer;
  std::weak_ptr<WaitSet> set;
  std::uint64_t set_id = 0;

  /// The single winner of done: stops the watch and the timer. False when already finished.
  bool finish();
};

/// The pending waits of one module, all finished when it is released (one cleanup per module,
/// however many waits it makes over its life).
struct WaitSet {
  std::mutex mu;
  std::uint64_t next = 1;
  std::map<std::uint64_t, std::weak_ptr<AvailabilityWait>> waits;
};

bool AvailabilityWait::finish() {
  if (done.exchange(true, std::memory_order_acq_rel)) {
    return false;
  }
  std::lock_guard lock(mu);
  detail::Messaging::of(*node).repository().unwatch(watch_id);
  if (timer.valid()) {
    node->timers->cancel(timer);
  }
  if (auto s = set.lock()) {
    std::lock_guard set_lock(s->mu);
    s->waits.erase(set_id);
  }
  return true;
}

namespace {

void check(const std::shared_ptr<AvailabilityWait>& w) {
  // Cleared first: a change from now on queues another check.
  w->check_queued.store(false, std::memory_order_release);
  if (w->done.load(std::memory_order_acquire) || w->module_alive.expired()) {
    return;
  }
  auto selection = make_selection(*w->node, w->core, w->module, w->selector);
  if (selection->targets.empty() || !w->finish()) {
    return;
  }
  w->fn(Bus(std::move(selection)));
}

void queue_check(const std::shared_ptr<AvailabilityWait>& w) {
  if (w->done.load(std::memory_order_acquire) ||
      w->check_queued.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  auto* m = runtime::make_message([w] { check(w); }, "when_available");
  m->key = w->key;
  if (!w->anchor->post(m, false)) {
    w->check_queued.store(false, std::memory_order_release);  // stopping: release ends the wait
  }
}

}  // namespace
}  // namespace ember::detail

namespace ember {

bool WaitHandle::cancel() {
  std::shared_ptr<void> locked = wait_.lock();
  return locked && std::static_pointer_cast<detail::AvailabilityWait>(locked)->finish();
}

Result<Bus> wait_for(Node& node, const Selector& selector, std::chrono::milliseconds timeout) {
  detail::NodeImpl& impl = ember::detail::NodeAccess::impl(node);
  const auto deadline = detail::Clock::now() + detail::bounded(timeout);
  std::optional<runtime::Scheduler::BlockingRegion> region;  // a handler hands its worker over
  for (;;) {
    // The version is read before the lookup: a change after it wakes the wait below at once.
    const std::uint64_t seen = detail::Messaging::of(impl).repository().version();
    auto selection = detail::make_selection(impl, nullptr, nullptr, selector);
    if (!selection->targets.empty()) {
      return Bus(std::move(selection));
    }
    if (!region) {
      region.emplace();  // a no-op outside the worker pool
    }
    if (!detail::Messaging::of(impl).repository().wait_changed(seen, deadline) &&
        detail::Messaging::of(impl).repository().version() == seen) {
      return detail::not_in_time(selection->description, timeout);
    }
  }
}

Result<WaitHandle> Module::when_available(const Selector& selector,
                                          std::function<void(Result<Bus>)> fn,
                                          std::chrono::milliseconds timeout) {
  detail::ServiceCore* c = core();
  detail::ModuleExtras* extras = detail::ServiceCore::extras(*this);
  if (c == nullptr || extras == nullptr || released()) {
    return Error{Errc::bad_state, "when_available: the module is not attached to a service"};
  }
  if (!fn) {
    return Error{Errc::invalid_argument, "when_available: empty callback"};
  }
  detail::NodeImpl& node = c->node();
  // Not make_shared: the handle's weak reference would keep the whole object allocated.
  std::shared_ptr<detail::AvailabilityWait> w(new detail::AvailabilityWait);
  w->node = &node;
  w->core = c;
  w->module = this;
  w->selector = selector;
  w->description = detail::make_selection(node, c, this, selector)->description;
  w->timeout = timeout;
  w->fn = std::move(fn);
  w->anchor = c->anchor();
  w->module_alive = detail::ServiceCore::alive_token(*this);
  const Context* parent = current_context();
  w->key = parent != nullptr ? detail::state(*parent).key : DispatchKey{};

  if (!extras->waits) {
    extras->waits = std::make_shared<detail::WaitSet>();
    detail::ServiceCore::add_cleanup(*this, [set = std::weak_ptr<detail::WaitSet>(extras->waits)] {
      auto s = set.lock();
      if (!s) {
        return;
      }
      std::vector<std::weak_ptr<detail::AvailabilityWait>> pending;
      {
        std::lock_guard lock(s->mu);
        for (auto& [id, wait] : s->waits) {
          pending.push_back(wait);
        }
      }
      for (auto& wait : pending) {  // finish() takes the set's lock itself
        if (auto live = wait.lock()) {
          live->finish();
        }
      }
    });
  }
  {
    std::lock_guard lock(extras->waits->mu);
    w->set = extras->waits;
    w->set_id = extras->waits->next++;
    extras->waits->waits.emplace(w->set_id, w);
  }

  {
    // Both are in place before anything can finish the wait on another lane.
    std::lock_guard lock(w->mu);
    timer::TimerService::Request request;
    request.target = c;
    request.owner = detail::ServiceCore::timer_owner(*this);
    request.delay = detail::bounded(timeout);
    request.options.key = w->key;
    request.callback = [w] {
      if (!w->module_alive.expired() && w->finish()) {
        w->fn(detail::not_in_time(w->description, w->timeout));
      }
    };
    w->timer = node.timers->schedule(std::move(request));
    // Holds the wait: every end (match, timeout, cancel, release) goes through finish(),
    // which drops the watch. A weak reference here would leave the watch behind.
    w->watch_id = detail::Messaging::of(node).repository().watch([w] { detail::queue_check(w); });
  }
  // What already matches is delivered through the mailbox as well, never from inside this call.
  detail::queue_check(w);
  return WaitHandle(std::weak_ptr<void>(w));
}

}  // namespace ember
