// SPDX-License-Identifier: Apache-2.0
// The service through which other nodes reach a gateway's sessions: "ember.gate", with the node id
// as its id, on every node with a GateConf.
#include <ember/rpc.hpp>
#include <ember/service.hpp>
#include <typeinfo>

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_core.hpp"

namespace ember::gate {

namespace {

class GateService final : public Service {
 public:
  Status on_init() override {
    if (auto st = handle_push(); !st) {
      return st;
    }
    if (auto st = handle("RpcBroadcast",
                         [this](const GateBroadcast& broadcast) -> Status {
                           core().relayed.fetch_add(1, std::memory_order_relaxed);
                           core().push_each_serialized(broadcast.session_ids(), broadcast.route(),
                                                       broadcast.payload());
                           return {};
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcInfo",
                         [this](const GateAck&) -> Result<GateInfo> {
                           GateInfo info;
                           for (std::string& url : core().public_urls()) {
                             info.add_urls(std::move(url));
                           }
                           info.set_draining(core().draining());
                           return info;
                         });
        !st) {
      return st;
    }
    // An operator's (or a deploy tool's) way to drain this gateway from any node.
    if (auto st = handle("RpcDrain",
                         [this](const GateAck&) -> Result<GateAck> {
                           core().drain();
                           return GateAck{};
                         });
        !st) {
      return st;
    }
    if (auto st = handle_resume(); !st) {
      return st;
    }
    return handle("RpcKick", [this](const GateKick& kick) -> Result<GateAck> {
      Status st = kick.replaced() ? core().replace(kick.session_id())
                                  : core().kick(kick.session_id(), kick.reason());
      if (!st) {
        return st.error();
      }
      return GateAck{};
    });
  }

 private:
  GateCore& core() { return *GateCore::of(detail::NodeAccess::impl(node())); }

  // RpcPush answers once the push is queued for its client, kept for its resume, or passed on
  // to the gateway its session moved to: a pusher that waits for each keeps them in order.
  Status handle_push() {
    detail::MethodEntry entry = deferred<GatePush, GateAck>("RpcPush");
    entry.invoke = [this](const std::shared_ptr<const AnyMessage>& request, const Context&,
                          std::shared_ptr<detail::Responder> to) {
      const auto& push = static_cast<const GatePush&>(*request);
      core().relayed.fetch_add(1, std::memory_order_relaxed);
      core().push_serialized(
          push.session_id(), push.route(), push.payload(), [to = std::move(to)](Status delivered) {
            if (delivered) {
              detail::reply(to, std::shared_ptr<AnyMessage>(std::make_shared<GateAck>()));
            } else {
              detail::reply(to, delivered.error());
            }
          });
    };
    return detail::register_method(*this, std::move(entry));
  }

  /// A method whose handler answers later, through its responder.
  template <class Request, class Response>
  detail::MethodEntry deferred(std::string_view name) {
    detail::MethodEntry entry;
    entry.name = std::string(name);
    entry.request_type = Request::descriptor();
    entry.response_type = Response::descriptor();
    entry.request_typeid = &typeid(Request);
    entry.response_typeid = &typeid(Response);
    entry.request_prototype = &Request::default_instance();
    entry.owner = this;
    return entry;
  }

  // RpcResume answers once the session's requests in flight are answered, which may take up to
  // RequestTimeout: the handler keeps its reply for later instead of holding this service's lane.
  Status handle_resume() {
    detail::MethodEntry entry = deferred<ResumeRequest, SessionHandover>("RpcResume");
    entry.invoke = [this](const std::shared_ptr<const AnyMessage>& request, const Context&,
                          std::shared_ptr<detail::Responder> to) {
      core().hand_over(static_cast<const ResumeRequest&>(*request),
                       [to = std::move(to)](Result<std::shared_ptr<SessionHandover>> handover) {
                         if (handover) {
                           detail::reply(to, std::shared_ptr<AnyMessage>(std::move(*handover)));
                         } else {
                           detail::reply(to, handover.error());
                         }
                       });
    };
    return detail::register_method(*this, std::move(entry));
  }
};

}  // namespace

void add_gate_service(detail::NodeImpl& node) {
  ServiceConfig config;
  config.class_name = std::string(kGateServiceName);
  config.name = std::string(kGateServiceName);
  config.id = node.config.node_id;
  node.added_before_start.emplace_back(std::make_unique<GateService>(), std::move(config));
}

}  // namespace ember::gate
