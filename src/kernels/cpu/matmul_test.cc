// kernels/cpu/matmul_test.cc: the linear-layer kernels against the scalar reference.
//
// Reference: matmul_bf16w_ref accumulates the same products in double, so its
// only error is the final rounding to float.
//
// Tolerance (every comparison with the reference): all kernels form each product
// x_k * w_k exactly (an fp32 x times a bf16 w, or bf16 x bf16, has at most 32
// significant bits and is exact inside an fp32 FMA / AMX dot product) and sum K
// of them in fp32 in some order. For any summation order the error is bounded by
// (K - 1) * u * S / (1 - (K - 1) u), with u = 2^-24 and S = sum_k |x_k w_k|; the
// reference adds at most u * |y| <= u * S. We therefore allow
//     |y - y_ref| <= (K + 2) * 2^-24 * S + 1e-30
// (1e-30 only covers S = 0). Typical errors are ~sqrt(K) smaller; indexing or
// conversion mistakes give errors of order S / K or larger, and the
// one-hot-weights test checks exact equality where no rounding can happen.

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "hwy/targets.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_testutil.h"

namespace lq::cpu {
namespace {

using testutil::abs_products;
using testutil::make_problem;
using testutil::Problem;
using testutil::sum_tolerance;
using testutil::ThreadCount;

using Kernel = void (*)(const float*, int64_t, int64_t, const uint16_t*, int64_t, float*, Precision);

void expect_near_ref(const char* name, Kernel kernel, const Problem& p, Precision prec,
                     const std::vector<float>& ref, const std::vector<double>& S) {
  std::vector<float> Y(size_t(p.M * p.N), std::numeric_limits<float>::quiet_NaN());
  kernel(p.X.data(), p.M, p.K, p.W.data(), p.N, Y.data(), prec);
  int bad = 0;
  for (int64_t i = 0; i < p.M * p.N; ++i) {
    const double tol = sum_tolerance(p.K, S[i]);
    const double err = std::fabs(double(Y[i]) - double(ref[i]));
    if (!(err <= tol) && bad++ < 3)
      ADD_FAILURE() << name << " " << precision_name(prec) << " M=" << p.M << " K=" << p.K
                    << " N=" << p.N << " threads=" << num_threads() << " at (" << i / p.N << ","
                    << i % p.N << "): got " << Y[i] << " want " << ref[i] << " err " << err
                    << " tol " << tol;
  }
}

const int64_t kMs[] = {1, 2, 3, 4, 5, 17, 64};
const int64_t kKs[] = {16, 64, 100, 2048};
const int64_t kNs[] = {1, 7, 64, 130, 512};

void check_all_shapes(Precision prec) {
  uint32_t seed = 1;
  for (int64_t M : kMs)
    for (int64_t K : kKs)
      for (int64_t N : kNs) {
        const Problem p = make_problem(M, K, N, seed++);
        std::vector<float> ref(size_t(M * N));
        matmul_bf16w_ref(p.X.data(), M, K, p.W.data(), N, ref.data(), prec);
        const std::vector<double> S = abs_products(p, prec);
        for (int threads : {1, 2}) {
          ThreadCount tc(threads);
          expect_near_ref("matmul_bf16w", matmul_bf16w, p, prec, ref, S);
          expect_near_ref("gemv_bf16w", gemv_bf16w, p, prec, ref, S);
          expect_near_ref("gemm_bf16w_onednn", gemm_bf16w_onednn, p, prec, ref, S);
        }
      }
}

TEST(Matmul, MatchesReferenceF32) { check_all_shapes(Precision::F32); }

TEST(Matmul, MatchesReferenceBf16) { check_all_shapes(Precision::BF16); }

// The reference itself: a tiny product worked by hand, and BF16 mode rounding X.
TEST(Matmul, ReferenceHandExample) {
  // 1 + 2^-8 is halfway between the bf16 values 1 and 1 + 2^-7: ties to even -> 1.
  const float X[2] = {1.0f + 0x1p-8f, 2.0f};
  const uint16_t W[4] = {f32_to_bf16(1.0f), f32_to_bf16(0.5f), f32_to_bf16(3.0f), f32_to_bf16(-1.0f)};
  float Y[2];
  matmul_bf16w_ref(X, 1, 2, W, 2, Y, Precision::F32);
  EXPECT_EQ(Y[0], 2.00390625f);
  EXPECT_EQ(Y[1], 1.01171875f);
  matmul_bf16w_ref(X, 1, 2, W, 2, Y, Precision::BF16);
  EXPECT_EQ(Y[0], 2.0f);
  EXPECT_EQ(Y[1], 1.0f);
  for (Kernel k : {matmul_bf16w, gemv_bf16w, gemm_bf16w_onednn}) {
    k(X, 1, 2, W, 2, Y, Precision::BF16);
    EXPECT_EQ(Y[0], 2.0f);
    EXPECT_EQ(Y[1], 1.0f);
  }
}

// BF16 mode is exactly "round X to bf16, then the F32 product".
TEST(Matmul, Bf16ModeEqualsRoundedInput) {
  for (int64_t M : {1, 3, 4, 17}) {
    const Problem p = make_problem(M, 2048 + 37, 130, 99 + uint32_t(M));
    std::vector<float> Xr(p.X);
    for (auto& x : Xr) x = round_bf16(x);
    std::vector<float> a(size_t(M * p.N)), b(a.size());
    // The reference: bitwise equal by construction of both modes.
    matmul_bf16w_ref(p.X.data(), M, p.K, p.W.data(), p.N, a.data(), Precision::BF16);
    matmul_bf16w_ref(Xr.data(), M, p.K, p.W.data(), p.N, b.data(), Precision::F32);
    EXPECT_EQ(a, b) << "reference M=" << M;
    // The GEMV runs the same kernel on the rounded X in both modes: bitwise equal.
    gemv_bf16w(p.X.data(), M, p.K, p.W.data(), p.N, a.data(), Precision::BF16);
    gemv_bf16w(Xr.data(), M, p.K, p.W.data(), p.N, b.data(), Precision::F32);
    EXPECT_EQ(a, b) << "gemv M=" << M;
    // oneDNN uses different implementations (bf16 AMX vs f32): compare to the
    // reference on the rounded X within the file's tolerance.
    Problem pr = p;
    pr.X = Xr;
    std::vector<float> ref(a.size());
    matmul_bf16w_ref(Xr.data(), M, p.K, p.W.data(), p.N, ref.data(), Precision::F32);
    expect_near_ref("gemm_bf16w_onednn(bf16)", gemm_bf16w_onednn, p, Precision::BF16, ref,
                    abs_products(pr, Precision::F32));
  }
}

// W with one 1.0 per row: every output is a single X element, with no rounding
// in any summation order, so all paths must be exact.
TEST(Matmul, OneHotWeightsAreExact) {
  for (int64_t M : {1, 2, 4, 5, 33})
    for (int64_t K : {16, 100, 2048})
      for (Precision prec : {Precision::F32, Precision::BF16}) {
        const int64_t N = 131;
        Problem p = make_problem(M, K, N, 7);
        std::fill(p.W.begin(), p.W.end(), uint16_t(0));
        for (int64_t n = 0; n < N; ++n) p.W[n * K + (n * 37 + 11) % K] = f32_to_bf16(1.0f);
        for (Kernel k : {matmul_bf16w, gemv_bf16w, gemm_bf16w_onednn}) {
          std::vector<float> Y(size_t(M * N));
          k(p.X.data(), M, K, p.W.data(), N, Y.data(), prec);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              float want = p.X[m * K + (n * 37 + 11) % K];
              if (prec == Precision::BF16) want = round_bf16(want);
              ASSERT_EQ(Y[m * N + n], want) << "M=" << M << " K=" << K << " n=" << n << " "
                                            << precision_name(prec);
            }
        }
      }
}

// Same inputs, same thread count -> bitwise identical outputs. The GEMV also
// does not depend on the thread count at all (each output has one fixed order).
TEST(Matmul, DeterministicRunToRun) {
  for (int64_t M : {1, 3, 4, 64})
    for (Precision prec : {Precision::F32, Precision::BF16}) {
      const Problem p = make_problem(M, 2048, 520, 5);
      std::vector<float> a(size_t(M * p.N)), b(a.size());
      for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        matmul_bf16w(p.X.data(), M, p.K, p.W.data(), p.N, a.data(), prec);
        for (int rep = 0; rep < 3; ++rep) {
          matmul_bf16w(p.X.data(), M, p.K, p.W.data(), p.N, b.data(), prec);
          ASSERT_EQ(a, b) << "M=" << M << " threads=" << threads << " " << precision_name(prec);
        }
      }
      if (M <= kGemvMaxRows) {
        ThreadCount t1(1);
        gemv_bf16w(p.X.data(), M, p.K, p.W.data(), p.N, a.data(), prec);
        ThreadCount t2(2);
        gemv_bf16w(p.X.data(), M, p.K, p.W.data(), p.N, b.data(), prec);
        EXPECT_EQ(a, b) << "gemv 1 vs 2 threads, M=" << M;
      }
    }
}

