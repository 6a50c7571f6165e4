// Tests of the quantized Linear layers (quant/qlinear.h): forward against a float64
// product with the reference weights of quant/formats.h (dequantize()).
//
// Tolerances (relative to sum_k |x_k w_nk|, the natural scale of fp32 accumulation
// error): Precision::F32 -> 1e-5 (fp32 accumulation over K <= 300 is ~K * 6e-8 in
// the worst case, typically far less; any wrong code/scale/zero/permutation moves an
// output by at least one |x w| term, i.e. far above 1e-5 of the sum).
// BF16 -> 2^-8: activations (and in prefill, weights) are rounded to bf16 (<= 2^-9
// relative each). FP8 W8A8 is compared with the float64 product of the E4M3
// activations the layer quantizes to (same scales), at 1e-5.
#include "quant/qlinear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/affine.h"
#include "quant/fp8.h"
#include "quant/nf4.h"

namespace lq {
namespace {

using quant::AffineGroups;
using quant::Fp8Weight;
using quant::Nf4Blocks;

std::vector<float> rand_vec(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

AffineGroups rand_affine(int bits, int64_t N, int64_t K, int64_t gs, bool act_order, bool sym, uint32_t seed) {
  std::mt19937 rng(seed);
  AffineGroups w;
  w.bits = bits;
  w.out = N;
  w.in = K;
  w.group_size = gs;
  w.sym = sym;
  const int qmax = (1 << bits) - 1;
  w.q.resize(size_t(N * K));
  for (auto& c : w.q) c = uint8_t(rng() % (qmax + 1));
  const int64_t G = w.n_groups();
  std::uniform_real_distribution<float> us(0.001f, 0.05f);
  for (int64_t i = 0; i < G * N; ++i) {
    w.scales.push_back(us(rng));
    w.zeros.push_back(sym ? float(1 << (bits - 1)) : float(rng() % (qmax + 1)));
  }
  if (act_order) {
    std::vector<int32_t> perm(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) perm[size_t(k)] = int32_t(k);
    std::shuffle(perm.begin(), perm.end(), rng);
    w.g_idx.resize(size_t(K));
    for (int64_t i = 0; i < K; ++i) w.g_idx[size_t(perm[size_t(i)])] = int32_t(i / gs);
  }
  return w;
}

// y = x W^T + b in float64 over the given fp32 weights; mag = sum |x w|.
void reference(const std::vector<float>& X, int64_t M, const std::vector<float>& W, int64_t N, int64_t K,
               const std::vector<float>& b, std::vector<double>& y, std::vector<double>& mag) {
  y.assign(size_t(M * N), 0.0);
  mag.assign(size_t(M * N), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = b.empty() ? 0.0 : b[size_t(n)], a = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double t = double(X[size_t(m * K + k)]) * double(W[size_t(n * K + k)]);
        s += t;
        a += std::fabs(t);
      }
      y[size_t(m * N + n)] = s;
      mag[size_t(m * N + n)] = a;
    }
}

void check_linear(const Linear& lin, const std::vector<float>& W, const std::vector<float>& bias, const char* what) {
  const int64_t N = lin.out_features(), K = lin.in_features();
  for (int64_t M : {1, 3, 4, 7})
    for (Precision p : {Precision::F32, Precision::BF16}) {
      std::vector<float> X = rand_vec(size_t(M * K), uint32_t(M * 13 + K));
      std::vector<float> Xr = X;
      if (p == Precision::BF16)
        for (float& x : Xr) x = round_bf16(x);
      std::vector<double> ref, mag;
      reference(Xr, M, W, N, K, bias, ref, mag);
      std::vector<float> Y(size_t(M * N));
      lin.forward(X.data(), M, Y.data(), p);
      const double tol = p == Precision::F32 ? 1e-5 : 1.0 / 256;
      for (size_t i = 0; i < Y.size(); ++i)
        ASSERT_NEAR(Y[i], ref[i], tol * mag[i] + 1e-6) << what << " M=" << M << " " << precision_name(p) << " i=" << i;
    }
}

TEST(QLinear, AffineMatchesFloat64Reference) {
  struct Case { int bits; int64_t N, K, gs; bool act, sym; };
  for (const Case& c : std::vector<Case>{{4, 24, 256, 128, false, true}, {4, 17, 96, 32, true, false},
                                         {4, 8, 100, 100, false, false},  // per channel, K not a multiple of 32
                                         {8, 24, 256, 128, false, true}, {8, 9, 192, 64, true, false}}) {
    const AffineGroups w = rand_affine(c.bits, c.N, c.K, c.gs, c.act, c.sym, uint32_t(c.N + c.K));
    const std::vector<float> bias = rand_vec(size_t(c.N), 9, 0.1f);
    AffineLinear lin(w, bias);
    // Symmetric 8-bit layers use the signed-code layout (zero 128 folded into the codes).
    EXPECT_EQ(lin.view().signed8, c.bits == 8 && c.sym);
    EXPECT_EQ(lin.in_features(), c.K);
    EXPECT_EQ(lin.out_features(), c.N);
    // Memory stays about the quantized size: codes + fp32 scale + int32 zero per group.
    EXPECT_LE(lin.weight_bytes(), c.N * c.K * c.bits / 8 + c.N * 16 * 8 + c.K * 4 + 64);
    check_linear(lin, quant::dequantize(w), bias, "affine");
  }
}

TEST(QLinear, Nf4MatchesFloat64Reference) {
  for (int64_t bs : {64, 24}) {  // 24: blocks are not whole SIMD steps -> tiled path for every M
    const int64_t N = 20, K = 192;
    std::mt19937 rng(static_cast<uint32_t>(bs));
    Nf4Blocks w;
    w.out = N;
    w.in = K;
    w.blocksize = bs;
    w.packed.resize(size_t(N * K / 2));
    for (auto& b : w.packed) b = uint8_t(rng());
    std::uniform_real_distribution<float> ua(0.01f, 0.3f);
    w.absmax.resize(size_t(N * K / bs));
    for (auto& a : w.absmax) a = ua(rng);
    Nf4Linear lin(w, {});
    check_linear(lin, quant::dequantize(w), {}, "nf4");
  }
}

TEST(QLinear, Fp8W8A8MatchesFloat64OfQuantizedActivations) {
  const int64_t N = 19, K = 160;
  std::mt19937 rng(5);
  for (int mode = 0; mode < 3; ++mode) {  // 0 dynamic per token, 1 static input_scale, 2 weight-only
    Fp8Weight w;
    w.out = N;
    w.in = K;
    w.per_channel = mode != 1;
    w.w.resize(size_t(N * K));
    for (auto& c : w.w) do c = uint8_t(rng()); while (quant::fp8_is_nan(c));
    for (size_t i = 0; i < (w.per_channel ? size_t(N) : 1); ++i) w.scale.push_back(0.0005f * float(1 + rng() % 50));
    if (mode == 1) w.input_scale = 0.004f;
    w.w8a8 = mode != 2;
    Fp8Linear lin(w, {});
    const std::vector<float> W = quant::dequantize(w);
    for (int64_t M : {1, 4, 9}) {
      std::vector<float> X = rand_vec(size_t(M * K), uint32_t(M));
      const std::vector<float> s = lin.activation_scales(X.data(), M);
      ASSERT_EQ(s.size(), mode == 2 ? 0u : size_t(M));
      std::vector<float> Xq = X;
      for (int64_t m = 0; m < M && mode != 2; ++m) {
        EXPECT_EQ(s[size_t(m)], mode == 1 ? 0.004f : quant::fp8_dynamic_scale(X.data() + m * K, K));
        for (int64_t k = 0; k < K; ++k) {
          float& x = Xq[size_t(m * K + k)];
          x = float(double(fp8e4m3_to_f32(f32_to_fp8e4m3(x / s[size_t(m)]))) * double(s[size_t(m)]));
        }
      }
      std::vector<double> ref, mag;
      reference(Xq, M, W, N, K, {}, ref, mag);
      std::vector<float> Y(size_t(M * N));
      lin.forward(X.data(), M, Y.data(), Precision::F32);
      for (size_t i = 0; i < Y.size(); ++i) ASSERT_NEAR(Y[i], ref[i], 1e-5 * mag[i] + 1e-6) << mode << " " << M;
    }
  }
}

TEST(QLinear, RejectsInvalidWeights) {
  AffineGroups w = rand_affine(4, 8, 64, 32, false, true, 1);
  w.q[3] = 16;  // not a 4-bit code
  EXPECT_THROW(AffineLinear(w, {}), Error);
  Fp8Weight f;
  f.out = 1;
  f.in = 2;
  f.w = {0x38, 0x7f};  // NaN code
  f.scale = {1.0f};
  try {
    Fp8Linear l(f, {});
    ADD_FAILURE() << "NaN weight accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lq
