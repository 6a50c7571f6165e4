// kernels/cpu/attention_bf16.cc: causal GQA flash attention with bf16 tiles for
// Precision::BF16 prefill: AMX-BF16 (TDPBF16PS) or AVX512-BF16 (VDPBF16PS).
// docs/kernels-attention.md has the design and measurements; this is a summary.
//
// Why: the fp32 FMA kernel (attention-inl.h) is compute-bound at ~120 GFLOP/s per
// core; at 8K tokens attention dominates prefill of small models. Both products,
// S = Q K^T and O += P V, run on bf16 operands with fp32 accumulation here.
//
// Work item = (kv head, tile of Tq queries): its R = Tq x G rows are every query
// head of the GQA group for every query of the tile (R ~ 64, padded to Rp, a
// multiple of 32), so each K/V tile is read once for all of them. Keys are
// processed in tiles of kTk = kAttnBf16KeyTile (64) with the online softmax.
// Layouts ("rows in lanes", r = row, j = key, d = head dim, pairs = VNNI):
//   Qb[d/2][r]   uint32: bf16 pair (q_r[2p], q_r[2p+1]); packed once per item.
//   St[j][r]     fp32 raw logits q.k of the tile.
//   Pb[j/2][r]   uint32: bf16 pair (P[2p][r], P[2p+1][r]); written by the softmax.
//   Ot[d][r]     fp32 output accumulator O^T.
// AMX (tiles: 0-3 C, 4-5 A, 6-7 B; all 16 rows x 64 bytes):
//   S^T = K . Q^T: A = 16 keys x 32 d of K read in place from the cache (row stride
//   2D bytes; a zero-padded copy for the last tile or D % 32 != 0), B = Qb tiles.
//   O^T += V^T . P^T: A = V^T (16 d x 32 keys) from a per-call pre-transposed copy
//   Vt[kv head][32-key block][Dp][32] (bf16, O(S D), built in parallel before the
//   items), B = Pb tiles. C tiles of Ot are loaded, accumulated over the key tile
//   and stored; rows whose running max grew are rescaled in Ot (AVX-512) first.
//   Both products use 2 x 2 register blocks (2 A x 2 B -> 4 C), as amx_gemm.cc.
// AVX512-BF16: the same layouts with register-blocked VDPBF16PS micro-kernels:
//   S: 4 keys x 4 row vectors, broadcast a (k[2p], k[2p+1]) pair, K in place;
//   PV: 4 d x 4 row vectors, broadcast a (v[2p][d], v[2p+1][d]) pair from Vp, a
//   per-tile pair-interleaved copy of V; the alpha rescale is fused into the loads.
// Softmax (AVX-512, shared): rows in lanes, so max, exp and sum are vertical vector
// operations; logits are scaled into log2 units, t = fl(s * c) - m with c =
// scale * log2(e) (so the max key gets exactly t = 0, p = 1), p = 2^t with a degree-6 polynomial (Chebyshev fit on
// [-1/2, 1/2], max relative error 8e-8 in fp32, exactly 1 at t = 0) and VSCALEFPS;
// t is clamped at -160 so masked keys (-inf) and underflow give exactly 0.
//
// Numerics (FlashAttention-2 style): q rounded to bf16 (RNE, f32_to_bf16); K, V are
// the bf16 cache; S accumulated in fp32; running max m and sum l in fp32; l sums the
// unrounded fp32 weights p, while P is rounded to bf16 (RNE, VCVTNE2PS2BF16) for the
// P.V product, accumulated in fp32; out = O * fl(1 / l). The hardware treats bf16 denormal
// inputs as zero (q, K, V, P below 2^-126: contributions < 1e-38, irrelevant). P
// depends on the running max after each key tile, which is why kTk is part of the
// numerics and attention_causal_bf16_ref (attention.cc) emulates it. The AMX and
// AVX512-BF16 kernels differ only in the fp32 summation order of the products.
// Threads: items in decreasing cost (later query tiles see more keys), claimed
// dynamically (atomic counter); each row's result depends only on its own item, so
// results are bitwise identical for any thread count and run to run.
// ISA: only functions marked LQ_ATTN_BF16_FN / LQ_ATTN_AMX_FN use AVX-512 / AMX
// (GCC target attributes, no per-file flags), and they run only after cpuid checks.

#include "kernels/cpu/attention_bf16.h"

// GCC 12 warns "__Y is used uninitialized" inside its own avx512fintrin.h for the
// _mm512_undefined_* idiom of some intrinsics (GCC bug 105593); nothing here is uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/cpu/x86.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/amx_gemm.h"

