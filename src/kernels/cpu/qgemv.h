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
// Decode (M <= kGemvMaxRows): fused dequantize-and-dot GEMVs (Highway, runtime
// dispatch AVX-512 / AVX2 / SSE4 / scalar): W streamed once per call, codes widened
// to fp32 in registers, exact (q - zero) and fp32 FMA accumulation per group /
// block, one fp32 multiply by the group scale per group. Threads split N statically
// (results do not depend on the thread count).
// Prefill (any M): each N-tile of W is dequantized into a scratch buffer (bf16 for
// Precision::BF16, fp32 for F32 so the values are exactly the reference values) and
// multiplied by oneDNN (AMX / AVX-512 when present). FP8 W8A8 prefill multiplies
// the exact E4M3 values of activations and weights as bf16 (exact) and scales Y.
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
  // bits 4: K padded to a multiple of 32; per block of 32 columns 16 bytes,
  //         byte i = code(32b + i) | code(32b + 16 + i) << 4.
  const uint8_t* q = nullptr;          // [N][row_bytes]
  int64_t n_groups = 0;
  const int32_t* group_start = nullptr;  // [n_groups + 1]
  const float* scales = nullptr;       // [N][n_groups]
  const int32_t* zeros = nullptr;      // [N][n_groups]
  const int32_t* perm = nullptr;       // [K] or null (identity)
};

// Code of kernel column k of row n (scalar access to the layout above).
inline int qaffine_code(const QAffineView& w, int64_t n, int64_t k) {
  const uint8_t* r = w.q + n * w.row_bytes;
  if (w.bits == 8) return r[k];
  const uint8_t b = r[(k >> 5) * 16 + (k & 15)];
  return (k & 16) ? (b >> 4) : (b & 15);
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
void qgemv_affine(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p);
void qgemv_nf4(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p);
// act_scale: [M] per-row activation scales for W8A8 (row m is quantized as
// f32_to_fp8e4m3(x / act_scale[m])); nullptr = weight-only (X used as is, or
// rounded to bf16 for Precision::BF16).
void qgemv_fp8(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p);

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
void dequant_affine_rows(const QAffineView& w, int64_t n0, int64_t n1, float* dst);
void dequant_affine_rows(const QAffineView& w, int64_t n0, int64_t n1, uint16_t* dst);
void dequant_nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, float* dst);
void dequant_nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, uint16_t* dst);

}  // namespace lq::cpu
