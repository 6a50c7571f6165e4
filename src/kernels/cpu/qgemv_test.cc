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
// The AVX512-BF16 int4 GEMV (qgemv_affine_bf16dp) forms the same exact products
// x_bf16 * (q - zero) with fp32 sums, so it gets the GEMV tolerance 4e-6; its tests
// GTEST_SKIP without AVX512-BF16. The SIMD FP8 activation quantizer must equal the
// scalar definition bit for bit.
#include "kernels/cpu/qgemv.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "hwy/targets.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/x86.h"

namespace lq::cpu {
namespace {

struct AffineFixture {
  std::vector<uint8_t> q;
  std::vector<int32_t> gs, zeros, perm;
  std::vector<float> scales;
  QAffineView v;
};

// Random affine weight in the kernel layout; group sizes from `sizes` (cyclic).
// signed8 (bits 8): signed codes -128..127 and garbage zeros, which must not be read.
AffineFixture make_affine(int bits, int64_t N, int64_t K, std::vector<int64_t> sizes, bool permute, uint32_t seed,
                          bool signed8 = false) {
  AffineFixture f;
  std::mt19937 rng(seed);
  const int64_t row_bytes = qaffine_row_bytes(bits, K);
  f.q.assign(size_t(N * row_bytes), 0);
  const int qmax = (1 << bits) - 1;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      qaffine_put_code(f.q.data() + n * row_bytes, bits, k, int(rng() % (qmax + 1)) - (signed8 ? 128 : 0));
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
  f.v.signed8 = signed8;
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
  struct Case { int bits; int64_t N, K; std::vector<int64_t> sizes; bool perm; bool signed8 = false; };
  const std::vector<Case> cases = {
      {4, 37, 256, {128}, false}, {4, 16, 96, {32}, false},  {4, 9, 200, {64}, false},   // K tail
      {4, 13, 160, {40, 24, 96}, true},                                                // act-order, odd groups
      {8, 21, 256, {128}, false}, {8, 7, 77, {77}, false},   {8, 11, 150, {50, 7, 93}, true},
      {8, 21, 256, {128}, false, true}, {8, 11, 150, {50, 7, 93}, true, true}};        // signed codes
  for (const Case& c : cases)
    for (int64_t M : {1, 2, 3, 4, 5, 9})
      for (Precision p : {Precision::F32, Precision::BF16}) {
        AffineFixture f = make_affine(c.bits, c.N, c.K, c.sizes, c.perm, uint32_t(c.N * 31 + M), c.signed8);
        const std::vector<float> X = rand_x(M * c.K, uint32_t(M + c.K));
        std::vector<float> y(size_t(M * c.N)), ref(size_t(M * c.N)), yg(size_t(M * c.N)), yh(size_t(M * c.N));
        qgemv_affine(f.v, X.data(), M, y.data(), p);
        qgemv_affine_hwy(f.v, X.data(), M, yh.data(), p);
        qgemm_affine(f.v, X.data(), M, yg.data(), p);
        qgemv_affine_ref(f.v, X.data(), M, ref.data(), p);
        auto mag = abs_dot(X, M, c.K, c.N, [&](int64_t n, float* d) { dequant_affine_rows(f.v, n, n + 1, d); },
                           f.v.perm);
        const std::string what =
            fmt::format("bits={}{} N={} K={} M={} {}", c.bits, c.signed8 ? "s" : "", c.N, c.K, M, precision_name(p));
        expect_close(y, ref, mag, 4e-6, "gemv " + what);
        expect_close(yh, ref, mag, 4e-6, "highway gemv " + what);
        expect_close(yg, ref, mag, p == Precision::F32 ? 4e-6 : 1.0 / 256, "gemm " + what);
      }
}

TEST(QgemvAffine, Int4LayoutHandExample) {
  // Chunk c of 128 columns = 64 bytes; 16-bit word w (bytes 2w, 2w + 1) holds column
  // 128c + 32t + w in bits [4t, 4t + 4).
  std::vector<uint8_t> row(qaffine_row_bytes(4, 200), 0);
  ASSERT_EQ(row.size(), 128u);  // K = 200 is padded to 256 columns
  row[0] = 0x21;   // word 0 low byte: column 0 = 1, column 32 = 2
  row[1] = 0x43;   // word 0 high byte: column 64 = 3, column 96 = 4
  row[6] = 0x0f;   // word 3: column 3 = 15
  row[65] = 0x70;  // chunk 1, word 0 high byte: column 128 + 96 = 7
  int32_t gs[2] = {0, 200};
  float sc = 1.0f;
  int32_t z = 0;
  QAffineView v{4, 1, 200, 128, row.data(), 1, gs, &sc, &z, nullptr};
  std::vector<int> want(256, 0);
  want[0] = 1, want[32] = 2, want[64] = 3, want[96] = 4, want[3] = 15, want[224] = 7;
  for (int64_t k = 0; k < 256; ++k) EXPECT_EQ(qaffine_code(v, 0, k), want[size_t(k)]) << k;
  // qaffine_put_code builds the same bytes.
  std::vector<uint8_t> built(row.size(), 0);
  for (int64_t k = 0; k < 256; ++k) qaffine_put_code(built.data(), 4, k, want[size_t(k)]);
  EXPECT_EQ(built, row);
}

TEST(QgemvAffine, Bf16DpMatchesReference) {
  if (!qgemv_bf16dp_available()) GTEST_SKIP() << "CPU/OS without AVX512-BF16 (or LQ_DISABLE_BF16DP=1)";
  struct Case { int64_t N, K; std::vector<int64_t> sizes; bool perm; int32_t zero_shift; };
  const std::vector<Case> cases = {
      {37, 256, {128}, false, 0},   {16, 512, {512}, false, 0},   // groups of 128, per channel
      {9, 200, {128}, false, 0},    {21, 384, {32}, false, 0},    // K tail; groups of 32
      {13, 320, {64, 32, 96, 128}, true, 0},                      // act-order, mixed group sizes
      {11, 256, {64}, false, 40},   {7, 128, {128}, false, -20}};  // zeros outside the table range
  for (const Case& c : cases)
    for (int64_t M : {1, 2, 3, 4, 5, 9}) {
      AffineFixture f = make_affine(4, c.N, c.K, c.sizes, c.perm, uint32_t(c.N * 17 + M));
      for (auto& z : f.zeros) z += c.zero_shift;
      ASSERT_TRUE(qgemv_affine_bf16dp_supported(f.v, Precision::BF16));
      const std::vector<float> X = rand_x(M * c.K, uint32_t(M * 3 + c.K));
      std::vector<float> y(size_t(M * c.N)), ref(size_t(M * c.N));
      qgemv_affine_bf16dp(f.v, X.data(), M, y.data());
      qgemv_affine_ref(f.v, X.data(), M, ref.data(), Precision::BF16);
      auto mag = abs_dot(X, M, c.K, c.N, [&](int64_t n, float* d) { dequant_affine_rows(f.v, n, n + 1, d); },
                         f.v.perm);
      expect_close(y, ref, mag, 4e-6, fmt::format("bf16dp N={} K={} M={} zshift={}", c.N, c.K, M, c.zero_shift));
    }
  // Not applicable: int8, F32, group starts off the 32-column grid.
  AffineFixture f8 = make_affine(8, 4, 128, {128}, false, 1);
  EXPECT_FALSE(qgemv_affine_bf16dp_supported(f8.v, Precision::BF16));
  AffineFixture f4 = make_affine(4, 4, 160, {40, 24, 96}, false, 2);
  EXPECT_FALSE(qgemv_affine_bf16dp_supported(f4.v, Precision::BF16));
  AffineFixture g = make_affine(4, 4, 128, {128}, false, 3);
  EXPECT_FALSE(qgemv_affine_bf16dp_supported(g.v, Precision::F32));
  std::vector<float> X = rand_x(128, 1), y(4);
  EXPECT_THROW(qgemv_affine_bf16dp(f4.v, X.data(), 1, y.data()), Error);
}

TEST(QgemvAffine, Bf16DpThreadCountDoesNotChangeResults) {
  if (!qgemv_bf16dp_available()) GTEST_SKIP() << "CPU/OS without AVX512-BF16 (or LQ_DISABLE_BF16DP=1)";
  AffineFixture f = make_affine(4, 96, 512, {128}, false, 5);
  const std::vector<float> X = rand_x(3 * 512, 4);
  std::vector<float> a(3 * 96), b(3 * 96);
  const int t = num_threads();
  set_num_threads(1);
  qgemv_affine_bf16dp(f.v, X.data(), 3, a.data());
  set_num_threads(std::max(2, t));
  qgemv_affine_bf16dp(f.v, X.data(), 3, b.data());
  set_num_threads(t);
  EXPECT_EQ(a, b);  // static partition, fixed order per output: bit-identical
}

TEST(Fp8Activations, SimdQuantDequantEqualsScalar) {
  // Inputs: a sweep over all fp32 bit patterns (stride 4097: every exponent, many
  // mantissas), every E4M3 value and its neighbours (ties and +-1 ulp around the
  // midpoints between codes), and specials. Scales 1 and 0.3 (division rounding).
  std::vector<float> xs;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 4097) xs.push_back(std::bit_cast<float>(uint32_t(u)));
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    const float v = fp8e4m3_to_f32(uint8_t(c));
    const float nxt = (c & 0x7f) == 0x7e ? 480.0f : fp8e4m3_to_f32(uint8_t(c + 1));
    const float mid = 0.5f * (v + nxt);
    for (float t : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), std::nextafter(mid, -1e9f)})
      xs.push_back(t);
  }
  for (float t : {0.0f, -0.0f, 448.0f, 464.0f, 465.0f, 1e30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::denorm_min(), 0.015625f, 0.0156249991f, 0.0009765625f})
    xs.push_back(t);
  std::vector<float> out(xs.size());
  for (float scale : {1.0f, 0.3f}) {
    fp8_quant_dequant_n(xs.data(), int64_t(xs.size()), scale, out.data());
    for (size_t i = 0; i < xs.size(); ++i) {
      const float want = fp8e4m3_to_f32(f32_to_fp8e4m3(xs[i] / scale));
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(out[i])) << xs[i];
        continue;
      }
      ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(want))
          << "x=" << xs[i] << " scale=" << scale << " got " << out[i] << " want " << want;
    }
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

