// SPDX-License-Identifier: Apache-2.0
// The gateway in a cluster (real etcd): a client's requests routed to services on other nodes,
// with the session reaching their handlers, and the session's close reaching those nodes.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/client.hpp>
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <future>
#include <map>
#include <mutex>
#include <vector>

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
    std::string why = etcd_.start();
    ASSERT_TRUE(why.empty()) << why;
    const std::string cluster =
        "ClusterConf:\n  Name: test\n  Secret: s3cret\n"
        "  ListenAddr: 127.0.0.1:0\n  AdvertiseAddr: 127.0.0.1\n"
        "  ETCDConf: {Endpoints: [" +
        etcd_.endpoint() + "]}\n  DiscoveryConf: {TTL: 2s}\n";
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

    auto gate_cfg = ember::parse_node_config(
        "NodeConf: {NodeId: gate-a, WorkerThreads: 2}\n" + cluster +
            "GateConf:\n  WebSocketAddr: 127.0.0.1:0\n  Login: auth.RpcLogin\n"
            "  Routes: [lobby.RpcEcho, lobby.RpcBlock, lobby.RpcAfterClose, lobby.RpcPushMe]\n"
            "  RequestsPerSecond: 100000\n  RequestBurst: 100000\n  MaxInFlight: 1000\n",
        "gate-a");
    ASSERT_TRUE(gate_cfg) << gate_cfg.error().to_string();
    gate_ = std::make_unique<ember::Node>(std::move(*gate_cfg));
    started = gate_->start();
    ASSERT_TRUE(started) << started.error().to_string();
    url_ = "ws://" + gate::Gate::of(*gate_).websocket_address() + "/ws";
  }
  void TearDown() override {
    if (lobby_ != nullptr) {
      lobby_->release = true;
    }
    if (auth_ != nullptr) {
      auth_->release = true;
    }
    if (gate_) {
      (void)gate_->stop();
    }
    if (backend_) {
      (void)backend_->stop();
    }
    etcd_.stop();
  }
  Result<std::unique_ptr<client::Client>> connect(const std::string& token) {
    return client::Client::connect({.url = url_, .token = token, .timeout = 5s});
  }
  ember::detail::RemoteOrigins& backend_origins() {
    return ember::detail::Messaging::of(ember::detail::NodeAccess::impl(*backend_))
        .remote_origins();
  }

  EtcdServer etcd_;
  std::unique_ptr<ember::Node> backend_;
  std::unique_ptr<ember::Node> gate_;
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

}  // namespace