// GCC 12's AVX-512 intrinsics build their "undefined" pass-through operands as
// self-initialised locals, which -Wuninitialized reports once they are inlined
// into target-attributed functions; the values are never used.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LQ_ATTN_BF16_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
// Fixed-size register-block loops must be fully unrolled, or GCC keeps the
// accumulator arrays on the stack (measured 2x slower).
#define LQ_UNROLL _Pragma("GCC unroll 16")

#define LQ_ATTN_AMX_FN \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,amx-tile,amx-bf16")))

namespace lq::cpu::detail {

namespace {

constexpr size_t kTk = size_t(kAttnBf16KeyTile);  // keys per tile
static_assert(kTk % 32 == 0, "key tile must be a multiple of the 32-key AMX step");
constexpr int64_t kRowsTarget = 64;  // rows (queries x group heads) per work item
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

size_t RoundUp(size_t x, size_t m) { return (x + m - 1) / m * m; }

// ---- detection ------------------------------------------------------------


// ---- per-thread scratch ---------------------------------------------------

// Bump allocator of 64-byte aligned buffers over a reusable per-thread vector (no
// page faults after the first call; tile rows must not straddle cache lines).
class Arena {
 public:
  Arena(std::vector<uint8_t>& mem, size_t bytes) {
    if (mem.size() < bytes + 64) mem.resize(bytes + 64);
    const uintptr_t p = reinterpret_cast<uintptr_t>(mem.data());
    base_ = mem.data() + (64 - p % 64) % 64;
    cap_ = bytes;
  }
  template <typename T>
  T* take(size_t n) {
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += RoundUp(n * sizeof(T), 64);
    LQ_ASSERT(used_ <= cap_);
    return p;
  }
  static size_t need(std::initializer_list<size_t> bytes) {
    size_t t = 0;
    for (size_t b : bytes) t += RoundUp(b, 64);
    return t;
  }