TEST(Matmul, EmptyShapes) {
  const float X[4] = {1, 2, 3, 4};
  const uint16_t W[4] = {0x3f80, 0x3f80, 0x3f80, 0x3f80};
  float Y[6] = {9, 9, 9, 9, 9, 9};
  for (Kernel k : {matmul_bf16w, gemv_bf16w, gemm_bf16w_onednn, matmul_bf16w_ref}) {
    k(X, 0, 2, W, 2, Y, Precision::F32);  // M = 0: nothing written
    EXPECT_EQ(Y[0], 9.0f);
    k(X, 2, 0, W, 3, Y, Precision::F32);  // K = 0: empty sums
    for (float y : Y) EXPECT_EQ(y, 0.0f);
    Y[0] = 9;
  }
  // M = 5 with K = 0 goes through the oneDNN dispatch branch.
  std::vector<float> Y5(10, 9.0f);
  matmul_bf16w(X, 5, 0, W, 2, Y5.data(), Precision::BF16);
  for (float y : Y5) EXPECT_EQ(y, 0.0f);
}

TEST(Matmul, RejectsBadArguments) {
  const float X[4] = {};
  const uint16_t W[4] = {};
  float Y[4];
  EXPECT_THROW(matmul_bf16w(X, -1, 2, W, 2, Y, Precision::F32), Error);
  EXPECT_THROW(matmul_bf16w(X, 1, 2, W, -2, Y, Precision::F32), Error);
  EXPECT_THROW(matmul_bf16w(X, 1, 2, W, 2, nullptr, Precision::F32), Error);
  EXPECT_THROW(matmul_bf16w(nullptr, 1, 2, W, 2, Y, Precision::F32), Error);
  EXPECT_THROW(gemm_bf16w_onednn(X, 8, 2, nullptr, 2, Y, Precision::BF16), Error);
  EXPECT_THROW(gemv_bf16w(X, 1, -2, W, 2, Y, Precision::BF16), Error);
  EXPECT_THROW(onednn_impl_name(0, 2, 2, Precision::BF16), Error);
  try {
    matmul_bf16w(X, -3, 2, W, 2, Y, Precision::F32);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("M=-3"), std::string::npos) << e.what();
  }
}

