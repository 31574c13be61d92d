// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace ember::testing {

/// The seeds a property runs under: EMBER_SIM_SEED=N replays one seed; otherwise
/// EMBER_SIM_SEEDS=N (default `fallback`) seeds starting at EMBER_SIM_FIRST_SEED (default 1).
/// Seeds that once failed are passed as `regressions` and always run first.
inline std::vector<std::uint64_t> sim_seeds(std::uint64_t fallback,
                                            std::vector<std::uint64_t> regressions = {}) {
  auto read = [](const char* name, std::uint64_t otherwise) {
    const char* text = std::getenv(name);
    return text != nullptr && *text != '\0' ? std::stoull(text) : otherwise;
  };
  if (const char* one = std::getenv("EMBER_SIM_SEED"); one != nullptr && *one != '\0') {
    return {std::stoull(one)};
  }
  std::vector<std::uint64_t> seeds = std::move(regressions);
  const std::uint64_t first = read("EMBER_SIM_FIRST_SEED", 1);
  const std::uint64_t count = read("EMBER_SIM_SEEDS", fallback);
  for (std::uint64_t s = first; s < first + count; ++s) {
    seeds.push_back(s);
  }
  return seeds;
}

}  // namespace ember::testing
