// SPDX-License-Identifier: Apache-2.0
#include "cluster/etcd/etcd_client.hpp"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "ember/etcd/rpc.grpc.pb.h"

namespace ember::etcd {
namespace {

using SystemClock = std::chrono::system_clock;

Error from_grpc(const grpc::Status& status, std::string_view what) {
  std::string message = std::string(what) + ": " + status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return Error{Errc::node_unreachable, "etcd unavailable: " + message};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Error{Errc::timeout, "etcd did not answer: " + message};
    case grpc::StatusCode::CANCELLED: return Error{Errc::cancelled, message};
    case grpc::StatusCode::NOT_FOUND: return Error{Errc::not_found, message};
    case grpc::StatusCode::INVALID_ARGUMENT: return Error{Errc::invalid_argument, message};
    default: return Error{Errc::io_error, "etcd: " + message};
  }
}

KeyValue to_kv(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

}  // namespace

/// One gRPC channel to one endpoint with its stubs. Streams hold it by shared_ptr, so a rebuilt
/// connection never pulls a stub from under a running keep-alive or watch.
struct Connection {
  std::string endpoint;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

namespace {

std::shared_ptr<Connection> make_connection(const std::string& endpoint,
                                            std::chrono::milliseconds timeout) {
  grpc::ChannelArguments args;
  // Reconnect quickly after etcd comes back: the default backoff grows to minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // gRPC also takes this value as the deadline of one connection attempt (TCP connect plus the
  // server's HTTP/2 SETTINGS). It must be longer than a set-up can take, or every attempt is
  // abandoned half-way; short enough that an attempt started during a partition (its SYNs lost)
  // is replaced soon after the partition heals instead of waiting for TCP's SYN back-off.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(std::clamp<std::int64_t>(timeout.count(), 500, 2000)));
  // Detect a silent etcd on long-lived streams. etcd refuses pings more often than every 5 s.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  auto conn = std::make_shared<Connection>();
  conn->endpoint = endpoint;
  conn->channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
  conn->kv = etcdserverpb::KV::NewStub(conn->channel);
  conn->lease = etcdserverpb::Lease::NewStub(conn->channel);
  conn->watch = etcdserverpb::Watch::NewStub(conn->channel);
  return conn;
}

bool is_transport_failure(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace

struct Client::Impl {
  // A connection whose requests failed this many times in a row is replaced by a new one (on the
  // next endpoint): a safety net for a channel that stopped making progress.
  static constexpr int kRebuildAfterFailures = 3;

  Options options;
  mutable std::mutex mu;
  std::shared_ptr<Connection> conn;
  std::size_t endpoint_index = 0;
  int failures_in_row = 0;
  ClientStats counters;

  std::shared_ptr<Connection> current() const {
    std::lock_guard lock(mu);
    return conn;
  }

  /// Every request waits for the channel to be ready, within its deadline. Without it a request
  /// made while the channel is in back-off fails at once, and since gRPC's synchronous API only
  /// drives a connection attempt while some request waits on the channel, nothing would ever
  /// complete the attempt: the channel stays down with etcd's answer unread in the socket.
  void prepare(grpc::ClientContext& ctx) const {
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(SystemClock::now() + options.timeout);
  }

  void report(const grpc::Status& status, const std::shared_ptr<Connection>& used) {
    std::lock_guard lock(mu);
    if (!is_transport_failure(status)) {
      failures_in_row = 0;
      return;
    }
    ++counters.requests_failed;
    if (used != conn || ++failures_in_row < kRebuildAfterFailures) {
      return;
    }
    failures_in_row = 0;
    endpoint_index = (endpoint_index + 1) % options.endpoints.size();
    conn = make_connection(options.endpoints[endpoint_index], options.timeout);
    ++counters.channel_rebuilds;
  }

  /// Runs one unary request on the current connection and reports how it went.
  template <class Call>
  grpc::Status unary(Call&& call) {
    auto used = current();
    grpc::ClientContext ctx;
    prepare(ctx);
    grpc::Status status = call(*used, ctx);
    report(status, used);
    return status;
  }

  Result<GetResult> range(std::string_view key, std::string range_end) {
    etcdserverpb::RangeRequest request;
    request.set_key(std::string(key));
    if (!range_end.empty()) {
      request.set_range_end(std::move(range_end));
    }
    etcdserverpb::RangeResponse response;
    grpc::Status status = unary([&](Connection& c, grpc::ClientContext& ctx) {
      return c.kv->Range(&ctx, request, &response);
    });
    if (!status.ok()) {
      return from_grpc(status, "get " + std::string(key));
    }
    GetResult out;
    out.revision = response.header().revision();
    out.kvs.reserve(static_cast<std::size_t>(response.kvs_size()));
    for (const auto& kv_item : response.kvs()) {
      out.kvs.push_back(to_kv(kv_item));
    }
    return out;
  }

  Result<std::int64_t> erase(std::string_view key, std::string range_end) {
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(std::string(key));
    if (!range_end.empty()) {
      request.set_range_end(std::move(range_end));
    }
    etcdserverpb::DeleteRangeResponse response;
    grpc::Status status = unary([&](Connection& c, grpc::ClientContext& ctx) {
      return c.kv->DeleteRange(&ctx, request, &response);
    });
    if (!status.ok()) {
      return from_grpc(status, "delete " + std::string(key));
    }
    return response.deleted();
  }

  Result<etcdserverpb::TxnResponse> txn(const etcdserverpb::TxnRequest& request,
                                        std::string_view what) {
    etcdserverpb::TxnResponse response;
    grpc::Status status = unary([&](Connection& c, grpc::ClientContext& ctx) {
      return c.kv->Txn(&ctx, request, &response);
    });
    if (!status.ok()) {
      return from_grpc(status, what);
    }
    return response;
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

std::string Client::endpoint() const {
  return impl_->current()->endpoint;
}

ClientStats Client::stats() const {
  std::lock_guard lock(impl_->mu);
  ClientStats out = impl_->counters;
  out.endpoint = impl_->conn->endpoint;
  return out;
}

Result<std::unique_ptr<Client>> Client::connect(Options options) {
  if (options.endpoints.empty()) {
    return Error{Errc::invalid_argument, "etcd: no endpoints configured"};
  }
  std::string tried;
  for (std::size_t i = 0; i < options.endpoints.size(); ++i) {
    const std::string& endpoint = options.endpoints[i];
    auto conn = make_connection(endpoint, options.timeout);
    if (!conn->channel->WaitForConnected(SystemClock::now() + options.timeout)) {
      tried += (tried.empty() ? "" : ", ") + endpoint;
      continue;
    }
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    impl->endpoint_index = i;
    impl->conn = std::move(conn);
    return std::unique_ptr<Client>(new Client(std::move(impl)));
  }
  return Error{Errc::node_unreachable, "etcd: no endpoint answered within " +
                                           std::to_string(options.timeout.count()) + " ms (" +
                                           tried + ")"};
}

Result<GetResult> Client::get(std::string_view key) {
  return impl_->range(key, {});
}

Result<GetResult> Client::get_prefix(std::string_view prefix) {
  return impl_->range(prefix, prefix_end(prefix));
}

Result<std::int64_t> Client::put(std::string_view key, std::string_view value, LeaseId lease) {
  auto done = exchange(key, value, lease, false);
  if (!done) {
    return done.error();
  }
  return done->mod_revision;  // a put's revision is the key's new mod revision
}

Result<store::Store::Exchanged> Client::exchange(std::string_view key, std::string_view value,
                                                 LeaseId lease) {
  return exchange(key, value, lease, true);
}

Result<store::Store::Exchanged> Client::exchange(std::string_view key, std::string_view value,
                                                 LeaseId lease, bool previous) {
  etcdserverpb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease);
  request.set_prev_kv(previous);
  etcdserverpb::PutResponse response;
  grpc::Status status = impl_->unary(
      [&](Connection& c, grpc::ClientContext& ctx) { return c.kv->Put(&ctx, request, &response); });
  if (!status.ok()) {
    return from_grpc(status, "put " + std::string(key));
  }
  Exchanged out;
  out.mod_revision = response.header().revision();
  if (response.has_prev_kv()) {
    out.previous = to_kv(response.prev_kv());
  }
  return out;
}

Result<std::int64_t> Client::erase(std::string_view key) {
  return impl_->erase(key, {});
}

Result<std::int64_t> Client::erase_prefix(std::string_view prefix) {
  return impl_->erase(prefix, prefix_end(prefix));
}

Result<LeaseId> Client::grant(std::chrono::seconds ttl) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  etcdserverpb::LeaseGrantResponse response;
  grpc::Status status = impl_->unary([&](Connection& c, grpc::ClientContext& ctx) {
    return c.lease->LeaseGrant(&ctx, request, &response);
  });
  if (!status.ok()) {
    return from_grpc(status, "lease grant");
  }
  if (!response.error().empty()) {
    return Error{Errc::io_error, "etcd lease grant: " + response.error()};
  }
  return response.id();
}

Status Client::revoke(LeaseId lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  grpc::Status status = impl_->unary([&](Connection& c, grpc::ClientContext& ctx) {
    return c.lease->LeaseRevoke(&ctx, request, &response);
  });
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return {};  // "requested lease not found": gone already
  }
  if (!status.ok()) {
    return from_grpc(status, "lease revoke");
  }
  return {};
}

namespace {
// The transaction goes ahead only if `key`'s create or mod revision is `revision`.
void require_revision(etcdserverpb::TxnRequest& request, std::string_view key,
                      etcdserverpb::Compare::CompareTarget target, std::int64_t revision) {
  auto* compare = request.add_compare();
  compare->set_key(std::string(key));
  compare->set_target(target);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  if (target == etcdserverpb::Compare::CREATE) {
    compare->set_create_revision(revision);
  } else {
    compare->set_mod_revision(revision);
  }
}
}  // namespace

Result<std::int64_t> Client::put_if_unchanged(std::string_view key, std::string_view value,
                                              std::int64_t mod_revision, LeaseId lease) {
  etcdserverpb::TxnRequest request;
  // A missing key compares as revision 0.
  require_revision(request, key, etcdserverpb::Compare::MOD, mod_revision);
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  put->set_lease(lease);
  auto response = impl_->txn(request, "txn put " + std::string(key));
  if (!response) {
    return std::move(response).error();
  }
  // A transaction that writes moves the store to a new revision: the key's mod revision.
  return response->succeeded() ? response->header().revision() : 0;
}

Result<bool> Client::erase_if_unchanged(std::string_view key, std::int64_t mod_revision) {
  return erase_if(key, etcdserverpb::Compare::MOD, mod_revision);
}

Result<Client::CreateResult> Client::create_if_absent(std::string_view key, std::string_view value,
                                                      LeaseId lease, std::string_view also_read) {
  etcdserverpb::TxnRequest request;
  require_revision(request, key, etcdserverpb::Compare::CREATE, 0);  // "the key does not exist"
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  put->set_lease(lease);
  // Both branches read the key back: the winner learns its create revision, a loser the holder.
  request.add_success()->mutable_request_range()->set_key(std::string(key));
  request.add_failure()->mutable_request_range()->set_key(std::string(key));
  if (!also_read.empty()) {
    request.add_success()->mutable_request_range()->set_key(std::string(also_read));
    request.add_failure()->mutable_request_range()->set_key(std::string(also_read));
  }
  auto response = impl_->txn(request, "txn create " + std::string(key));
  if (!response) {
    return std::move(response).error();
  }
  CreateResult out;
  out.created = response->succeeded();
  out.revision = response->header().revision();
  // Responses come in the order of the branch's operations: [put,] key, also_read.
  const int key_at = out.created ? 1 : 0;
  if (key_at < response->responses_size()) {
    const auto& range = response->responses(key_at).response_range();
    if (range.kvs_size() > 0) {
      out.create_revision = range.kvs(0).create_revision();
      out.value = range.kvs(0).value();
    }
  }
  if (!also_read.empty() && key_at + 1 < response->responses_size()) {
    const auto& range = response->responses(key_at + 1).response_range();
    if (range.kvs_size() > 0) {
      out.also_value = range.kvs(0).value();
    }
  }
  return out;
}

Result<bool> Client::erase_if_created(std::string_view key, std::int64_t create_revision) {
  return erase_if(key, etcdserverpb::Compare::CREATE, create_revision);
}

Result<bool> Client::erase_if(std::string_view key, int target, std::int64_t revision) {
  etcdserverpb::TxnRequest request;
  require_revision(request, key, static_cast<etcdserverpb::Compare::CompareTarget>(target),
                   revision);
  request.add_success()->mutable_request_delete_range()->set_key(std::string(key));
  auto response = impl_->txn(request, "txn erase " + std::string(key));
  if (!response) {
    return std::move(response).error();
  }
  return response->succeeded();
}

// ---------------------------------------------------------------------------------------------

namespace {

class KeepAliveImpl final : public Client::KeepAlive {
 public:
  KeepAliveImpl(std::shared_ptr<Connection> conn, LeaseId lease, std::chrono::milliseconds interval,
                std::function<void(const Error&)> on_lost)
      : conn_(std::move(conn)), lease_(lease), interval_(interval), on_lost_(std::move(on_lost)) {
    thread_ = std::thread([this] { run(); });
  }
  ~KeepAliveImpl() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      if (ctx_) {
        ctx_->TryCancel();
      }
    }
    cv_.notify_all();
    thread_.join();
  }
  [[nodiscard]] std::int64_t renewals() const noexcept override { return renewals_.load(); }

