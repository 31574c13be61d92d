// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ember/requires_cxx20.hpp>

#include <cstddef>
#include <new>

namespace ember::detail {

/// Memory for the small objects every message allocates (requests, their payloads): per-thread
/// free lists of fixed-size blocks, handed between threads in batches. A message is mostly freed
/// by another thread than the one that made it, which a general allocator pays for with a lock
/// per free. Sizes above kSmallAllocMax go to operator new.
inline constexpr std::size_t kSmallAllocMax = 512;
void* small_allocate(std::size_t size);
void small_deallocate(void* block, std::size_t size) noexcept;

/// A standard allocator over small_allocate, for std::allocate_shared.
template <class T>
struct SmallAllocator {
  using value_type = T;
  SmallAllocator() = default;
  template <class U>
  SmallAllocator(const SmallAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) {
      throw std::bad_array_new_length();
    }
    if constexpr (alignof(T) > alignof(std::max_align_t)) {
      return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{alignof(T)}));
    } else {
      return static_cast<T*>(small_allocate(n * sizeof(T)));  // it sends large sizes to new
    }
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (alignof(T) > alignof(std::max_align_t)) {
      ::operator delete (p, std::align_val_t{alignof(T)});
    } else {
      small_deallocate(p, n * sizeof(T));
    }
  }
  template <class U>
  bool operator==(const SmallAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace ember::detail
