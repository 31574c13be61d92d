// SPDX-License-Identifier: Apache-2.0
// The service through which other nodes reach a gateway's sessions: "ember.gate", with the node id
// as its id, on every node with a GateConf.
#include <ember/service.hpp>

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_core.hpp"

namespace ember::gate {

namespace {

class GateService final : public Service {
 public:
  Status on_init() override {
    if (auto st = handle("RpcPush",
                         [this](const GatePush& push) -> Result<GateAck> {
                           core().relayed.fetch_add(1, std::memory_order_relaxed);
                           if (auto st = core().push_serialized(push.session_id(), push.route(),
                                                                push.payload());
                               !st) {
                             return st.error();
                           }
                           return GateAck{};
                         });
        !st) {
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
