// SPDX-License-Identifier: Apache-2.0
// Node-to-node TCP on loopback: delivery and order, the handshake, hostile input, the cap on
// pending handshakes and the rate-limited log of refused connections.
#include "net/transport.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <ember/log.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <regex>
#include <vector>

#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::net::Transport;
using ember::net::TransportOptions;
using ember::testing::wait_for;

struct Inbox {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> frames;
  std::atomic<int> count{0};
  std::atomic<int> downs{0};
  std::atomic<int> ups{0};
  std::vector<Transport::PeerLoss> losses;

  Transport::OnFrame on_frame() {
    return [this](const std::string& from, std::string_view payload) {
      std::lock_guard lock(mu);
      frames.emplace_back(from, std::string(payload));
      count.fetch_add(1);
    };
  }
  Transport::OnPeer on_peer() {
    return [this](const std::string&, bool up, const Transport::PeerLoss& loss) {
      if (!up) {
        std::lock_guard lock(mu);
        losses.push_back(loss);
      }
      (up ? ups : downs).fetch_add(1);
    };
  }
};

std::unique_ptr<Transport> make(const std::string& id, Inbox& inbox, std::string secret = "s3cret",
                                std::size_t max_frame = 16u << 20, std::string cluster = "test") {
  TransportOptions o;
  o.cluster = std::move(cluster);
  o.node_id = id;
  o.secret = std::move(secret);
  o.max_frame = max_frame;
  o.handshake_timeout = 1s;
  auto t = Transport::start(o, inbox.on_frame(), inbox.on_peer());
  EXPECT_TRUE(t) << t.error().to_string();
  return t ? std::move(*t) : nullptr;
}

std::string addr(const Transport& t) {
  return "127.0.0.1:" + std::to_string(t.port());
}

TEST(Transport, RequiresNodeIdAndSecret) {
  Inbox inbox;
  TransportOptions o;
  o.node_id = "a";
  EXPECT_EQ(Transport::start(o, inbox.on_frame(), inbox.on_peer()).error().code(),
            Errc::invalid_argument);
  o.node_id = "";
  o.secret = "x";
  EXPECT_EQ(Transport::start(o, inbox.on_frame(), inbox.on_peer()).error().code(),
            Errc::invalid_argument);
}

TEST(Transport, FramesArriveInOrderOverOneConnectionBothWays) {
  Inbox ia, ib;
  auto a = make("a", ia);
  auto b = make("b", ib);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(a->send("b", addr(*b), "m" + std::to_string(i)));
  }
  ASSERT_TRUE(wait_for([&] { return ib.count.load() == 1000; }));
  {
    std::lock_guard lock(ib.mu);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_EQ(ib.frames[static_cast<std::size_t>(i)].first, "a");
      ASSERT_EQ(ib.frames[static_cast<std::size_t>(i)].second, "m" + std::to_string(i));
    }
  }
  // b answers over the connection a opened: no second connection.
  ASSERT_TRUE(b->send("a", addr(*a), "reply"));
  ASSERT_TRUE(wait_for([&] { return ia.count.load() == 1; }));
  EXPECT_EQ(a->stats().connections, 1u);
  EXPECT_EQ(b->stats().connections, 1u);
  EXPECT_EQ(ib.ups.load(), 1);
}

TEST(Transport, ManySmallFramesAreCoalesced) {
  Inbox ia, ib;
  auto a = make("a", ia);
  auto b = make("b", ib);
  constexpr int kFrames = 100'000;
  std::string payload(100, 'x');
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE(a->send("b", addr(*b), payload));
  }
  ASSERT_TRUE(wait_for([&] { return ib.count.load() == kFrames; }, 30s));
  EXPECT_EQ(a->stats().frames_out, static_cast<std::uint64_t>(kFrames));
}

