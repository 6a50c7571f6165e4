// kernels/cpu/elementwise_test.cc: SIMD element-wise ops against their scalar
// references, at lengths that exercise full vectors, tails and the threaded path.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "hwy/targets.h"
#include "kernels/cpu/elementwise.h"

namespace lq::cpu {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float mag = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, mag);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Lengths: 1, around every vector width (4, 8, 16) and their multiples, odd, and
// large enough (>= 65536 elements) to take the multi-threaded path.
const int64_t kLens[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 4096, 4099, 70001};

// rmsnorm: fp32 sum of squares (lane-parallel partial sums), 1/sqrt, two multiplies
// vs a double reference. Relative error <= ~(4 + 0.5 * sqrt(dim)) * 2^-24 ~ 2.5e-6
// at dim 70001; tolerance 1e-5 relative.
TEST(Elementwise, RmsnormMatchesReference) {
  for (int64_t dim : kLens) {
    for (int64_t rows : {1, 3}) {
      const auto x = randn(size_t(rows * dim), uint32_t(dim + rows), 3.0f);
      const auto wf = randn(size_t(dim), 7);
      std::vector<uint16_t> w(static_cast<size_t>(dim));
      for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(wf[i]);
      std::vector<float> ref(x.size()), got(x.size()), alias = x;
      rmsnorm_ref(x.data(), w.data(), 1e-6f, rows, dim, ref.data());
      rmsnorm(x.data(), w.data(), 1e-6f, rows, dim, got.data());
      rmsnorm(alias.data(), w.data(), 1e-6f, rows, dim, alias.data());  // out aliases x
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_NEAR(got[i], ref[i], 1e-5 * std::fabs(ref[i]) + 1e-30) << "dim=" << dim << " i=" << i;
        ASSERT_EQ(bits(alias[i]), bits(got[i])) << "dim=" << dim << " i=" << i;
      }
    }
  }
}

// eps dominates for an all-zero row: output exactly zero, no NaN.
TEST(Elementwise, RmsnormZeroRow) {
  std::vector<float> x(37, 0.0f), out(37, 1.0f);
  std::vector<uint16_t> w(37, f32_to_bf16(1.0f));
  rmsnorm(x.data(), w.data(), 1e-5f, 1, 37, out.data());
  for (float o : out) EXPECT_EQ(o, 0.0f);
}

// rope: the SIMD path evaluates the reference's expressions fma(x1, c, -(x2*s)) and
// fma(x2, c, x1*s); with hardware FMA (AVX2/AVX-512, this machine) results are
// bit-identical, on SSE targets the fused product is rounded separately. Tolerance:
// 2^-23 * (|x1*c| + |x2*s|), one ulp of the larger product; 0 difference expected here.
void expect_rope_close(const std::vector<float>& x, const std::vector<float>& got,
                       const std::vector<float>& ref, int64_t T, int64_t H, int64_t D,
                       const std::vector<float>& c, const std::vector<float>& s) {
  const int64_t half = D / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < D; ++i) {
        const size_t k = size_t((t * H + h) * D + i);
        const size_t j = size_t((t * H + h) * D + (i < half ? i + half : i - half));
        const size_t ci = size_t(t * half + i % half);
        const double mag = std::fabs(double(x[k]) * c[ci]) + std::fabs(double(x[j]) * s[ci]);
        ASSERT_NEAR(got[k], ref[k], std::ldexp(mag, -23)) << "D=" << D << " t=" << t << " i=" << i;
      }
}

TEST(Elementwise, RopeMatchesReference) {
  for (int64_t D : {2, 6, 16, 34, 64, 128, 130}) {
    const int64_t T = 5, H = 3;
    const auto x = randn(size_t(T * H * D), uint32_t(D));
    std::vector<float> c(size_t(T * D / 2)), s(c.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double ang = double(100 + t) * std::pow(10000.0, -2.0 * double(i) / double(D));
        c[size_t(t * D / 2 + i)] = float(std::cos(ang));
        s[size_t(t * D / 2 + i)] = float(std::sin(ang));
      }
    auto ref = x, got = x;
    rope_apply_ref(ref.data(), T, H, D, c.data(), s.data());
    rope_apply(got.data(), T, H, D, c.data(), s.data());
    expect_rope_close(x, got, ref, T, H, D, c, s);
    // The rotation really happened (rows differ from the input).
    EXPECT_NE(0, std::memcmp(x.data(), got.data(), x.size() * sizeof(float)));
  }
  // Large T*H*D takes the threaded path.
  const int64_t T = 64, H = 16, D = 128;
  const auto x = randn(size_t(T * H * D), 3);
  const auto c = randn(size_t(T * D / 2), 4), s = randn(size_t(T * D / 2), 5);
  auto ref = x, got = x;
  rope_apply_ref(ref.data(), T, H, D, c.data(), s.data());
  rope_apply(got.data(), T, H, D, c.data(), s.data());
  expect_rope_close(x, got, ref, T, H, D, c, s);
}

TEST(Elementwise, RopeRejectsOddDim) {
  std::vector<float> x(6), c(3), s(3);
  EXPECT_THROW(rope_apply(x.data(), 1, 2, 3, c.data(), s.data()), Error);
}

