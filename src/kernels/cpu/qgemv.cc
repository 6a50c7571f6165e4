// kernels/cpu/qgemv.cc: entry points of the quantized linear kernels (qgemv.h):
// runtime-dispatched fused GEMVs (qgemv-inl.h), the tile-dequantize + oneDNN
// prefill path, the tile dequantizers and the scalar references.
//
// Prefill path (qgemm_*): W is dequantized one N-tile (~2-4 MiB) at a time into a
// 64-byte aligned per-thread scratch buffer, in parallel over the tile's rows, and
// multiplied into the tile's columns of Y by onednn_matmul_nt (matmul.h). BF16: X rounded to bf16 once per call, W tile in bf16 (bf16 x bf16 ->
// f32, AMX when present). F32: X and the W tile in fp32 (the tile holds exactly
// the reference values), f32 matmul. FP8 W8A8: the E4M3 values of X and W are
// exact in bf16, so the bf16 matmul gives exact products in fp32 accumulation;
// Y is then scaled by xscale[m] * wscale[n]. With AMX (amx_gemm_enabled()) FP8
// prefill runs the AMX GEMM on the E4M3 codes directly (converted to bf16 while W
// panels are packed: no dequantized tile, no oneDNN call).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/qgemv.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/cpu/qgemv-inl.h"

#if HWY_ONCE

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/aligned.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/amx_gemm.h"
#include "kernels/cpu/matmul.h"

