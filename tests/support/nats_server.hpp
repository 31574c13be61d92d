// SPDX-License-Identifier: Apache-2.0
// Starts a real NATS server (Debian's nats-server) on a free loopback port for a test, waits
// (bounded) until it greets a client, and stops it by PID. Nothing is mocked.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "support/process.hpp"

namespace ember::testing {

class NatsServer {
 public:
  NatsServer() = default;
  ~NatsServer() {
    stop();
    if (!log_.empty()) {
      std::error_code ec;
      std::filesystem::remove(log_, ec);
    }
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  /// Starts nats-server; returns an empty string on success, else why it failed.
  std::string start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (port_ == 0) {
        port_ = free_port();
      }
      log_ = (std::filesystem::temp_directory_path() /
              ("ember-nats-" + std::to_string(::getpid()) + "-" + std::to_string(port_) + ".log"))
                 .string();
      // -a: nats-server listens on every interface unless told otherwise.
      const int rc =
          spawn_logged({"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port_)}, log_, pid_);
      if (rc != 0) {
        pid_ = 0;
        return "cannot run nats-server (apt-get install nats-server): " + std::string(strerror(rc));
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = 0;
          break;  // died (port taken meanwhile?): retry on another port
        }
        if (greets()) {
          return {};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      stop();
      port_ = 0;
    }
    return "nats-server did not become ready";
  }

  void stop() {
    stop_process(pid_, std::chrono::seconds(5));
    pid_ = 0;
  }

  /// Stops the server and starts it again on the same port.
  std::string restart() {
    stop();
    return start();
  }

  [[nodiscard]] std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] int port() const { return port_; }

 private:
  /// The server sends "INFO {...}" as soon as a client connects.
  [[nodiscard]] bool greets() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    bool ok = false;
    timeval timeout{0, 500'000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      char buf[4] = {};
      ok = ::recv(fd, buf, sizeof buf, MSG_WAITALL) == 4 && std::memcmp(buf, "INFO", 4) == 0;
    }
    ::close(fd);
    return ok;
  }

  pid_t pid_ = 0;
  int port_ = 0;
  std::string log_;
};

}  // namespace ember::testing
