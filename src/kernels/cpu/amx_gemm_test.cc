// kernels/cpu/amx_gemm_test.cc: the AMX-BF16 GEMM against the scalar reference.
//
// Reference: matmul_bf16w_ref(..., Precision::BF16) rounds X to bf16 and sums the
// exact products in double; its only error is the final rounding to float.
//
// Tolerance (same as matmul_test.cc, and why): the AMX kernel forms every
// bf16 x bf16 product exactly and sums K of them in fp32 (pairs inside
// TDPBF16PS, then the tile accumulator, then K-block partial sums), so for any
// order the error is <= (K - 1) u S / (1 - (K - 1) u), u = 2^-24,
// S = sum_k |x_k w_k|; the reference adds <= u S. Allowed:
//     |y - y_ref| <= (K + 2) * 2^-24 * S + 1e-30      (1e-30 only covers S = 0).
// Packing/indexing/transposition mistakes give errors of order S / K or more;
// OneHotIsExact checks bit-exact results where no rounding can happen (so the
// bf16 rounding of X must equal core/dtype.h f32_to_bf16 exactly).
// All tests GTEST_SKIP when the CPU/OS has no AMX (except Fp8ToBf16AllCodes).
// FP8 weights (gemm_fp8w_amx): the kernel must give bitwise the result of
// gemm_bf16w_amx on the bf16 copy of W (same tiles, same order), and the
// conversion must equal f32_to_bf16(fp8e4m3_to_f32(c)) for every non-NaN code.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/aligned.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/amx_gemm.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_testutil.h"

