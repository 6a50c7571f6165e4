// quant/algo_common.h: pieces shared by the quantization algorithms (RTN, GPTQ, AWQ):
// a row-major fp32 GEMM (oneDNN's sgemm), scale rounding to the on-disk type,
// GPTQ's min/max group quantizer, and fp32 dequantization of the quant/formats.h
// families (the values the algorithms optimise for and the tests compare against).
//
// Numerics:
//   * sgemm_*: fp32 inputs and accumulation (oneDNN sgemm, run-time ISA dispatch),
//     tested against a double-accumulating scalar reference.
//   * MinMaxQuantizer follows AutoGPTQ's Quantizer.find_params / quantize exactly
//     (range always includes 0; symmetric: xmin = -max(|xmin|, xmax), zero = 2^(bits-1);
//     asymmetric: zero = round(-xmin / scale); an all-zero group gets [-1, 1];
//     codes q = clamp(round_half_even(x / scale) + zero, 0, 2^bits - 1)), except that
//     the scale is rounded to its storage type (F16 for GPTQ/AWQ checkpoints) BEFORE
//     the zero point and the codes are derived from it, so what an algorithm
//     optimises is exactly what the checkpoint stores.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/formats.h"

namespace lq::quant {

// ---- fp32 GEMM (row-major) --------------------------------------------------------
// C[M,N] = alpha * A[M,K] * B[N,K]^T + beta * C.  lda/ldb/ldc are row strides.
void sgemm_abt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc);
// C[M,N] = alpha * A[M,K] * B[K,N] + beta * C.
void sgemm_ab(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc);
// C[M,N] = alpha * A[K,M]^T * B[K,N] + beta * C.
void sgemm_atb(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc);
// Scalar reference of sgemm_abt (double accumulation), for tests.
void sgemm_abt_ref(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc);

// ---- scale storage -----------------------------------------------------------------
enum class ScaleStorage { F32, F16, BF16 };
// The value `s` takes once stored (RNE). F16 scales that would round to 0 or below
// the smallest normal keep a usable positive value (2^-24, the smallest subnormal).
float round_scale(float s, ScaleStorage st);

// ---- GPTQ's min/max quantizer (one group of one row) ----------------------------------
struct GroupParams {
  float scale = 1.0f;
  float zero = 0.0f;  // integer-valued
};

struct MinMaxQuantizer {
  int bits = 4;
  bool sym = true;
  ScaleStorage storage = ScaleStorage::F16;
  int maxq() const { return (1 << bits) - 1; }
  // Parameters of the values x[0..n) (AutoGPTQ find_params for one row).
  GroupParams find_params(const float* x, int64_t n) const;
  // Code of one value.
  uint8_t quantize(float x, const GroupParams& p) const;
  // scale * (q - zero), the dequantized value.
  static float dequant(uint8_t q, const GroupParams& p) { return p.scale * (float(q) - p.zero); }
};

// ---- dequantization (reference semantics of quant/formats.h) ---------------------------
// W[out][in] as fp32.
std::vector<float> dequantize_affine_f32(const AffineGroups& w);
std::vector<float> dequantize_nf4_f32(const Nf4Blocks& w);
std::vector<float> dequantize_fp8_f32(const Fp8Weight& w);

// Y[M,N] = X[M,K] W[N,K]^T in fp32 (sgemm); a convenience for tests and the driver.
std::vector<float> matmul_xwt(const float* X, int64_t M, int64_t K, const float* W, int64_t N);

}  // namespace lq::quant
