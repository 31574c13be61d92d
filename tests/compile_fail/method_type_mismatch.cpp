// A handler registered under a typed Method whose response type is not the Method's: one
// static_assert naming the rule, at registration instead of a bad_argument_type at run time.
#include <ember/ember.hpp>

#include "test.pb.h"

inline constexpr ember::Method<ember::test::SumReq, ember::test::SumResp> kSum{"RpcSum"};

class Calc : public ember::Service {
 public:
  ember::Status on_init() override {
    return handle(kSum, [](const ember::test::SumReq&) -> ember::Result<ember::test::Echo> {
      return ember::test::Echo{};
    });
  }
};
