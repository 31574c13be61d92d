// SPDX-License-Identifier: Apache-2.0
// The receiving side of a request: the context a handler runs in, local requests as a source of
// run_inbound, and how an outcome (a reply, an error, an exception, an expiry) reaches the caller.
#include "rpc/inbound.hpp"

#include <ember/node.hpp>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/bytes_request.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"

namespace ember {
namespace {
thread_local const Context* tls_context = nullptr;
}  // namespace

const Context* current_context() noexcept {
  return tls_context;
}

}  // namespace ember

namespace ember::detail {

ContextScope::ContextScope(const Context* ctx) noexcept
    : saved_(tls_context), trace_(ctx != nullptr ? detail::state(*ctx).trace_id : 0) {
  tls_context = ctx;
}
ContextScope::~ContextScope() {
  tls_context = saved_;
}

void LocalResponder::deliver(AnyReply result) {
  if (!pending_->complete(std::move(result))) {
    Messaging::of(*pending_->node).count_late_reply();
  }
}

Request::Request(std::string_view method, std::shared_ptr<const AnyMessage> payload,
                 const std::type_info* response_type, const AnyMessage* response_prototype,
                 std::shared_ptr<Responder> responder, Context&& context)
    : method_(method),
      payload_(std::move(payload)),
      response_type_(response_type),
      response_prototype_(response_prototype),
      responder_(std::move(responder)),
      context_(std::move(context)) {
  detail::state(context_).method = method_;  // views the string this request owns
}

namespace {

// A request from this node: its payload is already the typed message, shared with the caller.
struct LocalSource {
  const std::string& method_;
  const std::shared_ptr<const AnyMessage>& payload_;
  const std::type_info* response_type_;
  const AnyMessage* response_prototype_;
  const std::shared_ptr<Responder>& responder_;
  const Context& context_;

  [[nodiscard]] std::string_view method() const noexcept { return method_; }
  [[nodiscard]] Context::Clock::time_point deadline() const noexcept {
    return detail::state(context_).deadline;
  }
  [[nodiscard]] bool origin_ended() const noexcept {
    const ContextState& state = detail::state(context_);
    return state.ends_with_origin && state.origin() && state.origin()->ended();
  }
  [[nodiscard]] const std::shared_ptr<Responder>& responder() const noexcept { return responder_; }
  std::optional<std::string> offered_type_if_not(const MethodEntry& entry) const {
    if (typeid(*payload_) == *entry.request_typeid) {
      return std::nullopt;
    }
    return payload_->GetDescriptor()->full_name();
  }
  std::optional<std::string> expected_type_if_not(const MethodEntry& entry) const {
    if (response_type_ == nullptr || *response_type_ == *entry.response_typeid) {
      return std::nullopt;
    }
    return response_prototype_ != nullptr ? response_prototype_->GetDescriptor()->full_name()
                                          : std::string("another type");
  }
  std::optional<Error> decode(const MethodEntry&) const noexcept { return std::nullopt; }
  [[nodiscard]] const std::shared_ptr<const AnyMessage>& payload() const noexcept {
    return payload_;
  }
  [[nodiscard]] const Context& context() const noexcept { return context_; }
};

}  // namespace

void Request::run() {
  LocalSource source{method_, payload_, response_type_, response_prototype_, responder_, context_};
  run_inbound(source);
}

namespace {

// A request that arrived serialized and takes the type of the method it names.
class BytesRequest final : public runtime::Message {
 public:
  BytesRequest(std::string method, std::string payload, std::shared_ptr<Responder> responder,
               Context context)
      : method_(std::move(method)),
        bytes_(std::move(payload)),
        responder_(std::move(responder)),
        context_(std::move(context)) {
    detail::state(context_).method = method_;
  }

  void run() override;
  void reject(const Error& why) noexcept override {
    try {
      if (responder_) {
        responder_->deliver(why);
      }
    } catch (...) {
      // As Request::reject: only an error is lost, and the sender's own deadline covers it.
    }
  }
  [[nodiscard]] std::string_view name() const noexcept override { return method_; }
  [[nodiscard]] std::uint64_t trace_id() const noexcept override {
    return detail::state(context_).trace_id;
  }

  std::string method_;
  std::string bytes_;
  std::shared_ptr<const AnyMessage> parsed_;
  std::shared_ptr<Responder> responder_;
  Context context_;
};

struct BytesSource {
  BytesRequest& request;

