// SPDX-License-Identifier: Apache-2.0
// Reading a Prometheus scrape in tests, and asking promtool about one.
#pragma once

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace ember::testing {

/// The value of one series, written exactly as the scrape has it ("name{a=\"x\"}"), or NaN.
inline double series_value(const std::string& scrape, const std::string& series) {
  std::istringstream lines(scrape);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
    }
  }
  return std::nan("");
}

/// Runs `promtool check metrics` on `scrape` (files under `scratch`): its exit status and what
/// it printed. -1 when it could not run.
inline std::pair<int, std::string> promtool_check(const std::string& scrape,
                                                  const std::string& scratch) {
  const std::string in = scratch + "/scrape.txt";
  const std::string out = scratch + "/promtool.txt";
  std::ofstream(in) << scrape;
  const int rc = std::system(("promtool check metrics < " + in + " > " + out + " 2>&1").c_str());
  std::stringstream printed;
  printed << std::ifstream(out).rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, printed.str()};
}

}  // namespace ember::testing