TEST(Transport, WrongSecretIsRefusedAndTheNodeKeepsServingOthers) {
  Inbox ib, ia, ic;
  auto b = make("b", ib);
  auto a = make("a", ia);
  auto c = make("c", ic, "wrong");
  ASSERT_TRUE(c->send("b", addr(*b), "intruder"));
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 1 && ic.downs.load() >= 1; }));
  // The client checks the server's proof first: it finds the mismatch and tells the server
  // before hanging up, so both count a wrong secret.
  EXPECT_EQ(c->stats().rejected_wrong_secret, 1u);
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected_wrong_secret >= 1; }));
  EXPECT_EQ(b->stats().rejected_wrong_secret, b->stats().rejected);
  ASSERT_TRUE(a->send("b", addr(*b), "friend"));
  ASSERT_TRUE(wait_for([&] { return ib.count.load() == 1; }));
  std::lock_guard lock(ib.mu);
  EXPECT_EQ(ib.frames.at(0).second, "friend");
}

TEST(Transport, AnotherClusterIsRefused) {
  Inbox ib, ic;
  auto b = make("b", ib);
  auto c = make("c", ic, "s3cret", 16u << 20, "other");
  ASSERT_TRUE(c->send("b", addr(*b), "hi"));
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 1; }));
  EXPECT_EQ(b->stats().rejected_wrong_cluster, b->stats().rejected);
  EXPECT_EQ(ib.count.load(), 0);
}

// A raw TCP client that writes bytes to the transport's port, from `from` (any 127.0.0.0/8
// address: refusals are grouped by the peer's IP).
void raw_write(std::uint16_t port, const std::string& bytes, bool wait_for_close = true,
               const std::string& from = "127.0.0.1") {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.open(asio::ip::tcp::v4());
  s.bind({asio::ip::make_address(from), 0});
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(s, asio::buffer(bytes));
  if (wait_for_close) {
    char buf[64];
    asio::error_code ec;
    s.read_some(asio::buffer(buf), ec);  // returns when the server closes us
  }
}

TEST(Transport, GarbageOversizedAndTruncatedInputCloseOnlyThatConnection) {
  Inbox ia, ib;
  auto b = make("b", ib, "s3cret", 1024);
  auto a = make("a", ia);
  raw_write(b->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");      // garbage: absurd length
  raw_write(b->port(), std::string("\x00\x00\x00\x05hello", 9));  // not a Hello
  raw_write(b->port(),
            std::string("\x00\x00\x00\x64"
                        "abc",
                        7),
            false);  // truncated, then closed
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 3; }));
  EXPECT_EQ(b->stats().rejected_bad_frame, 2u);  // the absurd length and the truncated frame
  EXPECT_EQ(b->stats().rejected_bad_handshake, 1u);
  // An authenticated peer that sends a frame over b's 1 KiB limit loses its connection...
  ASSERT_TRUE(a->send("b", addr(*b), std::string(2048, 'x')));
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 4 && ia.downs.load() >= 1; }));
  EXPECT_EQ(b->stats().rejected_bad_frame, 3u);
  // ...and can come back with valid frames once its backoff passes.
  ASSERT_TRUE(wait_for([&] { return a->send("b", addr(*b), "ok").ok(); }, 5s));
  ASSERT_TRUE(wait_for([&] { return ib.count.load() >= 1; }));
  EXPECT_EQ(ib.count.load(), 1);
  // A sender refuses a frame over its own limit instead of sending it.
  auto refused = b->send("a", addr(*a), std::string(2048, 'x'));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ember::Errc::invalid_argument);
}

/// A connection to `port` that sends nothing.
struct Silent {
  asio::io_context io;
  asio::ip::tcp::socket s{io};
  explicit Silent(std::uint16_t port) { s.connect({asio::ip::make_address("127.0.0.1"), port}); }
  /// Blocks until the server closes the connection (the server never writes to a silent peer).
  void wait_closed() {
    char buf[16];
    asio::error_code ec;
    s.read_some(asio::buffer(buf), ec);
  }
};

