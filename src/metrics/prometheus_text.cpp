// SPDX-License-Identifier: Apache-2.0
#include "metrics/prometheus_text.hpp"

#include <fmt/format.h>

#include <cmath>

namespace ember::metrics {
namespace {

void append_escaped(std::string& out, std::string_view text, bool quotes) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

std::string number(double value) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  return fmt::format("{}", value);
}

// name{a="x",b="y"} (with `extra` last, for a bucket's le) or name alone.
std::string series(std::string_view name, Labels labels, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  std::string out(name);
  if (labels.size() == 0 && extra_name.empty()) {
    return out;
  }
  out += '{';
  bool first = true;
  auto add = [&](std::string_view label, std::string_view value) {
    if (!first) {
      out += ',';
    }
    first = false;
    out += label;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
  };
  for (const Label& l : labels) {
    add(l.name, l.value);
  }
  if (!extra_name.empty()) {
    add(extra_name, extra_value);
  }
  out += '}';
  return out;
}

}  // namespace

PrometheusText::Family& PrometheusText::family(std::string_view name, std::string_view type,
                                               std::string_view help) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{std::string(type), std::string(help), {}})
             .first;
  }
  return it->second;
}

void PrometheusText::counter(std::string_view name, std::string_view help, Labels labels,
                             double value) {
  family(name, "counter", help).lines.push_back(series(name, labels) + ' ' + number(value));
}

void PrometheusText::gauge(std::string_view name, std::string_view help, Labels labels,
                           double value) {
  family(name, "gauge", help).lines.push_back(series(name, labels) + ' ' + number(value));
}

void PrometheusText::histogram(std::string_view name, std::string_view help, Labels labels,
                               const HistogramSnapshot& value) {
  Family& f = family(name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kTimeBuckets; ++i) {
    cumulative += value.counts[i];
    const std::string le = i < kTimeBounds.size() ? number(kTimeBounds[i]) : "+Inf";
    f.lines.push_back(series(bucket, labels, "le", le) + ' ' + std::to_string(cumulative));
  }
  f.lines.push_back(series(std::string(name) + "_sum", labels) + ' ' + number(value.sum_seconds));
  f.lines.push_back(series(std::string(name) + "_count", labels) + ' ' +
                    std::to_string(cumulative));
}

std::string PrometheusText::text() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped(out, f.help, false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += f.type;
    out += '\n';
    for (const std::string& line : f.lines) {
      out += line;
      out += '\n';
    }
  }
  return out;
}

}  // namespace ember::metrics
