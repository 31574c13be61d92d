// SPDX-License-Identifier: Apache-2.0
//
// A minimal IANA time zone. libstdc++ 12 ships no std::chrono::locate_zone, and cron schedules
// must be evaluated in a fixed zone (not whatever the process happens to use), so Ember reads the
// system's TZif files itself.
//
//   auto ny = ember::timer::TimeZone::load("America/New_York");
//   if (!ny) { log.error("{}", ny.error().message()); }
//   auto local = ny->to_local(std::chrono::floor<std::chrono::seconds>(system_clock::now()));
#pragma once

#include <chrono>
#include <ember/error.hpp>
#include <memory>
#include <string>
#include <string_view>

namespace ember::timer {

/// Immutable and cheap to copy: copies share the parsed zone data.
class TimeZone {
 public:
  /// A stretch of time with one UTC offset, like std::chrono::sys_info. The first and last spans
  /// of a zone are open-ended; their bounds are clamped to [kMinTime, kMaxTime].
  struct Span {
    std::chrono::sys_seconds begin;
    std::chrono::sys_seconds end;  ///< exclusive
    std::chrono::seconds offset;   ///< local = utc + offset
  };

  // Bounds keep all internal arithmetic far from overflow and inside std::chrono::year's range.
  static constexpr std::chrono::sys_seconds kMinTime{
      std::chrono::sys_days{std::chrono::year{-9999} / 1 / 1}.time_since_epoch()};
  static constexpr std::chrono::sys_seconds kMaxTime{
      std::chrono::sys_days{std::chrono::year{9999} / 12 / 31}.time_since_epoch()};

  /// UTC.
  TimeZone();

  /// "UTC" / "Etc/UTC" / "Z"; "Local" ($TZ, else /etc/localtime, else UTC); or an IANA name read
  /// from /usr/share/zoneinfo. Errors: invalid_argument for unsafe names or corrupt files,
  /// not_found for unknown zones.
  static Result<TimeZone> load(std::string_view name);

  /// A zone described by a POSIX TZ string such as "EST5EDT,M3.2.0,M11.1.0" or "<+0530>-5:30".
  static Result<TimeZone> from_posix(std::string_view tz_string);

  static TimeZone utc();

  [[nodiscard]] const std::string& name() const;

  /// Offset in effect at the UTC instant t.
  [[nodiscard]] std::chrono::seconds utc_offset(std::chrono::sys_seconds t) const;

  /// The span of constant offset containing t (t is clamped to [kMinTime, kMaxTime]).
  [[nodiscard]] Span span_at(std::chrono::sys_seconds t) const;

  [[nodiscard]] std::chrono::local_seconds to_local(std::chrono::sys_seconds t) const;

  /// A local time skipped by a forward jump (DST gap) maps to the instant reached by shifting it
  /// forward by the gap size; a repeated local time (fold) maps to the earlier instant.
  [[nodiscard]] std::chrono::sys_seconds to_sys(std::chrono::local_seconds t) const;

  struct Data;

 private:
  explicit TimeZone(std::shared_ptr<const Data> data) : data_(std::move(data)) {}

  std::shared_ptr<const Data> data_;
};

}  // namespace ember::timer
