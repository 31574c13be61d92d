// SPDX-License-Identifier: Apache-2.0
// The gateway in a cluster (real etcd; or, built with EMBER_GATE_ON_MEMORY_STORE, the in-process
// coordinator store, for the TSan pass): a client's requests routed to services on other nodes,
// with the session reaching their handlers, the session's close reaching those nodes, and the
// session directory across two gateways.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <ember/client.hpp>
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "cluster/membership.hpp"
#include "cluster/store/memory_store.hpp"
#include "core/node_impl.hpp"
#include "ember/gate.pb.h"
#include "gate/gate_services.hpp"
#include "rpc/messaging.hpp"
#include "support/etcd_server.hpp"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace {

using namespace std::chrono_literals;
using ember::Errc;
using ember::Result;
using ember::testing::EtcdServer;
using ember::testing::wait_for;
namespace pb = ember::test;
namespace gate = ember::gate;
namespace client = ember::client;

using Auth = ember::testing::TestAuth;
using Lobby = ember::testing::TestLobby;
using ember::testing::echo;

/// A gateway node with no services of its own, and a backend node with the login method and the
/// lobby: every client request crosses nodes.
class GateCluster : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef EMBER_GATE_ON_MEMORY_STORE
    // The coordinator in this process: no gRPC runs, so the directory's threads are in the TSan
    // pass. The endpoint in the config is never dialed.
    ember::detail::install_store_factory(
        [store = store_](ember::detail::NodeImpl&) -> Result<std::shared_ptr<ember::store::Store>> {
          return ember::store::MemoryStore::connect(store);
        });
    const std::string endpoint = "127.0.0.1:1";
#else
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    const std::string endpoint = etcd_.endpoint();
#endif
    const std::string cluster =
        "ClusterConf:\n  Name: test\n  Secret: s3cret\n"
        "  ListenAddr: 127.0.0.1:0\n  AdvertiseAddr: 127.0.0.1\n"
        "  ETCDConf: {Endpoints: [" +
        endpoint + "]}\n  DiscoveryConf: {TTL: 2s}\n";
    auto backend_cfg = ember::parse_node_config(
        "NodeConf: {NodeId: backend, WorkerThreads: 2}\n" + cluster, "backend");
    ASSERT_TRUE(backend_cfg) << backend_cfg.error().to_string();
    backend_ = std::make_unique<ember::Node>(std::move(*backend_cfg));
    ember::ServiceConfig auth;
    auth.name = "auth";
    auto auth_added = backend_->add_service(std::make_unique<Auth>(), auth);
    ASSERT_TRUE(auth_added);
    auth_ = static_cast<Auth*>(*auth_added);
    ember::ServiceConfig lobby;
    lobby.name = "lobby";
    auto added = backend_->add_service(std::make_unique<Lobby>(), lobby);
    ASSERT_TRUE(added);
    lobby_ = static_cast<Lobby*>(*added);
    auto started = backend_->start();
    ASSERT_TRUE(started) << started.error().to_string();

    cluster_ = cluster;
    gate_ = start_gateway("gate-a");
    ASSERT_TRUE(gate_);
    url_ = "ws://" + gate::Gate::of(*gate_).websocket_address() + "/ws";
  }
  std::unique_ptr<ember::Node> start_gateway(const std::string& id) {
    auto gate_cfg = ember::parse_node_config(
        "NodeConf: {NodeId: " + id + ", WorkerThreads: 2}\n" + cluster_ +
            "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
            "  Routes: [lobby.RpcEcho, lobby.RpcBlock, lobby.RpcAfterClose, lobby.RpcPushMe]\n"
            "  RequestsPerSecond: 100000\n  RequestBurst: 100000\n  MaxInFlight: 1000\n",
        id);
    EXPECT_TRUE(gate_cfg) << gate_cfg.error().to_string();
    if (!gate_cfg) {
      return nullptr;
    }
    auto node = std::make_unique<ember::Node>(std::move(*gate_cfg));
    auto started = node->start();
    EXPECT_TRUE(started) << started.error().to_string();
    return started ? std::move(node) : nullptr;
  }
  void TearDown() override {
    if (lobby_ != nullptr) {
      lobby_->release = true;
    }
    if (auth_ != nullptr) {
      auth_->release = true;
    }
    if (gate_b_) {
      (void)gate_b_->stop();
    }
    if (gate_) {
      (void)gate_->stop();
    }
    if (backend_) {
      (void)backend_->stop();
    }
#ifdef EMBER_GATE_ON_MEMORY_STORE
    ember::detail::install_store_factory(nullptr);
#else
    etcd_.stop();
#endif
  }
  Result<std::unique_ptr<client::Client>> connect(const std::string& token) {
    return client::Client::connect({.url = url_, .token = token, .timeout = 5s});
  }
  ember::detail::RemoteOrigins& backend_origins() {
    return ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*backend_))
        .remote_origins();
  }

  // A second gateway in the same cluster.
  void start_gateway_b() {
    gate_b_ = start_gateway("gate-b");
    ASSERT_TRUE(gate_b_);
    url_b_ = "ws://" + gate::Gate::of(*gate_b_).websocket_address() + "/ws";
  }
  Result<std::unique_ptr<client::Client>> connect_b(const std::string& token) {
    return client::Client::connect({.url = url_b_, .token = token, .timeout = 5s});
  }

