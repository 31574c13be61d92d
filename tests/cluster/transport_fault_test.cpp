// SPDX-License-Identifier: Apache-2.0
// The transport of a node process (ember_test_node, real etcd) under faults a stranger or the
// machine can cause: the process runs out of descriptors, silent connections pile up, and a
// flood of bad connections that must not flood the log. After each, a node in this test process
// connects anew and calls.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "ember/wire.pb.h"
#include "support/etcd_server.hpp"
#include "support/node_process.hpp"
#include "support/raw_socket.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ember::Result;
using ember::Selector;
using ember::testing::closed_by_peer;
using ember::testing::connect_to;
using ember::testing::EtcdServer;
using ember::testing::NodeProcess;
using ember::testing::wait_for;
namespace pb = ember::test;

/// Its transport's handshake timeout (the default: node.yaml does not set it).
constexpr auto kHandshakeTimeout = 3s;

bool send_frame(int fd, const std::string& body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  std::string bytes = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  bytes += body;
  return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

bool recv_exact(int fd, char* out, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {  // bounded: each recv waits at most the 5 s receive timeout
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r <= 0) {
      return false;
    }
    got += static_cast<std::size_t>(r);
  }
  return true;
}

/// Speaks the handshake as node `intruder` of cluster `cluster` but answers the server's
/// challenge with a made-up proof. True if the server then closed the connection.
bool handshake_with_a_wrong_secret(const std::string& address, const std::string& cluster) {
  const int fd = connect_to(address);
  if (fd < 0) {
    return false;
  }
  ember::wire::Hello hello;
  hello.set_version(1);
  hello.set_cluster(cluster);
  hello.set_node_id("intruder");
  hello.set_nonce(std::string(16, 'n'));
  bool ok = send_frame(fd, hello.SerializeAsString());
  unsigned char header[4];
  ok = ok && recv_exact(fd, reinterpret_cast<char*>(header), 4);
  const std::size_t length = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                             (std::size_t{header[2]} << 8) | header[3];
  std::string body(ok && length <= 4096 ? length : 0, '\0');
  ok = ok && length <= 4096 && recv_exact(fd, body.data(), length);
  ember::wire::Hello server;
  ok = ok && server.ParseFromString(body) && !server.proof().empty();
  ember::wire::Proof proof;
  proof.set_proof(std::string(32, 'x'));
  ok = ok && send_frame(fd, proof.SerializeAsString()) && closed_by_peer(fd);
  ::close(fd);
  return ok;
}

/// Open descriptors of a process (Linux).
int open_descriptors(pid_t pid) {
  std::error_code ec;
  int n = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return ec ? -1 : n;
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

/// Lines of `text` that contain `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) {
      out.push_back(line);
    }
  }
  return out;
}

class TransportFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
  }
  void TearDown() override {
    for (auto& n : nodes_) {
      (void)n->stop();
    }
    proc_.stop();
    if (HasFailure()) {
      std::cerr << "----- p1 -----\n" << proc_.log_text();
    }
    etcd_.stop();
  }

  /// Starts node process p1 (an Echo service); `cluster_extra` is added to its ClusterConf.
  void start_p1(const std::string& cluster_extra = "", int open_files = 0) {
    const std::string config = (dir_ / "p1.yaml").string();
    std::ofstream(config) << "NodeConf: {NodeId: p1, WorkerThreads: 2, ShutdownTimeout: 2s}\n"
                             "SystemLogger: {Level: info}\n"
                             "ClusterConf:\n"
                             "  Name: faults\n"
                             "  Secret: s3cret\n" +
                                 cluster_extra + "  ETCDConf: {Endpoints: [" + etcd_.endpoint() +
                                 "]}\n"
                                 "  DiscoveryConf: {TTL: 2s}\n"
                                 "ServiceConf:\n"
                                 "  StartServices:\n"
                                 "    - {ClassName: Echo, ServiceName: echo, ServiceId: p1}\n";
    std::string why = proc_.start("p1", config, (dir_ / "p1.log").string(), open_files);
    ASSERT_TRUE(why.empty()) << why;
  }

  /// A node in this process that sees p1 and has called it once (so it holds a connection).
  ember::Node& joined_node(const std::string& id) {
    ember::NodeConfig c;
    c.node_id = id;
    c.worker_threads = 2;
    c.cluster.enabled = true;
    c.cluster.name = "faults";
    c.cluster.secret = "s3cret";
    c.cluster.etcd_endpoints = {etcd_.endpoint()};
    c.cluster.ttl = 2s;
    auto& node = *nodes_.emplace_back(std::make_unique<ember::Node>(c));
    EXPECT_TRUE(node.start());
    EXPECT_TRUE(wait_for([&] { return p1(node).size() == 1; }, 20s)) << id << " does not see p1";
    auto r = sum(node, 2, 3);
    EXPECT_TRUE(r && r->sum() == 5) << id << ": " << (r ? "wrong sum" : r.error().to_string());
    return node;
  }

  static ember::Bus p1(ember::Node& node) {
    return ember::select(node, Selector::name("echo").id("p1"));
  }
  static Result<pb::SumResp> sum(ember::Node& node, int a, int b) {
    pb::SumReq r;
    r.set_a(a);
    r.set_b(b);
    return p1(node).call<pb::SumResp>("RpcSum", r, {.timeout = 5s});
  }
  /// p1's transport counters, over `node`'s open connection.
  static pb::TransportCounters counters(ember::Node& node) {
    auto r = p1(node).call<pb::TransportCounters>("RpcTransport", pb::Echo{}, {.timeout = 5s});
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : pb::TransportCounters{};
  }
  std::string p1_address(ember::Node& node) const {
    for (const auto& t : p1(node).targets()) {
      return t.address;
    }
    return {};
  }

  EtcdServer etcd_;
  ember::testing::ScratchDir dir_{"ember-transport-faults"};
  NodeProcess proc_;
  std::vector<std::unique_ptr<ember::Node>> nodes_;
};

