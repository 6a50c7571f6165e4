// kernels/cpu/qgemv-inl.h: per-target (Highway) code of the quantized GEMVs
// declared in qgemv.h. Included once per SIMD target by qgemv.cc through
// hwy/foreach_target.h; HWY_DYNAMIC_DISPATCH picks the best one at run time.
//
// All kernels process one output row n at a time for kM (1..4) rows of X, so W
// is streamed once and X rows are re-read from L1/L2. Codes are widened to 32-bit
// lanes (PromoteTo), decoded exactly to fp32, and accumulated with fp32 FMAs in
// two independent chains per X row; group/block sums are scaled once per group.
//   affine: w = float(q - zero) (exact integer), sum per group, times scale.
//           int4: per 32-column block b, L 16-bit words of chunk b/4 shifted right
//           by 4 * (b % 4) and masked give the codes of L consecutive columns.
//   NF4:    w = code[nibble] (table lookup: AVX-512 permute, else a gather),
//           sum per block, times absmax. X is pre-permuted per 2L block into
//           [even elements][odd elements] to match high/low nibbles.
//   FP8:    the code c read as a signed byte, sign-extended to 16 bits, shifted left
//           by 7 and with bit 14 cleared is the IEEE half (sign << 15 | (c & 0x7f) << 7)
//           whose value is exactly fp8(c) * 2^-8 for every code, subnormals included
//           (the half's exponent bias 15 is the E4M3 bias 7 plus 8); the hardware
//           half -> float conversion (VCVTPH2PS / F16C) widens it. The factor 2^8 is
//           applied to the fp32 sum (exact). 4 instructions per L weights.
// Numerics: the per-element products are exact inside the FMA; the sums are fp32
// in a fixed order that depends only on K and the target, never on threads.

#if defined(LQ_KERNELS_CPU_QGEMV_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LQ_KERNELS_CPU_QGEMV_INL_H_
#undef LQ_KERNELS_CPU_QGEMV_INL_H_
#else
#define LQ_KERNELS_CPU_QGEMV_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/threads.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/cpu/qgemv.h"