 private:
  void run() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return;
      }
      ctx_ = ctx.get();
    }
    auto stream = conn_->lease->LeaseKeepAlive(ctx.get());
    std::optional<Error> lost;
    for (;;) {
      etcdserverpb::LeaseKeepAliveRequest request;
      request.set_id(lease_);
      etcdserverpb::LeaseKeepAliveResponse response;
      // A dead peer fails Read (TCP reset, or the channel's HTTP/2 keepalive pings for a silent
      // one).
      bool ok = stream->Write(request) && stream->Read(&response);
      if (!ok) {
        if (!is_stopping()) {
          grpc::Status status = stream->Finish();
          lost = status.ok() ? Error{Errc::node_unreachable, "etcd closed the keep-alive stream"}
                             : from_grpc(status, "lease keep-alive");
        }
        break;
      }
      if (response.ttl() <= 0) {
        lost = Error{Errc::not_found, "lease " + std::to_string(lease_) + " expired"};
        break;
      }
      renewals_.fetch_add(1);
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, interval_, [&] { return stopping_; })) {
        break;
      }
    }
    {
      std::lock_guard lock(mu_);
      ctx_ = nullptr;
    }
    if (lost && !is_stopping() && on_lost_) {
      on_lost_(*lost);
    }
  }
  bool is_stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  std::shared_ptr<Connection> conn_;
  LeaseId lease_;
  std::chrono::milliseconds interval_;
  std::function<void(const Error&)> on_lost_;
  std::atomic<std::int64_t> renewals_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  grpc::ClientContext* ctx_ = nullptr;
  std::thread thread_;
};

