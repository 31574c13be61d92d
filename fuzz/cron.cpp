// SPDX-License-Identifier: Apache-2.0
// Cron specs: parsing, then next() from a few instants in zones with and without DST. next() must
// terminate, move forward, and agree with itself from any instant before the fire it found.
#include "timer/cron.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

using namespace std::chrono;
using ember::timer::CronSchedule;
using ember::timer::TimeZone;

void check(bool ok, const char* what, std::string_view spec) {
  if (!ok) {
    std::fprintf(stderr, "cron fuzzer: %s for '%.*s'\n", what, static_cast<int>(spec.size()),
                 spec.data());
    std::abort();
  }
}

TimeZone zone_or_utc(std::string_view name) {
  auto zone = TimeZone::load(name);
  return zone ? *zone : TimeZone::utc();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // UTC, a zone with a one-hour DST shift, and one with a half-hour shift (Lord Howe).
  static const std::array<TimeZone, 3> kZones{TimeZone::utc(), zone_or_utc("America/New_York"),
                                              zone_or_utc("Australia/Lord_Howe")};
  // The epoch, a spring-forward and a fall-back night in New York, and the far end of the clock.
  static const std::array<CronSchedule::TimePoint, 4> kFrom{
      CronSchedule::TimePoint{},
      sys_days{2024y / 3 / 10} + 6h + 59min + 59s,
      sys_days{2024y / 11 / 3} + 5h + 30min,
      CronSchedule::TimePoint::max() - hours{24 * 400},
  };

  const std::string_view spec(reinterpret_cast<const char*>(data), size);
  const TimeZone& zone = kZones[size % kZones.size()];
  auto schedule = CronSchedule::parse(spec, zone);
  if (!schedule) {
    check(schedule.error().code() == ember::Errc::invalid_argument, "unexpected error code", spec);
    return 0;
  }
  const bool every = schedule->interval().has_value();
  check(!every || *schedule->interval() > nanoseconds::zero(), "non-positive interval", spec);
  for (const auto& from : kFrom) {
    auto after = from;
    for (int i = 0; i < 3; ++i) {
      const auto next = schedule->next(after);
      if (!next)
        break;
      check(*next > after, "next() did not move forward", spec);
      if (every) {
        check(*next - after ==
                  duration_cast<CronSchedule::TimePoint::duration>(*schedule->interval()),
              "@every fired off its interval", spec);
      } else {
        check(floor<seconds>(*next) == *next, "fire time not a whole second", spec);
        // Nothing fires in (after, next), so from any instant in between the answer is the same.
        const auto just_before = *next - seconds{1};
        if (just_before > after) {
          const auto again = schedule->next(just_before);
          check(again && *again == *next, "next() disagrees with itself", spec);
        }
      }
      after = *next;
    }
  }
  return 0;
}