HWY_BEFORE_NAMESPACE();
namespace lq::cpu {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

#ifndef LQ_UNROLL
#define LQ_UNROLL _Pragma("GCC unroll 16")
#endif

// Software prefetch, in every decode loop here: kQPrefetchBytes ahead of the byte
// being read, in the same weight stream (rows are contiguous), once per 64-byte
// line. Weight rows of 1-8 KiB end at page boundaries, where the hardware
// prefetchers stop; without it these loops wait on DRAM. Prefetches never fault;
// past the matrix end they are merely wasted.
inline constexpr int64_t kQPrefetchBytes = 4096;

// ---- affine int4 / int8 ---------------------------------------------------------

// One output row: y[m * ldy] = sum_g scale_g * sum_{k in g} x[m][k] * (q[k] - z_g).
// xp: kM rows with stride ldx, in kernel column order (zero padded to ldx).
template <int kM, int kBits>
HWY_INLINE void AffineRow(const QAffineView& w, int64_t n, const float* HWY_RESTRICT xp, int64_t ldx,
                          float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const uint8_t* HWY_RESTRICT qrow = w.q + n * w.row_bytes;
  const float* sc = w.scales + n * w.n_groups;
  const int32_t* zr = w.zeros + n * w.n_groups;
  const auto m15 = hn::Set(di, 15);
  V total[kM];
  float stail[kM];
  LQ_UNROLL
  for (int m = 0; m < kM; ++m) {
    total[m] = hn::Zero(df);
    stail[m] = 0.0f;
  }
  // Vector steps need 16 columns per step; targets wider than 16 float lanes do not
  // exist on x86, but stay correct via the scalar loop. int8 rows take Int8Rows
  // below except on the scalar target.
  const bool vec4 = kBits == 4 && L <= 16 && HWY_TARGET != HWY_SCALAR;
  for (int64_t g = 0; g < w.n_groups; ++g) {
    const int64_t s = w.group_start[g], e = w.group_start[g + 1];
    const int32_t z = w.signed8 ? 0 : zr[g];
    const auto zv = hn::Set(di, z);
    V a0[kM], a1[kM];
    float sacc[kM];
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) {
      a0[m] = hn::Zero(df);
      a1[m] = hn::Zero(df);
      sacc[m] = 0.0f;
    }
    int64_t k = s;
    auto scalar_step = [&](int64_t kk) {
      const float c = float(qaffine_code(w, n, kk) - z);
      LQ_UNROLL
      for (int m = 0; m < kM; ++m) sacc[m] += xp[m * ldx + kk] * c;
    };
    if (vec4) {
      for (; k < e && (k & 31); ++k) scalar_step(k);
      const hn::Rebind<uint16_t, decltype(df)> d16;
      for (; k + 32 <= e; k += 32) {
        // Block k/32: words of chunk k/128, codes in bits [4t, 4t + 4), t = (k/32) % 4.
        const uint16_t* pw = reinterpret_cast<const uint16_t*>(qrow + (k >> 7) * 64);
        const int sh = int((k >> 5) & 3) * 4;
        if ((k & 127) == 0) hwy::Prefetch(qrow + (k >> 7) * 64 + kQPrefetchBytes);
        for (int64_t h = 0; h < 32; h += 2 * L) {
          const auto v0 = hn::PromoteTo(di, hn::LoadU(d16, pw + h));
          const auto v1 = hn::PromoteTo(di, hn::LoadU(d16, pw + h + L));
          const V w0 = hn::ConvertTo(df, hn::Sub(hn::And(hn::ShiftRightSame(v0, sh), m15), zv));
          const V w1 = hn::ConvertTo(df, hn::Sub(hn::And(hn::ShiftRightSame(v1, sh), m15), zv));
          LQ_UNROLL
          for (int m = 0; m < kM; ++m) {
            a0[m] = hn::MulAdd(w0, hn::LoadU(df, xp + m * ldx + k + h), a0[m]);
            a1[m] = hn::MulAdd(w1, hn::LoadU(df, xp + m * ldx + k + h + L), a1[m]);
          }
        }
      }
    }
    for (; k < e; ++k) scalar_step(k);
    const V sv = hn::Set(df, sc[g]);
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) {
      total[m] = hn::MulAdd(sv, hn::Add(a0[m], a1[m]), total[m]);
      stail[m] += sc[g] * sacc[m];
    }
  }
  LQ_UNROLL
  for (int m = 0; m < kM; ++m) y[m * ldy] = hn::GetLane(hn::SumOfLanes(df, total[m])) + stail[m];
}