 private:
  uint8_t* base_ = nullptr;
  size_t cap_ = 0, used_ = 0;
};

// ---- the problem ----------------------------------------------------------

struct Job {
  const float* q;
  int64_t T, Hq, Hkv, D, G, pos0;
  float c;  // scale * log2(e): logits -> log2 units
  const uint16_t* K;
  const uint16_t* V;
  int64_t hs;  // head stride of the cache (elements)
  float* out;
  size_t Dp, Rp;  // D and rows per item, rounded up to 32
  int64_t Tq, nqt;
  const uint16_t* Vt;  // AMX: V^T blocks [Hkv][nkb][Dp][32]
  size_t nkb;
  bool amx;
};

struct Bufs {
  uint32_t* Qb;      // [Dp/2][Rp]
  float* St;         // [kTk][Rp]
  uint32_t* Pb;      // [kTk/2][Rp]
  float* Ot;         // [Dp][Rp]
  float* m;          // [Rp] running max, log2 units
  float* l;          // [Rp] running sum of weights
  float* alpha;      // [Rp] rescale factor of the last tile
  float* rowpos;     // [Rp] position of each row (as float; < 2^24)
  uint16_t* Kb;      // [kTk][Dp] zero-padded K tile
  uint32_t* Vp;      // [kTk/2][Dp] V pairs (VDPBF16PS path)
  uint8_t* rescale;  // [Rp/16] any alpha != 1 among 16 rows
};

size_t ScratchBytes(const Job& J) {
  const size_t Rp = J.Rp, Dp = J.Dp;
  return Arena::need({Dp / 2 * Rp * 4, kTk * Rp * 4, kTk / 2 * Rp * 4, Dp * Rp * 4, Rp * 4, Rp * 4,
                      Rp * 4, Rp * 4, kTk * Dp * 2, kTk / 2 * Dp * 4, Rp / 16});
}

Bufs TakeBufs(const Job& J, Arena& ar) {
  const size_t Rp = J.Rp, Dp = J.Dp;
  Bufs b;
  b.Qb = ar.take<uint32_t>(Dp / 2 * Rp);
  b.St = ar.take<float>(kTk * Rp);
  b.Pb = ar.take<uint32_t>(kTk / 2 * Rp);
  b.Ot = ar.take<float>(Dp * Rp);
  b.m = ar.take<float>(Rp);
  b.l = ar.take<float>(Rp);
  b.alpha = ar.take<float>(Rp);
  b.rowpos = ar.take<float>(Rp);
  b.Kb = ar.take<uint16_t>(kTk * Dp);
  b.Vp = ar.take<uint32_t>(kTk / 2 * Dp);
  b.rescale = ar.take<uint8_t>(Rp / 16);
  return b;
}

// ---- AVX-512 helpers ------------------------------------------------------

// 2^t for t <= 0 (t = -inf or below -160 gives exactly 0; NaN stays NaN):
// t = n + f, n = round(t), |f| <= 1/2, 2^f by a degree-6 polynomial (coefficients
// of the Chebyshev interpolant of 2^f on [-1/2, 1/2], rounded to fp32; max relative
// error 8e-8 with fp32 Horner steps; c0 = 1 so 2^0 = 1 exactly), times 2^n (VSCALEFPS).
LQ_ATTN_BF16_FN inline __m512 Exp2(__m512 t) {
  // MAXPS returns its second operand when either is NaN: NaN logits propagate.
  t = _mm512_max_ps(_mm512_set1_ps(-160.0f), t);
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(0.00015461444854736328f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.0013400427997112274f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009618056938052177f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550327152013779f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022650718688965f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931471824645996f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Index vectors for VPERMT2W / VPERMW that interleave 16-bit words of two sources.
struct alignas(64) PairIdx {
  uint16_t lo[32], hi[32], packed[32];
  PairIdx() {
    for (int i = 0; i < 16; ++i) {
      lo[2 * i] = uint16_t(i);            // dword i = (a[i], b[i]),       i < 16
      lo[2 * i + 1] = uint16_t(32 + i);
      hi[2 * i] = uint16_t(16 + i);       // dword i = (a[16+i], b[16+i])
      hi[2 * i + 1] = uint16_t(48 + i);
      packed[2 * i] = uint16_t(i);        // words [x0..x15, y0..y15] -> dwords (x_i, y_i)
      packed[2 * i + 1] = uint16_t(16 + i);
    }
  }
};
const PairIdx kPairIdx;


LQ_ATTN_BF16_FN inline __m512i Bcast32(const uint16_t* p) {
  return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

// ---- softmax (shared) -----------------------------------------------------

// One key tile. St[j][r] (j < n): raw logits of keys k0 + j; row r sees keys
// <= rowpos[r] (checked only when `mask`). m[r]: running max of s * c (log2 units);
// l[r]: running sum of the fp32 weights 2^(s c - m). Writes Pb[p][r] = bf16 pair
// (P[2p][r], P[2p+1][r]) for p < kTk/2 (zero for keys >= n), alpha[r] =
// 2^(m_old - m_new) and rescale[r / 16] = whether any of the 16 rows changed m.
LQ_ATTN_BF16_FN void SoftmaxTile(const float* St, size_t n, size_t Rp, int64_t k0,
                                 const float* rowpos, bool mask, float c, float* m, float* l,
                                 float* alpha, uint32_t* Pb, uint8_t* rescale) {
  const __m512 vc = _mm512_set1_ps(c), ninf = _mm512_set1_ps(kNegInf), zero = _mm512_setzero_ps();
  const __m512i perm = _mm512_load_si512(kPairIdx.packed);
  const size_t npair = (n + 1) / 2;
  for (size_t r = 0; r < Rp; r += 16) {
    const __m512 vpos = _mm512_load_ps(rowpos + r);
    auto visible = [&](size_t j) LQ_ATTN_BF16_FN {
      return _mm512_cmp_ps_mask(_mm512_set1_ps(float(k0 + int64_t(j))), vpos, _CMP_LE_OQ);
    };
    // Four independent max chains (one chain costs the 4-cycle latency per key).
    __m512 mx[4] = {ninf, ninf, ninf, ninf};
    if (mask) {
      for (size_t j = 0; j < n; ++j)
        mx[j % 4] = _mm512_mask_max_ps(mx[j % 4], visible(j), mx[j % 4], _mm512_load_ps(St + j * Rp + r));
    } else {
      size_t j = 0;
      for (; j + 4 <= n; j += 4) {
        LQ_UNROLL for (int i = 0; i < 4; ++i) mx[i] = _mm512_max_ps(mx[i], _mm512_load_ps(St + (j + i) * Rp + r));
      }
      for (; j < n; ++j) mx[0] = _mm512_max_ps(mx[0], _mm512_load_ps(St + j * Rp + r));
    }
    const __m512 vmax = _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3]));
    const __m512 m_old = _mm512_load_ps(m + r);
    const __m512 m_new = _mm512_max_ps(m_old, _mm512_mul_ps(vmax, vc));
    // A row that has seen no visible key keeps m = -inf; subtract 0 instead so that
    // 2^(-inf - 0) = 0 rather than 2^(-inf + inf) = NaN.
    const __m512 m_use = _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, ninf, _CMP_EQ_OQ), zero);
    const __m512 a = Exp2(_mm512_sub_ps(m_old, m_use));
    const __m512 negm = _mm512_sub_ps(zero, m_use);
    // t = fl(s c) - m, not fma(s, c, -m): m is one of the fl(s c), so the row's
    // max key gets t = 0 and weight exactly 1 (an FMA leaves a residual of up to
    // 2^-24 |s c| there, which P's rounding to bf16 then drops but l keeps).
    auto weight = [&](size_t j) LQ_ATTN_BF16_FN {
      // (GCC implements _mm512_mul_ps/_add_ps as plain vector arithmetic and would
      // contract them into an FMA; the explicit-rounding form is an opaque builtin.)
      const __m512 sc = _mm512_mul_round_ps(_mm512_load_ps(St + j * Rp + r), vc, _MM_FROUND_CUR_DIRECTION);
      __m512 t = _mm512_add_ps(sc, negm);
      if (mask) t = _mm512_mask_mov_ps(ninf, visible(j), t);
      return Exp2(t);
    };
    __m512 sum0 = zero, sum1 = zero;  // two chains: even and odd keys
    for (size_t p = 0; p < npair; ++p) {
      const __m512 e0 = weight(2 * p);
      const __m512 e1 = 2 * p + 1 < n ? weight(2 * p + 1) : zero;
      sum0 = _mm512_add_ps(sum0, e0);
      sum1 = _mm512_add_ps(sum1, e1);
      // Words [bf16(e0) x16, bf16(e1) x16] -> dwords (e0[r], e1[r]).
      const __m512i w = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);
      _mm512_store_si512(Pb + p * Rp + r, _mm512_permutexvar_epi16(perm, w));
    }
    for (size_t p = npair; p < kTk / 2; ++p) _mm512_store_si512(Pb + p * Rp + r, _mm512_setzero_si512());
    _mm512_store_ps(alpha + r, a);
    _mm512_store_ps(l + r, _mm512_fmadd_ps(_mm512_load_ps(l + r), a, _mm512_add_ps(sum0, sum1)));
    _mm512_store_ps(m + r, m_new);
    rescale[r / 16] = _mm512_cmp_ps_mask(m_new, m_old, _CMP_NEQ_UQ) != 0;
  }
}

// ---- VDPBF16PS kernels ----------------------------------------------------

// St[j][r] = sum over d pairs p < np of Qb[p][r] . K[j][2p..2p+1] for KB keys from j0
// and RB row vectors from r0. K rows have stride kld elements.
template <int KB, int RB>
LQ_ATTN_BF16_FN inline void QkDpMicro(const uint32_t* Qb, size_t Rp, const uint16_t* K, size_t kld,
                                      size_t np, size_t j0, size_t r0, float* St) {
  __m512 acc[KB][RB];
  LQ_UNROLL for (int kb = 0; kb < KB; ++kb)
    LQ_UNROLL for (int rb = 0; rb < RB; ++rb) acc[kb][rb] = _mm512_setzero_ps();
  const uint16_t* k = K + j0 * kld;
  for (size_t p = 0; p < np; ++p) {
    __m512bh qv[RB];
    LQ_UNROLL for (int rb = 0; rb < RB; ++rb) qv[rb] = (__m512bh)_mm512_load_si512(Qb + p * Rp + r0 + 16 * rb);
    LQ_UNROLL for (int kb = 0; kb < KB; ++kb) {
      const __m512bh kk = (__m512bh)Bcast32(k + kb * kld + 2 * p);
      LQ_UNROLL for (int rb = 0; rb < RB; ++rb) acc[kb][rb] = _mm512_dpbf16_ps(acc[kb][rb], qv[rb], kk);
    }
  }
  LQ_UNROLL for (int kb = 0; kb < KB; ++kb)
    LQ_UNROLL for (int rb = 0; rb < RB; ++rb) _mm512_store_ps(St + (j0 + kb) * Rp + r0 + 16 * rb, acc[kb][rb]);
}

// Scores of keys [0, RoundUp(n, 4)) (K must hold that many readable rows) for all
// Rp rows (Rp a multiple of 32).
LQ_ATTN_BF16_FN void ScoresDp(const uint16_t* K, size_t kld, size_t n, const uint32_t* Qb, size_t Rp,
                              size_t Dp, float* St) {
  const size_t np = Dp / 2, nv = Rp / 16;
  for (size_t j = 0; j < n; j += 4) {
    size_t v = 0;
    for (; v + 4 <= nv; v += 4) QkDpMicro<4, 4>(Qb, Rp, K, kld, np, j, 16 * v, St);
    if (v < nv) QkDpMicro<4, 2>(Qb, Rp, K, kld, np, j, 16 * v, St);  // nv is even
  }
}

