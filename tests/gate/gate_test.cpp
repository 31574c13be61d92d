// SPDX-License-Identifier: Apache-2.0
// The client gateway on one node, through real WebSocket connections: login, routing with the
// UID as dispatch key, push, kick, session data, groups, close semantics and the limits.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/client.hpp>
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <future>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "ember/gate.pb.h"
#include "gate/gate_services.hpp"
#include "gate/session.hpp"
#include "support/raw_socket.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::testing::wait_for;
namespace pb = ember::test;
namespace gate = ember::gate;
namespace client = ember::client;

using Auth = ember::testing::TestAuth;
using Lobby = ember::testing::TestLobby;
using ember::testing::echo;

/// Counts the gateway's session events.
class Watcher : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = subscribe<gate::SessionEvent>(
            gate::kSessionOpened, [this](const gate::SessionEvent&) { opened.fetch_add(1); });
        !st) {
      return st.error();
    }
    if (auto st = subscribe<gate::SessionEvent>(gate::kSessionClosed,
                                                [this](const gate::SessionEvent& e) {
                                                  std::lock_guard lock(mu);
                                                  closed_reasons.push_back(e.reason());
                                                  closed.fetch_add(1);
                                                });
        !st) {
      return st.error();
    }
    return {};
  }
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::mutex mu;
  std::vector<std::string> closed_reasons;
};

ember::ServiceConfig named(std::string name) {
  ember::ServiceConfig c;
  c.name = std::move(name);
  return c;
}

struct GateNode {
  explicit GateNode(const std::string& extra = "") {
    auto cfg = ember::parse_node_config(
        "NodeConf: {NodeId: gate-test, WorkerThreads: 2}\n"
        "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
        "  Routes: [lobby.RpcEcho, lobby.RpcBlock, lobby.RpcJoin, lobby.RpcAfterClose, late.*,"
        " ghost.*]\n" +
            extra,
        "test");
    EXPECT_TRUE(cfg) << cfg.error().to_string();
    node = std::make_unique<ember::Node>(std::move(*cfg));
    auth = static_cast<Auth*>(*node->add_service(std::make_unique<Auth>(), named("auth")));
    lobby = static_cast<Lobby*>(*node->add_service(std::make_unique<Lobby>(), named("lobby")));
    watcher =
        static_cast<Watcher*>(*node->add_service(std::make_unique<Watcher>(), named("watcher")));
    auto started = node->start();
    EXPECT_TRUE(started) << started.error().to_string();
    url = "ws://" + gate::Gate::of(*node).websocket_address() + "/ws";
  }
  ~GateNode() {
    if (lobby != nullptr) {  // null once a test stopped the node itself: its services are gone
      lobby->release = true;
    }
    (void)node->stop();
  }
  Result<std::unique_ptr<client::Client>> connect(const std::string& token, std::string at = {}) {
    return client::Client::connect(
        {.url = at.empty() ? url : std::move(at), .token = token, .timeout = 5s});
  }
  gate::Gate& gate() { return gate::Gate::of(*node); }

  std::unique_ptr<ember::Node> node;
  Auth* auth = nullptr;
  Lobby* lobby = nullptr;
  Watcher* watcher = nullptr;
  std::string url;
};

TEST(Gateway, LoginRoutesARequestWithTheSessionInItsContext) {
  GateNode n;
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  EXPECT_EQ((*alice)->welcome().uid, "alice");
  EXPECT_FALSE((*alice)->welcome().session_id.empty());
  // The routes named exactly are in the dictionary.
  EXPECT_EQ((*alice)->welcome().routes.count("lobby.RpcEcho"), 1u);

  auto reply = (*alice)->call<pb::Echo>("lobby.RpcEcho", echo("hi"));
  ASSERT_TRUE(reply) << reply.error().to_string();
  EXPECT_EQ(reply->text(), "alice:hi");
  EXPECT_EQ(n.lobby->last_session, (*alice)->welcome().session_id);
  EXPECT_TRUE(wait_for([&] { return n.watcher->opened.load() == 1; }));
  EXPECT_EQ(n.gate().data((*alice)->welcome().session_id, "level").value_or(""), "7");
}

TEST(Gateway, RefusedLoginsAndUnknownRoutesAreAnsweredWithReasons) {
  GateNode n;
  auto bad = n.connect("bad");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "unknown player");
  auto nobody = n.connect("nobody");
  ASSERT_FALSE(nobody);
  EXPECT_NE(nobody.error().message().find("login"), std::string::npos) << nobody.error().message();
  EXPECT_EQ(n.gate().stats().logins_failed, 2u);

  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  // Not in GateConf.Routes: never reaches the service, whatever the service has.
  auto secret = (*alice)->call<pb::Echo>("lobby.RpcSecret", echo("x"));
  ASSERT_FALSE(secret);
  EXPECT_EQ(secret.error().code(), Errc::no_such_method);
  auto garbage = (*alice)->call<pb::Echo>("no-dot", echo("x"));
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), Errc::invalid_argument);
  // A payload that is not the method's request type.
  auto unparsable = (*alice)->call_bytes("lobby.RpcEcho", std::string("\xff\xff\xff", 3));
  ASSERT_FALSE(unparsable);
  EXPECT_EQ(unparsable.error().code(), Errc::invalid_argument);
  // The connection survives all of it.
  EXPECT_TRUE((*alice)->call<pb::Echo>("lobby.RpcEcho", echo("still here")));
}

