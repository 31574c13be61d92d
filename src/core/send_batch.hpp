// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <ember/dispatch.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>

#include "runtime/message.hpp"

namespace ember::detail {

class ServiceAnchor;

/// The Sends a handler makes in a row to one local service, with one method, request type,
/// priority and key, enqueued together: one pin of the target, one pass through its mailbox's
/// gate, one exchange on its lane and one wake-up per batch instead of per message. Producers
/// that share a target then stop fighting over its cache lines (fan-in).
///
/// A batch is enqueued when the handler returns (a coroutine handler: when it suspends) or
/// another handler starts on the thread, when it holds kLimit messages, before the thread
/// enqueues anything else, sends to another node, completes a call or blocks, so what one thread
/// sends keeps its order and arrives before the answer that may follow it. Only the first
/// message of a batch is checked against the target (alive, method's request type, no mailbox
/// bound, one lane unless keyed); the rest share its outcome. A target that is stopping still
/// takes the batch and drains it; one that has stopped counts it as rejected.
///
/// One per thread; used only while the thread runs a handler (see Scope).
class SendBatch {
 public:
  static constexpr std::int64_t kLimit = 64;

  /// The calling thread's batch while it runs a handler; null elsewhere.
  static SendBatch* current() noexcept;
  /// Enqueues the calling thread's batch, if any: cheap when there is none.
  static void flush_current() noexcept;

  /// True when a Send with these properties can join the batch.
  [[nodiscard]] bool matches(const ServiceAnchor* target, std::string_view method,
                             const std::type_info& request, Priority priority,
                             DispatchKey key) const noexcept {
    return count_ != 0 && target == target_.get() && *request_ == request &&
           priority == priority_ && key.hash() == key_.hash() && method == method_;
  }
  /// Adds a message for which matches() held; enqueues the batch at kLimit.
  void add(runtime::Message* m) noexcept;
  /// Enqueues what is gathered, then starts a batch with `m`, which the caller checked against
  /// `target` while pinning it.
  void start(const std::shared_ptr<ServiceAnchor>& target, std::string_view method,
             const std::type_info& request, runtime::Message* m);
  void flush() noexcept;

  /// Marks the calling thread as running a handler; entering and leaving one enqueues.
  class Scope {
   public:
    Scope() noexcept;
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

 private:
  std::shared_ptr<ServiceAnchor> target_;
  std::string method_;
  const std::type_info* request_ = nullptr;
  Priority priority_ = Priority::user;
  DispatchKey key_;
  runtime::Message* first_ = nullptr;
  runtime::Message* last_ = nullptr;
  std::int64_t count_ = 0;
  int depth_ = 0;
};

}  // namespace ember::detail