// A receiver that gathers what frames carry hands it on when a read's frames are through: after
// every read, including one that ends on an oversized frame (which closes the connection).
TEST(Transport, EveryReadEndsWithTheAfterFramesHookEvenWhenAFrameIsOversized) {
  Inbox ia, ib;
  std::atomic<int> ungathered{0};  // frames delivered since the hook last ran
  std::atomic<int> hooks{0};
  TransportOptions o;
  o.cluster = "test";
  o.node_id = "b";
  o.secret = "s3cret";
  o.max_frame = 1024;
  o.after_frames = [&] {
    ungathered.store(0);
    hooks.fetch_add(1);
  };
  auto started = Transport::start(
      o,
      [&](const std::string& from, std::string_view payload) {
        ungathered.fetch_add(1);
        ib.on_frame()(from, payload);
      },
      ib.on_peer());
  ASSERT_TRUE(started) << started.error().to_string();
  auto b = std::move(*started);
  auto a = make("a", ia);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int before = ib.count.load();
    const int downs = ib.downs.load();
    const int a_downs = ia.downs.load();
    // Small frames and then one over b's limit, staged together: usually one read on b.
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(a->send("b", addr(*b), "m" + std::to_string(i)));
    }
    ASSERT_TRUE(a->send("b", addr(*b), std::string(4096, 'x')));
    ASSERT_TRUE(wait_for([&] { return ib.downs.load() > downs; }, 10s)) << "b kept the link";
    ASSERT_EQ(ib.count.load(), before + 50);
    EXPECT_EQ(ungathered.load(), 0) << "frames of the last read were never handed on";
    // Once a has seen the loss, it reconnects after its backoff for the next round.
    ASSERT_TRUE(wait_for([&] { return ia.downs.load() > a_downs; }, 10s));
    ASSERT_TRUE(wait_for([&] { return a->send("b", addr(*b), "hello").ok(); }, 10s));
    ASSERT_TRUE(wait_for([&] { return ib.count.load() == before + 51; }, 10s));
  }
  EXPECT_GT(hooks.load(), 0);
}

TEST(Transport, PendingHandshakesAreCappedAndSilentConnectionsTimeOut) {
  constexpr int kCap = 4;
  Inbox ia, ib;
  TransportOptions o;
  o.cluster = "test";
  o.node_id = "b";
  o.secret = "s3cret";
  o.handshake_timeout = 1s;
  o.max_pending_handshakes = kCap;
  auto started = Transport::start(o, ib.on_frame(), ib.on_peer());
  ASSERT_TRUE(started) << started.error().to_string();
  auto& b = *started;
  const auto opened = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Silent>> silent;
  for (int i = 0; i < kCap; ++i) {
    silent.push_back(std::make_unique<Silent>(b->port()));
  }
  ASSERT_TRUE(wait_for([&] { return b->stats().pending_handshakes == kCap; }));
  // Over the cap: closed at accept, long before the handshake timeout.
  const auto extra_from = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    Silent extra(b->port());
    extra.wait_closed();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - extra_from, 500ms);
  // Counted on b's I/O thread once the socket is closed: the client may see the close first.
  EXPECT_TRUE(wait_for([&] { return b->stats().rejected_too_many_pending == 3; }));
  EXPECT_EQ(b->stats().pending_handshakes, static_cast<std::uint64_t>(kCap));
  // The silent ones are closed by the handshake timeout, and their slots freed.
  for (auto& s : silent) {
    s->wait_closed();
  }
  ASSERT_TRUE(wait_for([&] { return b->stats().pending_handshakes == 0; }));
  EXPECT_EQ(b->stats().rejected_handshake_timeout, static_cast<std::uint64_t>(kCap));
  EXPECT_GE(std::chrono::steady_clock::now() - opened, o.handshake_timeout);
  // A node connects afterwards.
  auto a = make("a", ia);
  ASSERT_TRUE(a->send("b", addr(*b), "hello"));
  ASSERT_TRUE(wait_for([&] { return ib.count.load() == 1; }));
  EXPECT_EQ(b->stats().rejected, 3u + kCap);
}

