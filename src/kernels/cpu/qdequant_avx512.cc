// kernels/cpu/qdequant_avx512.cc: AVX-512 bf16 tile dequantizers for the prefill of
// int4 affine and NF4 weights: one VPERMW table lookup per 32 weights.
//
// Why: the prefill GEMM (qgemv.cc, tiled_gemm) dequantizes every weight of a layer
// once per call into a bf16 tile for oneDNN. The Highway path (fp32 values, then
// the RNE conversion; qgemv-inl.h) runs ~10 instructions per 16 weights, which made
// int4 / NF4 prefill ~40% slower than bf16 on llama-3.2-1b.
//
// How: a 4-bit code has 16 possible values per group (affine) or block (NF4), so
// the 16 bf16 results are computed once -- exactly as the scalar definitions:
// f32_to_bf16(s * (float(q) - z)) and f32_to_bf16(code[j] * absmax), same fp32
// operations, RNE with NaN -> quiet NaN (x86::to_bf16_lanes) -- into a 32-word
// table whose entries j and j + 16 are equal. VPERMW reads only the low 5 bits of
// each index word, so a word holding a nibble in bits 0-3 and anything above needs
// no mask: the stray bit 4 picks the duplicate.
//   * int4 affine (layout of qgemv.h): word w of a 128-column chunk holds column
//     32t + w in bits [4t, 4t + 4): shift the 32 words right by 4t, look up, store
//     32 consecutive bf16 columns.
//   * NF4: 32 bytes hold 64 elements, element 2j in the high nibble of byte j.
//     Widen to words, duplicate each word into two (VPERMW), shift even words
//     right by 4 (VPSRLVW), look up.
// Results are bitwise equal to dequant_*_rows_ref rounded by f32_to_bf16 (test
// QgemmDequant.SimdEqualsScalarBitwise covers both paths). Layouts these kernels
// do not cover (affine groups off the 32-column grid, int8, NF4 rows or blocks not
// multiples of 64) return false and the caller uses the Highway path.
// ISA: only LQ_DQ_FN functions are compiled for AVX-512 (GCC target attributes);
// they run only after x86::features().avx512.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cpu/qgemv.h"
#include "kernels/cpu/x86.h"

// GCC 12 reports the intrinsics headers' internal undefined vectors as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LQ_DQ_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace lq::cpu {

namespace {

// Table of the 16 values v[j] (fp32, as computed by the caller), bf16, duplicated.
LQ_DQ_FN inline __m512i table_bf16(__m512 v) {
  const __m256i w = _mm512_cvtepi32_epi16(x86::to_bf16_lanes(v));
  return _mm512_inserti64x4(_mm512_castsi256_si512(w), w, 1);
}

LQ_DQ_FN inline __m512 iota16() {
  return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

LQ_DQ_FN void affine_int4_rows(const QAffineView& w, int64_t n0, int64_t n1, uint16_t* dst) {
  const int64_t K = w.K, G = w.n_groups;
  const __m512 j = iota16();
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.q + n * w.row_bytes;
    uint16_t* d = dst + (n - n0) * K;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t s0 = w.group_start[g], e = w.group_start[g + 1];
      if (s0 >= e) continue;
      const float sc = w.scales[n * G + g];
      const float z = float(qaffine_zero(w, n, g));
      // s * (float(q) - z): the scalar definition's two operations, in the same order.
      const __m512i tab = table_bf16(_mm512_mul_ps(_mm512_set1_ps(sc), _mm512_sub_ps(j, _mm512_set1_ps(z))));
      for (int64_t c0 = s0; c0 < e; c0 += 32) {  // s0 is on the 32-column grid
        const __m512i v = _mm512_loadu_si512(row + (c0 >> 7) * 64);
        const __m512i idx = _mm512_srlv_epi16(v, _mm512_set1_epi16(short(4 * ((c0 >> 5) & 3))));
        const __m512i out = _mm512_permutexvar_epi16(idx, tab);
        const int64_t cnt = e - c0;  // columns of this run inside the group (and row)
        if (cnt >= 32) _mm512_storeu_si512(d + c0, out);
        else _mm512_mask_storeu_epi16(d + c0, __mmask32((1u << cnt) - 1u), out);
      }
    }
  }
}

LQ_DQ_FN void nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, uint16_t* dst) {
  const int64_t K = w.K, bs = w.blocksize;
  const __m512 code = _mm512_loadu_ps(w.code);
  // Word 2j and 2j + 1 of a half both take byte j of that half; even words (high
  // nibble first, bitsandbytes order) are shifted right by 4.
  alignas(64) uint16_t dup_lo[32], dup_hi[32], shift[32];
  for (int i = 0; i < 32; ++i) {
    dup_lo[i] = uint16_t(i / 2);
    dup_hi[i] = uint16_t(16 + i / 2);
    shift[i] = uint16_t(i % 2 == 0 ? 4 : 0);
  }
  const __m512i ilo = _mm512_load_si512(dup_lo), ihi = _mm512_load_si512(dup_hi), sh = _mm512_load_si512(shift);
  const int64_t i0 = n0 * K, i1 = n1 * K;  // flat element range; K and bs are multiples of 64
  for (int64_t i = i0; i < i1;) {
    const int64_t blk = i / bs, end = std::min(i1, (blk + 1) * bs);  // blocks may span rows
    const __m512i tab = table_bf16(_mm512_mul_ps(code, _mm512_set1_ps(w.absmax[blk])));
    for (; i < end; i += 64) {
      const __m512i wb = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.packed + i / 2)));
      const __m512i lo = _mm512_srlv_epi16(_mm512_permutexvar_epi16(ilo, wb), sh);
      const __m512i hi = _mm512_srlv_epi16(_mm512_permutexvar_epi16(ihi, wb), sh);
      _mm512_storeu_si512(dst + (i - i0), _mm512_permutexvar_epi16(lo, tab));
      _mm512_storeu_si512(dst + (i - i0) + 32, _mm512_permutexvar_epi16(hi, tab));
    }
  }
}

}  // namespace

bool dequant_affine_rows_bf16_avx512(const QAffineView& w, int64_t n0, int64_t n1, uint16_t* dst) {
  if (!x86::features().avx512 || w.bits != 4 || w.n_groups <= 0 || w.row_bytes < qaffine_row_bytes(4, w.K))
    return false;
  for (int64_t g = 0; g < w.n_groups; ++g)
    if (w.group_start[g] % 32 != 0) return false;
  affine_int4_rows(w, n0, n1, dst);
  return true;
}

bool dequant_nf4_rows_bf16_avx512(const QNf4View& w, int64_t n0, int64_t n1, uint16_t* dst) {
  if (!x86::features().avx512 || w.K % 64 != 0 || w.blocksize <= 0 || w.blocksize % 64 != 0) return false;
  nf4_rows(w, n0, n1, dst);
  return true;
}

}  // namespace lq::cpu
