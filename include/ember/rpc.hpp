// SPDX-License-Identifier: Apache-2.0
//
// Messaging between services: methods by name with protobuf request/response types, selectors,
// and the verbs. The same API reaches services on other nodes.
//
//   // callee: register typed handlers (duplicate names are refused)
//   Status Calc::on_init() { return handle("RpcSum", &Calc::sum); }
//   Result<pb::SumResp> Calc::sum(const pb::SumReq& req) { ... }
//
//   // caller (any service or module)
//   auto bus = select(ember::Selector::name("calc"));
//   Result<pb::SumResp> r = bus.call<pb::SumResp>("RpcSum", req);  // waits
//   auto pending = bus.async_call<pb::SumResp>("RpcSum", req,      // callback on my lane
//                                              [](Result<pb::SumResp> r) { ... });
//   if (!pending) { ... }                                          // not sent: why is in the error
//   if (Status sent = bus.send("RpcLog", entry); !sent) { ... }    // every target, no reply
//   auto r2 = co_await bus.co_call<pb::SumResp>("RpcSum", req);    // in a Task handler
//
// Local calls never serialize: the request is moved (or copied once) into an immutable shared
// object, so the callee cannot change the caller's message and the caller cannot change the
// request under the callee.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <google/protobuf/empty.pb.h>
#include <google/protobuf/message.h>

#include <chrono>
#include <coroutine>
#include <ember/context.hpp>
#include <ember/error.hpp>
#include <ember/module.hpp>
#include <ember/pid.hpp>
#include <ember/small_alloc.hpp>
#include <ember/task.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace ember {

using AnyMessage = google::protobuf::Message;
/// Response type of methods that return nothing but success or an error.
using NoReply = google::protobuf::Empty;

/// A method's name and types in one place, shared by caller and callee:
///   inline constexpr ember::Method<pb::SumReq, pb::SumResp> kSum{"RpcSum"};
template <class Req, class Resp>
struct Method {
  std::string_view name;
};

enum class Role : std::uint8_t { master, slave, any };

namespace detail {
class Repository;
}  // namespace detail

/// Which services a Bus addresses. Every criterion narrows the match; by default only masters.
class Selector {
 public:
  static Selector name(std::string service_name);
  static Selector type(std::string service_type);
  static Selector pid(const Pid& exact);
  static Selector all();

  Selector& id(std::string service_id);
  Selector& server_id(std::int32_t server);
  Selector& role(Role r);
  /// Picks ONE instance among the matches by consistent (rendezvous) hashing of `key`: the same key
  /// keeps reaching the same instance while the set of instances is stable.
  Selector& key(DispatchKey k);
  /// Extra predicate over the repository entry.
  Selector& where(std::function<bool(const Pid&)> predicate);

  /// "name=calc id=1 role=any" ("all" for Selector::all()), as errors quote it.
  [[nodiscard]] std::string to_string() const;

 private:
  friend class detail::Repository;
  std::string name_;
  std::string type_;
  std::string id_;
  bool has_id_ = false;
  std::int32_t server_id_ = 0;
  bool has_server_id_ = false;
  std::string uid_;  // exact instance
  Role role_ = Role::master;
  DispatchKey key_;
  std::function<bool(const Pid&)> predicate_;
};

/// Cancels a pending AsyncCall: its callback will not run. Cheap to copy; cancel is idempotent.
class CallHandle {
 public:
  CallHandle() = default;
  explicit CallHandle(std::weak_ptr<void> pending) : pending_(std::move(pending)) {}
  /// True when this call prevented the callback from running.
  bool cancel();

 private:
  std::weak_ptr<void> pending_;
};

/// Cancels a pending Module::when_available: its callback will not run. Cheap to copy.
class WaitHandle {
 public:
  WaitHandle() = default;
  explicit WaitHandle(std::weak_ptr<void> wait) : wait_(std::move(wait)) {}
  /// True when this call prevented the callback from running.
  bool cancel();

 private:
  std::weak_ptr<void> wait_;
};

