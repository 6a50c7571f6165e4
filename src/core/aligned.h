// core/aligned.h: a std allocator giving 64-byte (cache-line) aligned storage.
//
// Why: glibc's large allocations are only 16-byte aligned, and the kernels' 64-byte
// vector and AMX tile loads run measurably slower when their rows straddle cache
// lines (oneDNN's AMX matmul: 1.4 vs 1.9 TFLOP/s on a 16-byte aligned bf16 input,
// docs/kernels-matmul.md). Use AlignedVector<T> for kernel scratch and packed weights.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace lq {

template <class T>
struct CacheAlignedAllocator {
  using value_type = T;
  CacheAlignedAllocator() = default;
  template <class U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const CacheAlignedAllocator<U>&) const { return true; }
};

template <class T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

}  // namespace lq
