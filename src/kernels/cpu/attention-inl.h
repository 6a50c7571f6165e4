// kernels/cpu/attention-inl.h: per-target (Highway) body of attention_causal.
// Included once per SIMD target by attention.cc through hwy/foreach_target.h; never
// include it elsewhere. docs/kernels-attention.md describes the tiling in detail.
//
// Two code paths share the same online-softmax state per query row r:
//   m[r] running max of the scaled logits, l[r] running sum of exp(s - m[r]),
//   O[r][:] running sum of exp(s - m[r]) * v  (rescaled by exp(m_old - m_new)
//   whenever the max grows). The output is O / l.
//
// Prefill (T > kDecodeMaxT): a work item is (kv head, tile of Tq queries); its rows
//   are the Tq x G (query, head-of-group) pairs, so each K/V tile is converted to
//   fp32 once and used by all rows. Scores are computed "rows in lanes":
//   Qt[D][Rp] (queries transposed once per item) x K tile -> St[key][row], a
//   register-blocked GEMM micro-kernel (kQkKB keys x kQkRB row vectors, broadcast
//   K[j][d], FMAs over d). The softmax then works on whole vectors of rows (max,
//   exp, sum, mask all vertical), and P.V is a second micro-kernel with D in
//   lanes (kPvRR rows x kPvDV vectors of D, broadcast P[j][r]).
// Decode (T <= kDecodeMaxT): few rows, so lanes go over D: a work item is
//   (kv head, chunk of keys) -- split-K -- producing partial (m, l, O) that the
//   caller merges with log-sum-exp in a fixed order. Scores are dot products over
//   D, four keys at a time, reduced with a transpose-add (4 sums per reduction).
//
// Numerics: fp32 products and accumulation (bf16 K/V widen exactly to fp32;
// Precision::BF16 rounds q to bf16 first). exp is Highway's Exp (~1 ulp), and
// exp(-inf) = 0 exactly, so masked keys contribute exactly nothing.

#if defined(LQ_KERNELS_CPU_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LQ_KERNELS_CPU_ATTENTION_INL_H_
#undef LQ_KERNELS_CPU_ATTENTION_INL_H_
#else
#define LQ_KERNELS_CPU_ATTENTION_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/precision.h"
#include "core/threads.h"
#include "hwy/aligned_allocator.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/cpu/attention.h"

HWY_BEFORE_NAMESPACE();
namespace lq::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using AF = hn::ScalableTag<float>;
using AV = hn::Vec<AF>;

// Register blocking: AVX-512 has 32 vector registers, the others 16.
#if HWY_ARCH_X86 && (HWY_TARGET <= HWY_AVX3)
inline constexpr int kQkRB = 4;  // row vectors per score micro-tile (x kQkKB keys)
inline constexpr int kPvDV = 4;  // D vectors per P.V micro-tile (x kPvRR rows)
inline constexpr int kDotNR = 4; // rows per decode dot micro-tile (x 4 keys)
#else
inline constexpr int kQkRB = 2;
inline constexpr int kPvDV = 2;
inline constexpr int kDotNR = 2;
#endif
inline constexpr int kQkKB = 4;
inline constexpr int kPvRR = 4;

inline constexpr int64_t kDecodeMaxT = 4;    // T <= this: split-K decode path
inline constexpr int64_t kPrefillRows = 64;  // target rows (queries x group heads) per item
inline constexpr int64_t kPrefillTk = 64;    // keys per prefill tile
inline constexpr int64_t kDecodeTk = 64;     // keys per decode tile (K+V fp32 tiles fit L1)
inline constexpr int64_t kDecodeChunk = 512; // nominal keys per split-K work item
inline constexpr int64_t kDecodeMaxChunks = 64;

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

HWY_INLINE size_t RoundUpTo(size_t x, size_t m) { return (x + m - 1) / m * m; }

// Everything one call needs, shared by all work items.
struct AttnArgs {
  const float* q;
  int64_t T, Hq, Hkv, D, G;
  KVView kv;
  int64_t pos0;
  float scale;
  bool round_q;
  float* out;
};

