// kernels/cpu/attention_test.cc: the tiled SIMD attention kernels against scalar
// double-precision references, plus properties that need no reference (uniform
// softmax over equal keys, one dominant key, determinism, causality, bounds).
//
// Two kernels families, two references:
//   - the Fp32 (Highway) kernel vs attention_causal_ref (tolerances below);
//   - the bf16 kernels (Amx, Avx512Bf16; tests "AttentionBf16.*", skipped for a
//     kernel the CPU lacks) vs attention_causal_bf16_ref, which rounds q and P to
//     bf16 exactly as they do. See kBf16Base for their tolerance.
//
// Tolerances. Outputs are convex combinations of V rows, so errors are measured
// relative to max|v| (called vmax below). The kernel's differences from the
// reference are fp32 rounding only (both use identical q/K/V values: bf16 rounding
// of q and bf16 widening of K/V happen in both):
//   - a logit s = scale * q.k in fp32 has absolute error ~ sqrt(D) * 2^-24 * |terms|
//     (about 1e-6 for the unit-variance data used here), and softmax turns a logit
//     error e into an output error <= 2 * e * vmax;
//   - exp (Highway, ~1 ulp), the running sums l and O over up to a few thousand
//     keys (random-walk error ~ sqrt(S) * 2^-24 ~ 3e-6 relative) and the final
//     division add a few 1e-6.
// Hence kTol = 3e-6 * vmax for ordinary logits: ~10x the largest error observed
// (3.5e-7 * vmax over all shapes, AVX-512) and far below what any indexing or
// masking bug produces (those are O(vmax)). For large logits the first term scales
// with the logit magnitude (see LargeLogits).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "hwy/targets.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_bf16.h"

namespace lq::cpu {
namespace {

constexpr double kTol = 3e-6;

struct Shape {
  int64_t T, pos0, Hq, Hkv, D;
};

// Random q and KV cache for a shape. The cache has `spare` extra positions past
// pos0 + T filled with NaN: the kernel must never read them.
struct Problem {
  Shape s;
  int64_t S_cap;
  std::vector<float> q, k, v;          // fp32 cache
  std::vector<uint16_t> kb, vb;        // bf16 cache
  float scale;

  Problem(const Shape& shape, uint32_t seed, float q_mag = 1.0f, int64_t spare = 5) : s(shape) {
    S_cap = s.pos0 + s.T + spare;
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    q.resize(size_t(s.T * s.Hq * s.D));
    for (auto& x : q) x = q_mag * nd(rng);
    const size_t n = size_t(s.Hkv * S_cap * s.D);
    k.assign(n, std::numeric_limits<float>::quiet_NaN());
    v.assign(n, std::numeric_limits<float>::quiet_NaN());
    for (int64_t h = 0; h < s.Hkv; ++h)
      for (int64_t j = 0; j < s.pos0 + s.T; ++j)
        for (int64_t d = 0; d < s.D; ++d) {
          const size_t i = size_t((h * S_cap + j) * s.D + d);
          k[i] = nd(rng);
          v[i] = nd(rng);
        }
    kb.resize(n);
    vb.resize(n);
    for (size_t i = 0; i < n; ++i) {
      kb[i] = f32_to_bf16(k[i]);
      vb[i] = f32_to_bf16(v[i]);
    }
    scale = 1.0f / std::sqrt(float(s.D));
  }

  KVView view(bool bf16) const {
    KVView kv;
    kv.k = bf16 ? static_cast<const void*>(kb.data()) : static_cast<const void*>(k.data());
    kv.v = bf16 ? static_cast<const void*>(vb.data()) : static_cast<const void*>(v.data());
    kv.bf16 = bf16;
    kv.head_stride = S_cap * s.D;
    return kv;
  }

  double vmax() const {
    double m = 0;
    for (float x : v)
      if (!std::isnan(x)) m = std::max(m, double(std::fabs(x)));
    return m;
  }

  std::vector<float> run_with(AttnKernel k, bool bf16, Precision p) const {
    std::vector<float> out(q.size(), -12345.0f);
    attention_causal_with(k, q.data(), s.T, s.Hq, s.Hkv, s.D, view(bf16), s.pos0, scale, out.data(), p);
    return out;
  }