// The decode GEMVs process two rows at once (row i of each half of a thread's
// range: two weight streams); each row must come out exactly as the single-row
// kernel computes it, so results never depend on the grouping (which changes with
// N and the thread partition). A one-row view takes the single-row path.
template <typename Run, typename One>
void expect_rows_as_alone(int64_t N, int64_t M, Run run, One one_row, const std::string& what) {
  std::vector<float> all(size_t(M * N));
  run(all.data());
  for (int64_t n = 0; n < N; ++n) {
    std::vector<float> y(static_cast<size_t>(M));
    one_row(n, y.data());
    for (int64_t m = 0; m < M; ++m)
      ASSERT_EQ(std::bit_cast<uint32_t>(y[size_t(m)]), std::bit_cast<uint32_t>(all[size_t(m * N + n)]))
          << what << " M=" << M << " row " << n << " of " << N;
  }
}

QAffineView affine_row(const QAffineView& v, int64_t n) {
  QAffineView one = v;
  one.N = 1;
  one.q = v.q + n * v.row_bytes;
  one.scales = v.scales + n * v.n_groups;
  one.zeros = v.zeros + n * v.n_groups;
  return one;
}

TEST(QgemvRows, GroupedRowsEqualSingleRows) {
  const int t = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int64_t N : {9, 37})
      for (int64_t M : {1, 2, 3}) {
        const std::vector<float> X = rand_x(M * 512, 5);
        for (bool s8 : {false, true}) {  // int8, Highway
          AffineFixture f = make_affine(8, N, 300, {128, 44}, false, 11, s8);
          expect_rows_as_alone(
              N, M, [&](float* y) { qgemv_affine_hwy(f.v, X.data(), M, y, Precision::F32); },
              [&](int64_t n, float* y) { qgemv_affine_hwy(affine_row(f.v, n), X.data(), M, y, Precision::F32); },
              fmt::format("int8 signed8={} threads={}", s8, threads));
        }
        {  // int4, Highway and (where available) AVX512-BF16
          AffineFixture f = make_affine(4, N, 512, {128}, false, 12);
          expect_rows_as_alone(
              N, M, [&](float* y) { qgemv_affine_hwy(f.v, X.data(), M, y, Precision::F32); },
              [&](int64_t n, float* y) { qgemv_affine_hwy(affine_row(f.v, n), X.data(), M, y, Precision::F32); },
              fmt::format("int4 hwy threads={}", threads));
          if (qgemv_bf16dp_available())
            expect_rows_as_alone(
                N, M, [&](float* y) { qgemv_affine_bf16dp(f.v, X.data(), M, y); },
                [&](int64_t n, float* y) { qgemv_affine_bf16dp(affine_row(f.v, n), X.data(), M, y); },
                fmt::format("int4 bf16dp threads={}", threads));
        }
        {  // NF4
          const int64_t K = 512, bs = 64;
          std::mt19937 rng(7);
          std::vector<uint8_t> packed(size_t(N * K / 2));
          for (auto& b : packed) b = uint8_t(rng());
          std::vector<float> absmax(size_t(N * K / bs)), code(16);
          for (auto& a : absmax) a = 0.01f + float(rng() % 100) * 1e-3f;
          for (int i = 0; i < 16; ++i) code[size_t(i)] = float(i - 7) / 8.0f;
          const QNf4View v{N, K, bs, packed.data(), absmax.data(), code.data()};
          expect_rows_as_alone(
              N, M, [&](float* y) { qgemv_nf4(v, X.data(), M, y, Precision::BF16); },
              [&](int64_t n, float* y) {
                const QNf4View one{1, K, bs, packed.data() + n * K / 2, absmax.data() + n * K / bs, code.data()};
                qgemv_nf4(one, X.data(), M, y, Precision::BF16);
              },
              fmt::format("nf4 threads={}", threads));
        }
        {  // FP8 W8A8, per-channel scales
          const int64_t K = 512;
          std::mt19937 rng(8);
          std::vector<uint8_t> w(size_t(N * K));
          for (auto& c : w) {
            do c = uint8_t(rng());
            while ((c & 0x7f) == 0x7f);
          }
          std::vector<float> scale(static_cast<size_t>(N)), as(static_cast<size_t>(M), 0.01f);
          for (auto& sc : scale) sc = 0.001f * float(1 + rng() % 100);
          const QFp8View v{N, K, w.data(), scale.data(), true};
          expect_rows_as_alone(
              N, M, [&](float* y) { qgemv_fp8(v, X.data(), M, as.data(), y, Precision::F32); },
              [&](int64_t n, float* y) {
                const QFp8View one{1, K, w.data() + n * K, scale.data() + n, true};
                qgemv_fp8(one, X.data(), M, as.data(), y, Precision::F32);
              },
              fmt::format("fp8 threads={}", threads));
        }
      }
  }
  set_num_threads(t);
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