TEST(Gateway, OnePlayersRequestsRunInOrder) {
  GateNode n("  RequestsPerSecond: 100000\n  RequestBurst: 100000\n  MaxInFlight: 1000\n");
  std::vector<std::unique_ptr<client::Client>> players;
  for (int i = 0; i < 4; ++i) {
    auto c = n.connect("p" + std::to_string(i));
    ASSERT_TRUE(c) << c.error().to_string();
    players.push_back(std::move(*c));
  }
  constexpr int kRequests = 200;
  std::atomic<int> answered{0};
  for (int seq = 0; seq < kRequests; ++seq) {
    for (auto& p : players) {
      p->async_call("lobby.RpcEcho", echo("x", seq).SerializeAsString(),
                    [&](Result<std::string> r) {
                      EXPECT_TRUE(r) << r.error().to_string();
                      answered.fetch_add(1);
                    });
    }
  }
  ASSERT_TRUE(wait_for([&] { return answered.load() == 4 * kRequests; }, 20s));
  std::lock_guard lock(n.lobby->mu);
  for (int i = 0; i < 4; ++i) {
    const auto& seen = n.lobby->order["p" + std::to_string(i)];
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(kRequests));
    for (int seq = 0; seq < kRequests; ++seq) {
      ASSERT_EQ(seen[static_cast<std::size_t>(seq)], seq) << "player " << i;
    }
  }
}

TEST(Gateway, PushKickAndSessionData) {
  GateNode n;
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  const std::string id = (*alice)->welcome().session_id;
  EXPECT_EQ(n.gate().session_of_uid("alice").value_or(""), id);

  ASSERT_TRUE(n.gate().push(id, "room.OnMoved", echo("moved")));
  auto pushed = (*alice)->next_push(5s);
  ASSERT_TRUE(pushed);
  EXPECT_EQ(pushed->route, "room.OnMoved");
  pb::Echo body;
  ASSERT_TRUE(body.ParseFromString(pushed->payload));
  EXPECT_EQ(body.text(), "moved");
  ASSERT_TRUE(n.gate().push_to_uid("alice", "room.OnMoved", echo("again")));
  ASSERT_TRUE((*alice)->next_push(5s));

  ASSERT_TRUE(n.gate().set_data(id, "room", "7"));
  EXPECT_EQ(n.gate().data(id, "room").value_or(""), "7");
  EXPECT_EQ(n.gate().data(id, "nope").error().code(), Errc::not_found);
  EXPECT_EQ(n.gate().push("no-such-session", "x.Y", echo("")).error().code(), Errc::not_found);

  ASSERT_TRUE(n.gate().kick_uid("alice", "maintenance"));
  ASSERT_TRUE((*alice)->wait_closed(5s));
  ASSERT_TRUE((*alice)->kicked());
  EXPECT_EQ((*alice)->kicked()->reason, "maintenance");
  EXPECT_EQ((*alice)->kicked()->code, static_cast<std::uint32_t>(gate::KickCode::by_server));
  EXPECT_TRUE(wait_for([&] { return n.watcher->closed.load() == 1; }));
  EXPECT_EQ(n.gate().data(id, "room").error().code(), Errc::not_found);  // gone with it
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; }));
}

TEST(Gateway, ASecondLoginOfTheSameUidReplacesTheFirst) {
  GateNode n;
  auto first = n.connect("alice");
  ASSERT_TRUE(first) << first.error().to_string();
  auto second = n.connect("alice");
  ASSERT_TRUE(second) << second.error().to_string();
  ASSERT_TRUE((*first)->wait_closed(5s));
  ASSERT_TRUE((*first)->kicked());
  EXPECT_EQ((*first)->kicked()->code, static_cast<std::uint32_t>(gate::KickCode::replaced));
  EXPECT_EQ(n.gate().session_of_uid("alice").value_or(""), (*second)->welcome().session_id);
  EXPECT_TRUE((*second)->call<pb::Echo>("lobby.RpcEcho", echo("x")));
}

TEST(Gateway, NoHandlerRunsForASessionAfterItClosed) {
  GateNode n;
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  // The lobby's lane for alice is busy; queue more of alice's requests behind it, then close.
  (*alice)->async_call("lobby.RpcBlock", echo("hold").SerializeAsString(), [](auto) {});
  ASSERT_TRUE(wait_for([&] { return n.lobby->blocked.load() == 1; }));
  constexpr int kQueued = 20;
  for (int i = 0; i < kQueued; ++i) {
    (*alice)->async_call("lobby.RpcAfterClose", echo("late").SerializeAsString(), [](auto) {});
  }
  // Every request reached the gateway (and the mailbox) before the close.
  ASSERT_TRUE(wait_for([&] { return n.gate().stats().requests == kQueued + 1; }));
  (*alice)->close();
  ASSERT_TRUE(wait_for([&] { return n.watcher->closed.load() == 1; }));
  n.lobby->release = true;
  // The queued requests are dropped when their turn comes, not run: a call on alice's lane
  // runs after all of them.
  auto behind =
      ember::select(*n.node, ember::Selector::name("lobby"))
          .call<pb::Echo>("RpcEcho", echo("behind"),
                          {.key = ember::DispatchKey(std::string_view("alice")), .timeout = 5s});
  ASSERT_TRUE(behind) << behind.error().to_string();
  EXPECT_EQ(n.lobby->ran_after_close.load(), 0);
  // Nothing of the session is left: not its connection, not its object (the dropped requests
  // held it), not its registration.
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; }));
  EXPECT_TRUE(wait_for([&] { return ember::gate::Session::live() == 0; }))
      << ember::gate::Session::live() << " session objects left";
  EXPECT_EQ(n.gate().stats().sessions, 0u);
  EXPECT_EQ(n.gate().session_of_uid("alice").error().code(), Errc::not_found);
}