#ifdef EMBER_GATE_ON_MEMORY_STORE
  std::shared_ptr<ember::store::MemoryStore> store_ = std::make_shared<ember::store::MemoryStore>();
#else
  EtcdServer etcd_;
#endif
  std::string cluster_;
  std::unique_ptr<ember::Node> backend_;
  std::unique_ptr<ember::Node> gate_;
  std::unique_ptr<ember::Node> gate_b_;
  std::string url_b_;
  Lobby* lobby_ = nullptr;
  Auth* auth_ = nullptr;
  std::string url_;
};

TEST_F(GateCluster, ARouteReachesAServiceOnAnotherNodeWithTheSessionInItsContext) {
  auto alice = connect("alice");  // the login method runs on the backend too
  ASSERT_TRUE(alice) << alice.error().to_string();
  auto reply = (*alice)->call<pb::Echo>("lobby.RpcEcho", echo("hi"));
  ASSERT_TRUE(reply) << reply.error().to_string();
  EXPECT_EQ(reply->text(), "alice:hi");
  {
    std::lock_guard lock(lobby_->mu);
    ASSERT_EQ(lobby_->sessions.size(), 1u);
    EXPECT_EQ(lobby_->sessions[0].uid, "alice");
    EXPECT_EQ(lobby_->sessions[0].id, (*alice)->welcome().session_id);
    EXPECT_EQ(lobby_->sessions[0].gate_node, "gate-a");
  }
  // One player's requests keep their order across the nodes (the UID is the dispatch key).
  constexpr int kRequests = 200;
  std::atomic<int> answered{0};
  for (int i = 1; i <= kRequests; ++i) {
    (*alice)->async_call("lobby.RpcEcho", echo("n", i).SerializeAsString(),
                         [&](Result<std::string> r) {
                           EXPECT_TRUE(r) << r.error().to_string();
                           answered.fetch_add(1);
                         });
  }
  ASSERT_TRUE(wait_for([&] { return answered.load() == kRequests; }, 10s));
  std::lock_guard lock(lobby_->mu);
  const auto& seen = lobby_->order["alice"];
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kRequests + 1));
  for (int i = 1; i <= kRequests; ++i) {
    EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
  }
}

TEST_F(GateCluster, RefusalsAndBadPayloadsFromAnotherNodeReachTheClient) {
  auto bad = connect("bad");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unknown player"), std::string::npos)
      << bad.error().to_string();
  auto alice = connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  auto garbage = (*alice)->call_bytes("lobby.RpcEcho", std::string("\xff\xff\xff", 3));
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), Errc::invalid_argument) << garbage.error().to_string();
  EXPECT_TRUE((*alice)->connected());
}