namespace lq::cpu {

HWY_EXPORT(QgemvAffine);
HWY_EXPORT(QgemvNf4);
HWY_EXPORT(QgemvFp8);
HWY_EXPORT(Fp8QuantDequant);
HWY_EXPORT(DequantAffineRowsF32);
HWY_EXPORT(DequantNf4RowsF32);

namespace {

void check(const char* fn, int64_t N, int64_t K, const float* X, int64_t M, float* Y) {
  LQ_CHECK(M >= 0 && N >= 0 && K >= 0, "{}: negative shape M={} N={} K={}", fn, M, N, K);
  if (M > 0 && N > 0) {
    LQ_CHECK(Y != nullptr, "{}: null output for M={} N={}", fn, M, N);
    LQ_CHECK(K == 0 || X != nullptr, "{}: null input for M={} K={}", fn, M, K);
  }
}

void check_affine(const QAffineView& w) {
  LQ_CHECK(w.bits == 4 || w.bits == 8, "qgemv_affine: bits must be 4 or 8, got {}", w.bits);
  LQ_CHECK(w.n_groups > 0 && w.group_start && w.scales && w.zeros && w.q,
           "qgemv_affine: incomplete weight view (N={} K={})", w.N, w.K);
  LQ_CHECK(w.group_start[0] == 0 && w.group_start[w.n_groups] == w.K,
           "qgemv_affine: group ranges cover [{}, {}), expected [0, {})", w.group_start[0],
           w.group_start[w.n_groups], w.K);
  const int64_t need = qaffine_row_bytes(w.bits, w.K);
  LQ_CHECK(w.row_bytes >= need, "qgemv_affine: row_bytes {} < {} needed for K={}", w.row_bytes, need, w.K);
}

// X in kernel column order (perm), rounded to bf16 if asked, rows padded to ldx.
int64_t affine_ldx(const QAffineView& w) { return w.bits == 4 ? (w.K + 127) / 128 * 128 : w.K; }

void prepare_affine_x(const QAffineView& w, const float* X, int64_t M, bool round_x, std::vector<float>& xp) {
  const int64_t ldx = affine_ldx(w), K = w.K;
  xp.assign(size_t(M * ldx), 0.0f);
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * K;
    float* d = xp.data() + m * ldx;
    for (int64_t k = 0; k < K; ++k) {
      const float v = x[w.perm ? w.perm[k] : k];
      d[k] = round_x ? round_bf16(v) : v;
    }
  }
}

// E4M3 activations: codes decoded exactly, one scale per row (SIMD, rows in parallel).
void prepare_fp8_x(const QFp8View& w, const float* X, int64_t M, const float* act_scale, Precision p,
                   std::vector<float>& xs, std::vector<float>& rs) {
  const int64_t K = w.K;
  xs.resize(size_t(M * K));
  rs.assign(size_t(M), 1.0f);
  for (int64_t m = 0; m < M; ++m)
    if (act_scale) {
      const float s = act_scale[m];
      LQ_CHECK(s > 0.0f && std::isfinite(s), "qgemv_fp8: activation scale {} of row {} is not finite positive", s, m);
      rs[size_t(m)] = s;
    }
  auto rows = [&](int64_t a, int64_t b) {
    for (int64_t m = a; m < b; ++m) {
      const float* x = X + m * K;
      float* d = xs.data() + m * K;
      if (act_scale) HWY_DYNAMIC_DISPATCH(Fp8QuantDequant)(x, K, rs[size_t(m)], d);
      else if (p == Precision::BF16) for (int64_t k = 0; k < K; ++k) d[k] = round_bf16(x[k]);
      else std::copy(x, x + K, d);
    }
  };
  if (M * K >= (int64_t(1) << 16)) parallel_for(M, rows);
  else rows(0, M);
}

int64_t tile_rows(int64_t K, int64_t N, size_t elem) {
  const int64_t bytes = int64_t(4) << 20;  // 2 and 16 MiB measured the same
  int64_t nt = bytes / (int64_t(elem) * std::max<int64_t>(K, 1));
  nt = std::max<int64_t>(64, nt / 64 * 64);
  return std::min(nt, N);
}

// oneDNN's operands 64-byte aligned (its AMX kernel is ~1.35x slower on 16-byte
// aligned rows; docs/kernels-matmul.md).
thread_local std::vector<float> tl_xf;
thread_local AlignedVector<uint16_t> tl_xb;
thread_local AlignedVector<float> tl_wf;
thread_local AlignedVector<uint16_t> tl_wb;

// Generic tiled GEMM: dequant(n0, n1, float*/uint16_t*) fills rows [n0, n1) of W
// (in the column order of xk, which is X's [M, K] fp32 data in that order).
template <typename DeqF, typename DeqB>
void tiled_gemm(const float* xk, int64_t M, int64_t K, int64_t N, float* Y, bool bf16, DeqF deq_f32, DeqB deq_bf16) {
  if (bf16) {
    AlignedVector<uint16_t>& xb = tl_xb;
    xb.resize(size_t(M * K));
    uint16_t* xbp = xb.data();
    parallel_for(M * K, [&](int64_t b, int64_t e) { f32_to_bf16_n(xk + b, e - b, xbp + b); }, 4096);
    const int64_t nt = tile_rows(K, N, 2);
    AlignedVector<uint16_t>& wt = tl_wb;
    wt.resize(size_t(nt * K));
    for (int64_t n0 = 0; n0 < N; n0 += nt) {
      const int64_t n = std::min(nt, N - n0);
      uint16_t* wp = wt.data();
      parallel_for(n, [&](int64_t a, int64_t b) { deq_bf16(n0 + a, n0 + b, wp + a * K); }, 4);
      onednn_matmul_nt(true, xbp, M, K, wp, n, Y + n0, N);
    }
  } else {
    const int64_t nt = tile_rows(K, N, 4);
    AlignedVector<float>& wt = tl_wf;
    wt.resize(size_t(nt * K));
    for (int64_t n0 = 0; n0 < N; n0 += nt) {
      const int64_t n = std::min(nt, N - n0);
      float* wp = wt.data();
      parallel_for(n, [&](int64_t a, int64_t b) { deq_f32(n0 + a, n0 + b, wp + a * K); }, 4);
      onednn_matmul_nt(false, xk, M, K, wp, n, Y + n0, N);
    }
  }
}

inline float nf4_value(const QNf4View& w, int64_t i) {
  const uint8_t b = w.packed[i >> 1];
  return w.code[(i & 1) ? (b & 15) : (b >> 4)] * w.absmax[i / w.blocksize];
}

}  // namespace

bool qgemv_nf4_supported(const QNf4View& w) {
  return w.blocksize > 0 && w.K % w.blocksize == 0 && w.blocksize % 32 == 0;
}

// ---- tile dequantizers ----------------------------------------------------------

void dequant_affine_rows_ref(const QAffineView& w, int64_t n0, int64_t n1, float* dst) {
  for (int64_t n = n0; n < n1; ++n) {
    float* d = dst + (n - n0) * w.K;
    for (int64_t g = 0; g < w.n_groups; ++g) {
      const float s = w.scales[n * w.n_groups + g];
      const float z = float(qaffine_zero(w, n, g));
      for (int64_t k = w.group_start[g]; k < w.group_start[g + 1]; ++k) d[k] = s * (float(qaffine_code(w, n, k)) - z);
    }
  }
}

void dequant_nf4_rows_ref(const QNf4View& w, int64_t n0, int64_t n1, float* dst) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = 0; k < w.K; ++k) dst[(n - n0) * w.K + k] = nf4_value(w, n * w.K + k);
}

void dequant_affine_rows(const QAffineView& w, int64_t n0, int64_t n1, float* dst) {
  HWY_DYNAMIC_DISPATCH(DequantAffineRowsF32)(w, n0, n1, dst);
}

void dequant_nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, float* dst) {
  HWY_DYNAMIC_DISPATCH(DequantNf4RowsF32)(w, n0, n1, dst);
}