// The Highway kernels on every SIMD target this CPU supports (AVX2-only users run
// tested code): affine int4/int8 (Highway path), NF4, FP8 W8A8 and weight-only, and
// the FP8 activation quantizer; same tolerances as above, quantizer bit-exact.
TEST(Qgemv, AllSimdTargets) {
  const std::vector<float> code = {-1.0f, -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f, -0.1847734f,
                                   -0.0910500f, 0.0f, 0.0795803f, 0.1609302f, 0.2461123f, 0.3379152f,
                                   0.4407098f, 0.5626170f, 0.7229568f, 1.0f};
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    // M = 1 takes the paired int8 rows, M = 3 single rows; signed8 the signed codes.
    for (auto [bits, s8] : std::vector<std::pair<int, bool>>{{4, false}, {8, false}, {8, true}})
      for (int64_t M : {1, 3}) {
        AffineFixture f = make_affine(bits, 13, 200, {64, 96, 40}, true, uint32_t(bits), s8);
        const std::vector<float> X = rand_x(M * 200, 9);
        std::vector<float> y(size_t(M * 13)), ref(size_t(M * 13));
        for (Precision p : {Precision::F32, Precision::BF16}) {
          qgemv_affine_hwy(f.v, X.data(), M, y.data(), p);
          qgemv_affine_ref(f.v, X.data(), M, ref.data(), p);
          auto mag = abs_dot(X, M, 200, 13, [&](int64_t n, float* d) { dequant_affine_rows(f.v, n, n + 1, d); },
                             f.v.perm);
          expect_close(y, ref, mag, 4e-6, fmt::format("affine bits={}{} M={} {}", bits, s8 ? "s" : "", M,
                                                      precision_name(p)));
        }
        // The Highway tile dequantizer on this target: bitwise the scalar definition.
        std::vector<float> dq(13 * 200), dref(13 * 200);
        dequant_affine_rows(f.v, 0, 13, dq.data());
        dequant_affine_rows_ref(f.v, 0, 13, dref.data());
        EXPECT_EQ(dq, dref) << "dequant bits=" << bits;
      }
    {
      const int64_t N = 11, K = 128;
      std::mt19937 rng(3);
      std::vector<uint8_t> packed(size_t(N * K / 2));
      for (auto& b : packed) b = uint8_t(rng());
      std::vector<float> absmax(size_t(N * K / 64), 0.07f);
      QNf4View v{N, K, 64, packed.data(), absmax.data(), code.data()};
      const std::vector<float> X = rand_x(2 * K, 4);
      std::vector<float> y(size_t(2 * N)), ref(size_t(2 * N));
      qgemv_nf4(v, X.data(), 2, y.data(), Precision::F32);
      qgemv_nf4_ref(v, X.data(), 2, ref.data(), Precision::F32);
      auto mag = abs_dot(X, 2, K, N, [&](int64_t n, float* d) { dequant_nf4_rows(v, n, n + 1, d); });
      expect_close(y, ref, mag, 4e-6, "nf4");
    }
    {
      const int64_t N = 9, K = 150;
      std::mt19937 rng(5);
      std::vector<uint8_t> w(size_t(N * K));
      for (auto& c : w) {
        do c = uint8_t(rng());
        while ((c & 0x7f) == 0x7f);
      }
      std::vector<float> scale(size_t(N), 0.01f);
      QFp8View v{N, K, w.data(), scale.data(), true};
      const std::vector<float> X = rand_x(2 * K, 6);
      const std::vector<float> as = {0.01f, 0.007f};
      for (const float* asp : {as.data(), static_cast<const float*>(nullptr)}) {
        std::vector<float> y(size_t(2 * N)), ref(size_t(2 * N));
        qgemv_fp8(v, X.data(), 2, asp, y.data(), Precision::F32);
        qgemv_fp8_ref(v, X.data(), 2, asp, ref.data(), Precision::F32);
        auto mag = abs_dot(X, 2, K, N, [&](int64_t n, float* d) {
          for (int64_t k = 0; k < K; ++k) d[k] = fp8e4m3_to_f32(w[size_t(n * K + k)]) * 0.01f;
        });
        // W8A8: sum |x w| bounds sum |xq w| within 7% (|xq - x| <= x/16), 5e-6 covers it.
        expect_close(y, ref, mag, 5e-6, asp ? "fp8 w8a8" : "fp8 weight-only");
      }
      std::vector<float> q(X.size());
      fp8_quant_dequant_n(X.data(), int64_t(X.size()), 0.003f, q.data());
      for (size_t i = 0; i < X.size(); ++i)
        ASSERT_EQ(q[i], fp8e4m3_to_f32(f32_to_fp8e4m3(X[i] / 0.003f))) << i;
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the CPU's real targets
}

}  // namespace
}  // namespace lq::cpu