// bf16 bits -> float for one vector.
HWY_INLINE AV LoadBf16(AF df, const uint16_t* HWY_RESTRICT p) {
  const hn::RebindToUnsigned<AF> du;
  const hn::Rebind<uint16_t, AF> d16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, p))));
}

// n consecutive cache rows of length D starting at element offset `off` as fp32 rows
// of stride Dpad (zero padded). Returns a pointer to them: `buf`, or the cache itself
// when it is already fp32 with no padding needed.
HWY_INLINE const float* LoadRows(const void* base, bool bf16, int64_t off, size_t n, size_t D,
                                 size_t Dpad, float* HWY_RESTRICT buf) {
  if (!bf16) {
    const float* src = static_cast<const float*>(base) + off;
    if (Dpad == D) return src;
    for (size_t j = 0; j < n; ++j) {
      std::memcpy(buf + j * Dpad, src + j * D, D * sizeof(float));
      std::fill(buf + j * Dpad + D, buf + (j + 1) * Dpad, 0.0f);
    }
    return buf;
  }
  const AF df;
  const size_t N = hn::Lanes(df);
  const uint16_t* src = static_cast<const uint16_t*>(base) + off;
  // Without padding the tile is one contiguous span.
  const size_t rows = (Dpad == D) ? 1 : n;
  const size_t len = (Dpad == D) ? n * D : D;
  for (size_t j = 0; j < rows; ++j) {
    const uint16_t* s = src + j * D;
    float* d = buf + j * Dpad;
    size_t i = 0;
    for (; i + N <= len; i += N) hn::StoreU(LoadBf16(df, s + i), df, d + i);
    for (; i < len; ++i) d[i] = bf16_to_f32(s[i]);
    if (Dpad != D) std::fill(d + D, d + Dpad, 0.0f);
  }
  return buf;
}

// ---------------------------------------------------------------------------
// Prefill scores: St[j][r] = sum_d Qt[d][r] * K[j][d] for KB keys x RB row vectors.
template <int KB, int RB>
HWY_INLINE void QkMicro(const float* HWY_RESTRICT Qt, size_t Rp, const float* HWY_RESTRICT K,
                        size_t D, size_t j0, size_t r0, float* HWY_RESTRICT St) {
  const AF df;
  const size_t N = hn::Lanes(df);
  AV acc[KB][RB];
  HWY_UNROLL(4)
  for (int kb = 0; kb < KB; ++kb) {
    HWY_UNROLL(4)
    for (int rb = 0; rb < RB; ++rb) acc[kb][rb] = hn::Zero(df);
  }
  const float* krow = K + j0 * D;
  for (size_t d = 0; d < D; ++d) {
    const float* qrow = Qt + d * Rp + r0;
    AV qv[RB];
    HWY_UNROLL(4)
    for (int rb = 0; rb < RB; ++rb) qv[rb] = hn::Load(df, qrow + rb * N);
    HWY_UNROLL(4)
    for (int kb = 0; kb < KB; ++kb) {
      const AV kk = hn::Set(df, krow[kb * D + d]);
      HWY_UNROLL(4)
      for (int rb = 0; rb < RB; ++rb) acc[kb][rb] = hn::MulAdd(kk, qv[rb], acc[kb][rb]);
    }
  }
  HWY_UNROLL(4)
  for (int kb = 0; kb < KB; ++kb) {
    HWY_UNROLL(4)
    for (int rb = 0; rb < RB; ++rb) hn::Store(acc[kb][rb], df, St + (j0 + kb) * Rp + r0 + rb * N);
  }
}

template <int KB>
HWY_INLINE void QkKeys(const float* Qt, size_t Rp, const float* K, size_t D, size_t j0, float* St) {
  const size_t N = hn::Lanes(AF());
  const size_t nv = Rp / N;
  size_t v = 0;
  for (; v + kQkRB <= nv; v += kQkRB) QkMicro<KB, kQkRB>(Qt, Rp, K, D, j0, v * N, St);
  switch (nv - v) {
    case 1: QkMicro<KB, 1>(Qt, Rp, K, D, j0, v * N, St); break;
    case 2: if constexpr (kQkRB > 2) QkMicro<KB, 2>(Qt, Rp, K, D, j0, v * N, St); break;
    case 3: if constexpr (kQkRB > 3) QkMicro<KB, 3>(Qt, Rp, K, D, j0, v * N, St); break;
    default: break;
  }
}