class WatchImpl final : public Client::Watch {
 public:
  WatchImpl(std::shared_ptr<Connection> conn, std::string prefix, std::int64_t start_revision,
            std::function<void(std::vector<Event>&&, std::int64_t)> on_events,
            std::function<void(const Error&)> on_end)
      : conn_(std::move(conn)),
        prefix_(std::move(prefix)),
        start_revision_(start_revision),
        on_events_(std::move(on_events)),
        on_end_(std::move(on_end)) {
    thread_ = std::thread([this] { run(); });
  }
  ~WatchImpl() override {
    stopping_.store(true);
    ctx_.TryCancel();
    thread_.join();
  }

 private:
  void run() {
    auto stream = conn_->watch->Watch(&ctx_);
    etcdserverpb::WatchRequest request;
    auto* create = request.mutable_create_request();
    create->set_key(prefix_);
    create->set_range_end(prefix_end(prefix_));
    create->set_start_revision(start_revision_);
    std::optional<Error> ended;
    if (!stream->Write(request)) {
      ended = Error{Errc::node_unreachable, "etcd watch: could not create the watch"};
    }
    etcdserverpb::WatchResponse response;
    while (!ended && stream->Read(&response)) {
      if (response.canceled()) {
        ended = response.compact_revision() > 0
                    ? Error{Errc::bad_state, "etcd watch: history compacted up to revision " +
                                                 std::to_string(response.compact_revision())}
                    : Error{Errc::io_error, "etcd watch cancelled: " + response.cancel_reason()};
        break;
      }
      if (response.events_size() == 0) {
        continue;  // created / progress notifications
      }
      std::vector<Event> events;
      events.reserve(static_cast<std::size_t>(response.events_size()));
      for (const auto& e : response.events()) {
        Event out;
        out.type = e.type() == mvccpb::Event::DELETE ? Event::Type::erase : Event::Type::put;
        out.kv = to_kv(e.kv());
        events.push_back(std::move(out));
      }
      on_events_(std::move(events), response.header().revision());
    }
    if (!ended && !stopping_.load()) {
      grpc::Status status = stream->Finish();
      ended = status.ok() ? Error{Errc::node_unreachable, "etcd closed the watch stream"}
                          : from_grpc(status, "etcd watch");
    }
    if (ended && !stopping_.load() && on_end_) {
      on_end_(*ended);
    }
  }