// SIMD array conversions equal the scalar definitions in core/dtype.h bit for bit.
TEST(Matmul, ConversionHelpersMatchScalar) {
  std::vector<float> src;
  std::mt19937 rng(3);
  for (int i = 0; i < 4000; ++i) src.push_back(std::bit_cast<float>(uint32_t(rng())));
  // Ties (to even, both directions), specials, denormals, overflow to inf.
  for (uint32_t u : {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f800000u, 0xff800000u, 0x7fc00001u,
                     0xffa12345u, 0x7f800001u, 0x00000001u, 0x80008000u, 0x7f7fffffu, 0x00018000u,
                     0x0u, 0x80000000u})
    src.push_back(std::bit_cast<float>(u));
  std::vector<uint16_t> got(src.size());
  f32_to_bf16_n(src.data(), int64_t(src.size()), got.data());
  for (size_t i = 0; i < src.size(); ++i)
    ASSERT_EQ(got[i], f32_to_bf16(src[i])) << "f32 bits " << std::hex << std::bit_cast<uint32_t>(src[i]);

  std::vector<uint16_t> all(65536 + 3);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
  std::vector<float> f(all.size());
  bf16_to_f32_n(all.data(), int64_t(all.size()), f.data());
  for (size_t i = 0; i < all.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), std::bit_cast<uint32_t>(bf16_to_f32(all[i]))) << i;
}