// Vp[p][d] = bf16 pair (V[2p][d], V[2p+1][d]) for p < ceil(n / 2), d < Dp; rows >= n
// and d >= D are zero. V: the tile's first cache row, stride D.
LQ_ATTN_BF16_FN void BuildVPairs(const uint16_t* V, size_t D, size_t n, size_t Dp, uint32_t* Vp) {
  const __m512i ilo = _mm512_load_si512(kPairIdx.lo), ihi = _mm512_load_si512(kPairIdx.hi);
  for (size_t p = 0; p < (n + 1) / 2; ++p) {
    const uint16_t* r0 = V + 2 * p * D;
    const bool has1 = 2 * p + 1 < n;
    for (size_t d = 0; d < Dp; d += 32) {
      const size_t nv = d < D ? std::min<size_t>(32, D - d) : 0;
      const __mmask32 mk = nv >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << nv) - 1u);
      const __m512i a = _mm512_maskz_loadu_epi16(mk, r0 + d);
      const __m512i b = has1 ? _mm512_maskz_loadu_epi16(mk, r0 + D + d) : _mm512_setzero_si512();
      _mm512_store_si512(Vp + p * Dp + d, _mm512_permutex2var_epi16(a, ilo, b));
      _mm512_store_si512(Vp + p * Dp + d + 16, _mm512_permutex2var_epi16(a, ihi, b));
    }
  }
}

// Ot[d][r] = alpha[r] Ot[d][r] + sum_p Pb[p][r] . Vp[p][d] for DD dims from d0 and RB
// row vectors from r0.
template <int DD, int RB>
LQ_ATTN_BF16_FN inline void PvDpMicro(const uint32_t* Pb, size_t Rp, const uint32_t* Vp, size_t Dp,
                                      size_t np, const float* alpha, float* Ot, size_t d0, size_t r0) {
  __m512 acc[DD][RB];
  LQ_UNROLL for (int rb = 0; rb < RB; ++rb) {
    const __m512 a = _mm512_load_ps(alpha + r0 + 16 * rb);
    LQ_UNROLL for (int dd = 0; dd < DD; ++dd)
      acc[dd][rb] = _mm512_mul_ps(_mm512_load_ps(Ot + (d0 + dd) * Rp + r0 + 16 * rb), a);
  }
  for (size_t p = 0; p < np; ++p) {
    __m512bh pv[RB];
    LQ_UNROLL for (int rb = 0; rb < RB; ++rb) pv[rb] = (__m512bh)_mm512_load_si512(Pb + p * Rp + r0 + 16 * rb);
    LQ_UNROLL for (int dd = 0; dd < DD; ++dd) {
      const __m512bh vv = (__m512bh)_mm512_set1_epi32(int(Vp[p * Dp + d0 + dd]));
      LQ_UNROLL for (int rb = 0; rb < RB; ++rb) acc[dd][rb] = _mm512_dpbf16_ps(acc[dd][rb], pv[rb], vv);
    }
  }
  LQ_UNROLL for (int dd = 0; dd < DD; ++dd)
    LQ_UNROLL for (int rb = 0; rb < RB; ++rb) _mm512_store_ps(Ot + (d0 + dd) * Rp + r0 + 16 * rb, acc[dd][rb]);
}

LQ_ATTN_BF16_FN void PvDp(const uint32_t* Pb, size_t Rp, const uint32_t* Vp, size_t Dp, size_t np,
                          const float* alpha, float* Ot) {
  const size_t nv = Rp / 16;
  for (size_t d = 0; d < Dp; d += 4) {
    size_t v = 0;
    for (; v + 4 <= nv; v += 4) PvDpMicro<4, 4>(Pb, Rp, Vp, Dp, np, alpha, Ot, d, 16 * v);
    if (v < nv) PvDpMicro<4, 2>(Pb, Rp, Vp, Dp, np, alpha, Ot, d, 16 * v);
  }
}

// ---- AMX kernels ----------------------------------------------------------

// Vt block [Dp][32] for 32 keys from V (stride D), `valid` of them real (the rest and
// d >= D are zero): row d holds v[0][d], v[1][d], ..., v[31][d] in bf16 (an A tile row).
LQ_ATTN_BF16_FN void BuildVtBlock(const uint16_t* V, size_t D, size_t valid, size_t Dp, uint16_t* out) {
  const __m512i ilo = _mm512_load_si512(kPairIdx.lo);
  for (size_t dc = 0; dc < Dp; dc += 16) {
    const size_t nv = dc < D ? std::min<size_t>(16, D - dc) : 0;
    const __mmask16 mk = nv >= 16 ? __mmask16(0xffff) : __mmask16((1u << nv) - 1u);
    __m512i r[16];
    for (size_t p = 0; p < 16; ++p) {
      const __m256i a = 2 * p < valid ? _mm256_maskz_loadu_epi16(mk, V + 2 * p * D + dc)
                                      : _mm256_setzero_si256();
      const __m256i b = 2 * p + 1 < valid ? _mm256_maskz_loadu_epi16(mk, V + (2 * p + 1) * D + dc)
                                          : _mm256_setzero_si256();
      // dword i = (v[2p][dc + i], v[2p+1][dc + i])
      r[p] = _mm512_permutex2var_epi16(_mm512_zextsi256_si512(a), ilo, _mm512_zextsi256_si512(b));
    }
    x86::transpose16(r);  // r[i] dword p = (v[2p][dc + i], v[2p+1][dc + i])
    for (size_t i = 0; i < 16; ++i) _mm512_store_si512(out + (dc + i) * 32, r[i]);
  }
}

