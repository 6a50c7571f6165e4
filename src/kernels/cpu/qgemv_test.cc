// Tests of the quantized linear kernels (qgemv.h): every SIMD GEMV and every
// tiled prefill GEMM against the plain scalar references (double accumulation).
//
// Tolerance: the kernels accumulate in fp32 with exact products, so the error of
// each output is bounded by about K * 2^-24 * sum_k |x_k w_k|; we allow
// 4e-6 * sum_k |x_k w_k| + 1e-30 (K <= 600 here: 600 * 6e-8 = 3.6e-5 is the
// worst-case bound, real errors are ~sqrt(K) smaller; 4e-6 catches any wrong code,
// scale or zero, which changes an output by >= one |x w| term). The BF16 prefill
// rounds the dequantized weights to bf16 as well, so it is compared with
// 2^-8 * sum |x w| (one bf16 rounding of each weight).
#include "kernels/cpu/qgemv.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/threads.h"
#include "kernels/cpu/matmul.h"

namespace lq::cpu {
namespace {

struct AffineFixture {
  std::vector<uint8_t> q;
  std::vector<int32_t> gs, zeros, perm;
  std::vector<float> scales;
  QAffineView v;
};

// Random affine weight in the kernel layout; group sizes from `sizes` (cyclic).
AffineFixture make_affine(int bits, int64_t N, int64_t K, std::vector<int64_t> sizes, bool permute, uint32_t seed) {
  AffineFixture f;
  std::mt19937 rng(seed);
  const int64_t row_bytes = bits == 8 ? K : (K + 31) / 32 * 16;
  f.q.assign(size_t(N * row_bytes), 0);
  const int qmax = (1 << bits) - 1;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t c = uint8_t(rng() % (qmax + 1));
      uint8_t* r = f.q.data() + n * row_bytes;
      if (bits == 8) r[k] = c;
      else r[(k >> 5) * 16 + (k & 15)] |= uint8_t((k & 16) ? c << 4 : c);
    }
  f.gs.push_back(0);
  for (size_t i = 0; f.gs.back() < K; ++i) f.gs.push_back(int32_t(std::min<int64_t>(K, f.gs.back() + sizes[i % sizes.size()])));
  const int64_t G = int64_t(f.gs.size()) - 1;
  std::uniform_real_distribution<float> us(0.001f, 0.02f);
  for (int64_t i = 0; i < N * G; ++i) {
    f.scales.push_back(us(rng));
    f.zeros.push_back(int32_t(rng() % (qmax + 1)));
  }
  if (permute) {
    for (int64_t k = 0; k < K; ++k) f.perm.push_back(int32_t(k));
    std::shuffle(f.perm.begin(), f.perm.end(), rng);
  }
  f.v.bits = bits;
  f.v.N = N;
  f.v.K = K;
  f.v.row_bytes = row_bytes;
  f.v.q = f.q.data();
  f.v.n_groups = G;
  f.v.group_start = f.gs.data();
  f.v.scales = f.scales.data();
  f.v.zeros = f.zeros.data();
  f.v.perm = permute ? f.perm.data() : nullptr;
  return f;
}

std::vector<float> rand_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = d(rng);
  return x;
}

// sum_k |x_k| |w_k| for each output, from the dequantized rows.
template <typename Deq>
std::vector<double> abs_dot(const std::vector<float>& X, int64_t M, int64_t K, int64_t N, Deq deq,
                            const int32_t* perm = nullptr) {
  std::vector<double> r(size_t(M * N));
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    deq(n, row.data());
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += std::fabs(double(X[size_t(m * K + (perm ? perm[k] : k))]) * row[size_t(k)]);
      r[size_t(m * N + n)] = s;
    }
  }
  return r;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& mag,
                  double rel, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], ref[i], rel * mag[i] + 1e-30) << what << " at " << i;
}

