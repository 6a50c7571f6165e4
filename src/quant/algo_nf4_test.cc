// Tests of quant/algo_nf4 (bitsandbytes NF4 with double quantization) and algo_fp8.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>

#include "core/dtype.h"
#include "core/rng.h"
#include "quant/algo_common.h"
#include "quant/algo_fp8.h"
#include "quant/algo_nf4.h"
#include "quant/nf4.h"

namespace lq::quant {
namespace {

TEST(AlgoNf4, HandCheckedBytes) {
  // One row of 64 values, absmax 2 (so the reciprocal 0.5 is exact and x * 0.5 is exact).
  std::vector<float> w(64, 0.0f);
  w[0] = 2.0f;                             // +1.0        -> code 15
  w[1] = -2.0f;                            // -1.0        -> code 0        byte 0 = 0xF0
  w[2] = 0.0f;                             //  0          -> code 7
  w[3] = 2.0f * 0.07958029955625534f;      //  code 8 value -> 8          byte 1 = 0x78
  w[4] = 2.0f * 0.03979014977812767f;      //  exactly on the 7/8 midpoint: '>' fails -> 7
  w[5] = 2.0f * 0.0397902f;                //  just above  -> 8           byte 2 = 0x78
  w[6] = 2.0f * -0.045525018125772476f;    //  on the 6/7 midpoint -> lower code 6
  w[7] = 2.0f * -0.6f;                     //  between -0.696 and -0.525: midpoint -0.6106 -> 2
                                           //                                byte 3 = 0x62
  Nf4Options o;
  o.double_quant = false;
  Nf4Blocks q = quantize_nf4(w.data(), 1, 64, o);
  ASSERT_EQ(q.packed.size(), 32u);
  ASSERT_EQ(q.absmax.size(), 1u);
  EXPECT_EQ(q.absmax[0], 2.0f);
  EXPECT_EQ(q.packed[0], 0xF0);
  EXPECT_EQ(q.packed[1], 0x78);
  EXPECT_EQ(q.packed[2], 0x78);
  EXPECT_EQ(q.packed[3], 0x62);
  for (size_t j = 4; j < 32; ++j) EXPECT_EQ(q.packed[j], 0x77) << j;  // zeros -> code 7
  EXPECT_FALSE(q.double_quant);
  // Dequantization: code value * absmax.
  auto d = dequantize_nf4_f32(q);
  EXPECT_EQ(d[0], 2.0f);
  EXPECT_EQ(d[3], 2.0f * 0.07958029955625534f);
  EXPECT_EQ(d[7], 2.0f * -0.5250730514526367f);
}

TEST(AlgoNf4, ZeroBlockAndBlockLayout) {
  // Blocks run over the flattened weight, across rows: [3, 64] with blocksize 64 gives
  // 3 blocks; an all-zero block has absmax 0 and NaN comparisons in the decision tree,
  // which bitsandbytes resolves to code 0 (dequantizing to -1 * 0 = 0).
  std::vector<float> w(192, 0.0f);
  for (int i = 0; i < 64; ++i) w[size_t(128 + i)] = float(i) - 32.0f;
  Nf4Options o;
  o.double_quant = false;
  Nf4Blocks q = quantize_nf4(w.data(), 3, 64, o);
  ASSERT_EQ(q.absmax.size(), 3u);
  EXPECT_EQ(q.absmax[0], 0.0f);
  EXPECT_EQ(q.absmax[2], 32.0f);
  for (int j = 0; j < 64; ++j) EXPECT_EQ(q.packed[size_t(j)], 0x00) << j;
  EXPECT_EQ(q.packed[64] >> 4, 0);  // -32 / 32 = -1 -> code 0
  auto d = dequantize_nf4_f32(q);
  for (int i = 0; i < 128; ++i) EXPECT_EQ(d[size_t(i)], 0.0f);
}

TEST(AlgoNf4, DynamicQuantizeIsNearest) {
  const auto& dyn = bnb_dynamic_map();
  Rng r(3);
  for (int i = 0; i < 20000; ++i) {
    const float x = float(r.uniform() * 2.0 - 1.0);
    const uint8_t q = bnb_dynamic_quantize(dyn, x);
    float best = INFINITY;
    for (float c : dyn) best = std::min(best, std::fabs(c - x));
    // The kernel's midpoint test picks a nearest code (ties aside, which random x never hits
    // within fp32 resolution: allow 1 ulp of x).
    EXPECT_LE(std::fabs(dyn[q] - x), best + 1e-7f) << x;
  }
  EXPECT_EQ(bnb_dynamic_quantize(dyn, 1.0f), 255);
  EXPECT_EQ(dyn[bnb_dynamic_quantize(dyn, 0.0f)], 0.0f);
  EXPECT_EQ(bnb_dynamic_quantize(dyn, -1.0f), 0);
}

TEST(AlgoNf4, DoubleQuantAbsmaxWithinEightBitError) {
  const int64_t out = 40, in = 1024;  // 640 blocks of 64 -> 3 nested blocks of 256
  Rng r(4);
  std::vector<float> w(static_cast<size_t>(out * in));
  for (auto& v : w) v = float(r.normal()) * 0.02f * float(1.0 + r.uniform());
  Nf4Options plain;
  plain.double_quant = false;
  Nf4Blocks a = quantize_nf4(w.data(), out, in, plain);
  Nf4Blocks b = quantize_nf4(w.data(), out, in, Nf4Options{});
  ASSERT_TRUE(b.double_quant);
  ASSERT_EQ(b.absmax_q.size(), 640u);
  ASSERT_EQ(b.nested_absmax.size(), 3u);
  EXPECT_EQ(a.packed, b.packed);  // codes come from the exact absmax either way
  double mean = 0;
  for (float v : a.absmax) mean += v;
  mean /= double(a.absmax.size());
  EXPECT_NEAR(b.offset, mean, 1e-7);
  for (size_t i = 0; i < a.absmax.size(); ++i) {
    // The dynamic map's widest gap is in its top decade, (1 - 0.1)/64 = 0.0140625, so the
    // nearest code is within 0.0071 of x = (absmax - offset)/nested; plus fp32 roundings.
    const float nested = b.nested_absmax[i / 256];
    EXPECT_NEAR(b.absmax[i], a.absmax[i], 0.0071 * nested + 1e-6) << i;
  }
}

TEST(AlgoFp8, PerChannelScalesAndCodes) {
  const int64_t out = 3, in = 5;
  std::vector<float> w = {1.0f, -2.0f, 0.5f, 0.001f, 2.0f,   // absmax 2 -> scale 2/448
                          0.0f, 0.0f, 0.0f, 0.0f, 0.0f,      // zero row -> scale FLT_EPSILON, codes 0
                          -448.0f, 1.0f, 3.0f, 100.0f, 447.0f};
  Fp8Weight q = quantize_fp8(w.data(), out, in);
  EXPECT_TRUE(q.per_channel);
  EXPECT_FALSE(q.input_scale.has_value());
  EXPECT_EQ(q.scale[0], 2.0f / 448.0f);
  EXPECT_EQ(q.scale[1], FLT_EPSILON);
  EXPECT_EQ(q.scale[2], 1.0f);
  EXPECT_EQ(q.w[4], 0x7e);   // +448
  EXPECT_EQ(q.w[1], 0xfe);   // -448
  for (int k = 0; k < 5; ++k) EXPECT_EQ(q.w[size_t(5 + k)], 0x00);
  EXPECT_EQ(q.w[10], 0xfe);
  EXPECT_EQ(q.w[14], f32_to_fp8e4m3(447.0f));  // RNE: 447 -> 448 (step 32 above 256)
  auto d = dequantize_fp8_f32(q);
  // E4M3 keeps 3 mantissa bits: relative error <= 2^-4 for normal values.
  for (int64_t i = 0; i < out * in; ++i) {
    if (std::fabs(w[size_t(i)]) > q.scale[size_t(i / in)] * 0.015625f) {
      EXPECT_LE(std::fabs(d[size_t(i)] - w[size_t(i)]), std::fabs(w[size_t(i)]) / 16.0f) << i;
    }
  }
}

}  // namespace
}  // namespace lq::quant
