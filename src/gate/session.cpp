// SPDX-License-Identifier: Apache-2.0
#include "gate/session.hpp"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <utility>  // before Boost.Asio (see io_pool.hpp)

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_core.hpp"
#include "rpc/bytes_request.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"

namespace ember::gate {

namespace {

constexpr std::uint32_t kProtocolVersion = 1;

std::shared_ptr<const std::string> serialize(const ServerFrame& frame) {
  auto bytes = std::make_shared<std::string>();
  frame.SerializeToString(bytes.get());
  return bytes;
}

std::shared_ptr<const std::string> kick_frame(KickCode code, std::string_view reason) {
  ServerFrame frame;
  frame.mutable_kick()->set_code(static_cast<std::uint32_t>(code));
  frame.mutable_kick()->set_reason(std::string(reason));
  return serialize(frame);
}

}  // namespace

/// Where a routed request's outcome goes: serialized into a Response on the worker that ran the
/// handler (the I/O thread only writes it), then handed to the session's I/O thread. The first
/// outcome wins: the handler's, or the session's own timeout for a handler that never answers.
class ClientResponder final : public detail::Responder,
                              public std::enable_shared_from_this<ClientResponder> {
 public:
  ClientResponder(std::shared_ptr<Session> session, std::uint32_t seq, std::uint32_t route_id,
                  std::chrono::steady_clock::time_point deadline)
      : session_(std::move(session)), seq_(seq), route_id_(route_id), deadline_(deadline) {}

  void deliver(detail::AnyReply result) override {
    if (answered_.exchange(true, std::memory_order_acq_rel)) {
      return;
    }
    ServerFrame frame;
    Response& response = *frame.mutable_response();
    if (result) {
      if (*result && !(*result)->SerializeToString(response.mutable_payload())) {
        response.clear_payload();
        response.set_status(static_cast<std::uint32_t>(Errc::internal));
        response.set_error("the response does not serialize");
      }
    } else {
      set_error(response, result.error());
    }
    send(frame);
  }
  /// From a service on another node: the payload goes to the client as the service serialized it.
  void deliver_serialized(Result<std::string> result) override {
    if (answered_.exchange(true, std::memory_order_acq_rel)) {
      return;
    }
    ServerFrame frame;
    Response& response = *frame.mutable_response();
    if (result) {
      response.set_payload(std::move(*result));
    } else {
      set_error(response, result.error());
    }
    send(frame);
  }
  static void set_error(Response& response, const Error& error) {
    response.set_status(static_cast<std::uint32_t>(error.code()));
    response.set_error(error.message());
  }
  void send(ServerFrame& frame) {
    frame.mutable_response()->set_seq(seq_);
    frame.mutable_response()->set_route_id(route_id_);
    std::shared_ptr<const std::string> bytes = serialize(frame);
    Session& session = *session_;
    boost::asio::post(session.link_io_,
                      [self = shared_from_this(), bytes = std::move(bytes)]() mutable {
                        self->session_->on_answered(self.get(), std::move(bytes));
                      });
  }
  [[nodiscard]] bool wants_reply() const noexcept override { return true; }
  [[nodiscard]] bool waiting() const noexcept override {
    return !answered_.load(std::memory_order_acquire);
  }

  /// The session's timeout: true when it won (the handler's answer, if any, is dropped).
  bool expire() { return !answered_.exchange(true, std::memory_order_acq_rel); }

  [[nodiscard]] std::uint32_t seq() const noexcept { return seq_; }
  [[nodiscard]] std::chrono::steady_clock::time_point deadline() const noexcept {
    return deadline_;
  }

 private:
  std::shared_ptr<Session> session_;
  std::uint32_t seq_;
  std::uint32_t route_id_;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<bool> answered_{false};
};

/// The outcome of the login method, handed to the session's I/O thread.
class LoginResponder final : public detail::Responder {
 public:
  explicit LoginResponder(std::shared_ptr<Session> session) : session_(std::move(session)) {}
  void deliver(detail::AnyReply result) override {
    if (!result) {
      finish(result.error());
    } else if (!*result || (*result)->GetDescriptor() != LoginReply::descriptor()) {
      finish(Error{Errc::bad_argument_type,
                   "the login method must return ember.gate.LoginReply, it returned " +
                       (*result ? (*result)->GetDescriptor()->full_name() : "nothing")});
    } else {
      finish(static_cast<const LoginReply&>(**result));
    }
  }
  /// From a login method on another node. (Its return type is checked there only against what
  /// the caller expects, and a serialized request names none: a reply that is not a LoginReply
  /// shows here as one that does not parse or carries no uid.)
  void deliver_serialized(Result<std::string> result) override {
    LoginReply reply;
    if (!result) {
      finish(result.error());
    } else if (!reply.ParseFromString(*result)) {
      finish(Error{Errc::bad_argument_type,
                   "the login method must return ember.gate.LoginReply; its reply does not parse "
                   "as one"});
    } else {
      finish(reply);
    }
  }
  [[nodiscard]] bool wants_reply() const noexcept override { return true; }

