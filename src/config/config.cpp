// SPDX-License-Identifier: Apache-2.0
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ember/config.hpp>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <system_error>
#include <utility>

namespace ember {
namespace {

using std::chrono::milliseconds;

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kNsPerMs = 1'000'000;

// Parse errors are shown to operators, so an unnamed source still gets a recognisable label.
std::string display_source(std::string_view source) {
  return source.empty() ? std::string{"<config>"} : std::string{source};
}

// One place for the "source:line: path: what" shape so every error reads the same.
Error config_error(std::string_view source, int line, std::string_view path, std::string_view what,
                   Errc code = Errc::invalid_argument) {
  std::string text = display_source(source);
  if (line > 0) {
    text += ':';
    text += std::to_string(line);
  }
  text += ": ";
  if (!path.empty()) {
    text += path;
    text += ": ";
  }
  text += what;
  return Error{code, std::move(text)};
}

// Scalars are echoed back in messages; a pasted blob should not swamp the log line.
std::string quote(std::string_view text) {
  constexpr std::size_t kMaxShown = 60;
  std::string out = "'";
  if (text.size() > kMaxShown) {
    out += text.substr(0, kMaxShown);
    out += "...";
  } else {
    out += text;
  }
  out += '\'';
  return out;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Scalar: return quote(node.Scalar());
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

std::string join_path(std::string_view parent, std::string_view key) {
  if (parent.empty())
    return std::string{key};
  std::string out{parent};
  out += '.';
  out += key;
  return out;
}

std::string join_list(std::span<const std::string_view> names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty())
      out += ", ";
    out += name;
  }
  return out;
}

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string to_lower(std::string_view text) {
  std::string out{text};
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// --- durations -------------------------------------------------------------------------------

std::optional<std::int64_t> unit_in_ns(std::string_view unit) {
  if (unit == "ns")
    return 1;
  // Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC); people paste either.
  if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
    return 1'000;
  if (unit == "ms")
    return kNsPerMs;
  if (unit == "s")
    return 1'000'000'000;
  if (unit == "m")
    return 60LL * 1'000'000'000;
  if (unit == "h")
    return 3600LL * 1'000'000'000;
  return std::nullopt;
}

// --- environment expansion -------------------------------------------------------------------

bool is_env_name(std::string_view name) {
  if (name.empty())
    return false;
  auto head = static_cast<unsigned char>(name.front());
  if (!(std::isalpha(head) || head == '_'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || u == '_';
  });
}

// --- YAML → NodeConfig -----------------------------------------------------------------------

constexpr std::array<std::string_view, 5> kTopKeys = {"NodeConf", "ServiceConf", "SystemLogger",
                                                      "ClusterConf", "EventBusConf"};
constexpr std::array<std::string_view, 2> kEventBusKeys = {"Backend", "NatsConf"};
constexpr std::array<std::string_view, 10> kNatsKeys = {
    "Endpoints", "UserName",      "Password",         "Token",       "GlobalPrefix", "ServerPrefix",
    "Timeout",   "ReconnectWait", "ReconnectBufSize", "PendingLimit"};
constexpr std::array<std::string_view, 8> kClusterKeys = {"Name",         "Secret",
                                                          "ListenAddr",   "AdvertiseAddr",
                                                          "MaxFrameSize", "MaxPendingHandshakes",
                                                          "ETCDConf",     "DiscoveryConf"};
constexpr std::array<std::string_view, 2> kEtcdKeys = {"Endpoints", "DialTimeout"};
constexpr std::array<std::string_view, 2> kDiscoveryKeys = {"KeyPrefix", "TTL"};
constexpr std::array<std::string_view, 5> kNodeKeys = {"NodeId", "WorkerThreads", "TimerTick",
                                                       "ShutdownTimeout", "CallTimeout"};
constexpr std::array<std::string_view, 3> kLogKeys = {"Level", "Path", "Name"};
constexpr std::array<std::string_view, 1> kServiceConfKeys = {"StartServices"};
constexpr std::array<std::string_view, 10> kServiceKeys = {"ClassName",
                                                           "ServiceName",
                                                           "ServiceId",
                                                           "Type",
                                                           "ServerId",
                                                           "Version",
                                                           "IsPrimarySecondaryMode",
                                                           "Pinned",
                                                           "WorkerConf",
                                                           "Params"};
constexpr std::array<std::string_view, 6> kWorkerKeys = {
    "WorkerNum", "MaxWorkerNum", "VirtualWorkerRate", "MailboxSize", "Overflow", "Scaling"};
constexpr std::array<std::string_view, 9> kScalingKeys = {
    "Min",        "Max",           "Interval",   "Cooldown", "GrowStep",
    "ShrinkStep", "ShrinkMaxBusy", "Hysteresis", "Strategy"};
constexpr std::array<std::string_view, 3> kStrategyKeys = {"Name", "Params", "Subs"};
constexpr std::array<std::string_view, 7> kLevels = {"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};

// yaml-cpp 0.7's LoadAll never returns on some malformed streams (one starting with ","): its
// parser reports an empty document at the same token again and again, allocating each time. So
// the documents are counted first, stopping when one starts where the previous one did, and the
// single document wanted is then loaded alone.
class DocumentCounter final : public YAML::EventHandler {
 public:
  struct Result {
    int documents = 0;
    int second_line = 0;  // where the second document's content starts (1-based), if any
    int stuck_line = 0;   // > 0: the parser made no progress at this line
  };

  static Result count(std::string_view text) {
    std::istringstream in{std::string{text}};
    YAML::Parser parser(in);
    DocumentCounter counter;
    int previous_start = -1;
    while (parser.HandleNextDocument(counter)) {
      if (counter.start_.pos <= previous_start) {
        counter.result_.stuck_line = counter.start_.line + 1;
        break;
      }
      previous_start = counter.start_.pos;
    }
    return counter.result_;
  }

  void OnDocumentStart(const YAML::Mark& mark) override {
    start_ = mark;
    ++result_.documents;
    content_seen_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { content(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { content(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    content(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content(mark);
  }
  void OnMapEnd() override {}

 private:
  void content(const YAML::Mark& mark) {
    if (!content_seen_ && result_.documents == 2) {
      result_.second_line = mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
    }
    content_seen_ = true;
  }

  YAML::Mark start_;
  Result result_;
  bool content_seen_ = false;
};

// One key/value pair of a YAML map, with what the readers need to word their errors.
struct Entry {
  std::string key;
  YAML::Node value;
  std::string path;
  int line = 0;  // where the value is, falling back to the key when the value has no position
};

class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Result<NodeConfig> run() {
    const DocumentCounter::Result documents = DocumentCounter::count(text_);
    if (documents.stuck_line > 0)
      return fail(documents.stuck_line, "", "invalid YAML: unexpected token");
    NodeConfig config;
    // An empty file or one holding only comments yields no document: all defaults apply.
    if (documents.documents == 0)
      return config;
    if (documents.documents > 1) {
      return fail(documents.second_line, "",
                  "expected a single YAML document, found " + std::to_string(documents.documents));
    }
    const YAML::Node root = YAML::Load(std::string{text_});
    if (root.IsNull())
      return config;
    if (!root.IsMap()) {
      return fail(std::max(line_of(root), 1), "",
                  "expected a map at the top level, got " + describe(root));
    }
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "NodeConf")
        return read_node_conf(e, config);
      if (e.key == "SystemLogger")
        return read_logger(e, config.log);
      if (e.key == "ClusterConf")
        return read_cluster(e, config.cluster);
      if (e.key == "EventBusConf")
        return read_event_bus(e, config.events);
      return read_service_conf(e, config.services);
    };
    Status status = for_each_key(root, 1, "", kTopKeys, on_key);
    if (!status)
      return status.error();
    // Checked once every section is read: the sections may come in any order.
    if (config.events.backend == EventBackend::cluster && !config.cluster.enabled) {
      return fail(
          backend_line_, "EventBusConf.Backend",
          "\"cluster\" needs a ClusterConf section (use \"local\" or \"nats\" without one)");
    }
    return config;
  }

 private:
  Error fail(int line, std::string_view path, std::string_view what) const {
    return config_error(source_, line, path, what);
  }

  static int line_of(const YAML::Node& node) {
    const YAML::Mark mark = node.Mark();
    return mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
  }

  // yaml-cpp places an empty value at the next token, which is often on a later line; the key
  // is where the user has to look, so empty values report the key's line.
  static int value_line(const YAML::Node& value, int key_line) {
    if (value.IsNull())
      return key_line;
    const int line = line_of(value);
    return line > 0 ? line : key_line;
  }

  // An empty sequence item ("-" alone) has the same problem but no key to fall back on, so walk
  // back from where yaml-cpp put it to the last non-blank, non-comment line, which holds the "-".
  int sequence_item_line(const YAML::Node& item) const {
    const int line = line_of(item);
    if (!item.IsNull() || line == 0)
      return line;
    const YAML::Mark mark = item.Mark();
    auto pos = static_cast<std::size_t>(std::max(mark.pos, 0));
    if (pos > text_.size())
      return line;
    std::string_view rest = text_.substr(pos);
    if (rest.starts_with('~') || rest.starts_with("null") || rest.starts_with("Null") ||
        rest.starts_with("NULL")) {
      return line;  // an explicit null sits where yaml-cpp says
    }
    std::size_t p = pos;
    while (p > 0) {
      const char c = text_[p - 1];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        --p;
        continue;
      }
      const std::size_t line_start = text_.rfind('\n', p - 1);
      const std::size_t begin = line_start == std::string_view::npos ? 0 : line_start + 1;
      const std::size_t first = text_.find_first_not_of(" \t", begin);
      if (first != std::string_view::npos && first < p && text_[first] == '#') {
        p = begin;  // a comment-only line: keep looking above it
        continue;
      }
      return 1 + static_cast<int>(
                     std::count(text_.begin(), text_.begin() + static_cast<long>(p - 1), '\n'));
    }
    return line;
  }

  // Walks a map in document order so the first problem in the file is the one reported.
  // known == nullopt accepts any key (Params).
  template <class Fn>
  Status for_each_key(const YAML::Node& map, int line, const std::string& path,
                      std::optional<std::span<const std::string_view>> known, Fn&& fn) const {
    // A section whose entries are all commented out parses as null; treat it as empty.
    if (map.IsNull())
      return ok_status();
    if (!map.IsMap())
      return fail(line, path, "expected a map, got " + describe(map));
    std::map<std::string, int> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      // Copies on purpose: the iterator hands out a temporary pair, so references would dangle.
      const YAML::Node key_node = it->first;
      const int key_line = line_of(key_node) > 0 ? line_of(key_node) : line;
      if (!key_node.IsScalar()) {
        return fail(key_line, path, "expected a string key, got " + describe(key_node));
      }
      Entry entry{key_node.Scalar(), it->second, "", 0};
      entry.path = join_path(path, entry.key);
      entry.line = value_line(entry.value, key_line);
      // yaml-cpp keeps both copies of a repeated key; silently taking one would hide a typo.
      auto [previous, inserted] = seen.emplace(entry.key, key_line);
      if (!inserted) {
        return fail(
            key_line, entry.path,
            "duplicate key (first defined at line " + std::to_string(previous->second) + ")");
      }
      if (known && std::find(known->begin(), known->end(), entry.key) == known->end()) {
        return fail(key_line, entry.path,
                    "unknown key (expected one of: " + join_list(*known) + ")");
      }
      if (Status status = fn(entry); !status)
        return status;
    }
    return ok_status();
  }

  // --- scalar readers ---

  Result<std::string> read_string(const Entry& e, bool non_empty = false) const {
    std::string value;
    if (e.value.IsScalar()) {
      value = e.value.Scalar();
    } else if (!e.value.IsNull()) {
      return fail(e.line, e.path, "expected a string, got " + describe(e.value));
    }
    if (non_empty && value.empty())
      return fail(e.line, e.path, "must not be empty");
    return value;
  }

  static std::string range_text(std::int64_t lo, std::int64_t hi) {
    if (hi == kInt64Max)
      return ">= " + std::to_string(lo);
    return std::to_string(lo) + ".." + std::to_string(hi);
  }

  Result<std::int64_t> read_int(const Entry& e, std::int64_t lo, std::int64_t hi) const {
    if (!e.value.IsScalar()) {
      return fail(e.line, e.path, "expected an integer, got " + describe(e.value));
    }
    const std::string& text = e.value.Scalar();
    std::string_view digits = text;
    if (digits.starts_with('+'))
      digits.remove_prefix(1);
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    const bool whole = end == digits.data() + digits.size();
    if (digits.empty() || digits.starts_with('+') || !whole ||
        (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
      return fail(e.line, e.path, "expected an integer, got " + quote(text));
    }
    if (ec == std::errc::result_out_of_range || value < lo || value > hi) {
      return fail(e.line, e.path,
                  quote(text) + " is out of range (expected " + range_text(lo, hi) + ")");
    }
    return value;
  }

  /// A number in 0..1 ("0.75"), or a percentage ("75%").
  Result<double> read_fraction(const Entry& e) const {
    if (!e.value.IsScalar()) {
      return fail(e.line, e.path,
                  "expected a number in 0..1 or a percentage, got " + describe(e.value));
    }
    std::string_view text = e.value.Scalar();
    const bool percent = text.ends_with('%');
    if (percent)
      text.remove_suffix(1);
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
      return fail(e.line, e.path,
                  "expected a number in 0..1 or a percentage, got " + quote(e.value.Scalar()));
    }
    if (percent)
      value /= 100;
    if (!(value >= 0 && value <= 1)) {
      return fail(e.line, e.path,
                  quote(e.value.Scalar()) + " is out of range (expected 0..1, or 0%..100%)");
    }
    return value;
  }

  Result<bool> read_bool(const Entry& e) const {
    // yaml-cpp would also take yes/no/on/off/y/n; those surprise people (the "Norway problem"),
    // so only the two spellings everyone reads the same way are accepted.
    if (e.value.IsScalar()) {
      if (e.value.Scalar() == "true")
        return true;
      if (e.value.Scalar() == "false")
        return false;
    }
    return fail(e.line, e.path, "expected true or false, got " + describe(e.value));
  }

  Result<milliseconds> read_duration(const Entry& e, milliseconds lo,
                                     std::optional<milliseconds> hi,
                                     std::string_view expected) const {
    if (!e.value.IsScalar()) {
      return fail(e.line, e.path,
                  "expected a duration such as 10ms, 1.5s or 1m30s, got " + describe(e.value));
    }
    const std::string& text = e.value.Scalar();
    Result<milliseconds> parsed = parse_duration(text);
    if (!parsed)
      return fail(e.line, e.path, parsed.error().message());
    if (*parsed < lo || (hi && *parsed > *hi)) {
      return fail(e.line, e.path,
                  quote(text) + " (" + std::to_string(parsed->count()) +
                      "ms) is out of range (expected " + std::string{expected} + ")");
    }
    return parsed;
  }

  // --- sections ---

  Status read_node_conf(const Entry& section, NodeConfig& config) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "NodeId") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        config.node_id = std::move(*value);
      } else if (e.key == "WorkerThreads") {
        auto value = read_int(e, 0, 1024);
        if (!value)
          return value.error();
        config.worker_threads = static_cast<int>(*value);
      } else if (e.key == "TimerTick") {
        auto value = read_duration(e, milliseconds{1}, milliseconds{1000}, "1ms..1s");
        if (!value)
          return value.error();
        config.timer_tick = *value;
      } else if (e.key == "ShutdownTimeout") {
        auto value = read_duration(e, milliseconds{0}, std::nullopt, ">= 0");
        if (!value)
          return value.error();
        config.shutdown_timeout = *value;
      } else {  // CallTimeout
        auto value = read_duration(e, milliseconds{1}, std::nullopt, "at least 1ms");
        if (!value)
          return value.error();
        config.call_timeout = *value;
      }
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, kNodeKeys, on_key);
  }

  Status read_logger(const Entry& section, LogConfig& log) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Level") {
        auto value = read_string(e);
        if (!value)
          return value.error();
        std::string level = to_lower(*value);
        if (std::find(kLevels.begin(), kLevels.end(), level) == kLevels.end()) {
          return fail(
              e.line, e.path,
              "unknown level " + quote(*value) + " (expected one of: " + join_list(kLevels) + ")");
        }
        log.level = std::move(level);
      } else if (e.key == "Path") {
        auto value = read_string(e);
        if (!value)
          return value.error();
        log.path = std::move(*value);
      } else {  // Name
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        log.name = std::move(*value);
      }
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, kLogKeys, on_key);
  }

  // "host:port" or "[v6]:port"; port 0..65535.
  Status read_host_port(const Entry& e, std::string& host, std::uint16_t& port) const {
    auto text = read_string(e, /*non_empty=*/true);
    if (!text)
      return text.error();
    const std::size_t colon = text->rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return fail(e.line, e.path, "expected host:port, got " + quote(*text));
    }
    std::string h = text->substr(0, colon);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
      h = h.substr(1, h.size() - 2);
    const std::string digits = text->substr(colon + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() ||
        value > 65535) {
      return fail(e.line, e.path,
                  "expected host:port with a port in 0..65535, got " + quote(*text));
    }
    host = std::move(h);
    port = static_cast<std::uint16_t>(value);
    return ok_status();
  }

  Status read_cluster(const Entry& section, ClusterConfig& cluster) const {
    cluster.enabled = true;
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Name" || e.key == "Secret") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        (e.key == "Name" ? cluster.name : cluster.secret) = std::move(*value);
      } else if (e.key == "ListenAddr") {
        return read_host_port(e, cluster.listen_host, cluster.listen_port);
      } else if (e.key == "AdvertiseAddr") {
        auto value = read_string(e);
        if (!value)
          return value.error();
        cluster.advertise = std::move(*value);
      } else if (e.key == "MaxFrameSize") {
        auto value = read_int(e, 4096, std::int64_t{1} << 30);
        if (!value)
          return value.error();
        cluster.max_frame = static_cast<std::size_t>(*value);
      } else if (e.key == "MaxPendingHandshakes") {
        auto value = read_int(e, 1, 65536);
        if (!value)
          return value.error();
        cluster.max_pending_handshakes = static_cast<std::size_t>(*value);
      } else if (e.key == "ETCDConf") {
        return read_etcd(e, cluster);
      } else {  // DiscoveryConf
        return read_discovery(e, cluster);
      }
      return ok_status();
    };
    Status status = for_each_key(section.value, section.line, section.path, kClusterKeys, on_key);
    if (!status)
      return status;
    if (cluster.secret.empty()) {
      return fail(section.line, join_path(section.path, "Secret"),
                  "missing required key (every node of a cluster shares this secret)");
    }
    const bool wildcard = cluster.listen_host == "0.0.0.0" || cluster.listen_host == "::" ||
                          cluster.listen_host.empty();
    if (wildcard && cluster.advertise.empty()) {
      return fail(section.line, join_path(section.path, "AdvertiseAddr"),
                  "required when ListenAddr is a wildcard address: other nodes cannot dial " +
                      quote(cluster.listen_host));
    }
    return ok_status();
  }

  // Calls `fn` with each item of a sequence value, as an Entry with its own path and line. A null
  // value is an empty sequence; anything else is an error naming `expected`.
  template <class Fn>
  Status for_each_item(const Entry& e, std::string_view expected, Fn&& fn) const {
    if (e.value.IsNull())
      return ok_status();
    if (!e.value.IsSequence())
      return fail(e.line, e.path,
                  "expected " + std::string{expected} + ", got " + describe(e.value));
    std::size_t index = 0;
    for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
      Entry item{"", *it, e.path + "[" + std::to_string(index) + "]", e.line};
      if (line_of(item.value) > 0)
        item.line = line_of(item.value);
      if (Status st = fn(item); !st)
        return st;
    }
    return ok_status();
  }

  Status read_event_bus(const Entry& section, EventBusConfig& events) {
    bool nats_section = false;
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Backend") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        backend_line_ = e.line;
        if (*value == "cluster") {
          events.backend = EventBackend::cluster;
        } else if (*value == "nats") {
          events.backend = EventBackend::nats;
        } else if (*value == "local") {
          events.backend = EventBackend::local;
        } else {
          return fail(e.line, e.path,
                      "unknown backend " + quote(*value) + " (expected cluster, nats or local)");
        }
        return ok_status();
      }
      nats_section = true;
      return read_nats(e, events.nats);
    };
    Status status = for_each_key(section.value, section.line, section.path, kEventBusKeys, on_key);
    if (!status)
      return status;
    if (events.backend == EventBackend::nats && events.nats.endpoints.empty()) {
      return fail(section.line, join_path(section.path, "NatsConf.Endpoints"),
                  nats_section ? "must list at least one NATS server"
                               : "missing: Backend \"nats\" needs NatsConf.Endpoints");
    }
    return ok_status();
  }

  Status read_nats(const Entry& section, NatsConfig& nats) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Endpoints") {
        return for_each_item(e, "a sequence", [&](const Entry& item) -> Status {
          auto url = read_string(item, /*non_empty=*/true);
          if (!url)
            return url.error();
          if (url->find_first_of(" \t,") != std::string::npos) {
            return fail(item.line, item.path,
                        "expected one server per item (nats://host:port), got " + quote(*url));
          }
          nats.endpoints.push_back(std::move(*url));
          return ok_status();
        });
      } else if (e.key == "GlobalPrefix" || e.key == "ServerPrefix") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        const bool wildcard = value->find_first_of("*> \t") != std::string::npos;
        if (wildcard || value->front() == '.' || value->back() == '.') {
          return fail(e.line, e.path,
                      "expected a subject prefix such as \"event.global\" (no wildcards, spaces "
                      "or leading/trailing dots), got " +
                          quote(*value));
        }
        (e.key == "GlobalPrefix" ? nats.global_prefix : nats.server_prefix) = std::move(*value);
      } else if (e.key == "UserName" || e.key == "Password" || e.key == "Token") {
        auto value = read_string(e);
        if (!value)
          return value.error();
        (e.key == "UserName"   ? nats.user
         : e.key == "Password" ? nats.password
                               : nats.token) = std::move(*value);
      } else if (e.key == "Timeout" || e.key == "ReconnectWait") {
        auto value = read_duration(e, milliseconds{10}, milliseconds{60'000}, "10ms..1m");
        if (!value)
          return value.error();
        (e.key == "Timeout" ? nats.timeout : nats.reconnect_wait) = *value;
      } else if (e.key == "ReconnectBufSize") {
        auto value = read_int(e, 0, std::int64_t{1} << 30);
        if (!value)
          return value.error();
        nats.reconnect_buffer = *value;
      } else {  // PendingLimit
        auto value = read_int(e, 1000, std::int64_t{1} << 30);
        if (!value)
          return value.error();
        nats.pending_limit = *value;
      }
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, kNatsKeys, on_key);
  }

  Status read_etcd(const Entry& section, ClusterConfig& cluster) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Endpoints") {
        return for_each_item(e, "a sequence", [&](const Entry& item) -> Status {
          std::string host;
          std::uint16_t port = 0;
          if (Status st = read_host_port(item, host, port); !st)
            return st;
          cluster.etcd_endpoints.push_back(item.value.Scalar());
          return ok_status();
        });
      } else {  // DialTimeout
        auto value = read_duration(e, milliseconds{100}, std::nullopt, "at least 100ms");
        if (!value)
          return value.error();
        cluster.etcd_timeout = *value;
      }
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, kEtcdKeys, on_key);
  }

  Status read_discovery(const Entry& section, ClusterConfig& cluster) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "KeyPrefix") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        if (value->front() != '/')
          return fail(e.line, e.path, "must start with '/', got " + quote(*value));
        while (value->size() > 1 && value->back() == '/') value->pop_back();
        cluster.key_prefix = std::move(*value);
      } else {  // TTL: etcd leases count whole seconds
        auto value = read_duration(e, milliseconds{1000}, milliseconds{3600 * 1000}, "1s..1h");
        if (!value)
          return value.error();
        if (value->count() % 1000 != 0) {
          return fail(
              e.line, e.path,
              "must be whole seconds (etcd leases count seconds), got " + quote(e.value.Scalar()));
        }
        cluster.ttl = *value;
      }
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, kDiscoveryKeys, on_key);
  }

  Status read_service_conf(const Entry& section, std::vector<ServiceConfig>& services) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.value.IsNull())
        return ok_status();
      if (!e.value.IsSequence()) {
        return fail(e.line, e.path, "expected a sequence, got " + describe(e.value));
      }
      // (ServiceName, ServiceId) → line of the entry that claimed it first.
      std::map<std::pair<std::string, std::string>, int> identities;
      std::size_t index = 0;
      for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
        Entry item{"", *it, e.path + "[" + std::to_string(index) + "]", 0};
        item.line = sequence_item_line(item.value);
        if (item.line == 0)
          item.line = e.line;
        ServiceConfig service;
        if (Status status = read_service(item, service); !status)
          return status;
        auto [previous, inserted] =
            identities.emplace(std::pair{service.name, service.id}, service.line);
        if (!inserted) {
          return fail(service.line, item.path,
                      "duplicate service: ServiceName " + quote(service.name) + " with ServiceId " +
                          quote(service.id) + " is already defined at line " +
                          std::to_string(previous->second));
        }
        services.push_back(std::move(service));
      }
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, kServiceConfKeys, on_key);
  }

  Status read_service(const Entry& item, ServiceConfig& service) const {
    if (!item.value.IsMap()) {
      return fail(item.line, item.path, "expected a map, got " + describe(item.value));
    }
    service.line = item.line;
    bool has_class = false;
    bool has_name = false;
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "ClassName" || e.key == "ServiceName") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        if (e.key == "ClassName") {
          service.class_name = std::move(*value);
          has_class = true;
        } else {
          service.name = std::move(*value);
          has_name = true;
        }
      } else if (e.key == "ServiceId" || e.key == "Type") {
        auto value = read_string(e);
        if (!value)
          return value.error();
        (e.key == "ServiceId" ? service.id : service.type) = std::move(*value);
      } else if (e.key == "ServerId") {
        auto value = read_int(e, std::numeric_limits<std::int32_t>::min(),
                              std::numeric_limits<std::int32_t>::max());
        if (!value)
          return value.error();
        service.server_id = static_cast<std::int32_t>(*value);
      } else if (e.key == "Version") {
        auto value = read_int(e, std::numeric_limits<std::int64_t>::min(), kInt64Max);
        if (!value)
          return value.error();
        service.version = *value;
      } else if (e.key == "IsPrimarySecondaryMode" || e.key == "Pinned") {
        auto value = read_bool(e);
        if (!value)
          return value.error();
        (e.key == "Pinned" ? service.pinned : service.primary_secondary) = *value;
      } else if (e.key == "WorkerConf") {
        return read_worker(e, service.worker);
      } else {  // Params
        return read_params(e, service.params);
      }
      return ok_status();
    };
    Status status = for_each_key(item.value, item.line, item.path, kServiceKeys, on_key);
    if (!status)
      return status;
    if (!has_class) {
      return fail(item.line, join_path(item.path, "ClassName"), "missing required key");
    }
    if (!has_name)
      service.name = service.class_name;
    return ok_status();
  }

  Status read_worker(const Entry& section, WorkerConfig& worker) const {
    std::optional<Entry> max_entry;
    std::optional<Entry> scaling_entry;
    ScalingConfig scaling;
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "WorkerNum") {
        auto value = read_int(e, 1, 1024);
        if (!value)
          return value.error();
        worker.lanes = static_cast<int>(*value);
      } else if (e.key == "MaxWorkerNum") {
        auto value = read_int(e, 0, 1024);
        if (!value)
          return value.error();
        worker.max_lanes = static_cast<int>(*value);
        max_entry = e;
      } else if (e.key == "VirtualWorkerRate") {
        auto value = read_int(e, 1, 1000);
        if (!value)
          return value.error();
        worker.virtual_nodes = static_cast<int>(*value);
      } else if (e.key == "MailboxSize") {
        auto value = read_int(e, 0, kInt64Max);
        if (!value)
          return value.error();
        worker.mailbox_bound = *value;
      } else if (e.key == "Scaling") {
        scaling_entry = e;
        return read_scaling(e, scaling);
      } else {  // Overflow
        auto value = read_string(e);
        if (!value)
          return value.error();
        if (*value != "reject") {
          return fail(e.line, e.path,
                      "unknown overflow policy " + quote(*value) + " (expected one of: reject)");
        }
        worker.overflow = OverflowPolicy::reject;
      }
      return ok_status();
    };
    Status status = for_each_key(section.value, section.line, section.path, kWorkerKeys, on_key);
    if (!status)
      return status;
    // Checked after the whole map because the two keys may come in either order.
    if (max_entry && worker.max_lanes != 0 && worker.max_lanes < worker.lanes) {
      return fail(max_entry->line, max_entry->path,
                  std::to_string(worker.max_lanes) + " is less than WorkerNum " +
                      std::to_string(worker.lanes) + " (use 0 to mean the same as WorkerNum)");
    }
    if (scaling_entry) {
      ScalingConfig& sc = scaling;
      if (sc.min_lanes == 0)
        sc.min_lanes = worker.lanes;
      if (sc.max_lanes == 0)
        sc.max_lanes = worker.max_lanes;
      if (sc.max_lanes <= sc.min_lanes) {
        return fail(scaling_entry->line, join_path(scaling_entry->path, "Max"),
                    "must be above Min (" + std::to_string(sc.min_lanes) +
                        "); set Scaling.Max or MaxWorkerNum");
      }
      if (worker.lanes < sc.min_lanes || worker.lanes > sc.max_lanes) {
        return fail(scaling_entry->line, scaling_entry->path,
                    "WorkerNum " + std::to_string(worker.lanes) + " is outside Min..Max (" +
                        std::to_string(sc.min_lanes) + ".." + std::to_string(sc.max_lanes) + ")");
      }
      if (worker.max_lanes != 0 && sc.max_lanes > worker.max_lanes) {
        return fail(scaling_entry->line, join_path(scaling_entry->path, "Max"),
                    std::to_string(sc.max_lanes) + " is above MaxWorkerNum " +
                        std::to_string(worker.max_lanes));
      }
      worker.scaling = std::make_shared<const ScalingConfig>(std::move(sc));
    }
    return ok_status();
  }

  Status read_scaling(const Entry& section, ScalingConfig& scaling) const {
    bool has_strategy = false;
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Min" || e.key == "Max") {
        auto value = read_int(e, 1, 1024);
        if (!value)
          return value.error();
        (e.key == "Min" ? scaling.min_lanes : scaling.max_lanes) = static_cast<int>(*value);
      } else if (e.key == "Interval" || e.key == "Cooldown") {
        // A zero cooldown is legitimate (Hysteresis alone spaces the changes); a zero interval
        // would spin the scaler.
        const bool interval = e.key == "Interval";
        auto value = read_duration(e, milliseconds{interval ? 10 : 0}, milliseconds{3'600'000},
                                   interval ? "10ms..1h" : "0s..1h");
        if (!value)
          return value.error();
        (interval ? scaling.interval : scaling.cooldown) = *value;
      } else if (e.key == "GrowStep" || e.key == "ShrinkStep") {
        return read_step(e, e.key == "GrowStep" ? scaling.grow : scaling.shrink);
      } else if (e.key == "Hysteresis") {
        auto value = read_int(e, 1, 100);
        if (!value)
          return value.error();
        scaling.hysteresis = static_cast<int>(*value);
      } else if (e.key == "ShrinkMaxBusy") {
        auto value = read_fraction(e);
        if (!value)
          return value.error();
        scaling.shrink_max_busy = *value;
      } else {  // Strategy
        has_strategy = true;
        return read_strategy(e, scaling.strategy);
      }
      return ok_status();
    };
    Status status = for_each_key(section.value, section.line, section.path, kScalingKeys, on_key);
    if (!status)
      return status;
    if (!has_strategy) {
      return fail(section.line, join_path(section.path, "Strategy"),
                  "missing required key (for example {Name: queue_length, Params: {High: 100}})");
    }
    return ok_status();
  }

  Status read_step(const Entry& e, ScalingStep& step) const {
    if (e.value.IsScalar() && !e.value.Scalar().empty() && e.value.Scalar().back() == '%') {
      Entry number = e;
      number.value = YAML::Node(e.value.Scalar().substr(0, e.value.Scalar().size() - 1));
      auto value = read_int(number, 1, 1000);
      if (!value)
        return fail(
            e.line, e.path,
            "expected a lane count or a percentage such as 50%, got " + quote(e.value.Scalar()));
      step.percent = static_cast<int>(*value);
      return ok_status();
    }
    auto value = read_int(e, 1, 1024);
    if (!value) {
      return fail(
          e.line, e.path,
          "expected a lane count (1..1024) or a percentage such as 50%, got " + describe(e.value));
    }
    step.lanes = static_cast<int>(*value);
    return ok_status();
  }

  Status read_strategy(const Entry& section, ScalingStrategyConfig& strategy) const {
    strategy.path = section.path;
    strategy.line = section.line;
    auto on_key = [&](const Entry& e) -> Status {
      if (e.key == "Name") {
        auto value = read_string(e, /*non_empty=*/true);
        if (!value)
          return value.error();
        strategy.name = std::move(*value);
      } else if (e.key == "Params") {
        return read_params(e, strategy.params);
      } else {  // Subs
        return for_each_item(e, "a sequence of strategies", [&](const Entry& item) {
          return read_strategy(item, strategy.subs.emplace_back());
        });
      }
      return ok_status();
    };
    Status status = for_each_key(section.value, section.line, section.path, kStrategyKeys, on_key);
    if (!status)
      return status;
    if (strategy.name.empty()) {
      return fail(section.line, join_path(section.path, "Name"),
                  "missing required key (a registered strategy: queue_length, queue_delay, cpu, "
                  "all, any, or one of your own)");
    }
    return ok_status();
  }

  Status read_params(const Entry& section, std::map<std::string, std::string>& params) const {
    auto on_key = [&](const Entry& e) -> Status {
      if (e.value.IsMap() || e.value.IsSequence()) {
        return fail(e.line, e.path,
                    "expected a scalar value, got " + describe(e.value) +
                        " (Params values cannot be nested)");
      }
      params[e.key] = e.value.IsScalar() ? e.value.Scalar() : std::string{};
      return ok_status();
    };
    return for_each_key(section.value, section.line, section.path, std::nullopt, on_key);
  }

  std::string_view text_;
  std::string_view source_;
  int backend_line_ = 0;  // where EventBusConf.Backend was set, for the cross-section check
};

}  // namespace

