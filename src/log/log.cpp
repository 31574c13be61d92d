// SPDX-License-Identifier: Apache-2.0
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <ember/log.hpp>
#include <mutex>

namespace ember {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
thread_local std::uint64_t tls_trace_id = 0;

struct Backend {
  std::mutex mutex;
  std::shared_ptr<spdlog::logger> logger;
};

Backend& backend() {
  // Leaked on purpose: loggers are used from threads that may outlive static destruction order.
  static auto* instance = [] {
    auto* b = new Backend;
    b->logger = std::make_shared<spdlog::logger>(
        "ember", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    b->logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%t] %v");
    b->logger->set_level(spdlog::level::trace);  // filtering happens in Logger::enabled
    return b;
  }();
  return *instance;
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
  return static_cast<spdlog::level::level_enum>(static_cast<int>(level));
}

}  // namespace

bool parse_log_level(std::string_view text, LogLevel& level) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::pair<std::string_view, LogLevel> kNames[] = {
      {"trace", LogLevel::trace},       {"debug", LogLevel::debug},  {"info", LogLevel::info},
      {"warn", LogLevel::warn},         {"warning", LogLevel::warn}, {"error", LogLevel::error},
      {"critical", LogLevel::critical}, {"off", LogLevel::off}};
  for (const auto& [name, value] : kNames) {
    if (lower == name) {
      level = value;
      return true;
    }
  }
  return false;
}

Logger::Logger(std::string name) : name_(std::move(name)) {}
Logger::Logger() : name_("ember") {}

bool Logger::enabled(LogLevel level) const noexcept {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed) &&
         level != LogLevel::off;
}

void Logger::write(LogLevel level, std::string_view text) const {
  auto& b = backend();
  std::shared_ptr<spdlog::logger> logger;
  {
    std::lock_guard lock(b.mutex);
    logger = b.logger;
  }
  if (tls_trace_id != 0) {
    logger->log(to_spdlog(level), "{} [trace {:016x}]: {}", name_, tls_trace_id, text);
  } else {
    logger->log(to_spdlog(level), "{}: {}", name_, text);
  }
}

Status configure_logging(LogLevel level, const std::string& file_path) {
  set_log_level(level);
  auto& b = backend();
  std::vector<spdlog::sink_ptr> sinks{std::make_shared<spdlog::sinks::stderr_color_sink_mt>()};
  if (!file_path.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file_path));
    } catch (const std::exception& e) {
      return Error{Errc::io_error, "cannot open log file '" + file_path + "': " + e.what()};
    }
  }
  auto logger = std::make_shared<spdlog::logger>("ember", sinks.begin(), sinks.end());
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%t] %v");
  logger->set_level(spdlog::level::trace);
  logger->flush_on(spdlog::level::warn);
  std::lock_guard lock(b.mutex);
  b.logger = std::move(logger);
  return {};
}

void set_log_level(LogLevel level) {
  g_level.store(static_cast<int>(level));
}

LogLevel log_level() noexcept {
  return static_cast<LogLevel>(g_level.load());
}

void flush_logs() {
  auto& b = backend();
  std::lock_guard lock(b.mutex);
  b.logger->flush();
}

TraceScope::TraceScope(std::uint64_t trace_id) noexcept : saved_(tls_trace_id) {
  tls_trace_id = trace_id;
}

TraceScope::~TraceScope() {
  tls_trace_id = saved_;
}

std::uint64_t current_trace_id() noexcept {
  return tls_trace_id;
}

const Logger& system_log() {
  static const Logger logger("ember");
  return logger;
}

}  // namespace ember
