// SPDX-License-Identifier: Apache-2.0
// A network namespace joined to this one by a veth pair, for tests that cut a link the way a
// network partition does: the namespace's end goes down, packets are dropped silently both ways,
// connections see no reset. Needs root (CAP_NET_ADMIN); start() says why when it cannot.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace ember::testing {

class NetNamespace {
 public:
  NetNamespace() = default;
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;
  ~NetNamespace() { remove(); }

  /// Creates the namespace; returns an empty string on success, else why not (skip the test).
  std::string start() {
    if (::geteuid() != 0) {
      return "network namespaces need root";
    }
    const int id = static_cast<int>(::getpid() % 200) + 20;
    name_ = "ember-test-" + std::to_string(::getpid());
    outer_ = "emb" + std::to_string(::getpid()) + "o";
    inner_ = "emb" + std::to_string(::getpid()) + "i";
    outer_ip_ = "10.213." + std::to_string(id) + ".1";
    inner_ip_ = "10.213." + std::to_string(id) + ".2";
    remove();
    const bool ok = run("ip netns add " + name_) &&
                    run("ip link add " + outer_ + " type veth peer name " + inner_) &&
                    run("ip link set " + inner_ + " netns " + name_) &&
                    run("ip addr add " + outer_ip_ + "/30 dev " + outer_) &&
                    run("ip link set " + outer_ + " up") &&
                    run("ip -n " + name_ + " addr add " + inner_ip_ + "/30 dev " + inner_) &&
                    run("ip -n " + name_ + " link set " + inner_ + " up") &&
                    run("ip -n " + name_ + " link set lo up");
    if (!ok) {
      remove();
      return "cannot create a network namespace with a veth pair (ip netns / veth unavailable)";
    }
    created_ = true;
    return {};
  }
  /// The link goes down: nothing crosses, nobody is told.
  bool cut() { return run("ip -n " + name_ + " link set " + inner_ + " down"); }
  bool heal() { return run("ip -n " + name_ + " link set " + inner_ + " up"); }

  void remove() {
    if (name_.empty()) {
      return;
    }
    (void)run("ip link del " + outer_ + " 2>/dev/null");
    (void)run("ip netns del " + name_ + " 2>/dev/null");
    created_ = false;
  }

  [[nodiscard]] const std::string& name() const { return name_; }
  /// The address inside the namespace (reachable from here through the veth pair).
  [[nodiscard]] const std::string& inner_ip() const { return inner_ip_; }

 private:
  static bool run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }

  std::string name_;
  std::string outer_;
  std::string inner_;
  std::string outer_ip_;
  std::string inner_ip_;
  bool created_ = false;
};

}  // namespace ember::testing
