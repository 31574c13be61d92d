// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/sink.hpp"

namespace ember::metrics {

/// Collects samples and writes them in the Prometheus text exposition format (0.0.4): one
/// HELP and TYPE line per name, then its samples; names in alphabetical order.
class PrometheusText final : public Sink {
 public:
  void counter(std::string_view name, std::string_view help, Labels labels, double value) override;
  void gauge(std::string_view name, std::string_view help, Labels labels, double value) override;
  void histogram(std::string_view name, std::string_view help, Labels labels,
                 const HistogramSnapshot& value) override;

  [[nodiscard]] std::string text() const;

  /// The content type scrapers expect for this format.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Family {
    std::string type;
    std::string help;
    std::vector<std::string> lines;
  };
  Family& family(std::string_view name, std::string_view type, std::string_view help);

  std::map<std::string, Family, std::less<>> families_;
};

}  // namespace ember::metrics
