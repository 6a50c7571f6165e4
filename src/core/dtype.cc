#include "core/dtype.h"

#include <array>

namespace lq {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::BF16: case DType::F16: case DType::I16: return 2;
    case DType::F32: case DType::I32: return 4;
    case DType::F8_E4M3: case DType::I8: case DType::U8: case DType::BOOL: return 1;
    case DType::I64: case DType::F64: return 8;
  }
  return 0;
}

namespace {
struct Named { DType t; std::string_view name; };
constexpr std::array<Named, 11> kNames{{{DType::BF16, "BF16"}, {DType::F16, "F16"}, {DType::F32, "F32"},
                                        {DType::F8_E4M3, "F8_E4M3"}, {DType::I8, "I8"}, {DType::U8, "U8"},
                                        {DType::I32, "I32"}, {DType::I64, "I64"}, {DType::BOOL, "BOOL"},
                                        {DType::F64, "F64"}, {DType::I16, "I16"}}};
}  // namespace

std::string_view dtype_name(DType t) {
  for (auto& n : kNames) if (n.t == t) return n.name;
  return "?";
}

bool parse_dtype(std::string_view s, DType* out) {
  for (auto& n : kNames) {
    if (n.name == s) { *out = n.t; return true; }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: man * 2^-24
    float v = std::ldexp(float(man), -24);
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;               // NaN
  if (u >= 0x477ff000u) return sign | 0x7c00u;              // rounds to >= 65536: inf
  if (u < 0x38800000u) {                                    // below 2^-14: subnormal half
    // value * 2^24 rounded to nearest even integer gives the subnormal mantissa.
    float v = std::bit_cast<float>(u) * 16777216.0f;
    float r = std::nearbyint(v);
    return sign | uint16_t(r);
  }
  // normal: rebias and round 13 dropped bits to nearest even
  uint32_t m = u + 0xfffu + ((u >> 13) & 1u);
  return sign | uint16_t(((m >> 13) - (112u << 10)) & 0x7fffu);
}

float fp8e4m3_to_f32(uint8_t v) {
  const bool neg = v & 0x80;
  const int e = (v >> 3) & 0xf;
  const int m = v & 7;
  float r;
  if (e == 15 && m == 7) {
    r = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    r = std::ldexp(float(m), -9);
  } else {
    r = std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  }
  return neg ? -r : r;
}

uint8_t f32_to_fp8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a > kFp8E4M3Max) a = kFp8E4M3Max;  // saturate before rounding
  if (a < 0.015625f) {                   // below 2^-6: subnormal, step 2^-9
    // code == round(a / 2^-9); 8 rounds up into the smallest normal (code 0x08).
    return sign | uint8_t(std::nearbyint(a * 512.0f));
  }
  int e;
  float fr = std::frexp(a, &e);  // a = fr * 2^e, fr in [0.5, 1)
  e -= 1;                        // a = (2 fr) * 2^e, 2 fr in [1, 2)
  int q = int(std::nearbyint((2.0f * fr - 1.0f) * 8.0f));
  if (q == 8) { q = 0; e += 1; }
  return sign | uint8_t(((e + 7) << 3) | q);
}

}  // namespace lq
