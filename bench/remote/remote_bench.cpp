// SPDX-License-Identifier: Apache-2.0
//
// Messaging between two processes on 127.0.0.1: the raw asio TCP floor, Ember remote Call and
// Send, gRPC unary calls and CAF 0.17 remote actors. The binary is the client; for each run it
// re-executes itself as the server process (--role), which binds port 0 and sends its address
// back over a pipe. Scenarios are interleaved over the repetitions; medians go to a table and to
// one JSON object per metric, appended to --out.
//
//   ember_remote_bench [--quick] [--reps N] [--threads N] [--out FILE] [--only SCENARIO]
//                      [--verbose] [--grpc-in-flight N]
//
// Scenarios (all with a 100-byte payload):
//   raw_asio    length-prefixed TCP ping-pong, TCP_NODELAY, blocking sockets: round trip p50/p99
//               (raw_asio_1cpu / raw_asio_2cpu: the same with both processes pinned to one CPU /
//               to one CPU each, the two modes an unpinned run falls into on a small VM)
//   ember_call  blocking Call from the client's main thread to a remote echo service: p50/p99
//   ember_send  N Sends to the remote service, then a "count" Call: msgs/s until all arrived
//   grpc_unary  callback API, --grpc-in-flight calls (32) in flight on one channel: msgs/s; and a
//               synchronous stub, one call at a time: round trip p50/p99
//   caf_send    N std::string messages to a remote actor (io::publish / remote_actor), which
//               replies once all arrived: msgs/s
#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ember/ember.hpp>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/cluster_link.hpp"
#include "core/node_impl.hpp"
#include "remote.grpc.pb.h"
#include "remote.pb.h"
#include "report.hpp"
#include "rpc/messaging.hpp"

#if EMBER_REMOTE_BENCH_CAF
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#endif

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using asio::ip::tcp;
using ember::bench::commit_id;
using ember::bench::json_number;

constexpr const char* kSecret = "remote-bench";

struct Settings {
  bool quick = false;
  bool verbose = false;
  int reps = 5;
  int threads = 2;
  std::string out = "bench-results-remote.jsonl";
  std::string only;
  std::size_t payload = 100;
  std::int64_t warmup = 1'000;          // round trips before measuring
  std::int64_t rtt_count = 20'000;      // measured round trips (raw, ember_call)
  std::int64_t send_count = 1'000'000;  // ember_send
  std::int64_t grpc_count = 200'000;    // grpc_unary throughput
  std::int64_t grpc_rtt_count = 5'000;  // grpc_unary round trips
  int grpc_in_flight = 32;              // grpc_unary throughput: concurrent calls, one channel
  std::int64_t caf_count = 1'000'000;   // caf_send
  std::chrono::seconds budget{60};      // per scenario run, client side
  std::chrono::seconds child_limit{600};
  // Server role (set in the re-executed process).
  std::string role;
  int cpu = -1;  // pin the server process to this CPU
  int ctl_fd = -1;
  int report_fd = -1;
};

struct Sample {
  std::string scenario;
  std::string metric;
  std::string unit;
  double value;
};

double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<std::int64_t>(left.count(), 60'000));
}

void percentiles(std::vector<double>& v, double& p50, double& p99) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
  };
  p50 = v.empty() ? 0 : at(0.50);
  p99 = v.empty() ? 0 : at(0.99);
}

bool split_address(const std::string& address, std::string& host, std::uint16_t& port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  host = address.substr(0, colon);
  port = static_cast<std::uint16_t>(std::atoi(address.c_str() + colon + 1));
  return port != 0;
}

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    done += static_cast<std::size_t>(n);
  }
}