TEST(QgemvAffine, MatchesReference) {
  struct Case { int bits; int64_t N, K; std::vector<int64_t> sizes; bool perm; };
  const std::vector<Case> cases = {
      {4, 37, 256, {128}, false}, {4, 16, 96, {32}, false},  {4, 9, 200, {64}, false},   // K tail
      {4, 13, 160, {40, 24, 96}, true},                                                // act-order, odd groups
      {8, 21, 256, {128}, false}, {8, 7, 77, {77}, false},   {8, 11, 150, {50, 7, 93}, true}};
  for (const Case& c : cases)
    for (int64_t M : {1, 2, 3, 4, 5, 9})
      for (Precision p : {Precision::F32, Precision::BF16}) {
        AffineFixture f = make_affine(c.bits, c.N, c.K, c.sizes, c.perm, uint32_t(c.N * 31 + M));
        const std::vector<float> X = rand_x(M * c.K, uint32_t(M + c.K));
        std::vector<float> y(size_t(M * c.N)), ref(size_t(M * c.N)), yg(size_t(M * c.N));
        qgemv_affine(f.v, X.data(), M, y.data(), p);
        qgemm_affine(f.v, X.data(), M, yg.data(), p);
        qgemv_affine_ref(f.v, X.data(), M, ref.data(), p);
        auto mag = abs_dot(X, M, c.K, c.N, [&](int64_t n, float* d) { dequant_affine_rows(f.v, n, n + 1, d); },
                           f.v.perm);
        const std::string what = fmt::format("bits={} N={} K={} M={} {}", c.bits, c.N, c.K, M, precision_name(p));
        expect_close(y, ref, mag, 4e-6, "gemv " + what);
        expect_close(yg, ref, mag, p == Precision::F32 ? 4e-6 : 1.0 / 256, "gemm " + what);
      }
}

TEST(QgemvAffine, ThreadCountDoesNotChangeResults) {
  AffineFixture f = make_affine(4, 64, 256, {128}, false, 7);
  const std::vector<float> X = rand_x(2 * 256, 3);
  std::vector<float> a(128), b(128);
  const int t = num_threads();
  set_num_threads(1);
  qgemv_affine(f.v, X.data(), 2, a.data(), Precision::F32);
  set_num_threads(std::max(2, t));
  qgemv_affine(f.v, X.data(), 2, b.data(), Precision::F32);
  set_num_threads(t);
  EXPECT_EQ(a, b);  // static partition, per-row order fixed: bit-identical
}

TEST(QgemvNf4, MatchesReference) {
  std::vector<float> code = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                             -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                             0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                             0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                             0.7229568362236023f, 1.0f};
  for (int64_t bs : {64, 32, 128})
    for (int64_t M : {1, 2, 4, 6}) {
      const int64_t N = 19, K = 256;
      std::mt19937 rng(uint32_t(bs + M));
      std::vector<uint8_t> packed(size_t(N * K / 2));
      for (auto& b : packed) b = uint8_t(rng());
      std::vector<float> absmax(size_t(N * K / bs));
      std::uniform_real_distribution<float> ua(0.01f, 0.2f);
      for (auto& a : absmax) a = ua(rng);
      QNf4View v{N, K, bs, packed.data(), absmax.data(), code.data()};
      ASSERT_TRUE(qgemv_nf4_supported(v));
      const std::vector<float> X = rand_x(M * K, 11);
      for (Precision p : {Precision::F32, Precision::BF16}) {
        std::vector<float> y(size_t(M * N)), yg(size_t(M * N)), ref(size_t(M * N));
        qgemv_nf4(v, X.data(), M, y.data(), p);
        qgemm_nf4(v, X.data(), M, yg.data(), p);
        qgemv_nf4_ref(v, X.data(), M, ref.data(), p);
        auto mag = abs_dot(X, M, K, N, [&](int64_t n, float* d) { dequant_nf4_rows(v, n, n + 1, d); });
        const std::string what = fmt::format("bs={} M={} {}", bs, M, precision_name(p));
        expect_close(y, ref, mag, 4e-6, "gemv " + what);
        expect_close(yg, ref, mag, p == Precision::F32 ? 4e-6 : 1.0 / 256, "gemm " + what);
      }
    }
  // Blocks that are not whole SIMD steps are refused by the fused kernel (the
  // Linear then uses the tiled path, which handles any layout).
  std::vector<uint8_t> packed(24 * 3 / 2);
  std::vector<float> absmax(24 * 3 / 24, 1.0f);
  QNf4View odd{3, 24, 24, packed.data(), absmax.data(), code.data()};
  EXPECT_FALSE(qgemv_nf4_supported(odd));
  std::vector<float> X = rand_x(2 * 24, 5), y(6), ref(6);
  qgemm_nf4(odd, X.data(), 2, y.data(), Precision::F32);
  qgemv_nf4_ref(odd, X.data(), 2, ref.data(), Precision::F32);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(y[size_t(i)], ref[size_t(i)], 1e-5);
}

