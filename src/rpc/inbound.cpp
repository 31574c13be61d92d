// SPDX-License-Identifier: Apache-2.0
// The receiving side of a request: the context a handler runs in, local requests as a source of
// run_inbound, and how an outcome (a reply, an error, an exception, an expiry) reaches the caller.
#include "rpc/inbound.hpp"

#include <ember/node.hpp>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
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

ContextScope::ContextScope(const Context* ctx) noexcept : saved_(tls_context) {
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
                 std::shared_ptr<Responder> responder, Context context)
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

void Request::reject(const Error& why) noexcept {
  try {
    if (responder_) {  // a refused Send is counted by the service, not logged per message
      responder_->deliver(why);
    }
  } catch (...) {
    // Reject must not throw; a failed delivery only loses an error the caller times out on.
  }
}

void drop_expired(std::string_view method, Context::Clock::duration late,
                  const std::shared_ptr<Responder>& responder) {
  ServiceCore* core = ServiceCore::current();
  ServiceMessaging::of(*core).count_expired(method, late);
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
  if (to) {
    to->deliver(Error{Errc::handler_failed, "handler '" + method + "' threw: " + what});
  }
}

}  // namespace ember::detail