namespace detail {

struct Selection;
class PendingCall;

/// The default of a verb's `Resp` parameter, which nothing can deduce: a verb called without its
/// response type fails one static_assert that shows how to write it, instead of "couldn't deduce
/// template parameter" and a list of candidates.
struct MissingResponseType {};
template <class Resp>
inline constexpr bool response_given = !std::is_same_v<Resp, MissingResponseType>;

struct CallSpec {
  const Selection* selection = nullptr;  // the Bus outlives blocking calls and sends
  std::shared_ptr<const Selection> pin;  // co_call only: its frame may die mid-call
  std::string_view method;
  /// The request, shared with local callees. For a request the caller passed by reference and
  /// that is dispatched at once (call, send, async_call), it is copied only when a local target
  /// needs it: a remote target serializes `borrowed` directly.
  mutable std::shared_ptr<const AnyMessage> request;
  const AnyMessage* borrowed = nullptr;
  std::shared_ptr<const AnyMessage> (*copy)(const AnyMessage&) = nullptr;
  [[nodiscard]] const AnyMessage& message() const { return request ? *request : *borrowed; }
  [[nodiscard]] const std::shared_ptr<const AnyMessage>& shared() const {
    if (!request) {
      request = copy(*borrowed);
    }
    return request;
  }
  const std::type_info* response_type = nullptr;
  const AnyMessage* response_prototype = nullptr;  // decodes a reply that crossed the wire
  CallOptions options;
};

using AnyReply = Result<std::shared_ptr<AnyMessage>>;

Result<std::shared_ptr<AnyMessage>> call_blocking(CallSpec spec);
Status send(CallSpec spec);
Result<CallHandle> call_async(CallSpec spec, std::function<void(AnyReply)> on_done);
/// Starts a call whose completion resumes `continuation` through the caller's mailbox. Stores
/// the pending call in `slot` before anything can resume. False: resume at once (no mailbox).
bool call_coroutine(CallSpec spec, std::coroutine_handle<> continuation,
                    std::shared_ptr<PendingCall>& slot);
AnyReply take_result(PendingCall& pending);

template <class Resp>
Result<Resp> unpack_reply(AnyReply reply) {
  if (!reply) {
    return std::move(reply).error();
  }
  std::shared_ptr<AnyMessage>& any = *reply;
  // Type was checked against Resp's descriptor by the callee before the handler ran.
  return std::move(static_cast<Resp&>(*any));
}

template <class Resp>
Result<Resp> unpack(AnyReply reply) {
  if constexpr (!response_given<Resp>) {
    return Error{Errc::invalid_argument, "no response type"};  // a static_assert failed already
  } else {
    return unpack_reply<Resp>(std::move(reply));
  }
}

template <class Req>
std::shared_ptr<const AnyMessage> copy_message(const AnyMessage& request) {
  return std::allocate_shared<Req>(SmallAllocator<Req>{}, static_cast<const Req&>(request));
}

template <class T>
std::shared_ptr<const AnyMessage> share(T&& request) {
  using Req = std::decay_t<T>;
  static_assert(std::is_base_of_v<AnyMessage, Req>, "requests must be protobuf messages");
  return std::allocate_shared<Req>(SmallAllocator<Req>{}, std::forward<T>(request));
}

}  // namespace detail

/// Awaitable returned by Bus::co_call. Resumes on the caller's lane with the reply or error.
template <class Resp>
class CallAwaiter {
 public:
  CallAwaiter(detail::CallSpec spec, std::shared_ptr<const detail::Selection> pin)
      : spec_(std::move(spec)) {
    spec_.pin = std::move(pin);
  }
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    return detail::call_coroutine(std::move(spec_), h, pending_);
  }
  Result<Resp> await_resume() { return detail::unpack<Resp>(detail::take_result(*pending_)); }

 private:
  detail::CallSpec spec_;
  std::shared_ptr<detail::PendingCall> pending_;
};