HWY_NOINLINE void ScoresRowsInLanes(const float* Qt, size_t Rp, const float* K, size_t D, size_t n,
                                    float* St) {
  size_t j = 0;
  for (; j + kQkKB <= n; j += kQkKB) QkKeys<kQkKB>(Qt, Rp, K, D, j, St);
  for (; j < n; ++j) QkKeys<1>(Qt, Rp, K, D, j, St);
}

// Online softmax update for St[j][r] (j < n, all Rp rows), keys at positions k0 + j.
// Scales the logits, masks keys after each row's position (if `mask`), replaces St
// by p = exp(s - m_new) and updates m, l; alpha[r] = exp(m_old - m_new).
HWY_NOINLINE void SoftmaxRowsInLanes(float* HWY_RESTRICT St, size_t n, size_t Rp, int64_t k0,
                                     const float* HWY_RESTRICT rowpos, bool mask, float scale,
                                     float* HWY_RESTRICT m, float* HWY_RESTRICT l,
                                     float* HWY_RESTRICT alpha) {
  const AF df;
  const size_t N = hn::Lanes(df);
  const AV vscale = hn::Set(df, scale);
  const AV neg_inf = hn::Set(df, kNegInf);
  for (size_t r = 0; r < Rp; r += N) {
    AV vmax = neg_inf;
    if (mask) {
      const AV vpos = hn::Load(df, rowpos + r);
      for (size_t j = 0; j < n; ++j) {
        float* p = St + j * Rp + r;
        const auto visible = hn::Le(hn::Set(df, float(k0 + int64_t(j))), vpos);
        const AV s = hn::IfThenElse(visible, hn::Mul(hn::Load(df, p), vscale), neg_inf);
        hn::Store(s, df, p);
        vmax = hn::Max(vmax, s);
      }
    } else {
      for (size_t j = 0; j < n; ++j) {
        float* p = St + j * Rp + r;
        const AV s = hn::Mul(hn::Load(df, p), vscale);
        hn::Store(s, df, p);
        vmax = hn::Max(vmax, s);
      }
    }
    const AV m_old = hn::Load(df, m + r);
    const AV m_new = hn::Max(m_old, vmax);
    // A row with no visible key so far keeps m = -inf; subtract 0 instead so that
    // exp(-inf - 0) = 0 rather than exp(-inf + inf) = NaN.
    const AV m_use = hn::IfThenZeroElse(hn::Eq(m_new, neg_inf), m_new);
    const AV a = hn::Exp(df, hn::Sub(m_old, m_use));
    AV sum = hn::Zero(df);
    for (size_t j = 0; j < n; ++j) {
      float* p = St + j * Rp + r;
      const AV e = hn::Exp(df, hn::Sub(hn::Load(df, p), m_use));
      hn::Store(e, df, p);
      sum = hn::Add(sum, e);
    }
    hn::Store(a, df, alpha + r);
    hn::Store(hn::Add(hn::Mul(hn::Load(df, l + r), a), sum), df, l + r);
    hn::Store(m_new, df, m + r);
  }
}

