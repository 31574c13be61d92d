// SPDX-License-Identifier: Apache-2.0
// A node process (ember_test_node, EMBER_TEST_NODE_BIN) for process tests: started with its
// output in a log file; stopped with SIGTERM (bounded) or killed with SIGKILL; paused with
// SIGSTOP and resumed with SIGCONT.
#pragma once

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace ember::testing {

class NodeProcess {
 public:
  NodeProcess() = default;
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;
  ~NodeProcess() { stop(); }

  /// `open_files` > 0: the process's descriptor limit (RLIMIT_NOFILE).
  std::string start(const std::string& id, const std::string& config_path,
                    const std::string& log_path, int open_files = 0) {
    id_ = id;
    log_ = log_path;
    const int rc =
        spawn_logged({EMBER_TEST_NODE_BIN, "--config", config_path}, log_path, pid_, open_files);
    if (rc != 0) {
      pid_ = 0;
      return std::string("cannot start the node process: ") + std::strerror(rc);
    }
    return {};
  }
  void kill_hard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = 0;
    }
  }
  /// SIGSTOP: the process stops where it is while the kernel still accepts bytes for its
  /// sockets (a node frozen by the scheduler, a debugger or a VM pause). stop() resumes it first.
  /// Returns once the process has stopped (SIGSTOP takes effect asynchronously).
  void pause() {
    if (pid_ > 0) {
      ::kill(pid_, SIGSTOP);
      int status = 0;
      ::waitpid(pid_, &status, WUNTRACED);
    }
  }
  void resume() {
    if (pid_ > 0) {
      ::kill(pid_, SIGCONT);
    }
  }
  /// SIGTERM, then SIGKILL after 10 s.
  void stop() {
    stop_process(pid_, std::chrono::seconds(10));
    pid_ = 0;
  }
  [[nodiscard]] bool alive() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  [[nodiscard]] std::string log_text() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  std::string id_;
  std::string log_;
  pid_t pid_ = 0;
};

/// The node.yaml every process test starts from: the node's id, two workers, info logs, and a
/// cluster `cluster` on `etcd` (secret s3cret, TTL 2 s). Tests append their ServiceConf.
inline std::string cluster_node_yaml(const std::string& id, const std::string& cluster,
                                     const std::string& etcd) {
  return "NodeConf: {NodeId: " + id +
         ", WorkerThreads: 2, ShutdownTimeout: 2s}\n"
         "SystemLogger: {Level: info}\n"
         "ClusterConf:\n"
         "  Name: " +
         cluster +
         "\n"
         "  Secret: s3cret\n"
         "  ETCDConf: {Endpoints: [" +
         etcd +
         "]}\n"
         "  DiscoveryConf: {TTL: 2s}\n";
}

/// What each process logged, for a failure message.
inline std::string logs_of(const std::vector<std::unique_ptr<NodeProcess>>& procs) {
  std::string out;
  for (const auto& p : procs) {
    out += "----- " + p->id() + " -----\n" + p->log_text();
  }
  return out;
}

}  // namespace ember::testing
