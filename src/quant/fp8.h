// quant/fp8.h: FP8 E4M3FN helpers for weights and W8A8 activations.
//
// The scalar conversions are core/dtype.h's fp8e4m3_to_f32 / f32_to_fp8e4m3 (RNE,
// saturating to +-448, NaN -> 0x7f); this file adds what the FP8 linear layer and
// the readers need on top of them.
//
// Activation quantization (W8A8 "FP8_DYNAMIC", as vLLM's per-token kernel):
//   scale = max(absmax(x_row) / 448, kFp8MinScale)      (fp32)
//   code  = f32_to_fp8e4m3(x / scale)                    (fp32 division, RNE, saturate)
// and the static variant uses the checkpoint's input_scale instead of `scale`.
#pragma once

#include <array>
#include <cstdint>

namespace lq::quant {

// Lower bound of dynamic scales (vLLM: 1 / (448 * 512)), so an all-zero row
// does not divide by zero.
inline constexpr float kFp8MinScale = 1.0f / (448.0f * 512.0f);

// All 256 codes decoded (NaN for 0x7f / 0xff).
const std::array<float, 256>& fp8_decode_table();

// Per-token dynamic scale of a row of n values.
float fp8_dynamic_scale(const float* x, int64_t n);

// codes[i] = f32_to_fp8e4m3(x[i] / scale).
void fp8_quantize_row(const float* x, int64_t n, float scale, uint8_t* codes);

// True for the two NaN codes (0x7f, 0xff), which a weight must not contain.
inline bool fp8_is_nan(uint8_t c) { return (c & 0x7f) == 0x7f; }

}  // namespace lq::quant
