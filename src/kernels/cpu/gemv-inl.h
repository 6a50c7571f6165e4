// kernels/cpu/gemv-inl.h: per-target (Highway) code of the linear-layer kernels.
//
// Included once per SIMD target by gemv.cc through hwy/foreach_target.h, so the
// same source is compiled for AVX-512, AVX2, SSE4 and the portable fallback; the
// best one for the running CPU is chosen at run time (HWY_DYNAMIC_DISPATCH).
//
// Fused bf16 GEMV  Y[m, n] = sum_k X[m, k] * W[n, k]  for up to 4 rows of X:
//   * W (bf16 bits, row-major [N, K]) is streamed exactly once per call; the
//     rows of X are re-read from L1/L2 instead.
//   * bf16 -> f32 widening is free of shuffles: a vector of 2L bf16 values is
//     read as L uint32 lanes; `lane << 16` is the f32 value of the even element
//     and `lane & 0xFFFF0000` that of the odd element. X is pre-permuted once
//     per call into the matching order ([L even elements][L odd elements] per
//     block of 2L), so the inner loop is: 1 load + 1 shift + 1 and + 2 FMA per
//     2L weights and X row.
//   * Several W rows (kR) are processed together so each X vector load is
//     reused, and all kM rows of X share each W vector.
// Numerics: products of an fp32 x and a bf16 w are exact inside the FMA; the sum
// is accumulated in fp32 (L partial sums per (m, n), summed at the end, then a
// scalar fp32 tail for K mod 2L). The order depends only on K and the target,
// never on the thread count, so results are deterministic.

#if defined(LQ_KERNELS_CPU_GEMV_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LQ_KERNELS_CPU_GEMV_INL_H_
#undef LQ_KERNELS_CPU_GEMV_INL_H_
#else
#define LQ_KERNELS_CPU_GEMV_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/threads.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lq::cpu {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// The tile loops over kM/kR must be fully unrolled so the accumulators live in
// registers (GCC -O2 keeps the arrays on the stack otherwise).
#ifndef LQ_UNROLL
#define LQ_UNROLL _Pragma("GCC unroll 16")
#endif

#ifndef LQ_GEMV_PREFETCH_TILES
#define LQ_GEMV_PREFETCH_TILES 2
#endif
inline constexpr int kPrefetchTiles = LQ_GEMV_PREFETCH_TILES;

// Targets with 32 vector registers can keep more accumulators live.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
inline constexpr bool kManyRegs = true;
#else
inline constexpr bool kManyRegs = false;
#endif

// ---- bf16 <-> f32 conversion of arrays ----------------------------------------

inline void F32ToBf16N(const float* HWY_RESTRICT src, int64_t n, uint16_t* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::RebindToSigned<decltype(df)> di32;
  const hn::Rebind<uint16_t, decltype(df)> du16;  // L lanes of uint16 (half vector)
  const int64_t L = int64_t(hn::Lanes(df));
  const auto one = hn::Set(du32, 1u);
  const auto bias = hn::Set(du32, 0x7fffu);
  const auto quiet = hn::Set(du32, 0x00400000u);
  const auto abs_mask = hn::Set(du32, 0x7fffffffu);
  const auto inf_bits = hn::Set(di32, 0x7f800000);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto v = hn::LoadU(df, src + i);
    const auto u = hn::BitCast(du32, v);
    // Round to nearest even: add 0x7fff + (bit 16), keep the upper 16 bits.
    const auto rounded = hn::Add(u, hn::Add(bias, hn::And(hn::ShiftRight<16>(u), one)));
    // NaN: keep sign and payload top bits, force the quiet bit (as f32_to_bf16).
    // (integer test, as in the scalar code: exponent all ones, mantissa != 0)
    const auto mag = hn::BitCast(di32, hn::And(u, abs_mask));
    const auto is_nan = hn::RebindMask(du32, hn::Gt(mag, inf_bits));
    const auto bits = hn::ShiftRight<16>(hn::IfThenElse(is_nan, hn::Or(u, quiet), rounded));
    // Values are < 2^16, so the saturating i32 -> u16 demotion is exact.
    hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, bits)), du16, dst + i);
  }
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

inline void Bf16ToF32N(const uint16_t* HWY_RESTRICT src, int64_t n, float* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const int64_t L = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto u = hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, src + i)));
    hn::StoreU(hn::BitCast(df, u), df, dst + i);
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

// ---- GEMV ----------------------------------------------------------------------

