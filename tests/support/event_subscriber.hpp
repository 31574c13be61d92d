// SPDX-License-Identifier: Apache-2.0
// For the event tests: a service that subscribes to pb::Echo events and checks their order, the
// events themselves, and the names of backend-parameterized instances.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>

#include "test.pb.h"

namespace ember::testing {

/// Subscribes in on_init to one event type in one scope; records what arrives.
class Subscriber : public Service {
 public:
  Subscriber(EventType type, EventScope scope) : type_(type), scope_(scope) {}
  Status on_init() override {
    auto sub = subscribe<ember::test::Echo>(type_, scope_, [this](const ember::test::Echo& e) {
      if (e.text() == "main") {  // the measured stream; warm-up events carry no text
        if (e.seq() != last_seq + 1) {
          out_of_order.fetch_add(1);
        }
        last_seq = e.seq();
        main.fetch_add(1);
      }
      got.fetch_add(1);
    });
    return sub ? Status{} : Status{sub.error()};
  }
  std::atomic<int> got{0};
  std::atomic<int> main{0};
  std::atomic<int> out_of_order{0};
  std::int64_t last_seq = 0;  // one lane: only its handler touches it

 private:
  EventType type_;
  EventScope scope_;
};

inline ember::test::Echo event(std::int64_t seq, bool main = false) {
  ember::test::Echo e;
  e.set_seq(seq);
  if (main) {
    e.set_text("main");
  }
  return e;
}

/// Names the instances of tests parameterized by event backend.
inline std::string backend_name(const ::testing::TestParamInfo<EventBackend>& info) {
  return info.param == EventBackend::cluster ? "cluster" : "nats";
}

}  // namespace ember::testing
