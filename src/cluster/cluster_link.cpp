// SPDX-License-Identifier: Apache-2.0
#include "cluster/cluster_link.hpp"

#include <google/protobuf/arena.h>

#include <ember/log.hpp>
#include <mutex>
#include <vector>

#include "core/node_impl.hpp"
#include "core/send_batch.hpp"
#include "core/service_core.hpp"
#include "ember/wire.pb.h"
#include "net/simulated_transport.hpp"
#include "rpc/calls.hpp"
#include "rpc/events.hpp"
#include "rpc/inbound.hpp"
#include "rpc/messaging.hpp"
#include "runtime/thread.hpp"
#include "wire/wire_codec.hpp"

namespace ember::detail {
namespace {

using Clock = std::chrono::steady_clock;

/// Answers a request that came over the wire: the outcome goes back as a RemoteReply frame.
class RemoteResponder final : public Responder {
 public:
  RemoteResponder(std::weak_ptr<ClusterLink> link, std::string node, std::string address,
                  std::uint64_t id, bool wants)
      : link_(std::move(link)),
        node_(std::move(node)),
        address_(std::move(address)),
        id_(id),
        wants_(wants) {}

  void deliver(AnyReply result) override {
    if (!wants_) {
      if (!result) {
        if (ServiceCore* core = ServiceCore::current()) {
          core->logger().warn("send from node {} failed: {}", node_, result.error().to_string());
        }
      }
      return;
    }
    auto link = link_.lock();
    if (!link) {
      return;  // this node is leaving the cluster
    }
    wire::Envelope envelope;
    encode_reply(id_, result, *envelope.mutable_reply());
    link->reply(node_, address_, envelope.SerializeAsString());
  }
  [[nodiscard]] bool wants_reply() const noexcept override { return wants_; }

 private:
  std::weak_ptr<ClusterLink> link_;
  std::string node_;
  std::string address_;
  std::uint64_t id_;
  bool wants_;
};

// "host:port" and "[v6]:port" have one; "host", "[v6]" and a bare "v6::addr" do not.
bool has_port(const std::string& address) {
  if (address.starts_with('[')) {
    return address.find("]:") != std::string::npos;
  }
  const auto colon = address.find(':');
  return colon != std::string::npos && colon == address.rfind(':');
}

// The Sends of one read burst, gathered per target service as a handler's Sends are (I/O
// thread): a stream of them reaches the mailbox in chains, one pin, gate pass and wake-up each.
// Opened by the burst's first frame, flushed after its last (TransportOptions::after_frames).
thread_local std::optional<SendBatch::Scope> tls_burst;

}  // namespace

/// A request from another node, in the callee's mailbox. Parses the payload with the method's
/// own request type on the callee's lane.
namespace {

/// Recycles parsed requests between the I/O thread (which parses) and the workers (which run
/// them). A reused message keeps its strings' capacity, so a steady stream of requests parses
/// without allocating, and nothing allocated on one thread is freed on another (which made the
/// allocator's locks the bottleneck). Threads exchange requests in batches through one list.
class RequestPool {
 public:
  static std::unique_ptr<wire::RemoteRequest> take() {
    Cache& cache = local();
    if (cache.items.empty()) {
      RequestPool& pool = shared();
      std::lock_guard lock(pool.mu_);
      const std::size_t n = std::min(kBatch, pool.items_.size());
      for (std::size_t i = 0; i < n; ++i) {
        cache.items.push_back(std::move(pool.items_.back()));
        pool.items_.pop_back();
      }
    }
    if (cache.items.empty()) {
      return std::make_unique<wire::RemoteRequest>();
    }
    auto request = std::move(cache.items.back());
    cache.items.pop_back();
    return request;
  }
  static void give(std::unique_ptr<wire::RemoteRequest> request) {
    if (request->ByteSizeLong() > kKeepBelow) {
      return;  // an unusually large request: do not hold on to its memory
    }
    Cache& cache = local();
    cache.items.push_back(std::move(request));
    if (cache.items.size() >= 2 * kBatch) {
      RequestPool& pool = shared();
      std::lock_guard lock(pool.mu_);
      for (std::size_t i = 0; i < kBatch && pool.items_.size() < kSharedMax; ++i) {
        pool.items_.push_back(std::move(cache.items.back()));
        cache.items.pop_back();
      }
      while (cache.items.size() > 2 * kBatch) {
        cache.items.pop_back();  // the shared list is full
      }
    }
  }