TEST(Gateway, GroupsBroadcastToMembersAndForgetClosedSessions) {
  GateNode n;
  std::vector<std::unique_ptr<client::Client>> players;
  for (int i = 0; i < 3; ++i) {
    auto c = n.connect("p" + std::to_string(i));
    ASSERT_TRUE(c) << c.error().to_string();
    ASSERT_TRUE((*c)->call<pb::Echo>("lobby.RpcJoin", echo("room-1")));
    players.push_back(std::move(*c));
  }
  auto outsider = n.connect("outsider");
  ASSERT_TRUE(outsider);
  ASSERT_EQ(n.gate().members("room-1")->size(), 3u);
  ASSERT_TRUE(n.gate().broadcast("room-1", "room.OnChat", echo("hello all")));
  for (auto& p : players) {
    auto got = p->next_push(5s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->route, "room.OnChat");
  }
  EXPECT_FALSE((*outsider)->next_push(200ms));

  players[0]->close();
  ASSERT_TRUE(wait_for([&] { return n.gate().members("room-1")->size() == 2; }));
  ASSERT_TRUE(n.gate().leave("room-1", players[1]->welcome().session_id));
  EXPECT_EQ(n.gate().members("room-1")->size(), 1u);
  ASSERT_TRUE(n.gate().remove_group("room-1"));
  EXPECT_EQ(n.gate().members("room-1").error().code(), Errc::not_found);
  EXPECT_EQ(n.gate().broadcast("room-1", "x.Y", echo("")).error().code(), Errc::not_found);
}

TEST(Gateway, SilentAndGarbageConnectionsAreClosed) {
  GateNode n("  HandshakeTimeout: 300ms\n");
  // A TCP connection that never speaks HTTP (slowloris) is closed at the handshake deadline.
  const int silent = ember::testing::connect_to(n.gate().websocket_address());
  ASSERT_GE(silent, 0);
  char byte = 0;
  const auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(::recv(silent, &byte, 1, 0), 0);  // EOF, within the 5 s receive timeout
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);
  ::close(silent);
  // Garbage instead of HTTP.
  const int garbage = ember::testing::connect_to(n.gate().websocket_address());
  ASSERT_GE(garbage, 0);
  const std::string junk(4096, '\x01');
  (void)::send(garbage, junk.data(), junk.size(), MSG_NOSIGNAL);
  char buf[512];
  while (::recv(garbage, buf, sizeof buf, 0) > 0) {
  }
  ::close(garbage);
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; }));
  // The gateway still serves.
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
}

TEST(Gateway, MessagesOfEverySizeArriveWhole) {
  // The gateway reads a message's first byte into an empty buffer and sizes the rest from its
  // frame header (an idle session holds no buffer); messages around Beast's 1,536-byte read
  // size and large ones, which the C++ client sends as several 4 KB fragments, arrive whole.
  GateNode n("  MaxFrameBytes: 1048576\n");
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  for (const std::size_t size : {0, 1, 1400, 1535, 1536, 1537, 5000, 300000}) {
    const std::string text(size, static_cast<char>('a' + size % 26));
    auto reply = (*alice)->call<pb::Echo>("lobby.RpcEcho", echo(text));
    ASSERT_TRUE(reply) << size << ": " << reply.error().to_string();
    EXPECT_EQ(reply->text(), "alice:" + text) << size;
  }
}

TEST(Gateway, OversizedFramesAndFloodsAreRefused) {
  GateNode n("  MaxFrameBytes: 1024\n  RequestsPerSecond: 5\n  RequestBurst: 5\n");
  auto big = n.connect("big");
  ASSERT_TRUE(big);
  auto huge = (*big)->call_bytes("lobby.RpcEcho", std::string(4096, 'x'));
  ASSERT_FALSE(huge);
  EXPECT_TRUE((*big)->wait_closed(5s));

  auto fast = n.connect("fast");
  ASSERT_TRUE(fast);
  int ok = 0;
  int limited = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = (*fast)->call<pb::Echo>("lobby.RpcEcho", echo("x"));
    if (r) {
      ++ok;
    } else if (r.error().code() == Errc::overloaded) {
      ++limited;
    }
  }
  EXPECT_LE(ok, 6);  // the burst, and what refilled meanwhile
  EXPECT_GE(limited, 2);
  EXPECT_TRUE((*fast)->connected());
}

TEST(Gateway, MaxConnectionsClosesTheRestAtAccept) {
  GateNode n("  MaxConnections: 2\n");
  auto a = n.connect("a");
  auto b = n.connect("b");
  ASSERT_TRUE(a) << a.error().to_string();
  ASSERT_TRUE(b) << b.error().to_string();
  auto c = n.connect("c");
  ASSERT_FALSE(c);
  EXPECT_GE(n.gate().stats().refused, 1u);
  (*a)->close();
  ASSERT_TRUE(wait_for([&] { return n.gate().stats().connections == 1; }));
  auto d = n.connect("d");
  EXPECT_TRUE(d) << d.error().to_string();
}