// ---------------------------------------------------------------------------
// O[r][:] = O[r][:] * alpha[r] + sum_j P(j, r) * V[j][:], P(j, r) = P[j * pj + r * pr],
// for RR rows x DV vectors of D starting at row r0, vector column c0 (in floats).
template <int RR, int DV>
HWY_INLINE void PvMicro(const float* HWY_RESTRICT P, size_t pj, size_t pr, size_t n,
                        const float* HWY_RESTRICT V, size_t vstride, const float* HWY_RESTRICT alpha,
                        float* HWY_RESTRICT O, size_t Dp, size_t r0, size_t c0) {
  const AF df;
  const size_t N = hn::Lanes(df);
  AV acc[RR][DV];
  HWY_UNROLL(4)
  for (int i = 0; i < RR; ++i) {
    const AV a = hn::Set(df, alpha[r0 + i]);
    HWY_UNROLL(4)
    for (int c = 0; c < DV; ++c) acc[i][c] = hn::Mul(hn::LoadU(df, O + (r0 + i) * Dp + c0 + c * N), a);
  }
  const float* pcol = P + r0 * pr;
  for (size_t j = 0; j < n; ++j) {
    AV v[DV];
    HWY_UNROLL(4)
    for (int c = 0; c < DV; ++c) v[c] = hn::LoadU(df, V + j * vstride + c0 + c * N);
    HWY_UNROLL(4)
    for (int i = 0; i < RR; ++i) {
      const AV p = hn::Set(df, pcol[j * pj + i * pr]);
      HWY_UNROLL(4)
      for (int c = 0; c < DV; ++c) acc[i][c] = hn::MulAdd(p, v[c], acc[i][c]);
    }
  }
  HWY_UNROLL(4)
  for (int i = 0; i < RR; ++i) {
    HWY_UNROLL(4)
    for (int c = 0; c < DV; ++c) hn::StoreU(acc[i][c], df, O + (r0 + i) * Dp + c0 + c * N);
  }
}

template <int RR>
HWY_INLINE void PvRows(const float* P, size_t pj, size_t pr, size_t n, const float* V, size_t vstride,
                       const float* alpha, float* O, size_t Dp, size_t r0) {
  const size_t N = hn::Lanes(AF());
  const size_t nv = Dp / N;
  size_t v = 0;
  for (; v + kPvDV <= nv; v += kPvDV) PvMicro<RR, kPvDV>(P, pj, pr, n, V, vstride, alpha, O, Dp, r0, v * N);
  switch (nv - v) {
    case 1: PvMicro<RR, 1>(P, pj, pr, n, V, vstride, alpha, O, Dp, r0, v * N); break;
    case 2: if constexpr (kPvDV > 2) PvMicro<RR, 2>(P, pj, pr, n, V, vstride, alpha, O, Dp, r0, v * N); break;
    case 3: if constexpr (kPvDV > 3) PvMicro<RR, 3>(P, pj, pr, n, V, vstride, alpha, O, Dp, r0, v * N); break;
    default: break;
  }
}

HWY_NOINLINE void PvAccumulate(const float* P, size_t pj, size_t pr, size_t n, const float* V,
                               size_t vstride, const float* alpha, float* O, size_t Dp, size_t R) {
  size_t r = 0;
  for (; r + kPvRR <= R; r += kPvRR) PvRows<kPvRR>(P, pj, pr, n, V, vstride, alpha, O, Dp, r);
  switch (R - r) {
    case 1: PvRows<1>(P, pj, pr, n, V, vstride, alpha, O, Dp, r); break;
    case 2: PvRows<2>(P, pj, pr, n, V, vstride, alpha, O, Dp, r); break;
    case 3: PvRows<3>(P, pj, pr, n, V, vstride, alpha, O, Dp, r); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------
// Decode scores: S[r][j] = Qr[r][:] . K[j][:] over Dp (both zero padded).

// Sums of the lanes of a, b, c, d -> out[0..3], via a transpose-add tree (one
// horizontal reduction for four dot products instead of four).
#if HWY_TARGET == HWY_SCALAR
HWY_INLINE void Sum4(AV a, AV b, AV c, AV d, float* out) {
  out[0] = hn::GetLane(a);
  out[1] = hn::GetLane(b);
  out[2] = hn::GetLane(c);
  out[3] = hn::GetLane(d);
}
#else
template <class D4>
HWY_INLINE void Sum4Blocks(D4 d, hn::Vec<D4> v, float* out) {
  if constexpr (hn::MaxLanes(D4()) > 4) {
    const hn::Half<D4> dh;
    Sum4Blocks(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)), out);
  } else {
    hn::StoreU(v, d, out);
  }
}