 private:
  static constexpr std::size_t kBatch = 64;
  static constexpr std::size_t kSharedMax = 4096;
  static constexpr std::size_t kKeepBelow = 64 * 1024;
  struct Cache {
    std::vector<std::unique_ptr<wire::RemoteRequest>> items;
  };
  static Cache& local() {
    thread_local Cache cache;
    return cache;
  }
  static RequestPool& shared() {
    static auto* pool = new RequestPool;  // never destroyed: threads may return items at exit
    return *pool;
  }
  std::mutex mu_;
  std::vector<std::unique_ptr<wire::RemoteRequest>> items_;
};

}  // namespace

class RemoteCall final : public runtime::Message {
 public:
  RemoteCall() : request_(RequestPool::take()) {}
  ~RemoteCall() override { RequestPool::give(std::move(request_)); }
  RemoteCall(const RemoteCall&) = delete;
  RemoteCall& operator=(const RemoteCall&) = delete;

  bool parse(std::string_view frame) {
    reset_request(*request_);
    return parse_request_frame(frame, *request_);
  }
  /// Adopts a request parsed elsewhere (an envelope that was not in the common form).
  void take(wire::RemoteRequest& parsed) { request_->Swap(&parsed); }
  [[nodiscard]] const wire::RemoteRequest& request() const noexcept { return *request_; }
  void set_responder(std::shared_ptr<Responder> responder) { responder_ = std::move(responder); }
  [[nodiscard]] const std::shared_ptr<Responder>& responder() const noexcept { return responder_; }
  /// This node's steady-clock deadline, fixed when the frame was read (local_deadline).
  void set_deadline(Clock::time_point deadline) noexcept { deadline_ = deadline; }
  [[nodiscard]] Clock::time_point deadline() const noexcept { return deadline_; }

  void run() override;

  void reject(const Error& why) noexcept override {
    try {
      responder_->deliver(why);
    } catch (...) {
    }
  }
  [[nodiscard]] std::string_view name() const noexcept override { return request().method(); }
  [[nodiscard]] std::uint64_t trace_id() const noexcept override { return request().trace_id(); }

 private:
  // Kept small on purpose: the I/O thread makes one per request and a worker frees it. It comes
  // from the small-object pool now, but when it still came from glibc, a block above the fast-bin
  // limit made those frees contend on the I/O thread's arena lock (remote Send throughput fell by
  // a third when the payload and Context lived here), and every byte still crosses cores.
  std::unique_ptr<wire::RemoteRequest> request_;
  std::shared_ptr<Responder> responder_;
  Clock::time_point deadline_ = Clock::time_point::max();
};
// Two cache lines: what a worker reads of a request it did not make.
static_assert(sizeof(RemoteCall) <= 120, "RemoteCall grew: see the comment on its members");

namespace {

/// A request from another node as a source of run_inbound: its payload is bytes until the method
/// is known, and its context is built from the wire only for a request that will run. Lives on
/// the worker's stack for the run (see RemoteCall's members for why).
class RemoteSource {
 public:
  explicit RemoteSource(const RemoteCall& call) : call_(call) {}

  [[nodiscard]] std::string_view method() const noexcept { return request().method(); }
  [[nodiscard]] Clock::time_point deadline() const noexcept { return call_.deadline(); }
  /// A request its origin (a client session on another node) made itself, after that node said
  /// the origin ended.
  [[nodiscard]] bool origin_ended() {
    return request().ends_with_origin() && origin() != nullptr && origin()->ended();
  }
  [[nodiscard]] const std::shared_ptr<Responder>& responder() const noexcept {
    return call_.responder();
  }
  std::optional<std::string> offered_type_if_not(const MethodEntry& entry) const {
    if (request().serialized_payload() ||
        request().payload_type() == entry.request_type->full_name()) {
      return std::nullopt;
    }
    return request().payload_type();
  }
  std::optional<std::string> expected_type_if_not(const MethodEntry& entry) const {
    if (request().response_type().empty() ||
        request().response_type() == entry.response_type->full_name()) {
      return std::nullopt;
    }
    return request().response_type();
  }
  std::optional<Error> decode(const MethodEntry& entry) {
    std::shared_ptr<AnyMessage> payload(entry.request_prototype->New());
    if (!payload->ParseFromString(request().payload())) {
      // Sent serialized, it is a client's payload: its bytes are wrong, not its sender's types.
      return request().serialized_payload()
                 ? Error{Errc::invalid_argument, "the payload of '" + request().method() +
                                                     "' does not parse as " +
                                                     entry.request_type->full_name()}
                 : Error{Errc::bad_argument_type, "the payload of '" + request().method() +
                                                      "' does not parse as " +
                                                      request().payload_type()};
    }
    payload_ = std::move(payload);
    return std::nullopt;
  }
  [[nodiscard]] const std::shared_ptr<const AnyMessage>& payload() const noexcept {
    return payload_;
  }
  const Context& context() {
    decode_context(request(), call_.deadline(), context_);
    if (origin() != nullptr) {
      state(context_).edit().origin = origin_;
      state(context_).ends_with_origin = request().ends_with_origin();
    }
    return context_;
  }

