// SPDX-License-Identifier: Apache-2.0
//
// Errors as values. Expected failures (timeouts, unknown services, bad config) are normal in a
// cluster, so they are part of signatures instead of exceptions:
//
//   ember::Result<int> parse_port(std::string_view text);
//   auto port = parse_port("80");
//   if (!port) { log.error("{}", port.error().message()); }
#pragma once

#include <ember/requires_cxx20.hpp>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ember {

// The values are numbers on the wire (replies between nodes, gateway Responses): a new code goes
// last, and last_errc moves with it.
enum class Errc : std::uint8_t {
  ok = 0,
  invalid_argument,   ///< the caller passed something unusable (bad spec, bad config value)
  not_found,          ///< no such service, module, timer or key
  already_exists,     ///< duplicate name, id or registration
  timeout,            ///< no reply before the deadline
  no_such_method,     ///< the service has no handler with that name
  bad_argument_type,  ///< the payload's type is not the method's request type
  handler_failed,     ///< the handler returned an error or threw
  overloaded,         ///< the target mailbox is over its bound
  stopping,           ///< the target (or this node) is shutting down
  cancelled,          ///< the caller cancelled the operation
  call_cycle,         ///< a nested call would wait on a service already waiting in this chain
  /// The node hosting the target went away while the request was with it, or refused this
  /// node's handshake: whether it ran is unknown.
  node_unreachable,
  bad_state,  ///< the operation is not valid in the object's current state
  io_error,   ///< reading a file or socket failed
  internal,   ///< a broken invariant inside Ember
  /// Nothing could take the request now, and it did not run: no instance of the target (a
  /// master/slave group between masters), or its node could not be reached before anything
  /// was sent. Sending it again later is safe.
  unavailable,
};
inline constexpr Errc last_errc = Errc::unavailable;

/// Stable lower_snake_case name of a code, used in logs and on the wire.
std::string_view errc_name(Errc code) noexcept;
/// Writes errc_name(code): test frameworks and streams print "timeout", not a byte.
std::ostream& operator<<(std::ostream& out, Errc code);

class Error {
 public:
  Error() = default;
  Error(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  [[nodiscard]] Errc code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// "timeout: call Room.Join took longer than 1000 ms"
  [[nodiscard]] std::string to_string() const;

 private:
  Errc code_ = Errc::internal;
  std::string message_;
};

/// A value or an Error. Shaped like std::expected<T, Error> so it can become an alias under C++23.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}      // NOLINT(implicit)
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT(implicit)

  [[nodiscard]] bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(state_); }
  Error&& error() && { return std::get<1>(std::move(state_)); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> state_;
};

/// Success or an Error, for operations without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(implicit)

  [[nodiscard]] bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  [[nodiscard]] const Error& error() const noexcept { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Status ok_status() {
  return {};
}

}  // namespace ember
