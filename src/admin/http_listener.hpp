// SPDX-License-Identifier: Apache-2.0
// The admin listener's HTTP server: Boost.Beast on a network thread of its own, so that a node
// whose workers are stuck still answers its probes and says so, and a request thread for what may
// wait (an action waiting for its outcome, a scrape), so that the probes never queue behind it.
#pragma once

#include <ember/error.hpp>
#include <ember/log.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ops/observable.hpp"

namespace ember::admin {

struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string path;    ///< without the query string
  ops::Params query;   ///< decoded
  std::string authorization;
  std::string operator_name;  ///< X-Ember-Operator, for the action log
  std::string host;           ///< the Host header, empty without one
  std::string origin;         ///< the Origin header a browser sends, empty without one
  std::string peer;           ///< "ip:port" of the client
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string www_authenticate;  ///< set on 401
};

class HttpListener {
 public:
  /// Runs on the network thread: answers what needs no waiting (probes, refusals) or returns
  /// nullopt to pass the request on to the Handler. Must never block.
  using Prompt = std::function<std::optional<HttpResponse>(const HttpRequest&)>;
  /// Runs on the request thread, one request at a time: may wait.
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  /// Listens on "host:port" and starts its threads. Errors: io_error naming the address.
  static Result<std::unique_ptr<HttpListener>> open(const std::string& address, Prompt prompt,
                                                    Handler handler, Logger log);
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  /// host:port it listens on (the chosen port when the config asked for 0).
  [[nodiscard]] std::string address() const;
  /// Closes the listener and every connection and joins the threads. A request in progress on
  /// the request thread runs to its end, but its answer may not be sent; requests still queued
  /// do not run. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit HttpListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Decodes %XX and '+' of a query string component.
std::string url_decode(std::string_view text);
/// Splits "a=1&b=x%20y" into decoded pairs.
ops::Params parse_query(std::string_view query);

}  // namespace ember::admin
