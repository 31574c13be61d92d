// SPDX-License-Identifier: Apache-2.0
//
// Walks one YAML document for the config readers: the keys of a map in document order, each with
// the line and key path an error should name, and readers that turn a value into a typed one or
// into an error worded for operators ("node.yaml:7: NodeConf.WorkerThreads: ..."). The only code
// that sees yaml-cpp; the sections above it are tables of keys and readers.
#pragma once

#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ember::config {

using KeyList = std::span<const std::string_view>;

/// One key/value pair of a YAML map, or one item of a sequence (key ""), with what the readers
/// need to word their errors.
class Entry {
 public:
  std::string key;
  std::string path;  ///< full key path: "ServiceConf.StartServices[1].WorkerConf"
  int line = 0;      ///< where the value is, falling back to the key when the value has no position

  [[nodiscard]] bool is_null() const;
  [[nodiscard]] bool is_scalar() const;
  [[nodiscard]] bool is_map() const;
  [[nodiscard]] bool is_sequence() const;
  /// The scalar's text; "" when the value is not a scalar.
  [[nodiscard]] const std::string& scalar() const;

 private:
  friend struct EntryAccess;  // builds entries and reads their value, beside yaml-cpp
  struct Value;
  std::shared_ptr<const Value> value_;
};

/// The value as an error message shows it: "'text'", "a map", "an empty value"...
std::string describe(const Entry& entry);

/// Scalars are echoed back in messages; a pasted blob should not swamp the log line.
std::string quote(std::string_view text);
std::string join_path(std::string_view parent, std::string_view key);
std::string join_list(KeyList names);

/// "source:line: path: what", the shape of every config error. `line` 0 and an empty `path`
/// are left out; an empty source reads "<config>".
Error config_error(std::string_view source, int line, std::string_view path, std::string_view what,
                   Errc code = Errc::invalid_argument);

/// `text` as a whole integer within lo..hi, or nothing: what read_int accepts, for readers that
/// word their own message.
std::optional<std::int64_t> int_in_range(std::string_view text, std::int64_t lo, std::int64_t hi);

/// How read_choice matches and words a value that is none of its names.
struct ChoiceRules {
  std::string_view noun;      ///< "unknown <noun> 'x'"
  bool non_empty = false;     ///< an empty value is "must not be empty", not an unknown name
  bool fold_case = false;     ///< "DEBUG" matches "debug"
  std::string_view expected;  ///< "(expected <expected>)"; "" = "one of: <names>"
};

/// The host and port of a "host:port" value, and the value as written.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  std::string text;
};

/// Where a sequence item's errors point. yaml-cpp places an empty item ("-" alone) at the next
/// token, often on a later line; `own_line` walks back to the "-".
enum class ItemLine : std::uint8_t {
  value,     ///< where yaml-cpp puts the item's value
  own_line,  ///< the item's own "-" line, also when the item is empty
};

class Walker {
 public:
  using EntryFn = std::function<Status(const Entry&)>;

  /// Reads `text` as a single YAML document and calls `read` with its top-level map (key "",
  /// path "", line 1). An empty document calls nothing: all defaults apply. Errors, including
  /// YAML syntax errors, name `source` and the line.
  static Status walk(std::string_view text, std::string_view source,
                     const std::function<Status(const Walker&, const Entry&)>& read);

  [[nodiscard]] Error fail(int line, std::string_view path, std::string_view what) const;
  [[nodiscard]] Error fail(const Entry& e, std::string_view what) const {
    return fail(e.line, e.path, what);
  }

  /// Calls `fn` with each key of the map `map` in document order, so the first problem in the
  /// file is the one reported. Keys must be strings and unique; with `known`, one of those
  /// (an error lists them). An empty value is an empty map.
  Status for_each_key(const Entry& map, std::optional<KeyList> known, const EntryFn& fn) const;
  /// Calls `fn` with each item of the sequence `seq`, path "<seq>[i]". An empty value is an
  /// empty sequence; anything else is an error naming `expected`.
  Status for_each_item(const Entry& seq, std::string_view expected, ItemLine lines,
                       const EntryFn& fn) const;
  /// The entry of `key` in the map `map`, found as for_each_key would.
  [[nodiscard]] std::optional<Entry> find_key(const Entry& map, std::string_view key) const;
  /// A map, and not an empty value.
  Status expect_map(const Entry& e) const;

  Result<std::string> read_string(const Entry& e, bool non_empty = false) const;
  Result<std::int64_t> read_int(const Entry& e, std::int64_t lo, std::int64_t hi) const;
  /// A number in 0..1 ("0.75"), or a percentage ("75%").
  Result<double> read_fraction(const Entry& e) const;
  Result<bool> read_bool(const Entry& e) const;
  /// A duration (see parse_duration) within lo..hi (no upper bound without `hi`); `expected`
  /// words the range in the error.
  Result<std::chrono::milliseconds> read_duration(const Entry& e, std::chrono::milliseconds lo,
                                                  std::optional<std::chrono::milliseconds> hi,
                                                  std::string_view expected) const;
  /// One of `names`: the index of the one matched.
  Result<std::size_t> read_choice(const Entry& e, KeyList names, const ChoiceRules& rules) const;
  /// "host:port" or "[v6]:port"; port 0..65535.
  Result<HostPort> read_host_port(const Entry& e) const;
  /// A map of free-form scalar settings (Params): any key, values not nested.
  Result<std::map<std::string, std::string>> read_scalar_map(const Entry& e) const;

 private:
  Walker(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  std::string_view text_;
  std::string_view source_;
};

}  // namespace ember::config