/// Runs `on_expiry` once if it is not destroyed before `deadline` (unblocks blocking sockets).
class Watchdog {
 public:
  Watchdog(Clock::time_point deadline, std::function<void()> on_expiry)
      : thread_([this, deadline, fn = std::move(on_expiry)] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
            fired_ = true;
            fn();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  [[nodiscard]] bool fired() {
    std::lock_guard lock(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;
};

// =============================================================================================
// Server processes: one per scenario run, started with --role.

/// Tells the client where to connect (one line on the report pipe).
void report_address(const Settings& s, const std::string& address) {
  write_all(s.report_fd, "ADDR " + address + "\n");
}
void report_error(const Settings& s, const std::string& why) {
  write_all(s.report_fd, "ERR " + why + "\n");
}

/// Blocks until the client writes "stop" or closes the control pipe, or the child limit passes.
bool wait_for_stop_request(const Settings& s) {
  auto deadline = Clock::now() + s.child_limit;
  std::string seen;
  for (;;) {
    int ms = remaining_ms(deadline);
    if (ms <= 0) {
      return false;
    }
    pollfd p{s.ctl_fd, POLLIN, 0};
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return true;  // the pipe is unusable: stop rather than spin
    }
    if (r == 0) {
      continue;  // timeout slice: the deadline check above ends the loop
    }
    char buf[64];
    ssize_t n = ::read(s.ctl_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return true;  // the client closed the pipe (or went away)
    }
    seen.append(buf, static_cast<std::size_t>(n));
    if (seen.find("stop") != std::string::npos) {
      return true;
    }
  }
}

/// Waits for the stop request, then quiets the logs (the client's hang-up is expected now) and
/// acknowledges, so that the client tears its side down only after that.
bool wait_for_stop(const Settings& s) {
  bool asked = wait_for_stop_request(s);
  ember::set_log_level(ember::LogLevel::error);
  write_all(s.report_fd, "STOPPING\n");
  return asked;
}

std::uint32_t decode_length(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

std::string make_frame(std::size_t payload) {
  std::string frame(4 + payload, 'x');
  auto n = static_cast<std::uint32_t>(payload);
  frame[0] = static_cast<char>(n >> 24);
  frame[1] = static_cast<char>(n >> 16);
  frame[2] = static_cast<char>(n >> 8);
  frame[3] = static_cast<char>(n);
  return frame;
}

/// Echoes length-prefixed frames on one connection with blocking sockets: one recv and one send
/// per message, the least any TCP request/response can cost.
int raw_server(const Settings& s) {
  asio::io_context io;
  asio::error_code ec;
  tcp::acceptor acceptor(io);
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    report_error(s, "raw listen: " + ec.message());
    return 1;
  }
  std::atomic<int> conn_fd{-1};
  std::thread echo([&] {
    asio::error_code e;
    tcp::socket sock(io);
    acceptor.accept(sock, e);
    if (e) {
      return;
    }
    sock.set_option(tcp::no_delay(true), e);
    conn_fd.store(sock.native_handle());
    std::vector<unsigned char> buf(1 << 16);
    std::size_t have = 0;
    for (;;) {
      std::size_t n = sock.read_some(asio::buffer(buf.data() + have, buf.size() - have), e);
      if (e) {
        return;  // the client hung up (or we were told to stop)
      }
      have += n;
      std::size_t off = 0;
      while (have - off >= 4) {
        std::size_t len = decode_length(buf.data() + off);
        if (len + 4 > buf.size()) {
          return;  // not our protocol
        }
        if (have - off < len + 4) {
          break;
        }
        asio::write(sock, asio::buffer(buf.data() + off, len + 4), e);
        if (e) {
          return;
        }
        off += len + 4;
      }
      std::memmove(buf.data(), buf.data() + off, have - off);
      have -= off;
    }
  });
  report_address(s, "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()));
  wait_for_stop(s);
  ::shutdown(acceptor.native_handle(), SHUT_RDWR);  // unblocks accept
  if (int fd = conn_fd.load(); fd >= 0) {
    ::shutdown(fd, SHUT_RDWR);  // unblocks read_some
  }
  echo.join();
  return 0;
}

// --- Ember -----------------------------------------------------------------------------------

using ember::Result;
using ember::Selector;

/// Echo for Call, a counter for Send, and the count for the client's final check.
class EchoService : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st =
            handle("RpcEcho", [](const rbench::Blob& b) -> Result<rbench::Blob> { return b; });
        !st) {
      return st;
    }
    if (auto st = handle("RpcCount",
                         [this](const rbench::Blob&) -> ember::Status {
                           ++count_;
                           return {};
                         });
        !st) {
      return st;
    }
    return handle("RpcGetCount", [this](const rbench::Blob&) -> Result<rbench::Blob> {
      rbench::Blob r;
      r.set_n(count_);
      return r;
    });
  }

 private:
  std::int64_t count_ = 0;  // one lane: no concurrent handlers
};

ember::net::TransportOptions transport_options(const std::string& node_id) {
  ember::net::TransportOptions o;
  o.cluster = "remote-bench";
  o.node_id = node_id;
  o.secret = kSecret;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  return o;
}

/// A started node joined to the transport. Shutdown stops the link, then the node.
struct EmberNode {
  std::unique_ptr<ember::Node> node;
  std::shared_ptr<ember::detail::ClusterLink> link;

  bool start(const Settings& s, const std::string& node_id, std::unique_ptr<ember::Service> service,
             std::string& err) {
    ember::NodeConfig cfg;
    cfg.node_id = node_id;
    cfg.worker_threads = s.threads;
    cfg.call_timeout = 10s;
    cfg.shutdown_timeout = 5s;
    node = std::make_unique<ember::Node>(cfg);
    if (service) {
      ember::ServiceConfig sc;
      sc.name = "echo";
      if (auto added = node->add_service(std::move(service), sc); !added) {
        err = "add_service: " + added.error().to_string();
        return false;
      }
    }
    if (auto st = node->start(); !st) {
      err = "node start: " + st.error().to_string();
      return false;
    }
    // Discovery is not wired yet: the link is attached by hand, as in remote_call_test.cpp.
    auto attached =
        ember::detail::ClusterLink::attach(*node, transport_options(node_id), "127.0.0.1");
    if (!attached) {
      err = "ClusterLink::attach: " + attached.error().to_string();
      return false;
    }
    link = *attached;
    return true;
  }
  void shutdown() {
    if (link) {
      link->stop();
    }
    if (node) {
      (void)node->stop();
    }
  }
  ~EmberNode() { shutdown(); }
};

int ember_server(const Settings& s) {
  EmberNode server;
  std::string err;
  if (!server.start(s, "srv", std::make_unique<EchoService>(), err)) {
    report_error(s, err);
    return 1;
  }
  report_address(s, server.link->address());
  wait_for_stop(s);
  server.shutdown();
  return 0;
}

// --- gRPC ------------------------------------------------------------------------------------

class GrpcEcho final : public rbench::EchoService::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const rbench::Blob* request,
                                 rbench::Blob* response) override {
    *response = *request;
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int grpc_server(const Settings& s) {
  GrpcEcho service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    report_error(s, "gRPC server did not start");
    return 1;
  }
  report_address(s, "127.0.0.1:" + std::to_string(port));
  wait_for_stop(s);
  server->Shutdown(std::chrono::system_clock::now() + 2s);  // cancels what is still running
  server->Wait();
  return 0;
}

// --- CAF -------------------------------------------------------------------------------------

#if EMBER_REMOTE_BENCH_CAF
using go_atom = caf::atom_constant<caf::atom("go")>;
using done_atom = caf::atom_constant<caf::atom("done")>;

void caf_configure(caf::actor_system_config& cfg, const Settings& s) {
  cfg.load<caf::io::middleman>();
  cfg.set("scheduler.max-threads", s.threads);
  cfg.set("logger.verbosity", caf::atom("quiet"));
}

struct counter_state {
  std::int64_t count = 0;
  std::int64_t expected = -1;
  caf::strong_actor_ptr client;
};

/// Counts strings; tells the client once `expected` (announced by its go message) arrived.
caf::behavior caf_counter(caf::stateful_actor<counter_state>* self) {
  auto check = [self] {
    auto& st = self->state;
    if (st.client && st.count == st.expected) {
      self->send(caf::actor_cast<caf::actor>(st.client), done_atom::value, st.count);
      st.client = nullptr;
    }
  };
  return {
      [self, check](go_atom, std::int64_t n) {
        self->state.expected = n;
        self->state.client = self->current_sender();
        check();
      },
      [self, check](const std::string&) {
        ++self->state.count;
        check();
      },
  };
}

int caf_server(const Settings& s) {
  caf::actor_system_config cfg;
  caf_configure(cfg, s);
  caf::actor_system sys{cfg};
  auto counter = sys.spawn(caf_counter);
  auto port = caf::io::publish(counter, 0, "127.0.0.1", true);
  if (!port) {
    report_error(s, "caf publish: " + sys.render(port.error()));
    caf::anon_send_exit(counter, caf::exit_reason::user_shutdown);
    return 1;
  }
  report_address(s, "127.0.0.1:" + std::to_string(*port));
  wait_for_stop(s);
  caf::anon_send_exit(counter, caf::exit_reason::user_shutdown);
  return 0;  // ~actor_system waits for the actors and stops the middleman
}
#endif

int run_server_role(const Settings& s) {
  ::signal(SIGPIPE, SIG_IGN);
  if (s.cpu >= 0) {  // before any thread starts: they inherit the mask
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(s.cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) {
      report_error(s, "cannot pin to CPU " + std::to_string(s.cpu));
      return 1;
    }
  }
  ember::set_log_level(ember::LogLevel::warn);
  if (s.role == "raw") {
    return raw_server(s);
  }
  if (s.role == "ember") {
    return ember_server(s);
  }
  if (s.role == "grpc") {
    return grpc_server(s);
  }
#if EMBER_REMOTE_BENCH_CAF
  if (s.role == "caf") {
    return caf_server(s);
  }
#endif
  report_error(s, "unknown role " + s.role);
  return 2;
}

// =============================================================================================
// Client side: the server process and the scenarios.

/// The server process of one run: this binary again, with --role. It reads its control pipe on
/// fd 3 ("stop") and writes its report pipe on fd 4 ("ADDR host:port", "ERR why", "STOPPING").
class ServerProcess {
 public:
  static std::unique_ptr<ServerProcess> spawn(const Settings& s, const std::string& role, int cpu,
                                              std::string& err) {
    int ctl[2];
    int rep[2];
    if (::pipe2(ctl, O_CLOEXEC) != 0) {
      err = std::string("pipe: ") + std::strerror(errno);
      return nullptr;
    }
    if (::pipe2(rep, O_CLOEXEC) != 0) {
      err = std::string("pipe: ") + std::strerror(errno);
      ::close(ctl[0]);
      ::close(ctl[1]);
      return nullptr;
    }
    // Move the child's ends above 4 so that the dup2 to 3 and 4 cannot clobber each other.
    int child_ctl = ::fcntl(ctl[0], F_DUPFD_CLOEXEC, 10);
    int child_rep = ::fcntl(rep[1], F_DUPFD_CLOEXEC, 10);
    ::close(ctl[0]);
    ::close(rep[1]);
    char exe[4096];
    ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0 || child_ctl < 0 || child_rep < 0) {
      err = "cannot find this executable or duplicate the pipes";
      for (int fd : {child_ctl, child_rep, ctl[1], rep[0]}) {
        if (fd >= 0) {
          ::close(fd);
        }
      }
      return nullptr;
    }
    exe[len] = '\0';
    std::vector<std::string> args = {exe,
                                     "--role",
                                     role,
                                     "--ctl-fd",
                                     "3",
                                     "--report-fd",
                                     "4",
                                     "--threads",
                                     std::to_string(s.threads),
                                     "--child-limit",
                                     std::to_string(s.child_limit.count()),
                                     "--cpu",
                                     std::to_string(cpu)};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, child_ctl, 3);
    posix_spawn_file_actions_adddup2(&actions, child_rep, 4);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, exe, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(child_ctl);
    ::close(child_rep);
    if (rc != 0) {
      err = std::string("posix_spawn: ") + std::strerror(rc);
      ::close(ctl[1]);
      ::close(rep[0]);
      return nullptr;
    }
    auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
    p->pid_ = pid;
    p->ctl_ = ctl[1];
    p->report_ = rep[0];
    p->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // -1 on old kernels
    return p;
  }

  /// Waits for the server's address line.
  bool wait_address(std::string& address, std::string& err, Clock::time_point deadline) {
    std::string line;
    if (!read_line(line, deadline)) {
      err = "the server process did not report an address in time";
      return false;
    }
    if (line.rfind("ADDR ", 0) == 0) {
      address = line.substr(5);
      return true;
    }
    err = "server: " + (line.rfind("ERR ", 0) == 0 ? line.substr(4) : line);
    return false;
  }

  /// Asks the server to stop and waits (up to `ack`) until it says it is stopping.
  void request_stop(Clock::duration ack = Clock::duration::zero()) {
    if (ctl_ < 0) {
      return;
    }
    write_all(ctl_, "stop\n");
    ::close(ctl_);
    ctl_ = -1;
    auto deadline = Clock::now() + ack;
    std::string line;
    while (Clock::now() < deadline && read_line(line, deadline) && line != "STOPPING") {
    }
  }

  /// Waits for the exit up to `grace`, then kills. Returns the exit status (-1: killed).
  int reap(Clock::duration grace) {
    if (pid_ <= 0) {
      return exit_;
    }
    request_stop();
    auto deadline = Clock::now() + grace;
    int status = 0;
    bool exited = false;
    while (!exited) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited = true;
        break;
      }
      int ms = remaining_ms(deadline);
      if (ms <= 0) {
        break;
      }
      // Readable pidfd = exited; without one, EOF on the report pipe (closed by the exit).
      pollfd p{pidfd_ >= 0 ? pidfd_ : report_, POLLIN, 0};
      int pr = ::poll(&p, 1, ms);
      if (pr < 0 && errno != EINTR) {
        break;  // cannot wait: kill below
      }
      if (pidfd_ < 0 && pr > 0) {
        char buf[256];
        if (::read(report_, buf, sizeof buf) <= 0) {
          exited = ::waitpid(pid_, &status, 0) == pid_;  // exiting now: its fds are closed
        }
      }
    }
    if (!exited) {
      std::fprintf(stderr, "  server process %d did not exit in time: killed\n", pid_);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      exit_ = -1;
    } else {
      exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    pid_ = -1;
    return exit_;
  }

  ~ServerProcess() {
    reap(5s);
    for (int fd : {ctl_, report_, pidfd_}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }

 private:
  ServerProcess() = default;

  bool read_line(std::string& line, Clock::time_point deadline) {
    for (;;) {
      auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return true;
      }
      int ms = remaining_ms(deadline);
      if (ms <= 0) {
        return false;
      }
      pollfd p{report_, POLLIN, 0};
      int r = ::poll(&p, 1, ms);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r < 0) {
        return false;
      }
      if (r == 0) {
        continue;  // the deadline check ends the loop
      }
      char buf[512];
      ssize_t n = ::read(report_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return false;  // the server exited
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int ctl_ = -1;
  int report_ = -1;
  int pidfd_ = -1;
  int exit_ = 0;
  std::string buffer_;
};

// --- raw asio ----------------------------------------------------------------------------------

/// What a client gets: the server's address, and a hook to call once measuring is over (it asks
/// the server to stop, so that neither side logs the other's hang-up as a failure).
struct Run {
  std::string scenario;
  std::string address;
  std::function<void()> measured;
};

bool raw_client(const Settings& s, const Run& run, std::vector<Sample>& out, std::string& err) {
  const std::string& address = run.address;
  std::string host;
  std::uint16_t port = 0;
  if (!split_address(address, host, port)) {
    err = "bad address " + address;
    return false;
  }
  asio::io_context io;
  tcp::socket sock(io);
  asio::error_code ec;
  sock.connect(tcp::endpoint(asio::ip::make_address(host), port), ec);
  if (ec) {
    err = "connect: " + ec.message();
    return false;
  }
  sock.set_option(tcp::no_delay(true), ec);
  const auto deadline = Clock::now() + s.budget;
  Watchdog dog(deadline, [fd = sock.native_handle()] { ::shutdown(fd, SHUT_RDWR); });
  const std::string frame = make_frame(s.payload);
  std::string reply(frame.size(), '\0');
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(s.rtt_count));
  for (std::int64_t i = 0; i < s.warmup + s.rtt_count; ++i) {
    auto t0 = Clock::now();
    asio::write(sock, asio::buffer(frame), ec);
    if (!ec) {
      asio::read(sock, asio::buffer(reply), ec);
    }
    auto t1 = Clock::now();
    if (ec) {
      err = dog.fired() ? "time budget exhausted" : "ping-pong: " + ec.message();
      break;
    }
    if (i >= s.warmup) {
      samples.push_back(micros(t1 - t0));
    }
  }
  if (reply != frame) {
    err = err.empty() ? "the echo differs from the message" : err;
    return false;
  }
  if (samples.size() < 100) {
    return false;
  }
  double p50 = 0;
  double p99 = 0;
  percentiles(samples, p50, p99);
  out.push_back({run.scenario, "rtt_p50_us", "us", p50});
  out.push_back({run.scenario, "rtt_p99_us", "us", p99});
  return true;
}

// --- Ember -----------------------------------------------------------------------------------

/// The client node: knows the remote "echo" service the way discovery will tell it.
bool ember_client(const Settings& s, const std::string& address, EmberNode& client, ember::Bus& bus,
                  std::string& err) {
  if (!client.start(s, "cli", nullptr, err)) {
    return false;
  }
  auto pid = std::make_shared<ember::Pid>();
  pid->node_id = "srv";
  pid->name = "echo";
  pid->address = address;
  ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*client.node))
      .repository()
      .add(pid, nullptr);
  bus = ember::select(*client.node, Selector::name("echo"));
  if (bus.size() != 1) {
    err = "the remote echo service is not in the repository";
    return false;
  }
  return true;
}

