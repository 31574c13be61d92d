// SPDX-License-Identifier: Apache-2.0
#include "timer/time_zone.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <vector>

namespace ember::timer {

using std::chrono::days;
using std::chrono::local_seconds;
using std::chrono::seconds;
using std::chrono::sys_days;
using std::chrono::sys_seconds;

namespace {

constexpr std::string_view kZoneDir = "/usr/share/zoneinfo/";
// Real offsets stay within about +-15.5 h; anything past a day means a corrupt file, and the
// bound lets to_sys() look only a couple of days around a local time.
constexpr std::int64_t kMaxOffset = std::int64_t{26} * 3600;
// POSIX default for a rule without "/time": 02:00 local.
constexpr std::int64_t kDefaultRuleTime = std::int64_t{2} * 3600;
// Zone files are a few KiB; the cap keeps a wrong path (say a device node) from eating memory.
constexpr std::uintmax_t kMaxZoneFileSize = 1 << 20;

/// A day selector of a POSIX TZ rule: "Jn", "n" or "Mm.w.d".
struct RuleDate {
  enum class Kind : std::uint8_t { julian_no_leap, zero_based, month_week_day };
  Kind kind = Kind::month_week_day;
  int n = 0;  // Jn / n
  int month = 0;
  int week = 0;     // 1..5, 5 = last
  int weekday = 0;  // 0 = Sunday
  std::int64_t time =
      kDefaultRuleTime;  // local wall-clock seconds after midnight; may be <0 or >24h
};

struct PosixRule {
  std::int64_t std_offset = 0;  // east-positive, unlike the POSIX text
  std::int64_t dst_offset = 0;
  bool has_dst = false;
  RuleDate start;
  RuleDate end;
};

class PosixParser {
 public:
  explicit PosixParser(std::string_view text) : text_(text) {}

  std::optional<PosixRule> parse() {
    PosixRule rule;
    std::int64_t value = 0;
    if (!abbreviation() || !hms(24, value))
      return std::nullopt;
    rule.std_offset = -value;
    if (done())
      return rule;
    if (!abbreviation())
      return std::nullopt;
    rule.has_dst = true;
    rule.dst_offset = rule.std_offset + 3600;
    if (!done() && peek() != ',') {
      if (!hms(24, value))
        return std::nullopt;
      rule.dst_offset = -value;
    }
    if (done()) {
      // POSIX leaves the rule implementation-defined; glibc and tzcode use the US rule.
      rule.start = RuleDate{RuleDate::Kind::month_week_day, 0, 3, 2, 0, kDefaultRuleTime};
      rule.end = RuleDate{RuleDate::Kind::month_week_day, 0, 11, 1, 0, kDefaultRuleTime};
      return rule;
    }
    if (!eat(',') || !date(rule.start) || !eat(',') || !date(rule.end) || !done()) {
      return std::nullopt;
    }
    if (rule.dst_offset == rule.std_offset)
      rule.has_dst = false;
    return rule;
  }

 private:
  [[nodiscard]] bool done() const { return pos_ >= text_.size(); }
  [[nodiscard]] char peek() const { return done() ? '\0' : text_[pos_]; }
  bool eat(char c) {
    if (peek() != c)
      return false;
    ++pos_;
    return true;
  }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

  bool abbreviation() {
    if (eat('<')) {
      const auto close = text_.find('>', pos_);
      if (close == std::string_view::npos || close == pos_)
        return false;
      pos_ = close + 1;
      return true;
    }
    const auto start = pos_;
    while (is_alpha(peek())) ++pos_;
    return pos_ > start;
  }

  bool number(int lo, int hi, int& out) {
    if (!is_digit(peek()))
      return false;
    long value = 0;
    while (is_digit(peek())) {
      value = value * 10 + (text_[pos_++] - '0');
      if (value > hi)
        return false;
    }
    if (value < lo)
      return false;
    out = static_cast<int>(value);
    return true;
  }

