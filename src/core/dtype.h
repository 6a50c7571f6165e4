// core/dtype.h: element types of checkpoints and their scalar conversions.
//
// All conversions here are the plain scalar reference: exact bit-level
// definitions that SIMD kernels are tested against.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace lq {

enum class DType : uint8_t { BF16, F16, F32, F8_E4M3, I8, U8, I32, I64, BOOL, F64, I16 };

// Size in bytes of one element.
size_t dtype_size(DType t);
// Safetensors spelling ("BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType t);
// Parse a safetensors dtype string; returns false if unknown.
bool parse_dtype(std::string_view s, DType* out);

// ---- bfloat16 -------------------------------------------------------------
inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

// Round to nearest even; NaN stays a quiet NaN with its sign.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// ---- IEEE binary16 --------------------------------------------------------
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf

// ---- FP8 E4M3FN (OCP "fn": no infinities, one NaN pattern per sign, max 448)
inline constexpr float kFp8E4M3Max = 448.0f;
float fp8e4m3_to_f32(uint8_t v);
// Saturating round-to-nearest-even cast: |f| > 448 clamps to +-448; NaN -> 0x7f.
uint8_t f32_to_fp8e4m3(float f);

}  // namespace lq