HWY_INLINE void Sum4(AV a, AV b, AV c, AV d, float* out) {
  const AF df;
  static_assert(hn::MaxLanes(AF()) >= 4, "vectors of at least 4 floats");
  // Per 128-bit block: [a0 b0 a1 b1] + [a2 b2 a3 b3] = [a02 b02 a13 b13].
  const AV ab = hn::Add(hn::InterleaveLower(df, a, b), hn::InterleaveUpper(df, a, b));
  const AV cd = hn::Add(hn::InterleaveLower(df, c, d), hn::InterleaveUpper(df, c, d));
  // 64-bit interleave: [a02 b02 c02 d02] + [a13 b13 c13 d13] = block sums of a,b,c,d.
  const hn::Repartition<double, AF> d64;
  const AV lo = hn::BitCast(df, hn::InterleaveLower(d64, hn::BitCast(d64, ab), hn::BitCast(d64, cd)));
  const AV hi = hn::BitCast(df, hn::InterleaveUpper(d64, hn::BitCast(d64, ab), hn::BitCast(d64, cd)));
  Sum4Blocks(df, hn::Add(lo, hi), out);
}
#endif

template <int NR>
HWY_INLINE void DotMicro(const float* HWY_RESTRICT Qr, size_t Dp, const float* HWY_RESTRICT K,
                         size_t kstride, size_t n, size_t r0, float* HWY_RESTRICT S,
                         size_t sstride) {
  const AF df;
  const size_t N = hn::Lanes(df);
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    AV acc[NR][4];
    HWY_UNROLL(4)
    for (int r = 0; r < NR; ++r) {
      HWY_UNROLL(4)
      for (int k = 0; k < 4; ++k) acc[r][k] = hn::Zero(df);
    }
    for (size_t c = 0; c < Dp; c += N) {
      AV kv[4];
      HWY_UNROLL(4)
      for (int k = 0; k < 4; ++k) kv[k] = hn::LoadU(df, K + (j + k) * kstride + c);
      HWY_UNROLL(4)
      for (int r = 0; r < NR; ++r) {
        const AV qv = hn::Load(df, Qr + (r0 + r) * Dp + c);
        HWY_UNROLL(4)
        for (int k = 0; k < 4; ++k) acc[r][k] = hn::MulAdd(qv, kv[k], acc[r][k]);
      }
    }
    HWY_UNROLL(4)
    for (int r = 0; r < NR; ++r)
      Sum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], S + (r0 + r) * sstride + j);
  }
  for (; j < n; ++j) {
    for (int r = 0; r < NR; ++r) {
      AV acc = hn::Zero(df);
      for (size_t c = 0; c < Dp; c += N)
        acc = hn::MulAdd(hn::Load(df, Qr + (r0 + r) * Dp + c), hn::LoadU(df, K + j * kstride + c), acc);
      S[(r0 + r) * sstride + j] = hn::GetLane(hn::SumOfLanes(df, acc));
    }
  }
}

HWY_NOINLINE void ScoresKeysInRows(const float* Qr, size_t R, size_t Dp, const float* K,
                                   size_t kstride, size_t n, float* S, size_t sstride) {
  size_t r = 0;
  for (; r + kDotNR <= R; r += kDotNR) DotMicro<kDotNR>(Qr, Dp, K, kstride, n, r, S, sstride);
  for (; r < R; ++r) DotMicro<1>(Qr, Dp, K, kstride, n, r, S, sstride);
}

// Online softmax update for S[r][j] (row stride sstride >= RoundUp(n, N)), keys at
// positions k0 + j; row r sees keys <= rowpos[r].
HWY_NOINLINE void SoftmaxKeysInLanes(float* HWY_RESTRICT S, size_t R, size_t n, size_t sstride,
                                     int64_t k0, const float* HWY_RESTRICT rowpos, float scale,
                                     float* HWY_RESTRICT m, float* HWY_RESTRICT l,
                                     float* HWY_RESTRICT alpha) {
  const AF df;
  const size_t N = hn::Lanes(df);
  const size_t nv = RoundUpTo(n, N);
  const AV vscale = hn::Set(df, scale);
  const AV neg_inf = hn::Set(df, kNegInf);
  for (size_t r = 0; r < R; ++r) {
    float* s = S + r * sstride;
    // Last visible key of this row within the tile (also hides the padding lanes).
    const float last = float(std::min<int64_t>(int64_t(rowpos[r]), k0 + int64_t(n) - 1));
    const AV vlast = hn::Set(df, last);
    AV vmax = neg_inf;
    for (size_t j = 0; j < nv; j += N) {
      const auto visible = hn::Le(hn::Iota(df, float(k0 + int64_t(j))), vlast);
      const AV v = hn::IfThenElse(visible, hn::Mul(hn::Load(df, s + j), vscale), neg_inf);
      hn::Store(v, df, s + j);
      vmax = hn::Max(vmax, v);
    }
    const float m_old = m[r];
    const float m_new = std::max(m_old, hn::GetLane(hn::MaxOfLanes(df, vmax)));
    const float m_use = (m_new == kNegInf) ? 0.0f : m_new;  // see SoftmaxRowsInLanes
    const AV vm = hn::Set(df, m_use);
    AV sum = hn::Zero(df);
    for (size_t j = 0; j < nv; j += N) {
      const AV e = hn::Exp(df, hn::Sub(hn::Load(df, s + j), vm));
      hn::Store(e, df, s + j);
      sum = hn::Add(sum, e);
    }
    const float a = std::exp(m_old - m_use);
    alpha[r] = a;
    l[r] = l[r] * a + hn::GetLane(hn::SumOfLanes(df, sum));
    m[r] = m_new;
  }
}

