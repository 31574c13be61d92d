// SPDX-License-Identifier: Apache-2.0
//
// A config section as a table: each key once, with the member it sets and the reader that parses
// and bounds its value. The walker rejects keys the table does not list, naming the table's keys,
// so the accepted keys and the readers cannot drift apart. Defaults are the structs' member
// initialisers: a key that is absent leaves its member alone.
//
//   const Section<LogConfig>& logger_section() {
//     static const Section<LogConfig> section{{
//         field("Path", &LogConfig::path, Text{}),
//         field("Name", &LogConfig::name, Text{.non_empty = true}),
//     }};
//     return section;
//   }
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "config/yaml_walker.hpp"

namespace ember::config {

/// The entries of the keys a section held, for its checks after all keys are read.
class Seen {
 public:
  void add(const Entry& entry) { entries_.push_back(entry); }
  [[nodiscard]] const Entry* find(std::string_view key) const {
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [&](const Entry& e) { return e.key == key; });
    return it == entries_.end() ? nullptr : &*it;
  }

 private:
  std::vector<Entry> entries_;
};

/// One key of a section: reads the key's value into the section's T.
template <class T>
struct Field {
  std::string_view key;
  std::function<Status(const Walker&, const Entry&, T&)> read;
  /// Set: the key must be present; the error adds this hint, if not empty, in parentheses.
  std::optional<std::string_view> required_hint{};

  [[nodiscard]] Field required(std::string_view hint = {}) && {
    required_hint = hint;
    return std::move(*this);
  }
};

/// The keys of one YAML map and what has to hold once all of them are read (cross-field checks,
/// values that default to other values).
template <class T>
class Section {
 public:
  using Finish = std::function<Status(const Walker&, const Entry& section, const Seen&, T&)>;

  Section(std::initializer_list<Field<T>> fields, Finish finish = {})
      : fields_(fields), finish_(std::move(finish)) {
    for (const Field<T>& f : fields_) keys_.push_back(f.key);
  }

  [[nodiscard]] KeyList keys() const { return keys_; }

  /// Reads the map `section` into `target`: each key in document order, then the required keys,
  /// then the section's own checks.
  Status read(const Walker& walker, const Entry& section, T& target) const {
    Seen seen;
    Status status = walker.for_each_key(section, keys_, [&](const Entry& e) -> Status {
      const Field<T>& f = fields_[static_cast<std::size_t>(
          std::find(keys_.begin(), keys_.end(), e.key) - keys_.begin())];
      seen.add(e);
      return f.read(walker, e, target);
    });
    if (!status)
      return status;
    for (const Field<T>& f : fields_) {
      if (f.required_hint && seen.find(f.key) == nullptr) {
        std::string what = "missing required key";
        if (!f.required_hint->empty())
          what += " (" + std::string{*f.required_hint} + ")";
        return walker.fail(section.line, join_path(section.path, f.key), what);
      }
    }
    return finish_ ? finish_(walker, section, seen, target) : ok_status();
  }

 private:
  std::vector<Field<T>> fields_;
  std::vector<std::string_view> keys_;
  Finish finish_;
};

// --- readers: a value of the entry, or an error naming it ---------------------------------------

struct Text {
  bool non_empty = false;
  Result<std::string> operator()(const Walker& w, const Entry& e) const {
    return w.read_string(e, non_empty);
  }
};

struct Int {
  std::int64_t lo;
  std::int64_t hi;
  Result<std::int64_t> operator()(const Walker& w, const Entry& e) const {
    return w.read_int(e, lo, hi);
  }
};

struct Bool {
  Result<bool> operator()(const Walker& w, const Entry& e) const { return w.read_bool(e); }
};

/// 0..1 or a percentage.
struct Fraction {
  Result<double> operator()(const Walker& w, const Entry& e) const { return w.read_fraction(e); }
};

struct Duration {
  std::chrono::milliseconds lo;
  std::optional<std::chrono::milliseconds> hi;
  std::string_view expected;  ///< the range as the error words it: "1ms..1s"
  Result<std::chrono::milliseconds> operator()(const Walker& w, const Entry& e) const {
    return w.read_duration(e, lo, hi, expected);
  }
};

/// One of a fixed list of names, as the name itself (canonical spelling).
struct Name {
  KeyList names;
  ChoiceRules rules;
  Result<std::string> operator()(const Walker& w, const Entry& e) const {
    Result<std::size_t> index = w.read_choice(e, names, rules);
    if (!index)
      return index.error();
    return std::string{names[*index]};
  }
};

/// One of a fixed list of names, as the enumerator at the same position in `values`.
template <class E>
struct Enum {
  KeyList names;
  std::span<const E> values;
  ChoiceRules rules;
  Result<E> operator()(const Walker& w, const Entry& e) const {
    Result<std::size_t> index = w.read_choice(e, names, rules);
    if (!index)
      return index.error();
    return values[*index];
  }
};

/// A map of free scalar settings (Params).
struct ScalarMap {
  Result<std::map<std::string, std::string>> operator()(const Walker& w, const Entry& e) const {
    return w.read_scalar_map(e);
  }
};

template <class R>
struct ResultOf;
template <class V>
struct ResultOf<Result<V>> {
  using type = V;
};
/// What `Reader` reads: V for a reader returning Result<V>.
template <class Reader>
using ReadValue =
    typename ResultOf<std::invoke_result_t<const Reader&, const Walker&, const Entry&>>::type;

/// A sequence, each item read by `item`.
template <class Item>
struct List {
  std::string_view expected;  ///< "a sequence": what the error says the value should be
  Item item;
  Result<std::vector<ReadValue<Item>>> operator()(const Walker& w, const Entry& e) const {
    using Value = ReadValue<Item>;
    std::vector<Value> values;
    Status status = w.for_each_item(e, expected, ItemLine::value, [&](const Entry& it) -> Status {
      Result<Value> value = item(w, it);
      if (!value)
        return std::move(value).error();
      values.push_back(std::move(*value));
      return ok_status();
    });
    if (!status)
      return status.error();
    return values;
  }
};

template <class Item>
List<Item> list(std::string_view expected, Item item) {
  return {expected, std::move(item)};
}

/// The map's keys read by `section`, into a fresh T.
template <class T>
struct Nested {
  const Section<T>& (*section)();
  Result<T> operator()(const Walker& w, const Entry& e) const {
    T value{};
    if (Status status = section().read(w, e, value); !status)
      return status.error();
    return value;
  }
};

// --- fields -------------------------------------------------------------------------------------

/// `key`, parsed by `reader` into `member`.
template <class T, class M, class Reader>
Field<T> field(std::string_view key, M T::*member, Reader reader) {
  return {key, [member, reader](const Walker& w, const Entry& e, T& target) -> Status {
            auto value = reader(w, e);
            if (!value)
              return std::move(value).error();
            target.*member = static_cast<M>(std::move(*value));
            return ok_status();
          }};
}

/// `key` is a map whose keys `section` reads into `member`.
template <class T, class M>
Field<T> nested(std::string_view key, M T::*member, const Section<M>& (*section)()) {
  return {key, [member, section](const Walker& w, const Entry& e, T& target) -> Status {
            return section().read(w, e, target.*member);
          }};
}

/// `key` is a map whose keys `section` reads into the same T (the struct keeps them flat).
template <class T>
Field<T> nested(std::string_view key, const Section<T>& (*section)()) {
  return {key, [section](const Walker& w, const Entry& e, T& target) -> Status {
            return section().read(w, e, target);
          }};
}

}  // namespace ember::config
