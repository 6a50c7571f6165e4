// kernels/cpu/attention.cc: argument checks, run-time dispatch and the scalar
// reference of causal GQA attention (see attention.h for the API and
// attention-inl.h / docs/kernels-attention.md for the tiled SIMD kernel).
//
// attention_causal_ref is the definition the kernel is tested against: for each
// query row it computes every logit scale * (q . k_j) in double (q rounded to bf16
// first under Precision::BF16; bf16 K/V widened exactly), a full softmax in double
// and sum_j p_j v_j in double, rounded once to float.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "kernels/cpu/attention-inl.h"

#if HWY_ONCE
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/attention.h"

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

}  // namespace

void attention_causal(const float* q, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                      const KVView& kv, int64_t pos0, float scale, float* out, Precision p) {
  if (!check_args("attention_causal", q, T, Hq, Hkv, D, kv, pos0, scale, out)) return;
  HWY_DYNAMIC_DISPATCH(AttentionCausal)(q, T, Hq, Hkv, D, kv, pos0, scale, out, p);
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

}  // namespace lq::cpu
#endif  // HWY_ONCE
