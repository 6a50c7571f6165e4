// core/aligned.h: small buffers are cache-line aligned, large ones (kernel weight
// layouts) 2 MiB aligned so that transparent huge pages can back them; both hold
// their data like any vector.
#include "core/aligned.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

namespace lq {
namespace {

TEST(AlignedVector, SmallIsCacheLineAlignedLargeIsHugePageAligned) {
  for (size_t n : {size_t(1), size_t(100), size_t(4096), size_t(1) << 20}) {
    AlignedVector<float> v(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % 64, 0u) << n;
  }
  AlignedVector<uint8_t> big(CacheAlignedAllocator<uint8_t>::kHugeMin + 123);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data()) % (size_t(2) << 20), 0u);
  std::iota(big.begin(), big.end(), uint8_t(0));
  EXPECT_EQ(big[1000], uint8_t(1000 % 256));
  big.resize(10);  // shrinking keeps the buffer; freeing it uses the matching alignment
  big.shrink_to_fit();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data()) % 64, 0u);
}

}  // namespace
}  // namespace lq
