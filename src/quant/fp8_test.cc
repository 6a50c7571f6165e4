// Tests of the FP8 E4M3FN conversions (core/dtype.h) and helpers (quant/fp8.h):
// all 256 codes decode right, and encoding is round-to-nearest-even with
// saturation, checked exhaustively on every code, every midpoint between
// neighbouring codes and its two float neighbours, and a sweep of float bit
// patterns against a brute-force nearest-value search. Exact comparisons only.
#include "quant/fp8.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "core/dtype.h"

namespace lq::quant {
namespace {

// Independent decoder: the E4M3FN definition (bias 7, no infinities, S.1111.111 NaN).
double expected_value(int c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(double(m), -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

TEST(Fp8E4M3, AllCodesDecode) {
  for (int c = 0; c < 256; ++c) {
    const double e = expected_value(c);
    const float got = fp8e4m3_to_f32(uint8_t(c));
    if (std::isnan(e)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(double(got), e) << "code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << c;
    }
    EXPECT_EQ(std::bit_cast<uint32_t>(fp8_decode_table()[size_t(c)]), std::bit_cast<uint32_t>(got)) << c;
  }
  // Hand-checked anchors.
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), 0.001953125f);  // 2^-9, smallest subnormal
  EXPECT_EQ(fp8e4m3_to_f32(0x08), 0.015625f);     // 2^-6, smallest normal
  EXPECT_EQ(fp8e4m3_to_f32(0xfe), -448.0f);
  EXPECT_TRUE(fp8_is_nan(0x7f) && fp8_is_nan(0xff) && !fp8_is_nan(0x7e));
}

// Brute force: nearest finite E4M3 value, ties to the even code; |x| > 448 saturates.
uint8_t brute_encode(float x) {
  if (std::isnan(x)) return 0x7f;
  const bool neg = std::signbit(x);
  const double a = std::fmin(std::fabs(double(x)), 448.0);
  int best = 0;
  double bd = 1e300;
  for (int c = 0; c <= 0x7e; ++c) {
    const double d = std::fabs(expected_value(c) - a);
    if (d < bd || (d == bd && (c & 1) == 0)) {
      bd = d;
      best = c;
    }
  }
  return uint8_t(best | (neg ? 0x80 : 0));
}

TEST(Fp8E4M3, EncodeRoundsToNearestEvenAndSaturates) {
  // Every code round-trips; every midpoint goes to the even neighbour; one float
  // step either side of a midpoint goes to the nearer code.
  for (int c = 0; c <= 0x7e; ++c) {
    for (int sign : {0, 0x80}) {
      const float v = float(expected_value(c | sign));
      EXPECT_EQ(f32_to_fp8e4m3(v), uint8_t(c | sign)) << c;
    }
    if (c == 0x7e) break;
    const float lo = float(expected_value(c)), hi = float(expected_value(c + 1));
    const float mid = (lo + hi) / 2;  // exact in fp32
    const uint8_t even = (c & 1) ? uint8_t(c + 1) : uint8_t(c);
    EXPECT_EQ(f32_to_fp8e4m3(mid), even) << "midpoint after code " << c;
    EXPECT_EQ(f32_to_fp8e4m3(-mid), uint8_t(even | 0x80)) << c;
    EXPECT_EQ(f32_to_fp8e4m3(std::nextafter(mid, 0.0f)), uint8_t(c)) << c;
    EXPECT_EQ(f32_to_fp8e4m3(std::nextafter(mid, 1000.0f)), uint8_t(c + 1)) << c;
  }
  // Saturation (no infinities in E4M3FN) and NaN.
  for (float big : {448.5f, 464.0f, 480.0f, 1e6f, std::numeric_limits<float>::max(),
                    std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(f32_to_fp8e4m3(big), 0x7e) << big;
    EXPECT_EQ(f32_to_fp8e4m3(-big), 0xfe) << big;
  }
  EXPECT_EQ(f32_to_fp8e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(f32_to_fp8e4m3(0.0009765625f), 0x00);  // 2^-10: tie between 0 and 2^-9 -> even (0)
  EXPECT_EQ(f32_to_fp8e4m3(-0.0f), 0x80);
}

TEST(Fp8E4M3, EncodeMatchesBruteForceOnBitPatternSweep) {
  // Every 32822nd positive float bit pattern (about 65k values covering all
  // exponents), both signs, against the brute-force encoder.
  for (uint32_t u = 0; u < 0x7f800000u; u += 16411u * 2u) {
    const float x = std::bit_cast<float>(u);
    ASSERT_EQ(f32_to_fp8e4m3(x), brute_encode(x)) << x;
    ASSERT_EQ(f32_to_fp8e4m3(-x), brute_encode(-x)) << -x;
  }
}

TEST(Fp8Activations, DynamicScaleAndQuantizeRow) {
  const std::vector<float> x = {0.5f, -3.0f, 1.25f, 0.0f};
  const float s = fp8_dynamic_scale(x.data(), 4);
  EXPECT_EQ(s, 3.0f / 448.0f);
  std::vector<uint8_t> c(4);
  fp8_quantize_row(x.data(), 4, s, c.data());
  EXPECT_EQ(c[1], 0xfe);  // the absmax maps to -448
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c[size_t(i)], f32_to_fp8e4m3(x[size_t(i)] / s));
  const std::vector<float> z(8, 0.0f);
  EXPECT_EQ(fp8_dynamic_scale(z.data(), 8), kFp8MinScale);  // no division by zero
}

}  // namespace
}  // namespace lq::quant
