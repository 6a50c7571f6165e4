// Tests of quant/algo_common (sgemm, MinMaxQuantizer), algo_rtn and algo_gptq.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "quant/algo_common.h"
#include "quant/algo_gptq.h"
#include "quant/algo_rtn.h"

namespace lq::quant {
namespace {

std::vector<float> randn(int64_t n, uint64_t seed, float sd = 1.0f) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = float(r.normal()) * sd;
  return v;
}

TEST(AlgoCommon, SgemmMatchesScalarReference) {
  const int64_t M = 37, N = 53, K = 129;
  auto A = randn(M * K, 1), B = randn(N * K, 2);
  std::vector<float> C(static_cast<size_t>(M * N), 0.5f), R = C;
  sgemm_abt(M, N, K, 2.0f, A.data(), K, B.data(), K, 1.0f, C.data(), N);
  sgemm_abt_ref(M, N, K, 2.0f, A.data(), K, B.data(), K, 1.0f, R.data(), N);
  // fp32 accumulation of 129 products of N(0,1) values: |error| ~ sqrt(K) * 2^-24 * |terms|;
  // 1e-4 absolute on results of magnitude ~20 is >10x that bound.
  for (size_t i = 0; i < C.size(); ++i) EXPECT_NEAR(C[i], R[i], 1e-4) << i;
}

TEST(AlgoCommon, MinMaxQuantizerHandChecked) {
  MinMaxQuantizer sym{4, true, ScaleStorage::F16};
  const float a[] = {-1.0f, 0.5f, 0.25f};
  GroupParams p = sym.find_params(a, 3);
  // xmax = max(|-1|, 0.5) = 1, range [-1, 1], scale = 2/15 rounded to f16 = 0.13330078125.
  EXPECT_EQ(p.scale, 0.13330078125f);
  EXPECT_EQ(p.zero, 8.0f);
  EXPECT_EQ(sym.quantize(-1.0f, p), 0);   // round(-7.5018) = -8, + 8
  EXPECT_EQ(sym.quantize(0.5f, p), 12);   // round(3.7509) = 4
  EXPECT_EQ(sym.quantize(0.25f, p), 10);  // round(1.8755) = 2

  MinMaxQuantizer asym{4, false, ScaleStorage::F16};
  const float b[] = {0.5f, 1.0f, 2.0f};
  p = asym.find_params(b, 3);  // range widened to include 0: [0, 2]
  EXPECT_EQ(p.scale, 0.13330078125f);
  EXPECT_EQ(p.zero, 0.0f);
  EXPECT_EQ(asym.quantize(0.5f, p), 4);
  EXPECT_EQ(asym.quantize(1.0f, p), 8);
  EXPECT_EQ(asym.quantize(2.0f, p), 15);

  // The reference's symmetric quirk: a group with no negative value keeps xmin = 0,
  // so its scale is xmax/15 with zero 8 and the upper half of the range clamps.
  p = sym.find_params(b, 3);
  EXPECT_EQ(p.scale, 0.13330078125f);
  EXPECT_EQ(p.zero, 8.0f);
  EXPECT_EQ(sym.quantize(1.0f, p), 15);

  // All-zero group -> range [-1, 1].
  const float z[] = {0.0f, 0.0f};
  p = sym.find_params(z, 2);
  EXPECT_EQ(p.scale, 0.13330078125f);
  EXPECT_EQ(sym.quantize(0.0f, p), 8);
}

TEST(AlgoRtn, GroupsAndErrorBound) {
  const int64_t N = 16, K = 96;
  auto W = randn(N * K, 3, 0.05f);
  for (int bits : {4, 8}) {
    for (bool sym : {true, false}) {
      AffineGroups q = quantize_rtn(W.data(), N, K, {bits, 32, sym, ScaleStorage::F16});
      ASSERT_EQ(q.n_groups(), 3);
      auto D = dequantize_affine_f32(q);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const float s = q.scales[size_t((k / 32) * N + n)];
          // Round to nearest: |w - deq| <= scale / 2, plus the f16 rounding of the scale
          // (relative 2^-11) times up to 2^(bits-1) steps at the ends of the range.
          EXPECT_LE(std::fabs(W[size_t(n * K + k)] - D[size_t(n * K + k)]),
                    s * (0.5f + float(1 << (bits - 1)) * 0x1p-11f) * (1 + 1e-5f))
              << bits << sym << n << k;
        }
    }
  }
  // group -1 = per channel, and a group larger than `in` is one group.
  EXPECT_EQ(quantize_rtn(W.data(), N, K, {4, -1, true}).group_size, K);
  EXPECT_EQ(quantize_rtn(W.data(), N, K, {4, 128, true}).n_groups(), 1);
}

