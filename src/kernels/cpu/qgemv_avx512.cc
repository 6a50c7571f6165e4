// kernels/cpu/qgemv_avx512.cc: AVX512-BF16 decode GEMV for int4 affine weights
// (qgemv.h: qgemv_affine_bf16dp), used by qgemv_affine for Precision::BF16.
//
// Why: the Highway kernel widens every code to an fp32 lane and spends ~5 vector
// instructions per 16 weights (widen, shift, mask, subtract zero, convert) before
// its FMA; on the 2-core VM that is compute-bound below the memory bandwidth. Here
// one 64-byte load gives 128 codes, and per 32 weights there is 1 shift, 1 VPERMW
// and 1 VDPBF16PS per X row:
//   * Layout (qgemv.h): per 128-column chunk 64 bytes = 32 16-bit words; word w
//     holds column 32t + w of the chunk in bits [4t, 4t + 4). Shifting the words
//     right by 4t leaves the code of column 32t + w in bits 0-3 of word w (bit 4
//     holds a bit of the next code: ignored, see the table).
//   * Per group, a 32-entry word table T[j] = bf16((j mod 16) - zero): the exact
//     value of (q - zero) (|q - zero| <= 256 has at most 8 significant bits, so
//     any zero in [-240, 271] is exact; real checkpoints have 0..16). Tables for
//     the zeros 0..31 are precomputed, others are built per group. VPERMW uses only the
//     low 5 index bits, so T[(word >> 4t) & 31] = bf16(code - zero) with no mask.
//   * VDPBF16PS multiplies pairs of bf16 values exactly and adds them to fp32
//     lanes: with X rounded to bf16 (what Precision::BF16 means) every product
//     x * (q - zero) is exact, the per-group sums are fp32, and the group sum is
//     multiplied by the fp32 scale: the numerics of the Highway kernel (and of
//     the scalar reference up to fp32 summation order).
//   * Two accumulation chains per X row hide the VDPBF16PS latency (four were
//     ~5% slower at M = 1 on llama-3.2-1b: more adds per 128-column group).
//   * Two weight streams per thread for M <= 2 (rows from the two halves of the
//     thread's range in step) with software prefetch 4 KiB ahead in each: see
//     rows_int4_at.
// Requirements (qgemv_affine_bf16dp_supported): bits 4, Precision::BF16, every
// group starts at a multiple of 32 columns (GPTQ/AWQ/RTN groups of 32/64/128 and
// per-channel; act-order groups after the permutation). Others use Highway.
// Threads split N statically (lq::parallel_for); each output is summed by one
// thread in a fixed order, so results do not depend on the thread count.
// ISA: only functions marked LQ_DP_FN are compiled for AVX-512 (GCC target
// attributes, no per-file flags) and they run only after qgemv_bf16dp_available().

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/qgemv.h"
#include "kernels/cpu/x86.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LQ_UNROLL_ALL _Pragma("GCC unroll 16")
#define LQ_DP_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace lq::cpu {

namespace {


// Word tables T_z[j] = bf16((j mod 16) - z), 32 words (64 bytes) each.
struct alignas(64) Table {
  uint16_t v[32];
};
inline Table make_table(int32_t z) {
  Table t;
  for (int j = 0; j < 32; ++j) t.v[j] = f32_to_bf16(float((j & 15) - int64_t(z)));
  return t;
}
constexpr int kTables = 32;
const std::array<Table, kTables>& tables() {
  static const std::array<Table, kTables> t = [] {
    std::array<Table, kTables> r;
    for (int z = 0; z < kTables; ++z) r[size_t(z)] = make_table(z);
    return r;
  }();
  return t;
}

struct Job {
  const QAffineView* w;
  const uint16_t* xb;  // [kM][ldx] bf16 activations in kernel column order, zero padded
  int64_t ldx;         // padded K (multiple of 128)
  const int32_t* bstart;  // [G + 1] group starts in 32-column blocks (last = ldx / 32)
};

LQ_DP_FN inline __m512i shift_words(__m512i v, int t) {
  switch (t) {
    case 0: return v;
    case 1: return _mm512_srli_epi16(v, 4);
    case 2: return _mm512_srli_epi16(v, 8);
    default: return _mm512_srli_epi16(v, 12);
  }
}

// One 32-column block b (not at a chunk start, or a lone one) of a row: its
// nibbles are word t = b & 3 of the 64-byte chunk.
template <int kM, int kA>
LQ_DP_FN inline void one_block(__m512 (&acc)[kM][kA], const Job& jb, const uint8_t* qrow, int64_t b, __m512i tab) {
  const __m512i v = _mm512_loadu_si512(qrow + (b >> 2) * 64);
  const __m512i wv = _mm512_permutexvar_epi16(shift_words(v, int(b & 3)), tab);
  LQ_UNROLL_ALL
  for (int m = 0; m < kM; ++m) {
    const __m512i x = _mm512_loadu_si512(jb.xb + m * jb.ldx + b * 32);
    acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)wv, (__m512bh)x);
  }
}