TEST_F(GateCluster, NoHandlerRunsOnAnotherNodeForASessionThatClosed) {
  auto alice = connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  // Alice's lane in the backend's lobby is busy; more of her requests queue behind it.
  (*alice)->async_call("lobby.RpcBlock", echo("hold").SerializeAsString(), [](auto) {});
  ASSERT_TRUE(wait_for([&] { return lobby_->blocked.load() == 1; }));
  constexpr int kQueued = 20;
  for (int i = 0; i < kQueued; ++i) {
    (*alice)->async_call("lobby.RpcAfterClose", echo("late").SerializeAsString(), [](auto) {});
  }
  ASSERT_TRUE(wait_for([&] { return gate::Gate::of(*gate_).stats().requests == kQueued + 1; }, 5s));
  const auto ends_before = backend_origins().ends_heard();
  (*alice)->close();
  // The gateway tells the backend, after the requests it sent it, on the same connection.
  ASSERT_TRUE(wait_for([&] { return backend_origins().ends_heard() > ends_before; }, 5s));
  lobby_->release = true;
  // A call on alice's lane runs after every queued request was dropped.
  auto behind =
      ember::select(*backend_, ember::Selector::name("lobby"))
          .call<pb::Echo>("RpcEcho", echo("behind"),
                          {.key = ember::DispatchKey(std::string_view("alice")), .timeout = 5s});
  ASSERT_TRUE(behind) << behind.error().to_string();
  EXPECT_EQ(lobby_->ran_after_close.load(), 0);
  // A new session of the same player is another origin: it is served.
  auto again = connect("alice");
  ASSERT_TRUE(again) << again.error().to_string();
  auto reply = (*again)->call<pb::Echo>("lobby.RpcAfterClose", echo("new"));
  ASSERT_TRUE(reply) << reply.error().to_string();
  EXPECT_EQ(lobby_->ran_after_close.load(), 1);
}