TEST(Gateway, StoppingTheNodeDrainsThenKicksEveryClientWithAReason) {
  auto n = std::make_unique<GateNode>("  DrainTimeout: 300ms\n");
  auto alice = n->connect("alice");
  ASSERT_TRUE(alice);
  // Requests in flight when the stop begins are answered, not dropped: one blocks alice's lane,
  // one waits behind it.
  auto* lobby = n->lobby;
  (*alice)->async_call("lobby.RpcBlock", echo("hold").SerializeAsString(), [](auto) {});
  ASSERT_TRUE(wait_for([&] { return lobby->blocked.load() == 1; }));
  std::promise<ember::Result<std::string>> answered;
  (*alice)->async_call("lobby.RpcEcho", echo("queued").SerializeAsString(),
                       [&](ember::Result<std::string> r) { answered.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for([&] { return n->gate().stats().requests == 2; }));
  ember::Node* node = n->node.get();  // not n.reset(): ~GateNode releases the lobby first
  std::thread stopping([node] { (void)node->stop(); });
  // Told to move (no other gateway: no URL); after DrainTimeout the gateway waits for the answers.
  ASSERT_TRUE(wait_for([&] { return (*alice)->moving().has_value(); }, 5s));
  EXPECT_TRUE((*alice)->moving()->urls.empty());
  EXPECT_EQ((*alice)->moving()->within, 300ms);
  EXPECT_TRUE((*alice)->connected());
  lobby->release = true;
  auto reply = answered.get_future().get();
  EXPECT_TRUE(reply) << reply.error().to_string();
  ASSERT_TRUE((*alice)->wait_closed(5s));
  ASSERT_TRUE((*alice)->kicked());
  EXPECT_EQ((*alice)->kicked()->code, static_cast<std::uint32_t>(gate::KickCode::shutting_down));
  stopping.join();
  n->lobby = nullptr;
}

TEST(Gateway, AfterTheDrainWindowNewRequestsAreRefusedAndAcceptedOnesAnswered) {
  // Room for the requests sent while polling (a few hundred at most).
  auto n = std::make_unique<GateNode>(
      "  DrainTimeout: 100ms\n  MaxInFlight: 10000\n  RequestsPerSecond: 1000000\n"
      "  RequestBurst: 1000000\n");
  auto alice = n->connect("alice");
  ASSERT_TRUE(alice);
  auto* lobby = n->lobby;
  (*alice)->async_call("lobby.RpcBlock", echo("hold").SerializeAsString(), [](auto) {});
  ASSERT_TRUE(wait_for([&] { return lobby->blocked.load() == 1; }));
  ember::Node* node = n->node.get();  // not n.reset(): ~GateNode releases the lobby first
  std::thread stopping([node] { (void)node->stop(); });
  // alice does not move. Her requests queue behind the blocked one until the drain window has
  // passed; from then on the gateway refuses them (not run: `stopping`) while it waits for the
  // ones it accepted.
  // Requests are numbered as sent: the gateway takes them in that order, so every one sent
  // before the first it refused was accepted. One sent after may reach it after its kick, and
  // was never accepted.
  std::mutex mu;
  std::vector<ember::Result<std::string>> accepted;
  std::atomic<int> sent{0};
  std::atomic<bool> refused{false};
  std::atomic<int> first_refused{1 << 30};
  ASSERT_TRUE(wait_for(
      [&] {
        const int index = sent.fetch_add(1);
        (*alice)->async_call(
            "lobby.RpcEcho", echo("again").SerializeAsString(),
            [&, index](ember::Result<std::string> r) {
              if (!r && r.error().code() == Errc::stopping) {
                int seen = first_refused.load();
                while (index < seen && !first_refused.compare_exchange_weak(seen, index)) {
                }
                refused = true;
                return;
              }
              std::lock_guard lock(mu);
              if (r || index < first_refused.load()) {
                accepted.push_back(std::move(r));
              }
            });
        return refused.load();
      },
      5s))
      << sent.load() << " sent, " << [&] {
           std::lock_guard lock(mu);
           std::string out = std::to_string(accepted.size()) + " answered:";
           for (const auto& r : accepted) {
             out += " " + (r ? std::string("ok") : r.error().to_string());
           }
           return out.substr(0, 400);
         }();
  lobby->release = true;
  stopping.join();
  n->lobby = nullptr;
  ASSERT_TRUE((*alice)->wait_closed(5s));
  std::lock_guard lock(mu);
  for (const auto& r : accepted) {
    EXPECT_TRUE(r) << r.error().to_string();  // answered before the kick, none dropped
  }
  EXPECT_GE(sent.load(), 1);
}

TEST(Gateway, TcpClientsSpeakTheSameProtocol) {
  GateNode n("  TcpAddr: 127.0.0.1:0\n");
  auto alice = n.connect("alice", "tcp://" + n.gate().tcp_address());
  ASSERT_TRUE(alice) << alice.error().to_string();
  auto reply = (*alice)->call<pb::Echo>("lobby.RpcEcho", echo("over tcp"));
  ASSERT_TRUE(reply) << reply.error().to_string();
  EXPECT_EQ(reply->text(), "alice:over tcp");
  ASSERT_TRUE(n.gate().push_to_uid("alice", "room.OnMoved", echo("pushed")));
  ASSERT_TRUE((*alice)->next_push(5s));
  // WebSocket and TCP sessions are one population: the same UID on the other replaces it.
  auto again = n.connect("alice");
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_TRUE((*alice)->wait_closed(5s));
}

TEST(Gateway, HostileTcpFramesCostNothingLasting) {
  GateNode n("  TcpAddr: 127.0.0.1:0\n  HandshakeTimeout: 500ms\n");
  // A 2 GiB length is refused from the header alone.
  const int huge = ember::testing::connect_to(n.gate().tcp_address());
  ASSERT_GE(huge, 0);
  const unsigned char header[4] = {0x7f, 0xff, 0xff, 0xff};
  ASSERT_EQ(::send(huge, header, 4, MSG_NOSIGNAL), 4);
  char buf[512];
  while (::recv(huge, buf, sizeof buf, 0) > 0) {
  }
  ::close(huge);
  // A frame that never completes: closed at the handshake deadline.
  const int truncated = ember::testing::connect_to(n.gate().tcp_address());
  ASSERT_GE(truncated, 0);
  const unsigned char partial[6] = {0, 0, 0, 100, 1, 2};
  ASSERT_EQ(::send(truncated, partial, 6, MSG_NOSIGNAL), 6);
  const auto before = std::chrono::steady_clock::now();
  while (::recv(truncated, buf, sizeof buf, 0) > 0) {
  }
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);
  ::close(truncated);
  // Garbage that frames fine but does not parse.
  const int junk = ember::testing::connect_to(n.gate().tcp_address());
  ASSERT_GE(junk, 0);
  const unsigned char nonsense[8] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
  ASSERT_EQ(::send(junk, nonsense, 8, MSG_NOSIGNAL), 8);
  while (::recv(junk, buf, sizeof buf, 0) > 0) {
  }
  ::close(junk);
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; }));
  EXPECT_GE(n.gate().stats().kicks, 2u);
  auto alice = n.connect("alice", "tcp://" + n.gate().tcp_address());
  ASSERT_TRUE(alice) << alice.error().to_string();
}