Result<milliseconds> parse_duration(std::string_view text) {
  auto precise = parse_duration_ns(text);
  if (!precise)
    return precise.error();
  return std::chrono::duration_cast<milliseconds>(*precise);
}

Result<std::chrono::nanoseconds> parse_duration_ns(std::string_view text) {
  auto fail = [&](std::string_view why) {
    return Error{Errc::invalid_argument,
                 "invalid duration " + quote(text) + ": " + std::string{why}};
  };
  if (text.empty())
    return fail("empty");
  if (text.front() == '-')
    return fail("negative durations are not allowed");

  // A bare integer is the seed's historical form: milliseconds.
  if (all_digits(text)) {
    std::int64_t ms = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc{} || end != text.data() + text.size() || ms > kInt64Max / kNsPerMs) {
      return fail("out of range");
    }
    return std::chrono::nanoseconds{ms * kNsPerMs};
  }

  // Accumulate in whole nanoseconds so "0.3s" is exactly 300ms rather than 299.999...
  std::int64_t total_ns = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t number_start = i;
    std::int64_t whole = 0;
    bool overflow = false;
    std::size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      overflow = overflow || __builtin_mul_overflow(whole, 10, &whole) ||
                 __builtin_add_overflow(whole, text[i] - '0', &whole);
      ++i;
      ++digits;
    }
    std::string_view fraction;
    if (i < text.size() && text[i] == '.') {
      const std::size_t start = ++i;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
      fraction = text.substr(start, i - start);
      digits += fraction.size();
    }
    if (digits == 0)
      return fail("expected a number at " + quote(text.substr(number_start)));

    const std::size_t unit_start = i;
    while (i < text.size() && !(text[i] >= '0' && text[i] <= '9') && text[i] != '.') ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit.empty())
      return fail("missing unit (use ns, us, ms, s, m or h)");
    const std::optional<std::int64_t> unit_ns = unit_in_ns(unit);
    if (!unit_ns)
      return fail("unknown unit " + quote(unit) + " (use ns, us, ms, s, m or h)");

    std::int64_t part = 0;
    overflow = overflow || __builtin_mul_overflow(whole, *unit_ns, &part);
    // Each fraction digit is worth a tenth of the previous one; below 1ns the rest is dropped.
    std::int64_t scale = *unit_ns;
    for (char c : fraction) {
      scale /= 10;
      if (scale == 0)
        break;
      overflow = overflow || __builtin_add_overflow(part, (c - '0') * scale, &part);
    }
    overflow = overflow || __builtin_add_overflow(total_ns, part, &total_ns);
    if (overflow)
      return fail("out of range");
  }
  return std::chrono::nanoseconds{total_ns};
}

