#include "quant/algo_gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/threads.h"
#include "quant/algo_rtn.h"

namespace lq::quant {

// ---------------------------------------------------------------------------
// Hessian

Hessian::Hessian(int64_t dim) : dim_(dim), sum_(static_cast<size_t>(dim * dim), 0.0) {
  LQ_CHECK(dim > 0, "Hessian dimension must be positive, got {}", dim);
}

void Hessian::add(const float* X, int64_t rows) {
  if (rows <= 0) return;
  const int64_t K = dim_;
  // fp32 products over chunks of at most kChunk rows, accumulated into double (few, large
  // sgemm calls: every call is an OpenMP region, and barriers dominate small ones). Only the
  // lower triangle is formed (column tile c0.. against rows c0..K), one column tile at a
  // time so the scratch stays small; matrix() mirrors it.
  constexpr int64_t kChunk = 2048, kTile = 1024;
  tmp_.resize(size_t(K * std::min(K, kTile)));
  for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
    const int64_t r = std::min(kChunk, rows - r0);
    const float* Xc = X + r0 * K;
    for (int64_t c0 = 0; c0 < K; c0 += kTile) {
      const int64_t cb = std::min(kTile, K - c0), R = K - c0;
      // tmp[R, cb] = Xc[:, c0:]^T [R, r] * Xc[:, c0:c0+cb] [r, cb]
      sgemm_atb(R, cb, r, 1.0f, Xc + c0, K, Xc + c0, K, 0.0f, tmp_.data(), cb);
      parallel_for(R, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          double* dst = sum_.data() + (c0 + i) * K + c0;
          const float* src = tmp_.data() + i * cb;
          const int64_t n = std::min(cb, i + 1);  // lower triangle only
          for (int64_t j = 0; j < n; ++j) dst[j] += double(src[j]);
        }
      });
    }
  }
  rows_ += rows;
}

std::vector<double> Hessian::matrix() const {
  std::vector<double> H(sum_.size());
  const double f = rows_ > 0 ? 2.0 / double(rows_) : 0.0;
  const int64_t K = dim_;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j <= i; ++j) H[size_t(i * K + j)] = H[size_t(j * K + i)] = sum_[size_t(i * K + j)] * f;
  return H;
}

std::vector<double> Hessian::take_matrix() {
  const double f = rows_ > 0 ? 2.0 / double(rows_) : 0.0;
  const int64_t K = dim_;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < i; ++j) {
      sum_[size_t(i * K + j)] *= f;
      sum_[size_t(j * K + i)] = sum_[size_t(i * K + j)];
    }
    sum_[size_t(i * K + i)] *= f;
  }
  std::vector<double> H = std::move(sum_);
  sum_.clear();
  tmp_.clear();
  tmp_.shrink_to_fit();
  rows_ = 0;
  return H;
}

// ---------------------------------------------------------------------------
// Factorisation

namespace {

constexpr int64_t kNb = 256;  // diagonal blocks (factorised/inverted in double)

// In-place Cholesky of a small dense lower block (double). False if not PD.
bool chol_small(std::vector<double>& D, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    double d = D[size_t(c * n + c)];
    for (int64_t k = 0; k < c; ++k) d -= D[size_t(c * n + k)] * D[size_t(c * n + k)];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    const double s = std::sqrt(d);
    D[size_t(c * n + c)] = s;
    for (int64_t r = c + 1; r < n; ++r) {
      double v = D[size_t(r * n + c)];
      for (int64_t k = 0; k < c; ++k) v -= D[size_t(r * n + k)] * D[size_t(c * n + k)];
      D[size_t(r * n + c)] = v / s;
    }
    for (int64_t k = c + 1; k < n; ++k) D[size_t(c * n + k)] = 0.0;
  }
  return true;
}

// Inverse of a small lower-triangular block (double).
std::vector<double> inv_lower_small(const std::vector<double>& L, int64_t n) {
  std::vector<double> X(static_cast<size_t>(n * n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    X[size_t(j * n + j)] = 1.0 / L[size_t(j * n + j)];
    for (int64_t i = j + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = j; k < i; ++k) s += L[size_t(i * n + k)] * X[size_t(k * n + j)];
      X[size_t(i * n + j)] = -s / L[size_t(i * n + i)];
    }
  }
  return X;
}