// ---------------------------------------------------------------------------
// Per-thread scratch: one aligned allocation carved into named buffers.
class Scratch {
 public:
  float* take(size_t n) {
    float* p = mem_.get() + used_;
    used_ += RoundUpTo(n, 16);  // keep every buffer 64-byte aligned
    LQ_ASSERT(used_ <= cap_);
    return p;
  }
  void reserve(size_t total) {
    cap_ = total;
    used_ = 0;
    mem_ = hwy::AllocateAligned<float>(total);
    LQ_CHECK(mem_ != nullptr, "attention_causal: out of memory for {} floats of scratch", total);
  }
  static size_t need(std::initializer_list<size_t> sizes) {
    size_t t = 0;
    for (size_t s : sizes) t += RoundUpTo(s, 16);
    return t;
  }

 private:
  hwy::AlignedFreeUniquePtr<float[]> mem_;
  size_t cap_ = 0, used_ = 0;
};

inline float QueryValue(const AttnArgs& a, float x) { return a.round_q ? round_bf16(x) : x; }

// ---------------------------------------------------------------------------
// Prefill: all rows of kv head hk for queries [t0, t1), keys [0, pos0 + t1).
struct PrefillBufs {
  float *Qt, *St, *Kf, *Vf, *O, *m, *l, *alpha, *rowpos;
};

void PrefillItem(const AttnArgs& a, int64_t hk, int64_t t0, int64_t t1, const PrefillBufs& b) {
  const AF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), Dp = RoundUpTo(D, N);
  const int64_t G = a.G;
  const size_t R = size_t((t1 - t0) * G), Rp = RoundUpTo(R, N);

  // Qt[d][r], row r = (t0 + r / G, head hk * G + r % G); padded rows are zero.
  for (size_t r = 0; r < Rp; ++r) {
    if (r < R) {
      const int64_t t = t0 + int64_t(r) / G, h = hk * G + int64_t(r) % G;
      const float* qr = a.q + (t * a.Hq + h) * a.D;
      for (size_t d = 0; d < D; ++d) b.Qt[d * Rp + r] = QueryValue(a, qr[d]);
      b.rowpos[r] = float(a.pos0 + t);
    } else {
      for (size_t d = 0; d < D; ++d) b.Qt[d * Rp + r] = 0.0f;
      b.rowpos[r] = float(a.pos0 + t1 - 1);
    }
    b.m[r] = kNegInf;
    b.l[r] = 0.0f;
  }
  std::fill(b.O, b.O + Rp * Dp, 0.0f);

  const int64_t kend = a.pos0 + t1;  // the last row sees keys [0, kend)
  const int64_t first_pos = a.pos0 + t0;
  const int64_t head_off = hk * a.kv.head_stride;
  for (int64_t k0 = 0; k0 < kend; k0 += kPrefillTk) {
    const size_t n = size_t(std::min(kPrefillTk, kend - k0));
    const float* K = LoadRows(a.kv.k, a.kv.bf16, head_off + k0 * a.D, n, D, D, b.Kf);
    const float* V = LoadRows(a.kv.v, a.kv.bf16, head_off + k0 * a.D, n, D, Dp, b.Vf);
    ScoresRowsInLanes(b.Qt, Rp, K, D, n, b.St);
    // Only tiles reaching past the first row's position need the causal mask.
    const bool mask = k0 + int64_t(n) - 1 > first_pos;
    SoftmaxRowsInLanes(b.St, n, Rp, k0, b.rowpos, mask, a.scale, b.m, b.l, b.alpha);
    PvAccumulate(b.St, Rp, 1, n, V, Dp, b.alpha, b.O, Dp, R);
  }

  for (size_t r = 0; r < R; ++r) {
    const int64_t t = t0 + int64_t(r) / G, h = hk * G + int64_t(r) % G;
    float* o = a.out + (t * a.Hq + h) * a.D;
    const float lr = b.l[r];  // > 0: key 0 is visible to every row
    for (size_t d = 0; d < D; ++d) o[d] = b.O[r * Dp + d] / lr;
  }
}

