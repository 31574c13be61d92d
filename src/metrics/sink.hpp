// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <initializer_list>
#include <string_view>

#include "metrics/histogram.hpp"

namespace ember::metrics {

struct Label {
  std::string_view name;
  std::string_view value;
};
using Labels = std::initializer_list<Label>;

/// Where a part of a node reports its figures when somebody asks for them (a scrape). Names
/// follow Prometheus conventions: `ember_` first, the unit in the name (`_seconds`, `_bytes`),
/// `_total` at the end of a counter. Samples of one name may come in any order, from any part:
/// the sink groups them. Called on the asking thread; everything passed is copied.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void counter(std::string_view name, std::string_view help, Labels labels,
                       double value) = 0;
  virtual void gauge(std::string_view name, std::string_view help, Labels labels, double value) = 0;
  virtual void histogram(std::string_view name, std::string_view help, Labels labels,
                         const HistogramSnapshot& value) = 0;
};

}  // namespace ember::metrics
