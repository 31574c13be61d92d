// SPDX-License-Identifier: Apache-2.0
#include "runtime/scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <ember/log.hpp>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EMBER_CPU_RELAX() _mm_pause()
#else
#define EMBER_CPU_RELAX() std::this_thread::yield()
#endif

namespace ember::runtime {

void cpu_relax() noexcept {
  EMBER_CPU_RELAX();
}

struct Scheduler::Worker {
  Scheduler* owner = nullptr;
  int index = 0;
  // The LIFO slot. The owner swaps it; a thief may take it only from an owner that has been in the
  // same slice since the thief last looked (a long handler), so quick request/reply pairs keep
  // their locality but a lane is never stuck behind a long-running handler.
  std::atomic<Runnable*> next{nullptr};
  std::atomic<std::uint64_t> slice_seq{0};  // bumped by the owner before each slice

  std::mutex mu;  // guards head/tail (the owner pushes, thieves pop)
  Runnable* head = nullptr;
  Runnable* tail = nullptr;
  std::atomic<int> size{0};

  std::atomic<int> wake_token{0};
  bool parked = false;   // guarded by Scheduler::idle_mu_
  bool blocked = false;  // owner thread only
  std::uint32_t steal_seed = 0;
  static constexpr std::size_t kSeen = 64;
  std::uint64_t seen_seq[kSeen] = {};  // owner only: victims' slice_seq at the last look

  void push_back(Runnable* r) {
    r->next_runnable = nullptr;
    std::lock_guard lock(mu);
    if (tail != nullptr) {
      tail->next_runnable = r;
    } else {
      head = r;
    }
    tail = r;
    size.fetch_add(1, std::memory_order_release);
  }

  Runnable* pop_front() {
    if (size.load(std::memory_order_acquire) == 0) {
      return nullptr;
    }
    std::lock_guard lock(mu);
    Runnable* r = head;
    if (r != nullptr) {
      head = r->next_runnable;
      if (head == nullptr) {
        tail = nullptr;
      }
      r->next_runnable = nullptr;
      size.fetch_sub(1, std::memory_order_relaxed);
    }
    return r;
  }
};

namespace {
thread_local Scheduler::Worker* tls_worker = nullptr;

// What a SubmitBatch holds back on this thread (one scheduler at a time).
struct HeldBack {
  int depth = 0;
  Scheduler* scheduler = nullptr;
  Runnable* head = nullptr;
  Runnable* tail = nullptr;
  int count = 0;
};
thread_local HeldBack tls_held;
thread_local Scheduler* tls_driven = nullptr;  // the driven pool running a slice on this thread
thread_local Driver* tls_driver = nullptr;
thread_local std::uint32_t tls_group = 0;
constexpr int kSpinMicros = 20;
}  // namespace

Scheduler::Scheduler(int threads, std::string name)
    : threads_(std::clamp(threads, 1, kMaxWorkers / 2)),
      name_(std::move(name)),
      workers_(new std::atomic<Worker*>[kMaxWorkers]) {
  for (int i = 0; i < kMaxWorkers; ++i) {
    workers_[i].store(nullptr, std::memory_order_relaxed);
  }
  for (int i = 0; i < threads_; ++i) {
    spawn_worker();
  }
  if (threads_ > 1) {  // with one worker nobody else could take the slot's runnable anyway
    monitor_ = std::thread([this] { monitor_main(); });
  }
}

Scheduler::Scheduler(Driver& driver, std::string name)
    : threads_(1), name_(std::move(name)), driver_(&driver), group_(tls_group) {}

std::uint32_t Driver::current_group() noexcept {
  return tls_group;
}

Driver::GroupScope::GroupScope(std::uint32_t group) noexcept : outer_(tls_group) {
  tls_group = group;
}

Driver::GroupScope::~GroupScope() {
  tls_group = outer_;
}

Driver* Driver::current() noexcept {
  return tls_driver;
}

void Driver::set_current(Driver* driver) noexcept {
  tls_driver = driver;
}

void Scheduler::run_driven(Runnable* r) {
  Scheduler* outer = tls_driven;
  tls_driven = this;
  r->run_slice();
  tls_driven = outer;
}

Scheduler::~Scheduler() {
  stop();
}

void Scheduler::spawn_worker() {
  std::lock_guard lock(workers_mu_);
  int index = worker_count_.load(std::memory_order_relaxed);
  if (index >= kMaxWorkers) {
    system_log().error(
        "scheduler {}: worker limit {} reached; blocked handlers may starve the pool", name_,
        kMaxWorkers);
    return;
  }
  auto* w = new Worker;
  w->owner = this;
  w->index = index;
  w->steal_seed = static_cast<std::uint32_t>(index * 2654435761u + 1);
  workers_[index].store(w, std::memory_order_release);
  worker_count_.store(index + 1, std::memory_order_release);
  threads_list_.emplace_back([this, w] { worker_main(w); });
}

int Scheduler::spawned_threads() const {
  return worker_count_.load(std::memory_order_acquire);
}

void Scheduler::stop() {
  if (stopping_.exchange(true)) {
    return;
  }
  if (driver_ != nullptr) {
    driver_->forget(*this);
    return;
  }
  {
    std::lock_guard lock(monitor_mu_);  // the monitor checks stopping_ under this lock
  }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) {
    monitor_.join();  // before the workers go: it reads their slots
  }
  int count = worker_count_.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    Worker* w = workers_[i].load(std::memory_order_acquire);
    w->wake_token.store(1, std::memory_order_release);
    w->wake_token.notify_one();
  }
  // Spares may be spawned concurrently by a blocked handler; join until the list is stable.
  for (std::size_t i = 0;; ++i) {
    std::thread t;
    {
      std::lock_guard lock(workers_mu_);
      if (i >= threads_list_.size()) {
        break;
      }
      t = std::move(threads_list_[i]);
    }
    if (t.joinable()) {
      t.join();
    }
  }
  count = worker_count_.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    delete workers_[i].exchange(nullptr);
  }
  worker_count_.store(0);
}