TEST_F(TransportFaults, ANodeOutOfDescriptorsLogsOnceAndAcceptsAgainWhenSomeAreFree) {
  // Many pending handshakes allowed: the cap would otherwise spare the descriptors.
  constexpr int kOpenFiles = 256;
  start_p1("  MaxPendingHandshakes: 4096\n", kOpenFiles);
  auto& observer = joined_node("observer");
  const std::string address = p1_address(observer);
  ASSERT_FALSE(address.empty());
  EXPECT_EQ(counters(observer).accept_failures(), 0u);
  const int used = open_descriptors(proc_.pid());
  ASSERT_GT(used, 0);
  ASSERT_LT(used, kOpenFiles - 16) << "the node needs more descriptors than the test allows";
  // A few more connections than p1 has descriptors left: the kernel completes them all (the
  // listen backlog), p1 accepts until its table is full and then fails to accept the rest.
  std::vector<int> fds;
  const int wanted = kOpenFiles - used + 16;
  for (int i = 0; i < wanted; ++i) {
    const int fd = connect_to(address);
    ASSERT_GE(fd, 0) << "connection " << i;
    fds.push_back(fd);
  }
  // Retried with a backoff while the table stays full (this call uses the observer's connection,
  // opened before: p1 needs no descriptor to answer it). Well within the handshake timeout, which
  // would free descriptors by itself.
  const auto t0 = Clock::now();
  ASSERT_TRUE(wait_for([&] { return counters(observer).accept_failures() >= 3; }, 10s))
      << counters(observer).DebugString();
  EXPECT_LT(Clock::now() - t0, kHandshakeTimeout);
  EXPECT_EQ(count(proc_.log_text(), "accept failed"), 1u) << proc_.log_text();
  EXPECT_NE(proc_.log_text().find("accept failed: Too many open files"), std::string::npos);
  for (const int fd : fds) {
    ::close(fd);
  }
  ASSERT_TRUE(wait_for(
      [&] { return proc_.log_text().find("accepting again after") != std::string::npos; }, 10s));
  const std::string log = proc_.log_text();
  EXPECT_EQ(count(log, "accept failed"), 1u) << log;
  const auto again = lines_with(log, "accepting again after");
  ASSERT_EQ(again.size(), 1u);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(again[0], m, std::regex("after [0-9]+ ms / ([0-9,]+) failures")))
      << again[0];
  EXPECT_GE(std::stoi(m[1]), 3);
  // A node that was never connected to p1 connects now and calls.
  auto& late = joined_node("late");
  auto r = sum(late, 20, 22);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 42);
  EXPECT_TRUE(proc_.alive());
  EXPECT_GE(counters(observer).accept_failures(), 3u);
}

