// SPDX-License-Identifier: Apache-2.0
// The seed's local example in Ember: Service1 drives, Service2 relays (with a module and a
// coroutine handler), Service3 computes. Every verb (Call, AsyncCall, Send, co_call) and both
// priorities are used; each step prints what happened. The node stops itself at the end and
// exits non-zero if any expectation failed.
#include <atomic>
#include <ember/ember.hpp>
#include <thread>

#include "demo.pb.h"

using namespace std::chrono_literals;
using ember::Result;
using ember::Selector;

namespace {

std::atomic<int> g_failures{0};

void check(const ember::Logger& log, bool ok, std::string_view what) {
  if (ok) {
    log.info("ok: {}", what);
  } else {
    log.error("FAILED: {}", what);
    g_failures.fetch_add(1);
  }
}

demo::SumReq sum(std::int64_t a, std::int64_t b) {
  demo::SumReq r;
  r.set_a(a);
  r.set_b(b);
  return r;
}

}  // namespace

// Computes. RpcSlow takes 300 ms so callers can see timeouts.
class Service3 : public ember::Service {
 public:
  ember::Status on_init() override {
    if (auto st = handle("RpcSum", &Service3::rpc_sum); !st) {
      return st;
    }
    return handle("RpcSlow", [](const demo::SumReq& r) -> Result<demo::SumResp> {
      std::this_thread::sleep_for(300ms);  // a deliberately slow handler
      demo::SumResp out;
      out.set_sum(r.a() + r.b());
      return out;
    });
  }
  Result<demo::SumResp> rpc_sum(const demo::SumReq& req, const ember::Context& ctx) {
    log().info("RpcSum({}, {}) from {} trace {:016x}", req.a(), req.b(), ctx.caller().name,
               ctx.trace_id());
    demo::SumResp out;
    out.set_sum(req.a() + req.b());
    return out;
  }
};

// A module of Service2: its handlers live and die with it.
class NoteBook : public ember::Module {
 public:
  ember::Status on_init() override {
    return handle("RpcNote",
                  [this](const demo::Note& n, const ember::Context& ctx) -> ember::Status {
                    log().info("note #{} '{}' ({} priority)", n.seq(), n.text(),
                               ctx.priority() == ember::Priority::system ? "system" : "user");
                    seen.push_back(n.text());
                    return {};
                  });
  }
  std::vector<std::string> seen;  // only touched on Service2's single lane
};

class Service2 : public ember::Service {
 public:
  ember::Status on_init() override {
    auto book = add_module<NoteBook>();
    if (!book) {
      return book.error();
    }
    notebook = *book;
    if (auto st = handle("RpcRelay", &Service2::relay); !st) {
      return st;
    }
    if (auto st =
            handle("RpcBusy",
                   [](const demo::Note&) -> ember::Status {
                     std::this_thread::sleep_for(100ms);  // holds Service2's only lane for a while
                     return {};
                   });
        !st) {
      return st;
    }
    return handle("RpcSeen", [this](const demo::Note&) -> Result<demo::Note> {
      demo::Note out;
      for (const auto& s : notebook->seen) {
        out.set_text(out.text() + (out.text().empty() ? "" : ",") + s);
      }
      return out;
    });
  }
  // A coroutine handler: waits for Service3 without holding a thread.
  ember::Task<Result<demo::SumResp>> relay(const demo::SumReq& req) {
    auto first = co_await select(Selector::name("Service3")).co_call<demo::SumResp>("RpcSum", req);
    if (!first) {
      co_return first.error();
    }
    auto doubled = co_await select(Selector::name("Service3"))
                       .co_call<demo::SumResp>("RpcSum", sum(first->sum(), first->sum()));
    co_return doubled;
  }
  NoteBook* notebook = nullptr;
};

// Drives the demo from a timer, then stops the node.
class Service1 : public ember::Service {
 public:
  void on_started() override {
    after(50ms, [this] { step_call(); });
  }

 private:
  void step_call() {
    auto calc = select(Selector::name("Service3"));
    auto r = calc.call<demo::SumResp>("RpcSum", sum(1, 2));
    check(log(), r && r->sum() == 3, "Call Service3.RpcSum(1, 2) = 3");

    auto missing = calc.call<demo::SumResp>("RpcNope", sum(1, 2));
    check(log(), !missing && missing.error().code() == ember::Errc::no_such_method,
          "Call of an unknown method fails with no_such_method");

    auto slow = calc.call<demo::SumResp>("RpcSlow", sum(1, 2), {.timeout = 100ms});
    check(log(), !slow && slow.error().code() == ember::Errc::timeout,
          "Call with a 100 ms timeout times out");

    auto relayed = select(Selector::name("Service2")).call<demo::SumResp>("RpcRelay", sum(2, 3));
    check(log(), relayed && relayed->sum() == 10, "Call Service2.RpcRelay (a coroutine) = (2+3)*2");
    step_async();
  }

  void step_async() {
    int user_data = 42;  // anything the callback needs travels in its captures
    auto h =
        select(Selector::name("Service3"))
            .async_call<demo::SumResp>(
                "RpcSum", sum(20, 22), [this, user_data](Result<demo::SumResp> r) {
                  check(
                      log(), r && r->sum() == 42 && user_data == 42,
                      "AsyncCall Service3.RpcSum(20, 22): callback on Service1 with user data 42");
                  step_send();
                });
    check(log(), h.has_value(), "AsyncCall accepted");
  }

  void step_send() {
    auto notes = select(Selector::name("Service2"));
    // Service2 is made busy, then gets two user notes and one system note: the system note
    // runs first, right after the message in progress.
    (void)notes.send("RpcBusy", demo::Note{});
    for (int i = 1; i <= 2; ++i) {
      demo::Note n;
      n.set_text("user-" + std::to_string(i));
      n.set_seq(i);
      check(log(), notes.send("RpcNote", n).ok(), "Send user note");
    }
    demo::Note urgent;
    urgent.set_text("system");
    urgent.set_seq(3);
    check(log(), notes.send("RpcNote", urgent, {.priority = ember::Priority::system}).ok(),
          "Send system note");
    after(200ms, [this] { step_verify(); });
  }

  void step_verify() {
    auto seen = select(Selector::name("Service2")).call<demo::Note>("RpcSeen", demo::Note{});
    check(log(), seen.has_value(), "Call Service2.RpcSeen");
    if (seen) {
      log().info("Service2 handled notes in this order: {}", seen->text());
      check(log(), seen->text() == "system,user-1,user-2",
            "the system note overtook the queued user notes");
    }
    log().info("local rpc demo finished with {} failures", g_failures.load());
    node().request_stop();
  }
};

EMBER_REGISTER_SERVICE(Service1);
EMBER_REGISTER_SERVICE(Service2);
EMBER_REGISTER_SERVICE(Service3);

int main(int argc, char** argv) {
  int code = ember::run_node(argc, argv);
  return code != 0 ? code : (g_failures.load() == 0 ? 0 : 1);
}