TEST(QgemvFp8, MatchesReference) {
  for (bool per_channel : {true, false})
    for (int mode = 0; mode < 2; ++mode)  // 0: W8A8 dynamic scales, 1: weight-only
      for (int64_t M : {1, 3, 4, 8}) {
        const int64_t N = 23, K = 200;
        std::mt19937 rng(uint32_t(M * 7 + mode));
        std::vector<uint8_t> w(size_t(N * K));
        for (auto& c : w) {
          do c = uint8_t(rng());
          while ((c & 0x7f) == 0x7f);  // no NaN codes in weights
        }
        std::vector<float> scale(per_channel ? size_t(N) : 1);
        for (auto& s : scale) s = 0.001f * float(1 + rng() % 100);
        QFp8View v{N, K, w.data(), scale.data(), per_channel};
        const std::vector<float> X = rand_x(M * K, uint32_t(M));
        std::vector<float> as(static_cast<size_t>(M));
        for (int64_t m = 0; m < M; ++m) {
          float a = 0;
          for (int64_t k = 0; k < K; ++k) a = std::max(a, std::fabs(X[size_t(m * K + k)]));
          as[size_t(m)] = a / 448.0f;
        }
        const float* asp = mode == 0 ? as.data() : nullptr;
        for (Precision p : {Precision::F32, Precision::BF16}) {
          std::vector<float> y(size_t(M * N)), yg(size_t(M * N)), ref(size_t(M * N));
          qgemv_fp8(v, X.data(), M, asp, y.data(), p);
          qgemm_fp8(v, X.data(), M, asp, yg.data(), p);
          qgemv_fp8_ref(v, X.data(), M, asp, ref.data(), p);
          auto mag = abs_dot(X, M, K, N, [&](int64_t n, float* d) {
            for (int64_t k = 0; k < K; ++k) d[k] = fp8e4m3_to_f32(w[size_t(n * K + k)]) * scale[per_channel ? n : 0];
          });
          // W8A8: |x| vs its E4M3 value differ by <= 1/16 relative, so sum|x w|
          // bounds sum|xq w| within 7%; weight-only bf16 prefill rounds nothing more.
          const std::string what = fmt::format("pc={} mode={} M={} {}", per_channel, mode, M, precision_name(p));
          expect_close(y, ref, mag, 5e-6, "gemv " + what);
          expect_close(yg, ref, mag, 5e-6, "gemm " + what);
        }
      }
}

TEST(QgemvFp8, ExactOnSmallIntegers) {
  // E4M3 codes of small integers and power-of-two scales: every partial sum is an
  // exactly representable integer, so the kernel must be exact.
  const int64_t N = 4, K = 64;
  std::vector<uint8_t> w(size_t(N * K));
  for (int64_t i = 0; i < N * K; ++i) w[size_t(i)] = f32_to_fp8e4m3(float(int(i % 7) - 3));
  std::vector<float> scale = {0.5f, 1.0f, 2.0f, 4.0f};
  QFp8View v{N, K, w.data(), scale.data(), true};
  std::vector<float> X(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) X[size_t(k)] = float(int(k % 5) - 2);
  std::vector<float> y(4);
  qgemv_fp8(v, X.data(), 1, nullptr, y.data(), Precision::F32);
  for (int64_t n = 0; n < N; ++n) {
    double e = 0;
    for (int64_t k = 0; k < K; ++k) e += double(X[size_t(k)]) * fp8e4m3_to_f32(w[size_t(n * K + k)]);
    EXPECT_EQ(y[size_t(n)], float(e * scale[size_t(n)])) << n;
  }
}

}  // namespace
}  // namespace lq::cpu