namespace lq::cpu {
namespace {

#define LQ_REQUIRE_AMX()                                                            \
  do {                                                                              \
    if (!amx_available()) GTEST_SKIP() << "CPU/OS without AMX-BF16: nothing to test"; \
  } while (0)

using testutil::make_problem;
using testutil::Problem;
using testutil::sum_tolerance;
using testutil::ThreadCount;

std::vector<float> run_amx(const Problem& p) {
  std::vector<float> Y(size_t(p.M * p.N), std::numeric_limits<float>::quiet_NaN());
  gemm_bf16w_amx(p.X.data(), p.M, p.K, p.W.data(), p.N, Y.data());
  return Y;
}

// Compares with the reference for 1 and 2 threads; the two thread counts must
// also agree bit for bit (each output is summed by one thread in a fixed order).
void check_shape(int64_t M, int64_t K, int64_t N, uint32_t seed) {
  const Problem p = make_problem(M, K, N, seed);
  std::vector<float> ref(size_t(M * N));
  matmul_bf16w_ref(p.X.data(), M, K, p.W.data(), N, ref.data(), Precision::BF16);
  std::vector<double> xr(static_cast<size_t>(K));
  std::vector<float> y1;
  for (int threads : {1, 2}) {
    ThreadCount tc(threads);
    const std::vector<float> Y = run_amx(p);
    int bad = 0;
    for (int64_t m = 0; m < M && bad < 3; ++m) {
      for (int64_t k = 0; k < K; ++k) xr[k] = std::fabs(double(round_bf16(p.X[m * K + k])));
      for (int64_t n = 0; n < N && bad < 3; ++n) {
        double S = 0;
        for (int64_t k = 0; k < K; ++k) S += xr[k] * std::fabs(double(bf16_to_f32(p.W[n * K + k])));
        const double tol = sum_tolerance(K, S);
        const double err = std::fabs(double(Y[m * N + n]) - double(ref[m * N + n]));
        if (!(err <= tol))
          ADD_FAILURE() << "M=" << M << " K=" << K << " N=" << N << " threads=" << threads << " at ("
                        << m << "," << n << "): got " << Y[m * N + n] << " want " << ref[m * N + n]
                        << " err " << err << " tol " << tol << (++bad, "");
      }
    }
    if (threads == 1) {
      y1 = Y;
    } else {
      for (int64_t i = 0; i < M * N; ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(y1[i]), std::bit_cast<uint32_t>(Y[i]))
            << "1 vs 2 threads differ at " << i << " M=" << M << " K=" << K << " N=" << N;
    }
  }
}

const int64_t kMs[] = {5, 16, 17, 100, 512};
const int64_t kKs[] = {32, 64, 96, 100, 2048};
const int64_t kNs[] = {16, 17, 64, 130, 2048};

// Shapes up to 2^22 multiply-adds here; the rest in MatchesReferenceSlow.
constexpr int64_t kFastMacs = int64_t(1) << 22;

// Every (M, K, N) of the grid on one side of kFastMacs, each with its own seed.
void check_grid(bool slow) {
  uint32_t seed = 1;
  for (int64_t M : kMs)
    for (int64_t K : kKs)
      for (int64_t N : kNs) {
        ++seed;
        if ((M * K * N > kFastMacs) == slow) check_shape(M, K, N, seed);
      }
}

TEST(AmxGemm, MatchesReference) {
  LQ_REQUIRE_AMX();
  check_grid(/*slow=*/false);
  // Several K blocks (kKb = 2048) plus a K tail; several M blocks (kMb = 256).
  check_shape(7, 4196, 33, 1001);
  check_shape(300, 64, 48, 1002);
  check_shape(33, 31, 20, 1003);  // K < 32: only the tail step
  check_shape(6, 1, 3, 1004);
}

TEST(AmxGemm, MatchesReferenceSlow) {
  LQ_REQUIRE_AMX();
  check_grid(/*slow=*/true);
  check_shape(260, 4100, 70, 2001);
}

// W row n has a single 1.0 at column (3 n + 1) mod K: Y[m, n] must equal
// round_bf16(X[m, col]) exactly. X includes exact ties of the bf16 rounding.
TEST(AmxGemm, OneHotIsExact) {
  LQ_REQUIRE_AMX();
  const int64_t M = 37, K = 70, N = 45;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> ux(-100.0f, 100.0f);
  std::vector<float> X(size_t(M * K));
  for (int64_t i = 0; i < M * K; ++i) {
    const float v = ux(rng);
    // Every third element: a tie (low 16 bits exactly 0x8000), odd and even cases.
    X[i] = i % 3 == 0 ? std::bit_cast<float>((std::bit_cast<uint32_t>(v) & 0xffff0000u) | 0x8000u) : v;
  }
  std::vector<uint16_t> W(size_t(N * K), 0);
  for (int64_t n = 0; n < N; ++n) W[n * K + (3 * n + 1) % K] = f32_to_bf16(1.0f);
  std::vector<float> Y(size_t(M * N));
  for (int threads : {1, 2}) {
    ThreadCount tc(threads);
    gemm_bf16w_amx(X.data(), M, K, W.data(), N, Y.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        ASSERT_EQ(std::bit_cast<uint32_t>(Y[m * N + n]),
                  std::bit_cast<uint32_t>(round_bf16(X[m * K + (3 * n + 1) % K])))
            << "m=" << m << " n=" << n << " threads=" << threads;
  }
}

TEST(AmxGemm, DeterministicRunToRun) {
  LQ_REQUIRE_AMX();
  const Problem p = make_problem(70, 2100, 96, 11);
  for (int threads : {1, 2}) {
    ThreadCount tc(threads);
    const std::vector<float> a = run_amx(p), b = run_amx(p);
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(a[i]), std::bit_cast<uint32_t>(b[i])) << i;
  }
}

// The dispatcher uses the AMX kernel for BF16 prefill unless LQ_DISABLE_AMX=1.
// K > 4096: several K blocks (partial sums reloaded), M and N tails. (The SwiGLU
// test covers the 4096 x 128 blocking with K = 4096.)
TEST(AmxGemm, MatchesReferenceLargeK) {
  LQ_REQUIRE_AMX();
  check_shape(150, 4096, 40, 91);
  check_shape(70, 4160, 33, 92);
}

// Several K blocks: the C tiles go to the partial-sum buffer after each K block
// and come back for the next, so every blocking must give the bits of a single K
// block (one TDPBF16PS chain through all of K). Adding each K block's products to
// Y instead (the kernel before session 6) rounds differently and fails this.
// Covers M/N/K tails, in-place and copied weights, grouped outputs, 1 and 2 threads.
TEST(AmxGemm, BlockingDoesNotChangeBits) {
  LQ_REQUIRE_AMX();
  struct Restore {
    ~Restore() { amx_set_blocking(0, 0); }
  } restore;
  const int64_t shapes[][3] = {{70, 4160, 33}, {300, 8192, 64}, {33, 2100, 40}, {17, 1000, 17}};
  for (const auto& sh : shapes) {
    const Problem p = make_problem(sh[0], sh[1], sh[2], uint32_t(7 * sh[1] + sh[2]));
    const Problem p2 = make_problem(sh[0], sh[1], sh[2] + 16, uint32_t(7 * sh[1] + sh[2] + 1));
    auto run = [&](int64_t kb, int64_t mb, const uint16_t* W) {
      amx_set_blocking(kb, mb);
      std::vector<float> Y(size_t(p.M * p.N)), Y2(size_t(p.M * p2.N));
      const AmxGemmOut outs[2] = {{W, p.N, Y.data()}, {p2.W.data(), p2.N, Y2.data()}};
      gemm_bf16w_amx_group(p.X.data(), p.M, p.K, outs, 2);
      Y.insert(Y.end(), Y2.begin(), Y2.end());
      return Y;
    };
    AlignedVector<uint16_t> aligned(p.W.begin(), p.W.end());  // read in place where K % 32 == 0
    AlignedVector<uint16_t> shifted(p.W.size() + 4);          // 8 bytes off a line: panel copies
    std::copy(p.W.begin(), p.W.end(), shifted.begin() + 4);
    for (int threads : {1, 2}) {
      ThreadCount tc(threads);
      const int64_t one = (p.K + 31) / 32 * 32;  // a single K block
      const std::vector<float> want = run(one, 64, aligned.data());
      for (const auto& b : {std::array<int64_t, 2>{1024, 512}, {2048, 256}, {64, 32}, {96, 128}}) {
        for (const uint16_t* W : {static_cast<const uint16_t*>(aligned.data()),
                                  static_cast<const uint16_t*>(shifted.data() + 4)}) {
          const std::vector<float> got = run(b[0], b[1], W);
          for (size_t i = 0; i < want.size(); ++i)
            ASSERT_EQ(std::bit_cast<uint32_t>(want[i]), std::bit_cast<uint32_t>(got[i]))
                << "M=" << p.M << " K=" << p.K << " N=" << p.N << " blocking " << b[0] << "x" << b[1]
                << " threads=" << threads << " at " << i;
        }
      }
    }
  }
}

// bf16 W with 64-byte aligned rows (W aligned, K a multiple of 32) is read in
// place, other W through the panel copy (amx_gemm.cc step 3). Both must give the
// same bits (same tiles, same order); the copy path is checked against the
// reference by the grid above. Shapes cover N tails (copied blocks beside in-place
// ones), one and several K blocks, and K % 32 != 0 (always copied).
TEST(AmxGemm, InPlaceWeightsEqualPanelCopy) {
  LQ_REQUIRE_AMX();
  const int64_t shapes[][3] = {{100, 2048, 130}, {17, 64, 17}, {512, 96, 64}, {40, 100, 50}, {33, 4096, 40}};
  for (const auto& sh : shapes) {
    const Problem p = make_problem(sh[0], sh[1], sh[2], uint32_t(sh[1] + sh[2]));
    const size_t nw = p.W.size();
    AlignedVector<uint16_t> aligned(nw), shifted(nw + 4);
    std::copy(p.W.begin(), p.W.end(), aligned.begin());
    std::copy(p.W.begin(), p.W.end(), shifted.begin() + 4);  // 8 bytes off a cache line
    for (int threads : {1, 2}) {
      ThreadCount tc(threads);
      std::vector<float> ya(size_t(p.M * p.N)), ys(size_t(p.M * p.N));
      gemm_bf16w_amx(p.X.data(), p.M, p.K, aligned.data(), p.N, ya.data());
      gemm_bf16w_amx(p.X.data(), p.M, p.K, shifted.data() + 4, p.N, ys.data());
      for (size_t i = 0; i < ya.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(ya[i]), std::bit_cast<uint32_t>(ys[i]))
            << "M=" << p.M << " K=" << p.K << " N=" << p.N << " threads=" << threads << " at " << i;
    }
  }
}

// Fused SwiGLU: bitwise the unfused ops (gate GEMM, up GEMM, silu_mul), with
// tails in M, N and K, weights read in place (aligned) and through the panel copy
// (misaligned), 1 and 2 threads; and the dispatch declines what it cannot fuse.
TEST(AmxGemm, SwigluEqualsUnfusedOps) {
  LQ_REQUIRE_AMX();
  const int64_t shapes[][3] = {{100, 2048, 130}, {17, 64, 17}, {512, 96, 64}, {40, 100, 50}, {5, 32, 16}, {150, 4096, 40}};
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], K = sh[1], N = sh[2];
    const Problem g = make_problem(M, K, N, uint32_t(K + N));
    const Problem u = make_problem(M, K, N, uint32_t(K + N + 1));
    ASSERT_TRUE(amx_swiglu_fusable(K));
    for (int64_t off : {0, 4}) {  // 0: 64-byte aligned rows (in place), 4: 8 bytes off (panel copy)
      AlignedVector<uint16_t> wg(g.W.size() + 4), wu(u.W.size() + 4);
      std::copy(g.W.begin(), g.W.end(), wg.begin() + off);
      std::copy(u.W.begin(), u.W.end(), wu.begin() + off);
      for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        std::vector<float> yg(size_t(M * N)), yu(size_t(M * N)), want(size_t(M * N)), got(size_t(M * N));
        gemm_bf16w_amx(g.X.data(), M, K, wg.data() + off, N, yg.data());
        gemm_bf16w_amx(g.X.data(), M, K, wu.data() + off, N, yu.data());
        silu_mul(yg.data(), yu.data(), M * N, want.data());
        gemm_bf16w_amx_swiglu(g.X.data(), M, K, wg.data() + off, wu.data() + off, N, got.data());
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(std::bit_cast<uint32_t>(want[i]), std::bit_cast<uint32_t>(got[i]))
              << "M=" << M << " K=" << K << " N=" << N << " off=" << off << " threads=" << threads << " at " << i;
      }
    }
  }
  const Problem p = make_problem(40, 64, 20, 5);
  std::vector<float> H(size_t(40 * 20), 7.0f);
  EXPECT_FALSE(swiglu_bf16w(p.X.data(), 40, 64, p.W.data(), p.W.data(), 20, H.data(), Precision::F32));
  EXPECT_FALSE(swiglu_bf16w(p.X.data(), kGemvMaxRows, 64, p.W.data(), p.W.data(), 20, H.data(), Precision::BF16));
  EXPECT_TRUE(amx_swiglu_fusable(4096));
  EXPECT_FALSE(amx_swiglu_fusable(8192));  // two K blocks: the unfused path
  EXPECT_EQ(H[0], 7.0f);  // declined calls write nothing
  const Problem big = make_problem(40, 8192, 20, 6);  // two K blocks: rejected before any work
  EXPECT_THROW(gemm_bf16w_amx_swiglu(big.X.data(), 40, 8192, big.W.data(), big.W.data(), 20, H.data()), Error);
  EXPECT_EQ(H[0], 7.0f);
}