 private:
  void finish(Result<LoginReply> result) {
    Result<std::pair<std::string, std::map<std::string, std::string>>> outcome =
        Error{Errc::internal, "unset"};
    if (!result) {
      outcome = result.error();
    } else {
      const LoginReply& reply = *result;
      if (reply.uid().empty()) {
        outcome = Error{Errc::invalid_argument, "the login method returned no uid"};
      } else {
        outcome = std::make_pair(reply.uid(), std::map<std::string, std::string>(
                                                  reply.data().begin(), reply.data().end()));
      }
    }
    Session& session = *session_;
    boost::asio::post(session.link_io_, [s = session_, outcome = std::move(outcome)]() mutable {
      s->on_login_result(std::move(outcome));
    });
  }

  std::shared_ptr<Session> session_;
};

Session::Session(GateCore& gate, Link& link, std::string id)
    : gate_(gate), link_(&link), link_io_(link.io()), id_(std::move(id)), remote_(link.remote()) {
  live_.fetch_add(1, std::memory_order_acq_rel);
}

Session::~Session() {
  live_.fetch_sub(1, std::memory_order_acq_rel);
}

void Session::on_open(SteadyClock::time_point now) {
  deadline_ = now + gate_.config().handshake_timeout;
}

void Session::on_frame(std::string_view bytes, SteadyClock::time_point now) {
  if (phase_ == Phase::closing || link_ == nullptr) {
    return;
  }
  ClientFrame frame;
  if (!frame.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    kick_now(KickCode::protocol_error, "the frame is not an ember.gate.ClientFrame");
    return;
  }
  switch (frame.kind_case()) {
    case ClientFrame::kHello:
      if (phase_ != Phase::hello) {
        kick_now(KickCode::protocol_error, "Hello after the handshake");
        return;
      }
      on_hello(frame.hello(), now);
      return;
    case ClientFrame::kRequest:
      if (phase_ != Phase::open) {
        kick_now(KickCode::protocol_error, "a request before the login succeeded");
        return;
      }
      deadline_ = now + gate_.config().idle_timeout;
      on_request(frame.request(), now);
      return;
    case ClientFrame::kHeartbeat: {
      if (phase_ != Phase::open) {
        return;  // harmless; the handshake deadline still runs
      }
      deadline_ = now + gate_.config().idle_timeout;
      ServerFrame echo;
      echo.mutable_heartbeat()->set_client_time_ms(frame.heartbeat().client_time_ms());
      send_frame(serialize(echo));
      return;
    }
    case ClientFrame::KIND_NOT_SET: break;
  }
  kick_now(KickCode::protocol_error, "an empty or unknown frame");
}

void Session::on_hello(const Hello& hello, SteadyClock::time_point now) {
  (void)now;
  if (gate_.draining()) {
    kick_now(KickCode::shutting_down, "this server is going away: connect to another");
    return;
  }
  if (hello.version() != kProtocolVersion) {
    kick_now(KickCode::protocol_error, "protocol version " + std::to_string(hello.version()) +
                                           " is not supported (this gateway speaks " +
                                           std::to_string(kProtocolVersion) + ")");
    return;
  }
  phase_ = Phase::login;
  LoginRequest request;
  request.set_token(hello.token());
  request.set_remote_address(remote_);
  request.set_version(hello.version());
  request.set_client(hello.client());
  request.set_session_id(id_);
  login_ = std::make_unique<LoginAttempt>();
  login_->request = request.SerializeAsString();
  post_login({});
}

void Session::post_login(std::string_view avoid_node) {
  const std::string& login = gate_.config().login;
  const std::size_t dot = login.find('.');
  Result<detail::Target> target =
      gate_.target(login.substr(0, dot), DispatchKey(std::string_view(id_)), avoid_node);
  if (!target) {
    gate_.logins_failed.fetch_add(1, std::memory_order_relaxed);
    kick_now(KickCode::login_failed, "login is unavailable, try again");
    return;
  }
  ++login_->attempts;
  login_->node = target->pid().node_id;
  Context context;
  detail::ContextState& state = detail::state(context);
  state.key = DispatchKey(std::string_view(id_));
  state.trace_id = new_trace_id();
  state.deadline = Clock::now() + gate_.config().request_timeout;
  state.origin = shared_from_this();
  state.ends_with_origin = true;
  Status posted = post(*target, login.substr(dot + 1), login_->request, std::move(context),
                       std::make_shared<LoginResponder>(shared_from_this()));
  if (!posted) {
    on_login_result(posted.error());  // tries another node if that one is gone
  }
}

void Session::on_login_result(
    Result<std::pair<std::string, std::map<std::string, std::string>>> result) {
  if (phase_ != Phase::login || link_ == nullptr) {
    return;  // closed meanwhile
  }
  if (!result &&
      (result.error().code() == Errc::node_unreachable ||
       result.error().code() == Errc::stopping) &&
      login_->attempts < 3) {
    post_login(login_->node);  // that node is gone or going: its lease has not expired yet
    return;
  }
  login_.reset();
  if (!result) {
    gate_.logins_failed.fetch_add(1, std::memory_order_relaxed);
    const Error& e = result.error();
    // A refusal the login method chose reaches the client; anything else is ours to log.
    const bool refused = e.code() == Errc::handler_failed || e.code() == Errc::invalid_argument ||
                         e.code() == Errc::not_found || e.code() == Errc::bad_state;
    kick_now(KickCode::login_failed, refused ? e.message() : "login is unavailable, try again");
    return;
  }
  uid_ = std::move(result->first);
  for (auto& [k, v] : result->second) {
    set_data(k, std::move(v));
  }
  phase_ = Phase::claim;
  gate_.claim(shared_from_this());
}

void Session::on_claimed(Result<std::int64_t> revision) {
  if (revision) {
    set_binding_revision(*revision);
  }
  if (phase_ != Phase::claim || link_ == nullptr) {
    // Closed meanwhile: the binding it just wrote goes.
    if (revision) {
      gate_.release(*this);
    }
    return;
  }
  if (!revision) {
    gate_.logins_failed.fetch_add(1, std::memory_order_relaxed);
    gate_.node().log.warn("gateway: login of uid {} failed: {}", uid_,
                          revision.error().to_string());
    kick_now(KickCode::login_failed, "login is unavailable, try again");
    return;
  }
  if (replaced() || !gate_.register_uid(shared_from_this())) {
    kick_now(KickCode::replaced, "logged in on another connection");
    return;
  }
  phase_ = Phase::open;
  const SteadyClock::time_point now = SteadyClock::now();
  deadline_ = now + gate_.config().idle_timeout;
  tokens_ = static_cast<double>(gate_.config().request_burst);
  refilled_ = now;
  ServerFrame frame;
  Welcome& welcome = *frame.mutable_welcome();
  welcome.set_version(kProtocolVersion);
  welcome.set_session_id(id_);
  welcome.set_uid(uid_);
  welcome.set_heartbeat_ms(static_cast<std::uint32_t>(gate_.config().heartbeat.count()));
  welcome.set_max_frame_bytes(static_cast<std::uint32_t>(gate_.config().max_frame));
  welcome.set_max_in_flight(static_cast<std::uint32_t>(gate_.config().max_in_flight));
  for (const Route& route : gate_.dictionary()) {
    (*welcome.mutable_routes())[route.name] = route.id;
  }
  send_frame(serialize(frame));
  gate_.publish_opened(*this);
}

void Session::on_request(const Request& request, SteadyClock::time_point now) {
  const GateConfig& config = gate_.config();
  if (finishing_) {
    answer(request.seq(), Errc::stopping,
           "this server is shutting down: send it again on another connection");
    return;
  }
  // Refill the bucket for the time since the last request.
  const double elapsed = std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  tokens_ = std::min(static_cast<double>(config.request_burst),
                     tokens_ + elapsed * static_cast<double>(config.requests_per_second));
  if (tokens_ < 1.0) {
    // Answered, not dropped: a client that retries too fast learns why. One that keeps going
    // after a whole burst of refusals is not listening, and is closed.
    if (++refused_in_a_row_ > config.request_burst) {
      kick_now(KickCode::rate_limited,
               "too many requests: over " + std::to_string(config.requests_per_second) + "/s");
      return;
    }
    answer(request.seq(), Errc::overloaded,
           "rate limited: at most " + std::to_string(config.requests_per_second) + " requests/s");
    return;
  }
  tokens_ -= 1.0;
  if (in_flight_.size() >= config.max_in_flight) {
    if (++refused_in_a_row_ > config.request_burst) {
      kick_now(KickCode::too_many_requests, "too many requests in flight");
      return;
    }
    answer(request.seq(), Errc::overloaded,
           "too many requests in flight: at most " + std::to_string(config.max_in_flight));
    return;
  }
  refused_in_a_row_ = 0;
  std::optional<Route> route;
  bool named = false;
  if (request.route_id() != 0) {
    route = gate_.route_by_id(request.route_id());
    if (!route) {
      answer(request.seq(), Errc::no_such_method,
             "no route has id " + std::to_string(request.route_id()));
      return;
    }
  } else {
    Result<Route> by_name = gate_.route_by_name(request.route());
    if (!by_name) {
      answer(request.seq(), by_name.error().code(), by_name.error().message());
      return;
    }
    route = std::move(*by_name);
    named = true;
  }
  const DispatchKey key{std::string_view(uid_)};
  Result<detail::Target> target = gate_.target(route->service, key);
  if (!target) {
    answer(request.seq(), Errc::not_found, "route " + route->name + " is unavailable");
    return;
  }
  Context context;
  detail::ContextState& state = detail::state(context);
  state.key = key;
  state.trace_id = new_trace_id();
  const auto deadline = now + config.request_timeout;
  state.deadline = Clock::now() + config.request_timeout;
  state.origin = shared_from_this();
  state.ends_with_origin = true;
  std::shared_ptr<ClientResponder> responder;
  if (request.seq() != 0) {
    responder = std::make_shared<ClientResponder>(shared_from_this(), request.seq(),
                                                  named ? route->id : 0, deadline);
    in_flight_.push_back(responder);
  }
  gate_.requests.fetch_add(1, std::memory_order_relaxed);
  Status posted = post(*target, route->method, request.payload(), std::move(context), responder);
  if (!posted && responder) {
    responder->deliver(posted.error());
  }
}

void Session::answer(std::uint32_t seq, Errc code, std::string_view error, std::uint32_t route_id) {
  if (seq == 0) {
    return;  // a notification is never answered, not even with an error
  }
  ServerFrame frame;
  Response& response = *frame.mutable_response();
  response.set_seq(seq);
  response.set_status(static_cast<std::uint32_t>(code));
  response.set_error(std::string(error));
  response.set_route_id(route_id);
  send_frame(serialize(frame));
}

void Session::on_answered(ClientResponder* responder, std::shared_ptr<const std::string> frame) {
  auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                         [&](const auto& r) { return r.get() == responder; });
  if (it == in_flight_.end()) {
    return;  // timed out already, or the session closed
  }
  *it = std::move(in_flight_.back());
  in_flight_.pop_back();
  if (link_ != nullptr && phase_ == Phase::open) {
    send_frame(std::move(frame));
  }
  kick_if_finished();
}

