// SPDX-License-Identifier: Apache-2.0
// The strategy registry, typed parameters, the wait histogram, and the built-in strategies.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <ember/scaling.hpp>
#include <map>
#include <mutex>
#include <vector>

namespace ember {

// --- WaitHistogram ---------------------------------------------------------------------------

int WaitHistogram::bucket_of(std::uint64_t micros) noexcept {
  if (micros < 4) {
    return static_cast<int>(micros);  // 0..3 exactly
  }
  const int power = std::bit_width(micros) - 1;  // >= 2
  const auto quarter = static_cast<int>((micros >> (power - 2)) & 3u);
  return std::min(kBuckets - 1, 4 + (power - 2) * 4 + quarter);
}

std::uint64_t WaitHistogram::upper_bound_of(int bucket) noexcept {
  if (bucket < 4) {
    return static_cast<std::uint64_t>(bucket);
  }
  const int power = (bucket - 4) / 4 + 2;
  const auto quarter = static_cast<std::uint64_t>((bucket - 4) % 4);
  return ((std::uint64_t{4} + quarter + 1) << (power - 2)) - 1;
}

void WaitHistogram::add(std::chrono::microseconds wait) noexcept {
  const auto micros = static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait.count()));
  ++buckets[static_cast<std::size_t>(bucket_of(micros))];
  ++count_;
}

void WaitHistogram::add_to_bucket(int bucket, std::uint64_t n) noexcept {
  buckets[static_cast<std::size_t>(std::clamp(bucket, 0, kBuckets - 1))] += n;
  count_ += n;
}

void WaitHistogram::merge(const WaitHistogram& other) noexcept {
  for (int i = 0; i < kBuckets; ++i) {
    buckets[static_cast<std::size_t>(i)] += other.buckets[static_cast<std::size_t>(i)];
  }
  count_ += other.count_;
}

std::chrono::microseconds WaitHistogram::percentile(double percent) const noexcept {
  if (count_ == 0) {
    return std::chrono::microseconds{0};
  }
  const double wanted = std::clamp(percent, 0.0, 100.0) / 100.0 * static_cast<double>(count_);
  std::uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets[static_cast<std::size_t>(i)];
    if (static_cast<double>(seen) >= wanted && seen > 0) {
      return std::chrono::microseconds{static_cast<std::int64_t>(upper_bound_of(i))};
    }
  }
  return std::chrono::microseconds{static_cast<std::int64_t>(upper_bound_of(kBuckets - 1))};
}

namespace {
/// How many lanes' worth of `spent` the interval held (1.0 = one lane all the time).
double lanes_worth(std::chrono::microseconds spent, std::chrono::milliseconds interval) noexcept {
  if (interval.count() <= 0) {
    return 0;
  }
  return static_cast<double>(spent.count()) / 1e3 / static_cast<double>(interval.count());
}
}  // namespace

double ScalingSample::cpu_per_lane() const noexcept {
  return lanes <= 0 ? 0 : lanes_worth(handler_cpu, interval) / lanes;
}

double ScalingSample::busy_lanes() const noexcept {
  return lanes_worth(handler_busy, interval);
}

std::string_view to_string(ScaleVote vote) noexcept {
  switch (vote) {
    case ScaleVote::grow: return "grow";
    case ScaleVote::shrink: return "shrink";
    case ScaleVote::hold: break;
  }
  return "hold";
}

// --- StrategyParams --------------------------------------------------------------------------

StrategyParams::StrategyParams(const ScalingStrategyConfig& config) : config_(config) {}

Error StrategyParams::error(std::string_view key, std::string_view what) const {
  std::string where = config_.path.empty() ? std::string("Strategy") : config_.path;
  if (!key.empty()) {
    where += ".Params.";
    where += key;
  }
  if (config_.line > 0) {
    where += " (line " + std::to_string(config_.line) + ")";
  }
  return Error{Errc::invalid_argument,
               fmt::format("{}: strategy {}: {}", where, config_.name, what)};
}