TEST(Gateway, TlsOnBothListeners) {
  ember::testing::ScratchDir dir("ember-gate-tls");
  const std::string cert = (dir.path() / "cert.pem").string();
  const std::string key = (dir.path() / "key.pem").string();
  const std::string command =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout " + key +
      " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  GateNode n("  TcpAddr: 127.0.0.1:0\n  HandshakeTimeout: 1s\n  TlsConf: {CertFile: " + cert +
             ", KeyFile: " + key + "}\n");
  auto secure_ws = client::Client::connect({.url = "wss://" + n.gate().websocket_address() + "/ws",
                                            .ca_file = cert,
                                            .token = "alice",
                                            .timeout = 5s});
  ASSERT_TRUE(secure_ws) << secure_ws.error().to_string();
  EXPECT_EQ((*secure_ws)->call<pb::Echo>("lobby.RpcEcho", echo("x"))->text(), "alice:x");
  auto secure_tcp = client::Client::connect(
      {.url = "tls://" + n.gate().tcp_address(), .ca_file = cert, .token = "bob", .timeout = 5s});
  ASSERT_TRUE(secure_tcp) << secure_tcp.error().to_string();
  EXPECT_EQ((*secure_tcp)->call<pb::Echo>("lobby.RpcEcho", echo("y"))->text(), "bob:y");
  // Plain text to a TLS port fails, and costs the gateway nothing.
  auto plain = client::Client::connect(
      {.url = "ws://" + n.gate().websocket_address() + "/ws", .token = "eve", .timeout = 2s});
  EXPECT_FALSE(plain);
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 2; }));
}

TEST(Gateway, ANodeRefusesAnUnusableCertificate) {
  ember::testing::ScratchDir dir("ember-gate-badtls");
  const std::string cert = (dir.path() / "cert.pem").string();
  {
    std::FILE* f = std::fopen(cert.c_str(), "w");
    std::fputs("not a certificate\n", f);
    std::fclose(f);
  }
  auto cfg = ember::parse_node_config(
      "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n  Routes: [lobby.*]\n"
      "  TlsConf: {CertFile: " +
          cert + ", KeyFile: " + cert + "}\n",
      "test");
  ASSERT_TRUE(cfg) << cfg.error().to_string();
  ember::Node node(std::move(*cfg));
  auto started = node.start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message().find("GateConf.TlsConf.CertFile"), std::string::npos)
      << started.error().message();
}

TEST(Gateway, BrowsersFromOtherOriginsAreRefused) {
  GateNode n("  AllowedOrigins: [\"https://game.example.com\"]\n");
  auto stranger = client::Client::connect(
      {.url = n.url, .token = "eve", .timeout = 5s, .origin = "https://evil.example.com"});
  ASSERT_FALSE(stranger);
  // A program that is not a browser sends no Origin: the check is not about it.
  auto native = client::Client::connect({.url = n.url, .token = "bob", .timeout = 5s});
  ASSERT_TRUE(native) << native.error().to_string();
  auto player = client::Client::connect(
      {.url = n.url, .token = "alice", .timeout = 5s, .origin = "https://game.example.com"});
  ASSERT_TRUE(player) << player.error().to_string();
}

TEST(Gateway, SilentSessionsAndUnansweredRequestsTimeOut) {
  GateNode n("  Heartbeat: 200ms\n  IdleTimeout: 1s\n  RequestTimeout: 300ms\n");
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  // The handler holds on; the gateway answers timeout by itself.
  auto held = (*alice)->call<pb::Echo>("lobby.RpcBlock", echo("hold"));
  ASSERT_FALSE(held);
  EXPECT_EQ(held.error().code(), Errc::timeout) << held.error().to_string();
  n.lobby->release = true;
  // Heartbeats keep a session past IdleTimeout; silence ends it.
  const auto kept_until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < kept_until) {
    ASSERT_TRUE((*alice)->heartbeat());
    std::this_thread::sleep_for(200ms);  // the client's own pace, not a wait for the gateway
  }
  ASSERT_TRUE((*alice)->connected());
  ASSERT_TRUE((*alice)->wait_closed(5s));
  ASSERT_TRUE((*alice)->kicked());
  EXPECT_EQ((*alice)->kicked()->code, static_cast<std::uint32_t>(gate::KickCode::timed_out));
}

TEST(Gateway, RequestsBeyondMaxInFlightAreAnsweredOverloaded) {
  GateNode n("  MaxInFlight: 2\n");
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  std::atomic<int> overloaded{0};
  std::atomic<int> answered{0};
  for (int i = 0; i < 5; ++i) {
    (*alice)->async_call("lobby.RpcBlock", echo("hold").SerializeAsString(),
                         [&](Result<std::string> r) {
                           if (!r && r.error().code() == Errc::overloaded) {
                             overloaded.fetch_add(1);
                           }
                           answered.fetch_add(1);
                         });
  }
  ASSERT_TRUE(wait_for([&] { return overloaded.load() == 3; }));
  n.lobby->release = true;
  ASSERT_TRUE(wait_for([&] { return answered.load() == 5; }));
  EXPECT_TRUE((*alice)->connected());
}

TEST(Gateway, AClientThatDoesNotReadIsDisconnected) {
  GateNode n("  TcpAddr: 127.0.0.1:0\n  SendQueueBytes: 65536\n");
  // A raw TCP client: logs in, then never reads.
  const int fd = ember::testing::connect_to(n.gate().tcp_address());
  ASSERT_GE(fd, 0);
  gate::ClientFrame hello;
  hello.mutable_hello()->set_version(1);
  hello.mutable_hello()->set_token("sloth");
  const std::string body = hello.SerializeAsString();
  std::string frame(4, '\0');
  frame[3] = static_cast<char>(body.size());
  frame += body;
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
  ASSERT_TRUE(wait_for([&] { return n.gate().session_of_uid("sloth").has_value(); }));
  const std::string id = *n.gate().session_of_uid("sloth");
  // Pushes pile up: the socket buffers fill, then the send queue, then the gateway gives up.
  const pb::Echo big = echo(std::string(60'000, 'x'));
  for (int i = 0; i < 2000 && n.gate().session_of_uid("sloth").has_value(); ++i) {
    (void)n.gate().push(id, "room.OnFlood", big);
    if (i % 50 == 49) {
      std::this_thread::sleep_for(5ms);  // let the I/O thread write what the socket takes
    }
  }
  EXPECT_TRUE(wait_for([&] { return !n.gate().session_of_uid("sloth").has_value(); }));
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; }));
  ::close(fd);
}

