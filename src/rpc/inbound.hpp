// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/rpc.hpp>
#include <memory>
#include <optional>
#include <string>

#include "core/service_core.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"

namespace ember::detail {

/// The one way a request reaches its handler, on the callee's lane, whether it came from this
/// node (Request) or from another (the cluster's RemoteCall): the same checks in the same order
/// and the same errors. A source differs only in how it proves its types and produces its
/// payload and context:
///
///   std::string_view method();  Context::Clock::time_point deadline();
///   bool origin_ended();  // the request's origin (a client session) has gone
///   const std::shared_ptr<Responder>& responder();    // null: a local Send
///   std::optional<std::string> offered_type_if_not(const MethodEntry&);   // request type
///   std::optional<std::string> expected_type_if_not(const MethodEntry&);  // response type
///   std::optional<Error> decode(const MethodEntry&);  // then payload() holds the request
///   const std::shared_ptr<const AnyMessage>& payload();
///   const Context& context();
///
/// A template, not an interface: local calls are the hot path and pay no virtual call for it.
template <class Source>
void run_inbound(Source& source) {
  // First: an expired request is answered timeout whatever else is wrong with it, and under
  // overload, when requests expire in numbers, dropping one should cost no more than this.
  if (drop_if_expired(source.deadline(), source.method(), source.responder())) {
    return;
  }
  // The client whose request this is has gone: whatever it asked for is no longer wanted, and a
  // handler running for a closed session is the race game servers are known for.
  if (source.origin_ended()) {
    reply(source.responder(),
          Error{Errc::cancelled, "the session that sent '" + std::string(source.method()) +
                                     "' closed before its handler started"});
    return;
  }
  ServiceCore* core = ServiceCore::current();
  const ServiceMessaging* methods = ServiceMessaging::find(*core);
  const MethodEntry* entry = methods != nullptr ? methods->find_method(source.method()) : nullptr;
  if (entry == nullptr) {
    reply(source.responder(),
          Error{Errc::no_such_method, "service " + core->pid().to_string() + " has no method '" +
                                          std::string(source.method()) + "'"});
    return;
  }
  if (std::optional<std::string> offered = source.offered_type_if_not(*entry)) {
    reply(source.responder(), Error{Errc::bad_argument_type,
                                    "method '" + std::string(source.method()) + "' takes " +
                                        entry->request_type->full_name() + ", got " + *offered});
    return;
  }
  // Protobuf names, never typeid().name(): a mangled C++ name teaches nobody.
  if (std::optional<std::string> expected = source.expected_type_if_not(*entry)) {
    reply(source.responder(),
          Error{Errc::bad_argument_type, "method '" + std::string(source.method()) + "' returns " +
                                             entry->response_type->full_name() +
                                             ", the caller expects " + *expected});
    return;
  }
  if (std::optional<Error> unreadable = source.decode(*entry)) {
    reply(source.responder(), std::move(*unreadable));
    return;
  }
  const Context& context = source.context();
  ContextScope scope(&context);
  entry->invoke(source.payload(), context, source.responder());
}

}  // namespace ember::detail
