// kernels/cpu/elementwise-inl.h: per-target (Highway) bodies of the element-wise ops
// declared in elementwise.h. Included once per SIMD target by elementwise.cc through
// hwy/foreach_target.h; never include it elsewhere.
//
// Numerics (the scalar *_ref functions in elementwise.cc are the definitions):
//  - rmsnorm: sum of squares in fp32 with N-lane partial sums (pairwise-like, error
//    ~ sqrt(dim) ulps), rsqrt as 1/sqrt in fp32, out = (x * inv) * w. The reference
//    uses double, so results agree to ~1e-6 relative.
//  - rope_apply: x1' = fma(x1, c, -(x2*s)), x2' = fma(x2, c, x1*s), the scalar
//    reference's expressions (std::fma): bit-identical on FMA targets (AVX2,
//    AVX-512); SSE targets round x1*c separately (<= 1 ulp of the larger product).
//    (Plain a*b - c*d is no better: GCC contracts it into an FMA where it can.)
//  - silu_mul: g * sigmoid(g) * up with the overflow-free form of sigmoid and
//    Highway's Exp (~1 ulp); the reference uses double.
//  - add_inplace, round_to_bf16: exact (bit-identical to scalar).

#if defined(LQ_KERNELS_CPU_ELEMENTWISE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LQ_KERNELS_CPU_ELEMENTWISE_INL_H_
#undef LQ_KERNELS_CPU_ELEMENTWISE_INL_H_
#else
#define LQ_KERNELS_CPU_ELEMENTWISE_INL_H_
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lq::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// bf16 bits -> float for one vector of lanes.
template <class DF>
HWY_INLINE hn::Vec<DF> EwLoadBf16(DF df, const uint16_t* HWY_RESTRICT p) {
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint16_t, DF> d16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, p))));
}

// One row of rmsnorm. x and out may alias: the first pass only reads, the second
// reads x[i..i+N) before writing out[i..i+N) at the same indices.
HWY_INLINE void RmsnormRow(const float* x, const uint16_t* HWY_RESTRICT w, float eps, size_t dim,
                           float* out) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto s0 = hn::Zero(df), s1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * N <= dim; i += 2 * N) {
    const auto a = hn::LoadU(df, x + i);
    const auto b = hn::LoadU(df, x + i + N);
    s0 = hn::MulAdd(a, a, s0);
    s1 = hn::MulAdd(b, b, s1);
  }
  for (; i + N <= dim; i += N) {
    const auto a = hn::LoadU(df, x + i);
    s0 = hn::MulAdd(a, a, s0);
  }
  float ss = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
  for (; i < dim; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  const auto vinv = hn::Set(df, inv);
  i = 0;
  for (; i + N <= dim; i += N) {
    const auto v = hn::Mul(hn::LoadU(df, x + i), vinv);
    hn::StoreU(hn::Mul(v, EwLoadBf16(df, w + i)), df, out + i);
  }
  for (; i < dim; ++i) out[i] = (x[i] * inv) * bf16_to_f32(w[i]);
}

HWY_INLINE void RopeRow(float* HWY_RESTRICT x, size_t half, const float* HWY_RESTRICT c,
                        const float* HWY_RESTRICT s) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  float* x1 = x;
  float* x2 = x + half;
  size_t i = 0;
  for (; i + N <= half; i += N) {
    const auto a = hn::LoadU(df, x1 + i), b = hn::LoadU(df, x2 + i);
    const auto vc = hn::LoadU(df, c + i), vs = hn::LoadU(df, s + i);
    // x1*c - x2*s as fma(x1, c, -(x2*s)) and x2*c + x1*s as fma(x2, c, x1*s): the
    // same two roundings as the scalar reference (which calls std::fma) where the
    // target has FMA.
    hn::StoreU(hn::MulSub(a, vc, hn::Mul(b, vs)), df, x1 + i);
    hn::StoreU(hn::MulAdd(b, vc, hn::Mul(a, vs)), df, x2 + i);
  }
  for (; i < half; ++i) {
    const float a = x1[i], b = x2[i];
    x1[i] = std::fma(a, c[i], -(b * s[i]));
    x2[i] = std::fma(b, c[i], a * s[i]);
  }
}

// Every element, tail included, goes through the same vector formula, so an
// element's result does not depend on the length of the call or its position
// (the fused SwiGLU GEMM epilogue calls this on 32 x 32 blocks and must match).
HWY_INLINE void SiluMulSpan(const float* gate, const float* up, size_t n, float* out) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f);
  auto silu_mul_vec = [&](hn::Vec<decltype(df)> g, hn::Vec<decltype(df)> u) {
    // sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) for g < 0, e = exp(-|g|):
    // exp never overflows (Highway's Exp has no overflow handling) and tiny
    // results keep their precision.
    const auto e = hn::Exp(df, hn::Neg(hn::Abs(g)));
    const auto num = hn::IfThenElse(hn::Lt(g, hn::Zero(df)), e, one);
    return hn::Mul(hn::Div(hn::Mul(g, num), hn::Add(one, e)), u);
  };
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(silu_mul_vec(hn::LoadU(df, gate + i), hn::LoadU(df, up + i)), df, out + i);
  if (i < n) {
    HWY_ALIGN float g[hn::MaxLanes(df)] = {}, u[hn::MaxLanes(df)] = {}, o[hn::MaxLanes(df)];
    for (size_t j = i; j < n; ++j) {
      g[j - i] = gate[j];
      u[j - i] = up[j];
    }
    hn::Store(silu_mul_vec(hn::Load(df, g), hn::Load(df, u)), df, o);
    for (size_t j = i; j < n; ++j) out[j] = o[j - i];
  }
}

HWY_INLINE void AddSpan(float* y, const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(df, y + i), hn::LoadU(df, x + i)), df, y + i);
  for (; i < n; ++i) y[i] += x[i];
}

// Round-to-nearest-even to bf16, NaN -> quiet NaN (same as lq::f32_to_bf16).
HWY_INLINE void RoundBf16Span(float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const size_t N = hn::Lanes(df);
  const auto abs_mask = hn::Set(du, 0x7fffffffu);
  const auto inf_bits = hn::Set(du, 0x7f800000u);
  const auto quiet = hn::Set(du, 0x00400000u);
  const auto bias = hn::Set(du, 0x7fffu);
  const auto one = hn::Set(du, 1u);
  const auto hi = hn::Set(du, 0xffff0000u);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto u = hn::BitCast(du, hn::LoadU(df, x + i));
    const auto is_nan = hn::Gt(hn::And(u, abs_mask), inf_bits);
    const auto lsb = hn::And(hn::ShiftRight<16>(u), one);
    const auto rounded = hn::Add(u, hn::Add(bias, lsb));
    const auto r = hn::And(hn::IfThenElse(is_nan, hn::Or(u, quiet), rounded), hi);
    hn::StoreU(hn::BitCast(df, r), df, x + i);
  }
  for (; i < n; ++i) x[i] = round_bf16(x[i]);
}

}  // namespace lq::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard
