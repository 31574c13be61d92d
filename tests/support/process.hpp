// SPDX-License-Identifier: Apache-2.0
// Child processes for tests (etcd, nats-server, node processes): started with their output in a
// log file, stopped by PID with a bounded grace period; and free loopback ports for them.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace ember::testing {

/// A port that was free a moment ago (bind to port 0, read it back, release it).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// Runs `args` (args[0] looked up on PATH) with stdout and stderr written to `log` (truncated)
/// and stdin from /dev/null, and no other descriptor of this process. Returns 0 and sets `pid`, or
/// posix_spawn's error. `open_files` > 0 sets the child's RLIMIT_NOFILE (through sh's ulimit, which
/// then execs the program: posix_spawn cannot set limits, and the test process must keep its own).
inline int spawn_logged(std::vector<std::string> args, const std::string& log, pid_t& pid,
                        int open_files = 0) {
  if (open_files > 0) {
    args.insert(
        args.begin(),
        {"/bin/sh", "-c", "ulimit -n " + std::to_string(open_files) + " && exec \"$0\" \"$@\""});
  }
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // Nothing else of this process: a client socket a test holds (Asio opens sockets without
  // close-on-exec) would stay open in the child, and its peer would never see it close.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

/// SIGCONT (a paused process cannot act on SIGTERM), SIGTERM, then SIGKILL once `grace` has
/// passed; reaps the process. Does nothing for pid <= 0.
inline void stop_process(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) {
    return;
  }
  ::kill(pid, SIGCONT);
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace ember::testing