/// Sends the process's log lines to a file while it lives (stderr only again afterwards).
class CapturedLog {
 public:
  CapturedLog()
      : path_(std::filesystem::temp_directory_path() /
              ("ember-transport-log-" + std::to_string(::getpid()) + ".log")) {
    std::filesystem::remove(path_);
    EXPECT_TRUE(ember::configure_logging(ember::LogLevel::info, path_.string()));
  }
  ~CapturedLog() {
    (void)ember::configure_logging(ember::LogLevel::info);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  /// The lines containing every one of `parts`.
  std::vector<std::string> lines(std::initializer_list<std::string> parts) const {
    ember::flush_logs();
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
      bool all = true;
      for (const auto& p : parts) {
        all = all && line.find(p) != std::string::npos;
      }
      if (all) {
        out.push_back(line);
      }
    }
    return out;
  }

 private:
  std::filesystem::path path_;
};

/// The count of a summary line ("refused 1,234 connections from ..."), or -1.
long summary_count(const std::string& line) {
  std::smatch m;
  static const std::regex re("refused ([0-9,]+) connections? from");
  if (!std::regex_search(line, m, re)) {
    return -1;
  }
  std::string digits = m[1];
  std::erase(digits, ',');
  return std::stol(digits);
}

TEST(Transport, RefusalsAreLoggedOncePerAddressThenSummarised) {
  CapturedLog log;
  Inbox ib;
  TransportOptions o;
  o.cluster = "test";
  o.node_id = "b";
  o.secret = "s3cret";
  o.reject_log_window = 1h;    // only stop() ends these windows: the counts are exact
  o.reject_log_addresses = 2;  // 127.0.0.2 and .3 get their own lines; .4 and .5 share one
  auto started = Transport::start(o, ib.on_frame(), ib.on_peer());
  ASSERT_TRUE(started) << started.error().to_string();
  auto& b = *started;
  const std::string garbage = "GET / HTTP/1.1\r\n\r\n";
  const std::string not_hello("\x00\x00\x00\x05hello", 9);
  for (int i = 0; i < 50; ++i) {
    raw_write(b->port(), garbage, true, "127.0.0.2");
    raw_write(b->port(), not_hello, true, "127.0.0.2");
  }
  for (const std::string from : {"127.0.0.3", "127.0.0.4", "127.0.0.5"}) {
    for (int i = 0; i < 10; ++i) {
      raw_write(b->port(), garbage, true, from);
    }
  }
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected == 130; }));
  EXPECT_EQ(b->stats().rejected_bad_frame, 80u);
  EXPECT_EQ(b->stats().rejected_bad_handshake, 50u);
  // One line each at the first refusal: the tracked addresses, and the first of the others.
  EXPECT_EQ(log.lines({"refused a connection from"}).size(), 3u);
  EXPECT_EQ(log.lines({"refused a connection from 127.0.0.2: bad frame"}).size(), 1u);
  EXPECT_EQ(log.lines({"refused a connection from 127.0.0.3"}).size(), 1u);
  EXPECT_EQ(log.lines({"refused a connection from 127.0.0.4", "beyond the 2 tracked"}).size(), 1u);
  EXPECT_TRUE(log.lines({"refused", "connections from"}).empty());  // windows still open
  b->stop();
  const auto first = log.lines({"refused 100 connections from 127.0.0.2 in the last ",
                                " ms (bad handshake: 50, bad frame: 50)"});
  EXPECT_EQ(first.size(), 1u) << log.lines({"refused"}).size();
  EXPECT_EQ(log.lines({"refused 10 connections from 127.0.0.3 in the last"}).size(), 1u);
  EXPECT_EQ(log.lines({"refused 20 connections from other addresses in the last"}).size(), 1u);
  EXPECT_EQ(log.lines({"refused"}).size(), 6u);
  EXPECT_EQ(log.lines({"transport b:"}).size(), 6u);  // nothing else about them either
}

