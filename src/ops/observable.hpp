// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/error.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "metrics/sink.hpp"

namespace ember::ops {

/// The arguments of an admin request (its query string), by name.
using Params = std::map<std::string, std::string, std::less<>>;

/// What an operator asked for, as the admin API passes it on: who asked (for the log line every
/// action writes) and the request's arguments.
struct Request {
  std::string_view who;
  const Params& params;
  /// The argument `name`, or nullptr.
  [[nodiscard]] const std::string* param(std::string_view name) const {
    auto it = params.find(name);
    return it == params.end() ? nullptr : &it->second;
  }
};

/// A part of a node (a subsystem) that operators can see into and act on through the node's
/// admin listener, which finds it among the node's subsystems. not_ready() runs on the listener's
/// network thread and must never wait; the others run on its request thread, one at a time, and
/// may wait for a bounded time (an action waiting for its outcome). The two threads call at the
/// same time, so the hooks must be thread-safe. None is called once the node has stopped.
///
/// JSON answers are text: each part builds its own, and the admin puts it in place.
class Observable {
 public:
  virtual ~Observable() = default;
  /// Adds this part's figures to a scrape.
  virtual void collect(metrics::Sink& sink) const { (void)sink; }
  /// A member of GET /api/node: {"<status_key()>": <status()>}. Empty key: none.
  [[nodiscard]] virtual std::string_view status_key() const { return {}; }
  [[nodiscard]] virtual std::string status() const { return "{}"; }
  /// GET /api/<topic> for a topic this part serves (JSON), or nullopt: not this part's.
  virtual std::optional<Result<std::string>> query(std::string_view topic,
                                                   const Request& request) const {
    (void)topic, (void)request;
    return std::nullopt;
  }
  /// POST /api/<action> for an action this part serves (a JSON result), or nullopt.
  virtual std::optional<Result<std::string>> act(std::string_view action, const Request& request) {
    (void)action, (void)request;
    return std::nullopt;
  }
  /// Why the node should not take traffic now ("draining", "not connected to etcd"), or "".
  [[nodiscard]] virtual std::string not_ready() const { return {}; }
};

}  // namespace ember::ops