TEST(Gateway, AFloodOfConnectionsLeavesNothingBehind) {
  GateNode n("  HandshakeTimeout: 2s\n");
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) {
    const int fd = ember::testing::connect_to(n.gate().websocket_address());
    if (fd >= 0) {
      fds.push_back(fd);
    }
  }
  EXPECT_GE(fds.size(), 250u);
  for (int fd : fds) {
    ::close(fd);
  }
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; }));
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  EXPECT_TRUE((*alice)->call<pb::Echo>("lobby.RpcEcho", echo("still serving")));
}

// --- resume ------------------------------------------------------------------------------------

Result<std::unique_ptr<client::Client>> resumable(GateNode& n, const std::string& token,
                                                  std::string at = {}) {
  return client::Client::connect(
      {.url = at.empty() ? n.url : std::move(at), .token = token, .timeout = 5s, .resume = true});
}

constexpr const char* kResumeConfig =
    "  ResumeWindow: 5s\n  RequestsPerSecond: 1000000\n  RequestBurst: 1000000\n"
    "  MaxInFlight: 1000\n  TcpAddr: 127.0.0.1:0\n";

TEST(Gateway, AResumedSessionMissesNoPushAndRunsEveryCommandOnce) {
  GateNode n(kResumeConfig);
  std::vector<std::unique_ptr<client::Client>> players;  // connected until the end
  for (const bool tcp : {false, true}) {
    const std::string uid = tcp ? "bob" : "alice";
    auto outcomes = std::make_shared<ember::testing::Outcomes>();
    auto c = resumable(n, uid, tcp ? "tcp://" + n.gate().tcp_address() : std::string{});
    ASSERT_TRUE(c) << c.error().to_string();
    client::Client& player = **c;
    const std::string id = player.welcome().session_id;
    EXPECT_GT(player.welcome().resume_window.count(), 0);
    constexpr int kRounds = 5;
    constexpr int kPerRound = 60;
    std::int64_t next = 0;
    int pushed = 0;
    for (int round = 0; round < kRounds; ++round) {
      // Commands and pushes are under way when the connection drops, and go on while it resumes.
      for (int i = 0; i < kPerRound; ++i, ++next) {
        if (i == kPerRound / 2) {
          player.drop();
        }
        player.async_call("lobby.RpcEcho", echo("c", next).SerializeAsString(),
                          ember::testing::Outcomes::of(outcomes, next));
        if (i % 3 == 0) {
          auto st = n.gate().push_to_uid(uid, "room.OnMoved", echo("p", pushed++));
          ASSERT_TRUE(st) << st.error().to_string();
        }
      }
      ASSERT_TRUE(wait_for([&] { return outcomes->answered.load() == next; }, 10s))
          << uid << " round " << round << ": " << outcomes->answered.load() << " of " << next;
    }
    EXPECT_EQ(outcomes->first_error(), "");
    EXPECT_EQ(player.resumes(), static_cast<std::uint64_t>(kRounds));
    EXPECT_EQ(player.welcome().session_id, id);  // the same session throughout
    {
      // The backend ran each command once, in order.
      std::lock_guard lock(n.lobby->mu);
      std::vector<std::int64_t> expected(static_cast<std::size_t>(next));
      std::iota(expected.begin(), expected.end(), 0);
      EXPECT_EQ(n.lobby->order[uid], expected);
    }
    EXPECT_EQ(ember::testing::take_numbered_pushes(player, pushed), "") << uid;
    players.push_back(std::move(*c));
  }
  // Two sessions for the backends, however often their connections dropped; none closed.
  EXPECT_TRUE(wait_for([&] { return n.watcher->opened.load() == 2; }));
  EXPECT_EQ(n.watcher->closed.load(), 0);
  EXPECT_EQ(n.gate().stats().resumed, 10u);
  EXPECT_EQ(n.gate().stats().sessions, 2u);
}

