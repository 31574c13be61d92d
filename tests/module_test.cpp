// SPDX-License-Identifier: Apache-2.0
// The module tree inside a service: ids, lookups, depth-first release, timers that go with it.
#include <gtest/gtest.h>

#include <atomic>
#include <ember/ember.hpp>

#include "support/node_helpers.hpp"
#include "support/wait_for.hpp"

namespace {

using namespace std::chrono_literals;
using ember::testing::EventLog;
using ember::testing::run_in;
using ember::testing::wait_for;

EventLog g_events;

class Part : public ember::Module {
 public:
  explicit Part(std::string name, bool fail = false) : name_(std::move(name)), fail_(fail) {}
  ember::Status on_init() override {
    if (fail_) {
      return ember::Error{ember::Errc::invalid_argument, name_ + " refuses"};
    }
    return {};
  }
  void on_release() override { g_events.add("release " + name_); }
  const std::string& label() const { return name_; }

 private:
  std::string name_;
  bool fail_;
};

class Host : public ember::Service {};
EMBER_REGISTER_SERVICE(Host);

class ModuleTree : public ::testing::Test {
 protected:
  void SetUp() override {
    g_events.clear();
    auto config =
        ember::parse_node_config("ServiceConf:\n  StartServices:\n    - ClassName: Host\n", "t");
    ASSERT_TRUE(config);
    node_ = std::make_unique<ember::Node>(std::move(*config));
    ASSERT_TRUE(node_->start());
    host_ = node_->find_service("Host");
    ASSERT_NE(host_, nullptr);
  }
  void TearDown() override { ASSERT_TRUE(node_->stop()); }

  template <class F>
  void in_service(F&& fn) {
    ASSERT_TRUE(run_in(*node_, "Host", std::forward<F>(fn)));
  }

  std::unique_ptr<ember::Node> node_;
  ember::Service* host_ = nullptr;
};

TEST_F(ModuleTree, AddFindParentRootChildren) {
  in_service([&] {
    auto a = host_->add_module<Part>("a");
    ASSERT_TRUE(a);
    auto b = (*a)->add_module<Part>("b");
    ASSERT_TRUE(b);
    EXPECT_EQ((*b)->parent(), *a);
    EXPECT_EQ(&(*b)->root(), host_);
    EXPECT_EQ(&(*b)->service(), host_);
    EXPECT_EQ(host_->find_module((*b)->id()), *b);
    EXPECT_EQ((*b)->find_module((*a)->id()), *a);  // lookups are service-wide
    EXPECT_EQ(host_->children(), (std::vector<ember::Module*>{*a}));
    EXPECT_NE((*a)->id(), (*b)->id());
  });
}

TEST_F(ModuleTree, PresetIdsMustBeUnique) {
  in_service([&] {
    auto first = host_->add_module(std::make_unique<Part>("x"), 42);
    ASSERT_TRUE(first);
    EXPECT_EQ(*first, 42u);
    auto second = host_->add_module(std::make_unique<Part>("y"), 42);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code(), ember::Errc::already_exists);
  });
}

TEST_F(ModuleTree, ReleaseIsDepthFirstLastAddedFirst) {
  in_service([&] {
    auto a = host_->add_module<Part>("a");
    ASSERT_TRUE(a);
    ASSERT_TRUE((*a)->add_module<Part>("a1"));
    auto a2 = (*a)->add_module<Part>("a2");
    ASSERT_TRUE(a2);
    ASSERT_TRUE((*a2)->add_module<Part>("a2x"));
    ember::ModuleId id = (*a)->id();
    ASSERT_TRUE(host_->release_module(id));
    EXPECT_EQ(host_->find_module(id), nullptr);
    EXPECT_TRUE(host_->children().empty());
  });
  EXPECT_EQ(g_events.events(),
            (std::vector<std::string>{"release a2x", "release a2", "release a1", "release a"}));
}

TEST_F(ModuleTree, ReleasingTwiceOrOutsideTheSubtreeIsAnError) {
  in_service([&] {
    auto a = host_->add_module<Part>("a");
    auto b = host_->add_module<Part>("b");
    ASSERT_TRUE(a && b);
    ember::ModuleId a_id = (*a)->id();
    ember::Status not_below = (*b)->release_module(a_id);
    ASSERT_FALSE(not_below);
    EXPECT_EQ(not_below.error().code(), ember::Errc::not_found);
    ASSERT_TRUE(host_->release_module(a_id));
    ember::Status twice = host_->release_module(a_id);
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code(), ember::Errc::not_found);
    EXPECT_FALSE(host_->release_module(987654));
  });
}

TEST_F(ModuleTree, ARefusedModuleIsNotLinked) {
  in_service([&] {
    auto bad = host_->add_module<Part>("bad", true);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("bad refuses"), std::string::npos);
    EXPECT_TRUE(host_->children().empty());
  });
}

TEST_F(ModuleTree, AddingBeforeAttachIsRefused) {
  Part loose("loose");
  auto child = loose.add_module<Part>("child");
  ASSERT_FALSE(child);
  EXPECT_EQ(child.error().code(), ember::Errc::bad_state);
}

TEST_F(ModuleTree, ReleasedModuleTimersAreCancelled) {
  std::atomic<int> fired{0};
  std::atomic<bool> sentinel{false};
  in_service([&] {
    auto a = host_->add_module<Part>("a");
    ASSERT_TRUE(a);
    (*a)->after(20ms, [&] { fired.fetch_add(1); });
    (*a)->every(5ms, [&] { fired.fetch_add(1); });
    ASSERT_TRUE(host_->release_module((*a)->id()));
    host_->after(60ms, [&] { sentinel = true; });
  });
  ASSERT_TRUE(wait_for([&] { return sentinel.load(); }));
  EXPECT_EQ(fired.load(), 0);
}

TEST_F(ModuleTree, AModuleCanBeReleasedFromItsOwnTimer) {
  std::atomic<bool> released{false};
  in_service([&] {
    auto a = host_->add_module<Part>("self");
    ASSERT_TRUE(a);
    ember::Module* m = *a;
    m->after(5ms, [m, &released] {
      // The module is freed after this callback returns, not under it.
      EXPECT_TRUE(m->parent()->release_module(m->id()));
      released = true;
    });
  });
  ASSERT_TRUE(wait_for([&] { return released.load(); }));
  ASSERT_TRUE(wait_for([] { return g_events.contains("release self"); }));
}

TEST_F(ModuleTree, TimersOnAReleasedModuleAreRefused) {
  in_service([&] {
    auto a = host_->add_module<Part>("a");
    ASSERT_TRUE(a);
    ember::Module* m = *a;
    // Keep a raw pointer only within this message: the module object lives until it ends.
    ASSERT_TRUE(host_->release_module(m->id()));
    EXPECT_TRUE(m->released());
    EXPECT_FALSE(m->after(1ms, [] {}).valid());
    EXPECT_FALSE(m->cron("@every 1s", [] {}));
  });
}

}  // namespace
