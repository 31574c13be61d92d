// SPDX-License-Identifier: Apache-2.0
#include "gate/session.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

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

std::shared_ptr<const std::string> response_frame(std::uint32_t seq, Errc code,
                                                  std::string_view error,
                                                  std::uint32_t route_id = 0) {
  ServerFrame frame;
  Response& response = *frame.mutable_response();
  response.set_seq(seq);
  response.set_status(static_cast<std::uint32_t>(code));
  response.set_error(std::string(error));
  response.set_route_id(route_id);
  return serialize(frame);
}

void put_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

/// A Push frame (ServerFrame field 3, length-delimited) with Push.seq (field 4) appended: the
/// payload encoded once for many sessions is copied, not encoded again.
std::shared_ptr<const std::string> numbered_push(const std::string& frame, std::uint64_t seq) {
  std::size_t at = 1;  // after the tag byte 0x1a
  std::uint64_t length = 0;
  for (int shift = 0; at < frame.size() && shift < 64; shift += 7) {
    const auto byte = static_cast<std::uint8_t>(frame[at++]);
    length |= std::uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80u) == 0) {
      break;
    }
  }
  std::string seq_field;
  seq_field.push_back(static_cast<char>(0x20));  // field 4, varint
  put_varint(seq_field, seq);
  auto out = std::make_shared<std::string>();
  out->reserve(frame.size() + seq_field.size() + 2);
  out->push_back(frame[0]);
  put_varint(*out, length + seq_field.size());
  out->append(frame, at, std::string::npos);
  out->append(seq_field);
  return out;
}

std::string random_secret() {
  std::string secret(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()),
                 static_cast<int>(secret.size())) != 1) {
    throw std::runtime_error("the random generator failed");
  }
  return secret;
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
  void set_error(Response& response, const Error& error) {
    // Only `unavailable` promises it did not run. A backend's `stopping` does not: a coroutine
    // handler destroyed by its service's stop may have done part of its work.
    may_have_run_ = error.code() != Errc::unavailable;
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
  /// False when the answer says the request did not run (unavailable): a resumable session does
  /// not replay it, so the client's second try runs.
  [[nodiscard]] bool may_have_run() const noexcept { return may_have_run_; }
  [[nodiscard]] std::chrono::steady_clock::time_point deadline() const noexcept {
    return deadline_;
  }

 private:
  std::shared_ptr<Session> session_;
  std::uint32_t seq_;
  std::uint32_t route_id_;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<bool> answered_{false};
  bool may_have_run_ = true;  // written before the answer is posted to the I/O thread
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
      if (resume_) {
        forget_acknowledged(frame.heartbeat().ack(), frame.heartbeat().push_seq());
      }
      ServerFrame echo;
      echo.mutable_heartbeat()->set_client_time_ms(frame.heartbeat().client_time_ms());
      send_frame(serialize(echo));
      return;
    }
    case ClientFrame::kBye: leave(); return;
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
  if (hello.resumable() && gate_.config().resume_window.count() > 0) {
    resume_ = std::make_unique<Resumable>();
    resume_->secret = random_secret();
  }
  if (!hello.resume_session().empty()) {
    if (!resume_) {
      kick_now(KickCode::resume_failed, hello.resumable()
                                            ? "this gateway does not resume sessions: log in"
                                            : "a resume needs Hello.resumable");
      return;
    }
    phase_ = Phase::resuming;
    // The handover waits up to RequestTimeout for the session's requests in flight.
    deadline_ = std::max(
        deadline_, SteadyClock::now() + gate_.config().request_timeout + std::chrono::seconds(3));
    take_id(hello.resume_session());
    gate_.resume(shared_from_this(), hello.resume_token(), hello.last_push_seq());
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
  state.edit().origin = shared_from_this();
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
       result.error().code() == Errc::unavailable || result.error().code() == Errc::stopping) &&
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
  if (revision && phase_ == Phase::claim && link_ == nullptr && resume_ && resume_->resumed &&
      !ended()) {
    // A resume whose new connection was lost too: the session waits for the next one.
    if (gate_.register_uid(shared_from_this())) {
      phase_ = Phase::open;
      detach();
    } else {
      end("logged in on another connection");
    }
    return;
  }
  if (phase_ != Phase::claim || link_ == nullptr) {
    // Closed meanwhile: the binding it just wrote goes.
    if (revision) {
      gate_.release(*this);
    }
    if (resume_ && resume_->resumed && !ended()) {
      end("the connection closed while the session resumed");  // its one close event
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
  gate_.logins.fetch_add(1, std::memory_order_relaxed);
  welcome();
}

void Session::welcome() {
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
  if (resume_) {
    ResumeTicket ticket;
    ticket.set_gate_node(gate_node());
    ticket.set_secret(resume_->secret);
    ticket.SerializeToString(welcome.mutable_resume_token());
    welcome.set_resumed(resume_->resumed);
    welcome.set_resume_window_ms(static_cast<std::uint32_t>(gate_.config().resume_window.count()));
  }
  send_frame(serialize(frame));
  if (resume_ && resume_->resumed) {
    // What the client missed, in order, then what came while the session moved.
    for (const auto& [seq, push] : resume_->pushes) {
      send_frame(push);
    }
    std::vector<std::shared_ptr<const std::string>> early = std::move(resume_->early);
    for (const auto& push : early) {
      give_push(push);
    }
    return;
  }
  gate_.publish_opened(*this);
}

void Session::on_request(const Request& request, SteadyClock::time_point now) {
  const GateConfig& config = gate_.config();
  if (resume_ && answered_before(request)) {
    return;
  }
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
    gate_.count_limit(GateCore::Limit::rate);
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
    gate_.count_limit(GateCore::Limit::in_flight);
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
    // Between masters of a group, or while its instances restart: the client sends it again.
    answer(request.seq(), Errc::unavailable,
           "route " + route->name + " has no instance now (" + target.error().message() +
               "): it did not run, send it again");
    return;
  }
  Context context;
  detail::ContextState& state = detail::state(context);
  state.key = key;
  state.trace_id = new_trace_id();
  if (gate_.node().log.enabled(LogLevel::debug)) {
    // The first line of the request's path: grep its trace id over every node's log.
    TraceScope trace(state.trace_id);
    gate_.node().log.debug("gateway: uid {} calls {} (seq {})", uid_, route->name, request.seq());
  }
  const auto deadline = now + config.request_timeout;
  state.deadline = Clock::now() + config.request_timeout;
  state.edit().origin = shared_from_this();
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
    // Refused at once: it did not run. A service that is stopping here is, to the client, one
    // instance fewer (send it again), not this gateway stopping (move elsewhere).
    responder->deliver(posted.error().code() == Errc::stopping
                           ? Error{Errc::unavailable, posted.error().message()}
                           : posted.error());
  }
}

