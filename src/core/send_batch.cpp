// SPDX-License-Identifier: Apache-2.0
#include "core/send_batch.hpp"

#include "core/service_anchor.hpp"
#include "core/service_core.hpp"
#include "runtime/scheduler.hpp"

namespace ember::detail {
namespace {

thread_local SendBatch tls_batch;

void delete_chain(runtime::Message* m) noexcept {
  while (m != nullptr) {
    runtime::Message* next = m->next.load(std::memory_order_relaxed);
    delete m;
    m = next;
  }
}

// Before a handler blocks (a synchronous Call, wait_for), what it sent must be on its way: the
// wait may be for its effect.
const bool kFlushesBeforeBlocking = [] {
  runtime::Scheduler::set_before_blocking(&SendBatch::flush_current);
  return true;
}();

}  // namespace

SendBatch* SendBatch::current() noexcept {
  return tls_batch.depth_ > 0 ? &tls_batch : nullptr;
}

void SendBatch::flush_current() noexcept {
  tls_batch.flush();
}

void SendBatch::add(runtime::Message* m) noexcept {
  last_->next.store(m, std::memory_order_relaxed);
  last_ = m;
  if (++count_ == kLimit) {
    flush();
  }
}

void SendBatch::start(const std::shared_ptr<ServiceAnchor>& target, std::string_view method,
                      const std::type_info& request, runtime::Message* m) {
  flush();
  target_ = target;
  method_.assign(method);
  request_ = &request;
  priority_ = m->priority;
  key_ = m->key;
  m->next.store(nullptr, std::memory_order_relaxed);
  first_ = last_ = m;
  count_ = 1;
}

void SendBatch::flush() noexcept {
  if (count_ == 0) {
    return;
  }
  runtime::Message* first = first_;
  runtime::Message* last = last_;
  const std::int64_t count = count_;
  first_ = last_ = nullptr;
  count_ = 0;
  std::shared_ptr<ServiceAnchor> target = std::move(target_);
  target->with_core([&](ServiceCore* core) {
    if (core == nullptr || !core->post_chain(first, last, count)) {
      delete_chain(first);
    }
  });
}

// Every handler boundary flushes, nested ones too: the simulator runs other services' handlers
// inline while a handler waits, and those must see what the waiting handler sent.
SendBatch::Scope::Scope() noexcept {
  tls_batch.flush();
  ++tls_batch.depth_;
}

SendBatch::Scope::~Scope() {
  --tls_batch.depth_;
  tls_batch.flush();
}

}  // namespace ember::detail
