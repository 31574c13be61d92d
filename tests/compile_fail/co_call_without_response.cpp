// Bus::co_call without its response type, in a coroutine handler.
#include <ember/ember.hpp>

#include "test.pb.h"

class Caller : public ember::Service {
 public:
  ember::Task<ember::Status> relay(const ember::test::SumReq& req) {
    auto r = co_await select(ember::Selector::name("calc")).co_call("RpcSum", req);
    (void)r;
    co_return ember::Status{};
  }
};
