// kernels/cpu/matmul.h: linear layers with bf16 weights.
//
// Weights are stored as Hugging Face stores them: W[N, K] row-major (out x in),
// bfloat16 raw bits, usually straight from the mmapped checkpoint (never copied
// or re-laid-out persistently, so resident memory stays = checkpoint size).
//
//   Y[m, n] = sum_k X[m, k] * W[n, k]        (fp32 accumulation)
//
// Dispatch: M <= kGemvMaxRows uses the fused bf16 GEMV (Highway, runtime ISA
// dispatch: AVX-512 / AVX2 / SSE4), otherwise the oneDNN matmul (AMX / AVX-512
// when present).
#pragma once

#include <cstdint>

#include "core/precision.h"

namespace lq::cpu {

inline constexpr int64_t kGemvMaxRows = 4;

// Precision::F32 : X used as fp32; the product is the fp32 (or better) value of X·W^T.
// Precision::BF16: X is rounded to bf16 (round-to-nearest-even) before the product.
// Y may not alias X. Rows of X have stride K, rows of Y stride N.
void matmul_bf16w(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                  Precision p);

// Plain scalar reference (double accumulation of the same products), for tests.
void matmul_bf16w_ref(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                      Precision p);

// Machine probe: sustained read bandwidth in bytes/s over a buffer of `bytes`
// (larger than L3), using all current threads. Used by `longquant bench`.
double measure_read_bandwidth(int64_t bytes = int64_t(1) << 30, int repeats = 5);

}  // namespace lq::cpu
