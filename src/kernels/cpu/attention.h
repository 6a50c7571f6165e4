// kernels/cpu/attention.h: causal grouped-query attention over a KV cache.
//
// Flash-style: keys are processed in tiles with an online (running max / running
// sum) softmax, so memory is O(tile) and never O(T x S). Threads split work over
// (kv head, query tile) for prefill and over (head, KV split) for decode
// (split-K with a final log-sum-exp merge).
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
void attention_causal(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                      const KVView& kv, int64_t pos0, float scale, float* out, Precision p);

// Scalar reference: full softmax in double per query row.
void attention_causal_ref(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                          const KVView& kv, int64_t pos0, float scale, float* out, Precision p);

}  // namespace lq::cpu