void Session::answer(std::uint32_t seq, Errc code, std::string_view error, std::uint32_t route_id) {
  if (seq == 0) {
    return;  // a notification is never answered, not even with an error
  }
  // Not kept for a resume: a request the gateway refused did not run, and may be sent again.
  note_refused(seq);
  send_frame(response_frame(seq, code, error, route_id));
}

void Session::note_refused(std::uint32_t seq) {
  if (!resume_ || seq == 0) {
    return;
  }
  // A client that never acknowledges cannot grow it: past the bound, a refused request sent
  // again below forgotten_through is answered "outcome no longer known" (it did not run).
  constexpr std::size_t kRefusedKept = 1024;
  if (resume_->refused.size() == kRefusedKept) {
    resume_->refused.pop_front();
  }
  resume_->refused.push_back(seq);
}

bool Session::answered_before(const Request& request) {
  Resumable& r = *resume_;
  forget_acknowledged(request.ack(), 0);
  const std::uint32_t seq = request.seq();
  if (seq == 0 || seq > r.highest_seq) {
    r.highest_seq = std::max(r.highest_seq, seq);
    return false;
  }
  // Sent again, after a resume or a retryable failure: it runs at most once.
  for (const auto& [answered, frame] : r.answers) {
    if (answered == seq) {
      send_frame(frame);
      return true;
    }
  }
  if (std::any_of(in_flight_.begin(), in_flight_.end(),
                  [seq](const auto& f) { return f->seq() == seq; })) {
    return true;  // still running: its answer comes once
  }
  if (auto it = std::find(r.refused.begin(), r.refused.end(), seq); it != r.refused.end()) {
    r.refused.erase(it);
    return false;  // refused before it ran: it runs now
  }
  if (seq <= r.forgotten_through) {
    // Not answer(): it may have run, so it is not a refusal to run again later.
    send_frame(response_frame(
        seq, Errc::bad_state,
        "the outcome of request " + std::to_string(seq) +
            " is no longer known (more unacknowledged answers than ResumeBufferBytes holds)"));
    return true;
  }
  return false;  // refused before it ran (rate, in flight, route): it runs now
}