// SwiGLU with packed output, then the down projection from it: the packed words
// are exactly f32_to_bf16 of the fp32 H of gemm_bf16w_amx_swiglu in the pair
// layout (zeros in the padding), and the down product is bitwise
// gemm_bf16w_amx on that fp32 H; with tails in M, K, N, N2, a down K (= N) of
// several K blocks, in-place and copied weights, 1 and 2 threads.
TEST(AmxGemm, SwigluPackedThenDownEqualsUnfused) {
  LQ_REQUIRE_AMX();
  const int64_t shapes[][4] = {{37, 96, 80, 40}, {200, 256, 300, 64}, {64, 2048, 4200, 33}, {5, 32, 16, 16}};
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], K = sh[1], N = sh[2], N2 = sh[3];
    const Problem g = make_problem(M, K, N, uint32_t(K + N + 7));
    const Problem u = make_problem(M, K, N, uint32_t(K + N + 8));
    const Problem d = make_problem(1, N, N2, uint32_t(N + N2));  // down weights [N2, N]
    for (int64_t off : {0, 4}) {
      AlignedVector<uint16_t> wg(g.W.size() + 4), wu(u.W.size() + 4), wd(d.W.size() + 4);
      std::copy(g.W.begin(), g.W.end(), wg.begin() + off);
      std::copy(u.W.begin(), u.W.end(), wu.begin() + off);
      std::copy(d.W.begin(), d.W.end(), wd.begin() + off);
      for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        std::vector<float> H(size_t(M * N)), want(size_t(M * N2)), got(size_t(M * N2), -1.0f);
        gemm_bf16w_amx_swiglu(g.X.data(), M, K, wg.data() + off, wu.data() + off, N, H.data());
        gemm_bf16w_amx(H.data(), M, N, wd.data() + off, N2, want.data());
        const AmxPackedX hp = gemm_bf16w_amx_swiglu_packed(g.X.data(), M, K, wg.data() + off, wu.data() + off, N);
        ASSERT_EQ(hp.M, M);
        ASSERT_EQ(hp.K, N);
        const int64_t Mp = (M + 31) / 32 * 32, KP2 = (N + 31) / 32 * 16;
        for (int64_t m = 0; m < Mp; ++m)
          for (int64_t p = 0; p < KP2; ++p) {
            auto hv = [&](int64_t n) -> uint32_t { return m < M && n < N ? f32_to_bf16(H[size_t(m * N + n)]) : 0u; };
            const uint32_t w = hp.data[((m / 16) * KP2 + p) * 16 + m % 16];
            ASSERT_EQ(w, hv(2 * p) | (hv(2 * p + 1) << 16)) << "M=" << M << " N=" << N << " m=" << m << " pair " << p;
          }
        gemm_bf16w_amx_packed(hp, wd.data() + off, N2, got.data());
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(std::bit_cast<uint32_t>(want[i]), std::bit_cast<uint32_t>(got[i]))
              << "M=" << M << " K=" << K << " N=" << N << " N2=" << N2 << " off=" << off << " threads=" << threads
              << " at " << i;
      }
    }
  }
  const Problem p = make_problem(40, 8192, 20, 6);  // two K blocks: not fusable
  EXPECT_THROW(gemm_bf16w_amx_swiglu_packed(p.X.data(), 40, 8192, p.W.data(), p.W.data(), 20), Error);
  EXPECT_THROW(gemm_bf16w_amx_packed(AmxPackedX{}, p.W.data(), 20, nullptr), Error);
}

