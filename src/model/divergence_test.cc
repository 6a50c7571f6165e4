// Tests of model/divergence: per-position KL / top-1 / NLL, bucketing, and the
// lockstep run of two models.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "core/testing.h"
#include "model/divergence.h"

namespace lq {
namespace {

TEST(Divergence, HandChecked) {
  const float base[] = {0.0f, 0.0f};                   // p = (1/2, 1/2)
  const float model[] = {float(std::log(3.0)), 0.0f};  // q = (3/4, 1/4)
  PositionDivergence d = position_divergence(base, model, 2, 1);
  // KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3); the only rounding is log(3) in fp32 (~1e-8).
  EXPECT_NEAR(d.kld, 0.5 * std::log(4.0 / 3.0), 1e-7);
  EXPECT_NEAR(d.nll_base, std::log(2.0), 1e-12);
  EXPECT_NEAR(d.nll_model, std::log(4.0), 1e-7);
  EXPECT_TRUE(d.top1_equal);  // base tie -> lowest index 0; model argmax 0
  const float other[] = {0.0f, 1.0f};
  EXPECT_FALSE(position_divergence(model, other, 2, 0).top1_equal);
  EXPECT_EQ(position_divergence(base, base, 2, 0).kld, 0.0);
}

TEST(Divergence, AccumulatorBucketsMatchBruteForce) {
  const int64_t V = 50, n = 23;
  Rng r(1);
  std::vector<float> a(static_cast<size_t>(n * V)), b(static_cast<size_t>(n * V));
  for (auto& x : a) x = float(r.normal() * 2);
  for (size_t i = 0; i < b.size(); ++i) b[i] = a[i] + float(r.normal() * 0.3);
  std::vector<int32_t> next(static_cast<size_t>(n));
  for (auto& x : next) x = int32_t(r.below(V));
  DivergenceAccumulator acc(V, 10);
  acc.add(0, a.data(), b.data(), 7, next.data());  // uneven pieces, as chunks arrive
  acc.add(7, a.data() + 7 * V, b.data() + 7 * V, n - 7, next.data() + 7);
  DivergenceResult res = acc.result();
  ASSERT_EQ(res.by_position.size(), 3u);
  EXPECT_EQ(res.by_position[2].start, 20);
  EXPECT_EQ(res.by_position[2].end, 23);
  double kl = 0, nb = 0, nm = 0, t1 = 0;
  for (int64_t i = 20; i < 23; ++i) {
    auto d = position_divergence(a.data() + i * V, b.data() + i * V, V, next[size_t(i)]);
    kl += d.kld;
    nb += d.nll_base;
    nm += d.nll_model;
    t1 += d.top1_equal;
  }
  // Same double arithmetic in the same order: equal to 1e-12.
  EXPECT_NEAR(res.by_position[2].kld_mean, kl / 3, 1e-12);
  EXPECT_NEAR(res.by_position[2].ppl_base, std::exp(nb / 3), 1e-9);
  EXPECT_NEAR(res.by_position[2].ppl_model, std::exp(nm / 3), 1e-9);
  EXPECT_NEAR(res.by_position[2].top1_agreement, t1 / 3, 1e-12);
  EXPECT_EQ(res.overall.n, n);
  EXPECT_GT(res.overall.kld_mean, 0.0);
  auto j = res.to_json();
  for (const char* k : {"kld_mean", "top1_agreement", "ppl_base", "ppl_model", "by_position"}) EXPECT_TRUE(j.contains(k));
  EXPECT_EQ(j["by_position"][1]["start"], 10);
  EXPECT_EQ(j["by_position"][1]["end"], 20);
}

TEST(Divergence, ModelAgainstItselfIsZero) {
  auto m = Model::load(testing::fixture_dir("tiny-qwen25"));
  Rng r(2);
  std::vector<int32_t> ids(200);
  for (auto& x : ids) x = int32_t(r.below(uint64_t(m->config().vocab_size)));
  DivergenceOptions o;
  o.bucket = 64;
  o.chunk = 48;
  DivergenceResult res = compute_divergence(*m, *m, ids, o);
  EXPECT_EQ(res.overall.n, 199);
  EXPECT_EQ(res.by_position.size(), 4u);
  EXPECT_EQ(res.by_position.back().end, 199);
  EXPECT_EQ(res.overall.kld_mean, 0.0);  // identical deterministic sessions
  EXPECT_EQ(res.overall.top1_agreement, 1.0);
  EXPECT_EQ(res.overall.ppl_base, res.overall.ppl_model);
  EXPECT_GT(res.overall.ppl_base, 1.0);
  EXPECT_THROW(compute_divergence(*m, *m, std::vector<int32_t>{1}, o), Error);
}

}  // namespace
}  // namespace lq
