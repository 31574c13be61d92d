// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <ember/error.hpp>
#include <string_view>

namespace ember {
struct NodeStats;
}

namespace ember::detail {

class ServiceCore;

/// A part of a node that plugs into the kernel: messaging, the cluster, events, scaling, and
/// whatever comes next. The kernel runs services (mailbox, lifecycle, address, timers) and knows
/// nothing of what a subsystem does: it calls these hooks, in the order the subsystems were
/// added to the node on start and in reverse order on stop, and sums their stats.
///
/// Hooks run on the thread that starts, adds or stops services, one at a time (the node's
/// lifecycle lock is held), never on a worker.
class Subsystem {
 public:
  Subsystem() = default;
  Subsystem(const Subsystem&) = delete;
  Subsystem& operator=(const Subsystem&) = delete;
  virtual ~Subsystem() = default;

  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  /// Node start, after the runtime and before any service is created. A failure stops the start:
  /// the subsystems started so far are stopped again, in reverse order.
  virtual Status start() { return {}; }
  /// A service became visible (after its on_start) / its mailbox opened.
  virtual void service_visible(ServiceCore& service) { (void)service; }
  virtual void service_started(ServiceCore& service) { (void)service; }
  /// A service's stop began: it is no longer findable / its drain is about to start.
  virtual void service_hidden(ServiceCore& service) { (void)service; }
  virtual void service_stopping(ServiceCore& service) { (void)service; }
  /// A service drained: no handler of it runs now or later.
  virtual void service_drained(ServiceCore& service) { (void)service; }
  /// Node start, after every service started: waits (bounded) until what the subsystem
  /// announced is in effect (registered in the cluster, subscribed at the broker).
  virtual Status settle() { return {}; }
  /// Node stop, before any service stops (in reverse order): a subsystem that brings work in
  /// from outside the node (the client gateway) stops taking it and lets what it let in finish,
  /// while the services that handle it still run.
  virtual void stopping() {}
  /// Node stop, after every service drained (and after a failed start).
  virtual void stop() {}
  /// Adds the subsystem's counters to the node's.
  virtual void add_stats(NodeStats& stats) const { (void)stats; }
};

/// State a subsystem keeps per service (a service's method table, for messaging). Attached on
/// first use, so that a service that never needs it (an idle game entity) pays one pointer; the
/// service owns it and destroys it once the service can no longer be reached.
class ServiceAttachment {
 public:
  virtual ~ServiceAttachment() = default;
};

/// The slots of per-service attachments: few, since each costs every service a pointer.
inline constexpr std::size_t kAttachmentSlots = 1;
std::size_t allocate_attachment_slot() noexcept;
template <class T>
std::size_t attachment_slot() noexcept {
  static const std::size_t slot = allocate_attachment_slot();
  return slot;
}

/// A small index per subsystem type, for the kernel's per-node and per-service slots: a lookup
/// is an array access, not a search by name.
std::size_t allocate_subsystem_slot() noexcept;
template <class T>
std::size_t subsystem_slot() noexcept {
  static const std::size_t slot = allocate_subsystem_slot();
  return slot;
}

}  // namespace ember::detail
