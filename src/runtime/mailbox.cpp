// SPDX-License-Identifier: Apache-2.0
#include "runtime/mailbox.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <set>
#include <thread>
#include <utility>

#include "runtime/time_source.hpp"

namespace ember::runtime {

// ---------------------------------------------------------------------------------------------
// Lane

Lane::Lane(LaneOwner* owner, Scheduler* scheduler, int index, bool timed)
    : owner_(owner), scheduler_(scheduler), index_(index), timed_(timed) {}

namespace {
std::int64_t thread_cpu_ns() noexcept {
  if (virtual_time()) {
    return 0;  // the simulator's runs must not depend on how fast this machine is
  }
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

void Lane::push(Message* m) noexcept {
  (m->priority == Priority::system ? system_ : user_).push(m);
  size_.fetch_add(1, std::memory_order_seq_cst);
  try_schedule(false);
}

void Lane::push_chain(Message* first, Message* last, std::int64_t count) noexcept {
  (first->priority == Priority::system ? system_ : user_).push_chain(first, last);
  size_.fetch_add(count, std::memory_order_seq_cst);
  try_schedule(false);
}

void Lane::try_schedule(bool resubmit) noexcept {
  if (gate_.load(std::memory_order_seq_cst) > 0) {
    return;
  }
  // A plain load first: on a busy lane this avoids a contended read-modify-write per message.
  // Safe: the runner clears the flag before re-reading the size (both seq_cst).
  if (scheduled_.load(std::memory_order_seq_cst) ||
      scheduled_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  if (resubmit) {
    scheduler_->resubmit(this);
  } else {
    scheduler_->submit(this);
  }
}

void Lane::close_gate() noexcept {
  gate_.fetch_add(1, std::memory_order_seq_cst);
}

void Lane::open_gate() noexcept {
  if (gate_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      size_.load(std::memory_order_seq_cst) > 0) {
    try_schedule(false);
  }
}

Lane::~Lane() {
  delete handover_.load(std::memory_order_acquire);  // only if never run (mailbox torn down)
  delete backlog_.load(std::memory_order_acquire);
}

Lane::Backlog& Lane::backlog() noexcept {
  Backlog* b = backlog_.load(std::memory_order_acquire);
  if (b == nullptr) {
    auto fresh = std::make_unique<Backlog>();
    if (backlog_.compare_exchange_strong(b, fresh.get(), std::memory_order_acq_rel)) {
      b = fresh.release();
    }
  }
  return *b;
}

void Lane::List::append(Message* m) noexcept {
  m->next.store(nullptr, std::memory_order_relaxed);
  if (tail == nullptr) {
    head = m;
  } else {
    tail->next.store(m, std::memory_order_relaxed);
  }
  tail = m;
}

void Lane::List::splice(List& other) noexcept {
  if (other.head == nullptr) {
    return;
  }
  if (tail == nullptr) {
    head = other.head;
  } else {
    tail->next.store(other.head, std::memory_order_relaxed);
  }
  tail = other.tail;
  other.head = other.tail = nullptr;
}

Message* Lane::List::pop() noexcept {
  Message* m = head;
  if (m != nullptr) {
    head = m->next.load(std::memory_order_relaxed);
    if (head == nullptr) {
      tail = nullptr;
    }
  }
  return m;
}

void Lane::start_handover(Handover* job) noexcept {
  handover_.store(job, std::memory_order_release);
  size_.fetch_add(1, std::memory_order_seq_cst);  // counted like a message: keeps us scheduled
  try_schedule(false);
}

void Lane::receive(const std::vector<Message*>& moved) noexcept {
  Backlog& b = backlog();
  while (b.lock.test_and_set(std::memory_order_acquire)) {
    std::this_thread::yield();  // only givers of one resize contend, briefly
  }
  for (Message* m : moved) {
    (m->priority == Priority::system ? b.received_system : b.received_user).append(m);
  }
  b.has_received.store(true, std::memory_order_release);
  b.lock.clear(std::memory_order_release);
  // Before the giver opens this lane's gate, so open_gate sees the work and schedules it.
  size_.fetch_add(static_cast<std::int64_t>(moved.size()), std::memory_order_seq_cst);
}

void Lane::merge_received(Backlog& b) noexcept {
  while (b.lock.test_and_set(std::memory_order_acquire)) {
    std::this_thread::yield();
  }
  b.front_system.splice(b.received_system);
  b.front_user.splice(b.received_user);
  b.has_received.store(false, std::memory_order_relaxed);
  b.lock.clear(std::memory_order_release);
}

void Lane::take_all(std::vector<Message*>& system, std::vector<Message*>& user) noexcept {
  Backlog& b = backlog();
  if (b.has_received.load(std::memory_order_acquire)) {
    merge_received(b);
  }
  while (Message* m = b.front_system.pop()) {
    system.push_back(m);
  }
  while (Message* m = system_.pop()) {
    system.push_back(m);
  }
  while (Message* m = b.front_user.pop()) {
    user.push_back(m);
  }
  // A push half done by another thread ends this early; what stays queued is newer than all
  // taken and (posted by the new routing, or un-keyed) belongs here anyway.
  while (Message* m = user_.pop()) {
    user.push_back(m);
  }
}

void Lane::keep(Message* m) noexcept {
  Backlog& b = backlog();
  (m->priority == Priority::system ? b.front_system : b.front_user).append(m);
}

void Lane::gave_away(std::int64_t count) noexcept {
  size_.fetch_sub(count, std::memory_order_acq_rel);
}

Message* Lane::next_message() noexcept {
  Backlog* b = backlog_.load(std::memory_order_acquire);
  if (b == nullptr) {  // never resized: the queues alone
    if (Message* m = system_.pop()) {
      return m;
    }
    return user_.pop();
  }
  if (b->has_received.load(std::memory_order_acquire)) {
    merge_received(*b);
  }
  if (Message* m = b->front_system.pop()) {
    return m;
  }
  if (Message* m = system_.pop()) {
    return m;
  }
  if (Message* m = b->front_user.pop()) {
    return m;
  }
  return user_.pop();
}

void Lane::run_slice() {
  in_slice_.fetch_add(1, std::memory_order_acq_rel);
  runner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  const std::int64_t cpu_before = timed_ ? thread_cpu_ns() : 0;
  int done = 0;
  for (; done < kBatch && gate_.load(std::memory_order_acquire) == 0; ++done) {
    if (handover_.load(std::memory_order_relaxed) != nullptr) {
      Handover* job = handover_.exchange(nullptr, std::memory_order_acq_rel);
      job->run(*this);
      delete job;
      size_.fetch_sub(1, std::memory_order_acq_rel);
      continue;
    }
    Message* m = next_message();
    if (m == nullptr) {
      break;  // empty, or a producer is mid-push and will be seen below
    }
    owner_->execute(m, index_);
    // Per message, not per slice: size() is "queued or running" and callers rely on it.
    size_.fetch_sub(1, std::memory_order_acq_rel);
  }
  if (timed_) {
    owner_->slice_done(index_, thread_cpu_ns() - cpu_before);
  }
  runner_.store(std::thread::id{}, std::memory_order_relaxed);
  scheduled_.store(false, std::memory_order_seq_cst);
  if (size_.load(std::memory_order_seq_cst) > 0) {
    try_schedule(true);
  }
  // Last access to `this`: the owner may destroy a lane once it is quiescent.
  in_slice_.fetch_sub(1, std::memory_order_release);
}

bool Lane::quiescent() const noexcept {
  return size_.load(std::memory_order_acquire) == 0 &&
         !scheduled_.load(std::memory_order_acquire) &&
         in_slice_.load(std::memory_order_acquire) == 0;
}

bool Lane::running_on_this_thread() const noexcept {
  return runner_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

// ---------------------------------------------------------------------------------------------
// Routing

struct Mailbox::Routing {
  std::vector<Lane*> lanes;
  std::vector<std::uint64_t> points;  // sorted ring positions
  std::vector<std::uint16_t> owners;  // lane index of each point

  [[nodiscard]] int lane_for(std::uint64_t hash) const {
    if (lanes.size() == 1) {
      return 0;
    }
    auto it = std::lower_bound(points.begin(), points.end(), hash);
    std::size_t i = it == points.end() ? 0 : static_cast<std::size_t>(it - points.begin());
    return owners[i];
  }
};

std::unique_ptr<Mailbox::Routing> Mailbox::build_routing(int lanes) {
  auto r = std::make_unique<Routing>();
  if (lanes == 1) {
    r->lanes.push_back(lanes_[0].get());
    return r;  // every key goes to lane 0: no ring needed (saves ~1.6 KB per service)
  }
  std::vector<std::pair<std::uint64_t, std::uint16_t>> ring;
  ring.reserve(static_cast<std::size_t>(lanes) * static_cast<std::size_t>(virtual_nodes_));
  for (int i = 0; i < lanes; ++i) {
    r->lanes.push_back(lanes_[static_cast<std::size_t>(i)].get());
    for (int v = 0; v < virtual_nodes_; ++v) {
      // A lane's points depend only on (lane, v): growing keeps existing points where they are.
      // Hashed twice with a salt: a single hash_key(small int) would coincide with the hash of
      // integer dispatch keys and pin keys 0..9 to lane 0.
      std::uint64_t point = hash_key(hash_key(
          0x454d424552ull ^ (static_cast<std::uint64_t>(i) << 32) ^ static_cast<std::uint32_t>(v)));
      ring.emplace_back(point, static_cast<std::uint16_t>(i));
    }
  }
  std::sort(ring.begin(), ring.end());
  for (const auto& [point, owner] : ring) {
    r->points.push_back(point);
    r->owners.push_back(owner);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Rebalance: runs on a lane that gave keys away, re-routes what it holds, lets receivers run.

class Mailbox::Rebalance final : public Lane::Handover {
 public:
  Rebalance(Mailbox* mailbox, std::vector<Lane*> receivers)
      : mailbox_(mailbox), receivers_(std::move(receivers)) {}

  void run(Lane& giver) noexcept override {
    // routing_ is the new routing and stays so until every handover of this change is done.
    const Routing& routing = *mailbox_->routing_.load(std::memory_order_acquire);
    std::vector<Message*> system;
    std::vector<Message*> user;
    giver.take_all(system, user);
    std::vector<std::vector<Message*>> moved(routing.lanes.size());
    std::int64_t given = 0;
    auto route = [&](Message* m) {
      const bool keyed = m->key.has_value();
      Lane* to = &giver;
      if (keyed) {
        to = routing.lanes[static_cast<std::size_t>(routing.lane_for(m->key.hash()))];
      } else if (!m->is_control()) {  // control messages (drain markers) belong to this lane
        const std::uint64_t n = mailbox_->round_robin_.fetch_add(1, std::memory_order_relaxed);
        to = routing.lanes[n % routing.lanes.size()];
      }
      if (to == &giver) {
        giver.keep(m);
        return;
      }
      ++given;
      if (keyed) {
        moved[static_cast<std::size_t>(to->index())].push_back(m);
      } else {
        to->push(m);  // no order to keep: a plain enqueue
      }
    };
    std::for_each(system.begin(), system.end(), route);
    std::for_each(user.begin(), user.end(), route);
    for (std::size_t i = 0; i < moved.size(); ++i) {
      if (!moved[i].empty()) {
        routing.lanes[i]->receive(moved[i]);  // a receiver of ours: gated until we open it
      }
    }
    giver.gave_away(given);
    for (Lane* lane : receivers_) {
      lane->open_gate();
    }
    mailbox_->handover_done();
  }

 private:
  Mailbox* mailbox_;
  std::vector<Lane*> receivers_;
};

namespace {
class DrainMarker final : public Message {
 public:
  DrainMarker(std::shared_ptr<std::atomic<int>> remaining,
              std::shared_ptr<std::function<void()>> done)
      : remaining_(std::move(remaining)), done_(std::move(done)) {}
  void run() override {
    if (remaining_->fetch_sub(1, std::memory_order_acq_rel) == 1) {
      (*done_)();
    }
  }
  void reject(const Error& /*why*/) noexcept override { run(); }
  [[nodiscard]] std::string_view name() const noexcept override { return "drain-marker"; }
  [[nodiscard]] bool is_control() const noexcept override { return true; }

 private:
  std::shared_ptr<std::atomic<int>> remaining_;
  std::shared_ptr<std::function<void()>> done_;
};

constexpr std::uint32_t kWriterBit = 1u << 31;
}  // namespace

// ---------------------------------------------------------------------------------------------
// Mailbox

Mailbox::Mailbox(LaneOwner* owner, Scheduler* scheduler, Options options)
    : owner_(owner),
      scheduler_(scheduler),
      virtual_nodes_(std::clamp(options.virtual_nodes, 1, 1000)),
      user_bound_(std::max<std::int64_t>(0, options.user_bound)),
      timed_slices_(options.timed_slices) {
  int lanes = std::clamp(options.lanes, 1, kMaxLanes);
  for (int i = 0; i < lanes; ++i) {
    lanes_.push_back(std::make_unique<Lane>(owner_, scheduler_, i, timed_slices_));
  }
  routing_.store(build_routing(lanes).release(), std::memory_order_release);
}

Mailbox::~Mailbox() {
  // Owners destroy a mailbox only once it is quiescent; a worker may still be leaving the last
  // slice, and this wait (acquire on in_slice_) orders its last access before the frees.
  while (!quiescent()) {
    std::this_thread::yield();
  }
  delete routing_.load(std::memory_order_acquire);
}

void Mailbox::enter_post() const noexcept {
  for (;;) {
    std::uint32_t before = post_gate_.fetch_add(1, std::memory_order_seq_cst);
    if ((before & kWriterBit) == 0) {
      return;
    }
    post_gate_.fetch_sub(1, std::memory_order_seq_cst);
    while ((post_gate_.load(std::memory_order_acquire) & kWriterBit) != 0) {
      std::this_thread::yield();
    }
  }
}

void Mailbox::leave_post() const noexcept {
  post_gate_.fetch_sub(1, std::memory_order_release);
}

void Mailbox::exclusive_begin() noexcept {
  post_gate_.fetch_or(kWriterBit, std::memory_order_seq_cst);
  while ((post_gate_.load(std::memory_order_acquire) & ~kWriterBit) != 0) {
    std::this_thread::yield();
  }
}

void Mailbox::exclusive_end() noexcept {
  post_gate_.fetch_and(~kWriterBit, std::memory_order_seq_cst);
}

Status Mailbox::push(Message* m) noexcept {
  if (m->counted) {
    std::int64_t before = user_pending_.fetch_add(1, std::memory_order_relaxed);
    if (before >= user_bound_) {
      user_pending_.fetch_sub(1, std::memory_order_relaxed);
      return Error{Errc::overloaded, "mailbox holds " + std::to_string(before) +
                                         " user messages (bound " + std::to_string(user_bound_) +
                                         ")"};
    }
  }
  enter_post();
  route(m->key)->push(m);
  leave_post();
  return {};
}

Lane* Mailbox::route(DispatchKey key) noexcept {
  const Routing* r = routing_.load(std::memory_order_acquire);
  if (r->lanes.size() == 1) {
    return r->lanes[0];
  }
  if (key.has_value()) {
    return r->lanes[static_cast<std::size_t>(r->lane_for(key.hash()))];
  }
  // Keyless messages promise no lane, only spreading (a chain goes to one lane).
  std::uint64_t n = round_robin_.fetch_add(1, std::memory_order_relaxed);
  return r->lanes[n % r->lanes.size()];
}

void Mailbox::push_chain(Message* first, Message* last, std::int64_t count) noexcept {
  enter_post();
  route(first->key)->push_chain(first, last, count);
  leave_post();
}

int Mailbox::lane_count() const {
  enter_post();
  int n = static_cast<int>(routing_.load(std::memory_order_acquire)->lanes.size());
  leave_post();
  return n;
}

int Mailbox::lane_for_key(std::uint64_t hash) const {
  enter_post();
  int lane = routing_.load(std::memory_order_acquire)->lane_for(hash);
  leave_post();
  return lane;
}

bool Mailbox::resizing() const {
  std::lock_guard lock(resize_mu_);
  return outstanding_handovers_ > 0;
}

void Mailbox::resize(int lanes) {
  int target = std::clamp(lanes, 1, kMaxLanes);
  std::lock_guard lock(resize_mu_);
  if (outstanding_handovers_ > 0) {
    pending_target_ = target;  // applied when the change in progress completes
    return;
  }
  apply_resize_locked(target);
}

void Mailbox::apply_resize_locked(int target) {
  pending_target_ = 0;
  const Routing* current = routing_.load(std::memory_order_acquire);
  const int from = static_cast<int>(current->lanes.size());
  if (target == from) {
    return;
  }
  while (static_cast<int>(lanes_.size()) < target) {
    lanes_.push_back(
        std::make_unique<Lane>(owner_, scheduler_, static_cast<int>(lanes_.size()), timed_slices_));
    if (held_) {
      lanes_.back()->close_gate();
    }
  }
  std::unique_ptr<Routing> next = build_routing(target);

  // Owners only change at ring points of either ring: checking each point (and the wrap-around
  // region past the last point) finds every (giver, receiver) pair exactly.
  std::set<std::pair<int, int>> moves;
  auto check = [&](std::uint64_t h) {
    int a = current->lane_for(h);
    int b = next->lane_for(h);
    if (a != b) {
      moves.emplace(a, b);
    }
  };
  for (std::uint64_t p : current->points) {
    check(p);
  }
  for (std::uint64_t p : next->points) {
    check(p);
  }
  check(~std::uint64_t{0});

  std::vector<std::vector<Lane*>> receivers_of(lanes_.size());
  for (const auto& [giver, receiver] : moves) {
    receivers_of[static_cast<std::size_t>(giver)].push_back(
        lanes_[static_cast<std::size_t>(receiver)].get());
  }

  exclusive_begin();
  int givers = 0;
  for (std::size_t g = 0; g < receivers_of.size(); ++g) {
    if (receivers_of[g].empty()) {
      continue;
    }
    for (Lane* receiver : receivers_of[g]) {
      receiver->close_gate();
    }
    ++givers;
  }
  outstanding_handovers_ = givers;
  // The new routing first: a handover may run as soon as it is started, and routes by it.
  const Routing* old = routing_.exchange(next.release(), std::memory_order_acq_rel);
  for (std::size_t g = 0; g < receivers_of.size(); ++g) {
    if (!receivers_of[g].empty()) {
      lanes_[g]->start_handover(new Rebalance(this, std::move(receivers_of[g])));
    }
  }
  exclusive_end();
  // No poster can hold `old` now: they only read routing_ between enter_post and leave_post.
  delete old;
}

void Mailbox::handover_done() {
  std::lock_guard lock(resize_mu_);
  if (--outstanding_handovers_ == 0 && pending_target_ != 0) {
    apply_resize_locked(pending_target_);
  }
}

void Mailbox::hold() {
  std::lock_guard lock(resize_mu_);
  if (held_) {
    return;
  }
  held_ = true;
  for (auto& lane : lanes_) {
    lane->close_gate();
  }
}

void Mailbox::release() {
  std::lock_guard lock(resize_mu_);
  if (!held_) {
    return;
  }
  held_ = false;
  for (auto& lane : lanes_) {
    lane->open_gate();
  }
}

void Mailbox::post_drain_markers(std::function<void()> done) {
  std::lock_guard lock(resize_mu_);
  auto remaining = std::make_shared<std::atomic<int>>(static_cast<int>(lanes_.size()));
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  for (auto& lane : lanes_) {
    lane->push(new DrainMarker(remaining, shared_done));
  }
}

bool Mailbox::quiescent() const {
  std::lock_guard lock(resize_mu_);
  return std::all_of(lanes_.begin(), lanes_.end(), [](const auto& l) { return l->quiescent(); });
}

std::int64_t Mailbox::queued() const {
  std::lock_guard lock(resize_mu_);
  std::int64_t total = 0;
  for (const auto& lane : lanes_) {
    total += lane->size();
  }
  return total;
}

std::vector<std::int64_t> Mailbox::lane_sizes() const {
  std::lock_guard lock(resize_mu_);
  std::vector<std::int64_t> sizes;
  for (const auto& lane : lanes_) {
    sizes.push_back(lane->size());
  }
  return sizes;
}

}  // namespace ember::runtime