TEST_F(GateCluster, AServiceOnAnotherNodePushesToAndKicksTheSession) {
  auto alice = connect("alice");
  ASSERT_TRUE(alice) << alice.error().to_string();
  // From a handler on the backend, to the session of the request it handles.
  auto reply = (*alice)->call<pb::Echo>("lobby.RpcPushMe", echo("from a handler"));
  ASSERT_TRUE(reply) << reply.error().to_string();
  auto pushed = (*alice)->next_push(5s);
  ASSERT_TRUE(pushed);
  EXPECT_EQ(pushed->route, "lobby.OnPushed");
  pb::Echo got;
  ASSERT_TRUE(got.ParseFromString(pushed->payload));
  EXPECT_EQ(got.text(), "from a handler");

  // Later, from anywhere on the backend, with the session a handler kept.
  gate::SessionRef kept;
  {
    std::lock_guard lock(lobby_->mu);
    ASSERT_TRUE(lobby_->sessions.empty());  // RpcPushMe kept nothing; RpcEcho does
  }
  ASSERT_TRUE((*alice)->call<pb::Echo>("lobby.RpcEcho", echo("keep me")));
  {
    std::lock_guard lock(lobby_->mu);
    ASSERT_EQ(lobby_->sessions.size(), 1u);
    kept = lobby_->sessions[0];
  }
  ASSERT_TRUE(gate::push(*backend_, kept, "lobby.OnNews", echo("news")));
  pushed = (*alice)->next_push(5s);
  ASSERT_TRUE(pushed);
  EXPECT_EQ(pushed->route, "lobby.OnNews");

  // A gateway node that is not in the cluster is not_found at once.
  gate::SessionRef lost = kept;
  lost.gate_node = "nowhere";
  auto refused = gate::push(*backend_, lost, "lobby.OnNews", echo("lost"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Errc::not_found);

  ASSERT_TRUE(gate::kick(*backend_, kept, "see you"));
  EXPECT_TRUE((*alice)->wait_closed(5s));
  ASSERT_TRUE((*alice)->kicked());
  EXPECT_EQ((*alice)->kicked()->reason, "see you");
}

TEST_F(GateCluster, ALoginQueuedOnAnotherNodeDoesNotRunOnceItsClientLeft) {
  // The login service's one lane is busy with another login; a second client's login queues
  // behind it, and that client leaves before its turn.
  auto first = std::async(std::launch::async, [&] { return connect("hold"); });
  ASSERT_TRUE(wait_for([&] { return auth_->holding.load(); }, 5s));
  const auto ends_before = backend_origins().ends_heard();
  std::atomic<bool> gave_up{false};
  auto second = std::async(std::launch::async, [&] {
    auto r = client::Client::connect({.url = url_, .token = "queued", .timeout = 1s});
    gave_up = true;
    return r;
  });
  ASSERT_TRUE(wait_for([&] { return gave_up.load(); }, 5s));
  EXPECT_FALSE(second.get());  // it timed out and closed its connection
  ASSERT_TRUE(wait_for([&] { return backend_origins().ends_heard() > ends_before; }, 5s));
  auth_->release = true;
  ASSERT_TRUE(first.get());
  // The queued login was dropped: only "hold" logged in. A call behind it on the same lane
  // proves its turn has passed.
  auto later = connect("later");
  ASSERT_TRUE(later) << later.error().to_string();
  EXPECT_EQ(auth_->logins.load(), 2);  // hold and later
}

TEST_F(GateCluster, TwoLoginsOfOneUidOnTwoGatewaysAtOnceLeaveExactlyOneSessionEveryRound) {
  start_gateway_b();
  constexpr int kRounds = 20;
  const auto replaced = static_cast<std::uint32_t>(gate::KickCode::replaced);
  std::vector<std::unique_ptr<client::Client>> survivors;
  for (int round = 0; round < kRounds; ++round) {
    const std::string uid = "racer-" + std::to_string(round);
    std::promise<void> go;
    std::shared_future<void> start = go.get_future().share();
    auto on_a = std::async(std::launch::async, [&] {
      start.wait();
      return connect(uid);
    });
    auto on_b = std::async(std::launch::async, [&] {
      start.wait();
      return connect_b(uid);
    });
    go.set_value();
    std::vector<std::unique_ptr<client::Client>> clients;
    for (auto* attempt : {&on_a, &on_b}) {
      auto c = attempt->get();
      if (c) {
        clients.push_back(std::move(*c));
      } else {
        // Displaced before its welcome: refused with the reason.
        EXPECT_NE(c.error().message().find("logged in on another connection"), std::string::npos)
            << "round " << round << ": " << c.error().to_string();
      }
    }
    ASSERT_FALSE(clients.empty()) << "round " << round << ": both logins failed";
    // Exactly one survives; a loser that was welcomed is told why it goes.
    ASSERT_TRUE(wait_for(
        [&] {
          return std::count_if(clients.begin(), clients.end(),
                               [](const auto& c) { return c->connected(); }) == 1;
        },
        5s))
        << "round " << round;
    client::Client* survivor = nullptr;
    for (auto& c : clients) {
      if (c->connected()) {
        survivor = c.get();
      } else {
        ASSERT_TRUE(c->kicked()) << "round " << round;
        EXPECT_EQ(c->kicked()->code, replaced) << "round " << round;
      }
    }
    // The directory names the survivor: a push from the backend reaches it.
    auto pushed = gate::push_to_uid(*backend_, uid, "lobby.OnNews", echo("to " + uid));
    ASSERT_TRUE(pushed) << "round " << round << ": " << pushed.error().to_string();
    auto got = survivor->next_push(5s);
    ASSERT_TRUE(got) << "round " << round;
    EXPECT_TRUE(survivor->call<pb::Echo>("lobby.RpcEcho", echo("still here"))) << "round " << round;
    for (auto& c : clients) {
      if (c.get() == survivor) {
        survivors.push_back(std::move(c));
      }
    }
  }
  const auto a = gate::Gate::of(*gate_).stats();
  const auto b = gate::Gate::of(*gate_b_).stats();
  EXPECT_EQ(a.sessions + b.sessions, static_cast<std::uint64_t>(kRounds));
}

TEST_F(GateCluster, PushesToAUidFollowThePlayerAcrossGatewaysAndFailFastOnceItLeft) {
  start_gateway_b();
  auto on_a = connect("alice");
  ASSERT_TRUE(on_a) << on_a.error().to_string();
  ASSERT_TRUE(gate::push_to_uid(*backend_, "alice", "lobby.OnNews", echo("one")));
  auto got = (*on_a)->next_push(5s);
  ASSERT_TRUE(got);
  // Alice logs in again on the other gateway: the first session is replaced, and the backend's
  // cached binding is stale until a push through it fails; that push still arrives, once.
  auto on_b = connect_b("alice");
  ASSERT_TRUE(on_b) << on_b.error().to_string();
  ASSERT_TRUE((*on_a)->wait_closed(5s));
  ASSERT_TRUE((*on_a)->kicked());
  EXPECT_EQ((*on_a)->kicked()->code, static_cast<std::uint32_t>(gate::KickCode::replaced));
  ASSERT_TRUE(gate::push_to_uid(*backend_, "alice", "lobby.OnNews", echo("two")));
  got = (*on_b)->next_push(5s);
  ASSERT_TRUE(got);
  pb::Echo text;
  ASSERT_TRUE(text.ParseFromString(got->payload));
  EXPECT_EQ(text.text(), "two");
  EXPECT_FALSE((*on_b)->next_push(200ms));
  // From a gateway's own API too: gate-a finds alice on gate-b.
  ASSERT_TRUE(gate::Gate::of(*gate_).push_to_uid("alice", "lobby.OnNews", echo("three")));
  ASSERT_TRUE((*on_b)->next_push(5s));
  // Once she left, a push is not_found at once (her binding went with her session).
  (*on_b)->close();
  ASSERT_TRUE(wait_for([&] { return gate::Gate::of(*gate_b_).stats().sessions == 0; }, 5s));
  const auto before = std::chrono::steady_clock::now();
  ember::Status gone = ember::Error{Errc::internal, "unset"};
  ASSERT_TRUE(wait_for(
      [&] {
        gone = gate::push_to_uid(*backend_, "alice", "lobby.OnNews", echo("four"));
        return !gone && gone.error().code() == Errc::not_found;
      },
      5s))
      << (gone ? "delivered" : gone.error().to_string());
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);
  // kick_uid finds her wherever she is.
  auto again = connect("alice");
  ASSERT_TRUE(again) << again.error().to_string();
  ASSERT_TRUE(gate::kick_uid(*backend_, "alice", "maintenance"));
  ASSERT_TRUE((*again)->wait_closed(5s));
  ASSERT_TRUE((*again)->kicked());
  EXPECT_EQ((*again)->kicked()->reason, "maintenance");
}