// kR int8 rows n, n + rs, n + 2 rs, ... at once: y[r * rs + m * ldy] = sum_g scale_g *
// sum_{k in g} x[m][k] * (q[k] - z_g), two accumulation chains per row and X row, a
// row's arithmetic the same for any kR and rs (results never depend on how rows are
// grouped). kR = 2 with rows far apart (rs = half the thread's rows) gives each
// thread two independent sequential weight streams: decode from DRAM is limited
// by memory-level parallelism, and two adjacent rows (rs = 1) share pages and
// measured no faster than one stream. Signed codes (signed8) are sign-extended
// with no zero subtraction.
template <int kM, int kR>
HWY_INLINE void Int8Rows(const QAffineView& w, int64_t n, int64_t rs, const float* HWY_RESTRICT xp,
                         int64_t ldx, float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const hn::Rebind<int8_t, decltype(df)> d8s;
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const uint8_t* HWY_RESTRICT qrow[kR];
  for (int r = 0; r < kR; ++r) qrow[r] = w.q + (n + r * rs) * w.row_bytes;
  V total[kR][kM];
  float stail[kR][kM];
  LQ_UNROLL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) {
      total[r][m] = hn::Zero(df);
      stail[r][m] = 0.0f;
    }
  auto load = [&](int r, int64_t k, hn::Vec<decltype(di)> zv) {
    if (w.signed8) return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8s, reinterpret_cast<const int8_t*>(qrow[r] + k))));
    return hn::ConvertTo(df, hn::Sub(hn::PromoteTo(di, hn::LoadU(d8, qrow[r] + k)), zv));
  };
  for (int64_t g = 0; g < w.n_groups; ++g) {
    const int64_t s = w.group_start[g], e = w.group_start[g + 1];
    int32_t z[kR];
    hn::Vec<decltype(di)> zv[kR];
    V a0[kR][kM], a1[kR][kM];
    float sacc[kR][kM];
    LQ_UNROLL
    for (int r = 0; r < kR; ++r) {
      z[r] = qaffine_zero(w, n + r * rs, g);
      zv[r] = hn::Set(di, z[r]);
      LQ_UNROLL
      for (int m = 0; m < kM; ++m) {
        a0[r][m] = hn::Zero(df);
        a1[r][m] = hn::Zero(df);
        sacc[r][m] = 0.0f;
      }
    }
    int64_t k = s;
    for (; k + 2 * L <= e; k += 2 * L) {
      if (((k - s) & 63) == 0)
        LQ_UNROLL
        for (int r = 0; r < kR; ++r) hwy::Prefetch(qrow[r] + k + kQPrefetchBytes);
      LQ_UNROLL
      for (int r = 0; r < kR; ++r) {
        const V w0 = load(r, k, zv[r]);
        const V w1 = load(r, k + L, zv[r]);
        LQ_UNROLL
        for (int m = 0; m < kM; ++m) {
          a0[r][m] = hn::MulAdd(w0, hn::LoadU(df, xp + m * ldx + k), a0[r][m]);
          a1[r][m] = hn::MulAdd(w1, hn::LoadU(df, xp + m * ldx + k + L), a1[r][m]);
        }
      }
    }
    for (; k < e; ++k)
      LQ_UNROLL
      for (int r = 0; r < kR; ++r) {
        const float c = float(qaffine_code(w, n + r * rs, k) - z[r]);
        LQ_UNROLL
        for (int m = 0; m < kM; ++m) sacc[r][m] += xp[m * ldx + k] * c;
      }
    LQ_UNROLL
    for (int r = 0; r < kR; ++r) {
      const float scale = w.scales[(n + r * rs) * w.n_groups + g];
      const V sv = hn::Set(df, scale);
      LQ_UNROLL
      for (int m = 0; m < kM; ++m) {
        total[r][m] = hn::MulAdd(sv, hn::Add(a0[r][m], a1[r][m]), total[r][m]);
        stail[r][m] += scale * sacc[r][m];
      }
    }
  }
  LQ_UNROLL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL
    for (int m = 0; m < kM; ++m)
      y[r * rs + m * ldy] = hn::GetLane(hn::SumOfLanes(df, total[r][m])) + stail[r][m];
}

template <int kM>
void AffineRange(const QAffineView& w, const float* xp, int64_t ldx, int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  int64_t n = n0;
  if (w.bits == 8 && HWY_TARGET != HWY_SCALAR) {
    // Two streams where the registers allow (kM <= 2 on 32-register targets).
    for_row_streams(
        n0, n1, kM == 1 || (kM == 2 && HWY_TARGET <= HWY_AVX3),
        [&](int64_t r, int64_t h) { Int8Rows<kM, 2>(w, r, h, xp, ldx, Y + r, ldy); },
        [&](int64_t r) { Int8Rows<kM, 1>(w, r, 0, xp, ldx, Y + r, ldy); });
    return;
  }
  for (; n < n1; ++n) {
    if (w.bits == 4) AffineRow<kM, 4>(w, n, xp, ldx, Y + n, ldy);
    else AffineRow<kM, 8>(w, n, xp, ldx, Y + n, ldy);
  }
}

// xp: M rows (stride ldx) already permuted/rounded/padded by the caller.
inline void QgemvAffine(const QAffineView& w, const float* xp, int64_t M, int64_t ldx, float* Y) {
  const int64_t N = w.N;
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mr = std::min<int64_t>(4, M - m0);
    const float* x = xp + m0 * ldx;
    float* Ym = Y + m0 * N;
    parallel_for(
        N,
        [&](int64_t n0, int64_t n1) {
          switch (mr) {
            case 1: AffineRange<1>(w, x, ldx, n0, n1, Ym, N); break;
            case 2: AffineRange<2>(w, x, ldx, n0, n1, Ym, N); break;
            case 3: AffineRange<3>(w, x, ldx, n0, n1, Ym, N); break;
            default: AffineRange<4>(w, x, ldx, n0, n1, Ym, N); break;
          }
        },
        /*grain=*/16);
  }
}

// ---- NF4 -----------------------------------------------------------------------