void Session::move_elsewhere(const std::shared_ptr<const std::string>& moving) {
  if (link_ == nullptr) {
    return;
  }
  if (phase_ == Phase::open) {
    send_frame(moving);
  } else if (phase_ != Phase::closing) {
    kick_now(KickCode::shutting_down, "this server is going away: connect to another");
  }
}

void Session::finish(KickCode code, std::string reason) {
  if (link_ == nullptr || phase_ == Phase::closing) {
    return;
  }
  if (phase_ != Phase::open) {
    kick_now(code, reason);
    return;
  }
  finishing_ = std::make_unique<std::pair<KickCode, std::string>>(code, std::move(reason));
  kick_if_finished();
}

void Session::kick_if_finished() {
  if (finishing_ && in_flight_.empty()) {
    const auto [code, reason] = *finishing_;
    kick_now(code, reason);
  }
}

void Session::tick(SteadyClock::time_point now) {
  if (link_ == nullptr) {
    return;
  }
  // A client waiting for an answer is not idle: its silence is ours.
  if (phase_ == Phase::open && !in_flight_.empty() && now >= deadline_) {
    deadline_ = now + gate_.config().idle_timeout;
  }
  if (now >= deadline_) {
    if (phase_ == Phase::closing) {
      link_->abort();  // the close did not complete in time: the client stopped reading
      return;
    }
    kick_now(KickCode::timed_out,
             phase_ == Phase::open ? "idle for too long" : "no login within the handshake timeout");
    return;
  }
  for (std::size_t i = in_flight_.size(); i-- > 0;) {
    if (now < in_flight_[i]->deadline() || !in_flight_[i]->expire()) {
      continue;
    }
    const std::uint32_t seq = in_flight_[i]->seq();
    in_flight_[i] = std::move(in_flight_.back());
    in_flight_.pop_back();
    answer(seq, Errc::timeout,
           "no answer within " + std::to_string(gate_.config().request_timeout.count()) + " ms");
  }
  kick_if_finished();
}

