// SPDX-License-Identifier: Apache-2.0
#include "cluster/membership.hpp"

#include <algorithm>
#include <cstdlib>
#include <random>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "rpc/messaging.hpp"

namespace ember::detail {
namespace {

using Clock = ember::Clock;
using namespace std::chrono_literals;

constexpr auto kLoopTick = 100ms;  // how often the loop looks at the lease when nothing happens
constexpr auto kBackoffMin = 100ms;
constexpr auto kBackoffMax = 2000ms;

std::vector<std::string> split_endpoints(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      out.emplace_back(item);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += (out.empty() ? "" : ",") + item;
  }
  return out;
}

}  // namespace

Membership::Membership(NodeImpl& node)
    : node_(node),
      root_(node.config.cluster.key_prefix.empty() ? "/ember/" + node.config.cluster.name
                                                   : node.config.cluster.key_prefix),
      services_prefix_(root_ + "/services/"),
      masters_prefix_(root_ + "/masters/"),
      events_prefix_(root_ + "/events/"),
      ttl_(node.config.cluster.ttl) {}

namespace {
std::mutex store_factory_mu;
StoreFactory store_factory;  // null: etcd
}  // namespace

void install_store_factory(StoreFactory factory) {
  std::lock_guard lock(store_factory_mu);
  store_factory = std::move(factory);
}

Membership* Membership::of(NodeImpl& node) noexcept {
  return static_cast<Membership*>(node.subsystem(subsystem_slot<Membership>()));
}

Status Membership::start() {
  const ClusterConfig& cfg = node_.config.cluster;
  StoreFactory make_store;
  {
    std::lock_guard lock(store_factory_mu);
    make_store = store_factory;
  }
  std::vector<std::string> endpoints = cfg.etcd_endpoints;  // etcd only
  if (endpoints.empty() && !make_store) {
    if (const char* env = std::getenv("EMBER_ETCD_ENDPOINTS"); env != nullptr) {
      endpoints = split_endpoints(env);
    }
  }
  if (endpoints.empty() && !make_store) {
    return Error{Errc::invalid_argument,
                 "ClusterConf: no etcd endpoints (set ClusterConf.ETCDConf.Endpoints or "
                 "EMBER_ETCD_ENDPOINTS)"};
  }
  net::TransportOptions transport;
  transport.cluster = cfg.name;
  transport.node_id = node_.config.node_id;
  transport.secret = cfg.secret;
  transport.listen_host = cfg.listen_host;
  transport.listen_port = cfg.listen_port;
  transport.max_frame = cfg.max_frame;
  transport.max_pending_handshakes = cfg.max_pending_handshakes;
  auto link = ClusterLink::create(node_, std::move(transport),
                                  cfg.advertise.empty() ? cfg.listen_host : cfg.advertise);
  if (!link) {
    return Error{link.error().code(), "ClusterConf.ListenAddr " + cfg.listen_host + ":" +
                                          std::to_string(cfg.listen_port) + ": " +
                                          link.error().message()};
  }
  link_ = std::move(*link);
  channels_ = std::make_shared<EventChannels>(events_prefix_, node_.config.node_id, link_,
                                              [this] { wake(); });
  const std::string coordinator =
      make_store ? std::string("the installed store") : "etcd at " + join_list(endpoints);
  auto client = [&]() -> Result<std::shared_ptr<store::Store>> {
    if (make_store) {
      return make_store(node_);
    }
    etcd::Options options;
    options.endpoints = endpoints;
    options.timeout = cfg.etcd_timeout;
    auto etcd_client = etcd::Client::connect(options);
    if (!etcd_client) {
      return std::move(etcd_client).error();
    }
    return std::shared_ptr<store::Store>(std::move(*etcd_client));
  }();
  if (!client) {
    link_->stop();
    return Error{client.error().code(),
                 "cannot reach " + coordinator + ": " + client.error().message()};
  }
  client_ = std::move(*client);
  keys_ = std::make_unique<ClusterKeys>(client_, root_);
  if (auto opened = open_session(true); !opened) {
    close_session("the node did not start");
    link_->stop();
    if (opened.error().code() == Errc::already_exists) {
      return opened.error();
    }
    return Error{opened.error().code(),
                 "cannot register with " + coordinator + ": " + opened.error().message()};
  }
  node_.log.info("joined cluster '{}' at {} (etcd {}, keys under {})", cfg.name, link_->address(),
                 client_->endpoint(), root_);
  loop_ = runtime::Thread([this] { run(); });
  watchdog_ = runtime::Thread([this] { watch_lease(); });
  // Calls to services of other nodes go straight to the transport.
  Messaging::of(node_).set_remote(link_);
  Messaging::of(node_).set_leased_keys(keys_.get());
  return {};
}