TEST_F(GateCluster, ABroadcastToPlayersOnTwoGatewaysSendsOneMessagePerGateway) {
  start_gateway_b();
  std::vector<std::unique_ptr<client::Client>> players;
  std::vector<gate::SessionRef> room;
  for (int i = 0; i < 5; ++i) {
    const std::string uid = "p" + std::to_string(i);
    auto c = i < 3 ? connect(uid) : connect_b(uid);
    ASSERT_TRUE(c) << c.error().to_string();
    room.push_back({(*c)->welcome().session_id, uid, i < 3 ? "gate-a" : "gate-b"});
    players.push_back(std::move(*c));
  }
  ASSERT_TRUE(gate::broadcast(*backend_, room, "room.OnMoved", echo("moved")));
  for (auto& p : players) {
    auto got = p->next_push(5s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->route, "room.OnMoved");
  }
  EXPECT_EQ(gate::Gate::of(*gate_).stats().relayed, 1u);
  EXPECT_EQ(gate::Gate::of(*gate_b_).stats().relayed, 1u);
}

TEST_F(GateCluster, AResumeOnAnotherGatewayMissesNoPushAndRunsEveryCommandOnce) {
  start_gateway_b();
  auto outcomes = std::make_shared<ember::testing::Outcomes>();
  auto c = client::Client::connect({.url = url_, .token = "alice", .timeout = 5s, .resume = true});
  ASSERT_TRUE(c) << c.error().to_string();
  client::Client& player = **c;
  const std::string id = player.welcome().session_id;
  constexpr int kRounds = 4;
  constexpr int kPerRound = 40;
  std::int64_t next = 0;
  int pushed = 0;
  int push_retries = 0;
  for (int round = 0; round < kRounds; ++round) {
    // Back and forth: b, a, b, a. The move starts with requests in flight, and more are sent
    // while it is under way.
    const std::string to = round % 2 == 0 ? url_b_ : url_;
    std::future<ember::Status> moved;
    for (int i = 0; i < kPerRound; ++i, ++next) {
      if (i == kPerRound / 2) {
        moved = std::async(std::launch::async, [&player, to] { return player.resume(to); });
      }
      player.async_call("lobby.RpcEcho", echo("c", next).SerializeAsString(),
                        ember::testing::Outcomes::of(outcomes, next));
      if (i % 4 == 0) {
        // From the backend, wherever the player is. A push refused while the session moves
        // between gateways (not_found) was not delivered, and is sent again.
        const pb::Echo body = echo("p", pushed);
        ember::Status st = gate::push_to_uid(*backend_, "alice", "room.OnMoved", body);
        for (int tries = 0; !st && st.error().code() == Errc::not_found && tries < 100; ++tries) {
          ++push_retries;
          std::this_thread::sleep_for(10ms);  // paces the retries of a refused push
          st = gate::push_to_uid(*backend_, "alice", "room.OnMoved", body);
        }
        ASSERT_TRUE(st) << st.error().to_string();
        ++pushed;
      }
    }
    ASSERT_EQ(moved.wait_for(10s), std::future_status::ready);
    auto st = moved.get();
    ASSERT_TRUE(st) << "round " << round << ": " << st.error().to_string();
    ASSERT_TRUE(wait_for([&] { return outcomes->answered.load() == next; }, 10s))
        << "round " << round << ": " << outcomes->answered.load() << " of " << next;
  }
  EXPECT_EQ(outcomes->first_error(), "");
  EXPECT_EQ(player.resumes(), static_cast<std::uint64_t>(kRounds));
  EXPECT_EQ(player.welcome().session_id, id);
  {
    std::lock_guard lock(lobby_->mu);
    std::vector<std::int64_t> expected(static_cast<std::size_t>(next));
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(lobby_->order["alice"], expected);  // each command ran once, in order
    // The session kept its id on either gateway; its gateway is where it is.
    EXPECT_EQ(lobby_->sessions.back().id, id);
  }
  EXPECT_EQ(ember::testing::take_numbered_pushes(player, pushed), "");
  EXPECT_EQ(gate::Gate::of(*gate_).stats().resumed + gate::Gate::of(*gate_b_).stats().resumed,
            static_cast<std::uint64_t>(kRounds));
  // Back on gate-a, registered there alone, and reachable by UID.
  EXPECT_EQ(gate::Gate::of(*gate_).session_of_uid("alice").value_or(""), id);
  EXPECT_EQ(gate::Gate::of(*gate_b_).stats().sessions, 0u);
  EXPECT_TRUE(gate::push_to_uid(*backend_, "alice", "room.OnMoved", echo("last")));
  EXPECT_TRUE(player.next_push(5s));
  std::cout << push_retries << " pushes refused (not_found) while the session moved\n";
}

