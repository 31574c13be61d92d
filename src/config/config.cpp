// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ember/config.hpp>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include "config/sections.hpp"
#include "config/yaml_walker.hpp"

namespace ember {
namespace {

using config::config_error;
using config::quote;

using std::chrono::milliseconds;

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kNsPerMs = 1'000'000;

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// --- durations -------------------------------------------------------------------------------

std::optional<std::int64_t> unit_in_ns(std::string_view unit) {
  if (unit == "ns")
    return 1;
  // Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC); people paste either.
  if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
    return 1'000;
  if (unit == "ms")
    return kNsPerMs;
  if (unit == "s")
    return 1'000'000'000;
  if (unit == "m")
    return 60LL * 1'000'000'000;
  if (unit == "h")
    return 3600LL * 1'000'000'000;
  return std::nullopt;
}

// --- environment expansion -------------------------------------------------------------------

bool is_env_name(std::string_view name) {
  if (name.empty())
    return false;
  auto head = static_cast<unsigned char>(name.front());
  if (!(std::isalpha(head) || head == '_'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || u == '_';
  });
}

}  // namespace

Result<milliseconds> parse_duration(std::string_view text) {
  auto precise = parse_duration_ns(text);
  if (!precise)
    return precise.error();
  return std::chrono::duration_cast<milliseconds>(*precise);
}

Result<std::chrono::nanoseconds> parse_duration_ns(std::string_view text) {
  auto fail = [&](std::string_view why) {
    return Error{Errc::invalid_argument,
                 "invalid duration " + quote(text) + ": " + std::string{why}};
  };
  if (text.empty())
    return fail("empty");
  if (text.front() == '-')
    return fail("negative durations are not allowed");

  // A bare integer is the seed's historical form: milliseconds.
  if (all_digits(text)) {
    std::int64_t ms = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc{} || end != text.data() + text.size() || ms > kInt64Max / kNsPerMs) {
      return fail("out of range");
    }
    return std::chrono::nanoseconds{ms * kNsPerMs};
  }

  // Accumulate in whole nanoseconds so "0.3s" is exactly 300ms rather than 299.999...
  std::int64_t total_ns = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t number_start = i;
    std::int64_t whole = 0;
    bool overflow = false;
    std::size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      overflow = overflow || __builtin_mul_overflow(whole, 10, &whole) ||
                 __builtin_add_overflow(whole, text[i] - '0', &whole);
      ++i;
      ++digits;
    }
    std::string_view fraction;
    if (i < text.size() && text[i] == '.') {
      const std::size_t start = ++i;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
      fraction = text.substr(start, i - start);
      digits += fraction.size();
    }
    if (digits == 0)
      return fail("expected a number at " + quote(text.substr(number_start)));

    const std::size_t unit_start = i;
    while (i < text.size() && !(text[i] >= '0' && text[i] <= '9') && text[i] != '.') ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit.empty())
      return fail("missing unit (use ns, us, ms, s, m or h)");
    const std::optional<std::int64_t> unit_ns = unit_in_ns(unit);
    if (!unit_ns)
      return fail("unknown unit " + quote(unit) + " (use ns, us, ms, s, m or h)");

    std::int64_t part = 0;
    overflow = overflow || __builtin_mul_overflow(whole, *unit_ns, &part);
    // Each fraction digit is worth a tenth of the previous one; below 1ns the rest is dropped.
    std::int64_t scale = *unit_ns;
    for (char c : fraction) {
      scale /= 10;
      if (scale == 0)
        break;
      overflow = overflow || __builtin_add_overflow(part, (c - '0') * scale, &part);
    }
    overflow = overflow || __builtin_add_overflow(total_ns, part, &total_ns);
    if (overflow)
      return fail("out of range");
  }
  return std::chrono::nanoseconds{total_ns};
}

Result<std::string> expand_env(std::string_view text, std::string_view source_name) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n')
      ++line;
    if (c != '$') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (i + 1 >= text.size() || text[i + 1] != '{') {
      out += '$';  // "$5" or "cost: $" are ordinary text, not references
      ++i;
      continue;
    }
    // A reference must close on its own line; otherwise a missing "}" would swallow the file.
    const std::size_t close = text.find_first_of("}\n", i + 2);
    if (close == std::string_view::npos || text[close] == '\n') {
      return config_error(source_name, line, "",
                          "unterminated '${' (expected '}' on the same line)");
    }
    const std::string_view body = text.substr(i + 2, close - i - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (const std::size_t colon = body.find(':'); colon != std::string_view::npos) {
      if (body.substr(colon, 2) != ":-") {
        return config_error(source_name, line, "",
                            "unsupported expression " + quote("${" + std::string{body} + "}") +
                                " (expected ${NAME} or ${NAME:-default})");
      }
      name = body.substr(0, colon);
      fallback = body.substr(colon + 2);
    }
    if (!is_env_name(name)) {
      return config_error(source_name, line, "",
                          "invalid environment variable name " + quote(name) + " in " +
                              quote("${" + std::string{body} + "}"));
    }
    const std::string name_text{name};
    const char* value = std::getenv(name_text.c_str());
    std::string_view replacement;
    // Like the shell's ":-", an empty value also takes the default: an exported-but-empty
    // variable is almost always a deployment slip, not a deliberate empty setting.
    if (value != nullptr && (*value != '\0' || !fallback)) {
      replacement = value;
    } else if (fallback) {
      replacement = *fallback;
    } else {
      return config_error(source_name, line, "",
                          "environment variable " + name_text + " is not set");
    }
    if (replacement.find_first_of("\r\n") != std::string_view::npos) {
      return config_error(source_name, line, "",
                          "environment variable " + name_text +
                              " contains a line break; only single-line values can be "
                              "substituted (line numbers in errors would be wrong)");
    }
    out += replacement;
    i = close + 1;
  }
  return out;
}

EventBackend event_backend(const NodeConfig& config) noexcept {
  if (config.events.backend != EventBackend::automatic) {
    return config.events.backend;
  }
  return config.cluster.enabled ? EventBackend::cluster : EventBackend::local;
}

Result<NodeConfig> parse_node_config(std::string_view yaml_text, std::string_view source_name) {
  try {
    NodeConfig node;
    Status status = config::Walker::walk(
        yaml_text, source_name, [&](const config::Walker& walker, const config::Entry& root) {
          return config::document_section().read(walker, root, node);
        });
    if (!status)
      return status.error();
    node.source = std::string(source_name);
    return node;
  } catch (const std::exception& e) {
    return config_error(source_name, 0, "", std::string{"unexpected error: "} + e.what(),
                        Errc::internal);
  } catch (...) {
    return config_error(source_name, 0, "", "unexpected error", Errc::internal);
  }
}

Result<NodeConfig> load_node_config(const std::string& path) {
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      return Error{Errc::io_error, "cannot read config file '" + path + "': is a directory"};
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return Error{Errc::io_error,
                   "cannot open config file '" + path + "': " + std::strerror(errno)};
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) {
      return Error{Errc::io_error, "cannot read config file '" + path + "'"};
    }
    Result<std::string> expanded = expand_env(buffer.str(), path);
    if (!expanded)
      return std::move(expanded).error();
    Result<NodeConfig> config = parse_node_config(*expanded, path);
    if (!config)
      return config;
    config->source = path;
    return config;
  } catch (const std::exception& e) {
    return Error{Errc::io_error, "cannot read config file '" + path + "': " + e.what()};
  }
}

}  // namespace ember