Scheduler* Scheduler::current() noexcept {
  return tls_worker != nullptr ? tls_worker->owner : tls_driven;
}

void Scheduler::submit(Runnable* r) noexcept {
  if (driver_ != nullptr) [[unlikely]] {
    driver_->ready(this, r);
    return;
  }
  Worker* w = tls_worker;
  if (w != nullptr && w->owner == this && !w->blocked) {
    // seq_cst, like the monitor's parked flag and its re-look: one of the two sees the other.
    Runnable* previous = w->next.exchange(r, std::memory_order_seq_cst);
    if (previous == nullptr) {
      // No worker wake here: a wake per message costs more than it saves in request/reply
      // traffic. An awake worker can steal the slot if this handler runs long, and the monitor
      // hands it over if nobody is awake.
      if (monitor_parked_.load(std::memory_order_seq_cst)) {
        wake_monitor();
      }
      return;
    }
    // More work than this thread can take next: let an idle worker steal the older one.
    w->push_back(previous);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake_one();
    return;
  }
  if (tls_held.depth > 0) {
    if (tls_held.scheduler != this) {
      flush_batch();  // the batch holds one scheduler's work
      tls_held.scheduler = this;
    }
    r->next_runnable = nullptr;
    if (tls_held.tail != nullptr) {
      tls_held.tail->next_runnable = r;
    } else {
      tls_held.head = r;
    }
    tls_held.tail = r;
    ++tls_held.count;
    return;
  }
  push_global(r);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  wake_one();
}

Scheduler::SubmitBatch::SubmitBatch() noexcept {
  ++tls_held.depth;
}

Scheduler::SubmitBatch::~SubmitBatch() {
  if (--tls_held.depth == 0) {
    flush_batch();
  }
}

void Scheduler::flush_batch() noexcept {
  HeldBack& held = tls_held;
  if (held.count > 0) {
    Scheduler& to = *held.scheduler;
    to.push_global_chain(held.head, held.tail, held.count);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    for (int i = 0; i < held.count && to.idle_count_.load(std::memory_order_seq_cst) > 0; ++i) {
      to.wake_one();
    }
  }
  held.head = held.tail = nullptr;
  held.count = 0;
  held.scheduler = nullptr;
}

void Scheduler::resubmit(Runnable* r) noexcept {
  if (driver_ != nullptr) [[unlikely]] {
    driver_->ready(this, r);
    return;
  }
  Worker* w = tls_worker;
  if (w != nullptr && w->owner == this && !w->blocked) {
    w->push_back(r);
    if (w->size.load(std::memory_order_relaxed) +
            (w->next.load(std::memory_order_relaxed) != nullptr ? 1 : 0) >
        1) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      wake_one();
    }
    return;
  }
  push_global(r);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  wake_one();
}

void Scheduler::push_global(Runnable* r) {
  r->next_runnable = nullptr;
  push_global_chain(r, r, 1);
}

void Scheduler::push_global_chain(Runnable* head, Runnable* tail, int count) {
  std::lock_guard lock(global_mu_);
  if (global_tail_ != nullptr) {
    global_tail_->next_runnable = head;
  } else {
    global_head_ = head;
  }
  global_tail_ = tail;
  global_size_.fetch_add(count, std::memory_order_release);
}

