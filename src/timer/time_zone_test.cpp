// SPDX-License-Identifier: Apache-2.0
#include "timer/time_zone.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <optional>
#include <random>
#include <string>

namespace ember::timer {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

sys_seconds utc_at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return sys_days{year{y} / mo / d} + hours{h} + minutes{mi} + seconds{s};
}

local_seconds local_at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return local_days{year{y} / mo / d} + hours{h} + minutes{mi} + seconds{s};
}

TimeZone must_load(std::string_view name) {
  auto zone = TimeZone::load(name);
  EXPECT_TRUE(zone.has_value()) << name << ": " << (zone ? "" : zone.error().to_string());
  return zone ? *zone : TimeZone::utc();
}

// Sets $TZ for one scope, since the "Local" zone and the libc oracle both read it.
class ScopedTz {
 public:
  explicit ScopedTz(const char* value) {
    if (const char* old = std::getenv("TZ"))
      old_ = old;
    if (value != nullptr) {
      ::setenv("TZ", value, 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  ~ScopedTz() {
    if (old_) {
      ::setenv("TZ", old_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  ScopedTz(const ScopedTz&) = delete;
  ScopedTz& operator=(const ScopedTz&) = delete;

 private:
  std::optional<std::string> old_;
};

TEST(TimeZone, UtcAndAliases) {
  for (auto name : {"UTC", "Etc/UTC", "Z"}) {
    auto zone = must_load(name);
    EXPECT_EQ(zone.name(), "UTC");
    EXPECT_EQ(zone.utc_offset(utc_at(2025, 6, 1)), 0s);
    EXPECT_EQ(zone.to_local(utc_at(2025, 6, 1, 12)), local_at(2025, 6, 1, 12));
    EXPECT_EQ(zone.to_sys(local_at(2025, 6, 1, 12)), utc_at(2025, 6, 1, 12));
  }
  EXPECT_EQ(TimeZone::utc().name(), "UTC");
  EXPECT_EQ(TimeZone{}.name(), "UTC");
}

TEST(TimeZone, ShanghaiHasFixedOffset) {
  auto zone = must_load("Asia/Shanghai");
  EXPECT_EQ(zone.name(), "Asia/Shanghai");
  for (auto t : {utc_at(2025, 1, 15), utc_at(2025, 7, 15, 23, 59, 59), utc_at(2100, 3, 1)}) {
    EXPECT_EQ(zone.utc_offset(t), 8h);
    EXPECT_EQ(zone.to_sys(zone.to_local(t)), t);
  }
  EXPECT_EQ(zone.to_local(utc_at(2025, 3, 1, 1, 30)), local_at(2025, 3, 1, 9, 30));
  // China used DST in 1986-1991.
  EXPECT_EQ(zone.utc_offset(utc_at(1988, 7, 1)), 9h);
}

TEST(TimeZone, NewYorkSpringForward) {
  auto zone = must_load("America/New_York");
  const auto jump = utc_at(2025, 3, 9, 7);  // 02:00 EST -> 03:00 EDT
  EXPECT_EQ(zone.utc_offset(jump - 1s), -5h);
  EXPECT_EQ(zone.utc_offset(jump), -4h);
  const auto span = zone.span_at(jump);
  EXPECT_EQ(span.begin, jump);
  EXPECT_EQ(span.end, utc_at(2025, 11, 2, 6));
  EXPECT_EQ(span.offset, -4h);
  EXPECT_EQ(zone.to_local(jump - 1s), local_at(2025, 3, 9, 1, 59, 59));
  EXPECT_EQ(zone.to_local(jump), local_at(2025, 3, 9, 3));
  EXPECT_EQ(zone.to_sys(local_at(2025, 3, 9, 1, 59, 59)), jump - 1s);
  EXPECT_EQ(zone.to_sys(local_at(2025, 3, 9, 3)), jump);
  // Times inside the gap are pushed forward by the gap size.
  EXPECT_EQ(zone.to_sys(local_at(2025, 3, 9, 2)), jump);
  EXPECT_EQ(zone.to_sys(local_at(2025, 3, 9, 2, 30)), jump + 30min);
  EXPECT_EQ(zone.to_sys(local_at(2025, 3, 9, 2, 59, 59)), jump + 59min + 59s);
}

TEST(TimeZone, NewYorkFallBack) {
  auto zone = must_load("America/New_York");
  const auto jump = utc_at(2025, 11, 2, 6);  // 02:00 EDT -> 01:00 EST
  EXPECT_EQ(zone.utc_offset(jump - 1s), -4h);
  EXPECT_EQ(zone.utc_offset(jump), -5h);
  EXPECT_EQ(zone.to_local(jump - 1s), local_at(2025, 11, 2, 1, 59, 59));
  EXPECT_EQ(zone.to_local(jump), local_at(2025, 11, 2, 1));
  // Ambiguous local times resolve to the earlier (EDT) instant.
  EXPECT_EQ(zone.to_sys(local_at(2025, 11, 2, 1)), jump - 1h);
  EXPECT_EQ(zone.to_sys(local_at(2025, 11, 2, 1, 30)), jump - 30min);
  EXPECT_EQ(zone.to_sys(local_at(2025, 11, 2, 0, 59, 59)), jump - 1h - 1s);
  EXPECT_EQ(zone.to_sys(local_at(2025, 11, 2, 2)), jump + 1h);
}

TEST(TimeZone, London) {
  auto zone = must_load("Europe/London");
  EXPECT_EQ(zone.utc_offset(utc_at(2025, 1, 10)), 0s);
  EXPECT_EQ(zone.utc_offset(utc_at(2025, 3, 30, 0, 59, 59)), 0s);
  EXPECT_EQ(zone.utc_offset(utc_at(2025, 3, 30, 1)), 1h);
  EXPECT_EQ(zone.utc_offset(utc_at(2025, 10, 26, 0, 59, 59)), 1h);
  EXPECT_EQ(zone.utc_offset(utc_at(2025, 10, 26, 1)), 0s);
  EXPECT_EQ(zone.to_local(utc_at(2025, 7, 1, 12)), local_at(2025, 7, 1, 13));
  EXPECT_EQ(zone.to_sys(local_at(2025, 3, 30, 1, 15)), utc_at(2025, 3, 30, 1, 15));
  EXPECT_EQ(zone.to_sys(local_at(2025, 10, 26, 1, 15)), utc_at(2025, 10, 26, 0, 15));
}

TEST(TimeZone, FarFutureUsesFooterRule) {
  // 2100 is past the last table entry, so only the POSIX footer knows these (checked with zdump).
  auto ny = must_load("America/New_York");
  EXPECT_EQ(ny.utc_offset(utc_at(2100, 1, 15)), -5h);
  EXPECT_EQ(ny.utc_offset(utc_at(2100, 3, 14, 6, 59, 59)), -5h);
  EXPECT_EQ(ny.utc_offset(utc_at(2100, 3, 14, 7)), -4h);
  EXPECT_EQ(ny.utc_offset(utc_at(2100, 11, 7, 5, 59, 59)), -4h);
  EXPECT_EQ(ny.utc_offset(utc_at(2100, 11, 7, 6)), -5h);
  EXPECT_EQ(ny.to_sys(local_at(2100, 3, 14, 2, 30)), utc_at(2100, 3, 14, 7, 30));
  EXPECT_EQ(ny.to_sys(local_at(2100, 11, 7, 1, 30)), utc_at(2100, 11, 7, 5, 30));
  const auto span = ny.span_at(utc_at(2100, 7, 1));
  EXPECT_EQ(span.begin, utc_at(2100, 3, 14, 7));
  EXPECT_EQ(span.end, utc_at(2100, 11, 7, 6));

  // Southern hemisphere: DST spans the new year.
  auto sydney = must_load("Australia/Sydney");
  EXPECT_EQ(sydney.utc_offset(utc_at(2100, 1, 1)), 11h);
  EXPECT_EQ(sydney.utc_offset(utc_at(2100, 4, 3, 15, 59, 59)), 11h);
  EXPECT_EQ(sydney.utc_offset(utc_at(2100, 4, 3, 16)), 10h);
  EXPECT_EQ(sydney.utc_offset(utc_at(2100, 10, 2, 16)), 11h);
  EXPECT_EQ(sydney.utc_offset(utc_at(2100, 7, 1)), 10h);
}

TEST(TimeZone, PosixRules) {
  auto ny = TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0");
  ASSERT_TRUE(ny) << ny.error().to_string();
  EXPECT_EQ(ny->utc_offset(utc_at(2025, 3, 9, 6, 59, 59)), -5h);
  EXPECT_EQ(ny->utc_offset(utc_at(2025, 3, 9, 7)), -4h);
  EXPECT_EQ(ny->utc_offset(utc_at(1900, 7, 1)), -4h);

  auto india = TimeZone::from_posix("<+0530>-5:30");
  ASSERT_TRUE(india);
  EXPECT_EQ(india->utc_offset(utc_at(2025, 1, 1)), 5h + 30min);

  // Jn skips Feb 29: J60 is always March 1. n counts it: 59 is Feb 29 in leap years.
  auto julian = TimeZone::from_posix("AAA0BBB,J60/0,J305/0");
  ASSERT_TRUE(julian);
  EXPECT_EQ(julian->span_at(utc_at(2024, 6, 1)).begin, utc_at(2024, 3, 1));
  EXPECT_EQ(julian->span_at(utc_at(2025, 6, 1)).begin, utc_at(2025, 3, 1));
  auto zero_based = TimeZone::from_posix("AAA0BBB-1,59/0,300/0");
  ASSERT_TRUE(zero_based);
  EXPECT_EQ(zero_based->span_at(utc_at(2024, 6, 1)).begin, utc_at(2024, 2, 29));
  EXPECT_EQ(zero_based->span_at(utc_at(2025, 6, 1)).begin, utc_at(2025, 3, 1));
  EXPECT_EQ(zero_based->utc_offset(utc_at(2025, 6, 1)), 1h);

  for (auto bad : {"", "5", "EST", "EST5EDT,M13.1.0,M11.1.0", "EST5EDT,M3.2.0",
                   "EST5EDT,M3.2.0,M11.1.0x", "<EST5"}) {
    auto zone = TimeZone::from_posix(bad);
    ASSERT_FALSE(zone) << bad;
    EXPECT_EQ(zone.error().code(), Errc::invalid_argument);
  }
}

TEST(TimeZone, BadNames) {
  for (auto bad : {"", "../etc/passwd", "Asia/../../etc/passwd", "/etc/localtime",
                   "/usr/share/zoneinfo/UTC"}) {
    auto zone = TimeZone::load(bad);
    ASSERT_FALSE(zone) << bad;
    EXPECT_EQ(zone.error().code(), Errc::invalid_argument) << bad;
  }
  auto missing = TimeZone::load("Mars/Olympus_Mons");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::not_found);
  EXPECT_NE(missing.error().message().find("Mars/Olympus_Mons"), std::string::npos);

  auto directory = TimeZone::load("America");
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code(), Errc::not_found);

  // A regular file that is not TZif.
  auto text = TimeZone::load("zone.tab");
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().code(), Errc::invalid_argument);
}

TEST(TimeZone, LocalFollowsTzVariable) {
  {
    ScopedTz tz("Asia/Shanghai");
    auto zone = must_load("Local");
    EXPECT_EQ(zone.name(), "Asia/Shanghai");
    EXPECT_EQ(zone.utc_offset(utc_at(2025, 6, 1)), 8h);
  }
  {
    ScopedTz tz(":Europe/London");
    EXPECT_EQ(must_load("Local").utc_offset(utc_at(2025, 7, 1)), 1h);
  }
  {
    ScopedTz tz("<+0530>-5:30");  // not a file: read as a POSIX rule
    EXPECT_EQ(must_load("Local").utc_offset(utc_at(2025, 7, 1)), 5h + 30min);
  }
  {
    ScopedTz tz(nullptr);
    auto zone = TimeZone::load("Local");
    EXPECT_TRUE(zone);  // /etc/localtime, or UTC when the machine has none
  }
}

TEST(TimeZone, CopiesShareData) {
  auto zone = must_load("Europe/London");
  TimeZone copy = zone;
  EXPECT_EQ(&copy.name(), &zone.name());
  copy = TimeZone::utc();
  EXPECT_EQ(zone.name(), "Europe/London");
  EXPECT_EQ(copy.name(), "UTC");
}

TEST(TimeZone, RoundTripsEveryHourAcrossTransitions) {
  auto zone = must_load("America/New_York");
  for (auto t = utc_at(2024, 1, 1); t < utc_at(2026, 1, 1); t += 1h) {
    const auto local = zone.to_local(t);
    const auto back = zone.to_sys(local);
    // Only the second pass through a fold maps back to a different (earlier) instant.
    if (back != t) {
      EXPECT_EQ(back, t - 1h);
      EXPECT_EQ(zone.utc_offset(t), -5h);
      EXPECT_EQ(zone.utc_offset(back), -4h);
    }
  }
}

// glibc reads the same files, so it is an independent check of offsets over many years.
TEST(TimeZone, MatchesLibcOffsets) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> when(utc_at(1900, 1, 1).time_since_epoch().count(),
                                                   utc_at(2300, 1, 1).time_since_epoch().count());
  for (auto name : {"America/New_York", "Europe/London", "Australia/Sydney", "Asia/Shanghai",
                    "America/Sao_Paulo", "Pacific/Apia", "Europe/Dublin", "Africa/Casablanca",
                    "America/Santiago", "Asia/Tehran", "Pacific/Chatham"}) {
    auto zone = must_load(name);
    ScopedTz tz((std::string(":") + name).c_str());
    for (int i = 0; i < 2000; ++i) {
      const sys_seconds t{seconds{when(rng)}};
      const std::time_t raw = t.time_since_epoch().count();
      std::tm tm{};
      ASSERT_NE(::localtime_r(&raw, &tm), nullptr);
      ASSERT_EQ(zone.utc_offset(t), seconds{tm.tm_gmtoff}) << name << " at " << raw;
    }
  }
}

}  // namespace
}  // namespace ember::timer
