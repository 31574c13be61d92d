// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/cluster_keys.hpp"
#include "cluster/cluster_link.hpp"
#include "cluster/etcd/etcd_client.hpp"
#include "cluster/event_channels.hpp"
#include "core/subsystem.hpp"
#include "ops/observable.hpp"
#include "runtime/thread.hpp"

namespace ember::detail {

class NodeImpl;
class ServiceAnchor;
class ServiceCore;

/// Counters of one node's cluster membership (read any time).
struct MembershipStats {
  std::uint64_t sessions = 0;         ///< leases granted (1 + re-registrations after a loss)
  std::uint64_t resyncs = 0;          ///< full reads of the service records
  std::uint64_t elections_won = 0;    ///< times a local service became master
  std::uint64_t elections_lost = 0;   ///< times a local service became slave (another won)
  std::uint64_t lease_renewals = 0;   ///< keep-alive answers from etcd for the node's lease
  std::uint64_t demotions = 0;        ///< times a local master gave the role up
  std::uint64_t depositions = 0;      ///< masters this node removed for an epoch below one seen
  std::uint64_t outages = 0;          ///< times etcd stopped answering (each ends with a session)
  std::uint64_t remote_services = 0;  ///< services of other nodes in the repository now
  bool connected = false;             ///< a live lease and an up-to-date view right now
};

/// A node's place in the cluster, as a node subsystem: the cluster view (discovery into the
/// repository, election of group masters) on the coordinator's store, the transport it starts
/// (ClusterLink, the node's remote router), and the event channels it keeps under its lease. One
/// lease per node holds every key the node writes; one loop thread does all store work, so
/// registrations, elections and repository updates happen in one order.
///
/// Keys (under ClusterConf.DiscoveryConf.KeyPrefix, default /ember/<cluster name>):
///   <prefix>/services/<uid>                  ServiceRecord as JSON, one per published service
///   <prefix>/masters/<name>.<id>.<server_id> uid of the group's master; the epoch base read in
///                                            the same transaction plus the key's create
///                                            revision is the master's epoch
///   <prefix>/epoch-base                      the epoch floor, raised by every node to the highest
///                                            epoch it has seen when it opens a session (no
///                                            lease: it survives nodes, not a wiped etcd)
///   <prefix>/nodes/<node id>                 the node's transport address: one live node per id
///   <prefix>.sessions/<uid>                  the gateway's session directory (LeasedKeys): kept
///                                            outside <prefix>/, which every node watches
///   <prefix>/events/<node>/<channel>         the node's address, while one of its services
///                                            subscribes to the channel (global.<type> or
///                                            server.<id>.<type>): the "cluster" event backend
class Membership final : public Subsystem, public ops::Observable {
 public:
  explicit Membership(NodeImpl& node);
  ~Membership() override;

  /// The node's membership, or nullptr outside a cluster.
  static Membership* of(NodeImpl& node) noexcept;

  [[nodiscard]] std::string_view name() const noexcept override { return "cluster"; }
  /// Starts the transport, connects to the store, takes a lease and reads the cluster's
  /// services. Fails (and the node does not start) if the store cannot be reached.
  Status start() override;
  /// A service became visible: its record is written and, in a group, it runs for master.
  void service_visible(ServiceCore& service) override;
  /// Its stop began: its record goes, and a master gives its role up at once.
  void service_hidden(ServiceCore& service) override;
  /// Waits (bounded by the store timeout) until what was published so far is registered.
  Status settle() override;
  /// Leaves the cluster: called once the node's services have drained.
  void stop() override;

  /// Waits (bounded) until what was published so far (records, elections, event channels) is
  /// in the store. A timeout is logged, not returned: the loop writes it when the store answers.
  Status flush(std::chrono::milliseconds timeout);
  [[nodiscard]] MembershipStats stats() const;
  // ops::Observable (membership_ops.cpp): cluster and transport figures; not ready while the
  // node has no live lease and up-to-date view.
  void collect(metrics::Sink& sink) const override;
  [[nodiscard]] std::string_view status_key() const override { return "cluster"; }
  [[nodiscard]] std::string status() const override;
  [[nodiscard]] std::string not_ready() const override;
  [[nodiscard]] ClusterLink& link() noexcept { return *link_; }
  /// The "cluster" event backend, kept under this node's lease.
  [[nodiscard]] const std::shared_ptr<EventChannels>& event_channels() const noexcept {
    return channels_;
  }
  [[nodiscard]] const std::string& key_prefix() const noexcept { return root_; }

 private:
  enum class Held : std::uint8_t { none, master, slave };  // what the service was told
  struct Local {
    std::shared_ptr<ServiceAnchor> anchor;  // refuses once the service is gone
    ServiceCore* core = nullptr;            // dereferenced only through the anchor
    std::string group;                      // master key suffix; "" outside master/slave groups
    bool publish_record = true;             // false: private, takes part in elections only
    bool registered = false;                // record written under the current lease
    bool elect = false;                     // an election attempt is due
    Held role = Held::none;
    [[nodiscard]] bool is_master() const noexcept { return role == Held::master; }
    std::int64_t epoch = 0;         // while master: epoch base + key_revision
    std::int64_t key_revision = 0;  // while master: create revision of the master key
  };
  struct Removal {
    std::string record_key;
    std::string master_key;  // "" unless it was master
    std::int64_t key_revision = 0;
  };
  struct WatchBatch {
    std::uint64_t watch_generation = 0;
    std::vector<etcd::Event> events;
  };