// All 8 tiles: 16 rows x 64 bytes.
LQ_ATTN_AMX_FN void ConfigureTiles() { x86::configure_tiles_16x64(); }

LQ_ATTN_AMX_FN void ReleaseTiles() { _tile_release(); }

// St[j][r] for keys j < nk32 (a multiple of 32; K rows readable) and all Rp rows.
LQ_ATTN_AMX_FN void ScoresAmx(const uint16_t* K, size_t kld, size_t nk32, const uint32_t* Qb,
                              size_t Rp, size_t Dp, float* St) {
  const long ks = long(kld * 2), qs = long(Rp * 4);
  for (size_t kb = 0; kb < nk32; kb += 32)
    for (size_t rb = 0; rb < Rp; rb += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (size_t d = 0; d < Dp; d += 32) {
        _tile_loadd(4, K + kb * kld + d, ks);
        _tile_loadd(6, Qb + (d / 2) * Rp + rb, qs);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, Qb + (d / 2) * Rp + rb + 16, qs);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, K + (kb + 16) * kld + d, ks);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* s = St + kb * Rp + rb;
      _tile_stored(0, s, qs);
      _tile_stored(1, s + 16, qs);
      _tile_stored(2, s + 16 * Rp, qs);
      _tile_stored(3, s + 16 * Rp + 16, qs);
    }
}

// Ot[d][r] += sum_j Vt[j][d] P[j][r] over keys j < nk32 (Vt: the tile's first block).
LQ_ATTN_AMX_FN void PvAmx(const uint16_t* Vt, size_t nk32, const uint32_t* Pb, size_t Rp, size_t Dp,
                          float* Ot) {
  const long os = long(Rp * 4);
  for (size_t db = 0; db < Dp; db += 32)
    for (size_t rb = 0; rb < Rp; rb += 32) {
      float* o = Ot + db * Rp + rb;
      _tile_loadd(0, o, os);
      _tile_loadd(1, o + 16, os);
      _tile_loadd(2, o + 16 * Rp, os);
      _tile_loadd(3, o + 16 * Rp + 16, os);
      for (size_t kb = 0; kb < nk32; kb += 32) {
        const uint16_t* a = Vt + (kb / 32) * Dp * 32 + db * 32;
        _tile_loadd(4, a, 64);
        _tile_loadd(6, Pb + (kb / 2) * Rp + rb, os);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, Pb + (kb / 2) * Rp + rb + 16, os);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + 16 * 32, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, o, os);
      _tile_stored(1, o + 16, os);
      _tile_stored(2, o + 16 * Rp, os);
      _tile_stored(3, o + 16 * Rp + 16, os);
    }
}

// Ot[:][r] *= alpha[r] for the 16-row groups flagged in rescale.
LQ_ATTN_BF16_FN void RescaleRows(float* Ot, size_t Dp, size_t Rp, const float* alpha,
                                 const uint8_t* rescale) {
  for (size_t r = 0; r < Rp; r += 16) {
    if (!rescale[r / 16]) continue;
    const __m512 a = _mm512_load_ps(alpha + r);
    for (size_t d = 0; d < Dp; ++d) {
      float* o = Ot + d * Rp + r;
      _mm512_store_ps(o, _mm512_mul_ps(_mm512_load_ps(o), a));
    }
  }
}

// ---- one work item --------------------------------------------------------

