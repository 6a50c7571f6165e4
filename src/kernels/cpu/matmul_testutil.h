// kernels/cpu/matmul_testutil.h: shared by the GEMM/GEMV tests (header only).
//
// Tolerance used by every matmul test: |err| <= (K + 2) 2^-24 sum_k |x_k w_k| + 1e-30,
// the worst case of summing K exact fp32 products in any order, plus the
// reference's own final rounding (the reasoning is in matmul_test.cc).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/precision.h"
#include "core/threads.h"

namespace lq::cpu::testutil {

// Sets the OpenMP thread count for a scope.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved_); }

 private:
  int saved_;
};

struct Problem {
  int64_t M, K, N;
  std::vector<float> X;
  std::vector<uint16_t> W;
};

inline Problem make_problem(int64_t M, int64_t K, int64_t N, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> ux(-2.0f, 2.0f), uw(-0.5f, 0.5f);
  Problem p{M, K, N, std::vector<float>(size_t(M * K)), std::vector<uint16_t>(size_t(N * K))};
  for (auto& x : p.X) x = ux(rng);
  for (auto& w : p.W) w = f32_to_bf16(uw(rng));
  return p;
}

// S[m, n] = sum_k |x_k w_k| with x rounded as the precision prescribes.
inline std::vector<double> abs_products(const Problem& p, Precision prec) {
  std::vector<double> S(size_t(p.M * p.N));
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = 0; n < p.N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const float x = p.X[m * p.K + k];
        s += std::fabs(double(prec == Precision::BF16 ? round_bf16(x) : x) * double(bf16_to_f32(p.W[n * p.K + k])));
      }
      S[m * p.N + n] = s;
    }
  return S;
}

inline double sum_tolerance(int64_t K, double abs_sum) { return double(K + 2) * std::ldexp(1.0, -24) * abs_sum + 1e-30; }

}  // namespace lq::cpu::testutil