  // attention_causal_bf16_ref; slack (if not null) receives its per-element allowance.
  std::vector<float> run_bf16_ref(std::vector<float>* slack = nullptr) const {
    std::vector<float> out(q.size(), -12345.0f);
    if (slack) slack->assign(q.size(), -1.0f);
    attention_causal_bf16_ref(q.data(), s.T, s.Hq, s.Hkv, s.D, view(true), s.pos0, scale, out.data(),
                              slack ? slack->data() : nullptr);
    return out;
  }

  std::vector<float> run(bool bf16, Precision p, bool ref) const {
    std::vector<float> out(q.size(), -12345.0f);
    if (ref)
      attention_causal_ref(q.data(), s.T, s.Hq, s.Hkv, s.D, view(bf16), s.pos0, scale, out.data(), p);
    else
      attention_causal(q.data(), s.T, s.Hq, s.Hkv, s.D, view(bf16), s.pos0, scale, out.data(), p);
    return out;
  }
};

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

// ---- bf16 kernels -----------------------------------------------------------
// Tolerance of the bf16 kernels against attention_causal_bf16_ref:
//   |got - ref| <= slack + kBf16Base * vmax, per element.
// `slack` (computed by the reference, see attention.h) covers the one discrete
// difference: a weight p lying within the kernels' fp32 logit error of a bf16
// rounding boundary may round either way (one bf16 ulp, up to 2^-8 relative, times
// |v|: up to ~2e-3 vmax on rows with few keys, where single weights are large), and
// the effect of the same logit errors on l and on the rescaling of O (3 dmax |out|).
// What remains is fp32 rounding of continuous quantities: the sums of up to a few
// thousand weighted values in O and of the weights in l (random walk ~ sqrt(S) 2^-24
// relative, ~4e-6 at 4K keys; worst case S 2^-24), the alpha chain and the division.
// Observed over all tests: the slack alone covers every element to within 1.1e-8
// vmax (MatchesReference's [info] line prints it); kBf16Base = 2e-5 vmax is the
// margin for those sums on longer rows (the worst-case bound at 4K keys is 2.4e-4,
// the random-walk estimate 4e-6). Skipping the rounding of P changes results by
// > 20 kBf16Base vmax on short rows (PRoundingIsApplied); indexing, masking or
// layout bugs produce O(vmax).
constexpr double kBf16Base = 2e-5;

std::vector<AttnKernel> bf16_kernels() {
  std::vector<AttnKernel> ks;
  for (AttnKernel k : {AttnKernel::Avx512Bf16, AttnKernel::Amx})
    if (attention_kernel_available(k)) ks.push_back(k);
  return ks;
}

// Largest (|got - ref| - slack) / vmax, |got - ref| / vmax and slack / vmax seen by
// check_bf16 (reported by MatchesReference).
double g_bf16_worst_excess = -1, g_bf16_worst_diff = 0, g_bf16_worst_slack = 0;

void check_bf16(const Problem& pr, AttnKernel k) {
  std::vector<float> slack;
  const auto ref = pr.run_bf16_ref(&slack);
  const auto got = pr.run_with(k, true, Precision::BF16);
  const double vmax = pr.vmax();
  double worst = -1;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(double(got[i]) - double(ref[i]));
    const double excess = std::isnan(d) ? INFINITY : (d - slack[i]) / vmax;
    if (excess > worst) worst = excess, at = i;
    g_bf16_worst_diff = std::max(g_bf16_worst_diff, d / vmax);
    g_bf16_worst_slack = std::max(g_bf16_worst_slack, slack[i] / vmax);
  }
  g_bf16_worst_excess = std::max(g_bf16_worst_excess, worst);
  EXPECT_LE(worst, kBf16Base) << attention_kernel_name(k) << " T=" << pr.s.T << " pos0=" << pr.s.pos0
                              << " Hq=" << pr.s.Hq << " Hkv=" << pr.s.Hkv << " D=" << pr.s.D << " at " << at
                              << ": got " << got[at] << " ref " << ref[at] << " slack " << slack[at];
}

// Restores the thread count after a test changes it.
struct ThreadGuard {
  int saved = num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

// The Fp32 kernel in its three uses (forced even where attention_causal would pick a
// bf16 kernel), the bf16 kernels this CPU has, and attention_causal's own choice.
void check_shape(const Shape& sh, uint32_t seed) {
  const Problem pr(sh, seed);
  const double tol = kTol * pr.vmax();
  struct Mode {
    bool bf16;
    Precision p;
    const char* name;
  };
  for (const Mode m : {Mode{false, Precision::F32, "f32 kv, F32"}, Mode{true, Precision::BF16, "bf16 kv, BF16"},
                       Mode{false, Precision::BF16, "f32 kv, BF16"}}) {
    const auto ref = pr.run(m.bf16, m.p, true);
    const auto got = pr.run_with(AttnKernel::Fp32, m.bf16, m.p);
    EXPECT_LE(max_abs_diff(got, ref), tol)
        << m.name << " T=" << sh.T << " pos0=" << sh.pos0 << " Hq=" << sh.Hq << " Hkv=" << sh.Hkv
        << " D=" << sh.D;
  }
  for (const AttnKernel k : bf16_kernels()) check_bf16(pr, k);
  // attention_causal = attention_causal_with(the kernel attention_kernel_for picks).
  const AttnKernel chosen = attention_kernel_for(sh.T, true, Precision::BF16);
  const auto a = pr.run(true, Precision::BF16, false), b = pr.run_with(chosen, true, Precision::BF16);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << attention_kernel_name(chosen);
}

// Shapes cover T in {1,3,17,64,130} (T <= 4 takes the split-K decode path),
// pos0 in {0,5,1000}, Hq/Hkv in {4/2, 8/8, 32/8}, D in {16,64,128}, plus head
// dims that are not a multiple of any SIMD width and odd group sizes.
TEST(Attention, MatchesReferenceAcrossShapes) {
  const Shape shapes[] = {
      {1, 0, 4, 2, 16},    {1, 5, 8, 8, 64},     {1, 1000, 32, 8, 128}, {1, 1000, 4, 2, 64},
      {3, 0, 8, 8, 16},    {3, 5, 32, 8, 64},    {3, 1000, 4, 2, 128},  {4, 700, 8, 8, 16},
      {17, 0, 32, 8, 64},  {17, 5, 4, 2, 128},   {17, 1000, 8, 8, 16},  {64, 0, 4, 2, 64},
      {64, 5, 8, 8, 128},  {64, 1000, 32, 8, 16}, {130, 0, 8, 8, 64},   {130, 5, 32, 8, 16},
      {130, 1000, 4, 2, 64},
      // D not a multiple of the vector width, G = 3 and G = 7, D = 2.
      {17, 3, 4, 2, 6},    {2, 600, 4, 2, 10},   {5, 0, 3, 1, 2},       {9, 40, 14, 2, 24},
      {1, 77, 7, 1, 18},
  };
  uint32_t seed = 1;
  for (const Shape& sh : shapes) check_shape(sh, seed++);
}

// Every SIMD target compiled in and supported by this CPU (AVX-512, AVX2, SSE4,
// SSSE3, scalar), not just the best one that dispatch picks: users may have AVX2 only.
TEST(Attention, EveryTargetMatchesReference) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    for (const Shape& sh : {Shape{1, 700, 8, 2, 64}, Shape{3, 40, 4, 2, 18}, Shape{37, 90, 8, 2, 64},
                            Shape{20, 5, 3, 3, 10}})
      check_shape(sh, 71);
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Decode whose last split-K chunk holds a single key (S = 1537 -> 4 chunks of 512):
// two of the three rows see no key at all in that chunk (partial m = -inf).
TEST(Attention, DecodeChunkWithoutVisibleKeys) { check_shape({3, 1534, 4, 2, 16}, 99); }

// Decode over a couple of thousand keys (several split-K chunks).
TEST(Attention, DecodeLongContext) {
  check_shape({1, 2500, 8, 2, 64}, 7);
  check_shape({4, 3000, 4, 4, 16}, 8);
}

// Prefill and decode over ~4K keys; the double reference makes this the slowest test.
TEST(Attention, LongContextSlow) {
  check_shape({64, 4000, 8, 2, 64}, 11);
  check_shape({2, 4094, 32, 8, 128}, 12);
}

// Same inputs, 1 and 2 threads, repeated: bitwise identical outputs (work items and
// split-K chunking do not depend on the thread count; merges run in a fixed order).
TEST(Attention, DeterministicAcrossThreadCounts) {
  ThreadGuard guard;
  for (const Shape& sh : {Shape{1, 3000, 8, 2, 64}, Shape{3, 1500, 4, 2, 16}, Shape{40, 600, 8, 2, 64}}) {
    const Problem pr(sh, 5);
    for (bool bf16 : {false, true}) {
      const Precision p = bf16 ? Precision::BF16 : Precision::F32;
      set_num_threads(1);
      const auto a = pr.run(bf16, p, false);
      set_num_threads(2);
      const auto b = pr.run(bf16, p, false);
      const auto c = pr.run(bf16, p, false);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "T=" << sh.T;
      EXPECT_EQ(0, std::memcmp(b.data(), c.data(), b.size() * sizeof(float))) << "T=" << sh.T;
    }
  }
}

// All keys equal: every visible key gets the same weight, so query t's output is the
// plain mean of v[0 .. pos0+t]. Tolerance 3e-6 * vmax: fp32 running sums over up to
// ~1100 values (random-walk error ~ sqrt(n) * 2^-24 * vmax ~ 2e-6 * vmax; observed
// <= 4e-8 * vmax).
TEST(Attention, AllEqualKeysGiveMeanOfValues) {
  for (const Shape& sh : {Shape{1, 1000, 4, 2, 64}, Shape{3, 17, 8, 8, 16}, Shape{70, 1000, 4, 2, 16}}) {
    Problem pr(sh, 21);
    for (int64_t h = 0; h < sh.Hkv; ++h)
      for (int64_t j = 0; j < sh.pos0 + sh.T; ++j)
        for (int64_t d = 0; d < sh.D; ++d) {
          const size_t i = size_t((h * pr.S_cap + j) * sh.D + d);
          pr.k[i] = 0.25f * float(d % 5) - 0.5f;
          pr.kb[i] = f32_to_bf16(pr.k[i]);
        }
    const auto got = pr.run(false, Precision::F32, false);
    const int64_t G = sh.Hq / sh.Hkv;
    double worst = 0;
    for (int64_t t = 0; t < sh.T; ++t)
      for (int64_t h = 0; h < sh.Hq; ++h)
        for (int64_t d = 0; d < sh.D; ++d) {
          double mean = 0;
          const int64_t n = sh.pos0 + t + 1;
          for (int64_t j = 0; j < n; ++j) mean += pr.v[size_t(((h / G) * pr.S_cap + j) * sh.D + d)];
          mean /= double(n);
          worst = std::max(worst, std::fabs(mean - got[size_t((t * sh.Hq + h) * sh.D + d)]));
        }
    EXPECT_LE(worst, 3e-6 * pr.vmax()) << "T=" << sh.T;
  }
}

// Logits of magnitude ~1e3 (q scaled by 300): a naive exp overflows. The kernel
// must stay finite and match the reference; the logit rounding error now scales
// with the logit magnitude L (~ sqrt(D) * 2^-24 * L = 4.8e-7 * L at D = 64), so
// tolerance = vmax * (kTol + 5e-7 * L). Observed: <= 4.6e-8 * L * vmax. The bf16
// kernels are checked against their own reference, whose slack grows with L.
TEST(Attention, LargeLogitsStayStable) {
  for (const Shape& sh : {Shape{1, 900, 4, 2, 64}, Shape{3, 600, 4, 4, 16}, Shape{33, 200, 8, 2, 64}}) {
    const Problem pr(sh, 31, /*q_mag=*/300.0f);
    double L = 0;  // largest |logit|
    for (int64_t t = 0; t < sh.T; ++t)
      for (int64_t h = 0; h < sh.Hq; ++h)
        for (int64_t j = 0; j <= sh.pos0 + t; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < sh.D; ++d)
            dot += double(pr.q[size_t((t * sh.Hq + h) * sh.D + d)]) *
                   pr.k[size_t(((h / (sh.Hq / sh.Hkv)) * pr.S_cap + j) * sh.D + d)];
          L = std::max(L, std::fabs(dot * pr.scale));
        }
    ASSERT_GT(L, 500.0);  // really exercises exp overflow territory
    for (bool bf16 : {false, true}) {
      const Precision p = bf16 ? Precision::BF16 : Precision::F32;
      const auto ref = pr.run(bf16, p, true);
      const auto got = pr.run_with(AttnKernel::Fp32, bf16, p);
      for (float x : got) ASSERT_TRUE(std::isfinite(x));
      EXPECT_LE(max_abs_diff(got, ref), pr.vmax() * (kTol + 5e-7 * L)) << "T=" << sh.T;
    }
    for (const AttnKernel k : bf16_kernels()) {
      for (float x : pr.run_with(k, true, Precision::BF16)) ASSERT_TRUE(std::isfinite(x));
      check_bf16(pr, k);
    }
  }
}

// One key per query whose logit exceeds every other by >= 200: all other weights
// are exp(<= -200) = 0 in fp32, so the output must be exactly that key's value row,
// whichever tile or split-K chunk the key lands in.
TEST(Attention, DominantKeyIsSelectedExactly) {
  for (const Shape& sh : {Shape{1, 1300, 4, 2, 16}, Shape{20, 300, 4, 2, 16}}) {
    Problem pr(sh, 41);
    const int64_t G = sh.Hq / sh.Hkv;
    // Keys: e_0 direction scaled by 1 except key `star`, scaled by 1000.
    for (int64_t h = 0; h < sh.Hkv; ++h)
      for (int64_t j = 0; j < sh.pos0 + sh.T; ++j)
        for (int64_t d = 0; d < sh.D; ++d) {
          const size_t i = size_t((h * pr.S_cap + j) * sh.D + d);
          pr.k[i] = d == 0 ? (j == 37 * (h + 1) ? 1000.0f : 1.0f) : 0.0f;
        }
    for (auto& x : pr.q) x = 1.0f;  // logit = scale * k[0]
    const float scale = 1.0f;
    std::vector<float> out(pr.q.size());
    attention_causal(pr.q.data(), sh.T, sh.Hq, sh.Hkv, sh.D, pr.view(false), sh.pos0, scale, out.data(),
                     Precision::F32);
    for (int64_t t = 0; t < sh.T; ++t)
      for (int64_t h = 0; h < sh.Hq; ++h) {
        const int64_t star = 37 * (h / G + 1);
        ASSERT_LE(star, sh.pos0 + t);
        for (int64_t d = 0; d < sh.D; ++d)
          ASSERT_EQ(out[size_t((t * sh.Hq + h) * sh.D + d)],
                    pr.v[size_t(((h / G) * pr.S_cap + star) * sh.D + d)])
              << "t=" << t << " h=" << h << " d=" << d;
      }
  }
}

// A query attends only to keys up to its own position: changing later keys (and
// values) must not change earlier queries' outputs at all.
TEST(Attention, CausalMaskIgnoresFutureKeys) {
  const Shape sh{40, 100, 8, 2, 64};
  Problem pr(sh, 51);
  const auto before = pr.run(true, Precision::BF16, false);
  const int64_t cut = sh.pos0 + 20;  // keys > cut change; queries t < 20 must not
  for (int64_t h = 0; h < sh.Hkv; ++h)
    for (int64_t j = cut + 1; j < sh.pos0 + sh.T; ++j)
      for (int64_t d = 0; d < sh.D; ++d) {
        const size_t i = size_t((h * pr.S_cap + j) * sh.D + d);
        pr.kb[i] = f32_to_bf16(50.0f);
        pr.vb[i] = f32_to_bf16(-7.0f);
      }
  const auto after = pr.run(true, Precision::BF16, false);
  const size_t row = size_t(sh.Hq * sh.D);
  EXPECT_EQ(0, std::memcmp(before.data(), after.data(), 21 * row * sizeof(float)));
  EXPECT_NE(0, std::memcmp(before.data() + 21 * row, after.data() + 21 * row, row * sizeof(float)));
}

TEST(Attention, EmptyChunkIsNoOp) {
  float out = 1.0f;
  KVView kv;  // null pointers are fine when there is nothing to compute
  attention_causal(nullptr, 0, 4, 2, 16, kv, 0, 0.25f, &out, Precision::F32);
  EXPECT_EQ(out, 1.0f);
}

TEST(Attention, RejectsBadArguments) {
  const Problem pr({2, 3, 4, 2, 16}, 61);
  std::vector<float> out(pr.q.size());
  const KVView kv = pr.view(false);
  auto call = [&](int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const KVView& v, int64_t pos0, float sc) {
    attention_causal(pr.q.data(), T, Hq, Hkv, D, v, pos0, sc, out.data(), Precision::F32);
  };
  EXPECT_THROW(call(2, 4, 3, 16, kv, 3, 0.25f), Error);   // Hq not a multiple of Hkv
  EXPECT_THROW(call(2, 4, 0, 16, kv, 3, 0.25f), Error);   // Hkv = 0
  EXPECT_THROW(call(2, 4, 2, 0, kv, 3, 0.25f), Error);    // D = 0
  EXPECT_THROW(call(-1, 4, 2, 16, kv, 3, 0.25f), Error);  // T < 0
  EXPECT_THROW(call(2, 4, 2, 16, kv, -1, 0.25f), Error);  // pos0 < 0
  EXPECT_THROW(call(2, 4, 2, 16, kv, 3, 0.0f), Error);    // scale <= 0
  EXPECT_THROW(call(2, 4, 2, 16, kv, 9, 0.25f), Error);   // pos0 + T beyond the cache
  KVView small = kv;
  small.head_stride = 4 * 16;
  EXPECT_THROW(call(2, 4, 2, 16, small, 3, 0.25f), Error);
  KVView null_k = kv;
  null_k.k = nullptr;
  EXPECT_THROW(call(2, 4, 2, 16, null_k, 3, 0.25f), Error);
  try {
    call(2, 4, 3, 16, kv, 3, 0.25f);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Hkv"), std::string::npos) << e.what();
  }
}


// ---- bf16 kernels (AMX, AVX512-BF16) ---------------------------------------------

#define LQ_REQUIRE_BF16_KERNELS()                                                        \
  if (bf16_kernels().empty()) GTEST_SKIP() << "this CPU has neither AVX512-BF16 nor AMX-BF16"

// Against the bf16 reference: GQA ratios 1/2/4/8, head dims 64 and 128, odd lengths,
// query rows starting at pos0 > 0 against a longer KV (chunked prefill), the last key
// tile partial, head dims that are not a multiple of 32 (zero-padded), G = 3 and 7,
// and T <= 4 (the kernels accept any T; dispatch sends those to the decode path).
TEST(AttentionBf16, MatchesReference) {
  LQ_REQUIRE_BF16_KERNELS();
  const Shape shapes[] = {
      {5, 0, 2, 2, 64},     {17, 0, 4, 2, 64},    {64, 0, 8, 2, 128},  {130, 0, 16, 2, 64},
      {33, 100, 8, 8, 128}, {65, 63, 4, 2, 64},   {64, 64, 8, 1, 64},  {7, 1000, 32, 8, 64},
      {100, 300, 8, 2, 128}, {129, 191, 16, 2, 64}, {31, 33, 4, 4, 128}, {97, 515, 32, 4, 64},
      {1, 0, 4, 2, 64},     {3, 77, 8, 2, 128},   {17, 3, 4, 2, 6},     {9, 40, 14, 2, 24},
      {40, 90, 6, 2, 80},   {20, 5, 3, 3, 10},    {12, 30, 7, 1, 2},    {70, 10, 4, 2, 160},
  };
  uint32_t seed = 101;
  for (const Shape& sh : shapes) {
    const Problem pr(sh, seed++);
    for (const AttnKernel k : bf16_kernels()) check_bf16(pr, k);
  }
  std::printf("[   info   ] bf16 kernels, per element / vmax: worst |got-ref| %.3g, worst slack %.3g, "
              "worst |got-ref| - slack %.3g (tolerance: slack + %.3g)\n",
              g_bf16_worst_diff, g_bf16_worst_slack, g_bf16_worst_excess, kBf16Base);
}

// The reference really rounds P (and the kernels with it): on short rows, skipping
// that rounding changes the result by far more than the tolerance, and the kernels
// are on the rounded side.
TEST(AttentionBf16, PRoundingIsApplied) {
  LQ_REQUIRE_BF16_KERNELS();
  const Problem pr({24, 0, 4, 2, 64}, 7);
  const auto exact_p = pr.run(true, Precision::BF16, true);  // q rounded, P not
  const auto rounded_p = pr.run_bf16_ref();
  const double vmax = pr.vmax();
  EXPECT_GT(max_abs_diff(exact_p, rounded_p), 20 * kBf16Base * vmax);
  for (const AttnKernel k : bf16_kernels()) {
    const auto got = pr.run_with(k, true, Precision::BF16);
    EXPECT_LT(max_abs_diff(got, rounded_p), 0.1 * max_abs_diff(got, exact_p)) << attention_kernel_name(k);
  }
}

// A row's result depends only on its own keys and the fixed key-tile grid (tiles start
// at key 0 in every call), not on which call, work item or thread computes it: a
// prefill in chunks (pos0 > 0 against the longer cache) is bitwise equal to one call.
TEST(AttentionBf16, ChunkedPrefillEqualsOneCall) {
  LQ_REQUIRE_BF16_KERNELS();
  for (const Shape& sh : {Shape{300, 0, 8, 2, 64}, Shape{150, 0, 4, 4, 128}}) {
    const Problem pr(sh, 17);
    for (const AttnKernel k : bf16_kernels()) {
      const auto whole = pr.run_with(k, true, Precision::BF16);
      std::vector<float> chunked(whole.size(), -1.0f);
      const size_t row = size_t(sh.Hq * sh.D);
      for (int64_t t0 = 0, c = 0; t0 < sh.T; ++c) {
        const int64_t len = std::min<int64_t>(sh.T - t0, c % 2 ? 37 : 70);  // odd, unaligned chunks
        attention_causal_with(k, pr.q.data() + t0 * int64_t(row), len, sh.Hq, sh.Hkv, sh.D, pr.view(true),
                              t0, pr.scale, chunked.data() + t0 * int64_t(row), Precision::BF16);
        t0 += len;
      }
      EXPECT_EQ(0, std::memcmp(whole.data(), chunked.data(), whole.size() * sizeof(float)))
          << attention_kernel_name(k) << " T=" << sh.T;
    }
  }
}

// Bitwise identical for 1 and 2 threads and run to run; the two bf16 kernels differ
// only in fp32 summation order, so they agree within the reference tolerance.
TEST(AttentionBf16, DeterministicAndKernelsAgree) {
  LQ_REQUIRE_BF16_KERNELS();
  ThreadGuard guard;
  const Problem pr({90, 700, 8, 2, 64}, 23);
  std::vector<std::vector<float>> outs;
  for (const AttnKernel k : bf16_kernels()) {
    set_num_threads(1);
    const auto a = pr.run_with(k, true, Precision::BF16);
    set_num_threads(2);
    const auto b = pr.run_with(k, true, Precision::BF16);
    const auto c = pr.run_with(k, true, Precision::BF16);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << attention_kernel_name(k);
    EXPECT_EQ(0, std::memcmp(b.data(), c.data(), b.size() * sizeof(float))) << attention_kernel_name(k);
    outs.push_back(a);
  }
  if (outs.size() == 2) {
    std::vector<float> slack;
    pr.run_bf16_ref(&slack);
    double worst = 0;
    for (size_t i = 0; i < outs[0].size(); ++i)
      worst = std::max(worst, std::fabs(double(outs[0][i]) - outs[1][i]) - 2 * double(slack[i]));
    EXPECT_LE(worst, 2 * kBf16Base * pr.vmax());
  }
}

// One key per kv head whose logit exceeds all others by >= 200: its weight is 1, all
// others round to 0, so the output is exactly its (bf16) value row.
TEST(AttentionBf16, DominantKeyIsSelectedExactly) {
  LQ_REQUIRE_BF16_KERNELS();
  const Shape sh{20, 300, 4, 2, 64};
  Problem pr(sh, 41);
  const int64_t G = sh.Hq / sh.Hkv;
  for (int64_t h = 0; h < sh.Hkv; ++h)
    for (int64_t j = 0; j < sh.pos0 + sh.T; ++j)
      for (int64_t d = 0; d < sh.D; ++d)
        pr.kb[size_t((h * pr.S_cap + j) * sh.D + d)] =
            f32_to_bf16(d == 0 ? (j == 37 * (h + 1) ? 1000.0f : 1.0f) : 0.0f);
  for (auto& x : pr.q) x = 1.0f;
  for (const AttnKernel k : bf16_kernels()) {
    std::vector<float> out(pr.q.size());
    attention_causal_with(k, pr.q.data(), sh.T, sh.Hq, sh.Hkv, sh.D, pr.view(true), sh.pos0, 1.0f, out.data(),
                          Precision::BF16);
    for (int64_t t = 0; t < sh.T; ++t)
      for (int64_t h = 0; h < sh.Hq; ++h)
        for (int64_t d = 0; d < sh.D; ++d)
          ASSERT_EQ(out[size_t((t * sh.Hq + h) * sh.D + d)],
                    bf16_to_f32(pr.vb[size_t(((h / G) * pr.S_cap + 37 * (h / G + 1)) * sh.D + d)]))
              << attention_kernel_name(k) << " t=" << t << " h=" << h << " d=" << d;
  }
}

// Changing keys/values after position `cut` leaves every earlier query bitwise unchanged.
TEST(AttentionBf16, CausalMaskIgnoresFutureKeys) {
  LQ_REQUIRE_BF16_KERNELS();
  const Shape sh{70, 100, 8, 2, 64};
  Problem pr(sh, 51);
  for (const AttnKernel k : bf16_kernels()) {
    Problem p2 = pr;
    const auto before = p2.run_with(k, true, Precision::BF16);
    const int64_t cut = sh.pos0 + 30;  // keys > cut change; queries t <= 30 must not
    for (int64_t h = 0; h < sh.Hkv; ++h)
      for (int64_t j = cut + 1; j < sh.pos0 + sh.T; ++j)
        for (int64_t d = 0; d < sh.D; ++d) {
          const size_t i = size_t((h * p2.S_cap + j) * sh.D + d);
          p2.kb[i] = f32_to_bf16(50.0f);
          p2.vb[i] = f32_to_bf16(-7.0f);
        }
    const auto after = p2.run_with(k, true, Precision::BF16);
    const size_t row = size_t(sh.Hq * sh.D);
    EXPECT_EQ(0, std::memcmp(before.data(), after.data(), 31 * row * sizeof(float))) << attention_kernel_name(k);
    EXPECT_NE(0, std::memcmp(before.data() + 31 * row, after.data() + 31 * row, row * sizeof(float)));
  }
}

// Dispatch: which kernel attention_causal uses, and forced kernels' argument checks.
TEST(AttentionBf16, Dispatch) {
  EXPECT_EQ(attention_kernel_for(512, true, Precision::F32), AttnKernel::Fp32);
  EXPECT_EQ(attention_kernel_for(512, false, Precision::BF16), AttnKernel::Fp32);
  EXPECT_EQ(attention_kernel_for(4, true, Precision::BF16), AttnKernel::Fp32);  // decode path
  const AttnKernel k = attention_kernel_for(512, true, Precision::BF16);
  if (std::getenv("LQ_ATTN_KERNEL") == nullptr && std::getenv("LQ_DISABLE_AMX") == nullptr) {
    const bool amd = detail::cpu_is_amd();
    const AttnKernel best = attention_kernel_available(AttnKernel::Amx) ? AttnKernel::Amx
                            : attention_kernel_available(AttnKernel::Avx512Bf16) && amd
                                ? AttnKernel::Avx512Bf16
                                : AttnKernel::Fp32;
    EXPECT_EQ(k, best) << attention_kernel_name(k);
  }
  EXPECT_STREQ(attention_kernel_name(AttnKernel::Amx), "amx");
  const Problem pr({8, 3, 4, 2, 64}, 61);
  std::vector<float> out(pr.q.size());
  for (const AttnKernel bk : {AttnKernel::Avx512Bf16, AttnKernel::Amx}) {
    // fp32 cache or Precision::F32: the bf16 kernels refuse (whether or not available).
    EXPECT_THROW(attention_causal_with(bk, pr.q.data(), 8, 4, 2, 64, pr.view(false), 3, 0.125f, out.data(),
                                       Precision::BF16),
                 Error);
    EXPECT_THROW(attention_causal_with(bk, pr.q.data(), 8, 4, 2, 64, pr.view(true), 3, 0.125f, out.data(),
                                       Precision::F32),
                 Error);
    if (!attention_kernel_available(bk)) {
      EXPECT_THROW(attention_causal_with(bk, pr.q.data(), 8, 4, 2, 64, pr.view(true), 3, 0.125f, out.data(),
                                         Precision::BF16),
                   Error);
    }
  }
  // Argument checks apply to every kernel.
  EXPECT_THROW(attention_causal_with(AttnKernel::Amx, pr.q.data(), 8, 4, 3, 64, pr.view(true), 3, 0.125f,
                                     out.data(), Precision::BF16),
               Error);
  EXPECT_THROW(attention_causal_bf16_ref(pr.q.data(), 8, 4, 2, 64, pr.view(false), 3, 0.125f, out.data()), Error);
}

// ~4K keys, prefill rows at pos0 = 4000 (the double reference makes this slow).
TEST(AttentionBf16, LongContextSlow) {
  LQ_REQUIRE_BF16_KERNELS();
  for (const Shape& sh : {Shape{64, 4000, 8, 2, 64}, Shape{40, 4050, 16, 2, 128}}) {
    const Problem pr(sh, 11);
    for (const AttnKernel k : bf16_kernels()) check_bf16(pr, k);
  }
}

}  // namespace
}  // namespace lq::cpu