TEST_F(TransportFaults, SilentConnectionsBeyondTheCapAreClosedAtOnceAndTheRestTimeOut) {
  constexpr int kCap = 8;
  start_p1("  MaxPendingHandshakes: " + std::to_string(kCap) + "\n");
  auto& observer = joined_node("observer");
  const std::string address = p1_address(observer);
  ASSERT_FALSE(address.empty());
  const auto opened = Clock::now();
  std::vector<int> silent;
  for (int i = 0; i < kCap; ++i) {
    silent.push_back(connect_to(address));
    ASSERT_GE(silent.back(), 0);
  }
  ASSERT_TRUE(wait_for([&] { return counters(observer).pending_handshakes() == kCap; }, 5s))
      << counters(observer).DebugString();
  // Further connections are closed at accept, not after the handshake timeout.
  const auto extra_from = Clock::now();
  for (int i = 0; i < kCap; ++i) {
    const int fd = connect_to(address);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(closed_by_peer(fd)) << "extra connection " << i;
    ::close(fd);
  }
  EXPECT_LT(Clock::now() - extra_from, kHandshakeTimeout / 2);
  auto c = counters(observer);
  EXPECT_EQ(c.too_many_pending(), static_cast<std::uint64_t>(kCap));
  EXPECT_EQ(c.pending_handshakes(), static_cast<std::uint64_t>(kCap));
  // The silent ones are closed when the handshake timeout fires.
  for (const int fd : silent) {
    EXPECT_TRUE(closed_by_peer(fd));
    ::close(fd);
  }
  EXPECT_GE(Clock::now() - opened, kHandshakeTimeout - 500ms);
  ASSERT_TRUE(wait_for([&] { return counters(observer).pending_handshakes() == 0; }, 5s));
  c = counters(observer);
  EXPECT_EQ(c.handshake_timeout(), static_cast<std::uint64_t>(kCap));
  EXPECT_EQ(c.rejected(), 2u * kCap);
  // A node that was never connected to p1 connects now and calls.
  auto& late = joined_node("late");
  auto r = sum(late, 1, 1);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->sum(), 2);
  const std::string log = proc_.log_text();
  EXPECT_EQ(count(log, "refused a connection from 127.0.0.1"), 1u) << log;
}

TEST_F(TransportFaults, AFloodOfBadConnectionsIsCountedAndLoggedInAFewLines) {
  constexpr int kEach = 1000;
  start_p1();
  auto& observer = joined_node("observer");
  const std::string address = p1_address(observer);
  ASSERT_FALSE(address.empty());
  const std::size_t before = proc_.log_text().size();
  const auto deadline = Clock::now() + 120s;
  for (int i = 0; i < kEach && Clock::now() < deadline; ++i) {
    const int fd = connect_to(address);
    ASSERT_GE(fd, 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_GT(::send(fd, junk, sizeof junk, MSG_NOSIGNAL), 0);
    ASSERT_TRUE(closed_by_peer(fd)) << "garbage " << i;
    ::close(fd);
    ASSERT_TRUE(handshake_with_a_wrong_secret(address, "faults")) << "wrong secret " << i;
  }
  auto c = counters(observer);
  EXPECT_EQ(c.bad_frame(), static_cast<std::uint64_t>(kEach));
  EXPECT_EQ(c.wrong_secret(), static_cast<std::uint64_t>(kEach));
  EXPECT_EQ(c.rejected(), 2u * kEach);
  // One line at the first refusal, then one summary per 10 s window: together they account for
  // every refusal.
  std::uint64_t summarised = 0;
  ASSERT_TRUE(wait_for(
      [&] {
        summarised = 0;
        std::smatch m;
        static const std::regex re(
            "refused ([0-9,]+) connections from 127\\.0\\.0\\.1 in the last");
        for (const auto& line : lines_with(proc_.log_text(), "connections from 127.0.0.1")) {
          if (std::regex_search(line, m, re)) {
            std::string digits = m[1];
            std::erase(digits, ',');
            summarised += std::stoull(digits);
          }
        }
        return summarised == 2u * kEach;
      },
      30s))
      << summarised << "\n"
      << proc_.log_text();
  const std::string log = proc_.log_text();
  // Whatever the wording: the flood made a few lines at most.
  const std::string since = log.substr(before);
  EXPECT_LE(count(since, "\n"), 5u) << since;
  EXPECT_LE(lines_with(log, "refused").size(), 5u) << log;
  EXPECT_EQ(count(log, "refused a connection from 127.0.0.1: bad frame"), 1u) << log;
  EXPECT_NE(log.find("wrong secret: "), std::string::npos) << log;
  // The node still serves, old and new peers alike.
  auto& late = joined_node("late");
  EXPECT_TRUE(sum(late, 1, 2));
  EXPECT_TRUE(sum(observer, 3, 4));
  EXPECT_TRUE(proc_.alive());
}

}  // namespace