// One tile: kM rows of X (pre-permuted, row stride K) times kR consecutive rows
// of W starting at w0; writes y[m * ldy + r]. Kv = vector part of K (multiple of 2L).
#if HWY_TARGET == HWY_SCALAR
// Single-lane fallback (no 2:1 reinterpretation possible): plain fp32 loop;
// GemvBf16w passes Kv = 0 on this target.
template <int kM, int kR>
HWY_INLINE void GemvTile(const float* HWY_RESTRICT xp, int64_t K, int64_t /*Kv*/,
                         const uint16_t* HWY_RESTRICT w0, const uint16_t* /*pf0*/,
                         float* HWY_RESTRICT y, int64_t ldy) {
  for (int m = 0; m < kM; ++m)
    for (int r = 0; r < kR; ++r) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += xp[m * K + k] * bf16_to_f32(w0[r * K + k]);
      y[m * ldy + r] = s;
    }
}
#else
template <int kM, int kR>
HWY_INLINE void GemvTile(const float* HWY_RESTRICT xp, int64_t K, int64_t Kv,
                         const uint16_t* HWY_RESTRICT w0, const uint16_t* pf0,
                         float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::Repartition<uint16_t, decltype(df)> du16;  // 2L lanes of uint16 (full vector)
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const auto hi_mask = hn::Set(du32, 0xFFFF0000u);
  // With a single row of X, separate even/odd accumulators break the FMA chain.
  constexpr int kA = kM == 1 ? 2 : 1;
  V acc[kM][kR][kA];
  LQ_UNROLL
  for (int m = 0; m < kM; ++m)
    LQ_UNROLL
    for (int r = 0; r < kR; ++r)
      LQ_UNROLL
      for (int a = 0; a < kA; ++a) acc[m][r][a] = hn::Zero(df);

  for (int64_t k = 0; k < Kv; k += 2 * L) {
    V xe[kM], xo[kM];
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) {
      xe[m] = hn::LoadU(df, xp + m * K + k);
      xo[m] = hn::LoadU(df, xp + m * K + k + L);
    }
    LQ_UNROLL
    for (int r = 0; r < kR; ++r) {
      // Prefetch the same position kPrefetchTiles tiles ahead: rows are often
      // exactly one 4 KiB page, where the hardware prefetchers stop; measured
      // +20% on DRAM-resident weights (docs/kernels-matmul.md).
      if (kPrefetchTiles) hwy::Prefetch(pf0 + r * K + k);
      const auto wu = hn::BitCast(du32, hn::LoadU(du16, w0 + r * K + k));
      const V we = hn::BitCast(df, hn::ShiftLeft<16>(wu));
      const V wo = hn::BitCast(df, hn::And(wu, hi_mask));
      LQ_UNROLL
      for (int m = 0; m < kM; ++m) {
        acc[m][r][0] = hn::MulAdd(we, xe[m], acc[m][r][0]);
        acc[m][r][kA - 1] = hn::MulAdd(wo, xo[m], acc[m][r][kA - 1]);
      }
    }
  }
  LQ_UNROLL
  for (int m = 0; m < kM; ++m) {
    LQ_UNROLL
    for (int r = 0; r < kR; ++r) {
      V a = acc[m][r][0];
      if constexpr (kA == 2) a = hn::Add(a, acc[m][r][1]);
      float s = hn::GetLane(hn::SumOfLanes(df, a));
      const float* xt = xp + m * K;
      const uint16_t* wt = w0 + r * K;
      for (int64_t k = Kv; k < K; ++k) s += xt[k] * bf16_to_f32(wt[k]);
      y[m * ldy + r] = s;
    }
  }
}
#endif  // HWY_TARGET == HWY_SCALAR

// Rows [n0, n1) of W for kM rows of X.
template <int kM>
void GemvRange(const float* xp, int64_t K, int64_t Kv, const uint16_t* W, int64_t n0, int64_t n1,
               float* Y, int64_t N) {
  constexpr int kR = (kM <= 2 || kManyRegs) ? 4 : 2;
  // Rows to prefetch: kPrefetchTiles tiles ahead, clamped to this thread's range
  // (near the end the current tile is "prefetched" again, which is harmless).
  auto pf = [&](int64_t n, int64_t rows) {
    const int64_t ahead = n + int64_t(kPrefetchTiles) * kR;
    return W + (ahead + rows <= n1 ? ahead : n) * K;
  };
  int64_t n = n0;
  for (; n + kR <= n1; n += kR) GemvTile<kM, kR>(xp, K, Kv, W + n * K, pf(n, kR), Y + n, N);
  for (; n < n1; ++n) GemvTile<kM, 1>(xp, K, Kv, W + n * K, pf(n, 1), Y + n, N);
}

// Y[M, N] = X[M, K] * W[N, K]^T; X rounded to bf16 first when round_x.
inline void GemvBf16w(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                      bool round_x) {
  const hn::ScalableTag<float> df;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t Kv = HWY_TARGET == HWY_SCALAR ? 0 : K / (2 * L) * (2 * L);
  constexpr int64_t kMaxRows = 4;
  std::vector<float> xp(size_t(std::min(M, kMaxRows) * K));
  for (int64_t m0 = 0; m0 < M; m0 += kMaxRows) {
    const int64_t mr = std::min(kMaxRows, M - m0);
    // Permute (and optionally round) the rows of X: per block of 2L,
    // [x0 x2 x4 ...][x1 x3 x5 ...]; the tail [Kv, K) keeps its order.
    for (int64_t m = 0; m < mr; ++m) {
      const float* x = X + (m0 + m) * K;
      float* d = xp.data() + m * K;
      auto val = [&](int64_t k) { return round_x ? round_bf16(x[k]) : x[k]; };
      for (int64_t k = 0; k < Kv; k += 2 * L)
        for (int64_t i = 0; i < L; ++i) {
          d[k + i] = val(k + 2 * i);
          d[k + L + i] = val(k + 2 * i + 1);
        }
      for (int64_t k = Kv; k < K; ++k) d[k] = val(k);
    }
    const float* xpp = xp.data();
    float* Ym = Y + m0 * N;
    parallel_for(
        N,
        [&](int64_t n0, int64_t n1) {
          switch (mr) {
            case 1: GemvRange<1>(xpp, K, Kv, W, n0, n1, Ym, N); break;
            case 2: GemvRange<2>(xpp, K, Kv, W, n0, n1, Ym, N); break;
            case 3: GemvRange<3>(xpp, K, Kv, W, n0, n1, Ym, N); break;
            default: GemvRange<4>(xpp, K, Kv, W, n0, n1, Ym, N); break;
          }
        },
        /*grain=*/16);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lq::cpu
HWY_AFTER_NAMESPACE();

#endif  // include guard (toggled per target)
