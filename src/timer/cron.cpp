// SPDX-License-Identifier: Apache-2.0
#include "timer/cron.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <limits>
#include <span>
#include <vector>

namespace ember::timer {

using namespace std::chrono;

namespace {

// Schedules that can never fire (Feb 30) must not search forever. The price: a Feb 29 schedule
// sees nothing across the 2096-2104 stretch without a leap day.
constexpr seconds kHorizon = duration_cast<seconds>(years{5});

constexpr std::array<std::string_view, 12> kMonthNames{"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames{"SUN", "MON", "TUE", "WED",
                                                    "THU", "FRI", "SAT"};

struct FieldDef {
  std::string_view name;
  int lo;
  int hi;
  std::span<const std::string_view> names;  // names[i] means lo + i
  bool allows_question;
};

// Day-of-week accepts 7 for Sunday; it is folded onto 0 after expansion.
const std::array<FieldDef, 6> kFields{{
    {"second", 0, 59, {}, false},
    {"minute", 0, 59, {}, false},
    {"hour", 0, 23, {}, false},
    {"day-of-month", 1, 31, {}, true},
    {"month", 1, 12, kMonthNames, false},
    {"day-of-week", 0, 7, kDayNames, true},
}};

struct Descriptor {
  std::string_view name;
  std::string_view fields;
};

constexpr std::array<Descriptor, 7> kDescriptors{{
    {"@yearly", "0 0 0 1 1 *"},
    {"@annually", "0 0 0 1 1 *"},
    {"@monthly", "0 0 0 1 * *"},
    {"@weekly", "0 0 0 * * 0"},
    {"@daily", "0 0 0 * * *"},
    {"@midnight", "0 0 0 * * *"},
    {"@hourly", "0 0 * * * *"},
}};

Error invalid(std::string message) {
  return Error{Errc::invalid_argument, std::move(message)};
}

Error field_error(const FieldDef& def, std::string_view token, std::string_view why) {
  return invalid("cron " + std::string(def.name) + " field: " + std::string(why) + " in '" +
                 std::string(token) + "'");
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const auto at = text.find(separator, start);
    parts.push_back(
        text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos)
      return parts;
    start = at + 1;
  }
}

std::vector<std::string_view> split_whitespace(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const auto start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start)
      words.push_back(text.substr(start, i - start));
  }
  return words;
}

