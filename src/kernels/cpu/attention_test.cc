// kernels/cpu/attention_test.cc: the tiled SIMD attention_causal against the scalar
// double-precision attention_causal_ref, plus properties that need no reference
// (uniform softmax over equal keys, one dominant key, determinism, bounds).
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
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"
#include "hwy/targets.h"
#include "kernels/cpu/attention.h"

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

// Restores the thread count after a test changes it.
struct ThreadGuard {
  int saved = num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

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
    const auto got = pr.run(m.bf16, m.p, false);
    EXPECT_LE(max_abs_diff(got, ref), tol)
        << m.name << " T=" << sh.T << " pos0=" << sh.pos0 << " Hq=" << sh.Hq << " Hkv=" << sh.Hkv
        << " D=" << sh.D;
  }
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
// tolerance = vmax * (kTol + 5e-7 * L). Observed: <= 4.6e-8 * L * vmax.
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
      const auto got = pr.run(bf16, p, false);
      for (float x : got) ASSERT_TRUE(std::isfinite(x));
      EXPECT_LE(max_abs_diff(got, ref), pr.vmax() * (kTol + 5e-7 * L)) << "T=" << sh.T;
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

}  // namespace
}  // namespace lq::cpu
