// kernels/cpu/attention_bf16.h: internal interface of the bf16 prefill attention
// kernels (AVX512-BF16 and AMX-BF16) in attention_bf16.cc. Callers use
// attention_causal / attention_causal_with (attention.h), which validate arguments.
#pragma once

#include <cstdint>

#include "kernels/cpu/attention.h"

namespace lq::cpu::detail {

// AVX-512 F/BW/DQ/VL + AVX512-BF16, with the OS saving the AVX-512 state. Cached.
bool cpu_has_avx512_bf16();
// CPU vendor is AMD (cpuid leaf 0 "AuthenticAMD"). Cached.
bool cpu_is_amd();
// cpu_has_avx512_bf16() and amx_available() (AMX-TILE/AMX-BF16, tile state granted).
bool cpu_has_amx_bf16();

// Causal GQA attention with bf16 tiles (arguments already validated; kv.bf16 must be
// true). amx selects TDPBF16PS tiles, else VDPBF16PS; both give the same numerics
// up to fp32 summation order (see attention_bf16.cc).
void attention_prefill_bf16(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                            const KVView& kv, int64_t pos0, float scale, float* out, bool amx);

}  // namespace lq::cpu::detail