// All rows of kv head hk for queries [t0, t1) over keys [0, pos0 + t1).
// Qb[p][r] = bf16 pair (q_r[2p], q_r[2p+1]) for the item's rows (zero past R and D):
// 16 rows x 16 pairs per AVX-512 transpose. Bitwise the scalar f32_to_bf16 packing.
LQ_ATTN_BF16_FN void PackQ(const Job& J, int64_t hk, int64_t t0, size_t R, const Bufs& b) {
  const size_t Rp = J.Rp, Dp = J.Dp;
  const int64_t G = J.G, D = J.D;
  for (size_t r0 = 0; r0 < Rp; r0 += 16)
    for (size_t p0 = 0; p0 < Dp / 2; p0 += 16) {
      __m512i v[16];
      for (size_t i = 0; i < 16; ++i) {
        const size_t r = r0 + i;
        if (r < R) {
          const int64_t t = t0 + int64_t(r) / G, h = hk * G + int64_t(r) % G;
          v[i] = x86::load_bf16_pairs(J.q + (t * J.Hq + h) * D + 2 * p0, D - int64_t(2 * p0));
        } else {
          v[i] = _mm512_setzero_si512();
        }
      }
      x86::transpose16(v);
      for (size_t j = 0; j < 16; ++j) _mm512_storeu_si512(b.Qb + (p0 + j) * Rp + r0, v[j]);
    }
}

// out row of item row r = Ot[.][r] * (1 / l[r]) for r < R: 16 rows x 16 d per
// transpose. One division per row, then products (a division per element cost
// ~8% of the kernel at 512 tokens; the reciprocal adds at most one rounding,
// 2^-24 relative, well inside the reference tolerance).
LQ_ATTN_BF16_FN void StoreOut(const Job& J, int64_t hk, int64_t t0, size_t R, const Bufs& b) {
  const size_t Rp = J.Rp;
  const int64_t G = J.G, D = J.D;
  for (size_t r0 = 0; r0 < R; r0 += 16) {
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_loadu_ps(b.l + r0));
    for (int64_t d0 = 0; d0 < D; d0 += 16) {
      __m512i v[16];
      for (int64_t j = 0; j < 16; ++j)
        v[j] = d0 + j < D ? _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(b.Ot + (d0 + j) * Rp + r0), inv))
                          : _mm512_setzero_si512();
      x86::transpose16(v);
      const int64_t dv = std::min<int64_t>(16, D - d0);
      const __mmask16 dm = dv >= 16 ? __mmask16(0xffff) : __mmask16((1u << dv) - 1u);
      for (size_t i = 0; i < 16 && r0 + i < R; ++i) {
        const size_t r = r0 + i;
        const int64_t t = t0 + int64_t(r) / G, h = hk * G + int64_t(r) % G;
        _mm512_mask_storeu_ps(J.out + (t * J.Hq + h) * D + d0, dm, _mm512_castsi512_ps(v[i]));
      }
    }
  }
}

void RunItem(const Job& J, int64_t hk, int64_t t0, int64_t t1, const Bufs& b) {
  const size_t D = size_t(J.D), Dp = J.Dp, Rp = J.Rp;
  const int64_t G = J.G;
  const size_t R = size_t((t1 - t0) * G);

  // Qb pairs (PackQ) and row positions; padding rows are zero and sit at the last position.
  PackQ(J, hk, t0, R, b);
  for (size_t r = 0; r < Rp; ++r) {
    b.rowpos[r] = r < R ? float(J.pos0 + t0 + int64_t(r) / G) : float(J.pos0 + t1 - 1);
    b.m[r] = kNegInf;
    b.l[r] = 0.0f;
  }
  std::fill(b.Ot, b.Ot + Dp * Rp, 0.0f);

  const int64_t kend = J.pos0 + t1;  // the last row sees keys [0, kend)
  const int64_t first_pos = J.pos0 + t0;
  const uint16_t* Kh = J.K + hk * J.hs;
  const uint16_t* Vh = J.V + hk * J.hs;
  for (int64_t k0 = 0; k0 < kend; k0 += int64_t(kTk)) {
    const size_t n = size_t(std::min<int64_t>(int64_t(kTk), kend - k0));
    const size_t nk32 = RoundUp(n, 32);
    // K in place when whole 32-d steps and a full tile are readable; else a padded copy
    // (never reads cache rows at positions >= pos0 + T).
    const uint16_t* Kt = Kh + k0 * J.D;
    size_t kld = D;
    if (D % 32 != 0 || n != kTk) {
      for (size_t j = 0; j < nk32; ++j) {
        uint16_t* dst = b.Kb + j * Dp;
        if (j < n) {
          std::memcpy(dst, Kt + j * D, D * sizeof(uint16_t));
          std::fill(dst + D, dst + Dp, uint16_t(0));
        } else {
          std::fill(dst, dst + Dp, uint16_t(0));
        }
      }
      Kt = b.Kb;
      kld = Dp;
    }
    // Only tiles reaching past the first row's position need the causal mask.
    const bool mask = k0 + int64_t(n) - 1 > first_pos;
    if (J.amx) {
      ScoresAmx(Kt, kld, nk32, b.Qb, Rp, Dp, b.St);
    } else {
      ScoresDp(Kt, kld, n, b.Qb, Rp, Dp, b.St);
    }
    SoftmaxTile(b.St, n, Rp, k0, b.rowpos, mask, J.c, b.m, b.l, b.alpha, b.Pb, b.rescale);
    if (J.amx) {
      RescaleRows(b.Ot, Dp, Rp, b.alpha, b.rescale);
      PvAmx(J.Vt + (size_t(hk) * J.nkb + size_t(k0) / 32) * Dp * 32, nk32, b.Pb, Rp, Dp, b.Ot);
    } else {
      BuildVPairs(Vh + k0 * J.D, D, n, Dp, b.Vp);
      PvDp(b.Pb, Rp, b.Vp, Dp, (n + 1) / 2, b.alpha, b.Ot);
    }
  }

  // l[r] >= 1: every row sees key 0 and its max key has weight 1.
  StoreOut(J, hk, t0, R, b);
}

