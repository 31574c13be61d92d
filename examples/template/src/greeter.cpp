#include "greeter.hpp"

namespace greeter {

ember::Status Greeter::on_init() {
  greeting_ = std::string(param("greeting", "Hello"));
  return handle(kHello, &Greeter::hello);
}

ember::Result<HelloResp> Greeter::hello(const HelloReq& req) {
  if (req.name().empty()) {
    return ember::Error{ember::Errc::invalid_argument, "HelloReq.name is empty"};
  }
  HelloResp resp;
  resp.set_text(greeting_ + ", " + req.name() + "!");
  resp.set_greeted(++greeted_);
  return resp;
}

}  // namespace greeter

// The class name the config's ClassName refers to.
EMBER_REGISTER_SERVICE(greeter::Greeter);
