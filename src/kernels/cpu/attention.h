// kernels/cpu/attention.h: causal grouped-query attention over a KV cache.
//
// Flash-style: keys are processed in tiles with an online (running max / running
// sum) softmax, so memory is O(tile) and never O(T x S). Threads split work over
// (kv head, query tile) for prefill and over (head, KV split) for decode
// (split-K with a final log-sum-exp merge).
//
// Prefill kernels (docs/kernels-attention.md):
//   Fp32        Highway fp32 FMA kernel (every CPU; the only kernel for Precision::F32,
//               for fp32 KV caches and for decode, T <= 4).
//   Avx512Bf16  bf16 x bf16 -> fp32 dot products with VDPBF16PS (AVX512-BF16).
//   Amx         the same computation with AMX-BF16 tiles (TDPBF16PS).
// The two bf16 kernels are used for Precision::BF16 with a bf16 KV cache and T > 4:
// q and P (the softmax weights) are rounded to bf16 for the two matrix products, as
// FlashAttention-2 does on GPUs; the softmax itself (max, exp, running sum) is fp32.
#pragma once

#include <cstdint>

#include "core/precision.h"

namespace lq::cpu {

// KV cache element type: float (Precision::F32) or bf16 bits (Precision::BF16).
struct KVView {
  const void* k = nullptr;  // [Hkv][S_cap][D]
  const void* v = nullptr;  // [Hkv][S_cap][D]
  bool bf16 = false;        // element type: bf16 bits if true, else float
  int64_t head_stride = 0;  // elements between heads (= S_cap * D)
};

// q:   [T][Hq][D] fp32, already rotated (RoPE), for positions pos0 .. pos0+T-1.
// kv:  keys/values for positions 0 .. pos0+T-1 (query t attends to 0..pos0+t).
// out: [T][Hq][D] fp32. Query head h reads kv head h / (Hq / Hkv).
// scale: softmax scale (1/sqrt(D)).
// Precision::BF16 rounds q to bf16 before q·k (as GPU kernels do); F32 keeps fp32.
// With Precision::BF16, a bf16 cache and T > 4 the prefill runs on the best bf16
// kernel this CPU has (Amx, then Avx512Bf16), which also rounds P to bf16 for P·V;
// see attention_kernel_for.
void attention_causal(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                      const KVView& kv, int64_t pos0, float scale, float* out, Precision p);

// Scalar reference of the Fp32 kernel: full softmax in double per query row.
void attention_causal_ref(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                          const KVView& kv, int64_t pos0, float scale, float* out, Precision p);

// ---- bf16 prefill kernels ---------------------------------------------------

enum class AttnKernel { Auto, Fp32, Avx512Bf16, Amx };

// Keys per tile of the bf16 kernels. P is rounded to bf16 relative to the running
// max after each tile, so this is part of their numerics (the reference emulates it).
inline constexpr int64_t kAttnBf16KeyTile = 64;

// "auto", "fp32", "avx512bf16", "amx".
const char* attention_kernel_name(AttnKernel k);

// Whether this CPU/OS can run kernel k (Auto and Fp32: always; Avx512Bf16: AVX-512
// F/BW/DQ/VL + AVX512-BF16; Amx: that plus AMX-TILE/AMX-BF16 with the tile state
// granted by the kernel). Ignores the environment overrides below.
bool attention_kernel_available(AttnKernel k);

// The kernel attention_causal uses for a call: Fp32 unless p == BF16, the cache is
// bf16 and T > 4; then Amx if available and LQ_DISABLE_AMX != "1", else Avx512Bf16
// if available on an AMD CPU (on Intel cores VDPBF16PS has no throughput advantage
// over fp32 FMAs and the kernel measured slower than Fp32), else Fp32.
// LQ_ATTN_KERNEL=fp32|avx512bf16|amx (read once per process) overrides the choice for
// those calls (lq::Error if unavailable or unknown).
AttnKernel attention_kernel_for(int64_t T, bool kv_bf16, Precision p);

// attention_causal with an explicit kernel (tests, benchmarks). Fp32 is the Highway
// kernel for any arguments; Avx512Bf16 and Amx require p == Precision::BF16 and a
// bf16 cache (any T >= 0) and throw lq::Error if the CPU lacks them; Auto is
// attention_causal.
void attention_causal_with(AttnKernel k, const float* q, int64_t T, int64_t Hq, int64_t Hkv,
                           int64_t D, const KVView& kv, int64_t pos0, float scale, float* out,
                           Precision p);

// Scalar reference of the bf16 kernels (q, K, V as bf16; P rounded to bf16 per key
// tile of kAttnBf16KeyTile keys, relative to the running max; the sum l of the
// unrounded weights), computed in double and rounded once; kv must be bf16.
// If `slack` is not null it receives, per output element ([T][Hq][D]), how far an
// implementation with fp32 logits may legitimately differ from `out` because of
// the bf16 rounding of P: the sum over keys whose weight lies so close to a bf16
// rounding boundary that fp32 logit errors (bounded by the dot products' worst-case
// fp32 summation error) can round it the other way, of that one-ulp change times
// |v|, plus the effect of the same logit errors on the normaliser l.
void attention_causal_bf16_ref(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                               const KVView& kv, int64_t pos0, float scale, float* out,
                               float* slack = nullptr);

}  // namespace lq::cpu
