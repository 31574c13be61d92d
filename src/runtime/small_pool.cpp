// SPDX-License-Identifier: Apache-2.0
#include "runtime/small_pool.hpp"

#include <array>
#include <cassert>
#include <mutex>
#include <new>
#include <vector>

namespace ember::runtime::small_pool {
namespace {

struct FreeBlock {
  FreeBlock* next;
};

struct Batch {
  FreeBlock* head;
  std::uint32_t count;
};

struct SharedClass {
  std::mutex mu;
  std::vector<Batch> batches;
  std::size_t blocks = 0;
};

struct Shared {
  std::array<SharedClass, kClasses> classes;
  std::mutex slabs_mu;
  std::vector<void*> slabs;  // never freed: blocks of a slab circulate between threads
  std::size_t slab_bytes = 0;
};

// Never destroyed: threads may still free blocks while static destructors run at exit.
Shared& shared() {
  static Shared* instance = new Shared;
  return *instance;
}

constexpr std::size_t class_of(std::size_t size) noexcept {
  return size == 0 ? 0 : (size - 1) / kGranule;
}
constexpr std::size_t block_size(std::size_t cls) noexcept {
  return (cls + 1) * kGranule;
}

// `head` holds fewer than kBatch blocks; `spare` is empty or exactly one batch. Every move
// between them and the shared list is O(1): no list is ever walked.
struct ClassCache {
  FreeBlock* head = nullptr;
  std::uint32_t count = 0;
  FreeBlock* spare = nullptr;
};

// Trivially destructible, so it stays usable after the flusher below ran: a block freed by
// another thread_local's destructor later in the thread's exit goes straight to the shared list.
struct ThreadCache {
  std::array<ClassCache, kClasses> classes;
  bool registered = false;
  bool gone = false;
};
constinit thread_local ThreadCache tls_cache{};

// Called from noexcept frees: when the list cannot grow (out of memory), the batch is left
// unreachable, never handed out twice.
void push_shared(std::size_t cls, FreeBlock* head, std::uint32_t count) noexcept {
  SharedClass& sc = shared().classes[cls];
  std::lock_guard lock(sc.mu);
  try {
    sc.batches.push_back({head, count});
    sc.blocks += count;
  } catch (...) {
  }
}

FreeBlock* pop_shared(std::size_t cls, std::uint32_t& count) {
  SharedClass& sc = shared().classes[cls];
  std::lock_guard lock(sc.mu);
  if (sc.batches.empty()) {
    return nullptr;
  }
  Batch b = sc.batches.back();
  sc.batches.pop_back();
  sc.blocks -= b.count;
  count = b.count;
  return b.head;
}

FreeBlock* carve_slab(std::size_t cls) {
  const std::size_t size = block_size(cls);
  auto* slab = static_cast<char*>(::operator new(size* kBatch));
  {
    Shared& s = shared();
    std::lock_guard lock(s.slabs_mu);
    s.slabs.push_back(slab);
    s.slab_bytes += size * kBatch;
  }
  FreeBlock* head = nullptr;
  for (std::uint32_t i = kBatch; i-- > 0;) {
    auto* block = reinterpret_cast<FreeBlock*>(slab + i * size);
    block->next = head;
    head = block;
  }
  return head;
}

struct Flusher {
  Flusher() = default;
  Flusher(const Flusher&) = delete;
  Flusher& operator=(const Flusher&) = delete;
  ~Flusher() {
    ThreadCache& cache = tls_cache;
    for (std::size_t cls = 0; cls < kClasses; ++cls) {
      ClassCache& c = cache.classes[cls];
      if (c.head != nullptr) {
        push_shared(cls, c.head, c.count);
      }
      if (c.spare != nullptr) {
        push_shared(cls, c.spare, kBatch);
      }
      c = ClassCache{};
    }
    cache.gone = true;
  }
  void touch() noexcept {}
};
thread_local Flusher tls_flusher;

void register_thread(ThreadCache& cache) {
  cache.registered = true;
  tls_flusher.touch();  // constructs it, so its destructor runs at thread exit
}

[[gnu::noinline]] void* refill_and_allocate(ThreadCache& cache, std::size_t cls) {
  ClassCache& c = cache.classes[cls];
  std::uint32_t count = 0;
  FreeBlock* head = nullptr;
  if (c.spare != nullptr) {
    head = c.spare;
    count = kBatch;
    c.spare = nullptr;
  } else if ((head = pop_shared(cls, count)) == nullptr) {
    head = carve_slab(cls);
    count = kBatch;
  }
  if (cache.gone) {
    // The thread is exiting: keep nothing in a cache nobody will flush again.
    FreeBlock* block = head;
    if (count > 1) {
      push_shared(cls, head->next, count - 1);
    }
    return block;
  }
  c.head = head->next;
  c.count = count - 1;
  return head;
}

[[gnu::noinline]] void overflow(ThreadCache& cache, std::size_t cls) {
  ClassCache& c = cache.classes[cls];
  if (c.spare != nullptr) {
    push_shared(cls, c.spare, kBatch);
  }
  c.spare = c.head;
  c.head = nullptr;
  c.count = 0;
}

}  // namespace

void* allocate(std::size_t size) {
  assert(size <= detail::kSmallAllocMax);
  ThreadCache& cache = tls_cache;
  if (!cache.registered) [[unlikely]] {
    register_thread(cache);
  }
  const std::size_t cls = class_of(size);
  ClassCache& c = cache.classes[cls];
  if (FreeBlock* block = c.head) [[likely]] {
    c.head = block->next;
    --c.count;
    return block;
  }
  return refill_and_allocate(cache, cls);
}

void deallocate(void* block, std::size_t size) noexcept {
  if (block == nullptr) {
    return;
  }
  ThreadCache& cache = tls_cache;
  const std::size_t cls = class_of(size);
  auto* free_block = static_cast<FreeBlock*>(block);
  if (cache.gone) [[unlikely]] {
    free_block->next = nullptr;
    push_shared(cls, free_block, 1);
    return;
  }
  if (!cache.registered) [[unlikely]] {
    register_thread(cache);
  }
  ClassCache& c = cache.classes[cls];
  free_block->next = c.head;
  c.head = free_block;
  if (++c.count == kBatch) [[unlikely]] {
    overflow(cache, cls);
  }
}

std::size_t shared_free_blocks(std::size_t size) {
  SharedClass& sc = shared().classes[class_of(size)];
  std::lock_guard lock(sc.mu);
  return sc.blocks;
}

std::size_t slab_bytes() {
  Shared& s = shared();
  std::lock_guard lock(s.slabs_mu);
  return s.slab_bytes;
}

}  // namespace ember::runtime::small_pool

namespace ember::detail {

// AddressSanitizer finds a use after free only in memory it hands out itself: under it the
// pool steps aside (the pool's own tests still run it directly).
#if defined(__SANITIZE_ADDRESS__)
#define EMBER_SMALL_POOL_BYPASS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMBER_SMALL_POOL_BYPASS 1
#endif
#endif

void* small_allocate(std::size_t size) {
#ifdef EMBER_SMALL_POOL_BYPASS
  return ::operator new(size);
#else
  if (size > kSmallAllocMax) {
    return ::operator new(size);
  }
  return runtime::small_pool::allocate(size);
#endif
}

void small_deallocate(void* block, std::size_t size) noexcept {
#ifdef EMBER_SMALL_POOL_BYPASS
  (void)size;
  ::operator delete(block);
#else
  if (size > kSmallAllocMax) {
    ::operator delete(block);
    return;
  }
  runtime::small_pool::deallocate(block, size);
#endif
}

}  // namespace ember::detail