TEST_F(GateCluster, ADrainingGatewaysResumableClientsMoveWithTheirSessions) {
  start_gateway_b();
  auto outcomes = std::make_shared<ember::testing::Outcomes>();
  auto c = client::Client::connect({.url = url_, .token = "alice", .timeout = 5s, .resume = true});
  ASSERT_TRUE(c) << c.error().to_string();
  client::Client& player = **c;
  const std::string id = player.welcome().session_id;
  constexpr int kCommands = 200;
  std::thread stopping;
  auto stop_took = std::make_shared<std::atomic<double>>(-1);
  for (int i = 0; i < kCommands; ++i) {
    if (i == kCommands / 4) {
      // A deploy stops gate-a while the player's commands are under way: the player is told to
      // move (Moving), leaves at once and resumes on gate-b, from which the session is handed
      // over by the draining gateway.
      stopping = std::thread([this, stop_took] {
        const auto began = std::chrono::steady_clock::now();
        (void)gate_->stop();
        *stop_took =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
      });
    }
    player.async_call("lobby.RpcEcho", echo("c", i).SerializeAsString(),
                      ember::testing::Outcomes::of(outcomes, i));
    if (i % 10 == 0) {
      std::this_thread::sleep_for(2ms);  // paces the commands over the move
    }
  }
  ASSERT_TRUE(wait_for([&] { return outcomes->answered.load() == kCommands; }, 15s))
      << outcomes->answered.load() << " of " << kCommands;
  stopping.join();
  EXPECT_EQ(outcomes->first_error(), "");
  EXPECT_EQ(player.resumes(), 1u);
  EXPECT_EQ(player.welcome().session_id, id);
  EXPECT_EQ(gate::Gate::of(*gate_b_).stats().resumed, 1u);
  EXPECT_EQ(gate::Gate::of(*gate_b_).session_of_uid("alice").value_or(""), id);
  {
    std::lock_guard lock(lobby_->mu);
    std::vector<std::int64_t> expected(kCommands);
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(lobby_->order["alice"], expected);  // each command ran once, in order
  }
  // It left once its player had: well within DrainTimeout (10 s).
  EXPECT_LT(stop_took->load(), 5.0);
  EXPECT_TRUE(gate::push_to_uid(*backend_, "alice", "room.OnMoved", echo("after the move")));
  EXPECT_TRUE(player.next_push(5s));
}

}  // namespace
