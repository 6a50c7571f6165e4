// kernels/cpu/attention.cc: argument checks, run-time dispatch between the prefill
// kernels and the scalar references of causal GQA attention (see attention.h for the
// API, attention-inl.h for the Highway fp32 kernel, attention_bf16.cc for the
// AMX / AVX512-BF16 kernels, docs/kernels-attention.md for both).
//
// attention_causal_ref is the definition the fp32 kernel is tested against: for each
// query row it computes every logit scale * (q . k_j) in double (q rounded to bf16
// first under Precision::BF16; bf16 K/V widened exactly), a full softmax in double
// and sum_j p_j v_j in double, rounded once to float.
// attention_causal_bf16_ref is the same computation with the bf16 kernels' rounding
// of P (per key tile, relative to the running max) emulated exactly.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "kernels/cpu/attention-inl.h"

#if HWY_ONCE
#include <cmath>
#include <vector>

#include <cfloat>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/amx_gemm.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_bf16.h"

namespace lq::cpu {

HWY_EXPORT(AttentionCausal);

namespace {

// Positions are compared as floats inside the kernel: keep them exactly representable.
constexpr int64_t kMaxPositions = int64_t{1} << 24;

// Returns false when there is nothing to do (T == 0).
bool check_args(const char* fn, const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                const KVView& kv, int64_t pos0, float scale, const float* out) {
  LQ_CHECK(T >= 0, "{}: negative query count T={}", fn, T);
  LQ_CHECK(Hq > 0 && Hkv > 0, "{}: head counts must be positive (Hq={}, Hkv={})", fn, Hq, Hkv);
  LQ_CHECK(Hq % Hkv == 0, "{}: Hq ({}) must be a multiple of Hkv ({})", fn, Hq, Hkv);
  LQ_CHECK(D > 0, "{}: head dim D must be positive (D={})", fn, D);
  LQ_CHECK(pos0 >= 0, "{}: negative start position pos0={}", fn, pos0);
  LQ_CHECK(pos0 + T <= kMaxPositions, "{}: positions up to {} exceed the supported {}", fn,
           pos0 + T, kMaxPositions);
  LQ_CHECK(std::isfinite(scale) && scale > 0, "{}: softmax scale must be finite and > 0 (got {})",
           fn, scale);
  if (T == 0) return false;
  LQ_CHECK(q != nullptr && out != nullptr, "{}: null q or out", fn);
  LQ_CHECK(kv.k != nullptr && kv.v != nullptr, "{}: null KV cache pointer (k or v)", fn);
  LQ_CHECK(kv.head_stride >= (pos0 + T) * D,
           "{}: KV head_stride {} holds fewer than pos0+T={} positions of D={}", fn,
           kv.head_stride, pos0 + T, D);
  return true;
}

double kv_at(const void* base, bool bf16, int64_t i) {
  return bf16 ? double(bf16_to_f32(static_cast<const uint16_t*>(base)[i]))
              : double(static_cast<const float*>(base)[i]);
}

// Calls with T <= this stay on the fp32 kernel's split-K decode path (kDecodeMaxT in
// attention-inl.h): with a handful of rows the bf16 tiles would be mostly padding.
constexpr int64_t kBf16MaxDecodeT = 4;

// LQ_ATTN_KERNEL, read once: "" / "auto" -> Auto.
AttnKernel env_kernel() {
  static const std::string v = [] {
    const char* e = std::getenv("LQ_ATTN_KERNEL");
    return std::string(e ? e : "");
  }();
  if (v.empty() || v == "auto") return AttnKernel::Auto;
  for (AttnKernel k : {AttnKernel::Fp32, AttnKernel::Avx512Bf16, AttnKernel::Amx})
    if (v == attention_kernel_name(k)) return k;
  throw Error(fmt::format("LQ_ATTN_KERNEL='{}' is not one of auto, fp32, avx512bf16, amx", v));
}

void run_kernel(AttnKernel k, const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                const KVView& kv, int64_t pos0, float scale, float* out, Precision p) {
  if (k == AttnKernel::Fp32) {
    HWY_DYNAMIC_DISPATCH(AttentionCausal)(q, T, Hq, Hkv, D, kv, pos0, scale, out, p);
    return;
  }
  LQ_CHECK(p == Precision::BF16 && kv.bf16,
           "attention kernel {} needs Precision::BF16 and a bf16 KV cache (got precision {}, "
           "{} cache)",
           attention_kernel_name(k), p == Precision::BF16 ? "bf16" : "fp32", kv.bf16 ? "bf16" : "fp32");
  detail::attention_prefill_bf16(q, T, Hq, Hkv, D, kv, pos0, scale, out, k == AttnKernel::Amx);
}

}  // namespace

const char* attention_kernel_name(AttnKernel k) {
  switch (k) {
    case AttnKernel::Auto: return "auto";
    case AttnKernel::Fp32: return "fp32";
    case AttnKernel::Avx512Bf16: return "avx512bf16";
    case AttnKernel::Amx: return "amx";
  }
  return "?";
}

bool attention_kernel_available(AttnKernel k) {
  switch (k) {
    case AttnKernel::Auto:
    case AttnKernel::Fp32: return true;
    case AttnKernel::Avx512Bf16: return detail::cpu_has_avx512_bf16();
    case AttnKernel::Amx: return detail::cpu_has_amx_bf16();
  }
  return false;
}

AttnKernel attention_kernel_for(int64_t T, bool kv_bf16, Precision p) {
  if (p != Precision::BF16 || !kv_bf16 || T <= kBf16MaxDecodeT) return AttnKernel::Fp32;
  const AttnKernel forced = env_kernel();
  if (forced != AttnKernel::Auto) {
    LQ_CHECK(attention_kernel_available(forced),
             "LQ_ATTN_KERNEL={}: this CPU/OS does not support that kernel", attention_kernel_name(forced));
    return forced;
  }
  if (amx_gemm_enabled() && detail::cpu_has_amx_bf16()) return AttnKernel::Amx;  // LQ_DISABLE_AMX
  // VDPBF16PS issues at one per cycle on Intel cores (port 0: the same multiply-adds
  // per cycle as two fp32 FMA ports; measured 1.4x slower than the Fp32 kernel on
  // this Sapphire Rapids with LQ_DISABLE_AMX=1), but at the fp32 FMA rate with twice
  // the work on AMD Zen 4/5, so it is the automatic choice only there.
  if (detail::cpu_has_avx512_bf16() && detail::cpu_is_amd()) return AttnKernel::Avx512Bf16;
  return AttnKernel::Fp32;
}

void attention_causal(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                      const KVView& kv, int64_t pos0, float scale, float* out, Precision p) {
  if (!check_args("attention_causal", q, T, Hq, Hkv, D, kv, pos0, scale, out)) return;
  run_kernel(attention_kernel_for(T, kv.bf16, p), q, T, Hq, Hkv, D, kv, pos0, scale, out, p);
}

void attention_causal_with(AttnKernel k, const float* q, int64_t T, int64_t Hq, int64_t Hkv,
                           int64_t D, const KVView& kv, int64_t pos0, float scale, float* out,
                           Precision p) {
  if (!check_args("attention_causal_with", q, T, Hq, Hkv, D, kv, pos0, scale, out)) return;
  if (k == AttnKernel::Auto) k = attention_kernel_for(T, kv.bf16, p);
  run_kernel(k, q, T, Hq, Hkv, D, kv, pos0, scale, out, p);
}

void attention_causal_ref(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                          const KVView& kv, int64_t pos0, float scale, float* out, Precision p) {
  if (!check_args("attention_causal_ref", q, T, Hq, Hkv, D, kv, pos0, scale, out)) return;
  const int64_t G = Hq / Hkv;
  std::vector<double> qd(D), s, acc(D);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t nk = pos0 + t + 1;  // keys 0 .. pos0 + t
    s.resize(size_t(nk));
    for (int64_t h = 0; h < Hq; ++h) {
      const float* qr = q + (t * Hq + h) * D;
      for (int64_t d = 0; d < D; ++d) qd[d] = p == Precision::BF16 ? round_bf16(qr[d]) : qr[d];
      const int64_t base = (h / G) * kv.head_stride;
      double mx = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qd[d] * kv_at(kv.k, kv.bf16, base + j * D + d);
        s[j] = double(scale) * dot;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < nk; ++j) {
        const double e = std::exp(s[j] - mx);
        sum += e;
        for (int64_t d = 0; d < D; ++d) acc[d] += e * kv_at(kv.v, kv.bf16, base + j * D + d);
      }
      float* o = out + (t * Hq + h) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = float(acc[d] / sum);
    }
  }
}