TEST(Transport, AWindowEndsWithOneSummaryLine) {
  CapturedLog log;
  Inbox ib;
  TransportOptions o;
  o.cluster = "test";
  o.node_id = "b";
  o.secret = "s3cret";
  o.reject_log_window = 300ms;
  auto started = Transport::start(o, ib.on_frame(), ib.on_peer());
  ASSERT_TRUE(started) << started.error().to_string();
  auto& b = *started;
  constexpr int kRefusals = 40;
  for (int i = 0; i < kRefusals; ++i) {
    raw_write(b->port(), "GET / HTTP/1.1\r\n\r\n", true, "127.0.0.6");
  }
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected == kRefusals; }));
  // The windows end without stop(): however many the refusals spanned, each ends in one line
  // and together they account for every refusal.
  long summarised = 0;
  ASSERT_TRUE(wait_for(
      [&] {
        summarised = 0;
        for (const auto& line : log.lines({"connections from 127.0.0.6 in the last 300 ms"})) {
          summarised += summary_count(line);
        }
        for (const auto& line : log.lines({"refused 1 connection from 127.0.0.6 in the last"})) {
          summarised += summary_count(line);
        }
        return summarised == kRefusals;
      },
      5s))
      << summarised;
  EXPECT_EQ(log.lines({"refused a connection from 127.0.0.6"}).size(), 1u);
}

TEST(Transport, UnreachableNodeFailsFastAndFramesAreDropped) {
  Inbox ia;
  auto a = make("a", ia);
  std::string nowhere = "127.0.0.1:1";  // nothing listens on port 1
  ASSERT_TRUE(a->send("ghost", nowhere, "hello?"));
  ASSERT_TRUE(wait_for([&] { return ia.downs.load() == 1; }));
  auto again = a->send("ghost", nowhere, "still there?");
  EXPECT_EQ(again.error().code(), Errc::unavailable);  // inside the backoff: nothing sent
  EXPECT_GE(a->stats().dropped, 1u);
}

TEST(Transport, APeerThatStopsIsReportedDown) {
  Inbox ia, ib;
  auto a = make("a", ia);
  auto b = make("b", ib);
  ASSERT_TRUE(a->send("b", addr(*b), "x"));
  ASSERT_TRUE(wait_for([&] { return ib.count.load() == 1; }));
  b->stop();
  ASSERT_TRUE(wait_for([&] { return ia.downs.load() == 1; }));
  EXPECT_EQ(a->stats().connections, 0u);
}

TEST(Transport, AWrongSecretIsNamedOnBothSides) {
  CapturedLog log;
  Inbox ib, ic;
  auto b = make("b", ib);
  auto c = make("c", ic, "wrong");
  ASSERT_TRUE(c->send("b", addr(*b), "intruder"));
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 1 && ic.downs.load() >= 1; }));
  const std::string dialer_text = "handshake with b (" + addr(*b) +
                                  ") refused: cluster secret does not match (b proved another "
                                  "ClusterConf.Secret than this node's)";
  {
    std::lock_guard lock(ic.mu);
    ASSERT_EQ(ic.losses.size(), 1u);
    EXPECT_TRUE(ic.losses[0].refused);
    EXPECT_EQ(ic.losses[0].why, dialer_text);
  }
  // While the dialer backs off, a send fails at once with the same reason.
  auto again = c->send("b", addr(*b), "intruder");
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find(dialer_text), std::string::npos)
      << again.error().message();
  EXPECT_EQ(b->stats().rejected_wrong_secret, 1u);
  // The accepting node logs it as a wrong secret, not as a client that hung up.
  EXPECT_TRUE(wait_for([&] {
    return !log.lines({"transport b: refused a connection from 127.0.0.1: wrong secret (client c: "
                       "cluster secret does not match (c could not verify this node's proof: its "
                       "ClusterConf.Secret differs from this node's))"})
                .empty();
  }));
}

}  // namespace