// Add mode (the residual connection, Y += product in the epilogue): bitwise the
// product stored and then add_inplace, with M/N/K tails, one and several K blocks
// (partial sums), in-place and copied weights, 1 and 2 threads, -0 and large
// values in Y; the packed-operand variant too, and K = 0 (Y + 0).
TEST(AmxGemm, AddModeEqualsProductThenAdd) {
  LQ_REQUIRE_AMX();
  const int64_t shapes[][3] = {{37, 96, 80}, {200, 2048, 130}, {64, 4200, 33}, {5, 32, 16}, {300, 8192, 64}};
  for (const auto& sh : shapes) {
    const Problem p = make_problem(sh[0], sh[1], sh[2], uint32_t(3 * sh[1] + sh[2]));
    const int64_t M = p.M, K = p.K, N = p.N;
    std::vector<float> y0(size_t(M * N));
    std::mt19937 rng{static_cast<uint32_t>(K)};
    std::uniform_real_distribution<float> uy(-100.0f, 100.0f);
    for (auto& v : y0) v = uy(rng);
    y0[0] = -0.0f;
    y0[y0.size() - 1] = 3.0e38f;
    for (int64_t off : {0, 4}) {
      AlignedVector<uint16_t> w(p.W.size() + 4);
      std::copy(p.W.begin(), p.W.end(), w.begin() + off);
      for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        std::vector<float> prod(size_t(M * N)), want = y0, got = y0;
        gemm_bf16w_amx(p.X.data(), M, K, w.data() + off, N, prod.data());
        add_inplace(want.data(), prod.data(), M * N);
        gemm_bf16w_amx(p.X.data(), M, K, w.data() + off, N, got.data(), /*add=*/true);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(std::bit_cast<uint32_t>(want[i]), std::bit_cast<uint32_t>(got[i]))
              << "M=" << M << " K=" << K << " N=" << N << " off=" << off << " threads=" << threads << " at " << i;
      }
    }
  }
  // Packed operand (the down projection after the fused SwiGLU), several K blocks.
  const Problem g = make_problem(70, 64, 4200, 11), u = make_problem(70, 64, 4200, 12), d = make_problem(1, 4200, 40, 13);
  AlignedVector<uint16_t> wg(g.W.begin(), g.W.end()), wu(u.W.begin(), u.W.end()), wd(d.W.begin(), d.W.end());
  std::vector<float> H(size_t(70 * 4200)), prod(size_t(70 * 40)), want(prod.size(), 1.5f), got(prod.size(), 1.5f);
  gemm_bf16w_amx_swiglu(g.X.data(), 70, 64, wg.data(), wu.data(), 4200, H.data());
  gemm_bf16w_amx(H.data(), 70, 4200, wd.data(), 40, prod.data());
  add_inplace(want.data(), prod.data(), int64_t(prod.size()));
  const AmxPackedX hp = gemm_bf16w_amx_swiglu_packed(g.X.data(), 70, 64, wg.data(), wu.data(), 4200);
  gemm_bf16w_amx_packed(hp, wd.data(), 40, got.data(), /*add=*/true);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(std::bit_cast<uint32_t>(want[i]), std::bit_cast<uint32_t>(got[i])) << i;
  // K = 0: the product is 0, so Y + 0 (-0 becomes +0, as add_inplace gives).
  std::vector<float> y = {-0.0f, 2.0f};
  gemm_bf16w_amx(nullptr, 1, 0, wd.data(), 2, y.data(), /*add=*/true);
  EXPECT_EQ(std::bit_cast<uint32_t>(y[0]), 0u);
  EXPECT_EQ(y[1], 2.0f);
}

