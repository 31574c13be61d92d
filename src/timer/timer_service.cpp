// SPDX-License-Identifier: Apache-2.0
#include "timer/timer_service.hpp"

#include <time.h>

#include <algorithm>
#include <ember/log.hpp>

#include "runtime/time_source.hpp"
#include "timer/cron.hpp"

namespace ember::timer {
namespace {

constexpr std::uint32_t kNil = 0xffffffffu;
constexpr std::uint32_t kChunkBits = 12;
constexpr std::uint32_t kChunkSize = 1u << kChunkBits;
constexpr std::uint64_t kNearMask = 255;
constexpr std::uint64_t kNever = ~std::uint64_t{0};

enum State : std::uint8_t {
  kFree,
  kArmed,      // linked in the wheel
  kPosted,     // a one-shot's (or a cron's last) fire is queued
  kRunning,    // that fire's callback is running
  kCancelled,  // unlinked; freed when the last queued fire is done
};

}  // namespace

struct CronState {
  std::unique_ptr<CronSchedule> schedule;
  std::chrono::system_clock::time_point last;
};

struct TimerService::Entry {
  std::uint32_t prev = kNil;
  std::uint32_t next = kNil;  // also the free-list link
  std::uint32_t owner_prev = kNil;
  std::uint32_t owner_next = kNil;
  std::uint32_t generation = 1;
  std::uint16_t inflight = 0;
  std::uint8_t state = kFree;
  Priority priority = Priority::user;
  std::uint64_t expire = 0;
  std::uint64_t period_ticks = 0;
  TimerOwnerList* owner = nullptr;
  TimerTarget* target = nullptr;
  std::uint64_t key_hash = 0;
  CronState* cron = nullptr;
  std::function<void()> callback;
};

namespace {
TimerId make_id(std::uint32_t index, std::uint32_t generation) {
  return TimerId{(static_cast<std::uint64_t>(generation) << 32) |
                 (static_cast<std::uint64_t>(index) + 1)};
}
bool split_id(TimerId id, std::uint32_t& index, std::uint32_t& generation) {
  if (!id.valid() || (id.value & 0xffffffffu) == 0) {
    return false;
  }
  index = static_cast<std::uint32_t>((id.value & 0xffffffffu) - 1);
  generation = static_cast<std::uint32_t>(id.value >> 32);
  return true;
}
}  // namespace

class TimerService::Fire final : public runtime::Message {
 public:
  Fire(TimerService* service, std::uint32_t index, std::uint32_t generation)
      : service_(service), index_(index), generation_(generation) {}

  void run() override {
    Entry* entry = nullptr;
    {
      std::lock_guard lock(service_->mu_);
      Entry& e = service_->at(index_);
      if (e.generation == generation_) {
        if (e.state == kPosted) {
          e.state = kRunning;
          entry = &e;
        } else if (e.state == kArmed) {
          entry = &e;  // a ticker or cron with more fires to come
        }
      }
    }
    struct Done {
      TimerService* s;
      std::uint32_t i, g;
      ~Done() { s->fire_done(i, g); }
    } done{service_, index_, generation_};
    if (entry != nullptr) {
      // The entry cannot be freed or moved while this fire is in flight (inflight > 0).
      entry->callback();
    }
  }
  void reject(const Error& /*why*/) noexcept override { service_->fire_done(index_, generation_); }
  [[nodiscard]] std::string_view name() const noexcept override { return "timer"; }

 private:
  TimerService* service_;
  std::uint32_t index_;
  std::uint32_t generation_;
};

TimerService::TimerService(std::chrono::milliseconds tick)
    : tick_(std::max(tick, std::chrono::milliseconds(1))), epoch_(Clock::now()), free_head_(kNil) {
  timespec resolution{};
  // Virtual time has no coarse variant.
  if (!runtime::virtual_time() && clock_getres(CLOCK_MONOTONIC_COARSE, &resolution) == 0) {
    auto res =
        std::chrono::seconds(resolution.tv_sec) + std::chrono::nanoseconds(resolution.tv_nsec);
    // steady_clock is CLOCK_MONOTONIC in libstdc++: the coarse variant shares its epoch.
    use_coarse_ = res.count() > 0 && std::chrono::duration_cast<Clock::duration>(tick_) >= 2 * res;
    coarse_slack_ = std::chrono::duration_cast<Clock::duration>(res);
  }
  std::fill(std::begin(near_), std::end(near_), kNil);
  for (auto& level : levels_) {
    std::fill(std::begin(level), std::end(level), kNil);
  }
}

TimerService::~TimerService() {
  stop();
}

void TimerService::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) {
    return;
  }
  thread_ = std::thread([this] { thread_main(); });
}