namespace {
// fp32 -> bf16 as VCVTNE2PS2BF16 does it: round to nearest even, denormal inputs
// read as zero (weights below 2^-126 contribute nothing in the kernels).
double p_to_bf16(double p) {
  const float f = float(p);
  return std::fabs(f) < FLT_MIN ? 0.0 : double(round_bf16(f));
}
}  // namespace

void attention_causal_bf16_ref(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                               const KVView& kv, int64_t pos0, float scale, float* out, float* slack) {
  if (!check_args("attention_causal_bf16_ref", q, T, Hq, Hkv, D, kv, pos0, scale, out)) return;
  LQ_CHECK(kv.bf16, "attention_causal_bf16_ref: the KV cache must be bf16");
  const int64_t G = Hq / Hkv, Tk = kAttnBf16KeyTile;
  const double u = std::ldexp(1.0, -24);  // fp32 unit roundoff
  std::vector<double> qd(D), z, err, mt, acc(D), sl(D);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t nk = pos0 + t + 1;  // keys 0 .. pos0 + t
    z.resize(size_t(nk));
    err.resize(size_t(nk));
    mt.resize(size_t(nk));
    for (int64_t h = 0; h < Hq; ++h) {
      const float* qr = q + (t * Hq + h) * D;
      for (int64_t d = 0; d < D; ++d) qd[d] = round_bf16(qr[d]);
      const int64_t base = (h / G) * kv.head_stride;
      // Logits z_j = scale * q.k_j and a bound on the kernels' fp32 error in them:
      // exact bf16 products summed in fp32 in any order, (D + 2) u sum |q_d k_d|, plus
      // the rounding of the scaling (4 u |z_j|, the scale and log2(e) factors included).
      double emax = 0;
      for (int64_t j = 0; j < nk; ++j) {
        double dot = 0, sabs = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double prod = qd[d] * kv_at(kv.k, true, base + j * D + d);
          dot += prod;
          sabs += std::fabs(prod);
        }
        z[j] = double(scale) * dot;
        err[j] = double(scale) * double(D + 2) * u * sabs + 4 * u * std::fabs(z[j]);
        emax = std::max(emax, err[j]);
      }
      // The kernels' running max after each key tile: P of key j is rounded relative to it.
      double m = -INFINITY;
      for (int64_t k0 = 0; k0 < nk; k0 += Tk) {
        const int64_t k1 = std::min(nk, k0 + Tk);
        for (int64_t j = k0; j < k1; ++j) m = std::max(m, z[j]);
        for (int64_t j = k0; j < k1; ++j) mt[j] = m;
      }
      double l = 0;  // sum of the unrounded weights, relative to the final max m
      for (int64_t j = 0; j < nk; ++j) l += std::exp(z[j] - m);
      std::fill(acc.begin(), acc.end(), 0.0);
      std::fill(sl.begin(), sl.end(), 0.0);
      double dmax = 0;
      for (int64_t j = 0; j < nk; ++j) {
        const double p = std::exp(z[j] - mt[j]);  // weight as the kernel rounds it
        const double w = std::exp(mt[j] - m);     // later rescaling to the final max
        const double b = p_to_bf16(p);
        for (int64_t d = 0; d < D; ++d) acc[d] += b * w * kv_at(kv.v, true, base + j * D + d);
        if (slack == nullptr) continue;
        // Relative error bound of the kernel's fp32 weight before rounding: its logit,
        // the running max (another logit), the subtraction's rounding and the exp2
        // polynomial (< 1e-7), with a factor of 2 of margin on the logit terms.
        const double delta = 2 * (err[j] + emax) + 2 * u * std::fabs(z[j] - mt[j]) + 4e-7;
        dmax = std::max(dmax, delta);
        const double lo = p_to_bf16(p * (1 - delta)), hi = p_to_bf16(p * (1 + delta));
        if (lo != hi)
          for (int64_t d = 0; d < D; ++d)
            sl[d] += (hi - lo) * w * std::fabs(kv_at(kv.v, true, base + j * D + d));
      }
      float* o = out + (t * Hq + h) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = float(acc[d] / l);
      if (slack != nullptr) {
        // Weights off by a factor (1 +- dmax) change l and the rescaling of O by up to
        // that factor each: 3 dmax |out| covers both with margin.
        float* s = slack + (t * Hq + h) * D;
        for (int64_t d = 0; d < D; ++d) s[d] = float(sl[d] / l + 3 * dmax * std::fabs(acc[d] / l));
      }
    }
  }
}

}  // namespace lq::cpu
#endif  // HWY_ONCE
