// SPDX-License-Identifier: Apache-2.0
// What the JSON-line benchmark suites (remote, events, scaling) share when they report.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace ember::bench {

/// The median of the runs that produced a value; a negative value means "not measured in that
/// run" and is left out. -1 when no run produced one.
inline double median(std::vector<double> runs) {
  std::erase_if(runs, [](double x) { return x < 0; });
  if (runs.empty()) {
    return -1;
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

inline std::string json_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/// The commit the figures belong to, as set by the scripts/bench_*.sh wrappers.
inline std::string commit_id() {
  const char* c = std::getenv("EMBER_COMMIT");
  return c != nullptr && *c != '\0' ? c : "unknown";
}

}  // namespace ember::bench
