// SPDX-License-Identifier: Apache-2.0
#include <array>
#include <chrono>
#include <ember/config.hpp>
#include <optional>
#include <string_view>

#include "config/field_table.hpp"
#include "config/sections.hpp"
#include "config/yaml_walker.hpp"

namespace ember::config {
namespace {

using namespace std::chrono_literals;

constexpr std::array<std::string_view, 7> kLevels = {"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};

}  // namespace

const Section<NodeConfig>& document_section() {
  static const Section<NodeConfig> section{
      {
          nested("NodeConf", node_conf_section),
          nested("ServiceConf", &NodeConfig::services, service_conf_section),
          nested("SystemLogger", &NodeConfig::log, logger_section),
          {"ClusterConf",
           [](const Walker& walker, const Entry& e, NodeConfig& config) -> Status {
             // The section's presence is what makes the node join a cluster.
             config.cluster.enabled = true;
             return cluster_section().read(walker, e, config.cluster);
           }},
          nested("EventBusConf", &NodeConfig::events, event_bus_section),
          {"GateConf",
           [](const Walker& walker, const Entry& e, NodeConfig& config) -> Status {
             config.gate.enabled = true;  // as ClusterConf: the section's presence turns it on
             return gate_section().read(walker, e, config.gate);
           }},
          {"AdminConf",
           [](const Walker& walker, const Entry& e, NodeConfig& config) -> Status {
             config.admin.enabled = true;
             return admin_section().read(walker, e, config.admin);
           }},
      },
      // Checked once every section is read: the sections may come in any order.
      [](const Walker& walker, const Entry&, const Seen& seen, NodeConfig& config) -> Status {
        if (config.events.backend == EventBackend::cluster && !config.cluster.enabled) {
          const Entry* events = seen.find("EventBusConf");
          const std::optional<Entry> backend =
              events != nullptr ? walker.find_key(*events, "Backend") : std::nullopt;
          return walker.fail(
              backend ? backend->line : 0, "EventBusConf.Backend",
              "\"cluster\" needs a ClusterConf section (use \"local\" or \"nats\" without one)");
        }
        return ok_status();
      }};
  return section;
}

const Section<NodeConfig>& node_conf_section() {
  static const Section<NodeConfig> section{{
      field("NodeId", &NodeConfig::node_id, Text{.non_empty = true}),
      field("WorkerThreads", &NodeConfig::worker_threads, Int{0, 1024}),
      field("TimerTick", &NodeConfig::timer_tick, Duration{1ms, 1s, "1ms..1s"}),
      field("ShutdownTimeout", &NodeConfig::shutdown_timeout, Duration{0ms, std::nullopt, ">= 0"}),
      field("CallTimeout", &NodeConfig::call_timeout, Duration{1ms, std::nullopt, "at least 1ms"}),
  }};
  return section;
}

const Section<LogConfig>& logger_section() {
  static const Section<LogConfig> section{{
      field(
          "Level", &LogConfig::level,
          Name{kLevels, {.noun = "level", .non_empty = false, .fold_case = true, .expected = {}}}),
      field("Path", &LogConfig::path, Text{}),
      field("Name", &LogConfig::name, Text{.non_empty = true}),
  }};
  return section;
}

}  // namespace ember::config