Membership::~Membership() {
  stop();
  // Their threads call back into this object: gone before any member they use.
  watch_.reset();
  keep_alive_.reset();
}

void Membership::service_visible(ServiceCore& service) {
  const ServiceConfig& cfg = service.config();
  const bool group = cfg.primary_secondary;
  // Private services stay off etcd (seed rule).
  const ServiceMessaging* methods = ServiceMessaging::find(service);
  const bool record = methods != nullptr && methods->has_rpc_methods();
  if (!group && !record) {
    return;
  }
  Local local;
  local.anchor = service.anchor();
  local.core = &service;
  local.publish_record = record;
  if (group) {
    local.group = cfg.name + "." + cfg.id + "." + std::to_string(cfg.server_id);
    local.elect = true;
  }
  std::lock_guard lock(mu_);
  locals_[service.pid().uid()] = std::move(local);
  work_ = true;
  cv_.notify_all();
}

void Membership::service_hidden(ServiceCore& service) {
  std::lock_guard lock(mu_);
  auto it = locals_.find(service.pid().uid());
  if (it == locals_.end()) {
    return;
  }
  Removal removal;
  if (it->second.publish_record) {
    removal.record_key = record_key(it->first);
  }
  if (it->second.is_master()) {
    // Given up at once so a slave elsewhere takes over now, not when the lease ends. The
    // service stops acting as master first: the requests it drains while it stops would
    // otherwise run beside the next master's (is_master() false, lose_master before them).
    ++stats_.demotions;
    it->second.anchor->with_core([](ServiceCore* core) {
      if (core != nullptr) {
        (void)core->set_role(false, 0);
        core->notify_role(RoleChange::lose_master, 0);
      }
    });
    removal.master_key = master_key(it->second.group);
    removal.key_revision = it->second.key_revision;
  }
  locals_.erase(it);
  removals_.push_back(std::move(removal));
  cv_.notify_all();
}

Status Membership::settle() {
  return flush(node_.config.cluster.etcd_timeout);
}

void Membership::wake() {
  std::lock_guard lock(mu_);
  work_ = true;
  cv_.notify_all();
}

Status Membership::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const std::uint64_t target = ++flush_requested_;
  cv_.notify_all();
  if (!cv_.wait_for(lock, timeout, [&] { return stopping_ || flush_done_ >= target; })) {
    node_.log.warn(
        "etcd did not confirm this node's registrations within {} ms; they will be "
        "written when it answers",
        timeout.count());
  }
  return {};
}

void Membership::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (loop_.joinable()) {
    loop_.join();
  }
  if (watchdog_.joinable()) {
    watchdog_.join();
  }
  if (link_) {
    link_->stop();
  }
}

MembershipStats Membership::stats() const {
  std::lock_guard lock(mu_);
  MembershipStats out = stats_;
  out.connected = session_ok_ && !session_lost_ && !resync_due_;
  return out;
}

// --- the loop -------------------------------------------------------------------------------