void Session::forget_acknowledged(std::uint32_t ack, std::uint64_t push_seq) {
  Resumable& r = *resume_;
  for (auto it = r.answers.begin(); ack != 0 && it != r.answers.end();) {
    if (it->first < ack) {
      r.bytes -= it->second->size();
      it = r.answers.erase(it);
    } else {
      ++it;
    }
  }
  if (ack != 0) {
    // Answers arrive out of order, so refusals do too: the client has all below `ack`.
    std::erase_if(r.refused, [ack](std::uint32_t seq) { return seq < ack; });
  }
  while (!r.pushes.empty() && r.pushes.front().first <= push_seq) {
    r.bytes -= r.pushes.front().second->size();
    r.pushes.pop_front();
  }
}

void Session::make_room() {
  Resumable& r = *resume_;
  const std::size_t limit = gate_.config().resume_buffer_bytes;
  while (r.bytes > limit && !(r.pushes.empty() && r.answers.empty())) {
    // Pushes go first (a resume that needs one then fails and the client logs in again), then
    // answers (a request sent again whose answer went is told its outcome is unknown).
    if (!r.pushes.empty()) {
      r.pushes_dropped_through = r.pushes.front().first;
      r.bytes -= r.pushes.front().second->size();
      r.pushes.pop_front();
    } else {
      r.forgotten_through = std::max(r.forgotten_through, r.answers.front().first);
      r.bytes -= r.answers.front().second->size();
      r.answers.pop_front();
    }
  }
}

void Session::deliver_answer(std::uint32_t seq, std::shared_ptr<const std::string> frame,
                             bool keep) {
  if (resume_ && keep && seq != 0) {
    resume_->bytes += frame->size();
    resume_->answers.emplace_back(seq, frame);
    make_room();
  } else if (!keep) {
    note_refused(seq);
  }
  if (link_ != nullptr && phase_ == Phase::open) {
    send_frame(std::move(frame));
  }
}

void Session::on_answered(ClientResponder* responder, std::shared_ptr<const std::string> frame) {
  auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                         [&](const auto& r) { return r.get() == responder; });
  if (it == in_flight_.end()) {
    return;  // timed out already, or the session closed
  }
  const std::uint32_t seq = (*it)->seq();
  const bool keep = (*it)->may_have_run();
  *it = std::move(in_flight_.back());
  in_flight_.pop_back();
  deliver_answer(seq, std::move(frame), keep);
  kick_if_finished();
  complete_handover_if_quiet();
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
  if (phase_ == Phase::detached) {
    if (!resume_->handover) {
      end(reason);  // the node stops: no resume will come here
    }
    return;  // one under way completes (bounded by RequestTimeout): the session lives on
  }
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
  // A detached session is not kicked: its handover, or its window, decides how it ends.
  if (finishing_ && in_flight_.empty() && phase_ != Phase::detached) {
    const auto [code, reason] = *finishing_;
    kick_now(code, reason);
  }
}

void Session::tick(SteadyClock::time_point now) {
  if (phase_ == Phase::detached) {
    expire_overdue(now);
    if (!resume_->handover && now >= resume_->detached_until) {
      end("the connection was lost and the client did not resume within " +
          std::to_string(gate_.config().resume_window.count()) + " ms");
    }
    return;
  }
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
  expire_overdue(now);
  kick_if_finished();
}

void Session::expire_overdue(SteadyClock::time_point now) {
  for (std::size_t i = in_flight_.size(); i-- > 0;) {
    if (now < in_flight_[i]->deadline() || !in_flight_[i]->expire()) {
      continue;
    }
    const std::uint32_t seq = in_flight_[i]->seq();
    in_flight_[i] = std::move(in_flight_.back());
    in_flight_.pop_back();
    // Kept for a resume like any answer: the handler may still run, so a request sent again
    // must not run a second time.
    deliver_answer(
        seq,
        response_frame(
            seq, Errc::timeout,
            "no answer within " + std::to_string(gate_.config().request_timeout.count()) + " ms"),
        /*keep=*/true);
  }
  complete_handover_if_quiet();
}

void Session::send_frame(std::shared_ptr<const std::string> frame) {
  if (link_ == nullptr || phase_ == Phase::closing) {
    return;
  }
  if (link_->queued_bytes() + frame->size() > gate_.config().send_queue_bytes) {
    // The client does not read: nothing more will reach it, not even a kick frame.
    gate_.kicks.fetch_add(1, std::memory_order_relaxed);
    gate_.count_limit(GateCore::Limit::send_queue);
    end("slow reader: " + std::to_string(gate_.config().send_queue_bytes) + " bytes unsent");
    link_->abort();
    return;
  }
  link_->send(std::move(frame));
}