// Digits only; the length cap keeps the value far from overflow.
std::optional<int> parse_int(std::string_view text) {
  if (text.empty() || text.size() > 6)
    return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

Result<int> parse_value(const FieldDef& def, std::string_view text, std::string_view token) {
  if (text.empty())
    return field_error(def, token, "missing value");
  if (auto number = parse_int(text)) {
    if (*number < def.lo || *number > def.hi) {
      return field_error(def, token,
                         "value " + std::string(text) + " out of range " + std::to_string(def.lo) +
                             "-" + std::to_string(def.hi));
    }
    return *number;
  }
  for (std::size_t i = 0; i < def.names.size(); ++i) {
    if (iequals(text, def.names[i]))
      return def.lo + static_cast<int>(i);
  }
  return field_error(def, token, "unknown value '" + std::string(text) + "'");
}

struct ParsedField {
  std::uint64_t bits = 0;
  bool any = false;  // exactly "*" or "?"
};

Result<ParsedField> parse_field(const FieldDef& def, std::string_view text) {
  ParsedField field;
  field.any = text == "*" || (def.allows_question && text == "?");
  for (auto part : split(text, ',')) {
    if (part.empty())
      return field_error(def, text, "empty list item");
    const auto slash = part.find('/');
    const auto base = part.substr(0, slash);
    int step = 1;
    if (slash != std::string_view::npos) {
      const auto step_text = part.substr(slash + 1);
      const auto parsed = parse_int(step_text);
      if (!parsed)
        return field_error(def, part, "bad step '" + std::string(step_text) + "'");
      if (*parsed == 0)
        return field_error(def, part, "step must be positive");
      step = *parsed;
    }
    int first = def.lo;
    // "*" for day-of-week means 0-6: 7 would only repeat Sunday.
    int last = def.name == "day-of-week" ? 6 : def.hi;
    if (base == "*" || base == "?") {
      if (base == "?" && !def.allows_question)
        return field_error(def, part, "'?' not allowed");
    } else if (const auto dash = base.find('-'); dash != std::string_view::npos) {
      auto a = parse_value(def, base.substr(0, dash), part);
      if (!a)
        return std::move(a).error();
      auto b = parse_value(def, base.substr(dash + 1), part);
      if (!b)
        return std::move(b).error();
      if (*a > *b)
        return field_error(def, part, "range start is after its end");
      first = *a;
      last = *b;
    } else {
      auto a = parse_value(def, base, part);
      if (!a)
        return std::move(a).error();
      first = *a;
      // "a/n" runs from a to the field's maximum; a bare value is just itself.
      last = slash == std::string_view::npos ? *a : last;
    }
    for (int v = first; v <= last; v += step) field.bits |= std::uint64_t{1} << v;
  }
  if (def.name == "day-of-week" && (field.bits >> 7 & 1) != 0)
    field.bits = (field.bits & 0x7f) | 1;
  return field;
}

// Go's time.ParseDuration grammar: one or more "<decimal><unit>", e.g. "1h30m", "1.5s", "500ms".
Result<nanoseconds> parse_duration(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return invalid("cron @every: bad duration '" + std::string(text) + "': " + std::string(why));
  };
  struct Unit {
    std::string_view suffix;
    std::int64_t ns;
  };
  // Longest suffixes first so "ms" is not read as "m".
  constexpr std::array<Unit, 8> kUnits{{{"ns", 1},
                                        {"us", 1'000},
                                        {"\xC2\xB5s", 1'000},  // U+00B5 micro sign
                                        {"\xCE\xBCs", 1'000},  // U+03BC Greek mu
                                        {"ms", 1'000'000},
                                        {"h", 3'600'000'000'000},
                                        {"m", 60'000'000'000},
                                        {"s", 1'000'000'000}}};
  if (text.empty())
    return bad("empty");
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::int64_t whole = 0;
    const auto digits_start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (whole > (kMax - 9) / 10)
        return bad("too large");
      whole = whole * 10 + (text[i++] - '0');
    }
    bool has_digits = i > digits_start;
    std::int64_t fraction = 0;
    std::int64_t scale = 1;
    if (i < text.size() && text[i] == '.') {
      ++i;
      const auto fraction_start = i;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        // Digits past nanosecond precision of an hour cannot change the result.
        if (scale < 1'000'000'000'000'000) {
          fraction = fraction * 10 + (text[i] - '0');
          scale *= 10;
        }
        ++i;
      }
      has_digits = has_digits || i > fraction_start;
    }
    if (!has_digits)
      return bad("expected a number");
    const Unit* unit = nullptr;
    for (const auto& u : kUnits) {
      if (text.substr(i, u.suffix.size()) == u.suffix) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr)
      return bad("missing or unknown unit (use ns, us, ms, s, m or h)");
    i += unit->suffix.size();
    if (whole > kMax / unit->ns)
      return bad("too large");
    const auto fraction_ns =
        static_cast<std::int64_t>(static_cast<long double>(fraction) * unit->ns / scale);
    // The whole units fit, but the fraction on top may not ("2562047.9h").
    if (whole * unit->ns > kMax - fraction_ns)
      return bad("too large");
    const auto part = whole * unit->ns + fraction_ns;
    if (total > kMax - part)
      return bad("too large");
    total += part;
  }
  if (total <= 0)
    return bad("must be positive");
  return nanoseconds{total};
}

int next_bit(std::uint64_t mask, int from) {
  const auto rest = mask >> from;
  return rest == 0 ? -1 : from + std::countr_zero(rest);
}

local_seconds as_local(sys_seconds t, seconds offset) {
  return local_seconds{t.time_since_epoch() + offset};
}

sys_seconds as_sys(local_seconds t, seconds offset) {
  return sys_seconds{t.time_since_epoch() - offset};
}

}  // namespace

Result<CronSchedule> CronSchedule::parse(std::string_view spec, const TimeZone& default_zone) {
  CronSchedule schedule;
  schedule.spec_ = std::string(spec);
  schedule.zone_ = default_zone;
  auto words = split_whitespace(spec);
  if (words.empty())
    return invalid("empty cron spec");

  for (std::string_view prefix : {"TZ=", "CRON_TZ="}) {
    if (words.front().substr(0, prefix.size()) != prefix)
      continue;
    const auto name = words.front().substr(prefix.size());
    auto zone = TimeZone::load(name);
    if (!zone) {
      return invalid("cron spec '" + schedule.spec_ + "': unknown time zone '" + std::string(name) +
                     "' (" + zone.error().message() + ")");
    }
    schedule.zone_ = *zone;
    words.erase(words.begin());
    if (words.empty())
      return invalid("cron spec '" + schedule.spec_ + "' has a time zone but no schedule");
    break;
  }

  if (words.front().front() == '@') {
    const auto descriptor = words.front();
    if (iequals(descriptor, "@every")) {
      if (words.size() != 2) {
        return invalid("cron @every needs exactly one duration, e.g. '@every 1h30m', in '" +
                       schedule.spec_ + "'");
      }
      auto interval = parse_duration(words[1]);
      if (!interval)
        return std::move(interval).error();
      schedule.interval_ = *interval;
      return schedule;
    }
    const auto* found =
        std::find_if(kDescriptors.begin(), kDescriptors.end(),
                     [&](const Descriptor& d) { return iequals(d.name, descriptor); });
    if (found == kDescriptors.end()) {
      return invalid("unknown cron descriptor '" + std::string(descriptor) + "'");
    }
    if (words.size() != 1) {
      return invalid("cron descriptor '" + std::string(descriptor) + "' takes no fields, in '" +
                     schedule.spec_ + "'");
    }
    words = split_whitespace(found->fields);
  }

  if (words.size() == 5) {
    return invalid("cron spec '" + schedule.spec_ +
                   "' has 5 fields, but seconds are required: use 'sec min hour day-of-month "
                   "month day-of-week' (e.g. prefix the spec with '0 ')");
  }
  if (words.size() != kFields.size()) {
    return invalid("cron spec '" + schedule.spec_ + "' has " + std::to_string(words.size()) +
                   " fields; expected 6: sec min hour day-of-month month day-of-week");
  }
  std::array<ParsedField, 6> fields;
  for (std::size_t i = 0; i < kFields.size(); ++i) {
    auto field = parse_field(kFields[i], words[i]);
    if (!field)
      return std::move(field).error();
    fields[i] = *field;
  }
  schedule.seconds_ = fields[0].bits;
  schedule.minutes_ = fields[1].bits;
  schedule.hours_ = static_cast<std::uint32_t>(fields[2].bits);
  schedule.days_of_month_ = static_cast<std::uint32_t>(fields[3].bits);
  schedule.dom_any_ = fields[3].any;
  schedule.months_ = static_cast<std::uint16_t>(fields[4].bits);
  schedule.days_of_week_ = static_cast<std::uint8_t>(fields[5].bits);
  schedule.dow_any_ = fields[5].any;
  return schedule;
}

std::optional<nanoseconds> CronSchedule::interval() const {
  if (interval_ > nanoseconds::zero())
    return interval_;
  return std::nullopt;
}

bool CronSchedule::day_matches(local_days day) const {
  const year_month_day ymd{day};
  const bool dom = (days_of_month_ >> static_cast<unsigned>(ymd.day()) & 1) != 0;
  const bool dow = (days_of_week_ >> weekday{day}.c_encoding() & 1) != 0;
  // Classic cron: two restricted day fields widen the schedule instead of narrowing it.
  if (dom_any_ || dow_any_)
    return dom && dow;
  return dom || dow;
}

std::optional<local_seconds> CronSchedule::first_match(local_seconds from,
                                                       local_seconds limit) const {
  // Each step jumps to the start of the next candidate month, day, hour, minute or second, so
  // a search costs at most a few hundred steps per year.
  auto t = from;
  while (t < limit) {
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    if ((months_ >> static_cast<unsigned>(ymd.month()) & 1) == 0) {
      t = local_days{(year_month{ymd.year(), ymd.month()} + months{1}) / 1};
      continue;
    }
    if (!day_matches(day)) {
      t = day + days{1};
      continue;
    }
    const auto of_day = (t - day).count();
    const int h = static_cast<int>(of_day / 3600);
    const int m = static_cast<int>(of_day / 60 % 60);
    const int s = static_cast<int>(of_day % 60);
    const int next_h = next_bit(hours_, h);
    if (next_h != h) {
      t = next_h < 0 ? day + days{1} : day + hours{next_h};
      continue;
    }
    const int next_m = next_bit(minutes_, m);
    if (next_m != m) {
      t = next_m < 0 ? day + hours{h + 1} : day + hours{h} + minutes{next_m};
      continue;
    }
    const int next_s = next_bit(seconds_, s);
    if (next_s < 0) {
      t = day + hours{h} + minutes{m + 1};
      continue;
    }
    t = day + hours{h} + minutes{m} + seconds{next_s};
    if (t < limit)
      return t;
  }
  return std::nullopt;
}

void CronSchedule::gap_fires(sys_seconds jump, seconds before, seconds after, sys_seconds from,
                             sys_seconds horizon, std::optional<sys_seconds>& best) const {
  // Wall times in [jump + before, jump + after) never show on the clock. Reading them with the
  // old offset lands them just past the jump, which is where TimeZone::to_sys puts them too.
  auto limit = std::min(as_local(jump, after), as_local(horizon, before));
  if (best)
    limit = std::min(limit, as_local(*best, before));
  const auto lo = std::max(as_local(jump, before), as_local(from, before));
  if (lo >= limit)
    return;
  if (auto wall = first_match(lo, limit)) {
    const auto fire = as_sys(*wall, before);
    if (!best || fire < *best)
      best = fire;
  }
}

std::optional<CronSchedule::TimePoint> CronSchedule::next(TimePoint after) const {
  if (interval_ > nanoseconds::zero()) {
    const auto step = duration_cast<TimePoint::duration>(interval_);
    if (after > TimePoint::max() - step)
      return std::nullopt;
    return after + step;
  }
  const sys_seconds from = floor<seconds>(after) + seconds{1};
  const sys_seconds horizon = std::min(from + kHorizon, TimeZone::kMaxTime);
  std::optional<sys_seconds> best;

  // Walk the zone's spans of constant offset. Inside a span, wall time and UTC move together,
  // so the first matching wall time there is the span's earliest fire.
  auto span = zone_.span_at(from);
  auto previous = zone_.span_at(span.begin - seconds{1});
  // A gap that closed shortly before `from` may still owe fires (they land after the jump).
  if (previous.offset < span.offset)
    gap_fires(span.begin, previous.offset, span.offset, from, horizon, best);
  auto start = from;
  while (!best || start < *best) {
    auto lo = as_local(start, span.offset);
    // After a fold, wall times repeated from the previous span already fired there.
    if (previous.offset > span.offset)
      lo = std::max(lo, as_local(span.begin, previous.offset));
    auto end = std::min(span.end, horizon);
    if (best)
      end = std::min(end, *best);
    const auto limit = as_local(end, span.offset);
    if (lo < limit) {
      if (auto wall = first_match(lo, limit)) {
        best = as_sys(*wall, span.offset);
        break;
      }
    }
    if (span.end >= horizon)
      break;
    const auto following = zone_.span_at(span.end);
    if (following.offset > span.offset) {
      gap_fires(span.end, span.offset, following.offset, span.end, horizon, best);
    }
    previous = span;
    span = following;
    start = span.begin;
  }
  if (!best || *best >= horizon)
    return std::nullopt;
  if (*best > floor<seconds>(TimePoint::max()))
    return std::nullopt;
  return TimePoint{duration_cast<TimePoint::duration>(best->time_since_epoch())};
}

}  // namespace ember::timer