Result<std::string> expand_env(std::string_view text, std::string_view source_name) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n')
      ++line;
    if (c != '$') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (i + 1 >= text.size() || text[i + 1] != '{') {
      out += '$';  // "$5" or "cost: $" are ordinary text, not references
      ++i;
      continue;
    }
    // A reference must close on its own line; otherwise a missing "}" would swallow the file.
    const std::size_t close = text.find_first_of("}\n", i + 2);
    if (close == std::string_view::npos || text[close] == '\n') {
      return config_error(source_name, line, "",
                          "unterminated '${' (expected '}' on the same line)");
    }
    const std::string_view body = text.substr(i + 2, close - i - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (const std::size_t colon = body.find(':'); colon != std::string_view::npos) {
      if (body.substr(colon, 2) != ":-") {
        return config_error(source_name, line, "",
                            "unsupported expression " + quote("${" + std::string{body} + "}") +
                                " (expected ${NAME} or ${NAME:-default})");
      }
      name = body.substr(0, colon);
      fallback = body.substr(colon + 2);
    }
    if (!is_env_name(name)) {
      return config_error(source_name, line, "",
                          "invalid environment variable name " + quote(name) + " in " +
                              quote("${" + std::string{body} + "}"));
    }
    const std::string name_text{name};
    const char* value = std::getenv(name_text.c_str());
    std::string_view replacement;
    // Like the shell's ":-", an empty value also takes the default: an exported-but-empty
    // variable is almost always a deployment slip, not a deliberate empty setting.
    if (value != nullptr && (*value != '\0' || !fallback)) {
      replacement = value;
    } else if (fallback) {
      replacement = *fallback;
    } else {
      return config_error(source_name, line, "",
                          "environment variable " + name_text + " is not set");
    }
    if (replacement.find_first_of("\r\n") != std::string_view::npos) {
      return config_error(source_name, line, "",
                          "environment variable " + name_text +
                              " contains a line break; only single-line values can be "
                              "substituted (line numbers in errors would be wrong)");
    }
    out += replacement;
    i = close + 1;
  }
  return out;
}

