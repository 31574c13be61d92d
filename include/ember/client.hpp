// SPDX-License-Identifier: Apache-2.0
//
// A game client of Ember's gateway, in C++: for tests, load-test bots and native tools. It
// speaks the protocol docs/gateway.md describes, over WebSocket or TCP, with or without TLS.
//
//   auto client = ember::client::Client::connect({.url = "ws://127.0.0.1:7000/ws",
//                                                 .token = "alice"});
//   if (!client) { ... client.error() says why: refused login, unreachable, timed out }
//   auto joined = (*client)->call<pb::Joined>("lobby.RpcJoin", join);
//   while (auto push = (*client)->next_push(std::chrono::seconds(1))) { ... }
//
// Blocking calls wait at most Options::timeout. Many clients can share one Runtime (its I/O
// threads); without one, a process-wide runtime with one thread is used.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ember::client {

/// I/O threads shared by many clients (a bot holds thousands of connections on a few threads).
class Runtime {
 public:
  explicit Runtime(int threads = 1);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

struct Pushed {
  std::string route;
  std::string payload;
};

struct Options {
  /// ws://host:port/path or wss:// (WebSocket), tcp://host:port or tls:// (length-prefixed)
  std::string url = "ws://127.0.0.1:7000/ws";
  /// With TLS: the CA (PEM) that signed the gateway's certificate; "" accepts any certificate
  /// (tests, a load test against your own server).
  std::string ca_file{};
  std::string token{};                       ///< Hello.token, for the login method
  std::string client_name = "ember-client";  ///< Hello.client
  /// Connect + login; each blocking call; and how long a request is sent again while it is
  /// answered `unavailable` (async_call too).
  std::chrono::milliseconds timeout{5000};
  std::string origin{};         ///< Origin header, as a browser sends it
  std::string local_address{};  ///< source IP to bind ("127.0.0.2"): more than 64 k connections
  Runtime* runtime = nullptr;   ///< null: a process-wide runtime with one thread
  /// Set: pushes go here, on a runtime thread, instead of the queue next_push() reads.
  std::function<void(Pushed&&)> on_push{};
  /// Keep the session across lost connections: reconnect (to `url`, then each of
  /// `resume_urls`, and the URLs of a Moving frame first) and resume it within the gateway's
  /// resume window. Requests in flight stay pending and are answered once; pushes sent meanwhile
  /// arrive, in order. Off: a lost connection fails what is in flight (io_error).
  bool resume = false;
  std::vector<std::string> resume_urls{};
};

struct Welcome {
  std::string session_id;
  std::string uid;
  std::uint32_t heartbeat_ms = 0;
  std::map<std::string, std::uint32_t> routes;
  std::chrono::milliseconds resume_window{0};  ///< 0: the gateway keeps no session for a resume
};

/// The gateway drains: reconnect to one of `urls` (none: the same address, later) within
/// `within`, once the answers of what is in flight arrived. The connection is served meanwhile.
struct Moving {
  std::vector<std::string> urls;
  std::chrono::milliseconds within{0};
};

struct Kicked {
  std::uint32_t code = 0;
  std::string reason;
};

class Client {
 public:
  /// Connects and logs in. Fails with the gateway's reason when it refuses (login_failed), or
  /// io_error / timeout.
  static Result<std::unique_ptr<Client>> connect(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// The Welcome of the login (a resume keeps the session id and UID; the route dictionary is
  /// the current gateway's). A copy: a resume may change it meanwhile.
  [[nodiscard]] Welcome welcome() const;

  /// Calls a route with a serialized request; the serialized response, or the error the
  /// gateway or the handler sent (its code as Ember's Errc). An `unavailable` answer (no
  /// instance could take it now, e.g. a master/slave group between masters; it did not run) is
  /// not returned while Options::timeout lasts: the request goes again, with the same seq,
  /// after a pause (25 ms doubling to 1 s). Other failures are returned as they come;
  /// node_unreachable and timeout mean the outcome is unknown, and are never sent again.
  Result<std::string> call_bytes(std::string_view route, std::string payload);
  template <class Response, class Request>
  Result<Response> call(std::string_view route, const Request& request) {
    Result<std::string> bytes = call_bytes(route, request.SerializeAsString());
    if (!bytes) {
      return bytes.error();
    }
    Response response;
    if (!response.ParseFromString(*bytes)) {
      return Error{Errc::bad_argument_type, "the response of " + std::string(route) +
                                                " does not parse as " + response.GetTypeName()};
    }
    return response;
  }
  /// Calls without waiting; `done` runs on a runtime thread.
  void async_call(std::string_view route, std::string payload,
                  std::function<void(Result<std::string>)> done);
  /// A request that is never answered (seq 0).
  Status notify(std::string_view route, std::string payload);
  Status heartbeat();

  /// The next push not yet taken, waiting up to `wait`.
  std::optional<Pushed> next_push(std::chrono::milliseconds wait);
  /// Set once the gateway kicked this client.
  [[nodiscard]] std::optional<Kicked> kicked() const;
  /// Set once the gateway asked this client to move to another gateway (it drains).
  [[nodiscard]] std::optional<Moving> moving() const;
  /// Waits up to `wait` for the connection to close; true when it has.
  bool wait_closed(std::chrono::milliseconds wait);
  /// Connected, or (Options::resume) about to resume.
  [[nodiscard]] bool connected() const;
  /// Leaves: tells the gateway (Bye), so the session ends now rather than waiting for a resume.
  void close();
  /// Cuts the connection without a word, as a network failure does (for tests of resume).
  void drop();
  /// With Options::resume: reconnects now (to `url`, or the last URL used) and resumes. Fails
  /// when the gateway refuses the resume (then the session is closed) or within the timeout.
  Status resume(std::string url = {});
  /// How many times the session resumed.
  [[nodiscard]] std::uint64_t resumes() const;
  /// How many times a request answered `unavailable` was sent again.
  [[nodiscard]] std::uint64_t retries() const;

  struct Impl;

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace ember::client
