// SPDX-License-Identifier: Apache-2.0
// Numbers and spans as the transport's log lines show them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ember::net::detail {

/// 1234567 -> "1,234,567": summary lines are read by people, often with large counts.
std::string thousands(std::uint64_t n);

std::string describe_span(std::chrono::milliseconds span);

}  // namespace ember::net::detail