// kR output rows n, n + rs, ... for kM rows of X: Y[m * ldy + n + r * rs]. Each row's
// arithmetic is the same for any kR and rs (results never depend on the grouping).
// kR = 2 with rows far apart (rs = half the thread's rows) gives the thread two
// independent sequential weight streams: from DRAM one stream is limited by its
// memory-level parallelism (int4 decode of llama-3.2-1b +~10%, int8 +~20%).
// Software prefetch kPrefetchBytes ahead in each stream (rows are contiguous, and
// the hardware prefetchers stop at page boundaries).
constexpr int64_t kPrefetchBytes = 4096;

template <int kM, int kR>
LQ_DP_FN inline void rows_int4_at(const Job& jb, int64_t n, int64_t rs, float* Y, int64_t ldy) {
  constexpr int kA = 2;  // accumulation chains per X row (4 for M <= 2 measured ~5% slower: more per-group adds)
  const QAffineView& w = *jb.w;
  const int64_t G = w.n_groups, rb = w.row_bytes;
  const Table* tabs = tables().data();
  const uint8_t* qrow[kR];
  LQ_UNROLL_ALL
  for (int r = 0; r < kR; ++r) qrow[r] = w.q + (n + r * rs) * rb;
  __m512 tot[kR][kM];
  LQ_UNROLL_ALL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL_ALL
    for (int m = 0; m < kM; ++m) tot[r][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    Table built[kR];
    __m512i tab[kR];
    __m512 acc[kR][kM][kA];
    LQ_UNROLL_ALL
    for (int r = 0; r < kR; ++r) {
      const int32_t z = w.zeros[(n + r * rs) * G + g];
      const Table* tp = &built[r];
      if (uint32_t(z) < uint32_t(kTables)) tp = tabs + z;
      else built[r] = make_table(z);
      tab[r] = _mm512_load_si512(tp->v);
      LQ_UNROLL_ALL
      for (int m = 0; m < kM; ++m)
        LQ_UNROLL_ALL
        for (int a = 0; a < kA; ++a) acc[r][m][a] = _mm512_setzero_ps();
    }
    int64_t b = jb.bstart[g];
    const int64_t be = jb.bstart[g + 1];
    // Leading blocks up to a chunk boundary.
    for (; b < be && (b & 3); ++b)
      LQ_UNROLL_ALL
      for (int r = 0; r < kR; ++r) one_block<kM, kA>(acc[r], jb, qrow[r], b, tab[r]);
    // Whole chunks: one load, four blocks.
    for (; b + 4 <= be; b += 4) {
      LQ_UNROLL_ALL
      for (int r = 0; r < kR; ++r) {
        const uint8_t* p = qrow[r] + (b >> 2) * 64;
        _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes), _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(p);
        const __m512i w0 = _mm512_permutexvar_epi16(v, tab[r]);
        const __m512i w1 = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), tab[r]);
        const __m512i w2 = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 8), tab[r]);
        const __m512i w3 = _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 12), tab[r]);
        LQ_UNROLL_ALL
        for (int m = 0; m < kM; ++m) {
          const uint16_t* x = jb.xb + m * jb.ldx + b * 32;
          __m512(&ac)[kA] = acc[r][m];
          ac[0] = _mm512_dpbf16_ps(ac[0], (__m512bh)w0, (__m512bh)_mm512_loadu_si512(x));
          ac[1 % kA] = _mm512_dpbf16_ps(ac[1 % kA], (__m512bh)w1, (__m512bh)_mm512_loadu_si512(x + 32));
          ac[2 % kA] = _mm512_dpbf16_ps(ac[2 % kA], (__m512bh)w2, (__m512bh)_mm512_loadu_si512(x + 64));
          ac[3 % kA] = _mm512_dpbf16_ps(ac[3 % kA], (__m512bh)w3, (__m512bh)_mm512_loadu_si512(x + 96));
        }
      }
    }
    // Trailing blocks.
    for (; b < be; ++b)
      LQ_UNROLL_ALL
      for (int r = 0; r < kR; ++r) one_block<kM, kA>(acc[r], jb, qrow[r], b, tab[r]);
    LQ_UNROLL_ALL
    for (int r = 0; r < kR; ++r) {
      const __m512 s = _mm512_set1_ps(w.scales[(n + r * rs) * G + g]);
      LQ_UNROLL_ALL
      for (int m = 0; m < kM; ++m) {
        __m512 a = acc[r][m][0];
        LQ_UNROLL_ALL
        for (int i = 1; i < kA; ++i) a = _mm512_add_ps(a, acc[r][m][i]);
        tot[r][m] = _mm512_fmadd_ps(s, a, tot[r][m]);
      }
    }
  }
  LQ_UNROLL_ALL
  for (int r = 0; r < kR; ++r)
    LQ_UNROLL_ALL
    for (int m = 0; m < kM; ++m) Y[m * ldy + n + r * rs] = _mm512_reduce_add_ps(tot[r][m]);
}

