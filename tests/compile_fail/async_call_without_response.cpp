// Bus::async_call without its response type.
#include <ember/ember.hpp>

#include "test.pb.h"

class Caller : public ember::Service {
 public:
  void on_started() override {
    ember::test::SumReq req;
    (void)select(ember::Selector::name("calc")).async_call("RpcSum", req, [](auto r) { (void)r; });
  }
};
