// SPDX-License-Identifier: Apache-2.0
//
// Cron schedules with a seconds field, evaluated in a time zone fixed at parse time.
//
//   auto daily = CronSchedule::parse("TZ=Asia/Shanghai 0 30 9 * * MON-FRI", TimeZone::utc());
//   auto when = daily->next(std::chrono::system_clock::now());  // nullopt: never fires again
//
// Syntax: "sec min hour day-of-month month day-of-week" (6 fields, seconds required) with *, ?,
// a-b, */n, a-b/n, a/n, lists, JAN-DEC, SUN-SAT (day-of-week 0 and 7 are Sunday); the
// descriptors @yearly @annually @monthly @weekly @daily @midnight @hourly and "@every 1h30m";
// and an optional "TZ=<zone> " or "CRON_TZ=<zone> " prefix.
#pragma once

#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "timer/time_zone.hpp"

namespace ember::timer {

class CronSchedule {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  /// `default_zone` applies unless the spec carries a TZ= / CRON_TZ= prefix. Errors are
  /// invalid_argument and name the offending field and token.
  static Result<CronSchedule> parse(std::string_view spec, const TimeZone& default_zone);

  /// The first fire time strictly after `after`: whole seconds for field schedules, exactly
  /// after + interval for @every. nullopt when nothing fires within five years.
  ///
  /// Field schedules match the zone's wall clock. A wall time skipped by a DST gap fires shifted
  /// forward by the gap size (02:30 in a 02:00->03:00 gap fires at 03:30); a wall time repeated
  /// by a fold fires once, at its first occurrence.
  [[nodiscard]] std::optional<TimePoint> next(TimePoint after) const;

  [[nodiscard]] const TimeZone& zone() const { return zone_; }
  [[nodiscard]] const std::string& spec() const { return spec_; }
  /// The period of an "@every" schedule; nullopt for field schedules.
  [[nodiscard]] std::optional<std::chrono::nanoseconds> interval() const;

 private:
  CronSchedule() = default;

  [[nodiscard]] bool day_matches(std::chrono::local_days day) const;
  [[nodiscard]] std::optional<std::chrono::local_seconds> first_match(
      std::chrono::local_seconds from, std::chrono::local_seconds limit) const;
  // Fires produced by wall times inside the gap that opens at `jump`.
  void gap_fires(std::chrono::sys_seconds jump, std::chrono::seconds before,
                 std::chrono::seconds after, std::chrono::sys_seconds from,
                 std::chrono::sys_seconds horizon,
                 std::optional<std::chrono::sys_seconds>& best) const;

  std::string spec_;
  TimeZone zone_;
  std::chrono::nanoseconds interval_{0};  // > 0 only for @every
  // Bit i set = value i allowed.
  std::uint64_t seconds_ = 0;
  std::uint64_t minutes_ = 0;
  std::uint32_t hours_ = 0;
  std::uint32_t days_of_month_ = 0;  // bits 1..31
  std::uint16_t months_ = 0;         // bits 1..12
  std::uint8_t days_of_week_ = 0;    // bits 0..6, 0 = Sunday
  // "*" or "?" in a day field; with both day fields restricted, either one may match.
  bool dom_any_ = false;
  bool dow_any_ = false;
};

}  // namespace ember::timer
