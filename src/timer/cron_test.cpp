// SPDX-License-Identifier: Apache-2.0
#include "timer/cron.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace ember::timer {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;
using TimePoint = CronSchedule::TimePoint;

TimePoint utc_at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return TimePoint{sys_days{year{y} / mo / d} + hours{h} + minutes{mi} + seconds{s}};
}

TimeZone zone(std::string_view name) {
  auto z = TimeZone::load(name);
  EXPECT_TRUE(z) << name;
  return z ? *z : TimeZone::utc();
}

CronSchedule must_parse(std::string_view spec, const TimeZone& default_zone = TimeZone::utc()) {
  auto schedule = CronSchedule::parse(spec, default_zone);
  EXPECT_TRUE(schedule) << spec << ": " << (schedule ? "" : schedule.error().to_string());
  return schedule ? *schedule : *CronSchedule::parse("@every 1h", default_zone);
}

std::vector<TimePoint> fires(const CronSchedule& schedule, TimePoint after, int count) {
  std::vector<TimePoint> out;
  for (int i = 0; i < count; ++i) {
    auto next = schedule.next(after);
    if (!next)
      break;
    EXPECT_GT(*next, after);
    out.push_back(*next);
    after = *next;
  }
  return out;
}

std::vector<TimePoint> fires(std::string_view spec, TimePoint after, int count,
                             const TimeZone& z = TimeZone::utc()) {
  return fires(must_parse(spec, z), after, count);
}

void expect_error(std::string_view spec, std::vector<std::string_view> fragments) {
  auto schedule = CronSchedule::parse(spec, TimeZone::utc());
  ASSERT_FALSE(schedule) << "'" << spec << "' should not parse";
  EXPECT_EQ(schedule.error().code(), Errc::invalid_argument) << spec;
  for (auto fragment : fragments) {
    EXPECT_NE(schedule.error().message().find(fragment), std::string::npos)
        << "'" << schedule.error().message() << "' lacks '" << fragment << "'";
  }
}

TEST(Cron, EverySecondIsStrictlyAfter) {
  auto s = must_parse("* * * * * *");
  const auto t = utc_at(2025, 1, 1, 10);
  EXPECT_EQ(s.next(t), t + 1s);
  EXPECT_EQ(s.next(t + 500ms), t + 1s);
  EXPECT_EQ(s.next(t - 1ns), t);
  EXPECT_EQ(s.spec(), "* * * * * *");
  EXPECT_EQ(s.zone().name(), "UTC");
  EXPECT_FALSE(s.interval());
}

TEST(Cron, NextNeverReturnsTheSameInstant) {
  auto s = must_parse("0 30 9 * * *");
  const auto fire = utc_at(2025, 5, 5, 9, 30);
  EXPECT_EQ(s.next(fire - 1s), fire);
  EXPECT_EQ(s.next(fire - 1ns), fire);
  EXPECT_EQ(s.next(fire), fire + 24h);
  EXPECT_EQ(s.next(fire + 1ns), fire + 24h);
}

TEST(Cron, StepsRangesAndLists) {
  const auto t = utc_at(2025, 1, 1);
  EXPECT_EQ(fires("*/15 * * * * *", t, 5),
            (std::vector{t + 15s, t + 30s, t + 45s, t + 60s, t + 75s}));
  EXPECT_EQ(fires("10-20/5 * * * * *", t, 4), (std::vector{t + 10s, t + 15s, t + 20s, t + 70s}));
  EXPECT_EQ(fires("5/20 * * * * *", t, 4), (std::vector{t + 5s, t + 25s, t + 45s, t + 65s}));
  EXPECT_EQ(fires("1,2,59 * * * * *", t, 4), (std::vector{t + 1s, t + 2s, t + 59s, t + 61s}));
  EXPECT_EQ(fires("0 0,30 8-9 * * *", t, 5),
            (std::vector{t + 8h, t + 8h + 30min, t + 9h, t + 9h + 30min, t + 32h}));
  EXPECT_EQ(fires("0 0 */6 * * *", t, 3), (std::vector{t + 6h, t + 12h, t + 18h}));
  EXPECT_EQ(fires("0 0 0 1-3,20 * *", t, 5),
            (std::vector{t + 24h, t + 48h, t + 19 * 24h, t + 31 * 24h, t + 32 * 24h}));
}