void Session::send_frame(std::shared_ptr<const std::string> frame) {
  if (link_ == nullptr || phase_ == Phase::closing) {
    return;
  }
  if (link_->queued_bytes() + frame->size() > gate_.config().send_queue_bytes) {
    // The client does not read: nothing more will reach it, not even a kick frame.
    gate_.kicks.fetch_add(1, std::memory_order_relaxed);
    end("slow reader: " + std::to_string(gate_.config().send_queue_bytes) + " bytes unsent");
    link_->abort();
    return;
  }
  link_->send(std::move(frame));
}

void Session::kick_now(KickCode code, std::string_view reason) {
  if (link_ == nullptr || phase_ == Phase::closing) {
    return;
  }
  gate_.kicks.fetch_add(1, std::memory_order_relaxed);
  link_->send(kick_frame(code, reason));
  end(reason);
  phase_ = Phase::closing;
  deadline_ = SteadyClock::now() + std::chrono::seconds(2);  // then abort (tick)
  link_->close(reason);
}

void Session::end(std::string_view reason) {
  if (ended_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  end_reason_ = std::string(reason);
  // Requests still in flight get no answer now: their frames would not be sent anyway.
  for (auto& r : in_flight_) {
    r->expire();
  }
  in_flight_.clear();
  detail::RemoteRouter* remote = detail::Messaging::of(gate_.node()).remote();
  if (remote_nodes_ && remote != nullptr) {
    // The identity its requests carried: a login still queued has the one without a UID, and
    // once the login succeeded nothing of that one is left to drop.
    std::string identity;
    wire_identity(identity);
    for (const auto& [node, address] : *remote_nodes_) {
      remote->send_origin_ended(node, address, identity);
    }
  }
  gate_.session_ended(*this, end_reason_);
}

Status Session::post(const detail::Target& target, std::string method, std::string payload,
                     Context context, std::shared_ptr<detail::Responder> responder) {
  if (!target.anchor) {
    if (!remote_nodes_) {
      remote_nodes_ = std::make_unique<std::vector<std::pair<std::string, std::string>>>();
    }
    const Pid& pid = target.pid();
    const bool known = std::any_of(remote_nodes_->begin(), remote_nodes_->end(),
                                   [&](const auto& n) { return n.first == pid.node_id; });
    if (!known) {
      remote_nodes_->emplace_back(pid.node_id, pid.address);
    }
  }
  return detail::post_bytes_request(gate_.node(), target, std::move(method), std::move(payload),
                                    std::move(context), std::move(responder));
}

bool Session::wire_identity(std::string& out) const {
  SessionIdentity identity;
  identity.set_session_id(id_);
  identity.set_uid(uid_);
  identity.set_gate_node(gate_node());
  return identity.SerializeToString(&out);
}

const std::string& Session::gate_node() const noexcept {
  return gate_.node().config.node_id;
}

void Session::on_link_closed() {
  end(end_reason_.empty() ? "the connection closed" : end_reason_);
  link_ = nullptr;
}

void Session::post_frame(std::shared_ptr<const std::string> frame) {
  boost::asio::post(link_io_, [s = shared_from_this(), frame = std::move(frame)]() mutable {
    if (s->phase_ == Phase::open) {
      s->send_frame(std::move(frame));
    }
  });
}

void Session::replace() {
  if (replaced_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  gate_.replaced.fetch_add(1, std::memory_order_relaxed);
  post_kick(KickCode::replaced, "logged in on another connection");
}

void Session::post_claimed(Result<std::int64_t> revision) {
  boost::asio::post(link_io_, [s = shared_from_this(), revision = std::move(revision)]() mutable {
    s->on_claimed(std::move(revision));
  });
}

void Session::post_kick(KickCode code, std::string reason) {
  boost::asio::post(link_io_, [s = shared_from_this(), code, reason = std::move(reason)] {
    s->kick_now(code, reason);
  });
}

Result<std::string> Session::data(std::string_view key) const {
  std::lock_guard lock(data_mu_);
  if (data_) {
    if (const auto it = data_->find(key); it != data_->end()) {
      return it->second;
    }
  }
  return Error{Errc::not_found, "session " + id_ + " has no data '" + std::string(key) + "'"};
}

void Session::set_data(std::string_view key, std::string value) {
  std::lock_guard lock(data_mu_);
  if (!data_) {
    data_ = std::make_unique<std::map<std::string, std::string, std::less<>>>();
  }
  data_->insert_or_assign(std::string(key), std::move(value));
}

}  // namespace ember::gate
