// SPDX-License-Identifier: Apache-2.0
#include "gate/gate_core.hpp"

#include <algorithm>
#include <boost/asio/ssl/context.hpp>
#include <charconv>
#include <chrono>
#include <ember/node.hpp>
#include <ember/rpc.hpp>
#include <random>
#include <stdexcept>
#include <thread>

#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/acceptor.hpp"
#include "gate/io_pool.hpp"
#include "gate/links.hpp"
#include "gate/session.hpp"
#include "rpc/bytes_request.hpp"
#include "rpc/calls.hpp"
#include "rpc/messaging.hpp"

namespace ember::gate {

namespace {

// How long a newer login waits for the gateway of the session it displaced to close it, and for
// how long after a gateway failed to answer such a kick the next ones are sent without waiting.
constexpr std::chrono::milliseconds kDisplaceTimeout{2000};
constexpr std::chrono::seconds kUnresponsiveFor{5};

/// The outcome of RpcResume on the session's old gateway, handed to the new connection. A
/// posted request rather than a blocking call: a thousand players resuming at once hold no
/// thread while their old gateway hands their sessions over.
class ResumeResponder final : public detail::Responder {
 public:
  explicit ResumeResponder(std::shared_ptr<Session> session) : session_(std::move(session)) {}
  void deliver(detail::AnyReply result) override {
    if (!result) {
      session_->post_resumed(result.error(), false);
    } else if (!*result || (*result)->GetDescriptor() != SessionHandover::descriptor()) {
      session_->post_resumed(Error{Errc::internal, "RpcResume returned no SessionHandover"}, false);
    } else {
      session_->post_resumed(
          std::make_shared<SessionHandover>(static_cast<const SessionHandover&>(**result)), false);
    }
  }
  void deliver_serialized(Result<std::string> result) override {
    auto handover = std::make_shared<SessionHandover>();
    if (!result) {
      session_->post_resumed(result.error(), false);
    } else if (!handover->ParseFromString(*result)) {
      session_->post_resumed(Error{Errc::internal, "RpcResume's answer does not parse"}, false);
    } else {
      session_->post_resumed(std::move(handover), false);
    }
  }
  [[nodiscard]] bool wants_reply() const noexcept override { return true; }

