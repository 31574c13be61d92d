// SPDX-License-Identifier: Apache-2.0
// The section tables against the parser: each table's keys are accepted where the section sits
// in node.yaml, and an unknown key there is refused with exactly that table's keys.
#include "config/sections.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <ember/config.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace ember::config {
namespace {

// Where a section's keys go in a document: the lines before them, their indent, their path.
struct Place {
  std::string_view section;
  KeyList keys;
  std::string before;
  std::string indent;
  std::string path;
};

std::vector<Place> places() {
  const std::string service = "ServiceConf:\n  StartServices:\n    - ClassName: A\n";
  const std::string worker = service + "      WorkerConf:\n";
  const std::string scaling = worker + "        Scaling:\n";
  const std::string strategy = scaling + "          Strategy:\n";
  const std::string service_path = "ServiceConf.StartServices[0].";
  return {
      {"document", document_section().keys(), "", "", ""},
      {"NodeConf", node_conf_section().keys(), "NodeConf:\n", "  ", "NodeConf."},
      {"SystemLogger", logger_section().keys(), "SystemLogger:\n", "  ", "SystemLogger."},
      {"ServiceConf", service_conf_section().keys(), "ServiceConf:\n", "  ", "ServiceConf."},
      {"StartServices item", service_section().keys(), service, "      ", service_path},
      {"WorkerConf", worker_section().keys(), worker, "        ", service_path + "WorkerConf."},
      {"Scaling", scaling_section().keys(), scaling, "          ",
       service_path + "WorkerConf.Scaling."},
      {"Strategy", strategy_section().keys(), strategy, "            ",
       service_path + "WorkerConf.Scaling.Strategy."},
      {"ClusterConf", cluster_section().keys(), "ClusterConf:\n", "  ", "ClusterConf."},
      {"ETCDConf", etcd_section().keys(), "ClusterConf:\n  ETCDConf:\n", "    ",
       "ClusterConf.ETCDConf."},
      {"DiscoveryConf", discovery_section().keys(), "ClusterConf:\n  DiscoveryConf:\n", "    ",
       "ClusterConf.DiscoveryConf."},
      {"EventBusConf", event_bus_section().keys(), "EventBusConf:\n", "  ", "EventBusConf."},
      {"NatsConf", nats_section().keys(), "EventBusConf:\n  NatsConf:\n", "    ",
       "EventBusConf.NatsConf."},
  };
}

int lines_in(std::string_view text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST(ConfigSections, EveryTableKeyIsAcceptedWhereItsSectionIs) {
  for (const Place& place : places()) {
    for (std::string_view key : place.keys) {
      // An empty value: a key's reader may refuse it, but never as an unknown key.
      const std::string yaml = place.before + place.indent + std::string{key} + ":\n";
      Result<NodeConfig> config = parse_node_config(yaml, "node.yaml");
      if (!config) {
        EXPECT_EQ(config.error().message().find("unknown key"), std::string::npos)
            << place.section << "." << key << ":\n"
            << yaml << config.error().message();
      }
    }
  }
}

TEST(ConfigSections, UnknownKeyListsExactlyTheTable) {
  for (const Place& place : places()) {
    const std::string yaml = place.before + place.indent + "NotAKey: 1\n";
    Result<NodeConfig> config = parse_node_config(yaml, "node.yaml");
    ASSERT_FALSE(config.has_value()) << place.section;
    EXPECT_EQ(config.error().message(),
              "node.yaml:" + std::to_string(lines_in(place.before) + 1) + ": " + place.path +
                  "NotAKey: unknown key (expected one of: " + join_list(place.keys) + ")")
        << place.section;
  }
}

TEST(ConfigSections, KeysAreUniqueWithinATable) {
  for (const Place& place : places()) {
    const std::set<std::string_view> unique(place.keys.begin(), place.keys.end());
    EXPECT_EQ(unique.size(), place.keys.size()) << place.section;
  }
}

TEST(ConfigSections, RequiredKeysAreNamedWithTheirSection) {
  EXPECT_EQ(parse_node_config("ClusterConf:\n  Name: x\n", "node.yaml").error().message(),
            "node.yaml:2: ClusterConf.Secret: missing required key (every node of a cluster "
            "shares this secret)");
  EXPECT_EQ(parse_node_config("ServiceConf:\n  StartServices:\n    - {Type: x}\n", "node.yaml")
                .error()
                .message(),
            "node.yaml:3: ServiceConf.StartServices[0].ClassName: missing required key");
  EXPECT_EQ(parse_node_config("ServiceConf:\n  StartServices:\n    - ClassName: A\n      "
                              "WorkerConf: {Scaling: {Max: 4}}\n",
                              "node.yaml")
                .error()
                .message(),
            "node.yaml:4: ServiceConf.StartServices[0].WorkerConf.Scaling.Strategy: missing "
            "required key (for example {Name: queue_length, Params: {High: 100}})");
}

}  // namespace
}  // namespace ember::config
