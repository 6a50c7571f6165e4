// kernels/cpu/gemv.cc: runtime-dispatched entry points of the Highway kernels in
// gemv-inl.h (fused bf16 GEMV, bf16 <-> f32 array conversion).
//
// foreach_target.h re-includes this file once per SIMD target compiled in;
// HWY_EXPORT/HWY_DYNAMIC_DISPATCH pick the best target the CPU supports at run
// time (AVX-512 on the reference machine, AVX2 on older ones), so the library is
// built for the x86-64 baseline and never needs -march=native.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/gemv.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/gemv-inl.h"

#if HWY_ONCE

#include "core/error.h"
#include "kernels/cpu/matmul.h"

namespace lq::cpu {

HWY_EXPORT(GemvBf16w);
HWY_EXPORT(F32ToBf16N);
HWY_EXPORT(Bf16ToF32N);

void gemv_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                Precision p) {
  LQ_CHECK(M >= 0 && K >= 0 && N >= 0, "gemv_bf16w: negative shape M={} K={} N={}", M, K, N);
  if (M == 0 || N == 0) return;
  LQ_CHECK(Y != nullptr, "gemv_bf16w: null output Y for M={} N={}", M, N);
  if (K == 0) {
    std::fill(Y, Y + M * N, 0.0f);
    return;
  }
  LQ_CHECK(X != nullptr && W != nullptr, "gemv_bf16w: null input (X={}, W={}) for M={} K={} N={}",
           static_cast<const void*>(X), static_cast<const void*>(W), M, K, N);
  HWY_DYNAMIC_DISPATCH(GemvBf16w)(X, M, K, W, N, Y, p == Precision::BF16);
}

void f32_to_bf16_n(const float* src, int64_t n, uint16_t* dst) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(F32ToBf16N)(src, n, dst);
}

void bf16_to_f32_n(const uint16_t* src, int64_t n, float* dst) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(Bf16ToF32N)(src, n, dst);
}

}  // namespace lq::cpu

#endif  // HWY_ONCE