  // [+-]hh[:mm[:ss]]
  bool hms(int max_hours, std::int64_t& out) {
    int sign = 1;
    if (eat('-')) {
      sign = -1;
    } else {
      eat('+');
    }
    int h = 0;
    int m = 0;
    int s = 0;
    if (!number(0, max_hours, h))
      return false;
    if (eat(':')) {
      if (!number(0, 59, m))
        return false;
      if (eat(':') && !number(0, 59, s))
        return false;
    }
    out = sign * (static_cast<std::int64_t>(h) * 3600 + std::int64_t{m} * 60 + s);
    return true;
  }

  bool date(RuleDate& out) {
    if (eat('J')) {
      out.kind = RuleDate::Kind::julian_no_leap;
      if (!number(1, 365, out.n))
        return false;
    } else if (eat('M')) {
      out.kind = RuleDate::Kind::month_week_day;
      if (!number(1, 12, out.month) || !eat('.') || !number(1, 5, out.week) || !eat('.') ||
          !number(0, 6, out.weekday)) {
        return false;
      }
    } else {
      out.kind = RuleDate::Kind::zero_based;
      if (!number(0, 365, out.n))
        return false;
    }
    out.time = kDefaultRuleTime;
    // RFC 8536 extends the POSIX 0..24 h range to -167..167 h.
    if (eat('/') && !hms(167, out.time))
      return false;
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

sys_days rule_day(const RuleDate& r, int y) {
  using namespace std::chrono;
  const year yy{y};
  switch (r.kind) {
    case RuleDate::Kind::julian_no_leap: {
      // Jn never counts Feb 29, so from March on a leap year is one day later.
      auto d = sys_days{yy / January / 1} + days{r.n - 1};
      if (yy.is_leap() && r.n >= 60)
        d += days{1};
      return d;
    }
    case RuleDate::Kind::zero_based: return sys_days{yy / January / 1} + days{r.n};
    case RuleDate::Kind::month_week_day: break;
  }
  const auto mon = month{static_cast<unsigned>(r.month)};
  const sys_days first{yy / mon / 1};
  const int first_wd = static_cast<int>(weekday{first}.c_encoding());
  auto d = first + days{(r.weekday - first_wd + 7) % 7 + 7 * (r.week - 1)};
  const sys_days last{yy / mon / std::chrono::last};
  while (d > last) d -= days{7};
  return d;
}

int year_of(sys_seconds t) {
  return static_cast<int>(std::chrono::year_month_day{std::chrono::floor<days>(t)}.year());
}

sys_seconds clamp_time(sys_seconds t) {
  return std::clamp(t, TimeZone::kMinTime, TimeZone::kMaxTime - seconds{1});
}

/// Span from the footer rule, for instants at or after `floor` (the last table transition).
TimeZone::Span rule_span(const PosixRule& rule, sys_seconds t, sys_seconds floor) {
  if (!rule.has_dst)
    return {floor, TimeZone::kMaxTime, seconds{rule.std_offset}};
  // Two transitions a year; two years either side always bracket t, whatever the hemisphere.
  std::array<std::pair<sys_seconds, std::int64_t>, 10> changes{};
  const int y = year_of(t);
  std::size_t count = 0;
  for (int yy = y - 2; yy <= y + 2; ++yy) {
    // Start times are written in standard time, end times in daylight time.
    const auto start =
        sys_seconds{rule_day(rule.start, yy)} + seconds{rule.start.time - rule.std_offset};
    const auto end = sys_seconds{rule_day(rule.end, yy)} + seconds{rule.end.time - rule.dst_offset};
    changes[count++] = {start, rule.dst_offset};
    changes[count++] = {end, rule.std_offset};
  }
  std::sort(changes.begin(), changes.end());
  TimeZone::Span span{
      floor, TimeZone::kMaxTime,
      seconds{changes.front().second == rule.dst_offset ? rule.std_offset : rule.dst_offset}};
  std::size_t i = 0;
  for (; i < changes.size() && changes[i].first <= t; ++i) {
    span.begin = std::max(floor, changes[i].first);
    span.offset = seconds{changes[i].second};
  }
  for (; i < changes.size(); ++i) {
    if (seconds{changes[i].second} != span.offset) {
      span.end = std::min(changes[i].first, TimeZone::kMaxTime);
      break;
    }
  }
  return span;
}

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}