TEST(Cron, MonthAndDayNames) {
  EXPECT_EQ(fires("0 0 0 1 JAN,jul *", utc_at(2025, 1, 1), 3),
            (std::vector{utc_at(2025, 7, 1), utc_at(2026, 1, 1), utc_at(2026, 7, 1)}));
  EXPECT_EQ(fires("0 0 0 1 Mar-May *", utc_at(2025, 1, 1), 4),
            (std::vector{utc_at(2025, 3, 1), utc_at(2025, 4, 1), utc_at(2025, 5, 1),
                         utc_at(2026, 3, 1)}));
  // 2025-03-01 is a Saturday.
  EXPECT_EQ(fires("0 0 12 * * MON-FRI", utc_at(2025, 3, 1), 6),
            (std::vector{utc_at(2025, 3, 3, 12), utc_at(2025, 3, 4, 12), utc_at(2025, 3, 5, 12),
                         utc_at(2025, 3, 6, 12), utc_at(2025, 3, 7, 12), utc_at(2025, 3, 10, 12)}));
  EXPECT_EQ(fires("0 0 0 ? * sun", utc_at(2025, 3, 1), 1), (std::vector{utc_at(2025, 3, 2)}));
}

TEST(Cron, SundayIsZeroOrSeven) {
  const auto from = utc_at(2025, 3, 1);  // Saturday
  const std::vector sundays{utc_at(2025, 3, 2), utc_at(2025, 3, 9)};
  EXPECT_EQ(fires("0 0 0 * * 0", from, 2), sundays);
  EXPECT_EQ(fires("0 0 0 * * 7", from, 2), sundays);
  EXPECT_EQ(fires("0 0 0 * * 5-7", from, 4), (std::vector{utc_at(2025, 3, 2), utc_at(2025, 3, 7),
                                                          utc_at(2025, 3, 8), utc_at(2025, 3, 9)}));
  EXPECT_EQ(fires("0 0 0 * * 1/2", from, 4),
            (std::vector{utc_at(2025, 3, 3), utc_at(2025, 3, 5), utc_at(2025, 3, 7),
                         utc_at(2025, 3, 10)}));
}

TEST(Cron, DayOfMonthOrDayOfWeek) {
  // Both restricted: the 13th OR any Friday. 2025-06-01 is a Sunday; June 13 is a Friday.
  EXPECT_EQ(fires("0 0 0 13 * FRI", utc_at(2025, 6, 1), 7),
            (std::vector{utc_at(2025, 6, 6), utc_at(2025, 6, 13), utc_at(2025, 6, 20),
                         utc_at(2025, 6, 27), utc_at(2025, 7, 4), utc_at(2025, 7, 11),
                         utc_at(2025, 7, 13)}));
  // One side "*" or "?": only the other side restricts.
  EXPECT_EQ(fires("0 0 0 13 * *", utc_at(2025, 6, 1), 2),
            (std::vector{utc_at(2025, 6, 13), utc_at(2025, 7, 13)}));
  EXPECT_EQ(fires("0 0 0 13 * ?", utc_at(2025, 6, 1), 1), (std::vector{utc_at(2025, 6, 13)}));
  EXPECT_EQ(fires("0 0 0 ? * FRI", utc_at(2025, 6, 1), 2),
            (std::vector{utc_at(2025, 6, 6), utc_at(2025, 6, 13)}));
  EXPECT_EQ(fires("0 0 0 * * FRI", utc_at(2025, 6, 1), 2),
            (std::vector{utc_at(2025, 6, 6), utc_at(2025, 6, 13)}));
}

TEST(Cron, Descriptors) {
  const auto from = utc_at(2025, 6, 4, 10, 20, 30);  // Wednesday
  EXPECT_EQ(must_parse("@yearly").next(from), utc_at(2026, 1, 1));
  EXPECT_EQ(must_parse("@annually").next(from), utc_at(2026, 1, 1));
  EXPECT_EQ(must_parse("@monthly").next(from), utc_at(2025, 7, 1));
  EXPECT_EQ(must_parse("@weekly").next(from), utc_at(2025, 6, 8));
  EXPECT_EQ(must_parse("@daily").next(from), utc_at(2025, 6, 5));
  EXPECT_EQ(must_parse("@midnight").next(from), utc_at(2025, 6, 5));
  EXPECT_EQ(must_parse("@hourly").next(from), utc_at(2025, 6, 4, 11));
  EXPECT_EQ(must_parse("@DAILY").next(from), utc_at(2025, 6, 5));
  EXPECT_EQ(must_parse("TZ=Asia/Tokyo @daily").next(from), utc_at(2025, 6, 4, 15));
}