template <class D, class VI>
HWY_INLINE hn::Vec<D> Nf4Lookup(D df, const float* HWY_RESTRICT code, hn::Vec<D> table, VI idx) {
#if HWY_TARGET <= HWY_AVX3 && HWY_ARCH_X86
  (void)code;
  return hn::TableLookupLanes(table, hn::IndicesFromVec(df, idx));
#else
  (void)table;
  return hn::GatherIndex(df, code, idx);
#endif
}

// The 16 codes as one vector where Nf4Lookup uses a register table (AVX-512), else
// unused (Nf4Lookup gathers from `code`).
template <class D>
HWY_INLINE hn::Vec<D> Nf4Table(D df, const float* HWY_RESTRICT code) {
#if HWY_TARGET <= HWY_AVX3 && HWY_ARCH_X86
  return hn::LoadU(df, code);
#else
  (void)code;
  return hn::Zero(df);
#endif
}

// kR rows n, n + rs, ... (see Int8Rows for why two streams) for kM rows of X:
// y[r * rs + m * ldy]; each row's arithmetic independent of kR and rs.
// xp: kM rows (stride K) permuted per 2L block into [even][odd].
template <int kM, int kR>
HWY_INLINE void Nf4Rows(const QNf4View& w, int64_t n, int64_t rs, const float* HWY_RESTRICT xp,
                        float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t K = w.K, bs = w.blocksize;
  const uint8_t* HWY_RESTRICT prow[kR];
  const float* am[kR];
  LQ_UNROLL
  for (int r = 0; r < kR; ++r) {
    prow[r] = w.packed + (n + r * rs) * (K / 2);
    am[r] = w.absmax + (n + r * rs) * (K / bs);
  }
  const auto m15 = hn::Set(di, 15);
  const V table = Nf4Table(df, w.code);
  V total[kR][kM];
  LQ_UNROLL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) total[r][m] = hn::Zero(df);
  for (int64_t k0 = 0; k0 < K; k0 += bs) {
    V ae[kR][kM], ao[kR][kM];
    LQ_UNROLL
    for (int r = 0; r < kR; ++r)
      LQ_UNROLL
      for (int m = 0; m < kM; ++m) {
        ae[r][m] = hn::Zero(df);
        ao[r][m] = hn::Zero(df);
      }
    for (int64_t k = k0; k < k0 + bs; k += 2 * L) {
      if (((k - k0) & 127) == 0)  // one prefetch per 64-byte line of codes
        LQ_UNROLL
        for (int r = 0; r < kR; ++r) hwy::Prefetch(prow[r] + (k >> 1) + kQPrefetchBytes);
      LQ_UNROLL
      for (int r = 0; r < kR; ++r) {
        const auto vb = hn::PromoteTo(di, hn::LoadU(d8, prow[r] + (k >> 1)));
        const V we = Nf4Lookup(df, w.code, table, hn::ShiftRight<4>(vb));
        const V wo = Nf4Lookup(df, w.code, table, hn::And(vb, m15));
        LQ_UNROLL
        for (int m = 0; m < kM; ++m) {
          ae[r][m] = hn::MulAdd(we, hn::LoadU(df, xp + m * K + k), ae[r][m]);
          ao[r][m] = hn::MulAdd(wo, hn::LoadU(df, xp + m * K + k + L), ao[r][m]);
        }
      }
    }
    LQ_UNROLL
    for (int r = 0; r < kR; ++r) {
      const V av = hn::Set(df, am[r][k0 / bs]);
      LQ_UNROLL
      for (int m = 0; m < kM; ++m) total[r][m] = hn::MulAdd(av, hn::Add(ae[r][m], ao[r][m]), total[r][m]);
    }
  }
  LQ_UNROLL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) y[r * rs + m * ldy] = hn::GetLane(hn::SumOfLanes(df, total[r][m]));
}

// Two streams (row i of each half of the range) where the registers allow.
template <int kM>
void Nf4Range(const QNf4View& w, const float* xp, int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  for_row_streams(
      n0, n1, kM == 1 || (kM == 2 && HWY_TARGET <= HWY_AVX3),
      [&](int64_t r, int64_t h) { Nf4Rows<kM, 2>(w, r, h, xp, Y + r, ldy); },
      [&](int64_t r) { Nf4Rows<kM, 1>(w, r, 0, xp, Y + r, ldy); });
}