// Blocked right-looking Cholesky A = L L^T in place (lower triangle of A, fp32 storage).
bool cholesky_lower_blocked(std::vector<float>& A, int64_t K) {
  std::vector<float> tmp;
  for (int64_t j0 = 0; j0 < K; j0 += kNb) {
    const int64_t jb = std::min(kNb, K - j0);
    std::vector<double> D(static_cast<size_t>(jb * jb));
    for (int64_t r = 0; r < jb; ++r)
      for (int64_t c = 0; c < jb; ++c) D[size_t(r * jb + c)] = c <= r ? double(A[size_t((j0 + r) * K + j0 + c)]) : 0.0;
    if (!chol_small(D, jb)) return false;
    for (int64_t r = 0; r < jb; ++r)
      for (int64_t c = 0; c < jb; ++c) A[size_t((j0 + r) * K + j0 + c)] = float(D[size_t(r * jb + c)]);
    const int64_t t0 = j0 + jb, R = K - t0;
    if (R <= 0) break;
    // Panel: A[t0:, j0:j0+jb] = A[t0:, j0:j0+jb] * L_jj^-T
    const std::vector<double> Dinv = inv_lower_small(D, jb);
    std::vector<float> DinvF(Dinv.begin(), Dinv.end());
    tmp.resize(size_t(R * jb));
    sgemm_abt(R, jb, jb, 1.0f, A.data() + t0 * K + j0, K, DinvF.data(), jb, 0.0f, tmp.data(), jb);
    for (int64_t r = 0; r < R; ++r)
      std::copy(tmp.begin() + r * jb, tmp.begin() + (r + 1) * jb, A.begin() + (t0 + r) * K + j0);
    // Trailing update A[t0:, t0:] -= P P^T in one call (the upper triangle it also updates
    // is never read and is zeroed at the end).
    sgemm_abt(R, R, jb, -1.0f, A.data() + t0 * K + j0, K, A.data() + t0 * K + j0, K, 1.0f, A.data() + t0 * K + t0, K);
  }
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i + 1; j < K; ++j) A[size_t(i * K + j)] = 0.0f;
  for (float v : A)
    if (!std::isfinite(v)) return false;
  return true;
}

// X = L^-1 for lower-triangular L (blocked; diagonal blocks inverted in double).
std::vector<float> inverse_lower_blocked(const std::vector<float>& L, int64_t K) {
  std::vector<float> X(static_cast<size_t>(K * K), 0.0f);
  for (int64_t b0 = 0; b0 < K; b0 += kNb) {
    const int64_t bb = std::min(kNb, K - b0);
    std::vector<double> D(static_cast<size_t>(bb * bb));
    for (int64_t r = 0; r < bb; ++r)
      for (int64_t c = 0; c < bb; ++c) D[size_t(r * bb + c)] = c <= r ? double(L[size_t((b0 + r) * K + b0 + c)]) : 0.0;
    const std::vector<double> Di = inv_lower_small(D, bb);
    for (int64_t r = 0; r < bb; ++r)
      for (int64_t c = 0; c < bb; ++c) X[size_t((b0 + r) * K + b0 + c)] = float(Di[size_t(r * bb + c)]);
  }
  // Block row by block row: X[i, :i] = -X_ii (L[i, :i] X[:i, :i]), two sgemm calls per row.
  std::vector<float> S;
  for (int64_t i0 = kNb; i0 < K; i0 += kNb) {
    const int64_t ib = std::min(kNb, K - i0);
    S.assign(size_t(ib * i0), 0.0f);
    sgemm_ab(ib, i0, i0, 1.0f, L.data() + i0 * K, K, X.data(), K, 0.0f, S.data(), i0);
    sgemm_ab(ib, i0, ib, -1.0f, X.data() + i0 * K + i0, K, S.data(), i0, 0.0f, X.data() + i0 * K, K);
  }
  return X;
}

}  // namespace

