// SPDX-License-Identifier: Apache-2.0
//
// A node's configuration, read from YAML (node.yaml). Keys keep the seed's PascalCase names:
//
//   NodeConf:
//     NodeId: game-1
//     WorkerThreads: 2
//   ServiceConf:
//     StartServices:
//       - ClassName: LoginService
//         ServiceName: login
//         WorkerConf: { WorkerNum: 4 }
//
// Every field below has the default that really applies when the key is absent.
#pragma once

#include <ember/requires_cxx20.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ember/error.hpp>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

/// What a bounded mailbox does when a user-priority message arrives while it is full.
enum class OverflowPolicy : std::uint8_t {
  reject,  ///< the sender gets Errc::overloaded (Call/Send fail at once); nothing is queued
};

/// WorkerConf.Scaling.Strategy: a strategy by registered name, its parameters (typed and checked
/// by the strategy when the node starts) and, for composites (all, any), its sub-strategies.
struct ScalingStrategyConfig {
  std::string name{};                           ///< Name (required)
  std::map<std::string, std::string> params{};  ///< Params: scalars, read by the strategy
  std::vector<ScalingStrategyConfig> subs{};    ///< Subs: for all / any, nestable
  std::string path{};  ///< key path of this strategy in the file, for error messages
  int line = 0;
};

/// How many lanes one decision adds or removes: a count, or a percentage of the current count
/// (rounded up, at least 1).
struct ScalingStep {
  int lanes = 1;
  int percent = 0;  ///< used instead of `lanes` when > 0
  [[nodiscard]] int of(int current) const noexcept {
    return percent > 0 ? std::max(1, (current * percent + 99) / 100) : lanes;
  }
};

/// WorkerConf.Scaling: the service's lane count follows its strategy.
struct ScalingConfig {
  int min_lanes = 0;                         ///< Min: default WorkerNum
  int max_lanes = 0;                         ///< Max: default MaxWorkerNum; must be above Min
  std::chrono::milliseconds interval{1000};  ///< Interval: between evaluations
  std::chrono::milliseconds cooldown{3000};  ///< Cooldown: at least this long between changes
  ScalingStep grow{};                        ///< GrowStep: lanes ("2") or percent ("50%")
  ScalingStep shrink{};                      ///< ShrinkStep
  int hysteresis = 2;  ///< Hysteresis: evaluations in a row that must agree before acting
  /// ShrinkMaxBusy: a shrink happens only if the lanes left would be at most this busy at the
  /// load just measured (wall time in handlers per lane); stops shrink/grow flapping under a
  /// steady load the smaller count cannot carry. 0 = no such check.
  double shrink_max_busy = 0.75;
  ScalingStrategyConfig strategy{};  ///< Strategy (required)
};

struct WorkerConfig {
  int lanes = 1;            ///< WorkerNum: 1 = strictly single-threaded service
  int max_lanes = 0;        ///< MaxWorkerNum: upper bound for run-time changes; 0 = none (1024)
  int virtual_nodes = 100;  ///< VirtualWorkerRate: ring points per lane (seed: 10; 100 keeps lanes
                            ///< within ~10 % of even)
  std::int64_t mailbox_bound = 0;  ///< MailboxSize: user messages queued per service; 0 = unbounded
  OverflowPolicy overflow = OverflowPolicy::reject;  ///< Overflow: "reject"
  /// Scaling: autoscaling of `lanes`; null = the lane count is fixed. Out of line and shared
  /// between copies: every service keeps a copy of its config, and most never scale.
  std::shared_ptr<const ScalingConfig> scaling{};
};

struct ServiceConfig {
  std::string class_name{};        ///< ClassName (required): factory key given to register_service
  std::string name{};              ///< ServiceName: routing name; default = ClassName
  std::string id{};                ///< ServiceId: instance id within a name; default ""
  std::string type{};              ///< Type: service type used by type selectors; default ""
  std::int32_t server_id = 0;      ///< ServerId: zone / namespace
  std::int64_t version = 0;        ///< Version
  bool primary_secondary = false;  ///< IsPrimarySecondaryMode: master/slave group member
  bool pinned = false;    ///< Pinned: run on dedicated thread(s) instead of the shared pool
  WorkerConfig worker{};  ///< WorkerConf
  std::map<std::string, std::string> params{};  ///< Params: free scalar settings for the service
  int line = 0;  ///< line of this entry in the file, for error messages
};

struct LogConfig {
  std::string level = "info";  ///< Level: trace|debug|info|warn|error|critical|off
  std::string path{};          ///< Path: directory for a log file; "" = stderr only
  std::string name = "ember";  ///< Name: log file base name (<Path>/<Name>.log)
};