// Requires qgemv_nf4_supported(w) (checked by the caller).
inline void QgemvNf4(const QNf4View& w, const float* X, int64_t M, float* Y, bool round_x) {
  const hn::ScalableTag<float> df;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t K = w.K, N = w.N;
  std::vector<float> xp(size_t(std::min<int64_t>(M, 4) * K));
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mr = std::min<int64_t>(4, M - m0);
    for (int64_t m = 0; m < mr; ++m) {
      const float* x = X + (m0 + m) * K;
      float* d = xp.data() + m * K;
      for (int64_t k = 0; k < K; k += 2 * L)
        for (int64_t i = 0; i < L; ++i) {
          d[k + i] = round_x ? round_bf16(x[k + 2 * i]) : x[k + 2 * i];
          d[k + L + i] = round_x ? round_bf16(x[k + 2 * i + 1]) : x[k + 2 * i + 1];
        }
    }
    const float* xpp = xp.data();
    float* Ym = Y + m0 * N;
    parallel_for(
        N,
        [&](int64_t n0, int64_t n1) {
          switch (mr) {
            case 1: Nf4Range<1>(w, xpp, n0, n1, Ym, N); break;
            case 2: Nf4Range<2>(w, xpp, n0, n1, Ym, N); break;
            case 3: Nf4Range<3>(w, xpp, n0, n1, Ym, N); break;
            default: Nf4Range<4>(w, xpp, n0, n1, Ym, N); break;
          }
        },
        /*grain=*/16);
  }
}

// ---- FP8 -----------------------------------------------------------------------

// kR rows n, n + rs, ... (see Int8Rows for why two streams) for kM rows of X:
// y[r * rs + m * ldy]; each row's arithmetic independent of kR and rs.
// xs: kM rows (stride K) of the (exactly decoded) activations; xscale: their scales.
template <int kM, int kR>
HWY_INLINE void Fp8Rows(const QFp8View& w, int64_t n, int64_t rs, const float* HWY_RESTRICT xs,
                        const float* HWY_RESTRICT xscale, float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> df;
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t K = w.K;
  const uint8_t* HWY_RESTRICT wr[kR];
  LQ_UNROLL
  for (int r = 0; r < kR; ++r) wr[r] = w.w + (n + r * rs) * K;
  const hn::Rebind<int8_t, decltype(df)> d8s;
  const hn::Rebind<int16_t, decltype(df)> d16;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const auto keep = hn::Set(d16, int16_t(~0x4000));
  V a0[kR][kM], a1[kR][kM];
  LQ_UNROLL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) {
      a0[r][m] = hn::Zero(df);
      a1[r][m] = hn::Zero(df);
    }
  // fp8(c) * 2^-8 exactly (see the file comment).
  auto decode = [&](const uint8_t* p) {
    const auto c = hn::PromoteTo(d16, hn::LoadU(d8s, reinterpret_cast<const int8_t*>(p)));
    return hn::PromoteTo(df, hn::BitCast(dh, hn::And(hn::ShiftLeft<7>(c), keep)));
  };
  int64_t k = 0;
  if (HWY_TARGET != HWY_SCALAR) {
    for (; k + 2 * L <= K; k += 2 * L) {
      if ((k & 63) == 0)
        LQ_UNROLL
        for (int r = 0; r < kR; ++r) hwy::Prefetch(wr[r] + k + kQPrefetchBytes);
      LQ_UNROLL
      for (int r = 0; r < kR; ++r) {
        const V w0 = decode(wr[r] + k);
        const V w1 = decode(wr[r] + k + L);
        LQ_UNROLL
        for (int m = 0; m < kM; ++m) {
          a0[r][m] = hn::MulAdd(w0, hn::LoadU(df, xs + m * K + k), a0[r][m]);
          a1[r][m] = hn::MulAdd(w1, hn::LoadU(df, xs + m * K + k + L), a1[r][m]);
        }
      }
    }
  }
  LQ_UNROLL
  for (int r = 0; r < kR; ++r) {
    const float ws = w.scale[w.per_channel ? n + r * rs : 0];
    LQ_UNROLL
    for (int m = 0; m < kM; ++m) {
      float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0[r][m], a1[r][m]))) * 256.0f;  // exact
      for (int64_t kk = k; kk < K; ++kk) s += xs[m * K + kk] * fp8e4m3_to_f32(wr[r][kk]);
      y[r * rs + m * ldy] = (s * xscale[m]) * ws;
    }
  }
}