Runnable* Scheduler::pop_global() {
  if (global_size_.load(std::memory_order_acquire) == 0) {
    return nullptr;
  }
  std::lock_guard lock(global_mu_);
  Runnable* r = global_head_;
  if (r != nullptr) {
    global_head_ = r->next_runnable;
    if (global_head_ == nullptr) {
      global_tail_ = nullptr;
    }
    r->next_runnable = nullptr;
    global_size_.fetch_sub(1, std::memory_order_relaxed);
  }
  return r;
}

Runnable* Scheduler::steal(Worker* thief) {
  int count = worker_count_.load(std::memory_order_acquire);
  if (count <= 1) {
    return nullptr;
  }
  thief->steal_seed = thief->steal_seed * 1664525u + 1013904223u;
  int start = static_cast<int>(thief->steal_seed % static_cast<std::uint32_t>(count));
  for (int i = 0; i < count; ++i) {
    Worker* victim = workers_[(start + i) % count].load(std::memory_order_acquire);
    if (victim == nullptr || victim == thief) {
      continue;
    }
    if (Runnable* r = victim->pop_front()) {
      return r;
    }
    // The victim's next slot, if the victim has not started a new slice since we last looked.
    std::uint64_t seq = victim->slice_seq.load(std::memory_order_acquire);
    auto& seen = thief->seen_seq[static_cast<std::size_t>(victim->index) % Worker::kSeen];
    if (victim->next.load(std::memory_order_relaxed) != nullptr && seen == seq) {
      if (Runnable* r = victim->next.exchange(nullptr, std::memory_order_acq_rel)) {
        return r;
      }
    }
    seen = seq;
  }
  return nullptr;
}

bool Scheduler::has_visible_work() const {
  if (global_size_.load(std::memory_order_seq_cst) > 0) {
    return true;
  }
  int count = worker_count_.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    Worker* w = workers_[i].load(std::memory_order_acquire);
    if (w != nullptr && w->size.load(std::memory_order_seq_cst) > 0) {
      return true;
    }
  }
  return false;
}

Runnable* Scheduler::find_work(Worker* w) {
  if (Runnable* r = w->next.exchange(nullptr, std::memory_order_acq_rel)) {
    return r;
  }
  if (Runnable* r = w->pop_front()) {
    return r;
  }
  if (Runnable* r = pop_global()) {
    return r;
  }
  return steal(w);
}

void Scheduler::worker_main(Worker* w) {
  tls_worker = w;
  while (!stopping_.load(std::memory_order_acquire)) {
    Runnable* r = find_work(w);
    // A short spin catches work readied microseconds later without a futex round trip. Only one
    // worker spins at a time, and for ~20 us: spinning steals the core from threads that produce
    // the work (on 2 cores that matters).
    if (r == nullptr && spinning_.fetch_add(1, std::memory_order_acq_rel) == 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
      while (r == nullptr && !stopping_.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 16; ++i) {
          EMBER_CPU_RELAX();
        }
        r = find_work(w);
        if (r == nullptr && std::chrono::steady_clock::now() > until) {
          break;
        }
      }
      spinning_.fetch_sub(1, std::memory_order_acq_rel);
    } else if (r == nullptr) {
      spinning_.fetch_sub(1, std::memory_order_acq_rel);
    }
    if (r != nullptr) {
      w->slice_seq.store(w->slice_seq.load(std::memory_order_relaxed) + 1,
                         std::memory_order_release);
      r->run_slice();
      continue;
    }
    park(w);
  }
  tls_worker = nullptr;
}

void Scheduler::park(Worker* w) {
  {
    std::lock_guard lock(idle_mu_);
    idle_.push_back(w);
    w->parked = true;
    idle_count_.fetch_add(1, std::memory_order_seq_cst);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_visible_work() || stopping_.load(std::memory_order_seq_cst)) {
    std::unique_lock lock(idle_mu_);
    if (w->parked) {
      idle_.erase(std::find(idle_.begin(), idle_.end(), w));
      w->parked = false;
      idle_count_.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    // Someone already took us off the idle list and will post the token: consume it below.
  }
  while (w->wake_token.exchange(0, std::memory_order_acquire) == 0) {
    w->wake_token.wait(0, std::memory_order_acquire);
  }
}

void Scheduler::wake_one() {
  if (idle_count_.load(std::memory_order_seq_cst) == 0) {
    return;
  }
  Worker* w = nullptr;
  {
    std::lock_guard lock(idle_mu_);
    if (idle_.empty()) {
      return;
    }
    w = idle_.back();
    idle_.pop_back();
    w->parked = false;
    idle_count_.fetch_sub(1, std::memory_order_seq_cst);
  }
  w->wake_token.store(1, std::memory_order_release);
  w->wake_token.notify_one();
}

bool Scheduler::any_next_slot_in_use() const {
  const int count = worker_count_.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    Worker* w = workers_[i].load(std::memory_order_acquire);
    if (w != nullptr && w->next.load(std::memory_order_seq_cst) != nullptr) {
      return true;
    }
  }
  return false;
}

