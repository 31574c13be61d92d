// SPDX-License-Identifier: Apache-2.0
#include "runtime/small_pool.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "runtime/message.hpp"

namespace ember::runtime {
namespace {

// Tests use sizes no other code in this binary allocates from the pool, so the shared lists
// they look at are theirs.
constexpr std::size_t kTestSize = 496;

TEST(SmallPool, ABlockFreedByTheThreadIsItsNextAllocation) {
  void* a = small_pool::allocate(kTestSize);
  small_pool::deallocate(a, kTestSize);
  EXPECT_EQ(small_pool::allocate(kTestSize), a);
  small_pool::deallocate(a, kTestSize);
}

TEST(SmallPool, BlocksAreAlignedAndDistinctAcrossSlabs) {
  std::vector<void*> blocks;
  std::set<void*> seen;
  for (std::uint32_t i = 0; i < 5 * small_pool::kBatch; ++i) {
    void* p = small_pool::allocate(40);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(std::max_align_t), 0u);
    ASSERT_TRUE(seen.insert(p).second) << "a block was handed out twice";
    std::memset(p, static_cast<int>(i), 40);
    blocks.push_back(p);
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_EQ(static_cast<unsigned char*>(blocks[i])[39], static_cast<unsigned char>(i));
    small_pool::deallocate(blocks[i], 40);
  }
}

// The fan-in shape: producers allocate, one consumer frees. What the consumer frees must reach
// the producers, or the pool would carve new slabs for ever.
TEST(SmallPool, WhatOneThreadFreesOthersReuse) {
  struct Node {
    std::uint64_t stamp = 0;
  };
  constexpr std::size_t kSize = 480;
  static_assert(sizeof(Node) <= kSize);
  constexpr int kProducers = 3;
  constexpr int kPerRound = 2000;
  constexpr int kRounds = 20;
  std::mutex mu;
  std::deque<Node*> queue;
  std::atomic<int> live{0};
  std::atomic<int> most_live{0};
  const std::size_t slabs_before = small_pool::slab_bytes();
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0; i < kPerRound; ++i) {
          auto* n = new (small_pool::allocate(kSize)) Node;
          n->stamp = (static_cast<std::uint64_t>(p) << 32) | static_cast<std::uint64_t>(i);
          const int now_live = live.fetch_add(1, std::memory_order_relaxed) + 1;
          int seen = most_live.load(std::memory_order_relaxed);
          while (now_live > seen && !most_live.compare_exchange_weak(seen, now_live)) {
          }
          std::lock_guard lock(mu);
          queue.push_back(n);
        }
      });
    }
    int consumed = 0;
    std::thread consumer([&] {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (consumed < kProducers * kPerRound && std::chrono::steady_clock::now() < deadline) {
        Node* n = nullptr;
        {
          std::lock_guard lock(mu);
          if (!queue.empty()) {
            n = queue.front();
            queue.pop_front();
          }
        }
        if (n == nullptr) {
          std::this_thread::yield();
          continue;
        }
        n->~Node();
        small_pool::deallocate(n, kSize);
        live.fetch_sub(1, std::memory_order_relaxed);
        ++consumed;
      }
    });
    for (auto& t : producers) {
      t.join();
    }
    consumer.join();
    ASSERT_EQ(consumed, kProducers * kPerRound);
  }
  EXPECT_EQ(live.load(), 0);
  // Blocks are carved for the most that were ever live at once, plus what the threads' caches
  // may hold (two batches each) and a batch per thread in the shared list: not for the 120,000
  // allocations the rounds made.
  const std::size_t slack_blocks = (kProducers + 1) * 3 * small_pool::kBatch;
  EXPECT_LE(small_pool::slab_bytes() - slabs_before,
            (static_cast<std::size_t>(most_live.load()) + slack_blocks) * kSize);
}

TEST(SmallPool, AThreadThatEndsGivesItsCacheBack) {
  constexpr std::size_t kSize = 464;
  std::set<void*> held;
  std::thread([&] {
    std::vector<void*> blocks;
    for (int i = 0; i < 10; ++i) {
      blocks.push_back(small_pool::allocate(kSize));
    }
    for (void* p : blocks) {
      held.insert(p);
      small_pool::deallocate(p, kSize);
    }
  }).join();
  EXPECT_GE(small_pool::shared_free_blocks(kSize), held.size());
  // A new thread starts empty and takes the batch handed back last: the one just returned.
  std::size_t found = 0;
  std::thread([&] {
    std::vector<void*> blocks;
    for (std::uint32_t i = 0; i < small_pool::kBatch; ++i) {
      blocks.push_back(small_pool::allocate(kSize));
      found += held.count(blocks.back());
    }
    for (void* p : blocks) {
      small_pool::deallocate(p, kSize);
    }
  }).join();
  EXPECT_EQ(found, held.size());
}

TEST(SmallPool, LargeSizesAndSharedPointersGoThroughTheSameFrontDoor) {
  void* big = detail::small_allocate(4096);
  std::memset(big, 1, 4096);
  detail::small_deallocate(big, 4096);
  auto shared =
      std::allocate_shared<std::array<char, 100>>(detail::SmallAllocator<std::array<char, 100>>{});
  shared->fill('x');
  std::weak_ptr<std::array<char, 100>> weak = shared;
  shared.reset();
  EXPECT_TRUE(weak.expired());
}

// The pool's blocks are aligned for max_align_t; what needs more goes around it, aligned.
TEST(SmallPool, OverAlignedObjectsAreAlignedAnyway) {
  struct alignas(64) Wide {
    char bytes[64];
  };
  for (int i = 0; i < 8; ++i) {
    Wide wide{};
    wide.bytes[0] = static_cast<char>(i);
    Message* m = make_message([wide] { (void)wide; }, "wide");
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m) % 64, 0u);
    delete m;
    auto shared = std::allocate_shared<Wide>(detail::SmallAllocator<Wide>{});
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(shared.get()) % 64, 0u);
  }
}

}  // namespace
}  // namespace ember::runtime