/// ClusterConf: present ⇒ the node joins a cluster (discovery on etcd, node-to-node transport).
/// Absent ⇒ local mode: nothing is published, every service is master.
struct ClusterConfig {
  bool enabled = false;        ///< true when the ClusterConf section is present
  std::string name = "ember";  ///< Name: nodes of another cluster are refused at the handshake
  std::string secret{};        ///< Secret (required): proves membership; never sent
  std::string listen_host = "127.0.0.1";  ///< ListenAddr "host:port" (port 0 = any free port)
  std::uint16_t listen_port = 0;
  /// AdvertiseAddr: "host" or "host:port" other nodes dial; default the listen host. Required
  /// when listening on a wildcard address (0.0.0.0, ::), which nobody can dial.
  std::string advertise{};
  std::size_t max_frame = 16u << 20;  ///< MaxFrameSize (bytes): larger frames close the connection
  /// MaxPendingHandshakes: inbound connections still in their handshake, at most; further ones
  /// are closed at once until some finish or time out.
  std::size_t max_pending_handshakes = 256;
  std::vector<std::string> etcd_endpoints{};  ///< ETCDConf.Endpoints; default $EMBER_ETCD_ENDPOINTS
  std::chrono::milliseconds etcd_timeout{3000};  ///< ETCDConf.DialTimeout: per request, connect
  std::string key_prefix{};                      ///< DiscoveryConf.KeyPrefix; "" = /ember/<Name>
  std::chrono::milliseconds ttl{3000};           ///< DiscoveryConf.TTL: lease, whole seconds
};

/// Which backend carries events between nodes (EventBusConf.Backend).
enum class EventBackend : std::uint8_t {
  automatic,  ///< absent: "cluster" when ClusterConf is present, else "local"
  local,      ///< "local": events stay inside this node
  cluster,    ///< "cluster": over Ember's transport; subscriptions published in etcd
  nats,       ///< "nats": through a NATS server (EventBusConf.NatsConf)
};

/// EventBusConf.NatsConf: the NATS servers and subjects of the "nats" event backend.
struct NatsConfig {
  std::vector<std::string>
      endpoints{};         ///< Endpoints (required): "nats://host:port" or "host:port"
  std::string user{};      ///< UserName
  std::string password{};  ///< Password
  std::string token{};     ///< Token
  std::string global_prefix = "event.global";  ///< GlobalPrefix: subject <prefix>.<type>
  std::string server_prefix = "event.server";  ///< ServerPrefix: subject <prefix>.<type>.<serverId>
  std::chrono::milliseconds timeout{2000};     ///< Timeout: connecting, and flushing at stop
  std::chrono::milliseconds reconnect_wait{500};  ///< ReconnectWait: between attempts
  std::int64_t reconnect_buffer = 8 << 20;        ///< ReconnectBufSize: bytes kept while away
  std::int64_t pending_limit = 1'000'000;         ///< PendingLimit: messages held per subscription
                                                  ///< before NATS drops (slow consumer)
};

struct EventBusConfig {
  EventBackend backend = EventBackend::automatic;  ///< Backend: cluster | nats | local
  NatsConfig nats{};                               ///< NatsConf
};

/// GateConf: present ⇒ the node runs the client gateway (link ember::gate): game clients connect
/// over WebSocket and/or TCP, log in through a backend method, and call routes "service.Method".
struct GateConfig {
  bool enabled = false;  ///< true when the GateConf section is present
  /// WebSocketAddr "host:port" (port 0 = any free port); "" = no WebSocket listener. The same
  /// listener serves StaticDir over HTTP.
  std::string websocket_addr{};
  std::string websocket_path = "/ws";  ///< WebSocketPath: where clients upgrade
  std::string tcp_addr{};              ///< TcpAddr "host:port"; "" = no TCP listener
  std::string cert_file{};  ///< TlsConf.CertFile (PEM chain): set ⇒ both listeners speak TLS
  std::string key_file{};   ///< TlsConf.KeyFile (PEM)
  std::string login{};      ///< Login (required): "service.Method" taking ember.gate.LoginRequest
  /// Routes (required): what clients may call, "service.Method" or "service.*".
  std::vector<std::string> routes{};
  std::string static_dir{};                    ///< StaticDir: files served on the WebSocket port
  std::vector<std::string> allowed_origins{};  ///< AllowedOrigins: empty = any Origin
  int io_threads = 1;                          ///< IoThreads: threads running the sockets
  std::size_t max_connections = 10000;         ///< MaxConnections: beyond it, closed at accept
  std::size_t max_frame = 64u << 10;           ///< MaxFrameBytes: a larger frame closes
  std::size_t requests_per_second = 50;        ///< RequestsPerSecond: per connection, sustained
  std::size_t request_burst = 100;             ///< RequestBurst: per connection, at once
  std::size_t max_in_flight = 32;  ///< MaxInFlight: requests of one connection not yet answered
  std::size_t send_queue_bytes = 1u << 20;  ///< SendQueueBytes: unsent bytes before a kick
  std::chrono::milliseconds handshake_timeout{10000};  ///< HandshakeTimeout: until logged in
  std::chrono::milliseconds heartbeat{10000};          ///< Heartbeat: what clients are told
  std::chrono::milliseconds idle_timeout{30000};       ///< IdleTimeout: silence before closing
  std::chrono::milliseconds request_timeout{5000};     ///< RequestTimeout: per client request
  /// DrainTimeout: how long a draining gateway (node stop, Gate::drain) waits for its clients to
  /// reconnect elsewhere before it closes the rest.
  std::chrono::milliseconds drain_timeout{10000};
  /// PublicUrls: where clients reach this gateway, as other gateways' drain hints name it
  /// ("wss://eu1.example.com/ws"); empty: its listeners' addresses.
  std::vector<std::string> public_urls{};
  /// ResumeWindow: how long the session of a resumable client whose connection was lost waits
  /// for it to resume (on this gateway or another); 0: it ends with its connection.
  std::chrono::milliseconds resume_window{30000};
  /// ResumeBufferBytes: per resumable session, the pushes and answers kept until the client
  /// acknowledges them; a session that would need more is not resumable any more.
  std::size_t resume_buffer_bytes = 256u << 10;
};