// Grouped outputs (q/k/v): each output bitwise what gemm_bf16w_amx gives for it
// alone, with outputs of different N (tails, an empty one), in-place and copied
// weights, one and two K blocks, 1 and 2 threads; matmul_bf16w_group too (also its
// per-output fallback for F32).
TEST(AmxGemm, GroupEqualsSeparateCalls) {
  LQ_REQUIRE_AMX();
  const int64_t shapes[][2] = {{100, 2048}, {40, 100}, {70, 4160}};
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], K = sh[1];
    const int64_t Ns[3] = {130, 32, 47};
    std::vector<Problem> ps;
    for (int i = 0; i < 3; ++i) ps.push_back(make_problem(M, K, Ns[i], uint32_t(K + i)));
    AlignedVector<uint16_t> w[3];
    for (int i = 0; i < 3; ++i) {  // output 1 misaligned (panel copy), others in place
      const size_t off = i == 1 ? 4 : 0;
      w[i].resize(ps[size_t(i)].W.size() + 4);
      std::copy(ps[size_t(i)].W.begin(), ps[size_t(i)].W.end(), w[i].begin() + off);
    }
    auto wp = [&](int i) { return w[i].data() + (i == 1 ? 4 : 0); };
    const float* X = ps[0].X.data();
    for (int threads : {1, 2}) {
      ThreadCount tc(threads);
      std::vector<float> want[3], got[3], got2[3];
      AmxGemmOut outs[3];
      Bf16WeightOut mouts[3];
      for (int i = 0; i < 3; ++i) {
        want[i].resize(size_t(M * Ns[i]));
        got[i].assign(size_t(M * Ns[i]), -1.0f);
        got2[i].assign(size_t(M * Ns[i]), -1.0f);
        gemm_bf16w_amx(X, M, K, wp(i), Ns[i], want[i].data());
        outs[i] = AmxGemmOut{wp(i), Ns[i], got[i].data()};
        mouts[i] = Bf16WeightOut{wp(i), Ns[i], got2[i].data()};
      }
      gemm_bf16w_amx_group(X, M, K, outs, 3);
      matmul_bf16w_group(X, M, K, mouts, 3, Precision::BF16);
      for (int i = 0; i < 3; ++i)
        for (size_t j = 0; j < want[i].size(); ++j) {
          ASSERT_EQ(std::bit_cast<uint32_t>(want[i][j]), std::bit_cast<uint32_t>(got[i][j]))
              << "M=" << M << " K=" << K << " output " << i << " threads=" << threads << " at " << j;
          if (amx_gemm_enabled()) {
            ASSERT_EQ(std::bit_cast<uint32_t>(want[i][j]), std::bit_cast<uint32_t>(got2[i][j])) << i << " " << j;
          }
        }
    }
  }
  // An empty output among others, and the F32 fallback.
  const Problem p = make_problem(20, 64, 40, 3);
  std::vector<float> y0(size_t(20 * 40)), y1(size_t(20 * 40)), ref(size_t(20 * 40));
  AmxGemmOut outs[2] = {{p.W.data(), 0, nullptr}, {p.W.data(), 40, y0.data()}};
  gemm_bf16w_amx_group(p.X.data(), 20, 64, outs, 2);
  gemm_bf16w_amx(p.X.data(), 20, 64, p.W.data(), 40, ref.data());
  EXPECT_EQ(y0, ref);
  Bf16WeightOut f{p.W.data(), 40, y1.data()};
  matmul_bf16w_group(p.X.data(), 20, 64, &f, 1, Precision::F32);
  matmul_bf16w(p.X.data(), 20, 64, p.W.data(), 40, ref.data(), Precision::F32);
  EXPECT_EQ(y1, ref);
}

