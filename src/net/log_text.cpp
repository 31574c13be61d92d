// SPDX-License-Identifier: Apache-2.0
#include "net/log_text.hpp"

namespace ember::net::detail {

std::string thousands(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return out;
}

std::string describe_span(std::chrono::milliseconds span) {
  if (span.count() % 1000 == 0) {
    return std::to_string(span.count() / 1000) + " s";
  }
  return std::to_string(span.count()) + " ms";
}

}  // namespace ember::net::detail