void Session::kick_now(KickCode code, std::string_view reason) {
  if (resume_ && resume_->handed_over) {
    // Meant for the session, which lives on in its successor on this gateway.
    if (auto successor = resume_->successor.lock()) {
      if (code == KickCode::replaced) {
        successor->replace();
      } else {
        successor->post_kick(code, std::string(reason));
      }
    }
    return;
  }
  if (phase_ == Phase::detached) {
    end(reason);  // kicked or replaced while waiting for a resume
    return;
  }
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
  if (phase_ == Phase::detached) {
    phase_ = Phase::closing;
    set_detached(false);
    gate_.unwatch(*this);
  }
  if (resume_ && resume_->handover) {
    auto handover = std::move(resume_->handover);
    handover->second(Error{Errc::not_found, "the session ended: " + end_reason_});
  }
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
  link_ = nullptr;
  if (resume_ && (resume_->handed_over || resume_->handover ||
                  (phase_ == Phase::open && !finishing_ && !ended()))) {
    detach();
    complete_handover_if_quiet();  // one waited for this connection to close
    return;
  }
  if (phase_ == Phase::resuming || (phase_ == Phase::claim && resume_ && resume_->resumed)) {
    return;  // the resume completes, and the session it brings is detached then
  }
  end(end_reason_.empty() ? "the connection closed" : end_reason_);
}

void Session::detach() {
  if (phase_ == Phase::detached || (resume_->handed_over && phase_ == Phase::closing)) {
    return;
  }
  phase_ = Phase::detached;
  resume_->detached_until = SteadyClock::now() + gate_.config().resume_window;
  set_detached(true);
  gate_.watch(*this);  // ticked for the window and for its requests' deadlines
  // Pushes that came while a resume was under way, whose connection is gone too.
  std::vector<std::shared_ptr<const std::string>> early = std::move(resume_->early);
  for (const auto& push : early) {
    give_push(push);
  }
}

void Session::set_detached(bool detached) {
  if (detached_.exchange(detached, std::memory_order_acq_rel) != detached) {
    gate_.detached_now.fetch_add(detached ? 1 : -1, std::memory_order_acq_rel);
  }
}

void Session::leave() {
  if (link_ == nullptr || phase_ == Phase::closing) {
    return;
  }
  end("the client left");
  phase_ = Phase::closing;
  deadline_ = SteadyClock::now() + std::chrono::seconds(2);  // then abort (tick)
  link_->close("bye");
}

void Session::post_push(std::shared_ptr<const std::string> frame, PushDone delivered,
                        bool forwarded) {
  boost::asio::post(link_io_, [s = shared_from_this(), frame = std::move(frame),
                               delivered = std::move(delivered), forwarded]() mutable {
    s->on_push(std::move(frame), std::move(delivered), forwarded);
  });
}

void Session::hold_pushes_until_drained(const std::shared_ptr<Session>& predecessor) {
  holding_pushes_.store(true, std::memory_order_release);
  // Behind every push already queued on the predecessor's thread (GateCore posts pushes under
  // the registry lock, and the registry moves here right after this): by the time this runs,
  // they have all been passed on to this session's thread, in order.
  boost::asio::post(predecessor->link_io_, [successor = shared_from_this()] {
    boost::asio::post(successor->link_io_, [successor] { successor->release_held_pushes(); });
  });
}

void Session::release_held_pushes() {
  holding_pushes_.store(false, std::memory_order_release);
  std::vector<std::shared_ptr<const std::string>> held = std::move(held_pushes_);
  for (auto& frame : held) {
    on_push(std::move(frame), {}, true);
  }
}