// Two streams (row i of each half of the range) where the registers allow.
template <int kM>
void Fp8Range(const QFp8View& w, const float* xs, const float* rs, int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  for_row_streams(
      n0, n1, kM == 1 || (kM == 2 && HWY_TARGET <= HWY_AVX3),
      [&](int64_t r, int64_t h) { Fp8Rows<kM, 2>(w, r, h, xs, rs, Y + r, ldy); },
      [&](int64_t r) { Fp8Rows<kM, 1>(w, r, 0, xs, rs, Y + r, ldy); });
}

// xs: M rows of decoded activations (stride K); rs: [M] row scales (1 for weight-only).
inline void QgemvFp8(const QFp8View& w, const float* xs, const float* rs, int64_t M, float* Y) {
  const int64_t K = w.K, N = w.N;
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mr = std::min<int64_t>(4, M - m0);
    const float* x = xs + m0 * K;
    const float* r = rs + m0;
    float* Ym = Y + m0 * N;
    parallel_for(
        N,
        [&](int64_t n0, int64_t n1) {
          switch (mr) {
            case 1: Fp8Range<1>(w, x, r, n0, n1, Ym, N); break;
            case 2: Fp8Range<2>(w, x, r, n0, n1, Ym, N); break;
            case 3: Fp8Range<3>(w, x, r, n0, n1, Ym, N); break;
            default: Fp8Range<4>(w, x, r, n0, n1, Ym, N); break;
          }
        },
        /*grain=*/16);
  }
}

// ---- FP8 activation quantization ------------------------------------------------

// out[i] = fp8e4m3_to_f32(f32_to_fp8e4m3(x[i] / scale)), bit-exact: |v| >= 2^-6 (E4M3
// normals) keeps 3 mantissa bits by an integer round-to-nearest-even on the fp32
// bits; |v| < 2^-6 (E4M3 subnormals, multiples of 2^-9) rounds by adding and
// subtracting 2^14 (whose fp32 ulp is 2^-9); then min(., 448) and the sign. NaN
// stays NaN (the scalar cast maps it to the NaN code).
inline void Fp8QuantDequant(const float* HWY_RESTRICT x, int64_t n, float scale, float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const V vs = hn::Set(df, scale);
  const auto sign_bit = hn::Set(du, 0x80000000u);
  const auto half_ulp = hn::Set(du, 0x7ffffu);
  const auto one = hn::Set(du, 1u);
  const auto keep = hn::Set(du, 0xfff00000u);
  const V magic = hn::Set(df, 16384.0f);
  const V min_normal = hn::Set(df, 0.015625f);
  const V vmax = hn::Set(df, kFp8E4M3Max);
  int64_t i = 0;
  if (HWY_TARGET != HWY_SCALAR) {
    for (; i + L <= n; i += L) {
      const V v = hn::Div(hn::LoadU(df, x + i), vs);
      const auto u = hn::BitCast(du, v);
      const auto a = hn::AndNot(sign_bit, u);
      const V av = hn::BitCast(df, a);
      const auto rn = hn::And(hn::Add(a, hn::Add(half_ulp, hn::And(hn::ShiftRight<20>(a), one))), keep);
      const V sub = hn::Sub(hn::Add(av, magic), magic);
      V r = hn::IfThenElse(hn::Lt(av, min_normal), sub, hn::BitCast(df, rn));
      r = hn::Min(r, vmax);
      r = hn::Or(r, hn::BitCast(df, hn::And(u, sign_bit)));
      r = hn::IfThenElse(hn::Eq(v, v), r, v);  // NaN in, NaN out
      hn::StoreU(r, df, out + i);
    }
  }
  for (; i < n; ++i) out[i] = fp8e4m3_to_f32(f32_to_fp8e4m3(x[i] / scale));
}

// ---- prefill tile dequantizers ------------------------------------------------
// Rows [n0, n1) of W in fp32 into dst ([n1 - n0][K]), exactly the scalar
// definitions (qgemv.cc: dequant_*_rows_ref): affine s * (float(q) - z) (the
// subtraction is exact, one rounding in the multiply), NF4 code[nibble] * absmax.
// SIMD over runs that lie inside one group / block, scalar elsewhere.

