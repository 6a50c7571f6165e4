// Tests of the bitsandbytes NF4 constants and helpers (quant/nf4.h): exact code
// table (bit patterns), the dQuantizeNF4 tie rule, packing order (first element
// in the HIGH nibble), the dynamic map of double quantization and absmax decoding.
// Expected bit patterns were computed independently with Python's struct module
// from the decimal values bitsandbytes publishes.
#include "quant/nf4.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

namespace lq::quant {
namespace {

TEST(Nf4, CodeTableIsExact) {
  EXPECT_EQ(std::bit_cast<uint32_t>(kNf4Code[8]), 0x3da2faffu);   // 0.07958029955625534
  EXPECT_EQ(std::bit_cast<uint32_t>(kNf4Code[1]), 0xbf3239b1u);   // -0.6961928009986877
  EXPECT_EQ(std::bit_cast<uint32_t>(kNf4Code[14]), 0x3f3913b3u);  // 0.7229568362236023
  EXPECT_EQ(kNf4Code[0], -1.0f);
  EXPECT_EQ(kNf4Code[7], 0.0f);
  EXPECT_EQ(kNf4Code[15], 1.0f);
  for (int i = 0; i < 15; ++i) EXPECT_LT(kNf4Code[size_t(i)], kNf4Code[size_t(i + 1)]);
}

TEST(Nf4, NearestUsesTheDecisionTreeTieRule) {
  for (int i = 0; i < 15; ++i) {
    const float mid = float((double(kNf4Code[size_t(i)]) + double(kNf4Code[size_t(i + 1)])) / 2);
    // On (or within a float step of) the midpoint the tree's strict '>' picks the lower code.
    EXPECT_EQ(nf4_nearest(std::nextafter(mid, -2.0f)), i) << i;
    EXPECT_EQ(nf4_nearest(std::nextafter(mid, 2.0f) + 1e-6f), i + 1) << i;
  }
  EXPECT_EQ(nf4_nearest(0.03979014977812767f), 7);  // exactly the published midpoint: lower code
  EXPECT_EQ(nf4_nearest(-1.0f), 0);
  EXPECT_EQ(nf4_nearest(1.0f), 15);
  EXPECT_EQ(nf4_nearest(0.0f), 7);
  // Away from midpoints it is the nearest code.
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int t = 0; t < 2000; ++t) {
    const float x = u(rng);
    int best = 0;
    for (int c = 1; c < 16; ++c)
      if (std::fabs(kNf4Code[size_t(c)] - x) < std::fabs(kNf4Code[size_t(best)] - x)) best = c;
    if (std::fabs(std::fabs(kNf4Code[size_t(best)] - x) - std::fabs(kNf4Code[size_t(nf4_nearest(x))] - x)) > 1e-6f)
      ADD_FAILURE() << x;
  }
}

TEST(Nf4, PackingHasTheFirstElementInTheHighNibble) {
  Nf4Blocks w;
  w.out = 2;
  w.in = 4;
  w.blocksize = 4;
  w.packed = {0x0F, 0x87, 0x21, 0xE0};  // elements: 0,15 | 8,7 | 2,1 | 14,0
  w.absmax = {2.0f, 0.5f};
  validate(w, "hand");
  const std::vector<float> d = dequantize(w);
  const std::vector<float> want = {-2.0f, 2.0f, kNf4Code[8] * 2.0f, 0.0f,
                                   kNf4Code[2] * 0.5f, kNf4Code[1] * 0.5f, kNf4Code[14] * 0.5f, -0.5f};
  EXPECT_EQ(d, want);
  EXPECT_EQ(nf4_nibble(w.packed.data(), 0), 0);
  EXPECT_EQ(nf4_nibble(w.packed.data(), 1), 15);
}

TEST(Nf4, DynamicMapMatchesBitsandbytes) {
  const auto& m = bnb_dynamic_map();
  for (int i = 0; i < 255; ++i) EXPECT_LT(m[size_t(i)], m[size_t(i + 1)]) << i;
  EXPECT_EQ(m[127], 0.0f);
  EXPECT_EQ(m[255], 1.0f);
  // 127 positive and 127 negative values, mirrored.
  for (int i = 0; i < 127; ++i) EXPECT_EQ(m[size_t(126 - i)], -m[size_t(128 + i)]) << i;
  // Smallest magnitude: 1e-6 * (0.1 + 1) / 2 in float32 = 0x3513a3b7; largest below 1:
  // mean of the last two of linspace(0.1, 1, 65) = 0x3f7e3333; the first of that
  // decade 0x3ddb3334 (independently computed with float32 emulation in Python).
  EXPECT_EQ(std::bit_cast<uint32_t>(m[128]), 0x3513a3b7u);
  EXPECT_EQ(std::bit_cast<uint32_t>(m[254]), 0x3f7e3333u);
  EXPECT_EQ(std::bit_cast<uint32_t>(m[254 - 63]), 0x3ddb3334u);
}

TEST(Nf4, DoubleQuantAbsmaxDecodesWithinItsEightBitError) {
  // Quantize absmax values (mean removed, blocks of 256, nearest code of the dynamic
  // map, as bitsandbytes' quantize_blockwise) and check the decode formula exactly
  // and the error against the map's resolution.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.01f, 0.3f);
  const auto& dyn = bnb_dynamic_map();
  Nf4Blocks w;
  w.double_quant = true;
  w.nested_blocksize = 256;
  const int nb = 600;
  std::vector<float> orig(nb);
  double mean = 0;
  for (float& a : orig) mean += (a = u(rng));
  w.offset = float(mean / nb);
  w.absmax_q.resize(nb);
  for (int b0 = 0; b0 < nb; b0 += 256) {
    float amax = 0;
    for (int b = b0; b < std::min(nb, b0 + 256); ++b) amax = std::max(amax, std::fabs(orig[size_t(b)] - w.offset));
    w.nested_absmax.push_back(amax);
    for (int b = b0; b < std::min(nb, b0 + 256); ++b) {
      const float x = (orig[size_t(b)] - w.offset) / amax;
      int best = 0;
      for (int c = 1; c < 256; ++c)
        if (std::fabs(dyn[size_t(c)] - x) < std::fabs(dyn[size_t(best)] - x)) best = c;
      w.absmax_q[size_t(b)] = uint8_t(best);
    }
  }
  nf4_decode_absmax(w, dyn);
  for (int b = 0; b < nb; ++b) {
    const float nested = w.nested_absmax[size_t(b / 256)];
    EXPECT_EQ(w.absmax[size_t(b)], dyn[w.absmax_q[size_t(b)]] * nested + w.offset) << b;
    // Largest gap between neighbouring codes in [-1, 1] is < 1/64 (the top decade has
    // 64 steps of 0.9/64); nearest-code error is at most half a gap, times nested absmax.
    EXPECT_LE(std::fabs(w.absmax[size_t(b)] - orig[size_t(b)]), nested * (0.9f / 64 / 2) + 1e-7f) << b;
  }
}

}  // namespace
}  // namespace lq::quant
