// SPDX-License-Identifier: Apache-2.0
#include "config/yaml_walker.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ember/config.hpp>
#include <limits>
#include <sstream>
#include <system_error>
#include <utility>

namespace ember::config {

struct Entry::Value {
  YAML::Node node;
};

struct EntryAccess {
  static Entry make(std::string key, const YAML::Node& node, std::string path, int line) {
    Entry entry;
    entry.key = std::move(key);
    entry.path = std::move(path);
    entry.line = line;
    entry.value_ = std::make_shared<const Entry::Value>(Entry::Value{node});
    return entry;
  }
  static const YAML::Node& node(const Entry& entry) { return entry.value_->node; }
};

namespace {

using std::chrono::milliseconds;

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

const YAML::Node& node_of(const Entry& entry) {
  return EntryAccess::node(entry);
}

std::string describe_node(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Scalar: return quote(node.Scalar());
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

std::string to_lower(std::string_view text) {
  std::string out{text};
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string range_text(std::int64_t lo, std::int64_t hi) {
  if (hi == kInt64Max)
    return ">= " + std::to_string(lo);
  return std::to_string(lo) + ".." + std::to_string(hi);
}

enum class IntText : std::uint8_t { ok, not_integer, out_of_range };

IntText parse_int(std::string_view text, std::int64_t lo, std::int64_t hi, std::int64_t& value) {
  std::string_view digits = text;
  if (digits.starts_with('+'))
    digits.remove_prefix(1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  const bool whole = end == digits.data() + digits.size();
  if (digits.empty() || digits.starts_with('+') || !whole ||
      (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
    return IntText::not_integer;
  }
  if (ec == std::errc::result_out_of_range || value < lo || value > hi)
    return IntText::out_of_range;
  return IntText::ok;
}

int line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
}

// yaml-cpp places an empty value at the next token, which is often on a later line; the key is
// where the user has to look, so empty values report the key's line.
int value_line(const YAML::Node& value, int key_line) {
  if (value.IsNull())
    return key_line;
  const int line = line_of(value);
  return line > 0 ? line : key_line;
}

// An empty sequence item ("-" alone) has the same problem but no key to fall back on, so walk
// back from where yaml-cpp put it to the last non-blank, non-comment line, which holds the "-".
int sequence_item_line(std::string_view text, const YAML::Node& item) {
  const int line = line_of(item);
  if (!item.IsNull() || line == 0)
    return line;
  const YAML::Mark mark = item.Mark();
  auto pos = static_cast<std::size_t>(std::max(mark.pos, 0));
  if (pos > text.size())
    return line;
  std::string_view rest = text.substr(pos);
  if (rest.starts_with('~') || rest.starts_with("null") || rest.starts_with("Null") ||
      rest.starts_with("NULL")) {
    return line;  // an explicit null sits where yaml-cpp says
  }
  std::size_t p = pos;
  while (p > 0) {
    const char c = text[p - 1];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      --p;
      continue;
    }
    const std::size_t line_start = text.rfind('\n', p - 1);
    const std::size_t begin = line_start == std::string_view::npos ? 0 : line_start + 1;
    const std::size_t first = text.find_first_not_of(" \t", begin);
    if (first != std::string_view::npos && first < p && text[first] == '#') {
      p = begin;  // a comment-only line: keep looking above it
      continue;
    }
    return 1 + static_cast<int>(
                   std::count(text.begin(), text.begin() + static_cast<long>(p - 1), '\n'));
  }
  return line;
}

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

// Where a map key is, falling back to the map's own line when yaml-cpp has no position for it.
int key_line_of(const Entry& map, const YAML::Node& key_node) {
  const int line = line_of(key_node);
  return line > 0 ? line : map.line;
}

// The entry of one pair of `map` whose key is a string.
Entry pair_entry(const Entry& map, const YAML::Node& key_node, const YAML::Node& value) {
  return EntryAccess::make(key_node.Scalar(), value, join_path(map.path, key_node.Scalar()),
                           value_line(value, key_line_of(map, key_node)));
}

}  // namespace

bool Entry::is_null() const {
  return value_->node.IsNull();
}
bool Entry::is_scalar() const {
  return value_->node.IsScalar();
}
bool Entry::is_map() const {
  return value_->node.IsMap();
}
bool Entry::is_sequence() const {
  return value_->node.IsSequence();
}
const std::string& Entry::scalar() const {
  static const std::string kNone;
  return is_scalar() ? value_->node.Scalar() : kNone;
}

std::string describe(const Entry& entry) {
  return describe_node(node_of(entry));
}

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

std::string join_path(std::string_view parent, std::string_view key) {
  if (parent.empty())
    return std::string{key};
  std::string out{parent};
  out += '.';
  out += key;
  return out;
}

std::string join_list(KeyList names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty())
      out += ", ";
    out += name;
  }
  return out;
}

Error config_error(std::string_view source, int line, std::string_view path, std::string_view what,
                   Errc code) {
  // Errors are shown to operators, so an unnamed source still gets a recognisable label.
  std::string text = source.empty() ? std::string{"<config>"} : std::string{source};
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

std::optional<std::int64_t> int_in_range(std::string_view text, std::int64_t lo, std::int64_t hi) {
  std::int64_t value = 0;
  if (parse_int(text, lo, hi, value) != IntText::ok)
    return std::nullopt;
  return value;
}

// --- the document -------------------------------------------------------------------------------

Status Walker::walk(std::string_view text, std::string_view source,
                    const std::function<Status(const Walker&, const Entry&)>& read) {
  try {
    const Walker walker{text, source};
    const DocumentCounter::Result documents = DocumentCounter::count(text);
    if (documents.stuck_line > 0)
      return walker.fail(documents.stuck_line, "", "invalid YAML: unexpected token");
    // An empty file or one holding only comments yields no document: all defaults apply.
    if (documents.documents == 0)
      return ok_status();
    if (documents.documents > 1) {
      return walker.fail(
          documents.second_line, "",
          "expected a single YAML document, found " + std::to_string(documents.documents));
    }
    const YAML::Node root = YAML::Load(std::string{text});
    if (root.IsNull())
      return ok_status();
    if (!root.IsMap()) {
      return walker.fail(std::max(line_of(root), 1), "",
                         "expected a map at the top level, got " + describe_node(root));
    }
    return read(walker, EntryAccess::make("", root, "", 1));
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() || e.mark.line < 0 ? 0 : e.mark.line + 1;
    return config_error(source, line, "", "invalid YAML: " + e.msg);
  }
}

Error Walker::fail(int line, std::string_view path, std::string_view what) const {
  return config_error(source_, line, path, what);
}

// --- structure ----------------------------------------------------------------------------------

Status Walker::for_each_key(const Entry& map, std::optional<KeyList> known,
                            const EntryFn& fn) const {
  const YAML::Node& node = node_of(map);
  // A section whose entries are all commented out parses as null; treat it as empty.
  if (node.IsNull())
    return ok_status();
  if (!node.IsMap())
    return fail(map, "expected a map, got " + describe_node(node));
  std::map<std::string, int> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies on purpose: the iterator hands out a temporary pair, so references would dangle.
    const YAML::Node key_node = it->first;
    const YAML::Node value = it->second;
    const int key_line = key_line_of(map, key_node);
    if (!key_node.IsScalar())
      return fail(key_line, map.path, "expected a string key, got " + describe_node(key_node));
    const Entry entry = pair_entry(map, key_node, value);
    // yaml-cpp keeps both copies of a repeated key; silently taking one would hide a typo.
    auto [previous, inserted] = seen.emplace(entry.key, key_line);
    if (!inserted) {
      return fail(key_line, entry.path,
                  "duplicate key (first defined at line " + std::to_string(previous->second) + ")");
    }
    if (known && std::find(known->begin(), known->end(), entry.key) == known->end()) {
      return fail(key_line, entry.path, "unknown key (expected one of: " + join_list(*known) + ")");
    }
    if (Status status = fn(entry); !status)
      return status;
  }
  return ok_status();
}

Status Walker::for_each_item(const Entry& seq, std::string_view expected, ItemLine lines,
                             const EntryFn& fn) const {
  const YAML::Node& node = node_of(seq);
  if (node.IsNull())
    return ok_status();
  if (!node.IsSequence())
    return fail(seq, "expected " + std::string{expected} + ", got " + describe_node(node));
  std::size_t index = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++index) {
    const YAML::Node item = *it;
    int line = lines == ItemLine::own_line ? sequence_item_line(text_, item) : line_of(item);
    if (line == 0)
      line = seq.line;
    if (Status status =
            fn(EntryAccess::make("", item, seq.path + "[" + std::to_string(index) + "]", line));
        !status) {
      return status;
    }
  }
  return ok_status();
}