TEST(AmxGemm, DispatchMatchesAmxKernel) {
  LQ_REQUIRE_AMX();
  const Problem p = make_problem(40, 200, 50, 12);
  std::vector<float> Y(size_t(p.M * p.N));
  matmul_bf16w(p.X.data(), p.M, p.K, p.W.data(), p.N, Y.data(), Precision::BF16);
  const std::vector<float> A = run_amx(p);
  if (amx_gemm_enabled()) {
    for (size_t i = 0; i < A.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(A[i]), std::bit_cast<uint32_t>(Y[i])) << i;
  }
}

TEST(AmxGemm, EmptyShapesAndBadArguments) {
  LQ_REQUIRE_AMX();
  float X[4] = {1, 2, 3, 4}, Y[6] = {9, 9, 9, 9, 9, 9};
  uint16_t W[4] = {0, 0, 0, 0};
  gemm_bf16w_amx(X, 0, 2, W, 2, Y);
  gemm_bf16w_amx(X, 2, 2, W, 0, Y);
  EXPECT_EQ(Y[0], 9.0f);
  gemm_bf16w_amx(nullptr, 2, 0, nullptr, 3, Y);  // K = 0: Y = 0
  for (float y : Y) EXPECT_EQ(y, 0.0f);
  EXPECT_THROW(gemm_bf16w_amx(X, -1, 2, W, 2, Y), Error);
  EXPECT_THROW(gemm_bf16w_amx(X, 1, 2, W, 2, nullptr), Error);
  EXPECT_THROW(gemm_bf16w_amx(X, 1, 2, nullptr, 2, Y), Error);
}

