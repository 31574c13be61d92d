// SPDX-License-Identifier: Apache-2.0
// The session directory in the simulator: gateways (their directory clients: a gateway's
// sockets and I/O threads are not part of the simulated world) claim and release players' UIDs
// on the coordinator while nodes crash and restart and lanes stall. The rules a gateway builds
// one login per UID on must hold whatever the interleaving: every claim learns whom it displaced,
// a release never removes a newer claim, and once things settle the directory names the one
// session that believes it holds the UID. A failing seed is printed; EMBER_SIM_SEED=<seed>
// replays it.
#include <gtest/gtest.h>

#include <ember/ember.hpp>
#include <ember/sim.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/node_impl.hpp"
#include "gate/session_directory.hpp"
#include "sim/cluster_world.hpp"
#include "sim/seeds.hpp"

namespace {

using namespace std::chrono_literals;
using ember::gate::Binding;
using ember::gate::SessionDirectory;
using ember::testing::cluster_node;
using ember::testing::Coordinator;

using SimDirectory = ember::testing::QuietSimTest;

// A login's session, as its gateway knows it.
struct Session {
  std::string uid;
  std::size_t node = 0;
  int life = 0;  // the node's incarnation that made it
  bool claimed = false;
  std::int64_t revision = 0;
  bool displaced = false;  // a later claim reported it: its gateway kicks it
  bool released = false;   // it ended, and its gateway let the UID go
};

SessionDirectory& directory_of(ember::Node& node) {
  return *SessionDirectory::of(ember::detail::NodeAccess::impl(node));
}

TEST_F(SimDirectory, ClaimsLeaveOneSessionPerUidUnderCrashesRestartsAndReleases) {
  int claims = 0;
  int displacements = 0;
  for (std::uint64_t seed : ember::testing::sim_seeds(30)) {
    ember::sim::WorldOptions options;
    options.seed = seed;
    options.stall_probability = 0.02;
    options.max_stall = 100ms;
    ember::sim::World world(options);
    Coordinator coordinator;
    const std::vector<std::string> ids{"g1", "g2", "g3"};
    const std::vector<std::string> uids{"u0", "u1", "u2", "u3"};
    std::vector<std::unique_ptr<ember::Node>> nodes(ids.size());
    std::vector<int> incarnation(ids.size(), 0);
    std::map<std::string, Session> sessions;  // by session id
    auto boot = [&](std::size_t i) {
      nodes[i] = std::make_unique<ember::Node>(cluster_node(ids[i]));
      ++incarnation[i];
      ember::Status started = nodes[i]->start();
      ASSERT_TRUE(started) << "seed " << seed << ": " << started.error().to_string();
    };
    auto alive = [&](const Session& s) { return nodes[s.node] && incarnation[s.node] == s.life; };
    for (std::size_t i = 0; i < ids.size(); ++i) {
      boot(i);
    }
    int next_session = 0;
    for (int round = 0; round < 40; ++round) {
      const int logins = static_cast<int>(world.uniform(4));
      for (int k = 0; k < logins; ++k) {
        const std::size_t i = world.uniform(ids.size());
        if (!nodes[i]) {
          continue;
        }
        const std::string id = "s" + std::to_string(next_session++);
        const std::string uid = uids[world.uniform(uids.size())];
        sessions[id] = Session{uid, i, incarnation[i]};
        SessionDirectory& directory = directory_of(*nodes[i]);
        ASSERT_TRUE(directory.run([&, &directory = directory, id, uid, i] {
          auto claim = directory.claim(uid, Binding{ids[i], id});
          Session& s = sessions[id];
          if (!claim) {
            return;  // the login fails; nothing was written (the store is atomic)
          }
          s.claimed = true;
          s.revision = claim->revision;
          ++claims;
          if (claim->previous) {
            auto it = sessions.find(claim->previous->session_id);
            ASSERT_NE(it, sessions.end()) << "seed " << seed << ": displaced an unknown session";
            ASSERT_EQ(it->second.uid, uid) << "seed " << seed;
            it->second.displaced = true;
            ++displacements;
          }
        }));
      }
      // A session ends: its gateway releases the UID by the revision of its own claim, whether or
      // not a newer claim displaced it meanwhile.
      if (world.chance(0.3)) {
        std::vector<std::string> ending;
        for (const auto& [id, s] : sessions) {
          if (s.claimed && !s.released && alive(s)) {
            ending.push_back(id);
          }
        }
        if (!ending.empty()) {
          const std::string id = ending[world.uniform(ending.size())];
          Session& s = sessions[id];
          s.released = true;
          (void)directory_of(*nodes[s.node])
              .run([&directory = directory_of(*nodes[s.node]), uid = s.uid, revision = s.revision] {
                (void)directory.release(uid, revision);
              });
        }
      }
      switch (world.uniform(12)) {
        case 0: {
          const std::size_t i = world.uniform(ids.size());
          (void)coordinator.crash(world, nodes[i], ids[i]);
          break;
        }
        case 1: ember::testing::restart_crashed(nodes, boot); break;
        default: break;
      }
      ASSERT_TRUE(world.run_steps(world.uniform(200)));
    }
    // Settle: queued claims and releases finish, and a crashed node's lease expires (TTL 2 s).
    ASSERT_TRUE(world.run_for(5s));
    std::size_t reader = ids.size();
    for (std::size_t i = 0; i < ids.size() && reader == ids.size(); ++i) {
      reader = nodes[i] ? i : reader;
    }
    if (reader == ids.size()) {
      boot(0);
      reader = 0;
    }
    std::map<std::string, std::optional<Binding>> held;
    bool read_failed = false;
    SessionDirectory& directory = directory_of(*nodes[reader]);
    ASSERT_TRUE(directory.run([&] {
      for (const auto& uid : uids) {
        auto binding = directory.lookup(uid, /*fresh=*/true);
        if (!binding) {
          read_failed = true;
          return;
        }
        held[uid] = *binding;
      }
    }));
    auto read = world.run_until([&] { return read_failed || held.size() == uids.size(); }, 10s);
    ASSERT_TRUE(read && *read && !read_failed)
        << "seed " << seed << ": the directory is unreadable";
    for (const auto& uid : uids) {
      std::vector<std::string> holders;  // sessions that still believe they hold the UID
      for (const auto& [id, s] : sessions) {
        if (s.uid == uid && s.claimed && !s.displaced && !s.released && alive(s)) {
          holders.push_back(id);
        }
      }
      ASSERT_LE(holders.size(), 1u)
          << "seed " << seed << ": " << uid << " is held by " << holders.size()
          << " sessions (replay: EMBER_SIM_SEED=" << seed << ")";
      const std::optional<Binding>& binding = held[uid];
      if (holders.empty()) {
        EXPECT_FALSE(binding) << "seed " << seed << ": " << uid << " is bound to "
                              << binding->session_id << ", which nobody holds (replay: "
                              << "EMBER_SIM_SEED=" << seed << ")";
      } else {
        ASSERT_TRUE(binding) << "seed " << seed << ": the binding of " << holders[0]
                             << " vanished (replay: EMBER_SIM_SEED=" << seed << ")";
        EXPECT_EQ(binding->session_id, holders[0]) << "seed " << seed;
      }
    }
    for (auto& node : nodes) {
      if (node) {
        EXPECT_TRUE(node->stop());
      }
    }
  }
  EXPECT_GT(claims, 0);
  EXPECT_GT(displacements, 0);
  std::cout << claims << " claims, " << displacements << " of them displaced a session\n";
}

}  // namespace