void Membership::run() {
  std::mt19937 jitter_source(static_cast<std::uint32_t>(runtime::random_seed()));
  auto backoff = std::chrono::milliseconds{kBackoffMin};
  auto wait_backoff = [&](std::unique_lock<std::mutex>& lock) {
    // Jitter spreads the nodes out after an etcd restart.
    const auto jitter = std::chrono::milliseconds{jitter_source() % (backoff.count() / 2 + 1)};
    cv_.wait_for(lock, backoff + jitter, [&] { return stopping_; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds{kBackoffMax});
  };
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (!session_ok_ || session_lost_) {
      if (!outage_since_) {  // one episode from the loss to the next session
        outage_since_ = Clock::now();
        outage_attempts_ = 0;
        ++stats_.outages;
      }
      lock.unlock();
      auto opened = open_session(false);
      if (opened) {
        note_recovered();
      } else {
        note_outage(opened.error());
      }
      lock.lock();
      if (!opened) {
        wait_backoff(lock);
        continue;
      }
      backoff = kBackoffMin;
    }
    if (resync_due_) {
      resync_due_ = false;
      lock.unlock();
      const bool synced = resync();
      lock.lock();
      if (!synced) {
        resync_due_ = true;
        wait_backoff(lock);
        continue;
      }
      backoff = kBackoffMin;
    }
    const std::uint64_t flush_target = flush_requested_;
    std::vector<WatchBatch> batches;
    batches.swap(batches_);
    const std::uint64_t generation = watch_generation_;
    work_ = false;
    std::vector<std::string> electing;
    if (elections_held_until_ && Clock::now() >= *elections_held_until_) {
      elections_held_until_.reset();
    }
    for (const auto& [uid, local] : locals_) {
      if (local.elect && !elections_held_until_) {
        electing.push_back(uid);
      }
    }
    lock.unlock();

    for (const auto& batch : batches) {
      if (batch.watch_generation == generation) {
        for (const auto& event : batch.events) {
          apply(event);
        }
      }
    }
    for (const auto& uid : electing) {
      elect(uid);
    }
    // Elections the watch asked for in this pass run in the next one, right away.
    register_pending();
    if (channels_) {
      bool session_up = false;
      {
        std::lock_guard session(mu_);
        session_up = session_ok_ && !session_lost_;
      }
      if (session_up) {
        channels_->write_due(*client_, lease_, node_.log);
      }
    }

    lock.lock();
    std::vector<Removal> removals;
    removals.swap(removals_);
    lock.unlock();
    apply_removals(std::move(removals));
    lock.lock();

    const bool settled = session_ok_ && !session_lost_ && !resync_due_ &&
                         (!channels_ || channels_->settled()) &&
                         std::all_of(locals_.begin(), locals_.end(), [](const auto& entry) {
                           const Local& l = entry.second;
                           return !l.elect && (l.registered || !l.publish_record);
                         });
    if (settled && flush_done_ < flush_target) {
      flush_done_ = flush_target;
      cv_.notify_all();
    }
    if (settled && rejoining_) {
      rejoining_ = false;
      std::size_t records = 0;
      std::size_t masters = 0;
      for (const auto& [uid, local] : locals_) {
        records += local.registered ? 1 : 0;
        masters += local.is_master() ? 1 : 0;
      }
      node_.log.info("rejoined the cluster: {} records written, {} local masters, lease {:x}",
                     records, masters, lease_);
    }
    cv_.wait_for(lock, kLoopTick, [&] {
      return stopping_ || session_lost_ || resync_due_ || work_ || !batches_.empty() ||
             !removals_.empty() || flush_requested_ > flush_done_;
    });
  }
  lock.unlock();
  close_session("the node is leaving the cluster");
}

Status Membership::open_session(bool first) {
  close_session("re-registering");
  auto lease = client_->grant(std::chrono::duration_cast<std::chrono::seconds>(ttl_));
  if (!lease) {
    return Error{lease.error().code(), "lease: " + lease.error().message()};
  }
  lease_ = *lease;
  // Renewals three times per TTL: one late or lost renewal does not lose the lease.
  auto keep_alive = client_->keep_alive(
      lease_, std::max(ttl_ / 3, std::chrono::milliseconds{100}), [this](const Error& error) {
        std::lock_guard lock(mu_);
        if (!session_lost_) {
          node_.log.warn("etcd lease lost: {}", error.to_string());
          // At once, not when the loop gets to it: the loop may be waiting on etcd for seconds.
          demote_masters_locked("the lease is lost");
        }
        session_lost_ = true;
        cv_.notify_all();
      });
  if (!keep_alive) {
    (void)client_->revoke(lease_);
    lease_ = 0;
    return Error{keep_alive.error().code(), "keep-alive: " + keep_alive.error().message()};
  }
  keep_alive_ = std::move(*keep_alive);
  {
    std::lock_guard lock(mu_);
    watched_ = keep_alive_.get();
    renewals_seen_ = 0;
    renewed_at_ = Clock::now();
  }
  // In this order: the keys of old sessions go first (a restarted etcd restores them, and their
  // master keys would block elections for a whole TTL), then the id is ours, then no election of
  // this session can get an epoch at or below one this node has seen.
  if (auto st = revoke_stale_leases(); !st) {
    return st;
  }
  if (auto st = claim_node_id(first); !st) {
    return st;
  }
  if (auto st = raise_epoch_base(); !st) {
    return st;
  }
  {
    std::lock_guard lock(mu_);
    session_ok_ = true;
    session_lost_ = false;
    ++stats_.sessions;
    work_ = true;
  }
  if (channels_) {
    channels_->session_opened();  // the old lease took our channel keys with it
  }
  keys_->lease_started(lease_);  // and the subsystems' keys too
  if (!resync()) {
    std::lock_guard lock(mu_);
    resync_due_ = true;
  }
  return {};
}

Status Membership::revoke_stale_leases() {
  while (!stale_leases_.empty()) {
    if (auto st = client_->revoke(stale_leases_.back()); !st) {
      return Error{st.error().code(), "revoking an old lease: " + st.error().message()};
    }
    stale_leases_.pop_back();
  }
  return {};
}