bool upper_cholesky_of_inverse(const std::vector<float>& A, int64_t n, std::vector<float>& U) {
  // M = J A J (reversed order); M = L L^T; U = J L^-1 J is upper with U^T U = A^-1.
  // M[i][j] = A[n-1-j][n-1-i] (the lower triangle of A), copied in 64 x 64 tiles.
  std::vector<float> M(static_cast<size_t>(n * n), 0.0f);
  constexpr int64_t kT = 64;
  parallel_for((n + kT - 1) / kT, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi)
      for (int64_t bj = 0; bj <= bi; ++bj)
        for (int64_t j = bj * kT; j < std::min(n, (bj + 1) * kT); ++j)
          for (int64_t i = std::max(j, bi * kT); i < std::min(n, (bi + 1) * kT); ++i)
            M[size_t(i * n + j)] = A[size_t((n - 1 - j) * n + (n - 1 - i))];
  });
  if (!cholesky_lower_blocked(M, n)) return false;
  const std::vector<float> X = inverse_lower_blocked(M, n);
  U.assign(size_t(n * n), 0.0f);
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* src = X.data() + (n - 1 - i) * n + (n - 1);
      float* dst = U.data() + i * n;
      for (int64_t j = i; j < n; ++j) dst[j] = src[-j];
    }
  });
  for (int64_t i = 0; i < n; ++i)
    if (!(U[size_t(i * n + i)] > 0.0f) || !std::isfinite(U[size_t(i * n + i)])) return false;
  return true;
}

// ---------------------------------------------------------------------------
// GPTQ

