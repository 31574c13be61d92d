// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <ember/small_alloc.hpp>

namespace ember::runtime {

/// The process's pool behind detail::small_allocate. Blocks come in size classes of 16 bytes up
/// to kSmallAllocMax. Each thread keeps up to two batches of free blocks per class; a thread that
/// frees more than it allocates (the sink of a fan-in) hands whole batches to a shared list under
/// one lock per batch, where threads that allocate more than they free (its producers) take
/// them. An empty pool carves a new slab of one batch.
///
/// Memory once carved stays in the pool: after a burst the process keeps its peak of small
/// blocks, ready for the next one, as size-class allocators do. A thread's cache goes to the
/// shared lists when the thread ends.
namespace small_pool {

inline constexpr std::size_t kGranule = 16;
inline constexpr std::size_t kClasses = detail::kSmallAllocMax / kGranule;
inline constexpr std::uint32_t kBatch = 64;

void* allocate(std::size_t size);
void deallocate(void* block, std::size_t size) noexcept;

/// For tests and reports: free blocks of the class of `size` in the shared lists (not in any
/// thread's cache), and bytes carved into slabs since the start.
[[nodiscard]] std::size_t shared_free_blocks(std::size_t size);
[[nodiscard]] std::size_t slab_bytes();

}  // namespace small_pool
}  // namespace ember::runtime