TEST(Cron, Every) {
  const auto from = utc_at(2025, 6, 4, 10, 20, 30) + 123ms;
  auto s = must_parse("@every 1h30m", zone("Asia/Shanghai"));
  EXPECT_EQ(s.next(from), from + 90min);
  EXPECT_EQ(s.interval(), nanoseconds{90min});
  EXPECT_EQ(must_parse("@every 10s").next(from), from + 10s);
  EXPECT_EQ(must_parse("@every 500ms").next(from), from + 500ms);
  EXPECT_EQ(must_parse("@every 1.5s").next(from), from + 1500ms);
  EXPECT_EQ(must_parse("@every 2h0m0.25s").next(from), from + 2h + 250ms);
  EXPECT_EQ(must_parse("@every 1us").interval(), nanoseconds{1us});
  EXPECT_EQ(must_parse("@every 3ns").interval(), nanoseconds{3});
  EXPECT_EQ(must_parse("@every .5m").interval(), nanoseconds{30s});
  EXPECT_EQ(must_parse("@every 1h").next(TimePoint::max() - 1min), std::nullopt);
}

TEST(Cron, ZonePrefixAndDefaultZone) {
  auto prefixed = must_parse("TZ=Asia/Shanghai 0 30 9 * * *");
  EXPECT_EQ(prefixed.zone().name(), "Asia/Shanghai");
  EXPECT_EQ(prefixed.next(utc_at(2025, 6, 1)), utc_at(2025, 6, 1, 1, 30));
  auto cron_tz = must_parse("CRON_TZ=America/New_York 0 0 9 * * *", zone("Asia/Shanghai"));
  EXPECT_EQ(cron_tz.zone().name(), "America/New_York");
  EXPECT_EQ(cron_tz.next(utc_at(2025, 6, 1)), utc_at(2025, 6, 1, 13));
  auto defaulted = must_parse("0 0 9 * * *", zone("Europe/London"));
  EXPECT_EQ(defaulted.zone().name(), "Europe/London");
  EXPECT_EQ(defaulted.next(utc_at(2025, 6, 1)), utc_at(2025, 6, 1, 8));
}

// Regression for the Go seed, whose first fire used local time and later ones UTC.
TEST(Cron, EveryFireUsesTheSameZone) {
  auto s = must_parse("0 30 9 * * *", zone("Asia/Shanghai"));
  auto after = utc_at(2025, 6, 1, 12);
  for (int i = 0; i < 5; ++i) {
    auto next = s.next(after);
    ASSERT_TRUE(next);
    EXPECT_EQ(*next, utc_at(2025, 6, 2 + i, 1, 30)) << "fire " << i;
    after = *next;
  }
}

TEST(Cron, LeapDayAndImpossibleDates) {
  EXPECT_EQ(fires("0 0 0 29 2 *", utc_at(2025, 1, 1), 2),
            (std::vector{utc_at(2028, 2, 29), utc_at(2032, 2, 29)}));
  EXPECT_EQ(must_parse("0 0 0 30 2 *").next(utc_at(2025, 1, 1)), std::nullopt);
  EXPECT_EQ(must_parse("0 0 0 31 4,6,9,11 *").next(utc_at(2025, 1, 1)), std::nullopt);
  EXPECT_EQ(fires("0 0 0 31 * *", utc_at(2025, 3, 31), 3),
            (std::vector{utc_at(2025, 5, 31), utc_at(2025, 7, 31), utc_at(2025, 8, 31)}));
  // Nothing fires past the five-year horizon, even when the date exists.
  EXPECT_EQ(must_parse("0 0 0 29 2 *").next(utc_at(2097, 1, 1)), std::nullopt);
}