void Prefill(const AttnArgs& a) {
  const size_t N = hn::Lanes(AF());
  const int64_t Tq = std::max<int64_t>(1, kPrefillRows / a.G);
  const int64_t nqt = (a.T + Tq - 1) / Tq;
  const int64_t items = nqt * a.Hkv;
  const size_t D = size_t(a.D), Dp = RoundUpTo(D, N);
  const size_t Rp = RoundUpTo(size_t(Tq * a.G), N);
  const size_t Tk = size_t(kPrefillTk);
  const size_t total = Scratch::need({D * Rp, Tk * Rp, Tk * D, Tk * Dp, Rp * Dp, Rp, Rp, Rp, Rp});
  // Items in decreasing cost (later query tiles see more keys), dealt round-robin:
  // a static schedule that balances the causal triangle.
  parallel_run([&](int tid, int nt) {
    if (tid >= items) return;
    Scratch s;
    s.reserve(total);
    PrefillBufs b;
    b.Qt = s.take(D * Rp);
    b.St = s.take(Tk * Rp);
    b.Kf = s.take(Tk * D);
    b.Vf = s.take(Tk * Dp);
    b.O = s.take(Rp * Dp);
    b.m = s.take(Rp);
    b.l = s.take(Rp);
    b.alpha = s.take(Rp);
    b.rowpos = s.take(Rp);
    for (int64_t i = tid; i < items; i += nt) {
      const int64_t qt = nqt - 1 - i / a.Hkv, hk = i % a.Hkv;
      const int64_t t0 = qt * Tq, t1 = std::min(a.T, t0 + Tq);
      PrefillItem(a, hk, t0, t1, b);
    }
  });
}

// ---------------------------------------------------------------------------
// Decode (split-K): rows = all T x G queries of kv head hk, keys [c0, c1).
// Writes the partial state to m[R], l[R], O[R][Dp].
struct DecodeBufs {
  float *Qr, *S, *Kf, *Vf, *alpha, *rowpos;
};

void DecodeItem(const AttnArgs& a, int64_t hk, int64_t c0, int64_t c1, const DecodeBufs& b, float* m,
                float* l, float* O) {
  const AF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), Dp = RoundUpTo(D, N);
  const int64_t G = a.G;
  const size_t R = size_t(a.T * G);
  const size_t sstride = RoundUpTo(size_t(kDecodeTk), N);

  for (size_t r = 0; r < R; ++r) {
    const int64_t t = int64_t(r) / G, h = hk * G + int64_t(r) % G;
    const float* qr = a.q + (t * a.Hq + h) * a.D;
    float* dst = b.Qr + r * Dp;
    for (size_t d = 0; d < D; ++d) dst[d] = QueryValue(a, qr[d]);
    std::fill(dst + D, dst + Dp, 0.0f);
    b.rowpos[r] = float(a.pos0 + t);
    m[r] = kNegInf;
    l[r] = 0.0f;
  }
  std::fill(O, O + R * Dp, 0.0f);

  const int64_t head_off = hk * a.kv.head_stride;
  for (int64_t k0 = c0; k0 < c1; k0 += kDecodeTk) {
    const size_t n = size_t(std::min(kDecodeTk, c1 - k0));
    const float* K = LoadRows(a.kv.k, a.kv.bf16, head_off + k0 * a.D, n, D, Dp, b.Kf);
    const float* V = LoadRows(a.kv.v, a.kv.bf16, head_off + k0 * a.D, n, D, Dp, b.Vf);
    ScoresKeysInRows(b.Qr, R, Dp, K, Dp, n, b.S, sstride);
    SoftmaxKeysInLanes(b.S, R, n, sstride, k0, b.rowpos, a.scale, m, l, b.alpha);
    PvAccumulate(b.S, 1, sstride, n, V, Dp, b.alpha, O, Dp, R);
  }
}