void Scheduler::wake_monitor() {
  {
    std::lock_guard lock(monitor_mu_);
    if (!monitor_parked_.exchange(false, std::memory_order_seq_cst)) {
      return;  // someone else woke it
    }
  }
  monitor_cv_.notify_one();
}

void Scheduler::monitor_main() {
  constexpr auto kLook = std::chrono::milliseconds(1);
  constexpr int kQuietLooksBeforeParking = 10;
  // What each worker's slot held, and in which slice, at the previous look.
  std::vector<Runnable*> seen_runnable(kMaxWorkers, nullptr);
  std::vector<std::uint64_t> seen_slice(kMaxWorkers, 0);
  int quiet_looks = 0;
  std::unique_lock lock(monitor_mu_);
  while (!stopping_.load(std::memory_order_acquire)) {
    monitor_cv_.wait_for(lock, kLook, [&] { return stopping_.load(std::memory_order_acquire); });
    if (stopping_.load(std::memory_order_acquire)) {
      break;
    }
    bool in_use = false;
    const int count = worker_count_.load(std::memory_order_acquire);
    for (int i = 0; i < count; ++i) {
      Worker* w = workers_[i].load(std::memory_order_acquire);
      if (w == nullptr) {
        continue;
      }
      Runnable* waiting = w->next.load(std::memory_order_acquire);
      const std::uint64_t slice = w->slice_seq.load(std::memory_order_acquire);
      const auto k = static_cast<std::size_t>(i);
      if (waiting != nullptr) {
        in_use = true;
        if (waiting == seen_runnable[k] && slice == seen_slice[k]) {
          // Still behind the same slice a whole look later: the owner is busy for a while.
          if (Runnable* r = w->next.exchange(nullptr, std::memory_order_acq_rel)) {
            push_global(r);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            wake_one();
            handed_from_busy_.fetch_add(1, std::memory_order_relaxed);
          }
          waiting = nullptr;
        }
      }
      seen_runnable[k] = waiting;
      seen_slice[k] = slice;
    }
    if (in_use) {
      quiet_looks = 0;
      continue;
    }
    if (++quiet_looks < kQuietLooksBeforeParking) {
      continue;
    }
    // Park until a slot is filled. Announce first, then look again: a submit that filled a slot
    // before the announcement is seen here; one after it sees the flag and wakes us.
    monitor_parked_.store(true, std::memory_order_seq_cst);
    if (any_next_slot_in_use()) {
      monitor_parked_.store(false, std::memory_order_seq_cst);
    } else {
      monitor_cv_.wait(lock, [&] {
        return !monitor_parked_.load(std::memory_order_seq_cst) ||
               stopping_.load(std::memory_order_acquire);
      });
    }
    quiet_looks = 0;
  }
}

void Scheduler::enter_blocking(Worker* w) {
  w->blocked = true;
  // Hand queued work to the others: this thread will not get to it until the wait ends.
  bool handed_over = false;
  if (Runnable* r = w->next.exchange(nullptr, std::memory_order_acq_rel)) {
    push_global(r);
    handed_over = true;
  }
  while (Runnable* r = w->pop_front()) {
    push_global(r);
    handed_over = true;
  }
  int blocked = blocked_.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (worker_count_.load(std::memory_order_acquire) - blocked < threads_ &&
      !stopping_.load(std::memory_order_acquire)) {
    spawn_worker();
  }
  // Waking a worker costs a syscall; it is only needed when this one left work behind (work
  // readied later wakes workers itself).
  if (handed_over) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake_one();
  }
}

void Scheduler::leave_blocking(Worker* w) {
  blocked_.fetch_sub(1, std::memory_order_acq_rel);
  w->blocked = false;
}

namespace {
void (*before_blocking)() noexcept = nullptr;  // constant-initialised: safe from static init
}  // namespace

void Scheduler::set_before_blocking(void (*hook)() noexcept) noexcept {
  before_blocking = hook;
}

Scheduler::BlockingRegion::BlockingRegion() noexcept {
  if (before_blocking != nullptr) {
    before_blocking();
  }
  Worker* w = tls_worker;
  if (w != nullptr && !w->blocked) {
    active_ = true;
    w->owner->enter_blocking(w);
  }
}

Scheduler::BlockingRegion::~BlockingRegion() {
  if (active_) {
    Worker* w = tls_worker;
    w->owner->leave_blocking(w);
  }
}

}  // namespace ember::runtime
