// SPDX-License-Identifier: Apache-2.0
#include "rpc/calls.hpp"

#include <algorithm>
#include <ember/node.hpp>
#include <random>
#include <thread>

#include "core/node_impl.hpp"
#include "core/send_batch.hpp"
#include "core/service_core.hpp"
#include "rpc/inbound.hpp"
#include "rpc/messaging.hpp"
#include "runtime/scheduler.hpp"

namespace ember {
std::uint64_t new_trace_id() noexcept {
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   std::hash<std::thread::id>{}(std::this_thread::get_id())};
  std::uint64_t id = 0;
  while (id == 0) {
    id = rng();
  }
  return id;
}

bool CallHandle::cancel() {
  std::shared_ptr<void> locked = pending_.lock();
  if (!locked) {
    return false;
  }
  return std::static_pointer_cast<detail::PendingCall>(locked)->cancel();
}

}  // namespace ember

namespace ember::detail {
namespace {

using Clock = ember::Clock;

/// Runs an AsyncCall callback or resumes a coroutine in the caller's mailbox.
class Completion final : public runtime::Message {
 public:
  explicit Completion(std::shared_ptr<PendingCall> pending) : pending_(std::move(pending)) {}

  void run() override {
    PendingCall& p = *pending_;
    if (p.timer.valid()) {
      p.node->timers->cancel(p.timer);
    }
    if (p.module_alive.expired()) {
      return;  // the calling module was released: its callback must not run
    }
    if (p.mode == PendingCall::Mode::callback) {
      auto callback = std::move(p.callback);
      TraceScope trace(p.trace_id);
      callback(std::move(*p.result));
    } else {
      ContextScope scope(&p.resume_context);
      p.continuation.resume();
    }
  }
  // The caller stopped: nothing to deliver to. A suspended coroutine is destroyed by the stop.
  void reject(const Error& /*why*/) noexcept override {}
  [[nodiscard]] std::string_view name() const noexcept override { return pending_->method; }
  [[nodiscard]] std::uint64_t trace_id() const noexcept override {
    return pending_->trace_id != 0 ? pending_->trace_id
                                   : detail::state(pending_->resume_context).trace_id;
  }