  [[nodiscard]] std::string_view method() const noexcept { return request.method_; }
  [[nodiscard]] Context::Clock::time_point deadline() const noexcept {
    return detail::state(request.context_).deadline;
  }
  [[nodiscard]] bool origin_ended() const noexcept {
    const ContextState& state = detail::state(request.context_);
    return state.ends_with_origin && state.origin() && state.origin()->ended();
  }
  [[nodiscard]] const std::shared_ptr<Responder>& responder() const noexcept {
    return request.responder_;
  }
  // The bytes are whatever the method takes, if they parse as it.
  static std::optional<std::string> offered_type_if_not(const MethodEntry&) { return std::nullopt; }
  static std::optional<std::string> expected_type_if_not(const MethodEntry&) {
    return std::nullopt;
  }
  std::optional<Error> decode(const MethodEntry& entry) const {
    std::unique_ptr<AnyMessage> message(entry.request_prototype->New());
    if (!message->ParseFromString(request.bytes_)) {
      return Error{Errc::invalid_argument, "the payload of '" + request.method_ +
                                               "' does not parse as " +
                                               entry.request_type->full_name()};
    }
    request.bytes_ = std::string();  // the handler may run long: do not hold both forms
    request.parsed_ = std::move(message);
    return std::nullopt;
  }
  [[nodiscard]] const std::shared_ptr<const AnyMessage>& payload() const noexcept {
    return request.parsed_;
  }
  [[nodiscard]] const Context& context() const noexcept { return request.context_; }
};

void BytesRequest::run() {
  BytesSource source{*this};
  run_inbound(source);
}

}  // namespace

Status post_bytes_request(NodeImpl& node, const Target& target, std::string method,
                          std::string payload, Context context,
                          std::shared_ptr<Responder> responder) {
  if (!target.anchor) {
    RemoteRouter* remote = Messaging::of(node).remote();
    if (remote == nullptr) {
      return Error{Errc::node_unreachable, "service " + target.pid().to_string() +
                                               " is on another node, and this one "
                                               "is not in a cluster"};
    }
    return remote->send_serialized_request(target, method, payload, context, responder);
  }
  auto* request = new BytesRequest(std::move(method), std::move(payload), std::move(responder),
                                   std::move(context));
  request->priority = detail::state(request->context_).priority;
  request->key = detail::state(request->context_).key;
  return target.anchor->post(request, true);
}

void Request::reject(const Error& why) noexcept {
  try {
    if (responder_) {  // a refused Send is counted by the service, not logged per message
      responder_->deliver(why);
    }
  } catch (...) {
    // Reject must not throw; a failed delivery only loses an error the caller times out on.
  }
}

namespace {
// The outcome of a call the current service answered, for its figures (only while the node
// measures timings: nothing to pay otherwise).
void count_result(Errc code) noexcept {
  ServiceCore* core = ServiceCore::current();
  if (core != nullptr && core->timings() != nullptr) {
    ServiceMessaging::of(*core).count_result(code);
  }
}
}  // namespace

void drop_expired(std::string_view method, Context::Clock::duration late,
                  const std::shared_ptr<Responder>& responder) {
  ServiceCore* core = ServiceCore::current();
  ServiceMessaging::of(*core).count_expired(method, late);
  if (responder) {
    count_result(Errc::timeout);
  }
  if (!responder || !responder->waiting()) {
    return;  // a Send, or a caller that gave up: nobody to tell (and no late reply to count)
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(late).count();
  responder->deliver(Error{Errc::timeout, "'" + std::string(method) + "' expired " +
                                              (ms > 0 ? std::to_string(ms) + " ms" : "just") +
                                              " before its handler could run on " +
                                              core->logger().name() + " (dropped unrun)"});
}

// ---------------------------------------------------------------------------------------------

void reply(const std::shared_ptr<Responder>& to, AnyReply result) {
  count_result(result ? Errc::ok : result.error().code());
  if (to) {
    to->deliver(std::move(result));
  } else if (!result) {
    report_send_error(result.error());
  }
}

bool wants_reply(const std::shared_ptr<Responder>& to) noexcept {
  return to != nullptr && to->wants_reply();
}

void report_send_error(const Error& error) {
  if (ServiceCore* core = ServiceCore::current()) {
    core->logger().warn("send failed: {}", error.to_string());
  }
}

void reply_exception(const std::shared_ptr<Responder>& to, const std::string& method,
                     std::exception_ptr e) {
  std::string what = "a non-standard exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) {
  }
  if (ServiceCore* core = ServiceCore::current()) {
    core->logger().error("handler '{}' threw: {}", method, what);
  }
  count_result(Errc::handler_failed);
  if (to) {
    to->deliver(Error{Errc::handler_failed, "handler '" + method + "' threw: " + what});
  }
}

}  // namespace ember::detail
