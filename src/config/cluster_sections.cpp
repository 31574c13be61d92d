// SPDX-License-Identifier: Apache-2.0
#include <array>
#include <chrono>
#include <cstdint>
#include <ember/config.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/field_table.hpp"
#include "config/sections.hpp"
#include "config/yaml_walker.hpp"

namespace ember::config {
namespace {

using namespace std::chrono_literals;

constexpr std::array<std::string_view, 3> kBackendNames = {"cluster", "nats", "local"};
constexpr std::array<EventBackend, 3> kBackends = {EventBackend::cluster, EventBackend::nats,
                                                   EventBackend::local};

// ETCDConf.Endpoints item: checked as host:port, kept as written.
Result<std::string> read_etcd_endpoint(const Walker& walker, const Entry& e) {
  Result<HostPort> address = walker.read_host_port(e);
  if (!address)
    return address.error();
  return std::move(address->text);
}

Result<std::string> read_key_prefix(const Walker& walker, const Entry& e) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  if (value->front() != '/')
    return walker.fail(e, "must start with '/', got " + quote(*value));
  while (value->size() > 1 && value->back() == '/') value->pop_back();
  return value;
}

// etcd leases count whole seconds.
Result<std::chrono::milliseconds> read_lease_ttl(const Walker& walker, const Entry& e) {
  Result<std::chrono::milliseconds> value = walker.read_duration(e, 1s, 1h, "1s..1h");
  if (!value)
    return value;
  if (value->count() % 1000 != 0) {
    return walker.fail(
        e, "must be whole seconds (etcd leases count seconds), got " + quote(e.scalar()));
  }
  return value;
}

// NatsConf.Endpoints item: one server, so that a comma-separated list is not taken as one URL.
Result<std::string> read_nats_server(const Walker& walker, const Entry& e) {
  Result<std::string> url = walker.read_string(e, /*non_empty=*/true);
  if (!url)
    return url;
  if (url->find_first_of(" \t,") != std::string::npos) {
    return walker.fail(e, "expected one server per item (nats://host:port), got " + quote(*url));
  }
  return url;
}

Result<std::string> read_subject_prefix(const Walker& walker, const Entry& e) {
  Result<std::string> value = walker.read_string(e, /*non_empty=*/true);
  if (!value)
    return value;
  const bool wildcard = value->find_first_of("*> \t") != std::string::npos;
  if (wildcard || value->front() == '.' || value->back() == '.') {
    return walker.fail(e,
                       "expected a subject prefix such as \"event.global\" (no wildcards, spaces "
                       "or leading/trailing dots), got " +
                           quote(*value));
  }
  return value;
}

}  // namespace

const Section<ClusterConfig>& cluster_section() {
  static const Section<ClusterConfig> section{
      {
          field("Name", &ClusterConfig::name, Text{.non_empty = true}),
          field("Secret", &ClusterConfig::secret, Text{.non_empty = true})
              .required("every node of a cluster shares this secret"),
          {"ListenAddr",
           [](const Walker& walker, const Entry& e, ClusterConfig& cluster) -> Status {
             Result<HostPort> address = walker.read_host_port(e);
             if (!address)
               return address.error();
             cluster.listen_host = std::move(address->host);
             cluster.listen_port = address->port;
             return ok_status();
           }},
          field("AdvertiseAddr", &ClusterConfig::advertise, Text{}),
          field("MaxFrameSize", &ClusterConfig::max_frame, Int{4096, std::int64_t{1} << 30}),
          field("MaxPendingHandshakes", &ClusterConfig::max_pending_handshakes, Int{1, 65536}),
          nested("ETCDConf", etcd_section),
          nested("DiscoveryConf", discovery_section),
      },
      [](const Walker& walker, const Entry& section, const Seen&,
         ClusterConfig& cluster) -> Status {
        const bool wildcard = cluster.listen_host == "0.0.0.0" || cluster.listen_host == "::" ||
                              cluster.listen_host.empty();
        if (wildcard && cluster.advertise.empty()) {
          return walker.fail(section.line, join_path(section.path, "AdvertiseAddr"),
                             "required when ListenAddr is a wildcard address: other nodes cannot "
                             "dial " +
                                 quote(cluster.listen_host));
        }
        return ok_status();
      }};
  return section;
}

const Section<ClusterConfig>& etcd_section() {
  static const Section<ClusterConfig> section{{
      field("Endpoints", &ClusterConfig::etcd_endpoints, list("a sequence", read_etcd_endpoint)),
      field("DialTimeout", &ClusterConfig::etcd_timeout,
            Duration{100ms, std::nullopt, "at least 100ms"}),
  }};
  return section;
}

const Section<ClusterConfig>& discovery_section() {
  static const Section<ClusterConfig> section{{
      field("KeyPrefix", &ClusterConfig::key_prefix, read_key_prefix),
      field("TTL", &ClusterConfig::ttl, read_lease_ttl),
  }};
  return section;
}

const Section<EventBusConfig>& event_bus_section() {
  static const Section<EventBusConfig> section{
      {
          field("Backend", &EventBusConfig::backend,
                Enum<EventBackend>{kBackendNames,
                                   kBackends,
                                   {.noun = "backend",
                                    .non_empty = true,
                                    .fold_case = false,
                                    .expected = "cluster, nats or local"}}),
          nested("NatsConf", &EventBusConfig::nats, nats_section),
      },
      [](const Walker& walker, const Entry& section, const Seen& seen,
         EventBusConfig& events) -> Status {
        if (events.backend == EventBackend::nats && events.nats.endpoints.empty()) {
          return walker.fail(section.line, join_path(section.path, "NatsConf.Endpoints"),
                             seen.find("NatsConf") != nullptr
                                 ? "must list at least one NATS server"
                                 : "missing: Backend \"nats\" needs NatsConf.Endpoints");
        }
        return ok_status();
      }};
  return section;
}

const Section<NatsConfig>& nats_section() {
  static const Section<NatsConfig> section{{
      field("Endpoints", &NatsConfig::endpoints, list("a sequence", read_nats_server)),
      field("UserName", &NatsConfig::user, Text{}),
      field("Password", &NatsConfig::password, Text{}),
      field("Token", &NatsConfig::token, Text{}),
      field("GlobalPrefix", &NatsConfig::global_prefix, read_subject_prefix),
      field("ServerPrefix", &NatsConfig::server_prefix, read_subject_prefix),
      field("Timeout", &NatsConfig::timeout, Duration{10ms, 1min, "10ms..1m"}),
      field("ReconnectWait", &NatsConfig::reconnect_wait, Duration{10ms, 1min, "10ms..1m"}),
      field("ReconnectBufSize", &NatsConfig::reconnect_buffer, Int{0, std::int64_t{1} << 30}),
      field("PendingLimit", &NatsConfig::pending_limit, Int{1000, std::int64_t{1} << 30}),
  }};
  return section;
}

}  // namespace ember::config