rbench::Blob make_blob(std::size_t payload) {
  rbench::Blob b;
  b.set_data(std::string(payload, 'x'));
  return b;
}

bool ember_call(const Settings& s, const Run& run, std::vector<Sample>& out, std::string& err) {
  EmberNode client;
  ember::Bus bus;
  if (!ember_client(s, run.address, client, bus, err)) {
    return false;
  }
  const auto deadline = Clock::now() + s.budget;
  const rbench::Blob request = make_blob(s.payload);
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(s.rtt_count));
  for (std::int64_t i = 0; i < s.warmup + s.rtt_count; ++i) {
    if ((i & 255) == 0 && Clock::now() > deadline) {
      err = "time budget exhausted";
      break;
    }
    auto t0 = Clock::now();
    auto r = bus.call<rbench::Blob>("RpcEcho", request, {.timeout = 10s});
    auto t1 = Clock::now();
    if (!r) {
      err = "Call: " + r.error().to_string();
      break;
    }
    if (i == 0 && r->data() != request.data()) {
      err = "the echo differs from the request";
      break;
    }
    if (i >= s.warmup) {
      samples.push_back(micros(t1 - t0));
    }
  }
  ember::set_log_level(ember::LogLevel::error);  // the server's hang-up is expected now
  run.measured();
  client.shutdown();
  ember::set_log_level(ember::LogLevel::warn);
  if (samples.size() < 100) {
    return false;
  }
  double p50 = 0;
  double p99 = 0;
  percentiles(samples, p50, p99);
  out.push_back({"ember_call", "rtt_p50_us", "us", p50});
  out.push_back({"ember_call", "rtt_p99_us", "us", p99});
  return true;
}

bool ember_send(const Settings& s, const Run& run, std::vector<Sample>& out, std::string& err) {
  EmberNode client;
  ember::Bus bus;
  if (!ember_client(s, run.address, client, bus, err)) {
    return false;
  }
  const auto deadline = Clock::now() + s.budget;
  // Connects and reads the starting count (0: a fresh server process).
  auto count = [&]() -> std::int64_t {
    auto left = std::max<std::int64_t>(1, remaining_ms(deadline));
    auto r = bus.call<rbench::Blob>("RpcGetCount", rbench::Blob{},
                                    {.timeout = std::chrono::milliseconds(left)});
    if (!r) {
      err = "count Call: " + r.error().to_string();
      return -1;
    }
    return r->n();
  };
  const std::int64_t base = count();
  if (base < 0) {
    return false;
  }
  const rbench::Blob message = make_blob(s.payload);
  std::int64_t refused = 0;
  std::int64_t sent = 0;
  const auto t0 = Clock::now();
  for (; sent < s.send_count; ++sent) {
    if ((sent & 4095) == 0 && Clock::now() > deadline) {
      err = "time budget exhausted while sending";
      break;
    }
    if (!bus.send("RpcCount", message)) {
      ++refused;
    }
  }
  const auto t_sent = Clock::now();
  // Frames to one node keep their order and the service has one lane: the count Call runs after
  // every Send that reached the server. Poll again only if some are still missing.
  std::int64_t received = 0;
  for (int polls = 0; polls < 1000 && err.empty(); ++polls) {
    std::int64_t n = count();
    if (n < 0) {
      break;
    }
    received = n - base;
    if (received >= sent - refused || Clock::now() > deadline) {
      break;
    }
  }
  const auto t1 = Clock::now();
  ember::set_log_level(ember::LogLevel::error);
  run.measured();
  client.shutdown();
  ember::set_log_level(ember::LogLevel::warn);
  if (s.verbose) {
    std::fprintf(stderr,
                 "    ember_send: %lld sent (%lld refused) in %.3f s, %lld received after %.3f s\n",
                 static_cast<long long>(sent), static_cast<long long>(refused),
                 std::chrono::duration<double>(t_sent - t0).count(),
                 static_cast<long long>(received), std::chrono::duration<double>(t1 - t0).count());
  }
  if (received != s.send_count) {
    if (err.empty()) {
      err = "the server received " + std::to_string(received) + " of " +
            std::to_string(s.send_count) + " Sends";
    }
    return false;
  }
  out.push_back(
      {"ember_send", "msgs_per_s", "1/s",
       static_cast<double>(s.send_count) / std::chrono::duration<double>(t1 - t0).count()});
  return true;
}

// --- gRPC ------------------------------------------------------------------------------------

/// Keeps a fixed number of unary calls in flight until `total` completed.
struct GrpcLoad {
  rbench::EchoService::Stub* stub = nullptr;
  rbench::Blob request;
  std::int64_t total = 0;
  std::chrono::system_clock::time_point call_deadline;
  std::atomic<std::int64_t> next{0};  // calls handed out (may overshoot total)
  std::atomic<std::int64_t> issued{0};
  std::atomic<std::int64_t> done{0};
  std::atomic<std::int64_t> failed{0};
  std::atomic<bool> abort{false};
  std::mutex mu;
  std::condition_variable cv;
};

struct GrpcCall {
  grpc::ClientContext context;
  rbench::Blob response;
};

