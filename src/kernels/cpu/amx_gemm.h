// kernels/cpu/amx_gemm.h: hand-written AMX-BF16 GEMM for the Precision::BF16 prefill path.
//
//   Y[M, N] (fp32) = bf16(X)[M, K] · W[N, K]^T
//
// W is the checkpoint's bf16 [N, K], read in place (never re-laid-out);
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
// add: Y += the product (a residual connection), each output y + p with p the
// fp32 value the call without `add` would store, so bitwise that call followed
// by an elementwise add; saves writing the product and re-reading it.
void gemm_bf16w_amx(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y,
                    bool add = false);

// Y = bf16(X) · fp8(W8)^T with AMX: W8 holds E4M3 codes [N, K] (no NaN codes; a NaN
// code is read as the finite value its bits would have with a larger exponent
// field). Each code is converted to its exact bf16 value while the W panel is
// packed (fp8e4m3_to_bf16_n), so the result is bitwise the one gemm_bf16w_amx
// gives for the bf16 copy of W. Used for FP8 W8A8 prefill: with X holding E4M3
// values (exact in bf16) every product is exact and accumulated in fp32.
void gemm_fp8w_amx(const float* X, int64_t M, int64_t K, const uint8_t* W8, int64_t N, float* Y);

// Several products of one X: Y_i = bf16(X) W_i^T for up to 3 outputs (the q/k/v
// projections), each output bitwise what gemm_bf16w_amx gives for it alone. X is
// packed once and the N blocks of all outputs share one parallel region.
struct AmxGemmOut {
  const uint16_t* W;  // bf16 [N, K]
  int64_t N;
  float* Y;           // [M, N]
};
void gemm_bf16w_amx_group(const float* X, int64_t M, int64_t K, const AmxGemmOut* outs, int n_out);

// Fused SwiGLU projections: H[M, N] = silu(bf16(X) Wg^T) * (bf16(X) Wu^T), Wg and Wu
// bf16 [N, K]. X is packed once; each 32 x 32 block computes both products and
// combines them with cpu::silu_mul, so H is bitwise what gemm_bf16w_amx (gate),
// gemm_bf16w_amx (up) and silu_mul give, without the two fp32 [M, N] products in
// memory. Needs one K block: amx_swiglu_fusable(K) (K <= 4096); throws
// otherwise, on bad arguments, or without AMX.
bool amx_swiglu_fusable(int64_t K);
void gemm_bf16w_amx_swiglu(const float* X, int64_t M, int64_t K, const uint16_t* Wg, const uint16_t* Wu,
                           int64_t N, float* H);

// The SwiGLU output kept for the next product (the MLP's down projection): H
// rounded to bf16 and stored in the GEMM's packed activation layout (VNNI pairs,
// M and K padded to multiples of 32 with zeros; amx_gemm.cc), so the down
// projection starts without packing and no fp32 H exists in memory.
struct AmxPackedX {
  const uint32_t* data = nullptr;  // 64-byte aligned
  int64_t M = 0, K = 0;            // logical shape of H
};
// H = silu(bf16(X) Wg^T) * (bf16(X) Wu^T) as gemm_bf16w_amx_swiglu computes it,
// returned packed. The buffer belongs to the calling thread and stays valid until
// that thread's next call of this function. Needs M, K, N > 0 and
// amx_swiglu_fusable(K); throws otherwise, or without AMX.
AmxPackedX gemm_bf16w_amx_swiglu_packed(const float* X, int64_t M, int64_t K, const uint16_t* Wg,
                                        const uint16_t* Wu, int64_t N);
// Y[X.M, N] = X · W^T for a packed X (W bf16 [N, X.K]): bitwise what gemm_bf16w_amx
// gives on the fp32 H that the packed values were rounded from (add: Y += it, as
// in gemm_bf16w_amx).
void gemm_bf16w_amx_packed(const AmxPackedX& X, const uint16_t* W, int64_t N, float* Y, bool add = false);

// Forces the K and M blocking (kb, mb: positive multiples of 32) of every later
// call, or with (0, 0) lifts that (back to LQ_AMX_BLOCK="kb,mb" if set, else the
// default); for tests and tuning. Results do not depend on it: each
// output's C tile accumulates through all of K, the partial sums between K blocks
// stored and reloaded exactly. Not for use while another thread runs a GEMM.
void amx_set_blocking(int64_t kb, int64_t mb);

// dst[i] = the bf16 bits of fp8e4m3_to_f32(src[i]) (exact), AVX-512 when amx_available(),
// else scalar (same formula). The NaN codes 0x7f / 0xff give +-480 (see above).
void fp8e4m3_to_bf16_n(const uint8_t* src, int64_t n, uint16_t* dst);

}  // namespace lq::cpu
