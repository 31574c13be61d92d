// SPDX-License-Identifier: Apache-2.0
// Bytes from a stranger on a node's transport port, through a real Transport listening on
// loopback: the handshake (Hello, Proof) and, once authenticated, the length-prefixed frame
// decoder. The first input byte picks the stage:
//   even: the rest is sent as it is, before any handshake (a stranger, a scanner, an attacker);
//   odd:  the harness first completes a valid handshake as node "peer", then sends the rest
//         (a member whose frames are garbage, oversized or cut short).
// The harness then half-closes and waits for the node to close the connection. A crash, a hang
// (libFuzzer's -timeout) or the node not closing within 5 s fail the run.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ember/log.hpp>
#include <memory>
#include <string>

#include "ember/wire.pb.h"
#include "net/transport.hpp"

namespace {

constexpr const char* kCluster = "fuzz";
constexpr const char* kSecret = "fuzz-secret";
constexpr const char* kServer = "node";
constexpr const char* kClient = "peer";

ember::net::Transport& server();

[[noreturn]] void fail(const char* what) {
  const int error = errno;
  const auto stats = server().stats();
  std::fprintf(stderr,
               "transport_frames fuzzer: %s (errno %d; node: %llu open, %llu pending handshakes, "
               "%llu refused)\n",
               what, error, static_cast<unsigned long long>(stats.connections),
               static_cast<unsigned long long>(stats.pending_handshakes),
               static_cast<unsigned long long>(stats.rejected));
  std::abort();
}

ember::net::Transport& server() {
  static std::unique_ptr<ember::net::Transport> transport = [] {
    ember::net::TransportOptions options;
    options.cluster = kCluster;
    options.node_id = kServer;
    options.secret = kSecret;
    options.max_frame = 64 * 1024;  // small, so oversized frames are cheap to reach
    auto started = ember::net::Transport::start(
        options, [](const std::string&, std::string_view) {},
        [](const std::string&, bool, const ember::net::Transport::PeerLoss&) {});
    if (!started) {
      fail("cannot start the transport");
    }
    return std::move(*started);
  }();
  return *transport;
}

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's timeout alarm interrupts system calls: EINTR is retried everywhere here.
  int rc = -1;
  do {
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (fd < 0 || (rc != 0 && errno != EISCONN)) {
    fail("cannot connect to the transport");
  }
  timeval tv{5, 0};  // the node must close within this, or the run fails
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;  // the node closed first: fine
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string frame(const std::string& body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  std::string out{static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                  static_cast<char>(n)};
  return out + body;
}

bool read_frame(int fd, std::string& body) {
  unsigned char header[4];
  std::size_t got = 0;
  while (got < sizeof header) {
    const ssize_t n = ::recv(fd, header + got, sizeof header - got, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  const std::size_t size = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                           (std::size_t{header[2]} << 8) | header[3];
  if (size > 4096) {
    fail("the node sent an oversized handshake frame");
  }
  body.resize(size);
  got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd, body.data() + got, size - got, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  return true;
}

std::string proof(const char* role, const std::string& first, const std::string& second) {
  const std::string text = std::string(role) + '\0' + first + second + kClient + '\0' + kServer;
  return ember::net::hmac_sha256(kSecret, text);
}

/// The client side of the handshake, done right. Returns false if the node hung up.
bool handshake(int fd) {
  const std::string nonce(16, 'n');
  ember::wire::Hello hello;
  hello.set_version(1);
  hello.set_cluster(kCluster);
  hello.set_node_id(kClient);
  hello.set_nonce(nonce);
  if (!write_all(fd, frame(hello.SerializeAsString()))) {
    return false;
  }
  std::string body;
  ember::wire::Hello answer;
  if (!read_frame(fd, body) || !answer.ParseFromString(body)) {
    fail("no server Hello after a valid client Hello");
  }
  if (answer.proof() != proof("server", nonce, answer.nonce())) {
    fail("the server's proof does not verify");
  }
  ember::wire::Proof mine;
  mine.set_proof(proof("client", answer.nonce(), nonce));
  return write_all(fd, frame(mine.SerializeAsString()));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ember::set_log_level(ember::LogLevel::off);
  // One real handshake before fuzzing: OpenSSL sets up its random generator and digest state on
  // first use in each thread and keeps it in thread-local slots the leak checker cannot see, which
  // would otherwise be reported as a leak of whichever input came first.
  const int fd = connect_to(server().port());
  if (!handshake(fd)) {
    fail("the warm-up handshake failed");
  }
  ::close(fd);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const bool authenticated = (data[0] & 1) != 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int fd = connect_to(server().port());
  if (!authenticated || handshake(fd)) {
    (void)write_all(fd, rest);
  }
  ::shutdown(fd, SHUT_WR);
  // The node reads to our end of stream, so it must close now whatever it was sent.
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      break;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      fail("the node did not close the connection within 5 s of the end of its input");
    }
  }
  ::close(fd);
  return 0;
}
