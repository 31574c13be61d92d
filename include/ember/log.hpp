// SPDX-License-Identifier: Apache-2.0
//
// Logging facade. spdlog stays behind this header (it costs seconds per translation unit), so
// user code only pays for fmt's core header:
//
//   log().info("player {} joined room {}", uid, room);
//
// Every service has its own Logger whose lines carry the node and service names.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <fmt/core.h>

#include <cstdint>
#include <ember/error.hpp>
#include <memory>
#include <string>
#include <string_view>

namespace ember {

enum class LogLevel : int { trace = 0, debug, info, warn, error, critical, off };

/// Parses "trace".."off" (case-insensitive). Returns false for anything else.
bool parse_log_level(std::string_view text, LogLevel& level);

class Logger {
 public:
  /// `name` shows in every line, e.g. "node-1/login". Cheap to copy: shares one sink.
  explicit Logger(std::string name);
  Logger();

  [[nodiscard]] bool enabled(LogLevel level) const noexcept;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  void write(LogLevel level, std::string_view text) const;

  template <class... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(level)) {
      write(level, fmt::format(format, std::forward<Args>(args)...));
    }
  }
  template <class... Args>
  void trace(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::trace, f, std::forward<Args>(a)...);
  }
  template <class... Args>
  void debug(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::debug, f, std::forward<Args>(a)...);
  }
  template <class... Args>
  void info(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::info, f, std::forward<Args>(a)...);
  }
  template <class... Args>
  void warn(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::warn, f, std::forward<Args>(a)...);
  }
  template <class... Args>
  void error(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::error, f, std::forward<Args>(a)...);
  }
  template <class... Args>
  void critical(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::critical, f, std::forward<Args>(a)...);
  }

 private:
  std::string name_;
};

/// While a TraceScope lives, every line its thread writes names the trace ("node-1/login
/// [trace 00000000075bcd15]: ..."). Ember opens one around every handler, completion and event
/// with the request's trace id, which travels with nested calls, across nodes and from the
/// gateway: grep for it over every node's log and a request's path shows. 0 = no trace.
class TraceScope {
 public:
  explicit TraceScope(std::uint64_t trace_id) noexcept;
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  std::uint64_t saved_;
};
/// The trace id of the calling thread's TraceScope, or 0.
std::uint64_t current_trace_id() noexcept;

/// Process-wide settings, applied by the node at start (SystemLogger config, --log-level).
/// `file_path` empty = stderr only; otherwise lines go to the file and to stderr.
/// Fails (io_error) when the file cannot be opened; stderr logging keeps working then.
Status configure_logging(LogLevel level, const std::string& file_path = {});
void set_log_level(LogLevel level);
LogLevel log_level() noexcept;
/// Flushes buffered sinks; called at node stop.
void flush_logs();

/// The framework's own logger ("ember").
const Logger& system_log();

}  // namespace ember