/// The targets of a selection and the verbs to reach them.
///
/// - call / async_call / co_call need exactly one target: no match is not_found; several matches
///   are invalid_argument (narrow the selector, or add .key(...) to pick one consistently).
/// - send goes to every target; it fails only when none accepts (or none matched).
class Bus {
 public:
  Bus() = default;
  explicit Bus(std::shared_ptr<const detail::Selection> selection)
      : selection_(std::move(selection)) {}

  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] std::vector<Pid> targets() const;

  /// Waits for the reply (NodeConf.CallTimeout by default). Safe in handlers: the worker is
  /// handed over while it waits, and a call that would wait on a service already waiting up
  /// the chain fails at once with call_cycle.
  template <class Resp = detail::MissingResponseType, class Req>
  Result<Resp> call(std::string_view method, Req&& request, CallOptions options = {}) const {
    static_assert(detail::response_given<Resp>,
                  "call<Resp>(method, request) needs the response type, which cannot be deduced "
                  "from the arguments: bus.call<pb::SumResp>(\"RpcSum\", req), or declare the "
                  "method once as inline constexpr ember::Method<pb::SumReq, pb::SumResp> "
                  "kSum{\"RpcSum\"} and write bus.call(kSum, req)");
    if constexpr (detail::response_given<Resp>) {
      return detail::unpack<Resp>(detail::call_blocking(
          spec<Resp>(method, std::forward<Req>(request), std::move(options))));
    } else {
      return Error{Errc::invalid_argument, "no response type"};
    }
  }
  template <class Req, class Resp>
  Result<Resp> call(const Method<Req, Resp>& method, Req request, CallOptions options = {}) const {
    return call<Resp>(method.name, std::move(request), std::move(options));
  }

  /// Fire-and-forget to every target. Handler errors are logged by the callee, not returned.
  template <class Req>
  Status send(std::string_view method, Req&& request, CallOptions options = {}) const {
    return detail::send(spec<NoReply>(method, std::forward<Req>(request), std::move(options)));
  }
  template <class Req, class Resp>
  Status send(const Method<Req, Resp>& method, Req request, CallOptions options = {}) const {
    detail::CallSpec s = spec<Resp>(method.name, std::move(request), std::move(options));
    return detail::send(std::move(s));
  }

  /// Returns at once; `on_done(Result<Resp>)` runs exactly once in the calling service's mailbox
  /// (on the lane of the message being handled) with the reply, an error or a timeout, unless
  /// cancelled or the calling module is released first. Capture what you need in the lambda.
  /// Only from inside a service (a handler, timer or hook).
  template <class Resp = detail::MissingResponseType, class Req, class F>
  Result<CallHandle> async_call(std::string_view method, Req&& request, F&& on_done,
                                CallOptions options = {}) const {
    static_assert(detail::response_given<Resp>,
                  "async_call<Resp>(method, request, fn) needs the response type, which cannot be "
                  "deduced from the arguments: bus.async_call<pb::SumResp>(\"RpcSum\", req, "
                  "[](ember::Result<pb::SumResp> r) {...}), or declare the method once as inline "
                  "constexpr ember::Method<pb::SumReq, pb::SumResp> kSum{\"RpcSum\"} and write "
                  "bus.async_call(kSum, req, fn)");
    if constexpr (detail::response_given<Resp>) {
      return detail::call_async(spec<Resp>(method, std::forward<Req>(request), std::move(options)),
                                [fn = std::forward<F>(on_done)](detail::AnyReply reply) mutable {
                                  fn(detail::unpack<Resp>(std::move(reply)));
                                });
    } else {
      return Error{Errc::invalid_argument, "no response type"};
    }
  }
  template <class Req, class Resp, class F>
  Result<CallHandle> async_call(const Method<Req, Resp>& method, Req request, F&& on_done,
                                CallOptions options = {}) const {
    return async_call<Resp>(method.name, std::move(request), std::forward<F>(on_done),
                            std::move(options));
  }

  /// For coroutine handlers: `auto r = co_await bus.co_call<Resp>(...)`. Suspends without holding
  /// a thread; while suspended the service keeps processing other messages.
  template <class Resp = detail::MissingResponseType, class Req>
  CallAwaiter<Resp> co_call(std::string_view method, Req&& request,
                            CallOptions options = {}) const {
    static_assert(detail::response_given<Resp>,
                  "co_call<Resp>(method, request) needs the response type, which cannot be "
                  "deduced from the arguments: co_await bus.co_call<pb::SumResp>(\"RpcSum\", "
                  "req), or declare the method once as inline constexpr ember::Method<pb::SumReq, "
                  "pb::SumResp> kSum{\"RpcSum\"} and write co_await bus.co_call(kSum, req)");
    if constexpr (detail::response_given<Resp>) {
      return CallAwaiter<Resp>(
          spec<Resp>(method, std::forward<Req>(request), std::move(options), /*immediate=*/false),
          selection_);
    } else {
      return CallAwaiter<Resp>(detail::CallSpec{}, selection_);
    }
  }
  template <class Req, class Resp>
  CallAwaiter<Resp> co_call(const Method<Req, Resp>& method, Req request,
                            CallOptions options = {}) const {
    return co_call<Resp>(method.name, std::move(request), std::move(options));
  }

 private:
  /// `immediate`: the request is dispatched before this call returns, so a request passed by
  /// reference can be borrowed instead of copied up front.
  template <class Resp, class Req>
  detail::CallSpec spec(std::string_view method, Req&& request, CallOptions options,
                        bool immediate = true) const {
    static_assert(std::is_base_of_v<AnyMessage, Resp>, "responses must be protobuf messages");
    detail::CallSpec s;
    s.selection = selection_.get();
    s.method = method;
    if constexpr (std::is_lvalue_reference_v<Req>) {
      if (immediate) {
        using Plain = std::decay_t<Req>;
        static_assert(std::is_base_of_v<AnyMessage, Plain>, "requests must be protobuf messages");
        s.borrowed = &request;
        s.copy = &detail::copy_message<Plain>;
      } else {
        s.request = detail::share(std::forward<Req>(request));
      }
    } else {
      s.request = detail::share(std::forward<Req>(request));
    }
    s.response_type = &typeid(Resp);
    s.response_prototype = &Resp::default_instance();
    s.options = std::move(options);
    return s;
  }

  std::shared_ptr<const detail::Selection> selection_;
};