void Session::on_push(std::shared_ptr<const std::string> frame, PushDone delivered,
                      bool forwarded) {
  if (!forwarded && holding_pushes_.load(std::memory_order_acquire)) {
    // Its predecessor may still hold earlier pushes for the client: this one waits for them.
    if (delivered) {
      delivered({});
    }
    held_pushes_.push_back(std::move(frame));
    return;
  }
  if (resume_ && resume_->handed_over) {
    // It reached this object after the session moved: it goes where the session went.
    if (auto successor = resume_->successor.lock()) {
      successor->post_push(std::move(frame), std::move(delivered), /*forwarded=*/true);
    } else if (!resume_->successor_node.empty()) {
      gate_.forward_push(resume_->successor_node, id_, *frame, std::move(delivered));
    } else if (delivered) {
      delivered(Error{Errc::not_found, "the session " + id_ + " has moved"});
    }
    return;
  }
  if (delivered) {
    delivered({});  // on its way to the client, or kept for its resume
  }
  if (phase_ == Phase::resuming || (phase_ == Phase::claim && resume_ && resume_->resumed)) {
    resume_->early.push_back(std::move(frame));  // the Welcome has not gone out yet
    return;
  }
  if (resume_ && (phase_ == Phase::open || phase_ == Phase::detached)) {
    give_push(frame);
    return;
  }
  if (phase_ == Phase::open) {
    send_frame(std::move(frame));
  }
}

void Session::give_push(const std::shared_ptr<const std::string>& frame) {
  Resumable& r = *resume_;
  auto numbered = numbered_push(*frame, ++r.push_seq);
  r.bytes += numbered->size();
  r.pushes.emplace_back(r.push_seq, numbered);
  make_room();
  if (link_ != nullptr && phase_ == Phase::open) {
    send_frame(std::move(numbered));
  }
}

void Session::post_handover(std::string secret, std::uint64_t last_push_seq, HandoverDone done) {
  boost::asio::post(link_io_, [s = shared_from_this(), secret = std::move(secret), last_push_seq,
                               done = std::move(done)]() mutable {
    s->on_handover(std::move(secret), last_push_seq, std::move(done));
  });
}

void Session::on_handover(std::string secret, std::uint64_t last_push_seq, HandoverDone done) {
  if (!resume_ || resume_->handed_over || ended() ||
      (phase_ != Phase::open && phase_ != Phase::detached)) {
    done(Error{Errc::not_found, "the session " + id_ + " has ended"});
    return;
  }
  if (secret.size() != resume_->secret.size() ||
      CRYPTO_memcmp(secret.data(), resume_->secret.data(), secret.size()) != 0) {
    done(Error{Errc::invalid_argument, "wrong resume token"});
    return;
  }
  if (resume_->handover) {
    done(Error{Errc::already_exists, "another connection is resuming this session"});
    return;
  }
  if (last_push_seq > resume_->push_seq || last_push_seq < resume_->pushes_dropped_through) {
    done(Error{Errc::bad_state, last_push_seq > resume_->push_seq
                                    ? "the client has pushes this session never sent"
                                    : "pushes the client missed were dropped "
                                      "(ResumeBufferBytes): log in again"});
    return;
  }
  resume_->handover =
      std::make_unique<std::pair<std::uint64_t, HandoverDone>>(last_push_seq, std::move(done));
  if (link_ != nullptr) {
    // Its client is elsewhere now (this connection's loss was not noticed yet): nothing more
    // comes from it, and its close detaches the session until the handover completes.
    link_->abort();
  } else {
    complete_handover_if_quiet();
  }
}

void Session::complete_handover_if_quiet() {
  if (!resume_ || !resume_->handover || !in_flight_.empty() || phase_ != Phase::detached) {
    return;
  }
  auto waiter = std::move(resume_->handover);
  Resumable& r = *resume_;
  if (waiter->first < r.pushes_dropped_through) {
    // Pushes came while it waited for its requests, more than ResumeBufferBytes holds.
    waiter->second(
        Error{Errc::bad_state,
              "pushes the client missed were dropped (ResumeBufferBytes): log in again"});
    return;
  }
  auto handover = std::make_shared<SessionHandover>();
  handover->set_uid(uid_);
  {
    std::lock_guard lock(data_mu_);
    if (data_) {
      for (const auto& [k, v] : *data_) {
        (*handover->mutable_data())[k] = v;
      }
    }
  }
  for (const std::string& group : gate_.groups_of(*this)) {
    handover->add_groups(group);
  }
  handover->set_push_seq(r.push_seq);
  for (const auto& [seq, push] : r.pushes) {
    if (seq > waiter->first) {
      handover->add_pushes(*push);
    }
  }
  for (const auto& [seq, frame] : r.answers) {
    AnswerRecord& record = *handover->add_answers();
    record.set_seq(seq);
    record.set_frame(*frame);
  }
  handover->set_highest_seq(r.highest_seq);
  handover->set_forgotten_through(r.forgotten_through);
  for (std::uint32_t seq : r.refused) {
    handover->add_refused(seq);
  }
  handover->set_binding_revision(binding_revision());
  handover->set_secret(r.secret);
  if (remote_nodes_) {
    for (const auto& [node, address] : *remote_nodes_) {
      NodeAddress& a = *handover->add_remote_nodes();
      a.set_node(node);
      a.set_address(address);
    }
  }
  // Ends silently: the session lives on in its new connection, so no close event, no release of
  // its binding, and no word to the nodes its requests went to.
  r.handed_over = true;
  r.pushes.clear();
  r.answers.clear();
  r.bytes = 0;
  ended_.store(true, std::memory_order_release);
  set_detached(false);
  phase_ = Phase::closing;
  gate_.unwatch(*this);
  waiter->second(std::move(handover));
}

