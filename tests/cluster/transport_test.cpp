// SPDX-License-Identifier: Apache-2.0
// Node-to-node TCP on loopback: delivery and order, the handshake, and hostile input.
#include "net/transport.hpp"

#include <gtest/gtest.h>

#include <asio.hpp>
#include <atomic>
#include <mutex>
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

  Transport::OnFrame on_frame() {
    return [this](const std::string& from, std::string_view payload) {
      std::lock_guard lock(mu);
      frames.emplace_back(from, std::string(payload));
      count.fetch_add(1);
    };
  }
  Transport::OnPeer on_peer() {
    return [this](const std::string&, bool up) { (up ? ups : downs).fetch_add(1); };
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
  EXPECT_EQ(ib.count.load(), 0);
}

// A raw TCP client that writes bytes to the transport's port.
void raw_write(std::uint16_t port, const std::string& bytes, bool wait_for_close = true) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
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
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 2; }));
  // An authenticated peer that sends a frame over b's 1 KiB limit loses its connection...
  ASSERT_TRUE(a->send("b", addr(*b), std::string(2048, 'x')));
  ASSERT_TRUE(wait_for([&] { return b->stats().rejected >= 3 && ia.downs.load() >= 1; }));
  // ...and can come back with valid frames once its backoff passes.
  ASSERT_TRUE(wait_for([&] { return a->send("b", addr(*b), "ok").ok(); }, 5s));
  ASSERT_TRUE(wait_for([&] { return ib.count.load() >= 1; }));
  EXPECT_EQ(ib.count.load(), 1);
  // A sender refuses a frame over its own limit instead of sending it.
  auto refused = b->send("a", addr(*a), std::string(2048, 'x'));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ember::Errc::invalid_argument);
}

TEST(Transport, UnreachableNodeFailsFastAndFramesAreDropped) {
  Inbox ia;
  auto a = make("a", ia);
  std::string nowhere = "127.0.0.1:1";  // nothing listens on port 1
  ASSERT_TRUE(a->send("ghost", nowhere, "hello?"));
  ASSERT_TRUE(wait_for([&] { return ia.downs.load() == 1; }));
  auto again = a->send("ghost", nowhere, "still there?");
  EXPECT_EQ(again.error().code(), Errc::node_unreachable);  // inside the backoff
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

}  // namespace