void TimerService::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

TimerService::Entry& TimerService::at(std::uint32_t index) const {
  return chunks_[index >> kChunkBits][index & (kChunkSize - 1)];
}

std::uint32_t TimerService::allocate_locked() {
  if (free_head_ == kNil) {
    auto chunk = std::make_unique<Entry[]>(kChunkSize);
    std::uint32_t base = capacity_;
    for (std::uint32_t i = 0; i < kChunkSize; ++i) {
      chunk[i].next = (i + 1 < kChunkSize) ? base + i + 1 : kNil;
    }
    chunks_.push_back(std::move(chunk));
    capacity_ += kChunkSize;
    free_head_ = base;
  }
  std::uint32_t index = free_head_;
  free_head_ = at(index).next;
  return index;
}

void TimerService::free_locked(std::uint32_t index) {
  Entry& e = at(index);
  e.state = kFree;
  ++e.generation;
  if (e.generation == 0) {
    e.generation = 1;  // 0 would make an id equal to "invalid"
  }
  e.owner = nullptr;
  e.target = nullptr;
  e.prev = kNil;
  e.next = free_head_;
  free_head_ = index;
}

void TimerService::link_locked(std::uint32_t index) {
  Entry& e = at(index);
  std::uint32_t* head;
  if ((e.expire | kNearMask) == (current_ | kNearMask)) {
    head = &near_[e.expire & kNearMask];
  } else {
    head = nullptr;
    for (int level = 0; level < 4; ++level) {
      std::uint64_t mask = (std::uint64_t{1} << (8 + 6 * (level + 1))) - 1;
      if ((e.expire | mask) == (current_ | mask) || level == 3) {
        // Level 3 also holds timers beyond the wheel's span; they cascade around until due.
        head = &levels_[level][(e.expire >> (8 + 6 * level)) & 63];
        break;
      }
    }
  }
  e.prev = kNil;
  e.next = *head;
  if (*head != kNil) {
    at(*head).prev = index;
  }
  *head = index;
  e.state = kArmed;
}

void TimerService::unlink_locked(std::uint32_t index) {
  Entry& e = at(index);
  if (e.prev != kNil) {
    at(e.prev).next = e.next;
  } else {
    // The head slot is found again from expire: the same computation as link_locked.
    std::uint32_t* head = nullptr;
    if ((e.expire | kNearMask) == (current_ | kNearMask) && near_[e.expire & kNearMask] == index) {
      head = &near_[e.expire & kNearMask];
    } else {
      for (int level = 0; level < 4 && head == nullptr; ++level) {
        std::uint32_t* candidate = &levels_[level][(e.expire >> (8 + 6 * level)) & 63];
        if (*candidate == index) {
          head = candidate;
        }
      }
      if (head == nullptr && near_[e.expire & kNearMask] == index) {
        head = &near_[e.expire & kNearMask];
      }
    }
    if (head != nullptr) {
      *head = e.next;
    }
  }
  if (e.next != kNil) {
    at(e.next).prev = e.prev;
  }
  e.prev = kNil;
  e.next = kNil;
}

void TimerService::owner_link_locked(std::uint32_t index) {
  Entry& e = at(index);
  if (e.owner == nullptr) {
    return;
  }
  e.owner_prev = kNil;
  e.owner_next = e.owner->head;
  if (e.owner->head != kNil) {
    at(e.owner->head).owner_prev = index;
  }
  e.owner->head = index;
  ++e.owner->count;
}

void TimerService::owner_unlink_locked(std::uint32_t index) {
  Entry& e = at(index);
  if (e.owner == nullptr) {
    return;
  }
  if (e.owner_prev != kNil) {
    at(e.owner_prev).owner_next = e.owner_next;
  } else {
    e.owner->head = e.owner_next;
  }
  if (e.owner_next != kNil) {
    at(e.owner_next).owner_prev = e.owner_prev;
  }
  --e.owner->count;
  e.owner = nullptr;
  e.owner_prev = kNil;
  e.owner_next = kNil;
}

std::uint64_t TimerService::tick_of(Clock::time_point t) const {
  if (t <= epoch_) {
    return 0;
  }
  auto elapsed = t - epoch_;
  auto tick = std::chrono::duration_cast<Clock::duration>(tick_);
  return static_cast<std::uint64_t>((elapsed + tick - Clock::duration(1)) / tick);  // round up
}

std::uint64_t TimerService::due_tick_of(Clock::time_point t) const {
  if (t <= epoch_) {
    return 0;
  }
  return static_cast<std::uint64_t>((t - epoch_) /
                                    std::chrono::duration_cast<Clock::duration>(tick_));
}

