// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <ember/context.hpp>
#include <ember/log.hpp>
#include <ember/rpc.hpp>
#include <ember/timer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <typeinfo>

#include "core/service_anchor.hpp"
#include "rpc/repository.hpp"
#include "runtime/message.hpp"

namespace ember::detail {

class NodeImpl;
class ServiceCore;

struct Selection {
  NodeImpl* node = nullptr;
  ServiceCore* from = nullptr;  // calling service, if any
  Module* from_module = nullptr;
  std::vector<Target> targets;
  std::string description;  // "name=room id=1", for error messages
};

/// The targets `selector` matches now, as seen from `from` (null: from outside any service).
std::shared_ptr<const Selection> make_selection(NodeImpl& node, ServiceCore* from,
                                                Module* from_module, const Selector& selector);

/// One call waiting for its outcome. Whatever comes first — reply, error, timeout, cancel — wins
/// the `done` flag; everything after it is dropped (and counted when it is a reply).
class PendingCall : public std::enable_shared_from_this<PendingCall> {
 public:
  enum class Mode : std::uint8_t { blocking, callback, coroutine };

  PendingCall(Mode mode, NodeImpl* node);
  ~PendingCall();
  PendingCall(const PendingCall&) = delete;
  PendingCall& operator=(const PendingCall&) = delete;

  /// Returns false when the call was already complete (a late reply, a lost race).
  bool complete(AnyReply result);
  /// Prevents the completion from running. True if it was still pending.
  bool cancel();

  const Mode mode;
  NodeImpl* const node;
  std::atomic<bool> done{false};
  std::optional<AnyReply> result;
  std::string method;
  std::string target;
  std::uint64_t trace_id = 0;  // of the call: a callback's log lines carry it

  // blocking
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> ready{false};  // atomic for the waiter's spin phase; set under `mu` for the cv

  // callback / coroutine: where and how the completion runs
  std::shared_ptr<ServiceAnchor> caller;
  DispatchKey caller_key;
  Priority priority = Priority::user;
  std::weak_ptr<void> module_alive;
  std::function<void(AnyReply)> callback;
  std::coroutine_handle<> continuation;
  Context resume_context;
  TimerId timer;
};

/// Where a callee's handler sends its outcome.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void deliver(AnyReply result) = 0;
  /// The outcome of a request sent with its payload serialized (send_serialized_request): the
  /// response as the callee serialized it, unparsed. Only responders that send such requests
  /// receive it.
  virtual void deliver_serialized(Result<std::string> response) {
    deliver(response ? AnyReply{Error{Errc::internal,
                                      "a serialized response reached a "
                                      "responder that cannot take it"}}
                     : AnyReply{response.error()});
  }
  /// Send has nobody waiting: errors are only logged.
  [[nodiscard]] virtual bool wants_reply() const noexcept = 0;
  /// Whether an outcome delivered now can still reach a waiting caller. A remote caller's state
  /// is not visible from here, so by default: whether it wanted a reply at all.
  [[nodiscard]] virtual bool waiting() const noexcept { return wants_reply(); }
};

class LocalResponder final : public Responder {
 public:
  explicit LocalResponder(std::shared_ptr<PendingCall> pending) : pending_(std::move(pending)) {}
  void deliver(AnyReply result) override;
  [[nodiscard]] bool wants_reply() const noexcept override { return true; }
  [[nodiscard]] bool waiting() const noexcept override {
    return !pending_->done.load(std::memory_order_acquire);
  }

 private:
  std::shared_ptr<PendingCall> pending_;
};

/// A request in the callee's mailbox.
class Request final : public runtime::Message {
 public:
  Request(std::string_view method, std::shared_ptr<const AnyMessage> payload,
          const std::type_info* response_type, const AnyMessage* response_prototype,
          std::shared_ptr<Responder> responder, Context&& context);
  void run() override;
  void reject(const Error& why) noexcept override;
  [[nodiscard]] std::string_view name() const noexcept override { return method_; }
  [[nodiscard]] std::uint64_t trace_id() const noexcept override {
    return detail::state(context_).trace_id;
  }

 private:
  std::string method_;
  std::shared_ptr<const AnyMessage> payload_;
  const std::type_info* response_type_;   // null for Send: any response type is fine
  const AnyMessage* response_prototype_;  // names the caller's response type in errors
  std::shared_ptr<Responder> responder_;  // null for Send: nobody waits
  Context context_;
};

/// The slow half of drop_if_expired: counts the request for its service and the node, and
/// answers a caller that still waits with timeout, saying how late the request was.
void drop_expired(std::string_view method, Context::Clock::duration late,
                  const std::shared_ptr<Responder>& responder);

/// Right before a handler runs (after the request left the mailbox): a request whose deadline
/// passed while it waited, in the mailbox or on its way from another node, is dropped unrun.
/// Its caller has given up, or is about to, and running it anyway would apply its effect after
/// the caller was told it failed. No deadline (time_point::max()) never expires and costs no
/// clock read. True when the request was dropped.
inline bool drop_if_expired(Context::Clock::time_point deadline, std::string_view method,
                            const std::shared_ptr<Responder>& responder) {
  if (deadline == Context::Clock::time_point::max()) {
    return false;
  }
  const auto now = Context::Clock::now();
  if (now < deadline) {
    return false;
  }
  drop_expired(method, now - deadline, responder);
  return true;
}

/// Sets the thread's current context for the lifetime of the object.
class ContextScope {
 public:
  explicit ContextScope(const Context* ctx) noexcept;
  ~ContextScope();
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

 private:
  const Context* saved_;
  TraceScope trace_;  // the context's trace id on every line logged meanwhile
};

}  // namespace ember::detail