namespace lq::cpu {
namespace {

// The SIMD tile dequantizers (prefill) must give exactly the scalar definitions:
// same single rounding (s * (q - z), code * absmax), so bitwise equality; and the
// bf16 variants exactly f32_to_bf16 of those. Cases cover int4/int8, groups on and
// off the 32-column grid, K tails, per-channel groups, row ranges not starting at
// 0; NF4 with odd K (rows start at odd flat indices) and blocks that are not whole
// SIMD steps.
TEST(QgemmDequant, SimdEqualsScalarBitwise) {
  struct Case { int bits; int64_t N, K; std::vector<int64_t> sizes; bool signed8 = false; };
  const std::vector<Case> cases = {
      {4, 5, 256, {128}}, {4, 3, 300, {32}}, {4, 4, 200, {7, 33, 64}}, {4, 2, 130, {130}},
      {8, 5, 256, {128}}, {8, 3, 77, {5, 16}}, {8, 2, 1000, {1000}}, {8, 3, 77, {5, 16}, true}};
  for (const Case& c : cases) {
    AffineFixture f = make_affine(c.bits, c.N, c.K, c.sizes, false, uint32_t(c.K + c.bits), c.signed8);
    for (int64_t n0 : {int64_t(0), int64_t(1)}) {
      const int64_t rows = c.N - n0;
      std::vector<float> got(size_t(rows * c.K)), ref(got.size());
      dequant_affine_rows(f.v, n0, c.N, got.data());
      dequant_affine_rows_ref(f.v, n0, c.N, ref.data());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(ref[i]))
            << "affine bits=" << c.bits << " K=" << c.K << " n0=" << n0 << " at " << i;
      std::vector<uint16_t> gb(got.size());
      dequant_affine_rows(f.v, n0, c.N, gb.data());
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(gb[i], f32_to_bf16(ref[i])) << "bf16 at " << i;
      // The AVX-512 table path directly: it must take int4 layouts on the 32-column grid.
      std::vector<uint16_t> gt(got.size(), 0xdead);
      bool grid = c.bits == 4;
      for (size_t g = 0; g + 1 < f.gs.size(); ++g) grid = grid && f.gs[g] % 32 == 0;
      const bool ran = dequant_affine_rows_bf16_avx512(f.v, n0, c.N, gt.data());
      if (x86::features().avx512) {
        EXPECT_EQ(ran, grid) << "bits=" << c.bits << " K=" << c.K;
      }
      if (ran) {
        for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(gt[i], f32_to_bf16(ref[i])) << "table bf16 at " << i;
      }
    }
  }
  const std::vector<float> code = {-1.0f, -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f, -0.1847734f,
                                   -0.0910500f, 0.0f, 0.0795803f, 0.1609302f, 0.2461123f, 0.3379152f,
                                   0.4407098f, 0.5626170f, 0.7229568f, 1.0f};
  for (auto [N, K, bs] :
       std::vector<std::array<int64_t, 3>>{{5, 256, 64}, {3, 250, 64}, {7, 33, 24}, {4, 96, 32}, {6, 64, 128}, {3, 128, 256}}) {
    std::mt19937 rng{uint32_t(K)};
    std::vector<uint8_t> packed(size_t((N * K + 1) / 2));
    for (auto& b : packed) b = uint8_t(rng());
    std::vector<float> absmax(size_t((N * K + bs - 1) / bs));
    std::uniform_real_distribution<float> ua(0.01f, 0.2f);
    for (auto& a : absmax) a = ua(rng);
    QNf4View v{N, K, bs, packed.data(), absmax.data(), code.data()};
    for (int64_t n0 : {int64_t(0), int64_t(1)}) {
      std::vector<float> got(size_t((N - n0) * K)), ref(got.size());
      dequant_nf4_rows(v, n0, N, got.data());
      dequant_nf4_rows_ref(v, n0, N, ref.data());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(ref[i]))
            << "nf4 K=" << K << " bs=" << bs << " n0=" << n0 << " at " << i;
      std::vector<uint16_t> gb(got.size());
      dequant_nf4_rows(v, n0, N, gb.data());
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(gb[i], f32_to_bf16(ref[i])) << "nf4 bf16 at " << i;
      std::vector<uint16_t> gt(got.size(), 0xdead);
      const bool ran = dequant_nf4_rows_bf16_avx512(v, n0, N, gt.data());
      if (x86::features().avx512) {
        EXPECT_EQ(ran, K % 64 == 0 && bs % 64 == 0) << "K=" << K << " bs=" << bs;
      }
      if (ran) {
        for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(gt[i], f32_to_bf16(ref[i])) << "nf4 table bf16 at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace lq::cpu