 private:
  std::shared_ptr<PendingCall> pending_;
};

/// Services of this node are all selectable, private ones included; another node's are visible
/// only when published, so in a cluster "no match" may mean a private service elsewhere.
Error no_match(const Selection& sel) {
  std::string text = "no service matches " + sel.description;
  if (Messaging::of(*sel.node).remote()) {
    text +=
        " (a service on another node is visible only if one of its methods starts with \"Rpc\" or "
        "\"RPC\"; "
        "one without is private and reachable from its own node only)";
  }
  return Error{Errc::not_found, std::move(text)};
}

Result<const Target*> single_target(const Selection& sel, std::string_view verb) {
  if (sel.targets.empty()) {
    return no_match(sel);
  }
  if (sel.targets.size() > 1) {
    return Error{Errc::invalid_argument, std::string(verb) + " needs one target but " +
                                             std::to_string(sel.targets.size()) +
                                             " services match " + sel.description +
                                             "; narrow the selector or add .key(...)"};
  }
  return &sel.targets.front();
}

/// Where a call's deadline came from, so that a timeout can name the setting to change.
struct DeadlineOrigin {
  enum class Kind : std::uint8_t { option, node_default, caller } kind = Kind::node_default;
  std::chrono::milliseconds span{0};  // from the call to its deadline
  std::chrono::milliseconds own{0};   // the call's own timeout (option or node default)
  bool own_is_option = false;
};

/// "'RpcSum' to calc@n1 timed out after 500 ms (CallOptions::timeout; the default is
/// NodeConf.CallTimeout = 1000 ms)". Built only when a call times out.
std::string timeout_text(std::string_view method, const std::string& target,
                         const DeadlineOrigin& origin, std::chrono::milliseconds node_default) {
  std::string text = "'" + std::string(method) + "' to " + target + " timed out after " +
                     std::to_string(origin.span.count()) + " ms";
  const std::string fallback =
      "NodeConf.CallTimeout = " + std::to_string(node_default.count()) + " ms";
  switch (origin.kind) {
    case DeadlineOrigin::Kind::option:
      return text + " (CallOptions::timeout; the default is " + fallback + ")";
    case DeadlineOrigin::Kind::node_default:
      return text + " (" + fallback + ", the default; CallOptions::timeout sets it per call)";
    case DeadlineOrigin::Kind::caller:
      return text +
             " (the remaining deadline of the calling handler, which a call inherits; its own " +
             "timeout was " + std::to_string(origin.own.count()) + " ms from " +
             (origin.own_is_option ? "CallOptions::timeout" : "NodeConf.CallTimeout") + ")";
  }
  return text;
}

/// Fills `ctx` (a fresh Context, built in place: a request's context is moved once, into the
/// request). `is_send`: nobody waits, so a Send has a deadline only when its own options set a
/// timeout (and only then reads the clock). It does not inherit the calling handler's deadline:
/// a one-way message is not part of the answer that handler's caller waits for.
Status outgoing_context(Context& ctx, const Selection& sel, const CallSpec& spec,
                        bool inherit_chain, bool is_send = false,
                        DeadlineOrigin* origin = nullptr) {
  NodeImpl& node = *sel.node;
  ContextState& state = detail::state(ctx);
  state.priority = spec.options.priority;
  state.key = spec.options.key;
  const Context* parent = current_context();
  const ContextState* up = parent != nullptr ? &detail::state(*parent) : nullptr;
  state.trace_id = up != nullptr && up->trace_id != 0 ? up->trace_id : new_trace_id();
  if (up != nullptr && up->extras) {
    // The origin reaches every hop (a client session); the chain only blocking calls; headers
    // are per call. Most chains carry just the origin: the parent's extras are shared as is.
    const ContextExtras& above = *up->extras;
    if (!above.headers && (inherit_chain || above.chain.empty())) {
      state.extras = up->extras;
    } else {
      if (above.origin) {
        state.edit().origin = above.origin;
      }
      if (inherit_chain && !above.chain.empty()) {
        state.edit().chain = above.chain;
      }
    }
  }
  if (!spec.options.headers.empty()) {
    state.edit().headers = std::make_shared<const Headers>(spec.options.headers);
  }
  if (is_send) {
    if (spec.options.timeout.count() > 0) {
      state.deadline = Clock::now() + spec.options.timeout;
    }
  } else {
    auto timeout =
        spec.options.timeout.count() > 0 ? spec.options.timeout : node.config.call_timeout;
    const auto now = Clock::now();
    state.deadline = now + timeout;
    bool inherited = false;
    if (up != nullptr && up->deadline < state.deadline) {
      state.deadline = up->deadline;
      inherited = true;
      if (state.deadline <= now) {
        return Error{Errc::timeout, "the deadline of the calling handler passed before calling '" +
                                        std::string(spec.method) + "'"};
      }
    }
    if (origin != nullptr) {
      using std::chrono::duration_cast;
      using std::chrono::milliseconds;
      origin->own = duration_cast<milliseconds>(timeout);
      origin->own_is_option = spec.options.timeout.count() > 0;
      origin->span = duration_cast<milliseconds>(state.deadline - now);
      origin->kind = inherited               ? DeadlineOrigin::Kind::caller
                     : origin->own_is_option ? DeadlineOrigin::Kind::option
                                             : DeadlineOrigin::Kind::node_default;
    }
  }
  state.caller = sel.from != nullptr ? sel.from->shared_pid() : node.node_pid;
  return {};
}

/// A blocking call into a lane that is itself blocked up the chain can never be answered.
std::optional<Error> find_cycle(const Context& ctx, const Target& target, DispatchKey key) {
  if (!target.anchor) {
    return std::nullopt;  // remote: lanes of other nodes are not visible here (not detected yet)
  }
  return target.anchor->with_core([&](ServiceCore* core) -> std::optional<Error> {
    if (core == nullptr) {
      return std::nullopt;
    }
    int lanes = core->mailbox().lane_count();
    int lane = lanes == 1 ? 0 : (key.has_value() ? core->mailbox().lane_for_key(key.hash()) : -1);
    const std::vector<ChainLink>& chain = detail::state(ctx).chain();
    for (std::size_t i = 0; i < chain.size(); ++i) {
      const ChainLink& link = chain[i];
      if (link.service == core && lane >= 0 && (lanes == 1 || link.lane == lane)) {
        std::string path;
        for (std::size_t j = i; j < chain.size(); ++j) {
          path += chain[j].name + " → ";
        }
        path += target.pid().to_string();
        return Error{Errc::call_cycle, "call cycle: " + path + " (" + target.pid().to_string() +
                                           " is already waiting in this chain; use async_call or "
                                           "co_call on one side)"};
      }
    }
    return std::nullopt;
  });
}

Request* make_request(const CallSpec& spec, std::shared_ptr<Responder> responder, Context&& ctx,
                      bool check_response) {
  auto* req = new Request(spec.method, spec.shared(), check_response ? spec.response_type : nullptr,
                          spec.response_prototype, std::move(responder), std::move(ctx));
  req->priority = spec.options.priority;
  req->key = spec.options.key;
  return req;
}

/// Hands one request to its target: the local mailbox, or the cluster for a remote instance.
/// `pending` null means Send (no reply, no response type check).
/// A Send's callee could only log a request of the wrong type, and nobody reads a callee's log
/// while debugging the sender: when the target is on this node the sender checks the type
/// itself. (A call hears bad_argument_type in its reply; a remote Send's callee still logs it.)
Status check_send_type(const ServiceCore& core, const CallSpec& spec) {
  const ServiceMessaging* methods = ServiceMessaging::find(core);
  if (methods == nullptr) {
    return {};  // no method at all: the callee's no_such_method, logged there
  }
  const ServiceMessaging::RequestType expected = methods->request_type(spec.method);
  const AnyMessage& request = spec.message();
  if (expected.type == nullptr || typeid(request) == *expected.type) {
    return {};  // a missing method is the callee's no_such_method, logged there
  }
  return Error{Errc::bad_argument_type, "method '" + std::string(spec.method) + "' takes " +
                                            expected.descriptor->full_name() + ", the request is " +
                                            request.GetDescriptor()->full_name()};
}

Status dispatch(const Selection& sel, const Target& t, const CallSpec& spec, Context&& ctx,
                const std::shared_ptr<PendingCall>& pending) {
  if (t.anchor) {
    if (pending) {
      return t.anchor->post(
          make_request(
              spec, std::allocate_shared<LocalResponder>(SmallAllocator<LocalResponder>{}, pending),
              std::move(ctx), true),
          true);
    }
    // Send is the hot path. Inside a handler, a Send like the previous one joins its batch
    // without touching the callee; the first of a batch is checked under one pin.
    SendBatch* batch = SendBatch::current();
    const std::type_info& request_type = typeid(spec.message());
    if (batch != nullptr && batch->matches(t.anchor.get(), spec.method, request_type,
                                           spec.options.priority, spec.options.key)) {
      batch->add(make_request(spec, nullptr, std::move(ctx), false));
      return {};
    }
    return t.anchor->with_core([&](ServiceCore* core) -> Status {
      if (core == nullptr) {
        return Error{Errc::stopping, "the service is gone"};
      }
      if (Status st = check_send_type(*core, spec); !st) {
        return st;
      }
      if (batch != nullptr && core->takes_batches(spec.options.key)) {
        batch->start(t.anchor, spec.method, request_type,
                     make_request(spec, nullptr, std::move(ctx), false));
        return {};
      }
      return core->post(make_request(spec, nullptr, std::move(ctx), false), true);
    });
  }
  SendBatch::flush_current();  // a remote hop must not overtake what this thread sent here
  if (!Messaging::of(*sel.node).remote()) {
    return Error{Errc::node_unreachable,
                 "service " + t.pid().to_string() +
                     " is on another node and this node has no cluster transport"};
  }
  return Messaging::of(*sel.node).remote()->send_request(t, spec, ctx, pending);
}

Status with_target(Status st, const Target& t, std::string_view method) {
  if (st) {
    return st;
  }
  return Error{st.error().code(), "'" + std::string(method) + "' to " + t.pid().to_string() + ": " +
                                      st.error().message()};
}

}  // namespace

PendingCall::PendingCall(Mode m, NodeImpl* n) : mode(m), node(n) {
  if (node != nullptr) {
    Messaging::of(*node).pending_call_opened();
  }
}

PendingCall::~PendingCall() {
  if (node != nullptr) {
    Messaging::of(*node).pending_call_closed();
  }
}

bool PendingCall::complete(AnyReply r) {
  // A blocking caller wakes without a post: what the replying handler sent goes first, as it
  // would if the reply were posted.
  SendBatch::flush_current();
  if (done.exchange(true, std::memory_order_acq_rel)) {
    return false;
  }
  result.emplace(std::move(r));
  if (mode == Mode::blocking) {
    {
      std::lock_guard lock(mu);  // pairs with the waiter's predicate check
      ready.store(true, std::memory_order_release);
    }
    cv.notify_all();  // no syscall when the waiter is still spinning
    return true;
  }
  auto* m = new Completion(shared_from_this());
  m->priority = priority;
  m->key = caller_key;
  (void)caller->post(m, false);  // internal: never refused for the bound
  return true;
}

bool PendingCall::cancel() {
  if (done.exchange(true, std::memory_order_acq_rel)) {
    return false;
  }
  if (timer.valid()) {
    node->timers->cancel(timer);
  }
  return true;
}

AnyReply take_result(PendingCall& pending) {
  return std::move(*pending.result);
}

Result<std::shared_ptr<AnyMessage>> call_blocking(CallSpec spec) {
  const Selection& sel = *spec.selection;
  if (sel.node == nullptr) {
    return Error{Errc::bad_state, "call on an empty Bus"};
  }
  auto target = single_target(sel, "call");
  if (!target) {
    return std::move(target).error();
  }
  const Target& t = **target;
  DeadlineOrigin origin;
  Context ctx;
  if (Status made = outgoing_context(ctx, sel, spec, true, false, &origin); !made) {
    return made.error();
  }
  if (ServiceCore* self = ServiceCore::current()) {
    detail::state(ctx).edit().chain.push_back(
        ChainLink{self, ServiceCore::current_lane(), self->pid().to_string()});
  }
  if (auto cycle = find_cycle(ctx, t, spec.options.key)) {
    return *cycle;
  }
  const auto deadline = detail::state(ctx).deadline;
  auto pending = std::allocate_shared<PendingCall>(SmallAllocator<PendingCall>{},
                                                   PendingCall::Mode::blocking, sel.node);
  if (Status posted = dispatch(sel, t, spec, std::move(ctx), pending); !posted) {
    return with_target(posted, t, spec.method).error();
  }
  if (runtime::Driver* driver = runtime::Driver::current()) {
    // The simulator has one thread: it runs the rest of the world until the reply or deadline.
    if (!driver->run_until([&] { return pending->ready.load(std::memory_order_acquire); },
                           deadline)) {
      (void)pending->complete(Error{
          Errc::timeout,
          timeout_text(spec.method, t.pid().to_string(), origin, sel.node->config.call_timeout)});
    }
    return std::move(*pending->result);
  }
  {
    runtime::Scheduler::BlockingRegion region;  // hand the worker over while we wait
    // Most local replies come within microseconds: spin briefly before sleeping, which saves a
    // futex wake-up on each side. Bounded in time, so a slow callee costs at most ~20 us of CPU.
    const auto spin_until = Clock::now() + std::chrono::microseconds(20);
    for (int i = 0; !pending->ready.load(std::memory_order_acquire); ++i) {
      if ((i & 63) == 63 && Clock::now() > spin_until) {
        break;
      }
      runtime::cpu_relax();
    }
    std::unique_lock lock(pending->mu);
    if (!pending->cv.wait_until(lock, deadline,
                                [&] { return pending->ready.load(std::memory_order_acquire); })) {
      lock.unlock();
      if (pending->complete(
              Error{Errc::timeout, timeout_text(spec.method, t.pid().to_string(), origin,
                                                sel.node->config.call_timeout)})) {
        return std::move(*pending->result);
      }
      lock.lock();
      pending->cv.wait(lock, [&] {
        return pending->ready.load(std::memory_order_acquire);
      });  // a reply won the race just now
    }
  }
  return std::move(*pending->result);
}

Status send(CallSpec spec) {
  const Selection& sel = *spec.selection;
  if (sel.node == nullptr) {
    return Error{Errc::bad_state, "send on an empty Bus"};
  }
  if (sel.targets.empty()) {
    return no_match(sel);
  }
  Context ctx;
  if (Status made = outgoing_context(ctx, sel, spec, false, /*is_send=*/true); !made) {
    return made;
  }
  std::size_t refused = 0;
  std::optional<Error> first;
  for (const Target& t : sel.targets) {
    // Send: nobody waits for an outcome. The last target takes the context itself.
    Status st = &t == &sel.targets.back() ? dispatch(sel, t, spec, std::move(ctx), nullptr)
                                          : dispatch(sel, t, spec, Context(ctx), nullptr);
    if (!st) {
      ++refused;
      if (!first) {
        first = with_target(st, t, spec.method).error();
      }
    }
  }
  if (refused == 0) {
    return {};
  }
  return Error{first->code(), std::to_string(refused) + " of " +
                                  std::to_string(sel.targets.size()) +
                                  " targets refused; first: " + first->message()};
}

namespace {

Module& calling_module(const Selection& sel) {
  return sel.from_module != nullptr ? *sel.from_module : sel.from->self();
}

/// A call whose outcome runs in the caller's mailbox: on the lane of the message being handled,
/// with the call's priority, and only while the calling module is alive.
std::shared_ptr<PendingCall> caller_bound(const CallSpec& spec, PendingCall::Mode mode) {
  const Selection& sel = *spec.selection;
  auto pending = std::allocate_shared<PendingCall>(SmallAllocator<PendingCall>{}, mode, sel.node);
  pending->method = std::string(spec.method);
  pending->caller = sel.from->anchor();
  const Context* parent = current_context();
  pending->caller_key = parent != nullptr ? detail::state(*parent).key : DispatchKey{};
  pending->priority = spec.options.priority;
  pending->module_alive = ServiceCore::alive_token(calling_module(sel));
  return pending;
}

/// caller_bound plus the timeout timer, owned by the calling module.
std::shared_ptr<PendingCall> start_async(const CallSpec& spec, PendingCall::Mode mode,
                                         const Target& t, const Context& ctx,
                                         const DeadlineOrigin& origin) {
  const Selection& sel = *spec.selection;
  auto pending = caller_bound(spec, mode);
  pending->target = t.pid().to_string();
  pending->trace_id = detail::state(ctx).trace_id;

  timer::TimerService::Request timeout;
  timeout.target = sel.from;
  timeout.owner = ServiceCore::timer_owner(calling_module(sel));
  timeout.delay = detail::state(ctx).deadline - Clock::now();
  timeout.options.key = pending->caller_key;
  timeout.options.priority = pending->priority;
  timeout.callback = [weak = std::weak_ptr<PendingCall>(pending), method = pending->method,
                      target = pending->target, origin,
                      node_default = sel.node->config.call_timeout] {
    if (auto p = weak.lock()) {
      p->complete(Error{Errc::timeout, timeout_text(method, target, origin, node_default)});
    }
  };
  pending->timer = sel.node->timers->schedule(std::move(timeout));
  return pending;
}

}  // namespace

Result<CallHandle> call_async(CallSpec spec, std::function<void(AnyReply)> on_done) {
  const Selection& sel = *spec.selection;
  if (sel.node == nullptr || sel.from == nullptr) {
    return Error{Errc::bad_state,
                 "async_call needs a calling service (use it from a service or "
                 "module; from outside use call or send)"};
  }
  auto target = single_target(sel, "async_call");
  if (!target) {
    return std::move(target).error();
  }
  const Target& t = **target;
  DeadlineOrigin origin;
  Context ctx;
  if (Status made = outgoing_context(ctx, sel, spec, false, false, &origin); !made) {
    return made.error();
  }
  auto pending = start_async(spec, PendingCall::Mode::callback, t, ctx, origin);
  pending->callback = std::move(on_done);
  if (Status posted = dispatch(sel, t, spec, std::move(ctx), pending); !posted) {
    pending->cancel();  // refused now: report it here, the callback will not run
    return with_target(posted, t, spec.method).error();
  }
  return CallHandle(std::weak_ptr<void>(pending));
}

bool call_coroutine(CallSpec spec, std::coroutine_handle<> continuation,
                    std::shared_ptr<PendingCall>& slot) {
  const Selection& sel = *spec.selection;
  if (sel.node == nullptr || sel.from == nullptr) {
    // No mailbox to resume through: the awaiter resumes in place with the error.
    slot = std::allocate_shared<PendingCall>(SmallAllocator<PendingCall>{},
                                             PendingCall::Mode::blocking, sel.node);
    slot->complete(Error{Errc::bad_state, "co_call needs a calling service"});
    return false;
  }
  auto target = single_target(sel, "co_call");
  DeadlineOrigin origin;
  Context ctx;
  const Status made =
      target ? outgoing_context(ctx, sel, spec, true, false, &origin) : Status(target.error());
  const Target* t = target ? *target : nullptr;
  std::shared_ptr<PendingCall> pending;
  if (t != nullptr && made) {
    pending = start_async(spec, PendingCall::Mode::coroutine, *t, ctx, origin);
  } else {
    pending = caller_bound(spec, PendingCall::Mode::coroutine);  // failed setup: no timer needed
  }
  pending->continuation = continuation;
  if (const Context* parent = current_context()) {
    pending->resume_context = *parent;
    detail::state(pending->resume_context)
        .method = {};  // viewed the request, which is gone by then
  }
  // The slot lives in the coroutine frame: fill it before anything can resume the coroutine,
  // and touch nothing of the frame afterwards.
  slot = pending;
  if (!made) {
    pending->complete(made.error());  // resumes through the mailbox like any other outcome
    return true;
  }
  if (Status posted = dispatch(sel, *t, spec, std::move(ctx), pending); !posted) {
    pending->complete(with_target(posted, *t, spec.method).error());
  }
  return true;
}

}  // namespace ember::detail