TEST(Cron, Errors) {
  expect_error("", {"empty"});
  expect_error("   ", {"empty"});
  expect_error("0 0 * * *", {"seconds are required"});
  expect_error("0 0 0 * *", {"5 fields"});
  expect_error("0 0 0 * * * *", {"7 fields"});
  expect_error("0 0 0 *", {"4 fields"});
  expect_error("60 * * * * *", {"second", "60"});
  expect_error("0 60 * * * *", {"minute", "60"});
  expect_error("0 0 24 * * *", {"hour", "24"});
  expect_error("0 0 0 0 * *", {"day-of-month", "'0'"});
  expect_error("0 0 0 32 * *", {"day-of-month", "32"});
  expect_error("0 0 0 * 13 *", {"month", "13"});
  expect_error("0 0 0 * 0 *", {"month", "'0'"});
  expect_error("0 0 0 * * 8", {"day-of-week", "8"});
  expect_error("*/0 * * * * *", {"second", "*/0", "step"});
  expect_error("0 0 5-3 * * *", {"hour", "5-3"});
  expect_error("0 0 0 * FOO *", {"month", "FOO"});
  expect_error("0 0 0 * * FUNDAY", {"day-of-week", "FUNDAY"});
  expect_error("0 0 0 * * MON-FOO", {"day-of-week", "MON-FOO"});
  expect_error("0 0 0 * JANUARY *", {"month", "JANUARY"});
  expect_error("0 0 MON * * *", {"hour", "MON"});
  expect_error("? * * * * *", {"second", "?"});
  expect_error("1,,2 * * * * *", {"second", "1,,2"});
  expect_error("1- * * * * *", {"second", "1-"});
  expect_error("-1 * * * * *", {"second", "-1"});
  expect_error("*/x * * * * *", {"second", "*/x"});
  expect_error("0 0 0 1 1 * extra", {"7 fields"});
  expect_error("@fortnightly", {"@fortnightly"});
  expect_error("@daily 0", {"@daily"});
  expect_error("@every", {"@every"});
  expect_error("@every 0s", {"0s", "positive"});
  expect_error("@every 5", {"'5'", "unit"});
  expect_error("@every 5x", {"5x"});
  expect_error("@every -1s", {"-1s"});
  expect_error("@every 1h extra", {"@every"});
  expect_error("@every 99999999999h", {"too large"});
  expect_error("@every 2562047.9h", {"too large"});  // fits in whole hours, not with the .9
  expect_error("TZ=Mars/Base 0 * * * * *", {"Mars/Base"});
  expect_error("TZ=../../etc/passwd 0 * * * * *", {"../../etc/passwd"});
  expect_error("CRON_TZ= 0 * * * * *", {"time zone"});
  expect_error("TZ=UTC", {"no schedule"});
}

TEST(Cron, NewYorkSpringForward) {
  const auto ny = zone("America/New_York");
  // 2025-03-09 07:00Z: 02:00 EST -> 03:00 EDT. Gap times fire shifted by the gap size.
  EXPECT_EQ(fires("0 30 2 * * *", utc_at(2025, 3, 8, 12), 2, ny),
            (std::vector{utc_at(2025, 3, 9, 7, 30), utc_at(2025, 3, 10, 6, 30)}));
  EXPECT_EQ(fires("0 0 2 * * *", utc_at(2025, 3, 8, 12), 2, ny),
            (std::vector{utc_at(2025, 3, 9, 7), utc_at(2025, 3, 10, 6)}));
  // 02:00 and 03:00 (and 02:30 and 03:30) land on the same instant and fire once.
  EXPECT_EQ(fires("0 */30 * * * *", utc_at(2025, 3, 9, 6), 4, ny),
            (std::vector{utc_at(2025, 3, 9, 6, 30), utc_at(2025, 3, 9, 7),
                         utc_at(2025, 3, 9, 7, 30), utc_at(2025, 3, 9, 8)}));
  // A gap fire that is still ahead is not lost when asking from just after the jump.
  EXPECT_EQ(must_parse("0 30 2 * * *", ny).next(utc_at(2025, 3, 9, 7, 10)),
            utc_at(2025, 3, 9, 7, 30));
  // Every second keeps ticking straight through the jump.
  EXPECT_EQ(fires("* * * * * *", utc_at(2025, 3, 9, 6, 59, 58), 3, ny),
            (std::vector{utc_at(2025, 3, 9, 6, 59, 59), utc_at(2025, 3, 9, 7),
                         utc_at(2025, 3, 9, 7, 0, 1)}));
}

TEST(Cron, NewYorkFallBack) {
  const auto ny = zone("America/New_York");
  // 2025-11-02 06:00Z: 02:00 EDT -> 01:00 EST. Repeated wall times fire only the first time.
  EXPECT_EQ(fires("0 30 1 * * *", utc_at(2025, 11, 1, 12), 2, ny),
            (std::vector{utc_at(2025, 11, 2, 5, 30), utc_at(2025, 11, 3, 6, 30)}));
  EXPECT_EQ(
      fires("0 */30 * * * *", utc_at(2025, 11, 2, 4, 45), 3, ny),
      (std::vector{utc_at(2025, 11, 2, 5), utc_at(2025, 11, 2, 5, 30), utc_at(2025, 11, 2, 7)}));
  EXPECT_EQ(fires("@hourly", utc_at(2025, 11, 2, 3, 30), 3, ny),
            (std::vector{utc_at(2025, 11, 2, 4), utc_at(2025, 11, 2, 5), utc_at(2025, 11, 2, 7)}));
  // Asking from inside the second pass through 01:xx.
  EXPECT_EQ(must_parse("0 30 1 * * *", ny).next(utc_at(2025, 11, 2, 6, 10)),
            utc_at(2025, 11, 3, 6, 30));
  EXPECT_EQ(must_parse("0 15 * * * *", ny).next(utc_at(2025, 11, 2, 6, 10)),
            utc_at(2025, 11, 2, 7, 15));
  // Times outside the fold are unaffected.
  EXPECT_EQ(fires("0 0 9 * * *", utc_at(2025, 11, 1, 14), 2, ny),
            (std::vector{utc_at(2025, 11, 2, 14), utc_at(2025, 11, 3, 14)}));
}

