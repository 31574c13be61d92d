// SPDX-License-Identifier: Apache-2.0
// The backend services the gateway's tests call through clients: a login method and a lobby.
#pragma once

#include <atomic>
#include <chrono>
#include <ember/client.hpp>
#include <ember/ember.hpp>
#include <ember/gate.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ember/gate.pb.h"
#include "support/wait_for.hpp"
#include "test.pb.h"

namespace ember::testing {

inline test::Echo echo(std::string text, std::int64_t seq = 0) {
  test::Echo e;
  e.set_text(std::move(text));
  e.set_seq(seq);
  return e;
}

/// What became of commands a client sent with async_call, shared with their callbacks (which
/// outlive a test's scope when an assertion ends it early).
struct Outcomes {
  std::atomic<int> answered{0};
  std::mutex mu;
  std::vector<std::string> errors;

  /// The callback of command `n`.
  static std::function<void(Result<std::string>)> of(const std::shared_ptr<Outcomes>& self,
                                                     std::int64_t n) {
    return [self, n](Result<std::string> r) {
      if (!r) {
        std::lock_guard lock(self->mu);
        self->errors.push_back(std::to_string(n) + ": " + r.error().to_string());
      }
      self->answered.fetch_add(1);
    };
  }
  std::string first_error() {
    std::lock_guard lock(mu);
    return errors.empty() ? std::string{} : errors.front();
  }
};

/// Takes `count` pushes from `client`, numbered 0, 1, 2... (Echo.seq) and arriving once each:
/// "" or what went wrong.
inline std::string take_numbered_pushes(client::Client& client, int count) {
  for (int k = 0; k < count; ++k) {
    auto got = client.next_push(std::chrono::seconds(5));
    if (!got) {
      return "push " + std::to_string(k) + " of " + std::to_string(count) + " missing";
    }
    test::Echo body;
    if (!body.ParseFromString(got->payload) || body.seq() != k) {
      return "push " + std::to_string(k) + " came as " + std::to_string(body.seq());
    }
  }
  if (client.next_push(std::chrono::milliseconds(50))) {
    return "a push arrived twice";
  }
  return {};
}

/// Logs in whoever sends a token, with session data level=7. "bad" is refused, "nobody" gets no
/// uid, "hold" waits for `release` (on the service's one lane: logins behind it wait too).
class TestAuth : public Service {
 public:
  Status on_init() override {
    return handle("RpcLogin", [this](const gate::LoginRequest& req) -> Result<gate::LoginReply> {
      if (req.token() == "bad") {
        return Error{Errc::invalid_argument, "unknown player"};
      }
      if (req.token() == "hold") {
        holding.store(true);
        (void)wait_for([&] { return release.load(); }, std::chrono::seconds(10));
      }
      logins.fetch_add(1);
      gate::LoginReply reply;
      if (req.token() != "nobody") {
        reply.set_uid(req.token());
      }
      (*reply.mutable_data())["level"] = "7";
      return reply;
    });
  }
  std::atomic<bool> holding{false};
  std::atomic<bool> release{false};
  std::atomic<int> logins{0};
};

/// What the tests call through the gateway.
class TestLobby : public Service {
 public:
  Status on_init() override {
    if (auto st = handle("RpcEcho",
                         [this](const test::Echo& e, const Context& ctx) -> Result<test::Echo> {
                           auto session = gate::session_of(ctx);
                           test::Echo out = e;
                           out.set_text(session ? session->uid + ":" + e.text() : "no session");
                           std::lock_guard lock(mu);
                           order[session ? session->uid : ""].push_back(e.seq());
                           if (also != nullptr) {
                             std::lock_guard also_lock(also->mu);
                             also->order[session ? session->uid : ""].push_back(e.seq());
                           }
                           if (session) {
                             last_session = session->id;
                             sessions.push_back(*session);
                           }
                           return out;
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcBlock",
                         [this](const test::Echo& e) -> Result<test::Echo> {
                           blocked.fetch_add(1);
                           (void)wait_for([&] { return release.load(); }, std::chrono::seconds(10));
                           return e;
                         });
        !st) {
      return st;
    }
    if (auto st = handle("RpcJoin",
                         [this](const test::Echo& e, const Context& ctx) -> Result<test::Echo> {
                           auto& g = gate::Gate::of(node());
                           (void)g.create_group(e.text());
                           if (auto st = g.join(e.text(), gate::session_of(ctx)->id); !st) {
                             return st.error();
                           }
                           return e;
                         });
        !st) {
      return st;
    }
    // Pushes the request back to its session before answering, through whichever gateway holds
    // it (this node's or another's).
    if (auto st = handle(
            "RpcPushMe",
            [this](const test::Echo& e, const Context& ctx) -> Result<test::Echo> {
              if (auto st = gate::push(node(), *gate::session_of(ctx), "lobby.OnPushed", e); !st) {
                return st.error();
              }
              return e;
            });
        !st) {
      return st;
    }
    if (auto st = handle("RpcAfterClose",
                         [this](const test::Echo& e) -> Result<test::Echo> {
                           ran_after_close.fetch_add(1);
                           return e;
                         });
        !st) {
      return st;
    }
    return handle("RpcSecret", [](const test::Echo& e) -> Result<test::Echo> { return e; });
  }

  /// What RpcEcho ran, by uid, in a place that outlives the service (its node's stop frees it).
  struct Record {
    std::mutex mu;
    std::map<std::string, std::vector<std::int64_t>> order;
  };

  std::mutex mu;
  std::map<std::string, std::vector<std::int64_t>> order;  // seq of RpcEcho, by uid
  Record* also = nullptr;                                  // set before the node starts
  std::string last_session;
  std::vector<gate::SessionRef> sessions;  // of every RpcEcho, in order
  std::atomic<int> blocked{0};
  std::atomic<bool> release{false};
  std::atomic<int> ran_after_close{0};
};

}  // namespace ember::testing
