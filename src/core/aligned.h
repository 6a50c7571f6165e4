// core/aligned.h: a std allocator giving 64-byte (cache-line) aligned storage.
//
// Why: glibc's large allocations are only 16-byte aligned, and the kernels' 64-byte
// vector and AMX tile loads run measurably slower when their rows straddle cache
// lines (oneDNN's AMX matmul: 1.4 vs 1.9 TFLOP/s on a 16-byte aligned bf16 input,
// docs/kernels-matmul.md). Use AlignedVector<T> for kernel scratch and packed weights.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <vector>

namespace lq {

template <class T>
struct CacheAlignedAllocator {
  using value_type = T;
  // Buffers of 4 MiB or more (quantized weights in kernel layouts, weight tiles) are
  // 2 MiB aligned and advised to use transparent huge pages: decode streams them
  // once per token, and with 4 KiB pages the TLB misses cost measurable bandwidth.
  static constexpr size_t kHugeMin = size_t(4) << 20;
  static std::align_val_t align_for(size_t bytes) {
    return std::align_val_t(bytes >= kHugeMin ? (size_t(2) << 20) : 64);
  }
  CacheAlignedAllocator() = default;
  template <class U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    void* p = ::operator new(bytes, align_for(bytes));
    if (bytes >= kHugeMin) ::madvise(p, bytes, MADV_HUGEPAGE);  // advisory: errors ignored
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) { ::operator delete(p, align_for(n * sizeof(T))); }
  template <class U>
  bool operator==(const CacheAlignedAllocator<U>&) const { return true; }
};

template <class T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

}  // namespace lq
