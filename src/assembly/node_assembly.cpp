// SPDX-License-Identifier: Apache-2.0
// Which subsystems a node is made of, and in which order they start. The kernel (core/) runs
// services and calls subsystem hooks; it names none of them. This file is the one place that
// does, so the kernel's dependencies point down only.
#include <atomic>
#include <ember/node.hpp>
#include <string>

#include "assembly/components.hpp"
#include "assembly/scaling_subsystem.hpp"
#include "core/node_impl.hpp"
#include "rpc/messaging.hpp"
#include "rpc/remote.hpp"

namespace ember {

namespace detail {
namespace {
std::atomic<SubsystemFactory> installed_gate{nullptr};
std::atomic<SubsystemFactory> installed_admin{nullptr};
}  // namespace

void install_gate_factory(SubsystemFactory factory) noexcept {
  installed_gate.store(factory, std::memory_order_release);
}

SubsystemFactory gate_factory() noexcept {
  return installed_gate.load(std::memory_order_acquire);
}

void install_admin_factory(SubsystemFactory factory) noexcept {
  installed_admin.store(factory, std::memory_order_release);
}

SubsystemFactory admin_factory() noexcept {
  return installed_admin.load(std::memory_order_acquire);
}
}  // namespace detail

namespace {
/// Stands where a component the config asks for is not linked into the program: the node does
/// not start, and says which library to link.
class Unavailable final : public detail::Subsystem {
 public:
  Unavailable(std::string_view name, std::string why) : name_(name), why_(std::move(why)) {}
  [[nodiscard]] std::string_view name() const noexcept override { return name_; }
  Status start() override { return Error{Errc::invalid_argument, why_}; }

 private:
  std::string_view name_;
  std::string why_;
};
}  // namespace

Node::Node(NodeConfig config) : impl_(std::make_unique<detail::NodeImpl>(std::move(config))) {
  detail::NodeImpl& node = *impl_;
  node.owner = this;
  // Scaling first: it stops last, once every service has left it.
  node.add_subsystem(std::make_shared<detail::ScalingSubsystem>(node));
  if (node.config.cluster.enabled) {
    // Before messaging: on_start may call services of other nodes, and the "cluster" event
    // backend is kept by the membership.
    if (detail::ClusterFactory add_cluster = detail::cluster_factory()) {
      add_cluster(node);
    } else {
      node.add_subsystem(std::make_shared<Unavailable>(
          "cluster",
          "ClusterConf is set, but this program does not link Ember's cluster component: link "
          "ember::cluster (or ember::ember) with CMake, or ember-cluster with pkg-config; to run "
          "a single node, remove ClusterConf"));
    }
  }
  node.add_subsystem(std::make_shared<detail::Messaging>(node));
  // After messaging: the gateway calls services, and it stops taking clients (stopping, in
  // reverse order) before anything else stops. In a cluster, every node of a program that links
  // the gateway gets its session directory, so that backends can push to players.
  detail::SubsystemFactory add_gate = detail::gate_factory();
  if (add_gate != nullptr && (node.config.gate.enabled || node.config.cluster.enabled)) {
    add_gate(node);
  } else if (node.config.gate.enabled) {
    node.add_subsystem(std::make_shared<Unavailable>(
        "gate",
        "GateConf is set, but this program does not link Ember's gateway component: link "
        "ember::gate with CMake, or ember-gate with pkg-config; to run without a gateway, "
        "remove GateConf"));
  }
  // Last: it asks every other subsystem for figures, so it starts after them and stops (closes
  // its listener) before them.
  if (node.config.admin.enabled) {
    if (detail::SubsystemFactory add_admin = detail::admin_factory()) {
      add_admin(node);
    } else {
      node.add_subsystem(std::make_shared<Unavailable>(
          "admin",
          "AdminConf is set, but this program does not link Ember's admin component: link "
          "ember::admin (or ember::ember) with CMake, or ember-admin with pkg-config; to run "
          "without the admin listener, remove AdminConf"));
    }
  }
}

}  // namespace ember