TEST(AmxGemm, Fp8ToBf16AllCodes) {
  // All 256 codes, at every offset within a 32-code SIMD step (tails included).
  std::vector<uint8_t> codes;
  for (int rep = 0; rep < 3; ++rep)
    for (int c = 0; c < 256; ++c) codes.push_back(uint8_t(c));
  for (int64_t off : {0, 1, 7, 31}) {
    const int64_t n = int64_t(codes.size()) - off;
    std::vector<uint16_t> out(size_t(n), 0xdead);
    fp8e4m3_to_bf16_n(codes.data() + off, n, out.data());
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t c = codes[size_t(off + i)];
      if ((c & 0x7f) == 0x7f) {  // NaN codes: documented finite pattern +-480
        EXPECT_EQ(bf16_to_f32(out[size_t(i)]), (c & 0x80) ? -480.0f : 480.0f) << int(c);
        continue;
      }
      ASSERT_EQ(out[size_t(i)], f32_to_bf16(fp8e4m3_to_f32(c))) << "code " << int(c) << " offset " << off;
      ASSERT_EQ(bf16_to_f32(out[size_t(i)]), fp8e4m3_to_f32(c)) << "code " << int(c);  // exact
    }
  }
}

TEST(AmxGemm, Fp8WeightsEqualBf16Copy) {
  LQ_REQUIRE_AMX();
  // Shapes with M, N and K tails and (K = 2100) two K blocks.
  const std::vector<std::array<int64_t, 3>> shapes = {{5, 64, 17}, {33, 100, 40}, {64, 2100, 33}, {300, 96, 70}};
  for (const auto& [M, K, N] : shapes) {
    std::mt19937 rng(uint32_t(M * 7 + K + N));
    std::vector<uint8_t> w8(size_t(N * K));
    for (auto& c : w8) {
      do c = uint8_t(rng());
      while ((c & 0x7f) == 0x7f);
    }
    std::vector<uint16_t> wb(w8.size());
    for (size_t i = 0; i < w8.size(); ++i) wb[i] = f32_to_bf16(fp8e4m3_to_f32(w8[i]));
    std::vector<float> X(size_t(M * K));
    for (auto& x : X) x = fp8e4m3_to_f32(uint8_t(rng() % 0x7f)) * ((rng() & 1) ? -1.0f : 1.0f);
    std::vector<float> y8(size_t(M * N)), yb(size_t(M * N));
    for (int threads : {1, 2}) {
      ThreadCount tc(threads);
      gemm_fp8w_amx(X.data(), M, K, w8.data(), N, y8.data());
      gemm_bf16w_amx(X.data(), M, K, wb.data(), N, yb.data());
      for (size_t i = 0; i < y8.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(y8[i]), std::bit_cast<uint32_t>(yb[i]))
            << "M=" << M << " K=" << K << " N=" << N << " at " << i << " threads " << threads;
    }
  }
  std::vector<float> y(4);
  EXPECT_THROW(gemm_fp8w_amx(nullptr, 2, 8, nullptr, 2, y.data()), Error);
}

}  // namespace
}  // namespace lq::cpu