TimerService::Clock::time_point TimerService::schedule_now() const noexcept {
  if (use_coarse_) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return Clock::time_point(std::chrono::seconds(ts.tv_sec) +
                             std::chrono::nanoseconds(ts.tv_nsec)) +
           coarse_slack_;
  }
  return Clock::now();
}

TimerId TimerService::schedule(Request&& request) {
  std::unique_ptr<CronSchedule> cron = std::move(request.cron);
  const Clock::time_point now = schedule_now();
  const auto max_delay = std::chrono::hours(24 * 365 * 10);
  Clock::duration delay =
      std::clamp<Clock::duration>(request.delay, Clock::duration::zero(), max_delay);
  Clock::duration period =
      std::clamp<Clock::duration>(request.period, Clock::duration::zero(), max_delay);
  auto tick = std::chrono::duration_cast<Clock::duration>(tick_);

  bool notify = false;
  TimerId id;
  {
    std::lock_guard lock(mu_);
    std::uint32_t index = allocate_locked();
    Entry& e = at(index);
    e.callback = std::move(request.callback);  // the slot's previous callback was moved out at free
    e.target = request.target;
    e.owner = request.owner;
    e.priority = request.options.priority;
    e.inflight = 0;
    e.period_ticks = period > Clock::duration::zero()
                         ? static_cast<std::uint64_t>((period + tick - Clock::duration(1)) / tick)
                         : 0;
    if (cron) {
      e.cron = new CronState{std::move(cron), Clock::wall_now()};
      auto next = e.cron->schedule->next(e.cron->last);
      if (next) {
        e.cron->last = *next;
        delay = std::clamp<Clock::duration>(*next - Clock::wall_now(), Clock::duration::zero(),
                                            max_delay);
      } else {
        delay = max_delay;
      }
    }
    e.expire = std::max(tick_of(now + delay), current_ + 1);
    id = make_id(index, e.generation);
    e.key_hash = request.options.key.has_value() ? request.options.key.hash() : hash_key(id.value);
    link_locked(index);
    owner_link_locked(index);
    ++pending_;
    notify = e.expire < planned_wake_;
  }
  if (notify) {
    cv_.notify_one();
  }
  return id;
}

void TimerService::cancel_locked(std::uint32_t index) {
  Entry& e = at(index);
  if (e.state == kArmed) {
    unlink_locked(index);
    --pending_;
  }
  owner_unlink_locked(index);
  e.state = kCancelled;
}

bool TimerService::cancel(TimerId id) {
  std::uint32_t index = 0;
  std::uint32_t generation = 0;
  if (!split_id(id, index, generation)) {
    return false;
  }
  std::function<void()> dead_callback;
  CronState* dead_cron = nullptr;
  {
    std::lock_guard lock(mu_);
    if (index >= capacity_) {
      return false;
    }
    Entry& e = at(index);
    if (e.generation != generation || (e.state != kArmed && e.state != kPosted)) {
      return false;  // fired, running, cancelled already, or a stale id
    }
    cancel_locked(index);
    if (e.inflight == 0) {
      dead_callback = std::move(e.callback);
      dead_cron = std::exchange(e.cron, nullptr);
      free_locked(index);
    }
  }
  delete dead_cron;
  return true;
}

void TimerService::cancel_all(TimerOwnerList& owner) {
  std::vector<std::function<void()>> dead_callbacks;
  std::vector<CronState*> dead_crons;
  {
    std::lock_guard lock(mu_);
    while (owner.head != kNil) {
      std::uint32_t index = owner.head;
      Entry& e = at(index);
      cancel_locked(index);  // unlinks from the owner list too
      if (e.inflight == 0) {
        dead_callbacks.push_back(std::move(e.callback));
        dead_crons.push_back(std::exchange(e.cron, nullptr));
        free_locked(index);
      }
    }
  }
  // A batch collected before the cancel may still be posting; wait until it has.
  { std::lock_guard posting(posting_mu_); }
  for (CronState* c : dead_crons) {
    delete c;
  }
}

void TimerService::fire_done(std::uint32_t index, std::uint32_t generation) {
  std::function<void()> dead_callback;
  CronState* dead_cron = nullptr;
  {
    std::lock_guard lock(mu_);
    Entry& e = at(index);
    if (e.generation != generation) {
      return;
    }
    --e.inflight;
    bool finished =
        e.state == kRunning || e.state == kPosted || (e.state == kCancelled && e.inflight == 0);
    if (finished && e.inflight == 0) {
      owner_unlink_locked(index);
      dead_callback = std::move(e.callback);
      dead_cron = std::exchange(e.cron, nullptr);
      free_locked(index);
    } else if (finished && e.state != kCancelled) {
      e.state = kCancelled;  // a one-shot is done; only stale queued fires remain
      owner_unlink_locked(index);
    }
  }
  delete dead_cron;
}