// silu_mul: Highway Exp (~1-2 ulp) + add, divide, multiply in fp32 vs double:
// relative error <= ~5 ulp = 3e-7; tolerance 4e-6 relative plus 1e-37 absolute for
// results that underflow into fp32 denormals (gate around -90..-100).
TEST(Elementwise, SiluMulMatchesReference) {
  for (int64_t n : kLens) {
    auto g = randn(size_t(n), uint32_t(n), 4.0f);
    const auto u = randn(size_t(n), uint32_t(n + 1));
    // Extremes: exp(-g) overflows (g << 0) or vanishes (g >> 0).
    const float extremes[] = {-1000.0f, -100.0f, -88.5f, -20.0f, 0.0f, -0.0f, 20.0f, 100.0f, 1000.0f};
    for (size_t i = 0; i < std::size(extremes) && i < size_t(n); ++i) g[i] = extremes[i];
    std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n)), alias = g;
    silu_mul_ref(g.data(), u.data(), n, ref.data());
    silu_mul(g.data(), u.data(), n, got.data());
    silu_mul(alias.data(), u.data(), n, alias.data());  // out aliases gate
    for (size_t i = 0; i < size_t(n); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << "g=" << g[i];
      ASSERT_NEAR(got[i], ref[i], 4e-6 * std::fabs(ref[i]) + 1e-37) << "n=" << n << " g=" << g[i];
      ASSERT_EQ(bits(alias[i]), bits(got[i]));
    }
  }
}

TEST(Elementwise, AddInplaceExact) {
  for (int64_t n : kLens) {
    const auto x = randn(size_t(n), 1), y0 = randn(size_t(n), 2);
    auto y = y0;
    add_inplace(y.data(), x.data(), n);
    for (size_t i = 0; i < size_t(n); ++i) ASSERT_EQ(bits(y[i]), bits(y0[i] + x[i]));
  }
}

// round_to_bf16 vs lq::round_bf16 (the scalar definition), bit for bit, including
// ties, NaN, infinities, denormals and values that round up into the next binade.
TEST(Elementwise, RoundToBf16Exact) {
  for (int64_t n : kLens) {
    auto x = randn(size_t(n), 9, 100.0f);
    const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                              -std::numeric_limits<float>::quiet_NaN(),
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::denorm_min(),
                              std::numeric_limits<float>::max(),
                              1.00390625f,   // 1 + 2^-8: tie, rounds to even (down)
                              1.01171875f,   // 1 + 3*2^-8: tie, rounds up
                              -0.0f,
                              3.3895314e38f};  // rounds up to inf
    for (size_t i = 0; i < std::size(specials) && i < size_t(n); ++i) x[i] = specials[i];
    auto got = x;
    round_to_bf16(got.data(), n);
    for (size_t i = 0; i < size_t(n); ++i) ASSERT_EQ(bits(got[i]), bits(round_bf16(x[i]))) << "x=" << x[i];
  }
}

// Results do not depend on the thread count.
TEST(Elementwise, ThreadCountIndependent) {
  const int saved = num_threads();
  const int64_t n = 200000;
  const auto g = randn(size_t(n), 1), u = randn(size_t(n), 2);
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  set_num_threads(1);
  silu_mul(g.data(), u.data(), n, a.data());
  set_num_threads(2);
  silu_mul(g.data(), u.data(), n, b.data());
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

// Every SIMD target compiled in and supported by this CPU, not just the best one.
TEST(Elementwise, EveryTargetMatchesReference) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    for (int64_t n : {5, 37, 300}) {
      auto g = randn(size_t(n), 1, 4.0f);
      g[0] = -1000.0f;
      g[1] = 1000.0f;
      const auto u = randn(size_t(n), 2);
      std::vector<uint16_t> w(static_cast<size_t>(n), f32_to_bf16(0.75f));
      std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n));
      silu_mul_ref(g.data(), u.data(), n, ref.data());
      silu_mul(g.data(), u.data(), n, got.data());
      for (size_t i = 0; i < size_t(n); ++i) ASSERT_NEAR(got[i], ref[i], 4e-6 * std::fabs(ref[i]) + 1e-37);
      rmsnorm_ref(g.data(), w.data(), 1e-6f, 1, n, ref.data());
      rmsnorm(g.data(), w.data(), 1e-6f, 1, n, got.data());
      for (size_t i = 0; i < size_t(n); ++i) ASSERT_NEAR(got[i], ref[i], 1e-5 * std::fabs(ref[i]) + 1e-30);
      auto r1 = g, r2 = g;
      round_to_bf16(r1.data(), n);
      for (auto& x : r2) x = round_bf16(x);
      ASSERT_EQ(0, std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(float)));
      const int64_t D = 2 * n, T = 1, H = 1;
      auto x = randn(size_t(D), 3);
      const auto c = randn(size_t(n), 4), s = randn(size_t(n), 5);
      auto xr = x, xg = x;
      rope_apply_ref(xr.data(), T, H, D, c.data(), s.data());
      rope_apply(xg.data(), T, H, D, c.data(), s.data());
      expect_rope_close(x, xg, xr, T, H, D, c, s);
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace
}  // namespace lq::cpu
