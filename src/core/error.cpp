// SPDX-License-Identifier: Apache-2.0
#include <ember/error.hpp>
#include <ostream>

namespace ember {

std::ostream& operator<<(std::ostream& out, Errc code) {
  return out << errc_name(code);
}

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::timeout: return "timeout";
    case Errc::no_such_method: return "no_such_method";
    case Errc::bad_argument_type: return "bad_argument_type";
    case Errc::handler_failed: return "handler_failed";
    case Errc::overloaded: return "overloaded";
    case Errc::stopping: return "stopping";
    case Errc::cancelled: return "cancelled";
    case Errc::call_cycle: return "call_cycle";
    case Errc::node_unreachable: return "node_unreachable";
    case Errc::bad_state: return "bad_state";
    case Errc::io_error: return "io_error";
    case Errc::internal: return "internal";
    case Errc::unavailable: return "unavailable";
  }
  return "unknown";
}

std::string Error::to_string() const {
  std::string text{errc_name(code_)};
  if (!message_.empty()) {
    text += ": ";
    text += message_;
  }
  return text;
}

}  // namespace ember