void Session::post_resumed(Result<std::shared_ptr<SessionHandover>> handover, bool same_gateway) {
  boost::asio::post(
      link_io_, [s = shared_from_this(), handover = std::move(handover), same_gateway]() mutable {
        s->on_resumed(std::move(handover), same_gateway);
      });
}

void Session::on_resumed(Result<std::shared_ptr<SessionHandover>> handover, bool same_gateway) {
  if (!handover) {
    gate_.resume_failed(*this);
    if (link_ != nullptr && phase_ == Phase::resuming) {
      const Error& e = handover.error();
      kick_now(KickCode::resume_failed,
               "cannot resume: " +
                   (e.code() == Errc::timeout || e.code() == Errc::stopping ||
                            e.code() == Errc::node_unreachable || e.code() == Errc::unavailable
                        ? std::string("its gateway did not answer")
                        : e.message()) +
                   "; log in again");
    }
    return;
  }
  adopt(**handover, same_gateway);
  if (ended()) {
    // Closed while the session moved here (a protocol error, the handshake deadline): the session
    // it brought ends now, with the close event its backends expect.
    ended_.store(false, std::memory_order_release);
    end(end_reason_);
    return;
  }
  if (same_gateway) {
    if (replaced()) {
      if (link_ != nullptr) {
        kick_now(KickCode::replaced, "logged in on another connection");
      } else {
        end("logged in on another connection");
      }
      return;
    }
    if (link_ == nullptr) {
      phase_ = Phase::open;
      detach();  // this connection was lost too: the session waits for the next resume
      return;
    }
    welcome();
    return;
  }
  // Its directory binding comes here, as a login's does; then the Welcome.
  phase_ = Phase::claim;
  gate_.claim(shared_from_this());
}

void Session::adopt(const SessionHandover& handover, bool same_gateway) {
  uid_ = handover.uid();
  for (const auto& [k, v] : handover.data()) {
    set_data(k, v);
  }
  Resumable& r = *resume_;
  r.resumed = true;
  // The client's token keeps working if this connection is lost before its Welcome arrives.
  r.secret = handover.secret();
  r.push_seq = handover.push_seq();
  for (const std::string& push : handover.pushes()) {
    // Numbered already: the seq is the frame's last field, but only the order matters here.
    r.bytes += push.size();
    r.pushes.emplace_back(0, std::make_shared<const std::string>(push));
  }
  // Their seqs are not needed again: acknowledgements only trim what is ahead of them.
  std::uint64_t seq = r.push_seq - static_cast<std::uint64_t>(r.pushes.size());
  for (auto& p : r.pushes) {
    p.first = ++seq;
  }
  for (const AnswerRecord& a : handover.answers()) {
    r.bytes += a.frame().size();
    r.answers.emplace_back(a.seq(), std::make_shared<const std::string>(a.frame()));
  }
  r.highest_seq = handover.highest_seq();
  r.forgotten_through = handover.forgotten_through();
  r.refused.assign(handover.refused().begin(), handover.refused().end());
  gate_.resumed.fetch_add(1, std::memory_order_relaxed);
  if (same_gateway) {
    if (!gate_.take_uid(shared_from_this())) {
      replaced_.store(true, std::memory_order_release);  // a newer login took the UID meanwhile
    }
    set_binding_revision(handover.binding_revision());
    if (handover.remote_nodes_size() > 0) {
      remote_nodes_ = std::make_unique<std::vector<std::pair<std::string, std::string>>>();
      for (const NodeAddress& a : handover.remote_nodes()) {
        remote_nodes_->emplace_back(a.node(), a.address());
      }
    }
  } else {
    gate_.join_groups(shared_from_this(), handover.groups());
  }
}

void Session::set_successor(std::shared_ptr<Session> successor) {
  resume_->successor = std::move(successor);
}

void Session::set_successor_node(std::string node) {
  resume_->successor_node = std::move(node);
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