TEST(AlgoGptq, HessianMatchesDoubleReference) {
  // K = 600 spans two 512-column tiles of the triangular accumulation.
  for (auto [T, K] : {std::pair<int64_t, int64_t>{700, 40}, {60, 600}}) {
    auto X = randn(T * K, 4);
    Hessian h(K);
    const int64_t split = T / 3;
    h.add(X.data(), split);
    h.add(X.data() + split * K, T - split);
    auto H = h.matrix();
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) {
        double s = 0;
        for (int64_t t = 0; t < T; ++t) s += double(X[size_t(t * K + i)]) * X[size_t(t * K + j)];
        // fp32 products summed in fp32 over <= 512 rows, then double: relative ~1e-6.
        ASSERT_NEAR(H[size_t(i * K + j)], 2.0 * s / double(T), 1e-4) << K << ": " << i << "," << j;
      }
    EXPECT_EQ(h.take_matrix(), H);  // same values, moved out
    EXPECT_EQ(h.rows(), 0);
  }
}

TEST(AlgoGptq, UpperCholeskyOfInverse) {
  // n not a multiple of the 128 block, to exercise the edge blocks.
  const int64_t n = 300, T = 900;
  auto X = randn(T * n, 5);
  std::vector<double> G(static_cast<size_t>(n * n), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) G[size_t(i * n + j)] += double(X[size_t(t * n + i)]) * X[size_t(t * n + j)] / T;
  std::vector<float> A(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A[size_t(i * n + j)] = float(i >= j ? G[size_t(i * n + j)] : G[size_t(j * n + i)]);
  for (int64_t i = 0; i < n; ++i) A[size_t(i * n + i)] += 0.1f;
  std::vector<float> U;
  ASSERT_TRUE(upper_cholesky_of_inverse(A, n, U));
  // U upper triangular, positive diagonal, and A (U^T U) = I.
  double max_err = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(U[size_t(i * n + j)], 0.0f);
  std::vector<double> Inv(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k <= std::min(i, j); ++k) s += double(U[size_t(k * n + i)]) * U[size_t(k * n + j)];
      Inv[size_t(i * n + j)] = s;
    }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += double(A[size_t(i * n + k)]) * Inv[size_t(k * n + j)];
      max_err = std::max(max_err, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  // fp32 factorisation of a matrix with condition number ~ (1 + 1.6^2)/0.1 ~ 40: errors ~1e-5.
  EXPECT_LT(max_err, 1e-3);
  // Only the lower triangle is read: zeroing the upper one changes nothing.
  std::vector<float> Alow = A, U2;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) Alow[size_t(i * n + j)] = 0.0f;
  ASSERT_TRUE(upper_cholesky_of_inverse(Alow, n, U2));
  EXPECT_EQ(U, U2);
  // Not positive definite -> false.
  std::vector<float> B(static_cast<size_t>(4), 0.0f);
  B[0] = 1.0f;
  B[3] = -1.0f;
  EXPECT_FALSE(upper_cholesky_of_inverse(B, 2, U));
}

TEST(AlgoGptq, WhiteHessianReducesToRtn) {
  // With H = c I the inverse factor is diagonal: no error feedback, so GPTQ's codes and
  // parameters are exactly RTN's (same min/max quantizer, same scale rounding).
  const int64_t N = 24, K = 160;
  auto W = randn(N * K, 6, 0.1f);
  std::vector<double> H(static_cast<size_t>(K * K), 0.0);
  for (int64_t i = 0; i < K; ++i) H[size_t(i * K + i)] = 3.0;
  for (bool sym : {true, false}) {
    GptqOptions o;
    o.bits = 4;
    o.group_size = 32;
    o.sym = sym;
    GptqResult g = gptq_quantize(W.data(), N, K, H, o);
    AffineGroups r = quantize_rtn(W.data(), N, K, {4, 32, sym});
    EXPECT_EQ(g.w.q, r.q);
    EXPECT_EQ(g.w.scales, r.scales);
    EXPECT_EQ(g.w.zeros, r.zeros);
    EXPECT_TRUE(g.w.g_idx.empty());
    EXPECT_EQ(g.damp_retries, 0);
  }
}

