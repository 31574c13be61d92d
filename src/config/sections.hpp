// SPDX-License-Identifier: Apache-2.0
//
// The sections of node.yaml, each a table of its keys (field_table.hpp). Where each key is read:
// the document, NodeConf and SystemLogger in node_sections.cpp; ServiceConf down to the scaling
// strategy in service_sections.cpp; ClusterConf and EventBusConf in cluster_sections.cpp; GateConf
// in gate_sections.cpp; AdminConf in admin_sections.cpp.
#pragma once

#include <ember/config.hpp>
#include <vector>

#include "config/field_table.hpp"

namespace ember::config {

/// The top level of node.yaml.
const Section<NodeConfig>& document_section();
const Section<NodeConfig>& node_conf_section();
const Section<LogConfig>& logger_section();

const Section<std::vector<ServiceConfig>>& service_conf_section();
/// One item of ServiceConf.StartServices.
const Section<ServiceConfig>& service_section();
const Section<WorkerConfig>& worker_section();
const Section<ScalingConfig>& scaling_section();
const Section<ScalingStrategyConfig>& strategy_section();

const Section<ClusterConfig>& cluster_section();
/// ClusterConf.ETCDConf and ClusterConf.DiscoveryConf; ClusterConfig keeps their keys flat.
const Section<ClusterConfig>& etcd_section();
const Section<ClusterConfig>& discovery_section();
const Section<EventBusConfig>& event_bus_section();
const Section<NatsConfig>& nats_section();

const Section<GateConfig>& gate_section();
const Section<AdminConfig>& admin_section();

}  // namespace ember::config
