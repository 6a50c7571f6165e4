// kernels/cpu/amx_gemm.h: hand-written AMX-BF16 GEMM for the Precision::BF16 prefill path.
//
//   Y[M, N] (fp32) = bf16(X)[M, K] · W[N, K]^T
//
// W is the mmapped bf16 checkpoint, read in place (never copied persistently);
// X is fp32 and rounded to bf16 (round to nearest even, bit-exact with
// core/dtype.h f32_to_bf16) while it is packed once per call.
// See amx_gemm.cc and docs/kernels-matmul.md for the design.
#pragma once

#include <cstdint>

namespace lq::cpu {

// True when the CPU has AMX-TILE + AMX-BF16 (cpuid leaf 7) and the kernel granted
// this process the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM). Computed once.
// Does not look at LQ_DISABLE_AMX (see amx_gemm_enabled).
bool amx_available();

// amx_available() and the environment variable LQ_DISABLE_AMX is not "1".
// Read once per process. matmul_bf16w uses the AMX GEMM when this is true.
bool amx_gemm_enabled();

// Y = bf16(X) · W^T with AMX (any M, K, N >= 0; tails in every dimension are
// handled). fp32 accumulation of exact bf16 x bf16 products. Each output is
// computed by one thread in a fixed order, so results do not depend on the
// thread count. Throws lq::Error on bad arguments, or if AMX is unavailable.
void gemm_bf16w_amx(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y);

}  // namespace lq::cpu
