// Bus::call without its response type, which nothing can deduce.
#include <ember/ember.hpp>

#include "test.pb.h"

void caller(ember::Node& node) {
  ember::test::SumReq req;
  auto r = ember::select(node, ember::Selector::name("calc")).call("RpcSum", req);
  (void)r;
}
