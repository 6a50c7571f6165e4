// kernels/cpu/qgemv.h: linear-layer kernels for quantized weights.
//
// Three weight families, each in a kernel layout built once at load time by
// quant/qlinear.cc from the reference representation in quant/formats.h (the
// kernels layer does not depend on quant/, so the layouts are plain views here):
//
//   Affine int4 / int8 groups (GPTQ, AWQ, RTN, compressed-tensors int):
//       W[n][k'] = scale[n][g] * (q[n][k'] - zero[n][g]),  k' in [group_start[g], group_start[g+1])
//     in a column order k' where every group is contiguous; input column perm[k'].
//   NF4 (bitsandbytes): W.flat[i] = code[nibble(i)] * absmax[i / blocksize], packed
//     exactly as bitsandbytes stores it (element 2j in the high nibble of byte j).
//   FP8 E4M3: W[n][k] = fp8(w[n][k]) * scale[n or 0]; W8A8 multiplies E4M3-quantized
//     activations: Y[m][n] = (sum_k fp8(xq[m][k]) * fp8(w[n][k])) * xscale[m] * scale[n].
//
// Decode (M <= kGemvMaxRows): fused dequantize-and-dot GEMVs, W streamed once per
// call, every product exact, fp32 accumulation per group / block, one fp32 multiply
// by the group scale per group. Threads split N statically (results do not depend
// on the thread count). Two implementations:
//   * Highway (runtime dispatch AVX-512 / AVX2 / SSE4 / scalar), any layout and
//     precision: codes widened to fp32 in registers, fp32 FMAs (qgemv-inl.h).
//   * AVX512-BF16 (qgemv_avx512.cc), int4 affine in Precision::BF16 when the CPU
//     has it: (q - zero) is a small integer, exact in bf16, looked up 32 at a time
//     with VPERMW from a per-group table; VDPBF16PS multiplies it with the bf16
//     activations (exact products, fp32 accumulation) -- the same values the
//     Highway kernel computes, about twice as few instructions per weight.
// Prefill (any M): each N-tile of W is dequantized into a scratch buffer (bf16 for
// Precision::BF16, fp32 for F32 so the values are exactly the reference values) and
// multiplied by oneDNN (AMX / AVX-512 when present). FP8 W8A8 prefill multiplies
// the exact E4M3 values of activations and weights as bf16 (exact) with the AMX
// GEMM (fp8 -> bf16 conversion while packing W; amx_gemm.h) or oneDNN, and scales Y.
//
// Precision::BF16 rounds activations to bf16 first (as the bf16 path); for FP8 W8A8
// the activation quantization replaces that rounding.
#pragma once

#include <cstdint>

#include "core/precision.h"

