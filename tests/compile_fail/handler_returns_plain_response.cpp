// A member function that returns the response itself instead of Result<Resp>.
#include <ember/ember.hpp>

#include "test.pb.h"

class Calc : public ember::Service {
 public:
  ember::Status on_init() override { return handle("RpcSum", &Calc::sum); }
  ember::test::SumResp sum(const ember::test::SumReq& req, const ember::Context&) {
    ember::test::SumResp resp;
    resp.set_sum(req.a() + req.b());
    return resp;
  }
};