inline void DequantAffineRowsF32(const QAffineView& w, int64_t n0, int64_t n1, float* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const hn::RebindToUnsigned<decltype(df)> du;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t K = w.K;
  for (int64_t n = n0; n < n1; ++n) {
    float* HWY_RESTRICT d = dst + (n - n0) * K;
    const uint8_t* HWY_RESTRICT row = w.q + n * w.row_bytes;
    for (int64_t g = 0; g < w.n_groups; ++g) {
      const float s = w.scales[n * w.n_groups + g];
      const float z = float(qaffine_zero(w, n, g));
      const auto vs = hn::Set(df, s), vz = hn::Set(df, z);
      int64_t k = w.group_start[g];
      const int64_t ke = w.group_start[g + 1];
      if (w.bits == 8 && w.signed8) {
        const hn::Rebind<int8_t, decltype(df)> d8s;
        const int8_t* srow = reinterpret_cast<const int8_t*>(row);
        for (; k + L <= ke; k += L) {
          const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8s, srow + k)));
          hn::StoreU(hn::Mul(vs, hn::Sub(q, vz)), df, d + k);
        }
      } else if (w.bits == 8) {
        for (; k + L <= ke; k += L) {
          const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, row + k)));
          hn::StoreU(hn::Mul(vs, hn::Sub(q, vz)), df, d + k);
        }
      } else if (L <= 32) {
        // 4-bit: a run of L columns inside one 32-column run t of a 128-column chunk
        // is L consecutive 16-bit words of the chunk shifted right by 4t.
        const auto m15 = hn::Set(du, 15u);
        while (k < ke) {
          const int64_t run_end = std::min<int64_t>(ke, (k | 31) + 1);
          const int shift = int(4 * ((k >> 5) & 3));
          const uint16_t* words = reinterpret_cast<const uint16_t*>(row + (k >> 7) * 64);
          for (; k + L <= run_end; k += L) {
            const auto wv = hn::PromoteTo(du, hn::LoadU(d16, words + (k & 31)));
            const auto q = hn::ConvertTo(df, hn::BitCast(di, hn::And(hn::ShiftRightSame(wv, shift), m15)));
            hn::StoreU(hn::Mul(vs, hn::Sub(q, vz)), df, d + k);
          }
          for (; k < run_end; ++k) d[k] = s * (float(qaffine_code(w, n, k)) - z);
        }
      }
      for (; k < ke; ++k) d[k] = s * (float(qaffine_code(w, n, k)) - z);
    }
  }
}

inline void DequantNf4RowsF32(const QNf4View& w, int64_t n0, int64_t n1, float* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  using V = hn::Vec<decltype(df)>;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t K = w.K, bs = w.blocksize;
  const auto m15 = hn::Set(di, 15);
  const V table = Nf4Table(df, w.code);
  auto scalar = [&](int64_t i) {
    const uint8_t b = w.packed[i >> 1];
    return w.code[(i & 1) ? (b & 15) : (b >> 4)] * w.absmax[i / bs];
  };
  // Flat index range of the rows; 2L elements (L bytes) per step inside one block.
  const int64_t i0 = n0 * K, i1 = n1 * K;
  int64_t i = i0;
  while (i < i1) {
    const int64_t block_end = std::min(i1, (i / bs + 1) * bs);
    if ((i & 1) == 0 && HWY_TARGET != HWY_SCALAR) {
      const V am = hn::Set(df, w.absmax[i / bs]);
      for (; i + 2 * L <= block_end; i += 2 * L) {
        const auto vb = hn::PromoteTo(di, hn::LoadU(d8, w.packed + (i >> 1)));
        const V we = hn::Mul(Nf4Lookup(df, w.code, table, hn::ShiftRight<4>(vb)), am);
        const V wo = hn::Mul(Nf4Lookup(df, w.code, table, hn::And(vb, m15)), am);
        hn::StoreInterleaved2(we, wo, df, dst + (i - i0));
      }
    }
    for (; i < block_end; ++i) dst[i - i0] = scalar(i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lq::cpu
HWY_AFTER_NAMESPACE();

#endif  // include guard (toggled per target)