namespace {
// The AVX-512 table dequantizers unless LQ_DEQUANT_TABLES=0 (for comparisons and
// to test the Highway path on AVX-512 machines).
bool dequant_simd_tables() {
  static const bool on = [] {
    const char* e = std::getenv("LQ_DEQUANT_TABLES");
    return e == nullptr || std::strcmp(e, "0") != 0;
  }();
  return on;
}

// bf16 rows: one fp32 row in an L1-resident per-thread buffer, then the SIMD RNE
// conversion (bit-exact with f32_to_bf16).
template <typename View, typename F32Rows>
void dequant_rows_bf16(const View& w, int64_t n0, int64_t n1, uint16_t* dst, F32Rows f32_rows) {
  thread_local AlignedVector<float> row;
  if (int64_t(row.size()) < w.K) row.resize(size_t(w.K));
  for (int64_t n = n0; n < n1; ++n) {
    f32_rows(w, n, n + 1, row.data());
    f32_to_bf16_n(row.data(), w.K, dst + (n - n0) * w.K);
  }
}
}  // namespace

void dequant_affine_rows(const QAffineView& w, int64_t n0, int64_t n1, uint16_t* dst) {
  if (dequant_simd_tables() && dequant_affine_rows_bf16_avx512(w, n0, n1, dst)) return;
  dequant_rows_bf16(w, n0, n1, dst, HWY_DYNAMIC_DISPATCH(DequantAffineRowsF32));
}

void dequant_nf4_rows(const QNf4View& w, int64_t n0, int64_t n1, uint16_t* dst) {
  if (dequant_simd_tables() && dequant_nf4_rows_bf16_avx512(w, n0, n1, dst)) return;
  dequant_rows_bf16(w, n0, n1, dst, HWY_DYNAMIC_DISPATCH(DequantNf4RowsF32));
}

// ---- decode -----------------------------------------------------------------------

void qgemv_affine_hwy(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p) {
  check("qgemv_affine", w.N, w.K, X, M, Y);
  if (M == 0 || w.N == 0) return;
  check_affine(w);
  std::vector<float>& xp = tl_xf;
  prepare_affine_x(w, X, M, p == Precision::BF16, xp);
  HWY_DYNAMIC_DISPATCH(QgemvAffine)(w, xp.data(), M, affine_ldx(w), Y);
}

void qgemv_affine(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p) {
  if (qgemv_affine_bf16dp_supported(w, p) && qgemv_bf16dp_available()) qgemv_affine_bf16dp(w, X, M, Y);
  else qgemv_affine_hwy(w, X, M, Y, p);
}

void fp8_quant_dequant_n(const float* x, int64_t n, float scale, float* out) {
  LQ_CHECK(n >= 0 && (n == 0 || (x && out)), "fp8_quant_dequant_n: bad arguments (n={})", n);
  HWY_DYNAMIC_DISPATCH(Fp8QuantDequant)(x, n, scale, out);
}

void qgemv_nf4(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p) {
  check("qgemv_nf4", w.N, w.K, X, M, Y);
  if (M == 0 || w.N == 0) return;
  LQ_CHECK(qgemv_nf4_supported(w), "qgemv_nf4: K={} blocksize={} not supported by the fused kernel", w.K,
           w.blocksize);
  HWY_DYNAMIC_DISPATCH(QgemvNf4)(w, X, M, Y, p == Precision::BF16);
}

void qgemv_fp8(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p) {
  check("qgemv_fp8", w.N, w.K, X, M, Y);
  if (M == 0 || w.N == 0) return;
  std::vector<float> xs, rs;
  prepare_fp8_x(w, X, M, act_scale, p, xs, rs);
  HWY_DYNAMIC_DISPATCH(QgemvFp8)(w, xs.data(), rs.data(), M, Y);
}

// ---- prefill ----------------------------------------------------------------------

void qgemm_affine(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p) {
  check("qgemm_affine", w.N, w.K, X, M, Y);
  if (M == 0 || w.N == 0) return;
  check_affine(w);
  const int64_t K = w.K;
  // X in kernel column order (no rounding here; the bf16 path rounds it once).
  std::vector<float> xk;
  const float* xkp = X;
  if (w.perm) {
    xk.resize(size_t(M * K));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) xk[size_t(m * K + k)] = X[m * K + w.perm[k]];
    xkp = xk.data();
  }
  tiled_gemm(
      xkp, M, K, w.N, Y, p == Precision::BF16,
      [&](int64_t a, int64_t b, float* d) { dequant_affine_rows(w, a, b, d); },
      [&](int64_t a, int64_t b, uint16_t* d) { dequant_affine_rows(w, a, b, d); });
}