void Worker(const Job& J, std::atomic<int64_t>& next, int64_t items) {
  thread_local std::vector<uint8_t> mem;
  const size_t bytes = ScratchBytes(J);
  Arena ar(mem, bytes);
  const Bufs b = TakeBufs(J, ar);
  if (J.amx) ConfigureTiles();
  for (;;) {
    const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
    if (i >= items) break;
    // Items in decreasing cost: the last query tiles (most keys) first.
    const int64_t qt = J.nqt - 1 - i / J.Hkv, hk = i % J.Hkv;
    const int64_t t0 = qt * J.Tq, t1 = std::min(J.T, t0 + J.Tq);
    RunItem(J, hk, t0, t1, b);
  }
  if (J.amx) ReleaseTiles();
}


}  // namespace

bool cpu_is_amd() { return x86::features().amd; }

bool cpu_has_avx512_bf16() { return x86::features().avx512_bf16; }

bool cpu_has_amx_bf16() {
  static const bool ok = cpu_has_avx512_bf16() && amx_available();
  return ok;
}

void attention_prefill_bf16(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                            const KVView& kv, int64_t pos0, float scale, float* out, bool amx) {
  LQ_CHECK(kv.bf16, "attention (bf16 kernel): the KV cache must be bf16");
  LQ_CHECK(amx ? cpu_has_amx_bf16() : cpu_has_avx512_bf16(),
           "attention: this CPU/OS does not provide {} (T={} Hq={} Hkv={} D={})",
           amx ? "AMX-BF16" : "AVX512-BF16", T, Hq, Hkv, D);
  if (T <= 0) return;
  Job J;
  J.q = q;
  J.T = T;
  J.Hq = Hq;
  J.Hkv = Hkv;
  J.D = D;
  J.G = Hq / Hkv;
  J.pos0 = pos0;
  J.c = float(double(scale) * 1.4426950408889634);  // scale * log2(e)
  J.K = static_cast<const uint16_t*>(kv.k);
  J.V = static_cast<const uint16_t*>(kv.v);
  J.hs = kv.head_stride;
  J.out = out;
  J.Dp = RoundUp(size_t(D), 32);
  J.Tq = std::max<int64_t>(1, kRowsTarget / J.G);
  J.Rp = RoundUp(size_t(J.Tq * J.G), 32);
  J.nqt = (T + J.Tq - 1) / J.Tq;
  J.amx = amx;
  J.Vt = nullptr;
  J.nkb = 0;

  // AMX: V^T of every kv head for keys [0, pos0 + T), 32 keys per block, once per call
  // (O(S D) memory, reused by the calling thread's next call).
  thread_local std::vector<uint8_t> vt_mem;
  if (amx) {
    const int64_t S = pos0 + T;
    J.nkb = size_t((S + 31) / 32);
    const size_t block = J.Dp * 32;
    const size_t total = size_t(Hkv) * J.nkb * block;
    Arena ar(vt_mem, Arena::need({total * 2}));
    uint16_t* Vt = ar.take<uint16_t>(total);
    const int64_t nblocks = Hkv * int64_t(J.nkb);
    parallel_for(nblocks, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) {
        const int64_t hk = i / int64_t(J.nkb), kb = i % int64_t(J.nkb);
        const size_t valid = size_t(std::min<int64_t>(32, S - kb * 32));
        BuildVtBlock(J.V + hk * J.hs + kb * 32 * D, size_t(D), valid, J.Dp, Vt + size_t(i) * block);
      }
    });
    J.Vt = Vt;
  }

  const int64_t items = J.nqt * Hkv;
  std::atomic<int64_t> next{0};
  parallel_run([&](int, int) { Worker(J, next, items); });
}

}  // namespace lq::cpu::detail