// Output rows [n0, n1) for kM rows of X: Y[m * ldy + n]. For kM <= 2, row i of the
// first half of the range goes with row i of the second half (two streams).
template <int kM>
LQ_DP_FN void rows_int4(const Job& jb, int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  for_row_streams(
      n0, n1, kM <= 2, [&](int64_t r, int64_t h) LQ_DP_FN { rows_int4_at<kM, 2>(jb, r, h, Y, ldy); },
      [&](int64_t r) LQ_DP_FN { rows_int4_at<kM, 1>(jb, r, 0, Y, ldy); });
}

thread_local std::vector<float> tl_xf;
thread_local std::vector<uint16_t> tl_xb;
thread_local std::vector<int32_t> tl_bstart;

}  // namespace

bool qgemv_bf16dp_available() {
  static const bool ok = [] {
    const char* e = std::getenv("LQ_DISABLE_BF16DP");
    if (e != nullptr && std::strcmp(e, "1") == 0) return false;
    return x86::features().avx512_bf16;
  }();
  return ok;
}

bool qgemv_affine_bf16dp_supported(const QAffineView& w, Precision p) {
  if (w.bits != 4 || p != Precision::BF16 || w.n_groups <= 0 || w.group_start == nullptr) return false;
  if (w.row_bytes < qaffine_row_bytes(4, w.K)) return false;
  for (int64_t g = 0; g < w.n_groups; ++g)  // on the 32-column grid, nondecreasing, inside [0, K]
    if (w.group_start[g] % 32 != 0 || w.group_start[g] > w.group_start[g + 1] || w.group_start[g + 1] > w.K)
      return false;
  return true;
}

void qgemv_affine_bf16dp(const QAffineView& w, const float* X, int64_t M, float* Y) {
  LQ_CHECK(M >= 0 && w.N >= 0 && w.K >= 0, "qgemv_affine_bf16dp: negative shape M={} N={} K={}", M, w.N, w.K);
  if (M == 0 || w.N == 0) return;
  LQ_CHECK(Y != nullptr && (w.K == 0 || X != nullptr), "qgemv_affine_bf16dp: null input or output (M={} N={} K={})",
           M, w.N, w.K);
  LQ_CHECK(qgemv_bf16dp_available(), "qgemv_affine_bf16dp: this CPU/OS lacks AVX512-BF16 (or LQ_DISABLE_BF16DP=1)");
  LQ_CHECK(qgemv_affine_bf16dp_supported(w, Precision::BF16),
           "qgemv_affine_bf16dp: weight layout not supported (bits={} K={} groups={}, group starts must be "
           "multiples of 32)",
           w.bits, w.K, w.n_groups);
  LQ_CHECK(w.q && w.scales && w.zeros && w.group_start[0] == 0 && w.group_start[w.n_groups] == w.K,
           "qgemv_affine_bf16dp: incomplete weight view (N={} K={})", w.N, w.K);
  const int64_t K = w.K, N = w.N, G = w.n_groups, ldx = (K + 127) / 128 * 128;
  // X in kernel column order, bf16 (RNE), zero padded: padded columns add 0 * T[0].
  std::vector<float>& xf = tl_xf;
  xf.assign(size_t(M * ldx), 0.0f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xf[size_t(m * ldx + k)] = X[m * K + (w.perm ? w.perm[k] : k)];
  std::vector<uint16_t>& xb = tl_xb;
  xb.resize(size_t(M * ldx));
  f32_to_bf16_n(xf.data(), M * ldx, xb.data());
  std::vector<int32_t>& bs = tl_bstart;
  bs.resize(size_t(G + 1));
  for (int64_t g = 0; g < G; ++g) bs[size_t(g)] = int32_t(w.group_start[g] / 32);
  bs[size_t(G)] = int32_t(ldx / 32);  // the last group also covers the zero padding
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mr = std::min<int64_t>(4, M - m0);
    const Job jb{&w, xb.data() + m0 * ldx, ldx, bs.data()};
    float* Ym = Y + m0 * N;
    parallel_for(
        N,
        [&](int64_t n0, int64_t n1) {
          switch (mr) {
            case 1: rows_int4<1>(jb, n0, n1, Ym, N); break;
            case 2: rows_int4<2>(jb, n0, n1, Ym, N); break;
            case 3: rows_int4<3>(jb, n0, n1, Ym, N); break;
            default: rows_int4<4>(jb, n0, n1, Ym, N); break;
          }
        },
        /*grain=*/16);
  }
}

}  // namespace lq::cpu
