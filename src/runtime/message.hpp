// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ember/dispatch.hpp>
#include <ember/error.hpp>
#include <ember/small_alloc.hpp>
#include <string_view>
#include <utility>

namespace ember::runtime {

/// Anything a lane executes: a posted function, an RPC request or reply, a timer fire, a barrier.
/// Intrusive (one allocation per message) because the mailbox is the hot path.
class Message {
 public:
  Message() = default;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  virtual ~Message() = default;

  // A message is mostly made by one thread and freed by another (the sender's and the callee's),
  // the case a general allocator pays a lock for. Sized: the virtual destructor passes the size
  // of the message's own type.
  static void* operator new(std::size_t size) { return detail::small_allocate(size); }
  static void operator delete(void* block, std::size_t size) noexcept {
    detail::small_deallocate(block, size);
  }
  // The pool's blocks are aligned for max_align_t: an over-aligned message (a posted function
  // that captures such an object) bypasses it.
  static void* operator new(std::size_t size, std::align_val_t alignment) {
    return ::operator new(size, alignment);
  }
  // The unsized global form: clang declares the sized ones only with -fsized-deallocation.
  static void operator delete(void* block, std::size_t /*size*/,
                              std::align_val_t alignment) noexcept {
    ::operator delete(block, alignment);
  }

  /// Runs on the owning lane's thread.
  virtual void run() = 0;
  /// Called instead of run() when the message can no longer be processed (the service stopped).
  /// A request answers its caller with `why` here, so nothing disappears silently.
  virtual void reject(const Error& why) noexcept { (void)why; }
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  /// Control messages (barriers, drain markers) are not user work: not counted against the
  /// mailbox bound, never rejected.
  [[nodiscard]] virtual bool is_control() const noexcept { return false; }
  /// The trace id of the request or event this message carries (0: none), for reports about it.
  [[nodiscard]] virtual std::uint64_t trace_id() const noexcept { return 0; }

  std::atomic<Message*> next{nullptr};
  DispatchKey key;
  Priority priority = Priority::user;
  /// Counted against the service's mailbox bound (user messages posted from outside).
  bool counted = false;
  /// When it was queued, for its service's measurements (0 = not stamped): metrics::now_ticks()
  /// in a service that times its messages (its node has an admin listener), else steady_clock
  /// nanoseconds in an autoscaled service. One field for both: every message pays for it.
  std::int64_t enqueued = 0;
};

template <class F>
class FunctionMessage final : public Message {
 public:
  FunctionMessage(F fn, std::string_view name) : fn_(std::move(fn)), name_(name) {}
  void run() override { fn_(); }
  [[nodiscard]] std::string_view name() const noexcept override { return name_; }

 private:
  F fn_;
  std::string_view name_;
};

template <class F>
Message* make_message(F&& fn, std::string_view name) {
  return new FunctionMessage<std::decay_t<F>>(std::forward<F>(fn), name);
}

}  // namespace ember::runtime