  void run();
  /// Takes a new lease and makes it this node's session: old leases revoked, node id claimed,
  /// epoch base raised, records read. `first`: at join, where a node id held by another live
  /// node is waited for (a crashed predecessor's lease expiring) and then refused.
  Status open_session(bool first);
  bool resync();
  Status revoke_stale_leases();
  Status claim_node_id(bool first);
  Status raise_epoch_base();
  void note_epoch(const std::string& group, std::int64_t epoch, const std::string& holder);
  void note_revision(std::int64_t revision);  // the highest store revision this node has seen
  void depose_if_stale(const std::string& group, const std::string& uid, std::int64_t epoch);
  void note_outage(const Error& error);
  void note_recovered();
  void close_session(const std::string& why);
  void apply(const etcd::Event& event);
  void elect(const std::string& uid);
  void register_pending();
  void apply_removals(std::vector<Removal> removals);
  void watch_lease();  // the watchdog thread
  void wake();
  // With mu_ held: changes a local service's role and tells it.
  void set_role_locked(Local& local, Held role, std::int64_t epoch);
  // With mu_ held: a master gives its role up and runs for it again.
  void step_down_locked(const std::string& uid, Local& local, const std::string& why);
  void demote_masters_locked(const std::string& why);
  std::string record_json_locked(const Local& local) const;
  std::string record_key(const std::string& uid) const { return services_prefix_ + uid; }
  std::string master_key(const std::string& group) const { return masters_prefix_ + group; }

  NodeImpl& node_;
  std::string root_;
  std::string services_prefix_;  // <root>/services/
  std::string masters_prefix_;   // <root>/masters/
  std::string events_prefix_;    // <root>/events/
  std::chrono::milliseconds ttl_;
  std::shared_ptr<ClusterLink> link_;
  std::shared_ptr<store::Store> client_;
  std::unique_ptr<ClusterKeys> keys_;  // the subsystems' keys under this node's lease

  // Loop-thread state.
  etcd::LeaseId lease_ = 0;
  // Leases of earlier sessions etcd may still hold (revoking them failed): revoked as soon as etcd
  // answers, so their master keys do not block elections for a TTL after an etcd restart.
  std::vector<etcd::LeaseId> stale_leases_;
  std::map<std::string, std::int64_t> epoch_seen_;   // group -> highest master epoch seen
  std::map<std::string, std::string> epoch_holder_;  // group -> uid that held epoch_seen_
  std::int64_t epoch_max_ = 0;                       // over every group
  struct MasterKey {
    std::int64_t create_revision = 0;
    std::string holder;  // uid
  };
  std::map<std::string, MasterKey> master_keys_;  // group -> the master key in etcd now
  std::optional<std::chrono::steady_clock::time_point> outage_since_;
  int outage_attempts_ = 0;
  std::atomic<std::int64_t> revision_seen_{0};  // the watch thread and the loop
  // Set when the store lost its data: no election before it (see raise_epoch_base).
  std::optional<std::chrono::steady_clock::time_point>
      elections_held_until_;  // failed session attempts in this episode (the first is logged)
  bool rejoining_ = false;    // a session opened after an outage: "rejoined" is logged once settled
  std::unique_ptr<store::Store::KeepAlive> keep_alive_;
  std::unique_ptr<store::Store::Watch> watch_;
  std::set<std::string> remote_;             // uids of other nodes' services in the repository
  std::shared_ptr<EventChannels> channels_;  // set at start, with the transport

  mutable std::mutex mu_;
  runtime::CondVar cv_;
  std::map<std::string, Local> locals_;  // by uid
  std::vector<Removal> removals_;
  std::vector<WatchBatch> batches_;
  bool stopping_ = false;
  bool work_ = false;  // an election or registration is due
  bool session_ok_ = false;
  bool session_lost_ = false;  // the lease is in doubt: a new session is due
  bool resync_due_ = false;    // the watch ended: re-read and watch again
  std::uint64_t watch_generation_ = 0;
  std::uint64_t flush_requested_ = 0;
  std::uint64_t flush_done_ = 0;
  MembershipStats stats_;
  // Watchdog state (under mu_): the keep-alive it reads and when it last saw a renewal.
  const store::Store::KeepAlive* watched_ = nullptr;
  std::int64_t renewals_seen_ = 0;
  std::chrono::steady_clock::time_point renewed_at_;
  runtime::Thread loop_;
  runtime::Thread watchdog_;
};

/// Installs the membership as the cluster subsystem of nodes with a ClusterConf (done by the
/// cluster component when a program links it).
void install_membership() noexcept;

/// Where a node's membership finds its coordinator's store. Null (the default): an etcd client
/// on ClusterConf's endpoints. Tests and the simulator install one that hands out a shared
/// MemoryStore, so several nodes of one process form a cluster without an etcd process.
using StoreFactory = std::function<Result<std::shared_ptr<store::Store>>(NodeImpl& node)>;
void install_store_factory(StoreFactory factory);

}  // namespace ember::detail