/// AdminConf: present ⇒ the node runs its admin listener (link ember::admin): Prometheus metrics
/// at /metrics, health probes at /healthz and /readyz, a JSON API under /api/ and a dashboard
/// at /. Present also turns on what it reports: every service measures how long its messages
/// wait and run, and slow handlers are counted and logged.
struct AdminConfig {
  bool enabled = false;  ///< true when the AdminConf section is present
  /// ListenAddr "host:port" (port 0 = any free port, logged at start).
  std::string listen_addr = "127.0.0.1:0";
  /// Token: requests must carry "Authorization: Bearer <Token>" (the probes /healthz and /readyz
  /// excepted). Required, at least 16 characters, when ListenAddr is not a loopback address.
  std::string token{};
  /// SlowHandler: a handler that runs longer is counted per service and method and logged.
  std::chrono::milliseconds slow_handler{10};
  /// VerySlowHandler: a second level, logged as an error.
  std::chrono::milliseconds very_slow_handler{1000};
  /// HealthStall: /healthz fails when the node's worker threads or timer thread have not turned
  /// for this long.
  std::chrono::milliseconds health_stall{10000};
};

struct NodeConfig {
  std::string node_id = "node";              ///< NodeConf.NodeId
  int worker_threads = 0;                    ///< NodeConf.WorkerThreads: 0 = number of cores
  std::chrono::milliseconds timer_tick{10};  ///< NodeConf.TimerTick
  std::chrono::milliseconds shutdown_timeout{5000};  ///< NodeConf.ShutdownTimeout: drain bound
  std::chrono::milliseconds call_timeout{1000};      ///< NodeConf.CallTimeout: default Call timeout
  LogConfig log{};                                   ///< SystemLogger
  ClusterConfig cluster{};                           ///< ClusterConf
  EventBusConfig events{};                           ///< EventBusConf
  GateConfig gate{};                                 ///< GateConf
  AdminConfig admin{};                               ///< AdminConf
  std::vector<ServiceConfig> services{};             ///< ServiceConf.StartServices, in order
  std::string source{};  ///< file (or source name) the config came from, for error messages
};

/// The backend a node with this configuration uses (resolves `automatic`).
[[nodiscard]] EventBackend event_backend(const NodeConfig& config) noexcept;

/// Parses a Go-style duration: "10ms", "1.5s", "1m30s", "2h", "250us". A bare integer means ms.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);
/// The same, to the nanosecond ("250us" stays 250 us).
Result<std::chrono::nanoseconds> parse_duration_ns(std::string_view text);

/// Replaces ${VAR} and ${VAR:-default} with environment values. An unset variable without a
/// default is an error naming its line. "$$" yields a literal "$".
Result<std::string> expand_env(std::string_view text, std::string_view source_name);

/// Parses and validates YAML text. Errors name source, line and key path and the node refuses
/// to start: unknown key, wrong type, missing required field, duplicate service name+id.
/// Whether each ClassName is registered is checked by the node, which knows the factory.
Result<NodeConfig> parse_node_config(std::string_view yaml_text, std::string_view source_name);

/// Reads a file, expands ${VAR}, then parse_node_config.
Result<NodeConfig> load_node_config(const std::string& path);

}  // namespace ember