void grpc_start(const std::shared_ptr<GrpcLoad>& load) {
  load->issued.fetch_add(1);
  auto* call = new GrpcCall;
  call->context.set_deadline(load->call_deadline);
  load->stub->async()->Echo(&call->context, &load->request, &call->response,
                            [load, call](grpc::Status st) {
                              if (!st.ok()) {
                                load->failed.fetch_add(1);
                              }
                              delete call;
                              if (!load->abort.load() && load->next.fetch_add(1) < load->total) {
                                grpc_start(load);
                              }
                              load->done.fetch_add(1);
                              std::lock_guard lock(load->mu);
                              load->cv.notify_all();
                            });
}

bool grpc_client(const Settings& s, const Run& run, std::vector<Sample>& out, std::string& err) {
  const std::string& address = run.address;
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = rbench::EchoService::NewStub(channel);
  const auto deadline = Clock::now() + s.budget;
  const auto wall_deadline = std::chrono::system_clock::now() + s.budget;
  const rbench::Blob request = make_blob(s.payload);

  // Round trips, one call at a time (the first ones connect and warm up).
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(s.grpc_rtt_count));
  for (std::int64_t i = 0; i < s.warmup + s.grpc_rtt_count; ++i) {
    if ((i & 255) == 0 && Clock::now() > deadline) {
      err = "time budget exhausted";
      break;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    rbench::Blob response;
    auto t0 = Clock::now();
    grpc::Status st = stub->Echo(&ctx, request, &response);
    auto t1 = Clock::now();
    if (!st.ok()) {
      err = "gRPC Echo: " + st.error_message();
      return false;
    }
    if (i >= s.warmup) {
      samples.push_back(micros(t1 - t0));
    }
  }

  // Throughput: grpc_in_flight calls in flight until grpc_count completed.
  auto load = std::make_shared<GrpcLoad>();
  load->stub = stub.get();
  load->request = request;
  load->total = s.grpc_count;
  load->call_deadline = wall_deadline;
  const int first = static_cast<int>(std::min<std::int64_t>(s.grpc_in_flight, s.grpc_count));
  load->next.store(first);
  const auto t0 = Clock::now();
  for (int i = 0; i < first; ++i) {
    grpc_start(load);
  }
  bool complete = false;
  {
    std::unique_lock lock(load->mu);
    complete =
        load->cv.wait_until(lock, deadline, [&] { return load->done.load() >= load->total; });
  }
  const auto t1 = Clock::now();
  if (!complete) {
    load->abort.store(true);
    std::unique_lock lock(load->mu);  // the calls in flight end by their own deadline
    load->cv.wait_until(lock, Clock::now() + 15s,
                        [&] { return load->done.load() >= load->issued.load(); });
    err = "time budget exhausted: " + std::to_string(load->done.load()) + " of " +
          std::to_string(load->total) + " calls";
  } else if (load->failed.load() > 0) {
    err = std::to_string(load->failed.load()) + " gRPC calls failed";
  }
  if (samples.size() >= 100) {
    double p50 = 0;
    double p99 = 0;
    percentiles(samples, p50, p99);
    out.push_back({"grpc_unary", "rtt_p50_us", "us", p50});
    out.push_back({"grpc_unary", "rtt_p99_us", "us", p99});
  }
  if (!complete || load->failed.load() > 0) {
    return false;
  }
  out.push_back(
      {"grpc_unary", "msgs_per_s", "1/s",
       static_cast<double>(s.grpc_count) / std::chrono::duration<double>(t1 - t0).count()});
  return true;
}

// --- CAF -------------------------------------------------------------------------------------

#if EMBER_REMOTE_BENCH_CAF
bool caf_client(const Settings& s, const Run& run, std::vector<Sample>& out, std::string& err) {
  const std::string& address = run.address;
  std::string host;
  std::uint16_t port = 0;
  if (!split_address(address, host, port)) {
    err = "bad address " + address;
    return false;
  }
  caf::actor_system_config cfg;
  caf_configure(cfg, s);
  caf::actor_system sys{cfg};
  auto server = sys.middleman().remote_actor(host, port);
  if (!server) {
    err = "remote_actor: " + sys.render(server.error());
    return false;
  }
  const auto deadline = Clock::now() + s.budget;
  const std::string payload(s.payload, 'x');
  bool ok = false;
  {
    caf::scoped_actor self{sys};
    const auto t0 = Clock::now();
    self->send(*server, go_atom::value, s.caf_count);
    std::int64_t sent = 0;
    for (; sent < s.caf_count; ++sent) {
      if ((sent & 4095) == 0 && Clock::now() > deadline) {
        err = "time budget exhausted while sending";
        break;
      }
      self->send(*server, payload);
    }
    if (sent == s.caf_count) {
      auto left = std::chrono::milliseconds(std::max(1, remaining_ms(deadline)));
      self->receive([&](done_atom, std::int64_t) { ok = true; },
                    caf::after(left) >> [&] { err = "no confirmation from the server in time"; });
    }
    if (ok) {
      out.push_back({"caf_send", "msgs_per_s", "1/s",
                     static_cast<double>(s.caf_count) /
                         std::chrono::duration<double>(Clock::now() - t0).count()});
    }
  }
  return ok;
}
#endif

// =============================================================================================

struct Scenario {
  std::string name;
  std::string role;     // server process
  int server_cpu = -1;  // >= 0: pin the server process to this CPU
  int client_cpu = -1;  // >= 0: pin the client thread to this CPU during the run
  std::function<bool(const Settings&, const Run&, std::vector<Sample>&, std::string&)> client;
};