Status Membership::claim_node_id(bool first) {
  const std::string key = root_ + "/nodes/" + node_.config.node_id;
  const std::string& mine = link_->address();
  // At join, a holder may be this node's own predecessor that crashed: its lease ends within a
  // TTL. Later (a session after an outage) a holder is another node that took the id meanwhile.
  const auto give_up_at =
      Clock::now() + (first ? ttl_ + std::chrono::seconds(1) : std::chrono::milliseconds{0});
  for (int attempt = 0;; ++attempt) {
    auto outcome = client_->create_if_absent(key, mine, lease_);
    if (!outcome) {
      return Error{outcome.error().code(), "claiming node id: " + outcome.error().message()};
    }
    if (outcome->created) {
      return {};
    }
    if (outcome->value == mine && attempt < 3) {
      // Our own address: this process holds that port now, so the holder is this node under an
      // older lease (a restarted etcd restores it) or a predecessor that is gone.
      (void)client_->erase_if_created(key, outcome->create_revision);
      continue;
    }
    if (Clock::now() >= give_up_at) {
      return Error{Errc::already_exists,
                   "node id '" + node_.config.node_id + "' is in use by a live node at " +
                       outcome->value +
                       " (its lease is being renewed); node ids must be unique in "
                       "cluster '" +
                       node_.config.cluster.name + "'"};
    }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; })) {
      return Error{Errc::stopping, "the node is stopping"};
    }
  }
}

void Membership::note_outage(const Error& error) {
  if (++outage_attempts_ > 1) {  // the first failure of an episode was logged in full
    node_.log.debug("etcd session, attempt {}: {}", outage_attempts_, error.to_string());
    return;
  }
  if (error.code() == Errc::already_exists) {
    node_.log.error("{}; this node's services stay unregistered until it is free", error.message());
  } else {
    node_.log.warn(
        "no etcd session ({}): masters have stepped down, calls use the last known view; "
        "retrying",
        error.to_string());
  }
}

void Membership::note_recovered() {
  if (!outage_since_) {
    return;
  }
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - *outage_since_);
  node_.log.info("etcd session open again after {} ms{}: new lease {:x} at {}", took.count(),
                 outage_attempts_ > 0
                     ? " and " + std::to_string(outage_attempts_) + " failed attempts"
                     : std::string(),
                 lease_, client_->endpoint());
  outage_since_.reset();
  std::lock_guard lock(mu_);
  rejoining_ = true;
}

void Membership::close_session(const std::string& why) {
  {
    std::lock_guard lock(mu_);
    watched_ = nullptr;  // the watchdog stops reading it before it goes
  }
  watch_.reset();
  keep_alive_.reset();
  {
    std::lock_guard lock(mu_);
    session_ok_ = false;
    if (keys_) {
      keys_->lease_ended();
    }
    // Before anyone else can win: the lease is in doubt, so every mastership is given up now.
    demote_masters_locked(why);
    for (auto& [uid, local] : locals_) {
      local.registered = false;
      local.elect = !local.group.empty();
    }
  }
  if (lease_ != 0) {
    // Deletes every key of the old lease at once if etcd answers; otherwise it is revoked when
    // etcd answers again (a restarted etcd restores leases with a fresh TTL).
    if (auto revoked = client_->revoke(lease_); !revoked) {
      stale_leases_.push_back(lease_);
    }
    lease_ = 0;
  }
}

void Membership::watch_lease() {
  // Its own thread: the loop may sit in an etcd request for up to DialTimeout, longer than a
  // lease can be trusted without news.
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, kLoopTick, [&] { return stopping_; });
    if (stopping_ || watched_ == nullptr || session_lost_) {
      continue;
    }
    const auto now = Clock::now();
    const std::int64_t renewals = watched_->renewals();
    if (renewals != renewals_seen_) {
      stats_.lease_renewals +=
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, renewals - renewals_seen_));
      renewals_seen_ = renewals;
      renewed_at_ = now;
      continue;
    }
    // etcd may expire the lease as early as one TTL after the last renewal we saw (minus the round
    // trip). Two thirds of the TTL without a renewal means two missed ones: give every mastership
    // up now, before etcd can let another member win.
    if (now - renewed_at_ > ttl_ * 2 / 3) {
      const auto silent =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - renewed_at_).count();
      node_.log.warn("no lease renewal from etcd for {} ms", silent);
      demote_masters_locked("the lease is in doubt");
      session_lost_ = true;
      cv_.notify_all();
    }
  }
}

void install_membership() noexcept {
  install_cluster_factory(
      [](NodeImpl& node) { node.add_subsystem(std::make_shared<Membership>(node)); });
}

}  // namespace ember::detail