bool StrategyParams::has(std::string_view key) const {
  return config_.params.find(std::string(key)) != config_.params.end();
}

Result<double> StrategyParams::number(std::string_view key, double fallback, double lo, double hi) {
  read_.emplace(key);
  auto it = config_.params.find(std::string(key));
  if (it == config_.params.end()) {
    return fallback;
  }
  const std::string& text = it->second;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    return error(key, "expected a number, got '" + text + "'");
  }
  if (value < lo || value > hi) {
    return error(key, fmt::format("{} is out of range (expected {}..{})", text, lo, hi));
  }
  return value;
}

Result<std::chrono::microseconds> StrategyParams::duration(std::string_view key,
                                                           std::chrono::microseconds fallback) {
  read_.emplace(key);
  auto it = config_.params.find(std::string(key));
  if (it == config_.params.end()) {
    return fallback;
  }
  auto parsed = parse_duration_ns(it->second);
  if (!parsed) {
    return error(key, parsed.error().message());
  }
  return std::chrono::duration_cast<std::chrono::microseconds>(*parsed);
}

Result<std::string> StrategyParams::choice(std::string_view key, std::string fallback,
                                           std::initializer_list<std::string_view> allowed) {
  read_.emplace(key);
  auto it = config_.params.find(std::string(key));
  if (it == config_.params.end()) {
    return fallback;
  }
  for (std::string_view a : allowed) {
    if (it->second == a) {
      return it->second;
    }
  }
  std::string list;
  for (std::string_view a : allowed) {
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  return error(key, "unknown value '" + it->second + "' (expected one of: " + list + ")");
}

Status StrategyParams::finish() const {
  for (const auto& [key, value] : config_.params) {
    if (!read_.contains(key)) {
      std::string known;
      for (const auto& k : read_) {
        known += (known.empty() ? "" : ", ") + k;
      }
      return error(key, "unknown parameter (expected one of: " +
                            (known.empty() ? std::string("none") : known) + ")");
    }
  }
  return {};
}

// --- built-in strategies ---------------------------------------------------------------------

namespace {

using Micros = std::chrono::microseconds;

std::string micros_text(Micros m) {
  return m.count() >= 1000 ? fmt::format("{:.1f}ms", static_cast<double>(m.count()) / 1000)
                           : fmt::format("{}us", m.count());
}

/// Above `high`: grow; below `low`: shrink; in between: hold.
ScaleVote band_vote(double value, double high, double low) noexcept {
  return value > high ? ScaleVote::grow : value < low ? ScaleVote::shrink : ScaleVote::hold;
}

/// Messages waiting per lane against High / Low.
class QueueLength final : public ScalingStrategy {
 public:
  QueueLength(double high, double low) : high_(high), low_(low) {}
  ScaleVerdict evaluate(const ScalingSample& s) override {
    const double per_lane = static_cast<double>(s.queued) / std::max(1, s.lanes);
    const std::string why = fmt::format(
        "queue_length: {:.1f} queued per lane (grow > {}, shrink < {})", per_lane, high_, low_);
    return {band_vote(per_lane, high_, low_), why};
  }

 private:
  double high_;
  double low_;
};

/// A percentile of the queueing delay of one priority against Target.
class QueueDelay final : public ScalingStrategy {
 public:
  QueueDelay(Micros target, double percentile, bool system, double low)
      : target_(target), percentile_(percentile), system_(system), low_(low) {}
  ScaleVerdict evaluate(const ScalingSample& s) override {
    const WaitHistogram& h = system_ ? s.system_wait : s.user_wait;
    const Micros p = h.percentile(percentile_);
    const auto shrink_below = Micros{static_cast<std::int64_t>(target_.count() * low_)};
    const std::string why =
        fmt::format("queue_delay: p{:g} {} wait {} over {} messages (target {}, shrink < {})",
                    percentile_, system_ ? "system" : "user", micros_text(p), h.count(),
                    micros_text(target_), micros_text(shrink_below));
    // Nothing waited at all (or nothing ran) is a shrink: more lanes than needed.
    return {band_vote(static_cast<double>(p.count()), static_cast<double>(target_.count()),
                      static_cast<double>(shrink_below.count())),
            why};
  }

 private:
  Micros target_;
  double percentile_;
  bool system_;
  double low_;
};

/// Handler CPU per lane against High / Low.
class Cpu final : public ScalingStrategy {
 public:
  Cpu(double high, double low) : high_(high), low_(low) {}
  ScaleVerdict evaluate(const ScalingSample& s) override {
    const double busy = s.cpu_per_lane();
    const std::string why = fmt::format("cpu: {:.0f}% per lane (grow > {:.0f}%, shrink < {:.0f}%)",
                                        busy * 100, high_ * 100, low_ * 100);
    return {band_vote(busy, high_, low_), why};
  }

 private:
  double high_;
  double low_;
};

/// all: grow when every sub-strategy says grow, shrink when every one says shrink.
/// any: grow when one says grow; otherwise shrink when one says shrink.
class Composite final : public ScalingStrategy {
 public:
  Composite(bool all, std::vector<std::unique_ptr<ScalingStrategy>> subs)
      : all_(all), subs_(std::move(subs)) {}
  ScaleVerdict evaluate(const ScalingSample& s) override {
    int grow = 0;
    int shrink = 0;
    std::string why = all_ ? "all[" : "any[";
    for (std::size_t i = 0; i < subs_.size(); ++i) {
      ScaleVerdict v = subs_[i]->evaluate(s);
      grow += v.vote == ScaleVote::grow ? 1 : 0;
      shrink += v.vote == ScaleVote::shrink ? 1 : 0;
      why += (i == 0 ? "" : "; ") + v.why + " -> " + std::string(to_string(v.vote));
    }
    why += "]";
    const int n = static_cast<int>(subs_.size());
    ScaleVote vote = ScaleVote::hold;
    if (all_) {
      vote = grow == n ? ScaleVote::grow : shrink == n ? ScaleVote::shrink : ScaleVote::hold;
    } else {
      vote = grow > 0 ? ScaleVote::grow : shrink > 0 ? ScaleVote::shrink : ScaleVote::hold;
    }
    return {vote, why};
  }

 private:
  bool all_;
  std::vector<std::unique_ptr<ScalingStrategy>> subs_;
};

Result<std::unique_ptr<ScalingStrategy>> no_subs(const ScalingStrategyConfig& c) {
  if (!c.subs.empty()) {
    return StrategyParams(c).error("", "takes no Subs (only all and any do)");
  }
  return std::unique_ptr<ScalingStrategy>{};
}

struct Band {
  double high = 0;
  double low = 0;
};

/// High (in [min_high, max]) and Low (in [0, max], below High) of a threshold strategy; Low's
/// default may depend on High.
template <class LowDefault>
Result<Band> read_band(StrategyParams& p, double high_default, double min_high, double max,
                       LowDefault low_default) {
  auto high = p.number("High", high_default, min_high, max);
  if (!high) {
    return high.error();
  }
  auto low = p.number("Low", low_default(*high), 0, max);
  if (!low) {
    return low.error();
  }
  if (*low >= *high) {
    return p.error("Low", fmt::format("{} must be below High {}", *low, *high));
  }
  return Band{*high, *low};
}

Result<std::unique_ptr<ScalingStrategy>> make_queue_length(const ScalingStrategyConfig& c) {
  if (auto st = no_subs(c); !st) {
    return st;
  }
  StrategyParams p(c);
  auto band = read_band(p, 100, 0, 1e9, [](double high) { return high / 10; });
  if (!band) {
    return band.error();
  }
  if (auto st = p.finish(); !st) {
    return st.error();
  }
  return std::unique_ptr<ScalingStrategy>(std::make_unique<QueueLength>(band->high, band->low));
}

Result<std::unique_ptr<ScalingStrategy>> make_queue_delay(const ScalingStrategyConfig& c) {
  if (auto st = no_subs(c); !st) {
    return st;
  }
  StrategyParams p(c);
  auto target = p.duration("Target", std::chrono::milliseconds(5));
  if (!target) {
    return target.error();
  }
  if (target->count() <= 0) {
    return p.error("Target", "must be above zero");
  }
  auto percentile = p.number("Percentile", 99, 1, 100);
  if (!percentile) {
    return percentile.error();
  }
  auto priority = p.choice("Priority", "user", {"user", "system"});
  if (!priority) {
    return priority.error();
  }
  auto low = p.number("ShrinkBelow", 0.2, 0, 0.99);
  if (!low) {
    return low.error();
  }
  if (auto st = p.finish(); !st) {
    return st.error();
  }
  return std::unique_ptr<ScalingStrategy>(
      std::make_unique<QueueDelay>(*target, *percentile, *priority == "system", *low));
}

Result<std::unique_ptr<ScalingStrategy>> make_cpu(const ScalingStrategyConfig& c) {
  if (auto st = no_subs(c); !st) {
    return st;
  }
  StrategyParams p(c);
  auto band = read_band(p, 0.8, 0.01, 1, [](double) { return 0.3; });
  if (!band) {
    return band.error();
  }
  if (auto st = p.finish(); !st) {
    return st.error();
  }
  return std::unique_ptr<ScalingStrategy>(std::make_unique<Cpu>(band->high, band->low));
}

Result<std::unique_ptr<ScalingStrategy>> make_composite(const ScalingStrategyConfig& c, bool all) {
  if (auto st = StrategyParams(c).finish(); !st) {
    return st.error();
  }
  if (c.subs.empty()) {
    return StrategyParams(c).error("", "needs at least one strategy under Subs");
  }
  std::vector<std::unique_ptr<ScalingStrategy>> subs;
  for (const auto& sub : c.subs) {
    auto built = make_scaling_strategy(sub);
    if (!built) {
      return built.error();
    }
    subs.push_back(std::move(*built));
  }
  return std::unique_ptr<ScalingStrategy>(std::make_unique<Composite>(all, std::move(subs)));
}

struct Registry {
  std::mutex mu;
  std::map<std::string, ScalingStrategyFactory, std::less<>> factories;
  Registry() {
    factories["queue_length"] = make_queue_length;
    factories["queue_delay"] = make_queue_delay;
    factories["cpu"] = make_cpu;
    factories["all"] = [](const ScalingStrategyConfig& c) { return make_composite(c, true); };
    factories["any"] = [](const ScalingStrategyConfig& c) { return make_composite(c, false); };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

Status register_scaling_strategy(std::string name, ScalingStrategyFactory factory) {
  if (name.empty() || !factory) {
    return Error{Errc::invalid_argument, "register_scaling_strategy: empty name or factory"};
  }
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (!r.factories.emplace(name, std::move(factory)).second) {
    return Error{Errc::already_exists, "scaling strategy '" + name + "' is already registered"};
  }
  return {};
}

Result<std::unique_ptr<ScalingStrategy>> make_scaling_strategy(
    const ScalingStrategyConfig& config) {
  ScalingStrategyFactory factory;
  std::string known;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    auto it = r.factories.find(config.name);
    if (it != r.factories.end()) {
      factory = it->second;
    } else {
      for (const auto& [name, f] : r.factories) {
        known += (known.empty() ? "" : ", ") + name;
      }
    }
  }
  if (!factory) {
    return StrategyParams(config).error("", "unknown strategy (registered: " + known + ")");
  }
  auto built = factory(config);
  if (built && *built == nullptr) {
    return StrategyParams(config).error("", "the factory returned no strategy");
  }
  return built;
}

}  // namespace ember