  bool skip(std::uint64_t n) {
    if (n > bytes_.size() - pos_)
      return false;
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool bytes(std::size_t n, std::string_view& out) {
    if (n > bytes_.size() - pos_)
      return false;
    out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // Big-endian two's complement, 1, 4 or 8 bytes wide.
  bool integer(std::size_t width, bool is_signed, std::int64_t& out) {
    std::string_view raw;
    if (!bytes(width, raw))
      return false;
    std::uint64_t value = 0;
    for (char c : raw) value = (value << 8) | static_cast<unsigned char>(c);
    if (is_signed && width < 8 && (value >> (width * 8 - 1)) != 0) {
      value |= ~std::uint64_t{0} << (width * 8);
    }
    out = static_cast<std::int64_t>(value);
    return true;
  }
  [[nodiscard]] std::string_view rest() const { return bytes_.substr(pos_); }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

struct TzifHeader {
  char version = 0;
  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  std::array<std::uint64_t, 6> counts{};
  [[nodiscard]] std::uint64_t timecnt() const { return counts[3]; }
  [[nodiscard]] std::uint64_t typecnt() const { return counts[4]; }
  [[nodiscard]] std::uint64_t block_size(std::uint64_t time_size) const {
    return timecnt() * time_size + timecnt() + typecnt() * 6 + counts[5] +
           counts[2] * (time_size + 4) + counts[1] + counts[0];
  }
};

bool read_header(ByteReader& in, TzifHeader& h) {
  std::string_view magic;
  std::string_view version;
  if (!in.bytes(4, magic) || magic != "TZif" || !in.bytes(1, version) || !in.skip(15))
    return false;
  h.version = version[0];
  for (auto& c : h.counts) {
    std::int64_t v = 0;
    if (!in.integer(4, false, v))
      return false;
    c = static_cast<std::uint64_t>(v);
  }
  return true;
}

Error corrupt(std::string_view name, std::string_view why) {
  return Error{Errc::invalid_argument,
               "time zone '" + std::string(name) + "': bad TZif data (" + std::string(why) + ")"};
}

}  // namespace

struct TimeZone::Data {
  std::string name;
  std::int64_t initial_offset = 0;
  // Only instants where the offset really changes; abbreviation-only changes are dropped so
  // every span boundary is a gap or a fold.
  std::vector<std::int64_t> times;
  std::vector<std::int64_t> offsets;  // offset in effect from times[i]
  std::optional<PosixRule> rule;      // for instants after the last transition
};

namespace {

Result<std::shared_ptr<const TimeZone::Data>> parse_tzif(std::string_view bytes, std::string name) {
  ByteReader in(bytes);
  TzifHeader header;
  if (!read_header(in, header))
    return corrupt(name, "missing TZif header");
  std::uint64_t time_size = 4;
  const bool v2 = header.version >= '2';
  if (v2) {
    // The 32-bit block cannot represent instants past 2038; skip to the 64-bit one.
    if (!in.skip(header.block_size(4)) || !read_header(in, header)) {
      return corrupt(name, "truncated v1 block");
    }
    time_size = 8;
  }
  if (header.typecnt() == 0 || header.typecnt() > 256)
    return corrupt(name, "bad type count");
  if (header.block_size(time_size) > in.rest().size())
    return corrupt(name, "truncated data");

  std::vector<std::int64_t> times(header.timecnt());
  for (auto& t : times) (void)in.integer(time_size, true, t);
  std::vector<std::int64_t> type_index(header.timecnt());
  for (auto& i : type_index) (void)in.integer(1, false, i);
  std::vector<std::int64_t> type_offset(header.typecnt());
  for (auto& off : type_offset) {
    (void)in.integer(4, true, off);
    (void)in.skip(2);  // isdst, abbreviation index: not needed for offsets
    if (off <= -kMaxOffset || off >= kMaxOffset)
      return corrupt(name, "offset out of range");
  }
  (void)in.skip(header.block_size(time_size) - header.timecnt() * (time_size + 1) -
                header.typecnt() * 6);

  auto data = std::make_shared<TimeZone::Data>();
  data->name = std::move(name);
  data->initial_offset = type_offset[0];
  const auto min = TimeZone::kMinTime.time_since_epoch().count();
  const auto max = TimeZone::kMaxTime.time_since_epoch().count();
  for (std::size_t i = 0; i < times.size(); ++i) {
    if (type_index[i] >= static_cast<std::int64_t>(type_offset.size())) {
      return corrupt(data->name, "type index out of range");
    }
    if (i > 0 && times[i] <= times[i - 1])
      return corrupt(data->name, "unsorted transitions");
    const auto offset = type_offset[static_cast<std::size_t>(type_index[i])];
    if (times[i] <= min) {
      // tzdata's "big bang" entry: it only says what applies before everything else.
      data->initial_offset = offset;
      continue;
    }
    if (times[i] >= max)
      break;
    const auto current = data->offsets.empty() ? data->initial_offset : data->offsets.back();
    if (offset == current)
      continue;
    data->times.push_back(times[i]);
    data->offsets.push_back(offset);
  }

  if (v2) {
    std::string_view rest = in.rest();
    if (rest.size() >= 2 && rest[0] == '\n') {
      const auto close = rest.find('\n', 1);
      if (close == std::string_view::npos)
        return corrupt(data->name, "unterminated footer");
      const auto footer = rest.substr(1, close - 1);
      if (!footer.empty()) {
        data->rule = PosixParser(footer).parse();
        if (!data->rule)
          return corrupt(data->name, "unsupported footer '" + std::string(footer) + "'");
      }
    }
  }
  return std::shared_ptr<const TimeZone::Data>(std::move(data));
}

using DataPtr = std::shared_ptr<const TimeZone::Data>;

Result<DataPtr> load_file(const std::filesystem::path& path, std::string name) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Error{Errc::not_found,
                 "unknown time zone '" + name + "' (no file " + path.string() + ")"};
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxZoneFileSize) {
    return Error{Errc::io_error, "cannot read time zone file " + path.string()};
  }
  std::ifstream file(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (!file.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    return Error{Errc::io_error, "cannot read time zone file " + path.string()};
  }
  return parse_tzif(bytes, std::move(name));
}

bool is_utc_alias(std::string_view name) {
  return name == "UTC" || name == "Etc/UTC" || name == "Z";
}

// "/usr/share/zoneinfo/Asia/Shanghai" -> "Asia/Shanghai", so name() is loadable again.
std::string zone_name_from_path(const std::string& path, std::string fallback) {
  constexpr std::string_view kMarker = "zoneinfo/";
  const auto at = path.rfind(kMarker);
  if (at == std::string::npos || at + kMarker.size() >= path.size())
    return fallback;
  return path.substr(at + kMarker.size());
}

}  // namespace

TimeZone::TimeZone() : data_(utc().data_) {}

TimeZone TimeZone::utc() {
  static const DataPtr kUtc = [] {
    auto data = std::make_shared<Data>();
    data->name = "UTC";
    return data;
  }();
  return TimeZone(kUtc);
}

Result<TimeZone> TimeZone::from_posix(std::string_view tz_string) {
  auto rule = PosixParser(tz_string).parse();
  if (!rule) {
    return Error{Errc::invalid_argument, "bad POSIX TZ string '" + std::string(tz_string) + "'"};
  }
  auto data = std::make_shared<Data>();
  data->name = std::string(tz_string);
  data->initial_offset = rule->std_offset;
  data->rule = rule;
  return TimeZone(std::move(data));
}

Result<TimeZone> TimeZone::load(std::string_view name) {
  if (is_utc_alias(name))
    return utc();
  if (name == "Local") {
    // $TZ wins like in libc; a value that names nothing loadable falls through to /etc/localtime.
    if (const char* env = std::getenv("TZ"); env != nullptr && *env != '\0') {
      std::string tz = env;
      if (tz.front() == ':')
        tz.erase(0, 1);
      if (!tz.empty() && tz.front() == '/') {
        // An absolute path in $TZ comes from the operator, not from a config file, so trust it.
        if (auto data = load_file(tz, zone_name_from_path(tz, "Local")))
          return TimeZone(*data);
      } else if (!tz.empty()) {
        if (auto zone = load(tz))
          return zone;
        if (auto zone = from_posix(tz))
          return zone;
      }
    }
    const std::string localtime = "/etc/localtime";
    std::error_code ec;
    if (std::filesystem::exists(localtime, ec)) {
      const auto target = std::filesystem::read_symlink(localtime, ec);
      const auto zone_name =
          ec ? std::string("Local") : zone_name_from_path(target.string(), "Local");
      if (is_utc_alias(zone_name))
        return utc();
      if (auto data = load_file(localtime, zone_name))
        return TimeZone(*data);
    }
    return utc();
  }
  if (name.empty() || name.front() == '/' || name.find("..") != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    return Error{Errc::invalid_argument, "invalid time zone name '" + std::string(name) + "'"};
  }
  auto data = load_file(std::string(kZoneDir) + std::string(name), std::string(name));
  if (!data)
    return std::move(data).error();
  return TimeZone(std::move(*data));
}

const std::string& TimeZone::name() const {
  return data_->name;
}

TimeZone::Span TimeZone::span_at(sys_seconds t) const {
  const auto& d = *data_;
  t = clamp_time(t);
  if (d.times.empty()) {
    if (d.rule)
      return rule_span(*d.rule, t, kMinTime);
    return {kMinTime, kMaxTime, seconds{d.initial_offset}};
  }
  const auto count = t.time_since_epoch().count();
  const auto next = std::upper_bound(d.times.begin(), d.times.end(), count);
  if (next == d.times.begin())
    return {kMinTime, sys_seconds{seconds{d.times.front()}}, seconds{d.initial_offset}};
  const auto i = static_cast<std::size_t>(std::distance(d.times.begin(), next) - 1);
  const sys_seconds begin{seconds{d.times[i]}};
  if (next != d.times.end())
    return {begin, sys_seconds{seconds{*next}}, seconds{d.offsets[i]}};
  if (d.rule)
    return rule_span(*d.rule, t, begin);
  return {begin, kMaxTime, seconds{d.offsets[i]}};
}

seconds TimeZone::utc_offset(sys_seconds t) const {
  return span_at(t).offset;
}

local_seconds TimeZone::to_local(sys_seconds t) const {
  t = clamp_time(t);
  return local_seconds{t.time_since_epoch() + utc_offset(t)};
}

sys_seconds TimeZone::to_sys(local_seconds t) const {
  const sys_seconds local{clamp_time(sys_seconds{t.time_since_epoch()})};
  constexpr seconds kWindow{2 * kMaxOffset};
  auto span = span_at(local - kWindow);
  std::optional<seconds> before_gap;
  // Spans come in time order, so the first one that contains local - offset is the earlier
  // instant of a fold.
  while (true) {
    const auto candidate = local - span.offset;
    if (candidate >= span.begin && candidate < span.end)
      return candidate;
    if (candidate >= span.end)
      before_gap = span.offset;
    if (span.end >= kMaxTime || span.end > local + kWindow)
      break;
    span = span_at(span.end);
  }
  // Nonexistent local time: read it with the offset from before the jump, which lands the same
  // distance past the jump as the local time was past its start.
  return local - before_gap.value_or(span.offset);
}

}  // namespace ember::timer