  std::shared_ptr<Connection> conn_;
  std::string prefix_;
  std::int64_t start_revision_;
  std::function<void(std::vector<Event>&&, std::int64_t)> on_events_;
  std::function<void(const Error&)> on_end_;
  std::atomic<bool> stopping_{false};
  grpc::ClientContext ctx_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<Client::KeepAlive>> Client::keep_alive(
    LeaseId lease, std::chrono::milliseconds interval, std::function<void(const Error&)> on_lost) {
  if (interval.count() <= 0) {
    return Error{Errc::invalid_argument, "keep_alive: interval must be positive"};
  }
  return std::unique_ptr<KeepAlive>(
      new KeepAliveImpl(impl_->current(), lease, interval, std::move(on_lost)));
}

Result<std::unique_ptr<Client::Watch>> Client::watch_prefix(
    std::string_view prefix, std::int64_t start_revision,
    std::function<void(std::vector<Event>&& events, std::int64_t revision)> on_events,
    std::function<void(const Error&)> on_end) {
  if (!on_events) {
    return Error{Errc::invalid_argument, "watch_prefix: no event callback"};
  }
  return std::unique_ptr<Watch>(new WatchImpl(impl_->current(), std::string(prefix), start_revision,
                                              std::move(on_events), std::move(on_end)));
}

}  // namespace ember::etcd
