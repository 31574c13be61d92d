// SPDX-License-Identifier: Apache-2.0
// Heap bytes an idle service costs, counted by replacing operator new/delete in this binary (its
// own executable, so the counting touches no other test). The target is 2 KB per idle service
// measured by the spawn benchmark with glibc's allocator (mallinfo2, chunk overhead included);
// this test counts the bytes requested, a little less, and fails well before the target is lost
// (the deque that once added 600 B per service would fail it).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <ember/ember.hpp>
#include <new>
#include <string>
#include <vector>

namespace {

std::atomic<std::int64_t> g_live_bytes{0};

// A header in front of each block remembers its size; it is as large as the block's alignment
// so the block stays aligned.
void* counted_alloc(std::size_t size, std::size_t align) {
  align = std::max<std::size_t>(align, 16);
  const std::size_t total = (size + align + align - 1) / align * align;
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(align, total));
  if (base == nullptr) {
    throw std::bad_alloc();
  }
  *reinterpret_cast<std::size_t*>(base + align - sizeof(std::size_t)) = size;
  g_live_bytes.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
  return base + align;
}

void counted_free(void* p, std::size_t align) noexcept {
  if (p == nullptr) {
    return;
  }
  align = std::max<std::size_t>(align, 16);
  auto* block = static_cast<unsigned char*>(p);
  const std::size_t size = *reinterpret_cast<std::size_t*>(block - sizeof(std::size_t));
  g_live_bytes.fetch_sub(static_cast<std::int64_t>(size), std::memory_order_relaxed);
  std::free(block - align);
}

}  // namespace

void* operator new(std::size_t n) {
  return counted_alloc(n, 16);
}
void* operator new[](std::size_t n) {
  return counted_alloc(n, 16);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 16);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 16);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  counted_free(p, 16);
}
void operator delete[](void* p) noexcept {
  counted_free(p, 16);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p, 16);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p, 16);
}
void operator delete(void* p, std::align_val_t a) noexcept {
  counted_free(p, static_cast<std::size_t>(a));
}
void operator delete[](void* p, std::align_val_t a) noexcept {
  counted_free(p, static_cast<std::size_t>(a));
}
void operator delete(void* p, std::size_t, std::align_val_t a) noexcept {
  counted_free(p, static_cast<std::size_t>(a));
}
void operator delete[](void* p, std::size_t, std::align_val_t a) noexcept {
  counted_free(p, static_cast<std::size_t>(a));
}

namespace {

class Idle : public ember::Service {};

// Requested bytes; 1,769 at the time of writing. At 1,825 the spawn benchmark measured 2,043 B with
// glibc's chunk overhead (about 13 blocks per service), against the 2,048 B target. A change that
// needs more must save elsewhere first.
constexpr double kBudget = 1850;

TEST(Memory, AnIdleServiceStaysUnderItsBudget) {
  ember::set_log_level(ember::LogLevel::warn);
  ember::NodeConfig config;
  config.worker_threads = 2;
  ember::Node node(config);
  ASSERT_TRUE(node.start());
  auto config_of = [](const std::string& name) {
    ember::ServiceConfig c;
    c.name = name;
    return c;
  };
  constexpr int kWarmUp = 200;  // first-use allocations: thread locals, tables' first growth
  constexpr int kMeasured = 4000;
  std::vector<std::string> names;
  for (int i = 0; i < kWarmUp + kMeasured; ++i) {
    names.push_back("idle" + std::to_string(i));
  }
  for (int i = 0; i < kWarmUp; ++i) {
    ASSERT_TRUE(node.add_service(std::make_unique<Idle>(), config_of(names[i])));
  }
  const std::int64_t before = g_live_bytes.load();
  for (int i = kWarmUp; i < kWarmUp + kMeasured; ++i) {
    ASSERT_TRUE(node.add_service(std::make_unique<Idle>(), config_of(names[i])));
  }
  const double per_service = static_cast<double>(g_live_bytes.load() - before) / kMeasured;
  RecordProperty("bytes_per_idle_service", std::to_string(per_service));
  std::printf("requested heap bytes per idle service: %.0f\n", per_service);
  EXPECT_GT(per_service, 0);
  EXPECT_LE(per_service, kBudget) << "an idle service grew; see docs/performance.md (spawn)";
  ASSERT_TRUE(node.stop());
}

}  // namespace