EventBackend event_backend(const NodeConfig& config) noexcept {
  if (config.events.backend != EventBackend::automatic) {
    return config.events.backend;
  }
  return config.cluster.enabled ? EventBackend::cluster : EventBackend::local;
}

Result<NodeConfig> parse_node_config(std::string_view yaml_text, std::string_view source_name) {
  try {
    Result<NodeConfig> config = Parser{yaml_text, source_name}.run();
    if (config) {
      config->source = std::string(source_name);
    }
    return config;
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() || e.mark.line < 0 ? 0 : e.mark.line + 1;
    return config_error(source_name, line, "", "invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    return config_error(source_name, 0, "", std::string{"unexpected error: "} + e.what(),
                        Errc::internal);
  } catch (...) {
    return config_error(source_name, 0, "", "unexpected error", Errc::internal);
  }
}

Result<NodeConfig> load_node_config(const std::string& path) {
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      return Error{Errc::io_error, "cannot read config file '" + path + "': is a directory"};
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return Error{Errc::io_error,
                   "cannot open config file '" + path + "': " + std::strerror(errno)};
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) {
      return Error{Errc::io_error, "cannot read config file '" + path + "'"};
    }
    Result<std::string> expanded = expand_env(buffer.str(), path);
    if (!expanded)
      return std::move(expanded).error();
    Result<NodeConfig> config = parse_node_config(*expanded, path);
    if (!config)
      return config;
    config->source = path;
    return config;
  } catch (const std::exception& e) {
    return Error{Errc::io_error, "cannot read config file '" + path + "': " + e.what()};
  }
}

}  // namespace ember