// Every SIMD target compiled in and supported by this CPU (AVX-512, AVX2, SSE4,
// the portable fallbacks) gives reference-accurate GEMV and exact conversions,
// so users without AVX-512 run tested code too.
TEST(Matmul, GemvAllSimdTargets) {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    SCOPED_TRACE(hwy::TargetName(target));
    hwy::SetSupportedTargetsForTest(target);
    uint32_t seed = 500;
    for (int64_t M : {1, 2, 3, 4, 6})
      for (int64_t K : {5, 100, 2048})
        for (Precision prec : {Precision::F32, Precision::BF16}) {
          const Problem p = make_problem(M, K, 37, seed++);
          std::vector<float> ref(size_t(M * p.N));
          matmul_bf16w_ref(p.X.data(), M, K, p.W.data(), p.N, ref.data(), prec);
          expect_near_ref("gemv_bf16w", gemv_bf16w, p, prec, ref, abs_products(p, prec));
        }
    // 40 values: long enough for full vectors of every target plus a tail.
    const float base[8] = {1.0f, -2.5f, 1.00390625f, 3e38f, -0.0f, 1e-40f, 1.01171875f, -7.3e-3f};
    float src[40];
    for (int i = 0; i < 40; ++i) src[i] = base[i % 8] * float(1 + i / 8);
    uint16_t b[40];
    float f[40];
    f32_to_bf16_n(src, 40, b);
    bf16_to_f32_n(b, 40, f);
    for (int i = 0; i < 40; ++i) {
      EXPECT_EQ(b[i], f32_to_bf16(src[i])) << i;
      EXPECT_EQ(f[i], round_bf16(src[i])) << i;
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the CPU's real targets
}

TEST(Matmul, OnednnImplementationIsReported) {
  const std::string bf16 = onednn_impl_name(64, 256, 256, Precision::BF16);
  const std::string f32 = onednn_impl_name(64, 256, 256, Precision::F32);
  EXPECT_FALSE(bf16.empty());
  EXPECT_FALSE(f32.empty());
  // "ref" would mean a reference (very slow) implementation was chosen.
  EXPECT_EQ(bf16.find("ref"), std::string::npos) << bf16;
  EXPECT_EQ(f32.find("ref"), std::string::npos) << f32;
}

TEST(Bandwidth, ProbeReturnsPlausibleRate) {
  // A small buffer (mostly cache resident) just exercises the code path: any
  // real machine reads 8 MiB at well over 100 MB/s and below 100 TB/s.
  const double bw = measure_read_bandwidth(int64_t(8) << 20, 3);
  EXPECT_GT(bw, 1e8);
  EXPECT_LT(bw, 1e14);
  EXPECT_THROW(measure_read_bandwidth(1000, 1), Error);
  EXPECT_THROW(measure_read_bandwidth(int64_t(1) << 20, 0), Error);
}

}  // namespace
}  // namespace lq::cpu
