// SPDX-License-Identifier: Apache-2.0
// A typical user service file, for the compile-time benchmark (scripts/bench_compile.sh): two
// handlers, a call and a send, one small generated proto.
#include <ember/ember.hpp>

#include "service.pb.h"

namespace {

class Shop : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcPrice", &Shop::price); !st) {
      return st;
    }
    return handle("RpcRestock", [this](const shop::Restock& r) -> ember::Status {
      stock_ += r.quantity();
      return {};
    });
  }

  ember::Result<shop::PriceResp> price(const shop::PriceReq& req) {
    shop::PriceReq upstream = req;
    auto quote =
        select(ember::Selector::name("pricing")).call<shop::PriceResp>("RpcPrice", upstream);
    if (!quote) {
      return quote.error();
    }
    shop::Restock restock;
    restock.set_sku(req.sku());
    restock.set_quantity(req.quantity());
    if (auto st = select(ember::Selector::name("warehouse")).send("RpcRestock", restock); !st) {
      log().warn("{}", st.error().to_string());
    }
    shop::PriceResp out;
    out.set_cents(quote->cents() * req.quantity());
    return out;
  }

 private:
  std::int64_t stock_ = 0;
};
EMBER_REGISTER_SERVICE(Shop);

}  // namespace