/// One metric compared with another one (ratio = this / peer).
struct Comparison {
  std::string scenario;
  std::string metric;
  std::string peer_scenario;
  std::string peer_metric;
  std::string target;
};

void run_scenario(const Settings& s, const Scenario& sc, std::vector<Sample>& all) {
  std::string err;
  auto server = ServerProcess::spawn(s, sc.role, sc.server_cpu, err);
  if (!server) {
    std::fprintf(stderr, "  %s: %s\n", sc.name.c_str(), err.c_str());
    return;
  }
  std::string address;
  if (!server->wait_address(address, err, Clock::now() + 30s)) {
    std::fprintf(stderr, "  %s: %s\n", sc.name.c_str(), err.c_str());
    return;  // ~ServerProcess stops and reaps it
  }
  std::vector<Sample> got;
  Run run{sc.name, address, [&server] { server->request_stop(5s); }};
  cpu_set_t saved;
  bool pinned = false;
  if (sc.client_cpu >= 0 && ::pthread_getaffinity_np(::pthread_self(), sizeof saved, &saved) == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sc.client_cpu, &set);
    pinned = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
  }
  bool ok = sc.client(s, run, got, err);
  if (pinned) {
    ::pthread_setaffinity_np(::pthread_self(), sizeof saved, &saved);
  }
  if (!ok || !err.empty()) {
    std::fprintf(stderr, "  %s: %s%s\n", sc.name.c_str(),
                 ok ? "" : "FAILED: ", err.empty() ? "no result" : err.c_str());
  }
  for (auto& x : got) {
    if (s.verbose) {
      std::fprintf(stderr, "    %s %s = %.3f %s\n", x.scenario.c_str(), x.metric.c_str(), x.value,
                   x.unit.c_str());
    }
    all.push_back(std::move(x));
  }
  server->request_stop();
  if (int code = server->reap(15s); code != 0) {
    std::fprintf(stderr, "  %s: the server process exited with %d\n", sc.name.c_str(), code);
  }
}