 private:
  [[nodiscard]] const wire::RemoteRequest& request() const noexcept { return call_.request(); }
  // Looked up once per request, on the worker, and only for a request that carries one.
  const std::shared_ptr<RemoteOrigin>& origin() {
    if (!origin_ && !request().origin().empty()) {
      origin_ = Messaging::of(ServiceCore::current()->node())
                    .remote_origins()
                    .find_or_add(request().origin());
    }
    return origin_;
  }

  const RemoteCall& call_;
  std::shared_ptr<const AnyMessage> payload_;
  std::shared_ptr<RemoteOrigin> origin_;
  Context context_;
};

}  // namespace

void RemoteCall::run() {
  RemoteSource source(*this);
  run_inbound(source);
}

Result<std::shared_ptr<ClusterLink>> ClusterLink::attach(Node& node, net::TransportOptions options,
                                                         std::string advertise_host) {
  auto link =
      create(ember::detail::NodeAccess::impl(node), std::move(options), std::move(advertise_host));
  if (link) {
    ember::detail::Messaging::of(ember::detail::NodeAccess::impl(node)).set_remote(*link, true);
  }
  return link;
}

Result<std::shared_ptr<ClusterLink>> ClusterLink::create(NodeImpl& impl,
                                                         net::TransportOptions options,
                                                         std::string advertise) {
  if (options.node_id.empty()) {
    options.node_id = impl.config.node_id;
  }
  std::shared_ptr<ClusterLink> link(new ClusterLink(impl));
  ClusterLink* raw = link.get();
  // A node started under the simulator talks over the world's network instead of sockets.
  runtime::Driver* driver = runtime::Driver::current();
  // The simulator delivers frames one by one with no end of burst: nothing to gather there.
  const bool gathers_sends = driver == nullptr;
  auto on_frame = [raw, gathers_sends](const std::string& from, std::string_view bytes) {
    if (gathers_sends && !tls_burst) {
      tls_burst.emplace();
    }
    raw->on_frame(from, bytes);
  };
  if (gathers_sends) {
    options.after_frames = [] { tls_burst.reset(); };
  }
  auto on_peer = [raw](const std::string& peer, bool up, const net::Transport::PeerLoss& loss) {
    raw->on_peer(peer, up, loss);
  };
  auto transport =
      driver != nullptr
          ? net::start_simulated(driver->network(), std::move(options), std::move(on_frame),
                                 std::move(on_peer))
          : net::Transport::start(std::move(options), std::move(on_frame), std::move(on_peer));
  if (!transport) {
    return std::move(transport).error();
  }
  link->transport_ = std::move(*transport);
  link->incarnation_ = runtime::random_seed();
  // "host" gets the bound port; "host:port" is kept (a port mapped in front of this node).
  link->address_ =
      has_port(advertise) ? advertise : advertise + ":" + std::to_string(link->transport_->port());
  return link;
}

ClusterLink::~ClusterLink() {
  stop();
}

void ClusterLink::stop() {
  if (transport_) {
    transport_->stop();  // joins the I/O thread: no callback runs after this
  }
  std::unordered_map<std::uint64_t, Waiting> left;
  {
    std::lock_guard lock(mu_);
    left.swap(waiting_);
  }
  for (auto& [id, w] : left) {
    w.fail(Error{Errc::node_unreachable,
                 "this node left the cluster before node " + w.node + " answered"});
  }
}

void ClusterLink::Waiting::fail(Error why) const {
  if (pending) {
    pending->complete(std::move(why));
  } else {
    serialized->deliver(std::move(why));
  }
}

Status ClusterLink::send_request(const Target& target, const CallSpec& spec, const Context& context,
                                 const std::shared_ptr<PendingCall>& pending) {
  const Pid& pid = target.pid();
  // A framer and a frame buffer per thread, reused: after warm-up a stream of requests to one
  // target copies its unchanging fields as bytes and allocates nothing.
  thread_local RequestFramer framer;
  thread_local std::string frame;
  const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  bool framed = false;
  if (Status st = framer.frame(target.pid_ptr, spec, context, RequestIdentity{id, incarnation_},
                               pending != nullptr, address_, frame, framed);
      !st) {
    return st;
  }
  if (!framed) {
    thread_local wire::RemoteRequest reused;
    if (Status encoded = encode_request(pid, spec, context, RequestIdentity{id, incarnation_},
                                        pending != nullptr, address_, reused);
        !encoded) {
      return encoded;
    }
    frame_request(reused, frame);
  }
  return send_framed(
      pid, id,
      Waiting{pending, nullptr, spec.response_prototype, pid.node_id, state(context).deadline},
      pending != nullptr, frame);
}

Status ClusterLink::send_serialized_request(const Target& target, std::string_view method,
                                            std::string_view payload, const Context& context,
                                            const std::shared_ptr<Responder>& responder) {
  const Pid& pid = target.pid();
  thread_local wire::RemoteRequest reused;
  thread_local std::string frame;
  const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  encode_serialized_request(pid, method, payload, context, RequestIdentity{id, incarnation_},
                            responder != nullptr, address_, reused);
  frame_request(reused, frame);
  return send_framed(pid, id,
                     Waiting{nullptr, responder, nullptr, pid.node_id, state(context).deadline},
                     responder != nullptr, frame);
}

Status ClusterLink::send_framed(const Pid& pid, std::uint64_t id, Waiting waiting, bool wants_reply,
                                const std::string& frame) {
  if (wants_reply) {
    std::lock_guard lock(mu_);
    waiting_[id] = std::move(waiting);
    if (++inserts_ % 1024 == 0) {
      purge_locked();
    }
  }
  // A call waits for its reply: written at once when the connection is idle. Sends batch.
  Status sent = transport_->send(pid.node_id, pid.address, frame, /*urgent=*/wants_reply);
  if (!sent && wants_reply) {
    std::lock_guard lock(mu_);
    waiting_.erase(id);
  }
  return sent;
}

void ClusterLink::send_origin_ended(const std::string& node, const std::string& address,
                                    std::string_view identity) {
  wire::Envelope envelope;
  envelope.mutable_origin_ended()->set_origin(std::string(identity));
  // Not urgent: it follows the requests it concerns on the same connection, in order.
  (void)transport_->send(node, address, envelope.SerializeAsString(), /*urgent=*/false);
}

void ClusterLink::purge_locked() {
  // Calls that timed out or were cancelled leave their entry behind until a reply comes; drop
  // the ones nobody waits for any more.
  auto now = Clock::now();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const Waiting& w = it->second;
    const bool answered = w.pending ? w.pending->done.load() : !w.serialized->waiting();
    if (answered || w.deadline < now) {
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
}

void ClusterLink::reply(const std::string& to, const std::string& address, std::string bytes) {
  SendBatch::flush_current();  // the caller may act on the reply: what the handler sent goes first
  if (Status st = transport_->send(to, address, bytes, /*urgent=*/true); !st) {
    system_log().warn("cluster: reply to node {} lost: {}", to, st.error().to_string());
  }
}

bool ClusterLink::seen(const std::string& from, std::uint64_t incarnation, std::uint64_t id,
                       std::shared_ptr<Responder>* send_responder) {
  std::lock_guard lock(dedup_mu_);
  Recent& recent = recent_[from];
  if (recent.incarnation != incarnation) {
    // The sender restarted under the same node id: its ids start over, its old ones are moot.
    recent = Recent{};
    recent.incarnation = incarnation;
  }
  if (send_responder != nullptr) {
    if (!recent.send_responder) {
      recent.send_responder =
          std::make_shared<RemoteResponder>(weak_from_this(), from, "", 0, false);
    }
    *send_responder = recent.send_responder;
  }
  // A sliding window of the last kDedupWindow ids as a bitmap: O(1), no allocation per request.
  // Ids arrive almost in order (several threads of the sender may swap neighbours).
  if (id > recent.highest) {
    const std::uint64_t shift = id - recent.highest;
    if (shift >= kDedupWindow) {
      recent.bits.reset();
    } else {
      for (std::uint64_t i = recent.highest + 1; i < id; ++i) {
        recent.bits.reset(i % kDedupWindow);
      }
    }
    recent.highest = id;
    recent.bits.set(id % kDedupWindow);
    return false;
  }
  if (recent.highest - id >= kDedupWindow) {
    return true;  // older than the window: cannot prove it is new, so run it at most once
  }
  if (recent.bits.test(id % kDedupWindow)) {
    return true;
  }
  recent.bits.set(id % kDedupWindow);
  return false;
}

void ClusterLink::on_frame(const std::string& from, std::string_view bytes) {
  // The common frame is an Envelope holding only a request: parse the request straight into a
  // recycled message.
  if (!bytes.empty() && bytes[0] == '\x0a') {
    auto call = std::make_unique<RemoteCall>();
    if (call->parse(bytes)) {
      handle_request(from, std::move(call));
      return;
    }
  }
  // Whatever this frame does (a reply a client's gateway passes on without a post, an event, an
  // ended origin), the Sends gathered before it go first.
  SendBatch::flush_current();
  wire::Envelope envelope;
  if (!envelope.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    system_log().warn("cluster: node {} sent a frame that is not an envelope ({} bytes)", from,
                      bytes.size());
    return;
  }
  if (envelope.has_request()) {
    auto call = std::make_unique<RemoteCall>();
    call->take(*envelope.mutable_request());
    handle_request(from, std::move(call));
  } else if (envelope.has_reply()) {
    handle_reply(*envelope.mutable_reply());
  } else if (envelope.has_event()) {
    handle_event(envelope.event());
  } else if (envelope.has_origin_ended()) {
    Messaging::of(node_).remote_origins().end(envelope.origin_ended().origin());
  }
}

void ClusterLink::send_event(const AnyMessage& payload, const EventInfo& info,
                             const std::vector<std::pair<std::string, std::string>>& nodes) {
  if (nodes.empty()) {
    return;
  }
  wire::Envelope envelope;
  encode_event(payload, info, address_, *envelope.mutable_event());
  const std::string frame = envelope.SerializeAsString();
  for (const auto& [node, address] : nodes) {
    if (transport_->send(node, address, frame)) {
      events_out_.fetch_add(1, std::memory_order_relaxed);
    } else {
      event_send_failures_.fetch_add(1, std::memory_order_relaxed);  // that node misses it
    }
  }
}

void ClusterLink::handle_event(const wire::EventFrame& event) {
  events_in_.fetch_add(1, std::memory_order_relaxed);
  if (!deliver_event(node_, "transport", event)) {
    event_errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ClusterLink::handle_request(const std::string& from, std::unique_ptr<RemoteCall> call) {
  const wire::RemoteRequest& request = call->request();
  // A Send needs no reply: one shared responder per sender (it only logs failures).
  std::shared_ptr<Responder> responder;
  if (seen(from, request.incarnation(), request.id(),
           request.wants_reply() ? nullptr : &responder)) {
    duplicates_.fetch_add(1);  // a retry of a request already taken: run it once only
    return;
  }
  if (request.wants_reply()) {
    responder = std::make_shared<RemoteResponder>(weak_from_this(), from, request.reply_address(),
                                                  request.id(), true);
  }
  // Streams target the same service: the last lookup is reused while the repository is unchanged
  // (I/O thread only, so no lock).
  const std::uint64_t version = Messaging::of(node_).repository().version();
  if (version != cached_version_ || request.target_uid() != cached_uid_) {
    cached_target_ = Messaging::of(node_).repository().find(request.target_uid());
    cached_uid_ = request.target_uid();
    cached_version_ = version;
  }
  const std::optional<Target>& target = cached_target_;
  if (!target || !target->anchor) {
    // The caller's view of the cluster is behind (the service stopped here, or never was):
    // nothing ran, and its next pick may be an instance that exists.
    responder->deliver(Error{Errc::unavailable, "no service " + request.target_uid() + " on node " +
                                                    node_.config.node_id +
                                                    " (it stopped): it did not run"});
    return;
  }
  Priority priority = request.priority() != 0 ? Priority::system : Priority::user;
  DispatchKey key =
      request.key_hash() != 0 ? DispatchKey::from_hash(request.key_hash()) : DispatchKey{};
  // Fixed now, as the frame is read: time in this node's mailbox counts against the deadline,
  // and the wall-clock form also counts the time the frame waited before it could be read.
  if (request.timeout_ms() > 0 || request.deadline_unix_us() > 0) {
    call->set_deadline(local_deadline(request.timeout_ms(), request.deadline_unix_us(),
                                      Clock::now(), std::chrono::system_clock::now()));
  }
  call->set_responder(responder);
  auto* m = call.release();
  m->priority = priority;
  m->key = key;
  if (!request.wants_reply() && gather(*target, m)) {
    return;
  }
  if (Status st = target->anchor->post(m, true); !st) {
    // Overloaded, or stopping: the caller hears it at once. Refused by a stopping service it did
    // not run, and the caller may find another instance: unavailable.
    responder->deliver(st.error().code() == Errc::stopping
                           ? Error{Errc::unavailable, st.error().message() + ": it did not run"}
                           : st.error());
  }
}

bool ClusterLink::gather(const Target& target, runtime::Message* m) {
  // Only in the I/O thread's own burst: under the simulator a frame may be delivered while a
  // handler waits with its batch open, and a Send gathered there would wait with it.
  SendBatch* batch = tls_burst ? SendBatch::current() : nullptr;
  if (batch == nullptr) {
    return false;
  }
  const std::string& method = static_cast<RemoteCall*>(m)->request().method();
  if (batch->matches(target.anchor.get(), method, typeid(RemoteCall), m->priority, m->key)) {
    batch->add(m);
    return true;
  }
  // Checked as a local Send's batch is: only a running service without a mailbox bound, and a
  // keyless stream only to a single lane. Anything else is posted one by one.
  return target.anchor->with_core([&](ServiceCore* core) {
    if (core == nullptr || !core->takes_batches(m->key)) {
      return false;
    }
    batch->start(target.anchor, method, typeid(RemoteCall), m);
    return true;
  });
}

void ClusterLink::handle_reply(wire::RemoteReply& reply) {
  Waiting w;
  {
    std::lock_guard lock(mu_);
    auto it = waiting_.find(reply.id());
    if (it == waiting_.end()) {
      Messaging::of(node_).count_late_reply();
      return;
    }
    w = std::move(it->second);
    waiting_.erase(it);
  }
  if (w.serialized) {
    if (reply.code() != 0) {
      AnyReply failed = decode_reply(reply, nullptr, w.node);
      w.serialized->deliver_serialized(std::move(failed).error());
    } else {
      w.serialized->deliver_serialized(std::move(*reply.mutable_payload()));
    }
    return;
  }
  std::shared_ptr<PendingCall> pending = std::move(w.pending);
  AnyReply result = decode_reply(reply, w.prototype, w.node);
  if (!pending->complete(std::move(result))) {
    Messaging::of(node_).count_late_reply();
  }
}

void ClusterLink::on_peer(const std::string& node, bool up, const net::Transport::PeerLoss& loss) {
  if (up) {
    return;
  }
  std::vector<Waiting> failed;
  {
    std::lock_guard lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->second.node == node) {
        failed.push_back(std::move(it->second));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (failed.empty()) {
    return;
  }
  // A refused handshake is a configuration error: the request never left, and the reason (a
  // different secret) is what the caller needs to read, not "went down". A node never reached
  // ran nothing (unavailable: safe to send again); one lost while it held requests may have run
  // them.
  Error error = loss.refused ? Error{Errc::node_unreachable, loss.why}
                : loss.sent_nothing
                    ? Error{Errc::unavailable, "node " + node +
                                                   " could not be reached, the "
                                                   "request was not sent (" +
                                                   loss.why + ")"}
                    : Error{Errc::node_unreachable,
                            "node " + node + " went down before answering" +
                                (loss.why.empty() ? std::string() : " (" + loss.why + ")")};
  for (const auto& w : failed) {
    w.fail(error);
  }
}

}  // namespace ember::detail