namespace lq::cpu {

struct QAffineView {
  int bits = 4;                        // 4 or 8
  int64_t N = 0, K = 0;
  int64_t row_bytes = 0;               // bytes per row of q
  // bits 8: byte k' = code of kernel column k'.
  // bits 4: K padded to a multiple of 128; per chunk c of 128 columns 64 bytes,
  //         read as 32 little-endian 16-bit words: word w holds the code of column
  //         128c + 32t + w in bits [4t, 4t + 4), t = 0..3. So one 64-byte load gives
  //         4 vectors of 32 codes (shift by 4t) for 4 runs of 32 consecutive columns.
  const uint8_t* q = nullptr;          // [N][row_bytes]
  int64_t n_groups = 0;
  const int32_t* group_start = nullptr;  // [n_groups + 1]
  const float* scales = nullptr;       // [N][n_groups]
  const int32_t* zeros = nullptr;      // [N][n_groups]
  const int32_t* perm = nullptr;       // [K] or null (identity)
  // bits 8 only: the bytes are signed codes (int8) and W = scale * code (zeros are
  // not read): symmetric layers store q - 128, which saves the decode loop its
  // zero subtraction.
  bool signed8 = false;
};

// Bytes per row of q for K columns (the minimum row_bytes).
inline int64_t qaffine_row_bytes(int bits, int64_t K) { return bits == 8 ? K : (K + 127) / 128 * 64; }

// Byte of a row holding (bits 4) column k, and whether it is the high nibble.
inline int64_t qaffine_int4_byte(int64_t k) { return (k >> 7) * 64 + 2 * (k & 31) + ((k >> 6) & 1); }
inline bool qaffine_int4_high(int64_t k) { return (k >> 5) & 1; }

// Code of kernel column k of row n (scalar access to the layout above).
inline int qaffine_code(const QAffineView& w, int64_t n, int64_t k) {
  const uint8_t* r = w.q + n * w.row_bytes;
  if (w.bits == 8) return w.signed8 ? int(int8_t(r[k])) : int(r[k]);
  const uint8_t b = r[qaffine_int4_byte(k)];
  return qaffine_int4_high(k) ? (b >> 4) : (b & 15);
}

// The decode GEMVs' row order for a thread's rows [n0, n1): when `pairs`, row i of
// the first half goes with row i of the second half (two independent sequential
// weight streams per core: from DRAM one stream is limited by its memory-level
// parallelism) through pair(n, h) for rows n and n + h; the odd leftover row (or
// every row when !pairs) through one(n).
template <class Pair, class One>
inline void for_row_streams(int64_t n0, int64_t n1, bool pairs, Pair&& pair, One&& one) {
  int64_t n = n0;
  if (pairs) {
    const int64_t h = (n1 - n0) / 2;
    for (int64_t i = 0; i < h; ++i) pair(n0 + i, h);
    n = n0 + 2 * h;
  }
  for (; n < n1; ++n) one(n);
}

// Zero point of row n, group g (0 for signed8 layouts).
inline int32_t qaffine_zero(const QAffineView& w, int64_t n, int64_t g) {
  return w.signed8 ? 0 : w.zeros[n * w.n_groups + g];
}

// Stores code c (< 2^bits; for signed8 layouts -128..127) of column k into a
// zero-initialised row (layout builders).
inline void qaffine_put_code(uint8_t* row, int bits, int64_t k, int c) {
  if (bits == 8) row[k] = uint8_t(c);
  else row[qaffine_int4_byte(k)] |= uint8_t(qaffine_int4_high(k) ? (c & 15) << 4 : (c & 15));
}

struct QNf4View {
  int64_t N = 0, K = 0, blocksize = 64;
  const uint8_t* packed = nullptr;     // [N*K/2], bitsandbytes order
  const float* absmax = nullptr;       // [ceil(N*K / blocksize)]
  const float* code = nullptr;         // [16]
};
// The fused NF4 GEMV needs K % blocksize == 0 and blocksize % 32 == 0 (rows made
// of whole blocks, blocks made of whole SIMD steps); else use qgemm_nf4.
bool qgemv_nf4_supported(const QNf4View& w);

struct QFp8View {
  int64_t N = 0, K = 0;
  const uint8_t* w = nullptr;          // [N][K] E4M3 codes (no NaN codes)
  const float* scale = nullptr;        // [N] if per_channel else [1]
  bool per_channel = true;
};

// ---- decode GEMVs (any M >= 0; rows are processed in groups of 4) ----
// qgemv_affine picks the AVX512-BF16 kernel when qgemv_affine_bf16dp_supported(w, p)
// and qgemv_bf16dp_available(), else the Highway kernel.
void qgemv_affine(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p);
void qgemv_nf4(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p);
// act_scale: [M] per-row activation scales for W8A8 (row m is quantized as
// f32_to_fp8e4m3(x / act_scale[m])); nullptr = weight-only (X used as is, or
// rounded to bf16 for Precision::BF16).
void qgemv_fp8(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p);

// The individual decode paths (for tests and benchmarks).
// True when the CPU and OS support AVX512-F/BW/VL + AVX512-BF16 (cpuid, xgetbv) and
// the environment variable LQ_DISABLE_BF16DP is not "1". Read once per process.
bool qgemv_bf16dp_available();
// The AVX512-BF16 int4 kernel applies: bits 4, Precision::BF16, every group starts
// at a multiple of 32 columns.
bool qgemv_affine_bf16dp_supported(const QAffineView& w, Precision p);
// Throws lq::Error unless qgemv_affine_bf16dp_supported(w, BF16) and qgemv_bf16dp_available().
// Same semantics as qgemv_affine(..., Precision::BF16).
void qgemv_affine_bf16dp(const QAffineView& w, const float* X, int64_t M, float* Y);
void qgemv_affine_hwy(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p);

// W8A8 activation quantization, SIMD (Highway) and exactly equal to the scalar
// definition: out[i] = fp8e4m3_to_f32(f32_to_fp8e4m3(x[i] / scale)) (true division,
// round to nearest even, saturation to +-448, NaN stays NaN).
void fp8_quant_dequant_n(const float* x, int64_t n, float scale, float* out);

// ---- prefill GEMMs (any M; dequantize an N-tile, then oneDNN) ----
void qgemm_affine(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p);
void qgemm_nf4(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p);
void qgemm_fp8(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p);

// ---- plain scalar references (double accumulation of the exact reference
// products, same activation handling), for tests ----
void qgemv_affine_ref(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p);
void qgemv_nf4_ref(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p);
void qgemv_fp8_ref(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p);

// Rows [n0, n1) of W dequantized into dst ([n1 - n0][K]); affine in kernel column
// order, NF4 and FP8 in the natural order (FP8: unscaled E4M3 values). These give
// exactly the reference values (formats.h) in fp32, and their RNE bf16 rounding.
// SIMD (Highway); bit-exact with the scalar *_ref versions below.
void dequant_affine_rows(const QAffineView& w, int64_t n0, int64_t n1, float* dst);
void dequant_affine_rows(const QAffineView& w, int64_t n0, int64_t n1, uint16_t* dst);
void dequant_nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, float* dst);
void dequant_nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, uint16_t* dst);
// AVX-512 table-lookup bf16 dequantizers (qdequant_avx512.cc), bitwise equal to the
// bf16 variants above; return false (writing nothing) when the CPU lacks AVX-512 or
// the layout is not covered: affine needs bits 4 with groups on the 32-column grid,
// NF4 needs K and blocksize multiples of 64. The bf16 dequant_*_rows use them first.
bool dequant_affine_rows_bf16_avx512(const QAffineView& w, int64_t n0, int64_t n1, uint16_t* dst);
bool dequant_nf4_rows_bf16_avx512(const QNf4View& w, int64_t n0, int64_t n1, uint16_t* dst);
void dequant_affine_rows_ref(const QAffineView& w, int64_t n0, int64_t n1, float* dst);
void dequant_nf4_rows_ref(const QNf4View& w, int64_t n0, int64_t n1, float* dst);

}  // namespace lq::cpu