void qgemm_nf4(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p) {
  check("qgemm_nf4", w.N, w.K, X, M, Y);
  if (M == 0 || w.N == 0) return;
  tiled_gemm(
      X, M, w.K, w.N, Y, p == Precision::BF16,
      [&](int64_t a, int64_t b, float* d) { dequant_nf4_rows(w, a, b, d); },
      [&](int64_t a, int64_t b, uint16_t* d) { dequant_nf4_rows(w, a, b, d); });
}

void qgemm_fp8(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p) {
  check("qgemm_fp8", w.N, w.K, X, M, Y);
  if (M == 0 || w.N == 0) return;
  const int64_t K = w.K, N = w.N;
  std::vector<float> xs, rs;
  prepare_fp8_x(w, X, M, act_scale, p, xs, rs);
  // E4M3 weights are exact in bf16; activations are exact in bf16 when they are E4M3
  // values (W8A8) or already rounded (BF16). Weight-only F32 needs the f32 matmul.
  const bool bf16 = act_scale != nullptr || p == Precision::BF16;
  if (bf16 && amx_gemm_enabled()) {
    gemm_fp8w_amx(xs.data(), M, K, w.w, N, Y);  // bf16(xs) = xs: exact products, fp32 sums
  } else {
    auto deq_f = [&](int64_t a, int64_t b, float* d) {
      for (int64_t i = a * K; i < b * K; ++i) d[i - a * K] = fp8e4m3_to_f32(w.w[i]);
    };
    auto deq_b = [&](int64_t a, int64_t b, uint16_t* d) { fp8e4m3_to_bf16_n(w.w + a * K, (b - a) * K, d); };
    tiled_gemm(xs.data(), M, K, N, Y, bf16, deq_f, deq_b);
  }
  parallel_for(M, [&](int64_t a, int64_t b) {
    for (int64_t m = a; m < b; ++m) {
      const float r = rs[size_t(m)];
      float* y = Y + m * N;
      if (w.per_channel)
        for (int64_t n = 0; n < N; ++n) y[n] = (y[n] * r) * w.scale[n];
      else
        for (int64_t n = 0; n < N; ++n) y[n] = (y[n] * r) * w.scale[0];
    }
  });
}

// ---- references -------------------------------------------------------------------

void qgemv_affine_ref(const QAffineView& w, const float* X, int64_t M, float* Y, Precision p) {
  check("qgemv_affine_ref", w.N, w.K, X, M, Y);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < w.N; ++n) {
      double acc = 0.0;
      for (int64_t g = 0; g < w.n_groups; ++g) {
        const float s = w.scales[n * w.n_groups + g];
        const float z = float(qaffine_zero(w, n, g));
        for (int64_t k = w.group_start[g]; k < w.group_start[g + 1]; ++k) {
          float x = X[m * w.K + (w.perm ? w.perm[k] : k)];
          if (p == Precision::BF16) x = round_bf16(x);
          acc += double(x) * double(s * (float(qaffine_code(w, n, k)) - z));
        }
      }
      Y[m * w.N + n] = float(acc);
    }
}

void qgemv_nf4_ref(const QNf4View& w, const float* X, int64_t M, float* Y, Precision p) {
  check("qgemv_nf4_ref", w.N, w.K, X, M, Y);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < w.N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < w.K; ++k) {
        float x = X[m * w.K + k];
        if (p == Precision::BF16) x = round_bf16(x);
        acc += double(x) * double(nf4_value(w, n * w.K + k));
      }
      Y[m * w.N + n] = float(acc);
    }
}

void qgemv_fp8_ref(const QFp8View& w, const float* X, int64_t M, const float* act_scale, float* Y, Precision p) {
  check("qgemv_fp8_ref", w.N, w.K, X, M, Y);
  for (int64_t m = 0; m < M; ++m) {
    std::vector<double> x(size_t(w.K));
    for (int64_t k = 0; k < w.K; ++k) {
      const float v = X[m * w.K + k];
      if (act_scale) x[size_t(k)] = double(fp8e4m3_to_f32(f32_to_fp8e4m3(v / act_scale[m]))) * double(act_scale[m]);
      else x[size_t(k)] = p == Precision::BF16 ? double(round_bf16(v)) : double(v);
    }
    for (int64_t n = 0; n < w.N; ++n) {
      double acc = 0.0;
      const double s = double(w.scale[w.per_channel ? n : 0]);
      for (int64_t k = 0; k < w.K; ++k) acc += x[size_t(k)] * (double(fp8e4m3_to_f32(w.w[n * w.K + k])) * s);
      Y[m * w.N + n] = float(acc);
    }
  }
}

}  // namespace lq::cpu

#endif  // HWY_ONCE
