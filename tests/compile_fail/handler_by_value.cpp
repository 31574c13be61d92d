// A handler that takes its request by value: one static_assert listing the accepted shapes.
#include <ember/ember.hpp>

#include "test.pb.h"

class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcSum", [](ember::test::SumReq req) -> ember::Result<ember::test::SumResp> {
      ember::test::SumResp resp;
      resp.set_sum(req.a() + req.b());
      return resp;
    });
  }
};
