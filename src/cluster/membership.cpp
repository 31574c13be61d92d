// SPDX-License-Identifier: Apache-2.0
#include "cluster/membership.hpp"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <random>

#include "core/node_impl.hpp"
#include "core/service_core.hpp"
#include "ember/wire.pb.h"
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

/// An epoch as stored in etcd (decimal). Anything else reads as 0: a damaged base only makes the
/// next raise rewrite it.
std::int64_t parse_epoch(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && end == text.data() + text.size() && value > 0 ? value : 0;
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
  NodeImpl& node = node_;
  const ClusterConfig& cfg = node.config.cluster;
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
  transport.node_id = node.config.node_id;
  transport.secret = cfg.secret;
  transport.listen_host = cfg.listen_host;
  transport.listen_port = cfg.listen_port;
  transport.max_frame = cfg.max_frame;
  transport.max_pending_handshakes = cfg.max_pending_handshakes;
  auto link = ClusterLink::create(node, std::move(transport),
                                  cfg.advertise.empty() ? cfg.listen_host : cfg.advertise);
  if (!link) {
    return Error{link.error().code(), "ClusterConf.ListenAddr " + cfg.listen_host + ":" +
                                          std::to_string(cfg.listen_port) + ": " +
                                          link.error().message()};
  }
  link_ = std::move(*link);
  channels_ = std::make_shared<EventChannels>(events_prefix_, node.config.node_id, link_,
                                              [this] { wake(); });
  const std::string coordinator =
      make_store ? std::string("the installed store") : "etcd at " + join_list(endpoints);
  auto client = [&]() -> Result<std::shared_ptr<store::Store>> {
    if (make_store) {
      return make_store(node);
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
  if (auto opened = open_session(true); !opened) {
    close_session("the node did not start");
    link_->stop();
    if (opened.error().code() == Errc::already_exists) {
      return opened.error();
    }
    return Error{opened.error().code(),
                 "cannot register with " + coordinator + ": " + opened.error().message()};
  }
  node.log.info("joined cluster '{}' at {} (etcd {}, keys under {})", cfg.name, link_->address(),
                client_->endpoint(), root_);
  loop_ = runtime::Thread([this] { run(); });
  watchdog_ = runtime::Thread([this] { watch_lease(); });
  // Calls to services of other nodes go straight to the transport.
  Messaging::of(node).set_remote(link_);
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
    // Given up at once so a slave elsewhere takes over now, not when the lease ends.
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

Status Membership::raise_epoch_base() {
  if (epoch_max_ == 0) {
    return {};  // nothing seen: nothing to protect
  }
  const std::string key = root_ + "/epoch-base";
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto got = client_->get(key);
    if (!got) {
      return Error{got.error().code(), "reading the epoch base: " + got.error().message()};
    }
    std::int64_t base = 0;
    std::int64_t mod_revision = 0;
    if (!got->kvs.empty()) {
      base = parse_epoch(got->kvs.front().value);
      mod_revision = got->kvs.front().mod_revision;
    } else if (attempt == 0) {
      // This node has seen epochs, and the store has no base: it lost its data. Other survivors
      // may have seen higher epochs than this node; an election before they raise the base too
      // could grant an epoch below one already used. Each of them opens its session, and raises
      // the base, within a TTL of the loss.
      elections_held_until_ = Clock::now() + ttl_ + std::chrono::seconds(1);
      node_.log.warn(
          "etcd has no epoch base: it lost its data; elections wait {} ms for every surviving "
          "node to raise the base to the highest epoch it has seen",
          std::chrono::duration_cast<std::chrono::milliseconds>(ttl_ + std::chrono::seconds(1))
              .count());
    }
    if (base >= epoch_max_) {
      return {};
    }
    auto put = client_->put_if_unchanged(key, std::to_string(epoch_max_), mod_revision);
    if (!put) {
      return Error{put.error().code(), "raising the epoch base: " + put.error().message()};
    }
    if (*put) {
      node_.log.info("epoch base raised from {} to {}, the highest epoch this node has seen", base,
                     epoch_max_);
      return {};
    }
    // Another node raised it meanwhile: read it again.
  }
  return Error{Errc::bad_state, "the epoch base kept changing"};
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

bool Membership::resync() {
  watch_.reset();  // joins the watch thread: no event of the old watch arrives after this
  const std::string& services = services_prefix_;
  auto snapshot = client_->get_prefix(root_ + "/");  // services, masters and event channels
  if (!snapshot) {
    std::lock_guard lock(mu_);
    // While the session is down the outage has been reported once; this is one more symptom.
    const auto level = session_ok_ && !session_lost_ ? LogLevel::warn : LogLevel::debug;
    node_.log.log(level, "etcd resync: {}", snapshot.error().to_string());
    return false;
  }
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    generation = ++watch_generation_;
    batches_.clear();
    // A master key may have gone while we were not watching.
    for (auto& [uid, local] : locals_) {
      if (!local.group.empty() && !local.is_master()) {
        local.elect = true;
      }
    }
    ++stats_.resyncs;
  }
  std::set<std::string> present;
  for (const auto& kv : snapshot->kvs) {
    if (kv.key.starts_with(services)) {
      present.insert(kv.key.substr(services.size()));
    }
  }
  if (channels_) {
    channels_->forget_others();  // rebuilt from the snapshot below
  }
  for (auto it = remote_.begin(); it != remote_.end();) {
    if (present.count(*it) == 0) {
      Messaging::of(node_).repository().remove(*it);
      it = remote_.erase(it);
    } else {
      ++it;
    }
  }
  master_keys_.clear();  // rebuilt from the snapshot (keys sort masters before services)
  for (const auto& kv : snapshot->kvs) {
    etcd::Event put;
    put.kv = kv;
    apply(put);
  }
  {
    // A master whose key is gone or is another incarnation lost it while we were not watching.
    std::lock_guard lock(mu_);
    for (auto& [uid, local] : locals_) {
      if (!local.is_master()) {
        continue;
      }
      auto held = master_keys_.find(local.group);
      if (held == master_keys_.end() || held->second.holder != uid ||
          held->second.create_revision != local.key_revision) {
        step_down_locked(uid, local, "the master key of " + local.group + " is no longer its own");
      }
    }
  }
  auto watch = client_->watch_prefix(
      root_ + "/", snapshot->revision + 1,
      [this, generation](std::vector<etcd::Event>&& events, std::int64_t) {
        std::lock_guard lock(mu_);
        batches_.push_back(WatchBatch{generation, std::move(events)});
        cv_.notify_all();
      },
      [this, generation](const Error& error) {
        node_.log.warn("etcd watch ended: {}", error.to_string());
        std::lock_guard lock(mu_);
        if (generation == watch_generation_) {
          resync_due_ = true;
          cv_.notify_all();
        }
      });
  if (!watch) {
    node_.log.warn("etcd watch: {}", watch.error().to_string());
    return false;
  }
  watch_ = std::move(*watch);
  return true;
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

void Membership::apply(const etcd::Event& event) {
  const std::string& services = services_prefix_;
  const std::string& masters = masters_prefix_;
  const std::string& key = event.kv.key;
  if (key.starts_with(services)) {
    std::string uid = key.substr(services.size());
    if (event.type == etcd::Event::Type::erase) {
      if (remote_.erase(uid) > 0) {
        Messaging::of(node_).repository().remove(uid);
      }
    } else {
      wire::ServiceRecord record;
      google::protobuf::util::JsonParseOptions options;
      options.ignore_unknown_fields = true;  // records written by newer nodes
      auto parsed = google::protobuf::util::JsonStringToMessage(event.kv.value, &record, options);
      if (!parsed.ok() || record.node_id().empty() || record.name().empty() ||
          record.address().empty()) {
        node_.log.warn("ignoring malformed service record {}: {}", key,
                       parsed.ok() ? "node_id, name or address missing" : parsed.ToString());
        return;
      }
      if (record.node_id() == node_.config.node_id) {
        return;  // our own services are in the repository already
      }
      auto pid = std::make_shared<Pid>();
      pid->node_id = record.node_id();
      pid->name = record.name();
      pid->id = record.id();
      pid->type = record.type();
      pid->server_id = record.server_id();
      pid->version = record.version();
      pid->master = record.master();
      pid->epoch = record.epoch();
      pid->address = record.address();
      if (pid->uid() != uid) {
        node_.log.warn("ignoring service record {}: its key does not match its uid {}", key,
                       pid->uid());
        return;
      }
      if (record.master() && record.epoch() > 0) {
        depose_if_stale(
            record.name() + "." + record.id() + "." + std::to_string(record.server_id()), uid,
            static_cast<std::int64_t>(record.epoch()));
      }
      Messaging::of(node_).repository().add(std::move(pid), nullptr);
      remote_.insert(uid);
    }
    std::lock_guard lock(mu_);
    stats_.remote_services = remote_.size();
    return;
  }
  if (channels_ && channels_->owns(key)) {
    channels_->apply(key, event.kv.value, event.type == etcd::Event::Type::erase);
    return;
  }
  if (key.starts_with(masters)) {
    const std::string group = key.substr(masters.size());
    if (event.type == etcd::Event::Type::put) {
      master_keys_[group] = MasterKey{event.kv.create_revision, event.kv.value};
      return;
    }
    master_keys_.erase(group);
    std::lock_guard lock(mu_);
    for (auto& [uid, local] : locals_) {
      if (local.group != group) {
        continue;
      }
      if (local.is_master()) {
        if (event.kv.mod_revision <= local.key_revision) {
          continue;  // an older incarnation's deletion, replayed
        }
        // Someone removed our key (a node that saw a higher epoch deposed us): whoever wins
        // next may act as master, so this one must stop now.
        step_down_locked(uid, local, "the master key of " + group + " was deleted");
        continue;
      }
      local.elect = true;
      work_ = true;
    }
  }
}

void Membership::elect(const std::string& uid) {
  std::string group;
  {
    std::lock_guard lock(mu_);
    auto it = locals_.find(uid);
    if (it == locals_.end() || !it->second.elect || !session_ok_ || session_lost_) {
      return;
    }
    group = it->second.group;
  }
  const std::string key = master_key(group);
  auto outcome = client_->create_if_absent(key, uid, lease_, root_ + "/epoch-base");
  if (!outcome) {
    node_.log.warn("election of {}: {}", group, outcome.error().to_string());
    return;  // retried on the next pass; a lost etcd also ends the session
  }
  if (!outcome->created && outcome->value == uid) {
    // Our own key from an earlier lease: it dies with that lease, so it proves nothing. Hand it
    // back and run again.
    (void)client_->erase_if_created(key, outcome->create_revision);
    std::lock_guard lock(mu_);
    work_ = true;
    return;
  }
  std::lock_guard lock(mu_);
  auto it = locals_.find(uid);
  if (it == locals_.end()) {
    if (outcome->created) {  // the service left while we won for it
      removals_.push_back(Removal{"", key, outcome->create_revision});
    }
    return;
  }
  if (session_lost_) {
    // The lease fell into doubt while the transaction ran: a win under it must not count.
    if (outcome->created) {
      removals_.push_back(Removal{"", key, outcome->create_revision});
    }
    return;
  }
  Local& local = it->second;
  local.elect = false;
  if (outcome->created) {
    // The base was read in the winning transaction: it covers every epoch the nodes that opened
    // a session before it had seen, even when etcd lost its data and revisions restarted.
    const std::int64_t epoch = parse_epoch(outcome->also_value) + outcome->create_revision;
    ++stats_.elections_won;
    node_.log.info("{} is master of {} (epoch {})", uid, group, epoch);
    local.key_revision = outcome->create_revision;
    set_role_locked(local, Held::master, epoch);
    note_epoch(group, epoch);
  } else {
    set_role_locked(local, Held::slave, 0);
  }
}

void Membership::note_epoch(const std::string& group, std::int64_t epoch) {
  std::int64_t& seen = epoch_seen_[group];
  seen = std::max(seen, epoch);
  epoch_max_ = std::max(epoch_max_, epoch);
}

void Membership::depose_if_stale(const std::string& group, const std::string& uid,
                                 std::int64_t epoch) {
  const std::int64_t seen = epoch_seen_[group];
  if (epoch >= seen) {
    note_epoch(group, epoch);
    return;
  }
  // A master below an epoch already seen for its group: elected before the epoch base was raised
  // (etcd lost its data and a node that had seen nothing won first). Receivers that check epochs
  // would refuse it forever, so its key goes and the group elects again above the base.
  auto held = master_keys_.find(group);
  if (held == master_keys_.end() || held->second.holder != uid) {
    return;  // a stale record of a master that is gone already
  }
  if (auto erased = client_->erase_if_created(master_key(group), held->second.create_revision);
      erased && *erased) {
    node_.log.warn("deposed {} as master of {}: its epoch {} is below {} seen before", uid, group,
                   epoch, seen);
    std::lock_guard lock(mu_);
    ++stats_.depositions;
  }
}

void Membership::set_role_locked(Local& local, Held role, std::int64_t epoch) {
  const Held before = local.role;
  if (before == role && local.epoch == epoch) {
    return;
  }
  local.role = role;
  local.epoch = role == Held::master ? epoch : 0;
  if (role != Held::master) {
    local.key_revision = 0;
  }
  local.registered = false;  // the record shows the role: rewrite it
  if (before == Held::master) {
    ++stats_.demotions;
  }
  local.anchor->with_core([&](ServiceCore* core) {
    if (core == nullptr) {
      return;
    }
    auto pid = core->set_role(local.is_master(), static_cast<std::uint64_t>(local.epoch));
    Messaging::of(node_).repository().add(std::move(pid), local.anchor);
    if (before == Held::master) {
      core->notify_role(RoleChange::lose_master, 0);
    }
    if (role == Held::master) {
      core->notify_role(RoleChange::become_master, static_cast<std::uint64_t>(epoch));
    } else if (role == Held::slave && before != Held::slave) {
      core->notify_role(RoleChange::become_slave, 0);
    }
  });
  if (role == Held::none && before == Held::slave) {
    local.role = Held::slave;  // a slave stays one while the cluster is unsure
  }
}

void Membership::step_down_locked(const std::string& uid, Local& local, const std::string& why) {
  node_.log.warn("{} stops acting as master: {}", uid, why);
  set_role_locked(local, Held::none, 0);
  local.elect = true;
  work_ = true;
}

void Membership::demote_masters_locked(const std::string& why) {
  for (auto& [uid, local] : locals_) {
    if (local.is_master()) {
      step_down_locked(uid, local, why);
    }
  }
}

std::string Membership::record_json_locked(const Local& local) const {
  return local.anchor->with_core([&](ServiceCore* core) -> std::string {
    if (core == nullptr) {
      return {};
    }
    const Pid& pid = core->pid();
    wire::ServiceRecord record;
    record.set_node_id(pid.node_id);
    record.set_name(pid.name);
    record.set_id(pid.id);
    record.set_type(pid.type);
    record.set_server_id(pid.server_id);
    record.set_version(pid.version);
    record.set_master(pid.master);
    record.set_epoch(pid.epoch);
    record.set_address(link_->address());
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(record, &json, options);
    return json;
  });
}

void Membership::register_pending() {
  std::vector<std::pair<std::string, std::string>> writes;  // uid, record
  {
    std::lock_guard lock(mu_);
    if (!session_ok_ || session_lost_) {
      return;
    }
    for (const auto& [uid, local] : locals_) {
      // A group member is written once it knows its role, so nobody routes to a maybe-master.
      if (local.publish_record && !local.registered && !local.elect) {
        std::string json = record_json_locked(local);
        if (!json.empty()) {
          writes.emplace_back(uid, std::move(json));
        }
      }
    }
  }
  for (auto& [uid, json] : writes) {
    auto put = client_->put(record_key(uid), json, lease_);
    if (!put) {
      node_.log.warn("registering {}: {}", uid, put.error().to_string());
      return;  // retried on the next pass
    }
    std::lock_guard lock(mu_);
    auto it = locals_.find(uid);
    if (it != locals_.end()) {
      it->second.registered = true;
    } else {  // unpublished meanwhile: its removal may have run before this put
      removals_.push_back(Removal{record_key(uid), "", 0});
    }
  }
}

void Membership::apply_removals(std::vector<Removal> removals) {
  for (const auto& removal : removals) {
    if (!removal.record_key.empty()) {
      if (auto erased = client_->erase(removal.record_key); !erased) {
        node_.log.warn("unregistering {}: {} (the lease will remove it)", removal.record_key,
                       erased.error().to_string());
      }
    }
    if (!removal.master_key.empty()) {
      (void)client_->erase_if_created(removal.master_key, removal.key_revision);
    }
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