// Checks next() against brute force: every matching wall-clock minute mapped through
// TimeZone::to_sys, duplicates collapsed.
TEST(Cron, MatchesBruteForceAcrossTransitions) {
  struct Case {
    const char* zone;
    const char* spec;
    std::function<bool(int hour, int minute)> matches;
    TimePoint from;
  };
  const std::vector<Case> cases{
      {"America/New_York", "0 */20 1-3 * * *",
       [](int h, int m) { return h >= 1 && h <= 3 && m % 20 == 0; }, utc_at(2025, 3, 1)},
      {"America/New_York", "0 */20 1-3 * * *",
       [](int h, int m) { return h >= 1 && h <= 3 && m % 20 == 0; }, utc_at(2025, 10, 26)},
      {"America/New_York", "0 7 * * * *", [](int, int m) { return m == 7; }, utc_at(2025, 10, 26)},
      {"Australia/Lord_Howe", "0 */15 1-2 * * *",
       [](int h, int m) { return (h == 1 || h == 2) && m % 15 == 0; }, utc_at(2025, 3, 30)},
      {"Australia/Lord_Howe", "0 */15 1-2 * * *",
       [](int h, int m) { return (h == 1 || h == 2) && m % 15 == 0; }, utc_at(2025, 9, 30)},
      {"Pacific/Apia", "0 0 */5 * * *", [](int h, int m) { return h % 5 == 0 && m == 0; },
       utc_at(2011, 12, 25)},
      {"Europe/London", "0 59 0-2 * * *", [](int h, int m) { return h <= 2 && m == 59; },
       utc_at(2025, 3, 25)},
  };
  for (const auto& c : cases) {
    const auto z = zone(c.zone);
    const auto schedule = must_parse(c.spec, z);
    const auto begin = floor<days>(z.to_local(floor<seconds>(c.from)));
    std::set<sys_seconds> expected;
    for (auto wall = local_seconds{begin}; wall < begin + days{12}; wall += 1min) {
      const auto of_day = wall - floor<days>(wall);
      if (c.matches(static_cast<int>(of_day / 1h), static_cast<int>(of_day / 1min % 60))) {
        expected.insert(z.to_sys(wall));
      }
    }
    // Skip the first two days so both sides start from a clean state.
    auto after = TimePoint{c.from + days{2}};
    int checked = 0;
    for (auto it = expected.upper_bound(floor<seconds>(after)); it != expected.end(); ++it) {
      if (*it > floor<seconds>(c.from + days{10}))
        break;
      const auto next = schedule.next(after);
      ASSERT_TRUE(next) << c.zone << " " << c.spec;
      ASSERT_EQ(*next, TimePoint{*it})
          << c.zone << " " << c.spec << " after " << after.time_since_epoch().count();
      after = *next;
      ++checked;
    }
    EXPECT_GE(checked, 10) << c.zone << " " << c.spec;
  }
}

TEST(Cron, SearchIsFast) {
  // Field skipping keeps these cheap even under sanitizers: a second-by-second scan over five
  // years would take hours.
  auto every_second = must_parse("* * * * * *", zone("America/New_York"));
  auto t = utc_at(2025, 1, 1);
  for (int i = 0; i < 20000; ++i) t = *every_second.next(t);
  EXPECT_EQ(t, utc_at(2025, 1, 1) + 20000s);
  auto never = must_parse("59 59 23 31 2 *", zone("America/New_York"));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(never.next(utc_at(2025, 1, 1) + days{i}), std::nullopt);
}

TEST(Cron, CopiesAreIndependentValues) {
  auto a = must_parse("TZ=Asia/Shanghai 0 0 8 * * *");
  CronSchedule b = a;
  a = must_parse("@hourly");
  EXPECT_EQ(b.zone().name(), "Asia/Shanghai");
  EXPECT_EQ(b.spec(), "TZ=Asia/Shanghai 0 0 8 * * *");
  EXPECT_EQ(b.next(utc_at(2025, 1, 1)), utc_at(2025, 1, 2));
}

}  // namespace
}  // namespace ember::timer