std::optional<Entry> Walker::find_key(const Entry& map, std::string_view key) const {
  const YAML::Node& node = node_of(map);
  if (!node.IsMap())
    return std::nullopt;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key_node = it->first;
    if (key_node.IsScalar() && key_node.Scalar() == key)
      return pair_entry(map, key_node, it->second);
  }
  return std::nullopt;
}

Status Walker::expect_map(const Entry& e) const {
  if (!e.is_map())
    return fail(e, "expected a map, got " + describe(e));
  return ok_status();
}

// --- scalars ------------------------------------------------------------------------------------

ember::Result<std::string> Walker::read_string(const Entry& e, bool non_empty) const {
  std::string value;
  if (e.is_scalar()) {
    value = e.scalar();
  } else if (!e.is_null()) {
    return fail(e, "expected a string, got " + describe(e));
  }
  if (non_empty && value.empty())
    return fail(e, "must not be empty");
  return value;
}

ember::Result<std::int64_t> Walker::read_int(const Entry& e, std::int64_t lo,
                                             std::int64_t hi) const {
  if (!e.is_scalar())
    return fail(e, "expected an integer, got " + describe(e));
  const std::string& text = e.scalar();
  std::int64_t value = 0;
  switch (parse_int(text, lo, hi, value)) {
    case IntText::ok: return value;
    case IntText::not_integer: return fail(e, "expected an integer, got " + quote(text));
    case IntText::out_of_range: break;
  }
  return fail(e, quote(text) + " is out of range (expected " + range_text(lo, hi) + ")");
}