/// Selects from outside any service (main thread, tests, tools): call and send work; async_call
/// and co_call need a calling service.
Bus select(Node& node, const Selector& selector);

/// Blocks until at least one service matches `selector` (a service added on this node, or one
/// discovered on another) and returns the Bus over the matches, as select(node, selector) would;
/// timeout when none appears in time. Wakes on repository changes, without polling. In a handler
/// the worker is handed over while it waits, as in a blocking call, but the service still waits:
/// prefer Module::when_available there.
Result<Bus> wait_for(Node& node, const Selector& selector, std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------------------------
// Handler registration (Module::handle). Supported shapes, as a lambda or a member function:
//   Result<Resp>(const Req&)            Result<Resp>(const Req&, const Context&)
//   Task<Result<Resp>>(const Req&)      Task<Result<Resp>>(const Req&, const Context&)
//   Status(const Req&)                  Status(const Req&, const Context&)       (reply: NoReply)

namespace detail {

class Responder;

struct MethodEntry {
  std::string name;
  const google::protobuf::Descriptor* request_type = nullptr;
  const google::protobuf::Descriptor* response_type = nullptr;
  // Checked on every request: comparing type_info is cheaper than fetching descriptors.
  const std::type_info* request_typeid = nullptr;
  const std::type_info* response_typeid = nullptr;
  const AnyMessage* request_prototype = nullptr;
  Module* owner = nullptr;
  /// Runs on the callee's lane; must complete `reply` exactly once (now or later).
  /// The payload comes as a shared pointer so that a coroutine handler can keep it (and a copy of
  /// the context) alive across its suspensions.
  std::function<void(const std::shared_ptr<const AnyMessage>&, const Context&,
                     std::shared_ptr<Responder>)>
      invoke;
};

Status register_method(Module& owner, MethodEntry entry);
void reply(const std::shared_ptr<Responder>& to, AnyReply result);
/// False for Send: the handler's value is dropped without building a reply object.
bool wants_reply(const std::shared_ptr<Responder>& to) noexcept;
void report_send_error(const Error& error);
void reply_exception(const std::shared_ptr<Responder>& to, const std::string& method,
                     std::exception_ptr e);
/// Runs a coroutine handler detached; its frame is destroyed if the service stops first.
void track_coroutine(std::coroutine_handle<> root, std::function<void()> abandon);
void untrack_coroutine(std::coroutine_handle<> root);

// Every trait below has a primary template that matches anything with `valid = false`, so that a
// handler of the wrong shape reaches the one static_assert in Module::handle (which lists the
// shapes) instead of failing deep inside make_entry with pages of template errors.
template <class T>
struct ReplyType {
  static constexpr bool valid = false;
};
template <class R>
struct ReplyType<Result<R>> {
  using type = R;
  static constexpr bool is_task = false;
  static constexpr bool valid = std::is_base_of_v<AnyMessage, R>;
};
template <>
struct ReplyType<Status> {
  using type = NoReply;
  static constexpr bool is_task = false;
  static constexpr bool valid = true;
};
template <class R>
struct ReplyType<Task<Result<R>>> {
  using type = R;
  static constexpr bool is_task = true;
  static constexpr bool valid = std::is_base_of_v<AnyMessage, R>;
};
template <>
struct ReplyType<Task<Status>> {
  using type = NoReply;
  static constexpr bool is_task = true;
  static constexpr bool valid = true;
};

/// A member function pointer's shape (a lambda's is that of its operator()).
template <class F, class = void>
struct HandlerTraits {
  static constexpr bool valid = false;
};
template <class F>
struct HandlerTraits<F, std::void_t<decltype(&F::operator())>>
    : HandlerTraits<decltype(&F::operator())> {};
template <class C, class R, class Req>
struct HandlerTraits<R (C::*)(const Req&) const> {
  using Ret = R;
  using Request = Req;
  using Class = C;
  static constexpr bool with_context = false;
  static constexpr bool valid =
      ReplyType<R>::valid && std::is_base_of_v<AnyMessage, Req> && !std::is_const_v<Req>;
};
template <class C, class R, class Req>
struct HandlerTraits<R (C::*)(const Req&)> : HandlerTraits<R (C::*)(const Req&) const> {};
template <class C, class R, class Req>
struct HandlerTraits<R (C::*)(const Req&, const Context&) const>
    : HandlerTraits<R (C::*)(const Req&) const> {
  static constexpr bool with_context = true;
};
template <class C, class R, class Req>
struct HandlerTraits<R (C::*)(const Req&, const Context&)>
    : HandlerTraits<R (C::*)(const Req&, const Context&) const> {};
template <class C, class R, class... A>
struct HandlerTraits<R (C::*)(A...) noexcept> : HandlerTraits<R (C::*)(A...)> {};
template <class C, class R, class... A>
struct HandlerTraits<R (C::*)(A...) const noexcept> : HandlerTraits<R (C::*)(A...) const> {};

template <class Fn>
inline constexpr bool valid_handler = HandlerTraits<Fn>::valid;

template <class Resp, class R>
AnyReply to_any(R&& result) {
  if constexpr (std::is_same_v<std::decay_t<R>, Status>) {
    if (!result) {
      return result.error();
    }
    return std::shared_ptr<AnyMessage>(std::make_shared<NoReply>());
  } else {
    if (!result) {
      return std::move(result).error();
    }
    return std::shared_ptr<AnyMessage>(std::make_shared<Resp>(std::move(*result)));
  }
}

/// `keep` owns what the coroutine's reference parameters point to (request, context, handler):
/// the request message itself is freed when the handler first suspends.
template <class Ret, class Resp>
void run_detached(Ret task, std::shared_ptr<Responder> to, std::string method,
                  std::shared_ptr<void> keep) {
  auto handle = task.release();
  track_coroutine(handle, [to, method, keep] {
    reply(to, Error{Errc::stopping, "service stopped while '" + method + "' was suspended"});
  });
  handle.promise().on_done = [to, method, handle, keep](typename Ret::promise_type& p) {
    untrack_coroutine(handle);
    if (p.error) {
      reply_exception(to, method, p.error);
    } else {
      reply(to, to_any<Resp>(std::move(*p.value)));
    }
  };
  handle.resume();
}

template <class Fn>
MethodEntry make_entry(Module& owner, std::string_view name, Fn fn) {
  using Traits = HandlerTraits<Fn>;
  using Req = typename Traits::Request;
  using Ret = typename Traits::Ret;
  using Resp = typename ReplyType<Ret>::type;
  static_assert(std::is_base_of_v<AnyMessage, Req>, "handler requests must be protobuf messages");
  static_assert(std::is_base_of_v<AnyMessage, Resp>, "handler responses must be protobuf messages");
  MethodEntry e;
  e.name = std::string(name);
  e.request_type = Req::descriptor();
  e.response_type = Resp::descriptor();
  e.request_typeid = &typeid(Req);
  e.response_typeid = &typeid(Resp);
  e.request_prototype = &Req::default_instance();
  e.owner = &owner;
  auto shared_fn = std::make_shared<Fn>(std::move(fn));
  e.invoke = [shared_fn, method = e.name](const std::shared_ptr<const AnyMessage>& any,
                                          const Context& ctx, std::shared_ptr<Responder> to) {
    try {
      if constexpr (ReplyType<Ret>::is_task) {
        // Everything the coroutine's parameters refer to must outlive its suspensions.
        struct Keep {
          std::shared_ptr<const AnyMessage> payload;
          Context context;
          std::string method;
          std::shared_ptr<Fn> fn;  // a lambda coroutine's captures live in the closure
        };
        auto keep = std::make_shared<Keep>(Keep{any, ctx, method, shared_fn});
        state(keep->context).method = keep->method;
        const auto& req = static_cast<const Req&>(*keep->payload);  // type checked by the runtime
        if constexpr (Traits::with_context) {
          run_detached<Ret, Resp>((*keep->fn)(req, keep->context), std::move(to), method, keep);
        } else {
          run_detached<Ret, Resp>((*keep->fn)(req), std::move(to), method, keep);
        }
      } else {
        const auto& req = static_cast<const Req&>(*any);  // type checked by the runtime
        auto result = [&] {
          if constexpr (Traits::with_context) {
            return (*shared_fn)(req, ctx);
          } else {
            (void)ctx;
            return (*shared_fn)(req);
          }
        }();
        if (wants_reply(to)) {
          reply(to, to_any<Resp>(std::move(result)));
        } else if (!result) {
          report_send_error(result.error());
        }
      }
    } catch (...) {
      reply_exception(to, method, std::current_exception());
    }
  };
  return e;
}

/// Binds a member function to the module it is registered on. `Fn` is a valid_handler.
template <class Fn>
auto bind_member(typename HandlerTraits<Fn>::Class* self, Fn fn) {
  using Traits = HandlerTraits<Fn>;
  using Req = typename Traits::Request;
  using R = typename Traits::Ret;
  if constexpr (Traits::with_context) {
    return [self, fn](const Req& r, const Context& c) -> R { return (self->*fn)(r, c); };
  } else {
    return [self, fn](const Req& r) -> R { return (self->*fn)(r); };
  }
}

}  // namespace detail

template <class F>
Status Module::handle(std::string_view name, F&& fn) {
  using Fn = std::decay_t<F>;
  static_assert(detail::valid_handler<Fn>,
                "handle(name, fn): fn has none of the accepted handler shapes. A lambda or a "
                "member function of this module, taking the request by const reference, "
                "optionally a const ember::Context& after it, and returning: "
                "ember::Result<Resp>(const Req&), ember::Result<Resp>(const Req&, const "
                "ember::Context&), ember::Status(const Req&) (replies ember::NoReply), "
                "ember::Status(const Req&, const ember::Context&), "
                "ember::Task<ember::Result<Resp>>(const Req&), "
                "ember::Task<ember::Result<Resp>>(const Req&, const ember::Context&), "
                "ember::Task<ember::Status>(const Req&) or ember::Task<ember::Status>(const Req&, "
                "const ember::Context&); Req and Resp are protobuf messages. Usual causes: the "
                "request taken by value or by non-const reference, a generic (auto) parameter, "
                "or a lambda returning Resp or ember::Error without '-> ember::Result<Resp>'");
  if constexpr (!detail::valid_handler<Fn>) {
    return Error{Errc::invalid_argument, "handle(" + std::string(name) + "): bad handler shape"};
  } else if constexpr (std::is_member_function_pointer_v<Fn>) {
    using Class = typename detail::HandlerTraits<Fn>::Class;
    auto* self = dynamic_cast<Class*>(this);
    if (self == nullptr) {
      return Error{
          Errc::invalid_argument,
          "handle(" + std::string(name) + "): member function of another class than this module"};
    }
    return detail::register_method(*this,
                                   detail::make_entry(*this, name, detail::bind_member(self, fn)));
  } else {
    return detail::register_method(*this, detail::make_entry(*this, name, std::forward<F>(fn)));
  }
}

namespace detail {
/// The handler's request and reply are the Method's (checked only for a valid shape: a wrong
/// shape has its own message).
template <class Fn, class Req, class Resp>
constexpr bool handler_matches() {
  if constexpr (!valid_handler<Fn>) {
    return true;
  } else {
    using Traits = HandlerTraits<Fn>;
    return std::is_same_v<typename Traits::Request, Req> &&
           std::is_same_v<typename ReplyType<typename Traits::Ret>::type, Resp>;
  }
}
}  // namespace detail

template <class Req, class Resp, class F>
Status Module::handle(const Method<Req, Resp>& method, F&& fn) {
  static_assert(detail::handler_matches<std::decay_t<F>, Req, Resp>(),
                "handle(method, fn): fn's request or response type is not the Method's. For "
                "ember::Method<Req, Resp> the handler takes const Req& (and optionally const "
                "ember::Context&) and returns ember::Result<Resp> or ember::Task<ember::Result<"
                "Resp>> (ember::Status only when Resp is ember::NoReply)");
  return handle(method.name, std::forward<F>(fn));
}

}  // namespace ember
