// SPDX-License-Identifier: Apache-2.0
// Starts a real etcd (Debian's etcd-server) on free loopback ports for a test, waits (bounded)
// until it answers, and stops it by PID. Nothing is mocked.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cluster/etcd/etcd_client.hpp"
#include "support/process.hpp"

namespace ember::testing {

class EtcdServer {
 public:
  EtcdServer() = default;
  ~EtcdServer() { stop(); }
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  /// Starts etcd; returns an empty string on success, else why it failed (with etcd's log).
  std::string start(bool fresh = true) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (client_port_ == 0) {
        client_port_ = free_port();
      }
      peer_port_ = free_port();
      dir_ = std::filesystem::temp_directory_path() /
             ("ember-etcd-" + std::to_string(::getpid()) + "-" + std::to_string(client_port_));
      if (fresh) {
        std::filesystem::remove_all(dir_);
      }
      std::filesystem::create_directories(dir_);
      std::string client = "http://" + host_ + ":" + std::to_string(client_port_);
      std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
      std::vector<std::string> args;
      if (!netns_.empty()) {  // `ip netns exec` execs etcd: the PID stays etcd's
        args = {"ip", "netns", "exec", netns_};
      }
      args.insert(args.end(), {"etcd", "--name", "test", "--data-dir", (dir_ / "data").string(),
                               "--listen-client-urls", client, "--advertise-client-urls", client,
                               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                               "--initial-cluster", "test=" + peer, "--initial-cluster-state",
                               "new", "--logger=zap", "--log-level=warn"});
      if (!durable_) {
        args.push_back("--unsafe-no-fsync");  // tests need no durability, and fsync is slow here
      }
      const int rc = spawn_logged(std::move(args), (dir_ / "etcd.log").string(), pid_);
      if (rc != 0) {
        pid_ = 0;
        return "cannot run etcd (apt-get install etcd-server): " + std::string(strerror(rc));
      }
      // Bounded wait: at most 10 s for the first answer.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = 0;
          break;  // died (port race?): retry with other ports
        }
        auto client_or = etcd::Client::connect({{endpoint()}, std::chrono::milliseconds(300)});
        if (client_or && (*client_or)->get("ember-probe")) {
          return {};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      stop();
      client_port_ = 0;
    }
    return "etcd did not become ready";
  }

  /// SIGTERM, then SIGKILL after 5 s. Keeps the data directory unless `wipe`.
  void stop(bool wipe = true) {
    stop_process(pid_, std::chrono::seconds(5));
    pid_ = 0;
    if (wipe && !dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  /// SIGSTOP / SIGCONT: etcd stops answering without closing a connection (a hung server).
  void pause() {
    if (pid_ > 0) {
      ::kill(pid_, SIGSTOP);
    }
  }
  void resume() {
    if (pid_ > 0) {
      ::kill(pid_, SIGCONT);
    }
  }

  /// Runs etcd inside network namespace `netns`, serving clients on `host` there. Before start().
  void place_in(std::string netns, std::string host) {
    netns_ = std::move(netns);
    host_ = std::move(host);
  }

  /// Fsync every commit, as production etcd does (benchmarks); tests run without. Before start().
  void set_durable(bool durable) { durable_ = durable; }

  /// SIGKILL (a crash): the data directory stays.
  void kill_hard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = 0;
    }
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

  /// Stops etcd and starts it again on the same client port (data kept): a restart.
  std::string restart() {
    stop(false);
    return start(false);
  }

  [[nodiscard]] std::string endpoint() const { return host_ + ":" + std::to_string(client_port_); }

 private:
  std::string netns_;
  bool durable_ = false;
  std::string host_ = "127.0.0.1";
  pid_t pid_ = 0;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::filesystem::path dir_;
};

}  // namespace ember::testing