 private:
  std::shared_ptr<Session> session_;
};

std::string random_prefix() {
  std::random_device rd;
  const std::uint32_t value = rd();
  char text[9];
  std::snprintf(text, sizeof text, "%08x", value);
  return text;
}

}  // namespace

GateCore::GateCore(detail::NodeImpl& node)
    : node_(node), config_(node.config.gate), id_prefix_(random_prefix()) {
  // The dictionary starts with the routes GateConf names exactly; "service.*" routes get ids as
  // clients first call them.
  for (const std::string& name : config_.routes) {
    const std::size_t dot = name.find('.');
    if (name.compare(dot + 1, std::string::npos, "*") == 0 || route_ids_.count(name) != 0) {
      continue;
    }
    Route route{static_cast<std::uint32_t>(routes_.size() + 1), name, name.substr(0, dot),
                name.substr(dot + 1)};
    route_ids_.emplace(name, route.id);
    routes_.push_back(std::move(route));
  }
  exact_routes_ = routes_.size();
}

GateCore::~GateCore() {
  stop();
}

GateCore* GateCore::of(detail::NodeImpl& node) noexcept {
  return static_cast<GateCore*>(node.subsystem(detail::subsystem_slot<GateCore>()));
}

Status GateCore::start() {
  return {};
}

Status GateCore::settle() {
  if (!config_.cert_file.empty()) {
    auto tls = make_tls_context(config_.cert_file, config_.key_file);
    if (!tls) {
      return tls.error();
    }
    tls_ = std::move(*tls);
  }
  io_ = std::make_unique<IoPool>(config_.io_threads, std::chrono::milliseconds(250));
  boost::asio::ssl::context* tls = tls_.get();
  if (!config_.websocket_addr.empty()) {
    auto listener = Acceptor::open(*this, *io_, config_.websocket_addr,
                                   [this, tls](ClientSocket s, std::size_t i) {
                                     start_websocket(*this, *io_, i, std::move(s), tls);
                                   });
    if (!listener) {
      io_.reset();
      return Error{listener.error().code(),
                   "GateConf.WebSocketAddr: " + listener.error().message()};
    }
    websocket_ = std::move(*listener);
  }
  if (!config_.tcp_addr.empty()) {
    auto listener =
        Acceptor::open(*this, *io_, config_.tcp_addr, [this, tls](ClientSocket s, std::size_t i) {
          start_tcp(*this, *io_, i, std::move(s), tls);
        });
    if (!listener) {
      websocket_.reset();
      io_.reset();
      return Error{listener.error().code(), "GateConf.TcpAddr: " + listener.error().message()};
    }
    tcp_ = std::move(*listener);
  }
  io_->start();
  node_.log.info("gateway: {}{}{}{}", websocket_ ? (tls ? "wss://" : "ws://") : "",
                 websocket_address(), tcp_ ? (websocket_ ? ", tcp " : "tcp ") : "", tcp_address());
  return {};
}

void GateCore::stopping() {
  if (!io_) {
    return;
  }
  drain();
  // Resumable clients leave at once and resume elsewhere: their sessions are handed over from
  // here, so the wait is for those too.
  const bool moved = wait_connections_closed(config_.drain_timeout);
  // Those still here get the answers of what they sent, then a kick; what they send meanwhile is
  // refused (stopping), not lost: they send it again elsewhere.
  io_->post_each([moved](Session& s) {
    s.finish(KickCode::shutting_down, moved ? "the server is shutting down"
                                            : "the server is shutting down and you did not move");
  });
  // Bounded: a request not answered within RequestTimeout is answered timeout by its session,
  // and a client that does not read its kick is aborted by its session's tick.
  (void)wait_connections_closed(config_.request_timeout + std::chrono::seconds(3));
}

bool GateCore::wait_connections_closed(std::chrono::steady_clock::duration bound) const {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (connections.load(std::memory_order_acquire) > 0 ||
         detached_now.load(std::memory_order_acquire) > 0) {
    if (std::chrono::steady_clock::now() >= until) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void GateCore::drain() {
  if (!io_ || draining_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  if (websocket_) {
    websocket_->stop_accepting();
  }
  if (tcp_) {
    tcp_->stop_accepting();
  }
  ServerFrame frame;
  Moving& moving = *frame.mutable_moving();
  for (std::string& url : other_gateways()) {
    moving.add_urls(std::move(url));
  }
  moving.set_within_ms(static_cast<std::uint32_t>(config_.drain_timeout.count()));
  moving.set_reason("this server is going away");
  auto bytes = std::make_shared<std::string>();
  frame.SerializeToString(bytes.get());
  node_.log.info("gateway: draining; {} connection(s) told to move to {} other gateway URL(s)",
                 connections.load(std::memory_order_relaxed), moving.urls_size());
  io_->post_each([bytes = std::shared_ptr<const std::string>(std::move(bytes))](Session& s) {
    s.move_elsewhere(bytes);
  });
}

std::vector<std::string> GateCore::other_gateways() {
  std::vector<std::string> urls;
  for (const auto& target :
       select(*node_.owner, Selector::name(std::string(kGateServiceName))).targets()) {
    if (target.id == node_.config.node_id) {
      continue;
    }
    // Bounded and few: a cluster has a handful of gateways.
    auto info = select(*node_.owner, Selector::name(std::string(kGateServiceName)).id(target.id))
                    .call<GateInfo>("RpcInfo", GateAck{},
                                    CallOptions{.timeout = std::chrono::milliseconds(500)});
    if (!info || info->draining()) {
      continue;
    }
    for (const std::string& url : info->urls()) {
      urls.push_back(url);
    }
  }
  return urls;
}

std::vector<std::string> GateCore::public_urls() const {
  if (!config_.public_urls.empty()) {
    return config_.public_urls;
  }
  std::vector<std::string> urls;
  if (websocket_) {
    urls.push_back((tls_ ? "wss://" : "ws://") + websocket_->address() + config_.websocket_path);
  }
  if (tcp_) {
    urls.push_back((tls_ ? "tls://" : "tcp://") + tcp_->address());
  }
  return urls;
}

void GateCore::stop() {
  if (io_) {
    io_->stop();
  }
  // Whatever the threads left: sessions hold their links, so drop them before the links' contexts.
  {
    std::unique_lock lock(sessions_mu_);
    by_id_.clear();
    by_uid_.clear();
  }
  {
    std::lock_guard lock(groups_mu_);
    groups_.clear();
  }
  websocket_.reset();
  tcp_.reset();
  io_.reset();
  tls_.reset();
}

std::string GateCore::next_session_id() {
  return node_.config.node_id + "." + id_prefix_ + "." +
         std::to_string(next_session_.fetch_add(1, std::memory_order_relaxed));
}

std::optional<Route> GateCore::route_by_id(std::uint32_t id) const {
  std::shared_lock lock(routes_mu_);
  if (id == 0 || id > routes_.size()) {
    return std::nullopt;
  }
  return routes_[id - 1];
}

bool GateCore::allowed(std::string_view service, std::string_view method) const {
  for (const std::string& pattern : config_.routes) {
    const std::size_t dot = pattern.find('.');
    if (std::string_view(pattern).substr(0, dot) != service) {
      continue;
    }
    const std::string_view m = std::string_view(pattern).substr(dot + 1);
    if (m == "*" || m == method) {
      return true;
    }
  }
  return false;
}

Result<Route> GateCore::route_by_name(std::string_view name) {
  {
    std::shared_lock lock(routes_mu_);
    if (auto it = route_ids_.find(std::string(name)); it != route_ids_.end()) {
      return routes_[it->second - 1];
    }
  }
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == name.size()) {
    return Error{Errc::invalid_argument,
                 "a route is \"service.Method\", got \"" + std::string(name.substr(0, 64)) + "\""};
  }
  if (!allowed(name.substr(0, dot), name.substr(dot + 1))) {
    return Error{Errc::no_such_method, "no route " + std::string(name.substr(0, 64))};
  }
  std::unique_lock lock(routes_mu_);
  if (auto it = route_ids_.find(std::string(name)); it != route_ids_.end()) {
    return routes_[it->second - 1];
  }
  // Bounded by what GateConf.Routes allows and the services have; a client naming methods at
  // random gets no_such_method from the service, but its names do get ids. Cap the dictionary.
  if (routes_.size() >= 65'536) {
    return Error{Errc::overloaded, "the route dictionary is full"};
  }
  Route route{static_cast<std::uint32_t>(routes_.size() + 1), std::string(name),
              std::string(name.substr(0, dot)), std::string(name.substr(dot + 1))};
  route_ids_.emplace(route.name, route.id);
  routes_.push_back(route);
  return route;
}

std::vector<Route> GateCore::dictionary() const {
  std::shared_lock lock(routes_mu_);
  return routes_;
}

Result<detail::Target> GateCore::target(const std::string& service, DispatchKey key,
                                        std::string_view avoid_node) {
  detail::Repository& repository = detail::Messaging::of(node_).repository();
  const std::uint64_t version = repository.version();
  std::lock_guard lock(targets_mu_);
  ServiceTargets& cached = targets_[service];
  if (cached.version != version || cached.targets.empty()) {
    // Every instance in the cluster, here or on other nodes: a player's key picks the same one
    // from every gateway.
    cached.targets = repository.select(Selector::name(service));
    cached.version = version;
  }
  if (cached.targets.empty()) {
    return Error{Errc::not_found, "no service " + service + " in the cluster"};
  }
  if (avoid_node.empty()) {
    return cached.targets[detail::pick_by_key(cached.targets, key)];
  }
  std::vector<detail::Target> others;
  for (const detail::Target& t : cached.targets) {
    if (t.pid().node_id != avoid_node) {
      others.push_back(t);
    }
  }
  if (others.empty()) {
    return Error{Errc::not_found, "no service " + service + " on another node"};
  }
  return others[detail::pick_by_key(others, key)];
}

void GateCore::claim(const std::shared_ptr<Session>& session) {
  {
    std::unique_lock lock(sessions_mu_);
    by_id_.emplace(session->id(), session);
  }
  SessionDirectory* directory = SessionDirectory::of(node_);
  if (directory == nullptr || !directory->clustered()) {
    session->post_claimed(local_revision_.fetch_add(1, std::memory_order_acq_rel) + 1);
    return;
  }
  const bool queued = directory->run([this, directory, session] {
    auto claimed = directory->claim(session->uid(), Binding{node_.config.node_id, session->id()});
    if (!claimed) {
      session->post_claimed(claimed.error());
      return;
    }
    // A resumed session finds its own binding at its old gateway, which has let it go already.
    if (claimed->previous && claimed->previous->session_id != session->id()) {
      displace(*claimed->previous);
    }
    session->post_claimed(claimed->revision);
  });
  if (!queued) {
    session->post_claimed(Error{Errc::stopping, "the gateway is stopping"});
  }
}

void GateCore::displace(const Binding& previous) {
  if (previous.gate_node == node_.config.node_id) {
    (void)replace(previous.session_id);  // not_found: it closed already
    return;
  }
  Bus gateway =
      select(*node_.owner, Selector::name(std::string(kGateServiceName)).id(previous.gate_node));
  if (gateway.empty()) {
    return;  // its gateway left the cluster, and its sessions with it
  }
  GateKick kick;
  kick.set_session_id(previous.session_id);
  kick.set_reason("logged in on another connection");
  kick.set_replaced(true);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(unresponsive_mu_);
    if (auto it = unresponsive_.find(previous.gate_node); it != unresponsive_.end()) {
      if (now < it->second) {
        // It did not answer the last kick: don't make every login of its players wait for it
        // too (a dead gateway's players all log in again at once).
        (void)gateway.send("RpcKick", std::move(kick));
        return;
      }
      unresponsive_.erase(it);
    }
  }
  // Bounded: the newer login waits for it. A gateway that does not answer (dead, or cut off) is
  // logged; its session ends with its connection or its lease.
  auto acked =
      gateway.call<GateAck>("RpcKick", std::move(kick), CallOptions{.timeout = kDisplaceTimeout});
  if (!acked && acked.error().code() != Errc::not_found) {
    node_.log.warn("gateway: could not close the displaced session {} on node {}: {}",
                   previous.session_id, previous.gate_node, acked.error().to_string());
    std::lock_guard lock(unresponsive_mu_);
    unresponsive_[previous.gate_node] = std::chrono::steady_clock::now() + kUnresponsiveFor;
  }
}

bool GateCore::register_uid(const std::shared_ptr<Session>& session) {
  std::shared_ptr<Session> older;
  {
    std::unique_lock lock(sessions_mu_);
    if (auto it = by_uid_.find(session->uid()); it != by_uid_.end()) {
      if (it->second->binding_revision() > session->binding_revision()) {
        return false;  // a newer login of this UID got here first
      }
      older = std::move(it->second);
      by_uid_.erase(it);  // its key views the older session's UID
    }
    by_uid_.emplace(session->uid(), session);
  }
  if (older) {
    older->replace();
  }
  return true;
}

Status GateCore::replace(std::string_view session_id) {
  std::shared_ptr<Session> s = find(session_id);
  if (!s) {
    return Error{Errc::not_found, "no session " + std::string(session_id) + " on this gateway"};
  }
  s->replace();
  return {};
}

void GateCore::release(const Session& session) {
  SessionDirectory* directory = SessionDirectory::of(node_);
  if (session.binding_revision() == 0 || session.replaced() || directory == nullptr ||
      !directory->clustered()) {
    return;  // nothing written, or a newer login's binding replaced it
  }
  // The revision is read when the job runs: a renewal may have moved the binding meanwhile.
  (void)directory->run([directory, s = session.shared_from_this()] {
    (void)directory->release(s->uid(), s->binding_revision());
  });
}

void GateCore::renew_bindings() {
  SessionDirectory* directory = SessionDirectory::of(node_);
  if (directory == nullptr || !directory->clustered()) {
    return;
  }
  std::vector<std::shared_ptr<Session>> held;
  {
    std::shared_lock lock(sessions_mu_);
    held.reserve(by_uid_.size());
    for (const auto& [uid, s] : by_uid_) {
      held.push_back(s);
    }
  }
  std::size_t lost = 0;
  for (const auto& s : held) {
    auto rewritten = directory->rewrite(s->uid(), Binding{node_.config.node_id, s->id()});
    if (!rewritten) {
      // The next lease renews them all again.
      node_.log.warn("gateway: writing the session bindings under the new lease: {}",
                     rewritten.error().to_string());
      return;
    }
    if (!*rewritten) {
      ++lost;
      s->replace();  // another gateway took the UID while this one was cut off
      continue;
    }
    s->set_binding_revision(**rewritten);
    if (s->ended()) {
      release(*s);  // it closed during the rewrite, which may have written it back
    }
  }
  node_.log.info("gateway: {} session bindings written under the new lease ({} taken elsewhere)",
                 held.size() - lost, lost);
}

void GateCore::session_ended(Session& session, std::string_view reason) {
  if (session.uid().empty()) {
    return;  // never logged in: nobody knew of it
  }
  unregister(session);
  release(session);
  SessionEvent event;
  event.set_session_id(session.id());
  event.set_uid(session.uid());
  event.set_remote_address(session.remote());
  event.set_reason(std::string(reason));
  (void)ember::publish(*node_.owner, kSessionClosed, std::move(event),
                       {.key = DispatchKey(std::string_view(session.uid()))});
}

void GateCore::publish_opened(const Session& session) {
  SessionEvent event;
  event.set_session_id(session.id());
  event.set_uid(session.uid());
  event.set_remote_address(session.remote());
  (void)ember::publish(*node_.owner, kSessionOpened, std::move(event),
                       {.key = DispatchKey(std::string_view(session.uid()))});
}

void GateCore::resume(const std::shared_ptr<Session>& session, const std::string& token,
                      std::uint64_t last_push_seq) {
  ResumeTicket ticket;
  if (!ticket.ParseFromString(token) || ticket.gate_node().empty()) {
    session->post_resumed(Error{Errc::invalid_argument, "the resume token does not parse"}, false);
    return;
  }
  // Here whatever the token names: a client whose resume here lost its connection before the
  // Welcome still has the token of the gateway it came from.
  std::shared_ptr<Session> here = find(session->id());
  if (ticket.gate_node() == node_.config.node_id || (here && here->detached())) {
    std::shared_ptr<Session> old = std::move(here);
    if (!old) {
      session->post_resumed(Error{Errc::not_found, "the session " + session->id() +
                                                       " has ended (its resume window passed, "
                                                       "or its player logged in again)"},
                            true);
      return;
    }
    old->post_handover(ticket.secret(), last_push_seq,
                       [this, old, session](Result<std::shared_ptr<SessionHandover>> handover) {
                         // On the old session's thread. The registry points to the new
                         // connection before it learns the outcome: pushes that reach it before
                         // then wait for the pushes the handover brings.
                         if (handover) {
                           adopt_local(old, session);
                         }
                         session->post_resumed(std::move(handover), true);
                       });
    return;
  }
  std::vector<detail::Target> gateway = detail::Messaging::of(node_).repository().select(
      Selector::name(std::string(kGateServiceName)).id(ticket.gate_node()));
  if (gateway.empty()) {
    session->post_resumed(Error{Errc::not_found, "its gateway " + ticket.gate_node() +
                                                     " is not in the cluster (any more)"},
                          false);
    return;
  }
  {
    // Registered under the id now, so that pushes forwarded by the old gateway find it; never
    // over a session of this gateway, nor under an id this gateway may give out later (ids are
    // predictable).
    std::unique_lock lock(sessions_mu_);
    if (!issued_here_or_elsewhere(session->id()) ||
        !by_id_.emplace(session->id(), session).second) {
      lock.unlock();
      session->post_resumed(Error{Errc::invalid_argument, "wrong resume token"}, false);
      return;
    }
  }
  ResumeRequest request;
  request.set_session_id(session->id());
  request.set_secret(ticket.secret());
  request.set_last_push_seq(last_push_seq);
  request.set_gate_node(node_.config.node_id);
  Context context;
  // Bounded: the old session waits at most RequestTimeout for its requests in flight.
  detail::state(context).deadline =
      Clock::now() + config_.request_timeout + std::chrono::seconds(2);
  detail::state(context).trace_id = new_trace_id();
  Status posted =
      detail::post_bytes_request(node_, gateway.front(), "RpcResume", request.SerializeAsString(),
                                 std::move(context), std::make_shared<ResumeResponder>(session));
  if (!posted) {
    session->post_resumed(posted.error(), false);
  }
}

bool GateCore::issued_here_or_elsewhere(const std::string& session_id) const {
  const std::string own = node_.config.node_id + "." + id_prefix_ + ".";
  if (session_id.compare(0, own.size(), own) != 0) {
    return true;  // another gateway's id
  }
  // One of ours coming back from another gateway, or one this gateway has not given out yet.
  std::uint64_t number = 0;
  const auto* first = session_id.data() + own.size();
  const auto* last = session_id.data() + session_id.size();
  const auto [end, ec] = std::from_chars(first, last, number);
  return ec == std::errc{} && end == last && number < next_session_.load(std::memory_order_acquire);
}

void GateCore::adopt_local(const std::shared_ptr<Session>& old,
                           const std::shared_ptr<Session>& session) {
  old->set_successor(session);
  session->hold_pushes_until_drained(old);
  {
    std::unique_lock lock(sessions_mu_);
    if (auto it = by_id_.find(old->id()); it != by_id_.end() && it->second == old) {
      by_id_.erase(it);  // re-keyed: the key views the entry's session's id
    }
    by_id_.emplace(session->id(), session);
    // Its UID's entry moves once the new connection has the UID (Session::adopt): until then
    // pushes by UID reach the old object, which passes them on.
  }
  std::lock_guard lock(groups_mu_);
  session->groups = std::move(old->groups);
  old->groups.clear();
  for (const std::string& name : session->groups) {
    if (auto g = groups_.find(name); g != groups_.end()) {
      std::replace(g->second.begin(), g->second.end(), old, session);
    }
  }
}

bool GateCore::take_uid(const std::shared_ptr<Session>& session) {
  std::unique_lock lock(sessions_mu_);
  if (auto it = by_uid_.find(session->uid()); it != by_uid_.end()) {
    if (it->second->id() != session->id()) {
      return false;  // a newer login of the UID took it while the session moved
    }
    by_uid_.erase(it);  // the key views the old session's UID
  }
  by_uid_.emplace(session->uid(), session);
  return true;
}

void GateCore::hand_over(const ResumeRequest& request, HandoverDone done) {
  std::shared_ptr<Session> old = find(request.session_id());
  if (!old) {
    done(Error{Errc::not_found, "the session " + request.session_id() +
                                    " has ended (its resume window passed, or its player logged "
                                    "in again)"});
    return;
  }
  old->post_handover(request.secret(), request.last_push_seq(),
                     [this, old, done = std::move(done),
                      to = request.gate_node()](Result<std::shared_ptr<SessionHandover>> handover) {
                       if (handover) {
                         // Gone from here without a close event: the session lives on at `to`,
                         // whose claim moves its directory binding there.
                         old->set_successor_node(to);
                         unregister(*old);
                         portable_routes(**handover);
                       }
                       done(std::move(handover));
                     });
}

void GateCore::portable_routes(SessionHandover& handover) const {
  // Route ids are this gateway's dictionary: the other gateway's clients know another.
  ServerFrame frame;
  for (std::string& push : *handover.mutable_pushes()) {
    if (!frame.ParseFromString(push) || !frame.has_push() || frame.push().route_id() == 0) {
      continue;
    }
    std::optional<Route> route = route_by_id(frame.push().route_id());
    frame.mutable_push()->set_route(route ? route->name : std::string());
    frame.mutable_push()->set_route_id(0);
    frame.SerializeToString(&push);
  }
  for (AnswerRecord& answer : *handover.mutable_answers()) {
    if (frame.ParseFromString(answer.frame()) && frame.has_response() &&
        frame.response().route_id() != 0) {
      frame.mutable_response()->set_route_id(0);
      frame.SerializeToString(answer.mutable_frame());
    }
  }
}

void GateCore::unregister(Session& session) {
  {
    std::unique_lock lock(sessions_mu_);
    if (auto it = by_id_.find(session.id()); it != by_id_.end() && it->second.get() == &session) {
      by_id_.erase(it);
    }
    if (auto u = by_uid_.find(session.uid()); u != by_uid_.end() && u->second.get() == &session) {
      by_uid_.erase(u);
    }
  }
  std::lock_guard lock(groups_mu_);
  for (const std::string& name : session.groups) {
    if (auto g = groups_.find(name); g != groups_.end()) {
      std::erase_if(g->second, [&](const auto& m) { return m.get() == &session; });
    }
  }
  session.groups.clear();
}

void GateCore::resume_failed(const Session& session) {
  std::unique_lock lock(sessions_mu_);
  if (auto it = by_id_.find(session.id()); it != by_id_.end() && it->second.get() == &session) {
    by_id_.erase(it);
  }
}

void GateCore::forward_push(const std::string& node, const std::string& session_id,
                            const std::string& frame, PushDone delivered) {
  ServerFrame parsed;
  if (!parsed.ParseFromString(frame) || !parsed.has_push()) {
    if (delivered) {
      delivered(Error{Errc::internal, "a pushed frame does not parse"});
    }
    return;
  }
  GatePush push;
  push.set_session_id(session_id);
  if (parsed.push().route_id() != 0) {
    // Ids are this gateway's: the other one gets the name.
    std::optional<Route> route = route_by_id(parsed.push().route_id());
    push.set_route(route ? route->name : std::string());
  } else {
    push.set_route(parsed.push().route());
  }
  push.set_payload(parsed.push().payload());
  SessionDirectory* directory = SessionDirectory::of(node_);
  const bool queued = directory != nullptr && directory->run([this, node, push = std::move(push),
                                                              delivered]() mutable {
    // Answered once the other gateway has it: a pusher waiting for this keeps its order.
    Bus gateway = select(*node_.owner, Selector::name(std::string(kGateServiceName)).id(node));
    auto acked = gateway.call<GateAck>("RpcPush", std::move(push),
                                       CallOptions{.timeout = std::chrono::seconds(2)});
    if (delivered) {
      delivered(acked ? Status{} : Status{acked.error()});
    }
  });
  if (!queued && delivered) {
    delivered(Error{Errc::stopping, "the gateway is stopping"});
  }
}

std::vector<std::string> GateCore::groups_of(const Session& session) {
  std::lock_guard lock(groups_mu_);
  return session.groups;
}

void GateCore::join_groups(const std::shared_ptr<Session>& session,
                           const google::protobuf::RepeatedPtrField<std::string>& groups) {
  std::lock_guard lock(groups_mu_);
  for (const std::string& name : groups) {
    auto& members = groups_[name];  // created here if this gateway had none of its members
    if (std::find(members.begin(), members.end(), session) == members.end()) {
      members.push_back(session);
      session->groups.push_back(name);
    }
  }
}

void GateCore::watch(Session& session) {
  if (io_) {
    io_->watch(session.io_index, &session);
  }
}

void GateCore::unwatch(Session& session) {
  if (io_) {
    io_->forget(session.io_index, &session);
  }
}

std::shared_ptr<Session> GateCore::find(std::string_view session_id) const {
  std::shared_lock lock(sessions_mu_);
  auto it = by_id_.find(session_id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::shared_ptr<Session> GateCore::find_uid(std::string_view uid) const {
  std::shared_lock lock(sessions_mu_);
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? nullptr : it->second;
}

std::string GateCore::websocket_address() const {
  return websocket_ ? websocket_->address() : std::string{};
}

std::string GateCore::tcp_address() const {
  return tcp_ ? tcp_->address() : std::string{};
}

GateStats GateCore::stats() const {
  GateStats s;
  s.connections = connections.load(std::memory_order_relaxed);
  {
    std::shared_lock lock(sessions_mu_);
    s.sessions = by_uid_.size();
  }
  s.accepted = accepted.load(std::memory_order_relaxed);
  s.refused = refused.load(std::memory_order_relaxed);
  s.logins = logins.load(std::memory_order_relaxed);
  s.logins_failed = logins_failed.load(std::memory_order_relaxed);
  s.requests = requests.load(std::memory_order_relaxed);
  s.pushes = pushes.load(std::memory_order_relaxed);
  s.kicks = kicks.load(std::memory_order_relaxed);
  s.replaced = replaced.load(std::memory_order_relaxed);
  s.relayed = relayed.load(std::memory_order_relaxed);
  s.resumed = resumed.load(std::memory_order_relaxed);
  s.detached = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, detached_now.load(std::memory_order_relaxed)));
  return s;
}

// --- the public entry points
// ----------------------------------------------------------------------

Gate& Gate::of(Node& node) {
  GateCore* core = GateCore::of(detail::NodeAccess::impl(node));
  if (core == nullptr) {
    throw std::logic_error(
        "this node has no gateway: add a GateConf section to its config and link ember::gate");
  }
  return *core;
}

bool Gate::exists(Node& node) noexcept {
  return GateCore::of(detail::NodeAccess::impl(node)) != nullptr;
}

std::optional<SessionRef> session_of(const Context& context) {
  const auto& origin = detail::state(context).origin();
  if (const auto* session = dynamic_cast<const Session*>(origin.get())) {
    if (session->uid().empty()) {
      return std::nullopt;  // the login request: nobody is logged in yet
    }
    return SessionRef{session->id(), session->uid(), session->gate_node()};
  }
  // A session of another node's gateway, as the request carried it here.
  std::string bytes;
  SessionIdentity identity;
  if (origin == nullptr || !origin->wire_identity(bytes) || !identity.ParseFromString(bytes) ||
      identity.uid().empty()) {
    return std::nullopt;
  }
  return SessionRef{identity.session_id(), identity.uid(), identity.gate_node()};
}

}  // namespace ember::gate
