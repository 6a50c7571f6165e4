// kernels/cpu/elementwise.cc: dispatch + threading of the element-wise ops and their
// scalar references.
//
// The SIMD bodies live in elementwise-inl.h and are compiled once per Highway target
// (SSSE3/SSE4/AVX2/AVX-512/emulated); HWY_DYNAMIC_DISPATCH picks the best one the
// CPU supports at run time. Large calls are split over threads with lq::parallel_for
// (static partition; every output element depends only on its own row/index, so the
// result does not depend on the thread count).
//
// References: rmsnorm_ref and silu_mul_ref compute in double and round once;
// rope_apply_ref uses the same fp32 expressions as the SIMD path (bit-identical):
// x1' = fma(x1, c, -(x2*s)), x2' = fma(x2, c, x1*s).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/elementwise.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "kernels/cpu/elementwise-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lq::cpu::HWY_NAMESPACE {

void RmsnormRows(const float* x, const uint16_t* w, float eps, int64_t r0, int64_t r1, int64_t dim,
                 float* out) {
  for (int64_t r = r0; r < r1; ++r) RmsnormRow(x + r * dim, w, eps, size_t(dim), out + r * dim);
}

void RopeRows(float* x, int64_t row0, int64_t row1, int64_t H, int64_t D, const float* cos_tab,
              const float* sin_tab) {
  const int64_t half = D / 2;
  for (int64_t row = row0; row < row1; ++row) {  // row = t * H + h
    const int64_t t = row / H;
    RopeRow(x + row * D, size_t(half), cos_tab + t * half, sin_tab + t * half);
  }
}

void SiluMulRange(const float* gate, const float* up, int64_t b, int64_t e, float* out) {
  SiluMulSpan(gate + b, up + b, size_t(e - b), out + b);
}

void AddRange(float* y, const float* x, int64_t b, int64_t e) { AddSpan(y + b, x + b, size_t(e - b)); }

void RoundBf16Range(float* x, int64_t b, int64_t e) { RoundBf16Span(x + b, size_t(e - b)); }

}  // namespace lq::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/elementwise.h"

namespace lq::cpu {

HWY_EXPORT(RmsnormRows);
HWY_EXPORT(RopeRows);
HWY_EXPORT(SiluMulRange);
HWY_EXPORT(AddRange);
HWY_EXPORT(RoundBf16Range);

namespace {
// Below this many elements a call stays on the calling thread (an OpenMP fork costs
// a few microseconds, more than the work).
constexpr int64_t kParallelMinElems = int64_t{1} << 16;
// Grain for flat element ranges: a multiple of every SIMD width (and a cache line).
constexpr int64_t kGrain = 1024;

bool go_parallel(int64_t elems) { return elems >= kParallelMinElems && num_threads() > 1; }

void check_rmsnorm(const char* fn, const float* x, const uint16_t* w, int64_t rows, int64_t dim,
                   float* out) {
  LQ_CHECK(rows >= 0 && dim > 0, "{}: bad shape rows={} dim={}", fn, rows, dim);
  LQ_CHECK(rows == 0 || (x && w && out), "{}: null pointer (x, w or out)", fn);
}
void check_rope(const char* fn, const float* x, int64_t T, int64_t H, int64_t D, const float* c,
                const float* s) {
  LQ_CHECK(T >= 0 && H > 0 && D > 0 && D % 2 == 0, "{}: bad shape T={} H={} D={} (D must be even)",
           fn, T, H, D);
  LQ_CHECK(T == 0 || (x && c && s), "{}: null pointer (x, cos_tab or sin_tab)", fn);
}
}  // namespace

void rmsnorm(const float* x, const uint16_t* w, float eps, int64_t rows, int64_t dim, float* out) {
  check_rmsnorm("rmsnorm", x, w, rows, dim, out);
  const auto fn = HWY_DYNAMIC_DISPATCH(RmsnormRows);
  if (go_parallel(rows * dim) && rows > 1) {
    parallel_for(rows, [&](int64_t b, int64_t e) { fn(x, w, eps, b, e, dim, out); });
  } else {
    fn(x, w, eps, 0, rows, dim, out);
  }
}

void rmsnorm_ref(const float* x, const uint16_t* w, float eps, int64_t rows, int64_t dim, float* out) {
  check_rmsnorm("rmsnorm_ref", x, w, rows, dim, out);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* orow = out + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * double(xr[i]);
    const double inv = 1.0 / std::sqrt(ss / double(dim) + double(eps));
    for (int64_t i = 0; i < dim; ++i) orow[i] = float(double(xr[i]) * inv * double(bf16_to_f32(w[i])));
  }
}

void rope_apply(float* x, int64_t T, int64_t H, int64_t D, const float* cos_tab, const float* sin_tab) {
  check_rope("rope_apply", x, T, H, D, cos_tab, sin_tab);
  const auto fn = HWY_DYNAMIC_DISPATCH(RopeRows);
  if (go_parallel(T * H * D) && T * H > 1) {
    parallel_for(T * H, [&](int64_t b, int64_t e) { fn(x, b, e, H, D, cos_tab, sin_tab); });
  } else {
    fn(x, 0, T * H, H, D, cos_tab, sin_tab);
  }
}

void rope_apply_ref(float* x, int64_t T, int64_t H, int64_t D, const float* cos_tab,
                    const float* sin_tab) {
  check_rope("rope_apply_ref", x, T, H, D, cos_tab, sin_tab);
  const int64_t half = D / 2;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      float* row = x + (t * H + h) * D;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = row[i], x2 = row[i + half];
        const float c = cos_tab[t * half + i], s = sin_tab[t * half + i];
        row[i] = std::fma(x1, c, -(x2 * s));
        row[i + half] = std::fma(x2, c, x1 * s);
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  LQ_CHECK(n >= 0, "silu_mul: negative length {}", n);
  if (n == 0) return;
  LQ_CHECK(gate && up && out, "silu_mul: null pointer (gate, up or out)");
  const auto fn = HWY_DYNAMIC_DISPATCH(SiluMulRange);
  if (go_parallel(n)) {
    parallel_for(n, [&](int64_t b, int64_t e) { fn(gate, up, b, e, out); }, kGrain);
  } else {
    fn(gate, up, 0, n, out);
  }
}

void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out) {
  LQ_CHECK(n >= 0, "silu_mul_ref: negative length {}", n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(g / (1.0 + std::exp(-g)) * double(up[i]));
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  LQ_CHECK(n >= 0, "add_inplace: negative length {}", n);
  if (n == 0) return;
  LQ_CHECK(y && x, "add_inplace: null pointer (y or x)");
  const auto fn = HWY_DYNAMIC_DISPATCH(AddRange);
  if (go_parallel(n)) {
    parallel_for(n, [&](int64_t b, int64_t e) { fn(y, x, b, e); }, kGrain);
  } else {
    fn(y, x, 0, n);
  }
}

void round_to_bf16(float* x, int64_t n) {
  LQ_CHECK(n >= 0, "round_to_bf16: negative length {}", n);
  if (n == 0) return;
  LQ_CHECK(x, "round_to_bf16: null pointer");
  const auto fn = HWY_DYNAMIC_DISPATCH(RoundBf16Range);
  if (go_parallel(n)) {
    parallel_for(n, [&](int64_t b, int64_t e) { fn(x, b, e); }, kGrain);
  } else {
    fn(x, 0, n);
  }
}

}  // namespace lq::cpu
#endif  // HWY_ONCE
