// A generic lambda: its request type cannot be known, so it cannot be registered.
#include <ember/ember.hpp>

#include "test.pb.h"

class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle("RpcSum", [](const auto& req) -> ember::Result<ember::test::SumResp> {
      ember::test::SumResp resp;
      resp.set_sum(req.a() + req.b());
      return resp;
    });
  }
};