TEST(AlgoGptq, LazyBatchMatchesColumnByColumn) {
  // Lazy batch updates are a reordering of the same arithmetic: block sizes 128, 32 and K
  // (one block: every update applied immediately) give the same codes up to fp32
  // rounding; a code can flip only when a weight sits within ~1e-6 of a rounding
  // boundary, so at most 0.5% of codes may differ. (Group parameters are read from the
  // running matrix at each group start, which sees in-block updates only when the group
  // starts a block -- the reference's behaviour -- so the comparison uses per-channel
  // parameters, and groups of 128 with blocks of 128 and 32, where every group starts a block.)
  const int64_t N = 32, K = 256, T = 1024;
  auto X = randn(T * K, 7);
  for (int64_t t = 0; t < T; ++t)  // correlate neighbouring channels
    for (int64_t k = 1; k < K; ++k) X[size_t(t * K + k)] += 0.8f * X[size_t(t * K + k - 1)];
  Hessian h(K);
  h.add(X.data(), T);
  auto H = h.matrix();
  auto W = randn(N * K, 8, 0.1f);
  for (auto [group, blocks] : {std::pair<int64_t, std::vector<int64_t>>{-1, {32, K}}, {128, {32}}}) {
    GptqOptions o;
    o.group_size = group;
    o.block_size = 128;
    auto a = gptq_quantize(W.data(), N, K, H, o);
    for (int64_t bs : blocks) {
      o.block_size = bs;
      auto b = gptq_quantize(W.data(), N, K, H, o);
      int64_t diff = 0;
      for (size_t i = 0; i < a.w.q.size(); ++i) diff += a.w.q[i] != b.w.q[i];
      EXPECT_LE(diff, int64_t(a.w.q.size()) / 200) << "group " << group << " block " << bs;
      EXPECT_NEAR(a.loss, b.loss, 1e-3 * a.loss);
    }
  }
}

TEST(AlgoGptq, DeadColumnsAndActOrder) {
  const int64_t N = 16, K = 128, T = 512;
  auto X = randn(T * K, 9);
  for (int64_t t = 0; t < T; ++t) {
    X[size_t(t * K + 5)] = 0.0f;                          // dead input channel
    X[size_t(t * K + 77)] *= 10.0f;                       // large channel: first in act-order
  }
  Hessian h(K);
  h.add(X.data(), T);
  auto W = randn(N * K, 10, 0.1f);
  GptqOptions o;
  o.group_size = 32;
  o.act_order = true;
  GptqResult g = gptq_quantize(W.data(), N, K, h.matrix(), o);
  EXPECT_EQ(g.dead_columns, 1);
  ASSERT_EQ(int64_t(g.w.g_idx.size()), K);
  // Column 77 has the largest diag(H): first in the permutation, so group 0.
  EXPECT_EQ(g.w.g_idx[77], 0);
  // Every group holds exactly group_size columns.
  std::vector<int> count(4, 0);
  for (int32_t gi : g.w.g_idx) {
    ASSERT_GE(gi, 0);
    ASSERT_LT(gi, 4);
    ++count[size_t(gi)];
  }
  for (int c : count) EXPECT_EQ(c, 32);
  // The dead column dequantizes to exactly 0 (W[:, dead] = 0 and the symmetric zero point).
  auto D = dequantize_affine_f32(g.w);
  for (int64_t n = 0; n < N; ++n) EXPECT_EQ(D[size_t(n * K + 5)], 0.0f);
  // Static groups with act-order keep the trivial g_idx.
  o.static_groups = true;
  GptqResult s = gptq_quantize(W.data(), N, K, h.matrix(), o);
  EXPECT_TRUE(s.w.g_idx.empty());
}

TEST(AlgoGptq, DampingRetry) {
  // A rank-1 Hessian with damp 1e-8: 1 + 1e-8 rounds to 1 in fp32, the matrix stays
  // singular and the Cholesky fails; the retry (1e-7) succeeds.
  const int64_t K = 64, N = 4;
  std::vector<double> H(static_cast<size_t>(K * K), 1.0);  // rank 1 (all ones)
  auto W = randn(N * K, 11, 0.1f);
  GptqOptions o;
  o.group_size = -1;
  o.damp = 1e-8;
  GptqResult g = gptq_quantize(W.data(), N, K, H, o);
  EXPECT_GE(g.damp_retries, 1);
  EXPECT_GT(g.damp_used, 1e-8);
  o.max_damp_retries = 0;
  EXPECT_THROW(gptq_quantize(W.data(), N, K, H, o), Error);
}

}  // namespace
}  // namespace lq::quant