ember::Result<double> Walker::read_fraction(const Entry& e) const {
  if (!e.is_scalar())
    return fail(e, "expected a number in 0..1 or a percentage, got " + describe(e));
  std::string_view text = e.scalar();
  const bool percent = text.ends_with('%');
  if (percent)
    text.remove_suffix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    return fail(e, "expected a number in 0..1 or a percentage, got " + quote(e.scalar()));
  if (percent)
    value /= 100;
  if (!(value >= 0 && value <= 1))
    return fail(e, quote(e.scalar()) + " is out of range (expected 0..1, or 0%..100%)");
  return value;
}

ember::Result<bool> Walker::read_bool(const Entry& e) const {
  // yaml-cpp would also take yes/no/on/off/y/n; those surprise people (the "Norway problem"),
  // so only the two spellings everyone reads the same way are accepted.
  if (e.is_scalar()) {
    if (e.scalar() == "true")
      return true;
    if (e.scalar() == "false")
      return false;
  }
  return fail(e, "expected true or false, got " + describe(e));
}

ember::Result<milliseconds> Walker::read_duration(const Entry& e, milliseconds lo,
                                                  std::optional<milliseconds> hi,
                                                  std::string_view expected) const {
  if (!e.is_scalar())
    return fail(e, "expected a duration such as 10ms, 1.5s or 1m30s, got " + describe(e));
  const std::string& text = e.scalar();
  ember::Result<milliseconds> parsed = parse_duration(text);
  if (!parsed)
    return fail(e, parsed.error().message());
  if (*parsed < lo || (hi && *parsed > *hi)) {
    return fail(e, quote(text) + " (" + std::to_string(parsed->count()) +
                       "ms) is out of range (expected " + std::string{expected} + ")");
  }
  return parsed;
}

ember::Result<std::size_t> Walker::read_choice(const Entry& e, KeyList names,
                                               const ChoiceRules& rules) const {
  ember::Result<std::string> value = read_string(e, rules.non_empty);
  if (!value)
    return value.error();
  const std::string wanted = rules.fold_case ? to_lower(*value) : *value;
  if (auto it = std::find(names.begin(), names.end(), wanted); it != names.end())
    return static_cast<std::size_t>(it - names.begin());
  const std::string expected =
      rules.expected.empty() ? "one of: " + join_list(names) : std::string{rules.expected};
  return fail(e, "unknown " + std::string{rules.noun} + " " + quote(*value) + " (expected " +
                     expected + ")");
}

ember::Result<HostPort> Walker::read_host_port(const Entry& e) const {
  ember::Result<std::string> text = read_string(e, /*non_empty=*/true);
  if (!text)
    return text.error();
  const std::size_t colon = text->rfind(':');
  if (colon == std::string::npos || colon == 0)
    return fail(e, "expected host:port, got " + quote(*text));
  std::string host = text->substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string digits = text->substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || port > 65535) {
    return fail(e, "expected host:port with a port in 0..65535, got " + quote(*text));
  }
  return HostPort{std::move(host), static_cast<std::uint16_t>(port), std::move(*text)};
}

ember::Result<std::map<std::string, std::string>> Walker::read_scalar_map(const Entry& e) const {
  std::map<std::string, std::string> values;
  Status status = for_each_key(e, std::nullopt, [&](const Entry& item) -> Status {
    if (item.is_map() || item.is_sequence()) {
      return fail(item, "expected a scalar value, got " + describe(item) +
                            " (Params values cannot be nested)");
    }
    values[item.key] = item.scalar();
    return ok_status();
  });
  if (!status)
    return status.error();
  return values;
}

}  // namespace ember::config