TEST(Gateway, ARequestRunningWhileItsClientIsAwayIsAnsweredAfterTheResume) {
  GateNode n(kResumeConfig);
  auto c = resumable(n, "alice");
  ASSERT_TRUE(c) << c.error().to_string();
  std::promise<Result<std::string>> blocked;
  (*c)->async_call("lobby.RpcBlock", echo("slow").SerializeAsString(),
                   [&](Result<std::string> r) { blocked.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for([&] { return n.lobby->blocked.load() == 1; }));
  (*c)->drop();
  // It resumes at once, but the handover waits for the blocked request's answer.
  ASSERT_TRUE(wait_for([&] { return n.gate().stats().detached == 1; }) ||
              n.gate().stats().resumed == 1);
  n.lobby->release = true;
  auto future = blocked.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  auto r = future.get();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(n.lobby->blocked.load(), 1);  // ran once, answered on the new connection
  EXPECT_TRUE(wait_for([&] { return n.gate().stats().resumed == 1; }));
  EXPECT_TRUE((*c)->call<pb::Echo>("lobby.RpcEcho", echo("after")));
}

/// Frames a ClientFrame for the gateway's TCP listener.
std::string tcp_frame(const gate::ClientFrame& frame) {
  const std::string body = frame.SerializeAsString();
  const auto size = static_cast<std::uint32_t>(body.size());
  std::string out{static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                  static_cast<char>(size >> 8), static_cast<char>(size)};
  return out + body;
}

/// A resumable client that logs in over raw TCP and vanishes once welcomed, as one whose network
/// failed for good: its session's id.
std::string login_and_vanish(const std::string& address, const std::string& token) {
  const int fd = ember::testing::connect_to(address);
  EXPECT_GE(fd, 0);
  gate::ClientFrame frame;
  frame.mutable_hello()->set_version(1);
  frame.mutable_hello()->set_token(token);
  frame.mutable_hello()->set_resumable(true);
  const std::string out = tcp_frame(frame);
  EXPECT_EQ(::send(fd, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  std::string in;
  char buf[4096];
  gate::ServerFrame welcome;
  for (ssize_t got; (got = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    in.append(buf, static_cast<std::size_t>(got));
    if (in.size() >= 4) {
      const std::size_t len = (std::size_t{static_cast<unsigned char>(in[0])} << 24) |
                              (std::size_t{static_cast<unsigned char>(in[1])} << 16) |
                              (std::size_t{static_cast<unsigned char>(in[2])} << 8) |
                              std::size_t{static_cast<unsigned char>(in[3])};
      if (in.size() >= 4 + len) {
        EXPECT_TRUE(welcome.ParseFromArray(in.data() + 4, static_cast<int>(len)));
        break;
      }
    }
  }
  ::close(fd);
  EXPECT_TRUE(welcome.has_welcome()) << welcome.DebugString();
  EXPECT_FALSE(welcome.welcome().resume_token().empty());
  return welcome.welcome().session_id();
}

TEST(Gateway, ASessionNotResumedWithinItsWindowClosesOnce) {
  GateNode n("  ResumeWindow: 300ms\n  TcpAddr: 127.0.0.1:0\n");
  const std::string id = login_and_vanish(n.gate().tcp_address(), "alice");
  ASSERT_TRUE(wait_for([&] { return n.watcher->closed.load() == 1; }, 5s));
  {
    std::lock_guard lock(n.watcher->mu);
    EXPECT_NE(n.watcher->closed_reasons[0].find("did not resume"), std::string::npos)
        << n.watcher->closed_reasons[0];
  }
  EXPECT_EQ(n.gate().stats().detached, 0u);
  EXPECT_EQ(n.gate().stats().sessions, 0u);
  EXPECT_EQ(n.gate().push(id, "x.Y", echo("")).error().code(), Errc::not_found);
  EXPECT_TRUE(wait_for([&] { return ember::gate::Session::live() == 0; }));
  EXPECT_EQ(n.watcher->closed.load(), 1);
}

TEST(Gateway, AClientThatSaysByeEndsItsSessionAtOnce) {
  GateNode n(kResumeConfig);
  auto c = resumable(n, "alice");
  ASSERT_TRUE(c) << c.error().to_string();
  const auto before = std::chrono::steady_clock::now();
  (*c)->close();
  ASSERT_TRUE(wait_for([&] { return n.watcher->closed.load() == 1; }, 3s));
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);  // not the 5 s window
  EXPECT_EQ(n.gate().stats().detached, 0u);
}

/// Sends one ClientFrame on a raw TCP connection and reads frames until the gateway closes it;
/// the last one.
gate::ServerFrame exchange_raw(const std::string& address, const gate::ClientFrame& frame) {
  const int fd = ember::testing::connect_to(address);
  EXPECT_GE(fd, 0);
  const std::string out = tcp_frame(frame);
  EXPECT_EQ(::send(fd, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));
  std::string in;
  char buf[4096];
  for (ssize_t got; (got = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    in.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fd);
  gate::ServerFrame last;
  for (std::size_t at = 0; at + 4 <= in.size();) {
    const std::size_t len = (std::size_t{static_cast<unsigned char>(in[at])} << 24) |
                            (std::size_t{static_cast<unsigned char>(in[at + 1])} << 16) |
                            (std::size_t{static_cast<unsigned char>(in[at + 2])} << 8) |
                            std::size_t{static_cast<unsigned char>(in[at + 3])};
    EXPECT_TRUE(last.ParseFromArray(in.data() + at + 4, static_cast<int>(len)));
    at += 4 + len;
  }
  return last;
}

TEST(Gateway, AResumeWithAWrongTokenIsRefusedAndTheSessionKeepsItsClient) {
  GateNode n(kResumeConfig);
  auto c = resumable(n, "alice");
  ASSERT_TRUE(c) << c.error().to_string();
  const std::string id = (*c)->welcome().session_id;
  const auto kick_code = [](const gate::ServerFrame& f) {
    return f.has_kick() ? f.kick().code() : 0u;
  };
  gate::ClientFrame frame;
  gate::Hello& hello = *frame.mutable_hello();
  hello.set_version(1);
  hello.set_resumable(true);
  hello.set_resume_session(id);
  gate::ResumeTicket forged;
  forged.set_gate_node("gate-test");
  forged.set_secret(std::string(16, 'x'));
  hello.set_resume_token(forged.SerializeAsString());
  const auto refused = static_cast<std::uint32_t>(gate::KickCode::resume_failed);
  auto wrong = exchange_raw(n.gate().tcp_address(), frame);
  EXPECT_EQ(kick_code(wrong), refused) << wrong.DebugString();
  EXPECT_NE(wrong.kick().reason().find("wrong resume token"), std::string::npos);
  // Garbage for a token, an unknown session, and a resume from a client that is not resumable.
  hello.set_resume_token("garbage");
  EXPECT_EQ(kick_code(exchange_raw(n.gate().tcp_address(), frame)), refused);
  hello.set_resume_token(forged.SerializeAsString());
  hello.set_resume_session("gate-test.nope.1");
  EXPECT_EQ(kick_code(exchange_raw(n.gate().tcp_address(), frame)), refused);
  hello.set_resumable(false);
  EXPECT_EQ(kick_code(exchange_raw(n.gate().tcp_address(), frame)), refused);
  // The session was not disturbed.
  EXPECT_TRUE((*c)->call<pb::Echo>("lobby.RpcEcho", echo("still here")));
  EXPECT_EQ(n.gate().stats().resumed, 0u);
  EXPECT_EQ(n.watcher->closed.load(), 0);
}

TEST(Gateway, ANewLoginOfADetachedSessionsUidClosesIt) {
  GateNode n("  ResumeWindow: 30s\n  TcpAddr: 127.0.0.1:0\n");
  (void)login_and_vanish(n.gate().tcp_address(), "alice");
  ASSERT_TRUE(wait_for([&] { return n.gate().stats().detached == 1; }));
  auto again = n.connect("alice");  // a fresh login, not a resume
  ASSERT_TRUE(again) << again.error().to_string();
  ASSERT_TRUE(wait_for([&] { return n.watcher->closed.load() == 1; }, 3s));
  EXPECT_EQ(n.gate().stats().detached, 0u);
  EXPECT_EQ(n.gate().session_of_uid("alice").value_or(""), (*again)->welcome().session_id);
}

TEST(Gateway, AClientWhoseResumeIsRefusedClosesWithTheReasonAndFailsWhatWasPending) {
  GateNode n(kResumeConfig);
  GateNode elsewhere(kResumeConfig);  // not in a cluster with n: it has never heard of the session
  auto c = resumable(n, "alice");
  ASSERT_TRUE(c) << c.error().to_string();
  n.lobby->release = false;
  std::promise<Result<std::string>> pending;
  (*c)->async_call("lobby.RpcBlock", echo("x").SerializeAsString(),
                   [&](Result<std::string> r) { pending.set_value(std::move(r)); });
  ASSERT_TRUE(wait_for([&] { return n.lobby->blocked.load() == 1; }));
  const auto began = std::chrono::steady_clock::now();
  auto resumed = (*c)->resume(elsewhere.url);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 3s);
  ASSERT_FALSE(resumed);
  EXPECT_NE(resumed.error().message().find("cannot resume"), std::string::npos)
      << resumed.error().to_string();
  EXPECT_FALSE((*c)->connected());
  auto future = pending.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(future.get());  // failed with the client, not left waiting
  n.lobby->release = true;
}

TEST(Gateway, ARequestNoInstanceCanTakeIsSentAgainUntilOneDoesAndRunsOnce) {
  // Resumable, with a small ledger: it must neither replay the `unavailable` answer nor call its
  // outcome unknown once later answers pushed it past what the ledger holds.
  GateNode n(std::string(kResumeConfig) + "  ResumeBufferBytes: 1024\n");
  auto c = resumable(n, "alice");
  ASSERT_TRUE(c) << c.error().to_string();
  std::promise<Result<std::string>> answer;
  (*c)->async_call("late.RpcEcho", echo("first", 1).SerializeAsString(),
                   [&](Result<std::string> r) { answer.set_value(std::move(r)); });
  // No service "late" yet (a group between masters looks the same): answered `unavailable`,
  // and the client sends it again, with its seq, until an instance takes it.
  ASSERT_TRUE(wait_for([&] { return (*c)->retries() >= 2; }, 5s)) << (*c)->retries();
  for (int i = 0; i < 100; ++i) {  // answers the client cannot acknowledge past the first seq
    ASSERT_TRUE((*c)->call<pb::Echo>("lobby.RpcEcho", echo("meanwhile", i)));
  }
  auto late = n.node->add_service(std::make_unique<Lobby>(), named("late"));
  ASSERT_TRUE(late) << late.error().to_string();
  auto future = answer.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto reply = future.get();
  ASSERT_TRUE(reply) << reply.error().to_string();
  pb::Echo body;
  ASSERT_TRUE(body.ParseFromString(*reply));
  EXPECT_EQ(body.text(), "alice:first");
  auto* lobby = static_cast<Lobby*>(*late);
  {
    std::lock_guard lock(lobby->mu);
    EXPECT_EQ(lobby->order["alice"], (std::vector<std::int64_t>{1}));  // ran once
  }
  // Nothing takes it within the client's timeout: the caller gets `unavailable` and the reason.
  auto hasty = client::Client::connect({.url = n.url, .token = "bob", .timeout = 400ms});
  ASSERT_TRUE(hasty) << hasty.error().to_string();
  const auto began = std::chrono::steady_clock::now();
  auto nobody = (*hasty)->call<pb::Echo>("ghost.RpcEcho", echo("boo"));
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().code(), Errc::unavailable) << nobody.error().to_string();
  EXPECT_NE(nobody.error().message().find("no instance"), std::string::npos)
      << nobody.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - began, 2s);
  EXPECT_GE((*hasty)->retries(), 1u);
}

TEST(Gateway, ClientsVanishingWithRequestsInFlightLeaveItServing) {
  // Found by the benchmark: a read that completed while its connection was being closed for a
  // failed write reached a session already gone. Rounds of abrupt exits under load.
  GateNode n("  RequestsPerSecond: 1000000\n  RequestBurst: 1000000\n  MaxInFlight: 1000\n");
  for (int round = 0; round < 5; ++round) {
    std::vector<std::unique_ptr<client::Client>> players;
    for (int i = 0; i < 10; ++i) {
      auto c = n.connect("r" + std::to_string(round) + "p" + std::to_string(i));
      ASSERT_TRUE(c) << c.error().to_string();
      players.push_back(std::move(*c));
    }
    for (int k = 0; k < 50; ++k) {
      for (auto& p : players) {
        p->async_call("lobby.RpcEcho", echo(std::string(512, 'x')).SerializeAsString(),
                      [](auto) {});
      }
    }
    players.clear();  // every socket closes with requests and replies in flight
    ASSERT_TRUE(wait_for([&] { return n.gate().stats().connections == 0; })) << "round " << round;
    ASSERT_TRUE(wait_for([&] { return ember::gate::Session::live() == 0; }))
        << "round " << round << ": " << ember::gate::Session::live() << " session objects left";
  }
  auto alice = n.connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  EXPECT_TRUE((*alice)->call<pb::Echo>("lobby.RpcEcho", echo("still serving")));
}

}  // namespace
