// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>

#include "runtime/message.hpp"

namespace ember::runtime {

/// Intrusive multi-producer single-consumer queue (Vyukov's design: one exchange per push).
/// push() is thread-safe; pop() belongs to the single consumer, i.e. the lane's current runner.
/// pop() may return nullptr while a push is half done; the pusher then reschedules the lane.
class MpscQueue {
 public:
  MpscQueue() : head_(&stub_), tail_(&stub_) {}
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  void push(Message* m) noexcept {
    m->next.store(nullptr, std::memory_order_relaxed);
    Message* prev = head_.exchange(m, std::memory_order_acq_rel);
    prev->next.store(m, std::memory_order_release);
  }

  /// Appends `first`..`last`, already linked through `next`, with one exchange: what a batch of
  /// producers' messages saves is the contended exchange per message.
  void push_chain(Message* first, Message* last) noexcept {
    last->next.store(nullptr, std::memory_order_relaxed);
    Message* prev = head_.exchange(last, std::memory_order_acq_rel);
    prev->next.store(first, std::memory_order_release);
  }

  Message* pop() noexcept {
    Message* tail = tail_;
    Message* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) {
        return nullptr;
      }
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) {
      return nullptr;  // a producer is between its exchange and its link
    }
    push(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  /// Consumer-side emptiness check; may say "empty" during a half-done push.
  [[nodiscard]] bool empty() const noexcept {
    Message* tail = tail_;
    if (tail != &stub_) {
      return false;
    }
    return tail->next.load(std::memory_order_acquire) == nullptr;
  }

 private:
  struct Stub final : Message {
    void run() override {}
    [[nodiscard]] std::string_view name() const noexcept override { return "stub"; }
  };
  // Not padded to cache lines: a lane costs memory in every idle service, and producers and the
  // consumer rarely hit the same lane at full rate.
  std::atomic<Message*> head_;
  Message* tail_;
  Stub stub_;
};

}  // namespace ember::runtime