void Decode(const AttnArgs& a) {
  const size_t N = hn::Lanes(AF());
  const size_t D = size_t(a.D), Dp = RoundUpTo(D, N);
  const size_t R = size_t(a.T * a.G);
  const int64_t S = a.pos0 + a.T;  // keys needed by the last row
  // The chunking depends only on S (never on the thread count), so results are
  // identical for any number of threads.
  int64_t nchunks = std::clamp<int64_t>((S + kDecodeChunk - 1) / kDecodeChunk, 1, kDecodeMaxChunks);
  int64_t Ck = (S + nchunks - 1) / nchunks;
  Ck = (Ck + kDecodeTk - 1) / kDecodeTk * kDecodeTk;
  nchunks = (S + Ck - 1) / Ck;
  const int64_t items = a.Hkv * nchunks;

  std::vector<float> pm(size_t(items) * R), pl(size_t(items) * R), pO(size_t(items) * R * Dp);
  const size_t sstride = RoundUpTo(size_t(kDecodeTk), N);
  const size_t Tk = size_t(kDecodeTk);
  const size_t total = Scratch::need({R * Dp, R * sstride, Tk * Dp, Tk * Dp, R, R});
  parallel_run([&](int tid, int nt) {
    if (tid >= items) return;
    Scratch s;
    s.reserve(total);
    DecodeBufs b;
    b.Qr = s.take(R * Dp);
    b.S = s.take(R * sstride);
    b.Kf = s.take(Tk * Dp);
    b.Vf = s.take(Tk * Dp);
    b.alpha = s.take(R);
    b.rowpos = s.take(R);
    for (int64_t i = tid; i < items; i += nt) {
      const int64_t hk = i / nchunks, c = i % nchunks;
      const int64_t c0 = c * Ck, c1 = std::min(S, c0 + Ck);
      DecodeItem(a, hk, c0, c1, b, pm.data() + i * R, pl.data() + i * R, pO.data() + i * R * Dp);
    }
  });

  // Log-sum-exp merge of the chunks, in chunk order (deterministic), in double.
  std::vector<double> acc(D);
  for (int64_t hk = 0; hk < a.Hkv; ++hk) {
    for (size_t r = 0; r < R; ++r) {
      float M = kNegInf;
      for (int64_t c = 0; c < nchunks; ++c) M = std::max(M, pm[size_t(hk * nchunks + c) * R + r]);
      double L = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t c = 0; c < nchunks; ++c) {
        const size_t i = size_t(hk * nchunks + c);
        const float mc = pm[i * R + r];
        if (mc == kNegInf) continue;  // no visible key in this chunk
        const double w = std::exp(double(mc) - double(M));
        L += w * pl[i * R + r];
        const float* o = pO.data() + (i * R + r) * Dp;
        for (size_t d = 0; d < D; ++d) acc[d] += w * o[d];
      }
      const int64_t t = int64_t(r) / a.G, h = hk * a.G + int64_t(r) % a.G;
      float* out = a.out + (t * a.Hq + h) * a.D;
      for (size_t d = 0; d < D; ++d) out[d] = float(acc[d] / L);
    }
  }
}

// Entry point for this target; arguments are validated by the caller.
void AttentionCausal(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const KVView& kv,
                     int64_t pos0, float scale, float* out, Precision p) {
  const AttnArgs a{q, T, Hq, Hkv, D, Hq / Hkv, kv, pos0, scale, p == Precision::BF16, out};
  if (T <= kDecodeMaxT) {
    Decode(a);
  } else {
    Prefill(a);
  }
}

}  // namespace lq::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
