// kernels/cpu/matmul.h: linear layers with bf16 weights.
//
// Weights are stored as Hugging Face stores them: W[N, K] row-major (out x in),
// bfloat16 raw bits, as the checkpoint stores them (never re-laid-out; the model
// loader copies them into huge-page memory, docs/kernels-matmul.md "Resident weights").
//
//   Y[m, n] = sum_k X[m, k] * W[n, k]        (fp32 accumulation)
//
// Dispatch: M <= kGemvMaxRows uses the fused bf16 GEMV (Highway, runtime ISA
// dispatch: AVX-512 / AVX2 / SSE4). Larger M in Precision::BF16 uses our AMX-BF16
// GEMM (amx_gemm.h) when the CPU and OS allow AMX (LQ_DISABLE_AMX=1 turns it off),
// else the oneDNN matmul; Precision::F32 always uses oneDNN's f32 matmul.
#pragma once

#include <cstdint>
#include <string>

#include "core/precision.h"
#include "kernels/cpu/amx_gemm.h"

namespace lq::cpu {

inline constexpr int64_t kGemvMaxRows = 4;

// Precision::F32 : X used as fp32; the product is the fp32 (or better) value of X·W^T.
// Precision::BF16: X is rounded to bf16 (round-to-nearest-even) before the product.
// Y may not alias X. Rows of X have stride K, rows of Y stride N.
void matmul_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                  Precision p);

// Plain scalar reference (double accumulation of the same products), for tests.
// Several products of one X (the q/k/v projections): Y_i = X W_i^T, each output
// bitwise what matmul_bf16w gives for it alone. For Precision::BF16 prefill on the
// AMX GEMM, X is packed once and all N blocks share one parallel region; otherwise
// this is matmul_bf16w per output. At most 3 outputs.
struct Bf16WeightOut {
  const uint16_t* W;  // [N, K]
  int64_t N;
  float* Y;           // [M, N]
};
void matmul_bf16w_group(const float* X, int64_t M, int64_t K, const Bf16WeightOut* outs, int n_out, Precision p);

// SwiGLU projections in one pass where a fused kernel applies: H[M, N] =
// silu(X Wg^T) * (X Wu^T) (Wg, Wu bf16 [N, K]), bitwise what matmul_bf16w twice and
// silu_mul give. Applies to Precision::BF16 prefill (M > kGemvMaxRows) on the AMX
// GEMM with a single K block; returns false (nothing written) otherwise, and the
// caller runs the three ops.
bool swiglu_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* Wg, const uint16_t* Wu, int64_t N,
                  float* H, Precision p);

// The same SwiGLU with H kept packed as the bf16 operand of the next product (the
// down projection, matmul_bf16w_packed) instead of an fp32 [M, N] array: H is
// written once as bf16 and the next GEMM starts without a pack. Applies where
// swiglu_bf16w does (and then the next product of M rows runs on the AMX GEMM too);
// returns false (nothing written) otherwise. H's buffer belongs to the calling
// thread until its next call (amx_gemm.h gemm_bf16w_amx_swiglu_packed).
bool swiglu_bf16w_packed(const float* X, int64_t M, int64_t K, const uint16_t* Wg, const uint16_t* Wu, int64_t N,
                         AmxPackedX* H, Precision p);
// Y[H.M, N] = H · W^T (W bf16 [N, H.K]): bitwise what matmul_bf16w gives in
// Precision::BF16 for the fp32 H the packed values were rounded from. add: Y += it
// (bitwise the product followed by add_inplace).
void matmul_bf16w_packed(const AmxPackedX& H, const uint16_t* W, int64_t N, float* Y, bool add = false);
// Y += X W^T in one pass (the residual connection: the product is added in the
// GEMM's epilogue, never stored), bitwise matmul_bf16w into a buffer followed by
// add_inplace. Applies to Precision::BF16 prefill (M > kGemvMaxRows) on the AMX
// GEMM; returns false (nothing written) otherwise.
bool matmul_bf16w_add(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y, Precision p);

void matmul_bf16w_ref(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                      Precision p);

// Machine probe: sustained read bandwidth in bytes/s over a buffer of `bytes`
// (larger than L3), using all current threads. Used by `longquant bench`.
double measure_read_bandwidth(int64_t bytes = int64_t(1) << 30, int repeats = 5);

// ---- Individual paths (matmul_bf16w picks one by M; exposed for tests and benchmarks) ----

// Fused bf16 GEMV (Highway, runtime dispatch): W is streamed once per group of up
// to kGemvMaxRows rows of X; bf16 -> fp32 by a 16-bit shift, fp32 FMA accumulation.
// Any M >= 0 is accepted (rows are processed in groups of kGemvMaxRows).
// Threads split N statically, so results do not depend on the thread count.
void gemv_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                Precision p);

// oneDNN path for any M >= 0. BF16: bf16 x bf16 -> f32 matmul (AMX / AVX512-BF16
// when present) reading W in place as the [K, N] "ba" view. F32: W is widened to
// fp32 one N-tile at a time into a transient scratch buffer and multiplied by the
// oneDNN f32 matmul (fp32 FMA accumulation).
void gemm_bf16w_onednn(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                       Precision p);

// Y[:, 0:n) (row stride ldy >= n) = A[M, K] · B[n, K]^T with oneDNN: A and B both
// bf16 bits (bf16 = true) or both fp32, fp32 accumulation; B is read as the [K, n]
// "ba" view. For callers that prepare their own operands (the quantized prefill's
// dequantized weight tiles). Pass 64-byte aligned A and B: oneDNN's AMX kernel runs
// ~1.35x slower on 16-byte aligned rows. Primitives are cached per shape.
void onednn_matmul_nt(bool bf16, const void* A, int64_t M, int64_t K, const void* B, int64_t n, float* Y,
                      int64_t ldy);

// Name of the oneDNN implementation the GEMM path uses for this shape (e.g.
// "brg:avx512_core_amx_bf16"); creates/caches the primitive if needed.
std::string onednn_impl_name(int64_t M, int64_t K, int64_t N, Precision p);

// SIMD helpers (Highway, runtime dispatch), exact equivalents of core/dtype.h:
// dst[i] = f32_to_bf16(src[i])  (round to nearest even, NaN stays quiet NaN).
void f32_to_bf16_n(const float* src, int64_t n, uint16_t* dst);
// dst[i] = bf16_to_f32(src[i]).
void bf16_to_f32_n(const uint16_t* src, int64_t n, float* dst);

}  // namespace lq::cpu
