#pragma once

#include <ember/ember.hpp>

#include "greeter.pb.h"

namespace greeter {

/// Caller and callee share the method's name and types.
inline constexpr ember::Method<HelloReq, HelloResp> kHello{"RpcHello"};

/// Greets whoever calls it. Methods whose name starts with "Rpc" are published to the cluster
/// when the node joins one.
class Greeter : public ember::Service {
 public:
  ember::Status on_init() override;

 private:
  ember::Result<HelloResp> hello(const HelloReq& req);

  std::string greeting_ = "Hello";
  std::int64_t greeted_ = 0;  // one lane (the default): handlers never run concurrently
};

}  // namespace greeter