std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v >= 1000 ? "%.0f" : "%.2f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  bool reps_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--quick") {
      s.quick = true;
    } else if (arg == "--verbose") {
      s.verbose = true;
    } else if (arg == "--reps") {
      s.reps = std::max(1, std::atoi(next().c_str()));
      reps_given = true;
    } else if (arg == "--threads") {
      s.threads = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--out") {
      s.out = next();
    } else if (arg == "--only") {
      s.only = next();
    } else if (arg == "--role") {
      s.role = next();
    } else if (arg == "--ctl-fd") {
      s.ctl_fd = std::atoi(next().c_str());
    } else if (arg == "--report-fd") {
      s.report_fd = std::atoi(next().c_str());
    } else if (arg == "--grpc-in-flight") {
      s.grpc_in_flight = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--cpu") {
      s.cpu = std::atoi(next().c_str());
    } else if (arg == "--child-limit") {
      s.child_limit = std::chrono::seconds(std::max(1, std::atoi(next().c_str())));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--reps N] [--threads N] [--out FILE] [--only SCENARIO] "
                   "[--verbose] [--grpc-in-flight N]\n  scenarios: raw_asio raw_asio_1cpu "
                   "raw_asio_2cpu ember_call ember_send "
                   "grpc_unary caf_send\n",
                   argv[0]);
      return 2;
    }
  }
  if (!s.role.empty()) {
    if (s.ctl_fd < 0 || s.report_fd < 0) {
      std::fprintf(stderr, "--role needs --ctl-fd and --report-fd\n");
      return 2;
    }
    return run_server_role(s);
  }
  if (s.quick) {
    s.reps = reps_given ? std::min(s.reps, 3) : 3;
    s.rtt_count = 5'000;
    s.send_count = 200'000;
    s.grpc_count = 50'000;
    s.grpc_rtt_count = 2'000;
    s.caf_count = 200'000;
    s.budget = 30s;
  }
  ::signal(SIGPIPE, SIG_IGN);
  ember::set_log_level(ember::LogLevel::warn);

  // raw_asio runs unpinned, like everything else. On a small VM its round trip is bimodal: the
  // scheduler either keeps both processes on one CPU (a cheap switch per message) or wakes the
  // other CPU each time (an IPI and a halt exit). The pinned variants show both modes.
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<Scenario> scenarios = {
    {"raw_asio", "raw", -1, -1, raw_client},
    {"raw_asio_1cpu", "raw", 0, 0, raw_client},
    {"ember_call", "ember", -1, -1, ember_call},
    {"ember_send", "ember", -1, -1, ember_send},
    {"grpc_unary", "grpc", -1, -1, grpc_client},
#if EMBER_REMOTE_BENCH_CAF
    {"caf_send", "caf", -1, -1, caf_client},
#endif
  };
  if (cores >= 2) {
    scenarios.insert(scenarios.begin() + 2, Scenario{"raw_asio_2cpu", "raw", 1, 0, raw_client});
  }
  const std::vector<Comparison> comparisons = {
      {"ember_call", "rtt_p50_us", "raw_asio", "rtt_p50_us", "<= 1.3"},
      {"ember_call", "rtt_p99_us", "raw_asio", "rtt_p99_us", ""},
      {"ember_send", "msgs_per_s", "caf_send", "msgs_per_s", ">= 10"},
  };
  // Context only (table, not JSON): Ember against gRPC.
  const std::vector<Comparison> extra = {
      {"ember_call", "rtt_p50_us", "raw_asio_1cpu", "rtt_p50_us", ""},
      {"ember_call", "rtt_p50_us", "raw_asio_2cpu", "rtt_p50_us", ""},
      {"ember_call", "rtt_p50_us", "grpc_unary", "rtt_p50_us", ""},
      {"ember_send", "msgs_per_s", "grpc_unary", "msgs_per_s", ""},
  };

  std::printf(
      "Ember remote benchmarks: 2 processes on 127.0.0.1, %zu-byte payload, %d worker threads "
      "per node, %d interleaved repetitions%s\n",
      s.payload, s.threads, s.reps, s.quick ? " (quick)" : "");
  std::printf("cores: %u   commit: %s\n", std::thread::hardware_concurrency(), commit_id().c_str());
  std::printf(
      "counts: %lld round trips (+%lld warm-up), %lld Ember Sends, %lld gRPC calls (%d in flight, "
      "callback API) + %lld sequential, %lld CAF messages\n",
      static_cast<long long>(s.rtt_count), static_cast<long long>(s.warmup),
      static_cast<long long>(s.send_count), static_cast<long long>(s.grpc_count), s.grpc_in_flight,
      static_cast<long long>(s.grpc_rtt_count), static_cast<long long>(s.caf_count));
  std::fflush(stdout);

  std::vector<Sample> all;
  for (int rep = 0; rep < s.reps; ++rep) {
    // Rotate the starting scenario so that no one always runs first (warm-up, thermal drift).
    for (std::size_t k = 0; k < scenarios.size(); ++k) {
      const Scenario& sc = scenarios[(k + static_cast<std::size_t>(rep)) % scenarios.size()];
      if (!s.only.empty() && sc.name != s.only) {
        continue;
      }
      auto t0 = Clock::now();
      run_scenario(s, sc, all);
      std::fprintf(stderr, "  rep %d/%d %-14s done in %.1f s\n", rep + 1, s.reps, sc.name.c_str(),
                   std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }

  // Medians per (scenario, metric), runs in repetition order.
  std::map<std::pair<std::string, std::string>, std::vector<double>> runs;
  std::map<std::pair<std::string, std::string>, std::string> units;
  std::vector<std::pair<std::string, std::string>> order;
  for (const auto& sc : scenarios) {  // table order: scenario order, metrics as produced
    for (const auto& x : all) {
      if (x.scenario != sc.name) {
        continue;
      }
      auto key = std::pair{x.scenario, x.metric};
      if (units.emplace(key, x.unit).second) {
        order.push_back(key);
      }
      runs[key].push_back(x.value);
    }
  }
  auto median = [&](const std::string& sc, const std::string& metric) -> double {
    auto it = runs.find({sc, metric});
    if (it == runs.end() || it->second.empty()) {
      return -1;
    }
    auto v = it->second;
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  auto find_cmp = [](const std::vector<Comparison>& list, const std::string& sc,
                     const std::string& metric) -> const Comparison* {
    for (const auto& c : list) {
      if (c.scenario == sc && c.metric == metric) {
        return &c;
      }
    }
    return nullptr;
  };

  std::printf("\n%-14s %-18s %12s  %-20s %7s  %s\n", "scenario", "metric", "median", "peer",
              "ratio", "target");
  std::ofstream json(s.out, std::ios::app);
  for (const auto& [sc, metric] : order) {
    double v = median(sc, metric);
    const Comparison* c = find_cmp(comparisons, sc, metric);
    std::string peer = "-";
    std::string ratio = "-";
    std::string target;
    double r = -1;
    if (c != nullptr) {
      peer = c->peer_scenario + "/" + c->peer_metric;
      target = c->target;
      double p = median(c->peer_scenario, c->peer_metric);
      if (v >= 0 && p > 0) {
        r = v / p;
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", r);
        ratio = buf;
      }
    }
    std::printf("%-14s %-18s %12s  %-20s %7s  %s\n", sc.c_str(),
                (metric + " (" + units[{sc, metric}] + ")").c_str(), format_value(v).c_str(),
                peer.c_str(), ratio.c_str(), target.c_str());
    std::string line = "{\"suite\":\"remote\",\"scenario\":\"" + sc + "\",\"metric\":\"" + metric +
                       "\",\"value\":" + json_number(v) + ",\"unit\":\"" + units[{sc, metric}] +
                       "\",\"runs\":[";
    const auto& rs = runs[{sc, metric}];
    for (std::size_t i = 0; i < rs.size(); ++i) {
      line += (i == 0 ? "" : ",") + json_number(rs[i]);
    }
    line += "],\"ratio_vs\":";
    line += c != nullptr ? "\"" + c->peer_scenario + "/" + c->peer_metric + "\"" : "null";
    line += ",\"ratio\":";
    line += r >= 0 ? json_number(r) : "null";
    line += "}";
    json << line << "\n";
  }
  bool header = false;
  for (const auto& c : extra) {
    double v = median(c.scenario, c.metric);
    double p = median(c.peer_scenario, c.peer_metric);
    if (v < 0 || p <= 0) {
      continue;
    }
    if (!header) {
      std::printf("\nfor context (not in the JSON):\n");
      header = true;
    }
    std::printf("  %s/%s vs %s/%s: %.2f\n", c.scenario.c_str(), c.metric.c_str(),
                c.peer_scenario.c_str(), c.peer_metric.c_str(), v / p);
  }
  std::printf("\nJSON lines appended to %s\n", s.out.c_str());
  return 0;
}
