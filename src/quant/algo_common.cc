#include "quant/algo_common.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"

namespace lq::quant {

namespace {

void sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  LQ_CHECK(st == dnnl_success, "oneDNN sgemm failed (status {}) for M={} N={} K={}", int(st), M, N, K);
}

}  // namespace

void sgemm_abt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm('N', 'T', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_ab(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm('N', 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_atb(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm('T', 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_abt_ref(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(A[i * lda + k]) * double(B[j * ldb + k]);
      const double prev = beta == 0.0f ? 0.0 : double(beta) * double(C[i * ldc + j]);
      C[i * ldc + j] = float(double(alpha) * s + prev);
    }
}

float round_scale(float s, ScaleStorage st) {
  switch (st) {
    case ScaleStorage::F32: return s;
    case ScaleStorage::BF16: {
      const float r = round_bf16(s);
      return r > 0.0f ? r : s;
    }
    case ScaleStorage::F16: {
      const float r = f16_to_f32(f32_to_f16(s));
      if (std::isinf(r)) return 65504.0f;
      return r > 0.0f ? r : std::ldexp(1.0f, -24);
    }
  }
  return s;
}

GroupParams MinMaxQuantizer::find_params(const float* x, int64_t n) const {
  const float maxq_f = float(maxq());
  float xmin = 0.0f, xmax = 0.0f;  // the range always includes 0 (torch.minimum(x.min(), 0))
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  GroupParams p;
  p.scale = round_scale((xmax - xmin) / maxq_f, storage);
  if (sym) {
    p.zero = float((maxq() + 1) / 2);
  } else {
    p.zero = std::clamp(std::nearbyint(-xmin / p.scale), 0.0f, maxq_f);
  }
  return p;
}

uint8_t MinMaxQuantizer::quantize(float x, const GroupParams& p) const {
  const float q = std::nearbyint(x / p.scale) + p.zero;  // round half to even, as torch.round
  return uint8_t(std::clamp(q, 0.0f, float(maxq())));
}

std::vector<float> dequantize_affine_f32(const AffineGroups& w) {
  std::vector<float> out(static_cast<size_t>(w.out * w.in));
  const int64_t N = w.out, K = w.in;
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = w.group_of(k);
        const float s = w.scales[size_t(g * N + n)], z = w.zeros[size_t(g * N + n)];
        out[size_t(n * K + k)] = s * (float(w.q[size_t(n * K + k)]) - z);
      }
  });
  return out;
}

std::vector<float> dequantize_nf4_f32(const Nf4Blocks& w) {
  static constexpr float kCode[16] = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
      -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
      0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
      0.7229568362236023f, 1.0f};
  const int64_t n = w.out * w.in;
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t b = w.packed[size_t(i >> 1)];
    const uint8_t nib = (i & 1) ? uint8_t(b & 0x0f) : uint8_t(b >> 4);
    out[size_t(i)] = kCode[nib] * w.absmax[size_t(i / w.blocksize)];
  }
  return out;
}

std::vector<float> dequantize_fp8_f32(const Fp8Weight& w) {
  std::vector<float> out(static_cast<size_t>(w.out * w.in));
  for (int64_t n = 0; n < w.out; ++n) {
    const float s = w.scale[size_t(w.per_channel ? n : 0)];
    for (int64_t k = 0; k < w.in; ++k) out[size_t(n * w.in + k)] = fp8e4m3_to_f32(w.w[size_t(n * w.in + k)]) * s;
  }
  return out;
}

std::vector<float> matmul_xwt(const float* X, int64_t M, int64_t K, const float* W, int64_t N) {
  std::vector<float> Y(static_cast<size_t>(M * N));
  sgemm_abt(M, N, K, 1.0f, X, K, W, K, 0.0f, Y.data(), N);
  return Y;
}

}  // namespace lq::quant