std::size_t TimerService::pending() const {
  std::lock_guard lock(mu_);
  return pending_;
}

std::size_t TimerService::slab_bytes() const {
  std::lock_guard lock(mu_);
  return chunks_.size() * kChunkSize * sizeof(Entry) + chunks_.capacity() * sizeof(void*);
}

void TimerService::rearm_locked(std::uint32_t index, Clock::time_point now) {
  Entry& e = at(index);
  if (e.cron != nullptr) {
    auto next = e.cron->schedule->next(e.cron->last);
    if (!next) {
      e.state = kPosted;  // this was the last fire
      return;
    }
    e.cron->last = *next;
    auto delay = std::max<Clock::duration>(*next - Clock::wall_now(), Clock::duration::zero());
    e.expire = std::max(tick_of(now + delay), current_ + 1);
  } else {
    e.expire = std::max(e.expire + e.period_ticks, current_ + 1);
  }
  link_locked(index);
  ++pending_;
}

void TimerService::collect_due_locked(std::uint64_t target, std::vector<Due>& due) {
  const Clock::time_point now = Clock::now();
  while (current_ < target) {
    if (pending_ == 0) {
      current_ = target;
      break;
    }
    ++current_;
    if ((current_ & kNearMask) == 0) {
      for (int level = 0; level < 4; ++level) {
        std::uint64_t slot = (current_ >> (8 + 6 * level)) & 63;
        std::uint32_t index = levels_[level][slot];
        levels_[level][slot] = kNil;
        while (index != kNil) {
          std::uint32_t next = at(index).next;
          link_locked(index);
          index = next;
        }
        if (slot != 0) {
          break;
        }
      }
    }
    std::uint32_t index = near_[current_ & kNearMask];
    near_[current_ & kNearMask] = kNil;
    while (index != kNil) {
      Entry& e = at(index);
      std::uint32_t next = e.next;
      e.prev = kNil;
      e.next = kNil;
      --pending_;
      ++e.inflight;
      due.push_back(Due{index, e.generation, e.target, e.key_hash, e.priority});
      if (e.period_ticks > 0 || e.cron != nullptr) {
        rearm_locked(index, now);
      } else {
        e.state = kPosted;
      }
      index = next;
    }
  }
}

void TimerService::post_fires(const std::vector<Due>& due) {
  // Called with posting_mu_ held, without mu_. Each fire holds an inflight reference, so its
  // entry stays allocated; cancel_all waits on posting_mu_, so each target is still alive.
  for (const Due& d : due) {
    auto* fire = new Fire(this, d.index, d.generation);
    fire->priority = d.priority;
    fire->key = DispatchKey::from_hash(d.key_hash);
    d.target->post_timer_fire(fire);
  }
}

void TimerService::advance_to(Clock::time_point now) {
  std::vector<Due> due;
  std::unique_lock lock(mu_);
  collect_due_locked(due_tick_of(now), due);
  std::unique_lock posting(posting_mu_);
  lock.unlock();
  post_fires(due);
}

std::uint64_t TimerService::wake_tick_locked() const {
  if (pending_ == 0) {
    return kNever;
  }
  for (std::uint64_t t = current_ + 1; t <= (current_ | kNearMask); ++t) {
    if (near_[t & kNearMask] != kNil) {
      return t;
    }
  }
  return (current_ | kNearMask) + 1;  // the next cascade may bring timers into the near wheel
}

std::optional<TimerService::Clock::time_point> TimerService::next_wake() const {
  std::lock_guard lock(mu_);
  const std::uint64_t wake = wake_tick_locked();
  if (wake == kNever) {
    return std::nullopt;
  }
  return epoch_ + tick_ * static_cast<std::int64_t>(wake);
}

void TimerService::thread_main() {
  std::vector<Due> due;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    std::uint64_t target = due_tick_of(Clock::now());
    if (target > current_) {
      collect_due_locked(target, due);
      if (!due.empty()) {
        std::unique_lock posting(posting_mu_);
        lock.unlock();
        post_fires(due);
        due.clear();
        posting.unlock();
        lock.lock();
        continue;
      }
    }
    std::uint64_t wake = wake_tick_locked();
    planned_wake_ = wake;
    if (wake == kNever) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, epoch_ + tick_ * static_cast<std::int64_t>(wake));
    }
    planned_wake_ = kNever;
  }
}

}  // namespace ember::timer