GptqResult gptq_quantize(const float* W, int64_t out, int64_t in, std::vector<double> H,
                         const GptqOptions& o) {
  const int64_t N = out, K = in;
  LQ_CHECK(o.bits >= 2 && o.bits <= 8, "GPTQ supports 2..8 bits, got {}", o.bits);
  LQ_CHECK(N > 0 && K > 0, "GPTQ: empty weight [{}, {}]", N, K);
  LQ_CHECK(int64_t(H.size()) == K * K, "GPTQ: Hessian has {} entries, expected {} x {}", H.size(), K, K);
  LQ_CHECK(o.damp > 0, "GPTQ damp must be positive, got {}", o.damp);
  LQ_CHECK(o.block_size > 0, "GPTQ block size must be positive");
  const bool per_channel = o.group_size == -1;
  const int64_t gs = effective_group_size(o.group_size, K);
  const bool static_groups = o.static_groups && !per_channel;
  const MinMaxQuantizer mq{o.bits, o.sym, o.storage};

  GptqResult res;
  std::vector<float> Wf(W, W + N * K);

  // Per-channel parameters come from the weights before dead columns are zeroed.
  std::vector<GroupParams> pc;
  if (per_channel) {
    pc.resize(size_t(N));
    for (int64_t n = 0; n < N; ++n) pc[size_t(n)] = mq.find_params(Wf.data() + n * K, K);
  }
  for (int64_t i = 0; i < K; ++i) {
    if (H[size_t(i * K + i)] == 0.0) {
      H[size_t(i * K + i)] = 1.0;
      for (int64_t n = 0; n < N; ++n) Wf[size_t(n * K + i)] = 0.0f;
      ++res.dead_columns;
    }
  }
  const int64_t G = (K + gs - 1) / gs;
  std::vector<GroupParams> sp;  // static: [G][N]
  if (static_groups) {
    sp.resize(size_t(G * N));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n)
        sp[size_t(g * N + n)] = mq.find_params(Wf.data() + n * K + g * gs, std::min(gs, K - g * gs));
  }

  std::vector<int32_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return H[size_t(a) * K + a] > H[size_t(b) * K + b]; });
    std::vector<float> Wp(Wf.size());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) Wp[size_t(n * K + k)] = Wf[size_t(n * K + perm[size_t(k)])];
    Wf.swap(Wp);
  }
  // Permuted, damped Hessian in fp32 (lower triangle is all the factorisation reads).
  std::vector<float> Hp(static_cast<size_t>(K * K));
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) mean_diag += H[size_t(i * K + i)];
  mean_diag /= double(K);
  std::vector<float> U;
  double percdamp = o.damp;
  for (int attempt = 0;; ++attempt) {
    const double damp = percdamp * mean_diag;
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double v = H[size_t(perm[size_t(i)]) * K + perm[size_t(j)]];
        if (i == j) v += damp;
        Hp[size_t(i * K + j)] = float(v);
      }
    if (upper_cholesky_of_inverse(Hp, K, U)) break;
    if (attempt >= o.max_damp_retries)
      fail("GPTQ: the Hessian of a [{}, {}] layer is not positive definite even with damp {} (after {} retries)",
           N, K, percdamp, attempt);
    percdamp *= 10.0;
    ++res.damp_retries;
  }
  res.damp_used = percdamp;
  Hp.clear();
  Hp.shrink_to_fit();

  // Quantize column blocks with error feedback.
  std::vector<uint8_t> Qp(static_cast<size_t>(N * K));                      // codes in permuted column order
  std::vector<GroupParams> cur(static_cast<size_t>(N));                     // current group's params per row
  std::vector<GroupParams> gp(per_channel || static_groups ? 0 : size_t(G * N));  // [G][N]
  const int64_t B = o.block_size;
  std::vector<float> Err(static_cast<size_t>(N * B));
  std::vector<double> loss_rows(static_cast<size_t>(N), 0.0);
  for (int64_t i1 = 0; i1 < K; i1 += B) {
    const int64_t i2 = std::min(i1 + B, K), count = i2 - i1;
    parallel_for(N, [&](int64_t n0, int64_t n1) {
      std::vector<float> w1(static_cast<size_t>(count));
      for (int64_t n = n0; n < n1; ++n) {
        const float* wrow = Wf.data() + n * K;
        std::copy(wrow + i1, wrow + i2, w1.begin());
        float* err = Err.data() + n * count;
        double loss = 0;
        for (int64_t i = 0; i < count; ++i) {
          const int64_t c = i1 + i;
          GroupParams p;
          if (per_channel) {
            p = pc[size_t(n)];
          } else if (static_groups) {
            p = sp[size_t((perm[size_t(c)] / gs) * N + n)];
          } else {
            if (c % gs == 0) {
              // Parameters from the running matrix at the group's first column (reference: W, not W1).
              cur[size_t(n)] = mq.find_params(wrow + c, std::min(gs, K - c));
              gp[size_t((c / gs) * N + n)] = cur[size_t(n)];
            }
            p = cur[size_t(n)];
          }
          const float w = w1[size_t(i)];
          const uint8_t q = mq.quantize(w, p);
          Qp[size_t(n * K + c)] = q;
          const float dq = MinMaxQuantizer::dequant(q, p);
          const float d = U[size_t(c * K + c)];
          const float e = (w - dq) / d;
          loss += double(w - dq) * double(w - dq) / (double(d) * double(d)) / 2.0;
          const float* urow = U.data() + c * K + i1;
          for (int64_t j = i + 1; j < count; ++j) w1[size_t(j)] -= e * urow[j];
          err[i] = e;
        }
        loss_rows[size_t(n)] += loss;
      }
    });
    if (i2 < K) sgemm_ab(N, K - i2, count, -1.0f, Err.data(), count, U.data() + i1 * K + i2, K, 1.0f, Wf.data() + i2, K);
  }
  for (double l : loss_rows) res.loss += l;

  // Assemble the result in the original column order.
  AffineGroups& r = res.w;
  r.bits = o.bits;
  r.out = N;
  r.in = K;
  r.group_size = gs;
  r.sym = o.sym;
  r.q.resize(size_t(N * K));
  std::vector<int32_t> inv(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) inv[size_t(perm[size_t(k)])] = int32_t(k);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) r.q[size_t(n * K + k)] = Qp[size_t(n * K + inv[size_t(k)])];
  r.scales.resize(size_t(G * N));
  r.zeros.resize(size_t(G * N));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      const GroupParams& p = per_channel ? pc[size_t(n)] : static_groups ? sp[size_t(g * N + n)] : gp[size_t(g * N + n)];
      r.scales[size_t(g * N + n)] = p.scale;
      r.zeros[size_t(g * N + n)] = p.zero;
    }
  if (o.act_order && !static_groups && !per_channel) {
    r.g_idx.resize(size_t(K));
    for (int64_t k = 0; k < K; ++k) r.g_idx[size_t(k)] = int32_t(inv[size_t(k)] / gs);
  }
  return res;
}

}  // namespace lq::quant
