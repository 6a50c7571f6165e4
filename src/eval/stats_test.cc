// eval/stats_test.cc: McNemar, bootstrap intervals, drop definitions and the
// study averages against values computed by hand (derivations in comments).
#include "eval/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"

namespace lq {
namespace {

using json = nlohmann::json;

TEST(Stats, McNemarExactSmallTables) {
  // n = b + c discordant pairs, X ~ Binomial(n, 1/2), p = min(1, 2 P(X <= min(b, c))).
  // b=1, c=5: n=6, P(X<=1) = (C(6,0)+C(6,1))/64 = 7/64 -> p = 14/64 = 0.21875.
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(1, 5), 0.21875);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(5, 1), 0.21875);  // symmetric
  // b=0, c=6: P(X<=0) = 1/64 -> p = 2/64 = 0.03125.
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 6), 0.03125);
  // b=2, c=8: n=10, (1 + 10 + 45)/1024 = 56/1024 -> p = 112/1024 = 0.109375.
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(2, 8), 0.109375);
  // b=c=3: 2 * P(X<=3) = 2 * 42/64 > 1 -> 1.
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(3, 3), 1.0);
  // b=0, c=1: 2 * 1/2 = 1. No discordant pairs: 1.
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 1), 1.0);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 0), 1.0);
  EXPECT_THROW(mcnemar_exact_p(-1, 2), Error);
}

TEST(Stats, McNemarLargerTables) {
  // References: exact rational 2 * sum_{i<=k} C(n,i) / 2^n (Python fractions, math.comb).
  // n = 62 is the largest n on the exact integer path; the relative tolerance
  // 1e-15 allows the final rounding of the 61-bit sum to a double.
  EXPECT_NEAR(mcnemar_exact_p(10, 52), 5.713613733093065e-08, 5.713613733093065e-08 * 1e-15);
  // n = 80 and 460 use the lgamma (log-space) path: lgamma of ~n! has an
  // absolute error ~1e-16 * ln(n!) (~1e-13 at n = 460), so a relative
  // tolerance of 1e-10 on the p-value is generous yet still catches any
  // off-by-one in the tail.
  EXPECT_NEAR(mcnemar_exact_p(30, 50), 0.03299261842647618, 0.03299261842647618 * 1e-10);
  EXPECT_NEAR(mcnemar_exact_p(200, 260), 0.005883922473103979, 0.005883922473103979 * 1e-10);
}

TEST(Stats, QuantileType7) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(quantile_sorted(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile_sorted(v, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(quantile_sorted(v, 0.5), 2.5);    // h = 1.5
  EXPECT_DOUBLE_EQ(quantile_sorted(v, 0.25), 1.75);  // h = 0.75
  EXPECT_DOUBLE_EQ(quantile_sorted({7}, 0.3), 7.0);
  EXPECT_THROW(quantile_sorted({}, 0.5), Error);
}

TEST(Stats, DropDefinition) {
  // Baseline 3/4 right, variant 2/4 right: drop = 100 * (0.75 - 0.5) = 25 pp (positive = worse).
  EXPECT_DOUBLE_EQ(mean_drop_pp({1, 1, 1, 0}, {1, 0, 1, 0}), 25.0);
  // A better variant has a negative drop.
  EXPECT_DOUBLE_EQ(mean_drop_pp({0, 0.5}, {1, 0.5}), -50.0);
  EXPECT_THROW(mean_drop_pp({1}, {1, 0}), Error);
}

// The bootstrap distribution of 100 * mean(d*) for a tiny sample can be
// enumerated exactly: all n^n equally likely index sequences. The empirical
// percentile interval of R = 10000 resamples must equal the exact quantile
// atoms, provided the exact CDF is not close to the quantile levels (checked:
// margin 0.01 = over 6 standard deviations of an empirical CDF at p = 0.025
// with R = 10000, sd = sqrt(0.025 * 0.975 / 10000) = 0.0016).
TEST(Stats, BootstrapMatchesBruteForceEnumeration) {
  // d = base - variant = {1, 1, -1, -1, 0, 0}: n = 6, 6^6 = 46656 sequences.
  const std::vector<double> base = {1, 1, 0, 0, 1, 0}, var = {0, 0, 1, 1, 1, 0};
  const size_t n = base.size();
  std::vector<int> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = int(base[i] - var[i]);
  // Exact distribution of the resample sum S (integer in [-n, n]).
  std::map<int, double> pmf;
  std::vector<size_t> idx(n, 0);
  const double each = std::pow(double(n), -double(n));
  while (true) {
    int s = 0;
    for (size_t j = 0; j < n; ++j) s += d[idx[j]];
    pmf[s] += each;
    size_t j = 0;
    while (j < n && ++idx[j] == n) idx[j++] = 0;
    if (j == n) break;
  }
  auto exact_quantile = [&](double q) {
    double cdf = 0;
    for (const auto& [s, p] : pmf) {
      cdf += p;
      if (cdf >= q) {
        EXPECT_GT(cdf - q, 0.01) << "exact CDF too close to the level; pick other data";
        EXPECT_GT(q - (cdf - p), 0.01) << "exact CDF too close to the level; pick other data";
        return 100.0 * s / double(n);
      }
    }
    return 100.0 * n;
  };
  const double lo = exact_quantile(0.025), hi = exact_quantile(0.975);
  // For this d, S = (#draws of a +1) - (#draws of a -1) and the exact atoms
  // are S = -4 and S = +4, i.e. [-66.67, 66.67] pp (the smallest distance of
  // the exact CDF to 0.025 / 0.975 is 0.0134, Python fractions).
  EXPECT_NEAR(lo, -400.0 / 6.0, 1e-12);
  EXPECT_NEAR(hi, 400.0 / 6.0, 1e-12);
  BootstrapOptions opt;  // 10000 resamples, default seed
  const Interval ci = paired_bootstrap_drop_ci(base, var, opt);
  // Both sides use 100 * S / n with the same integer S: bit-identical.
  EXPECT_EQ(ci.lo, lo);
  EXPECT_EQ(ci.hi, hi);
  EXPECT_FALSE(ci.excludes_zero());
  // Deterministic for a seed.
  const Interval again = paired_bootstrap_drop_ci(base, var, opt);
  EXPECT_EQ(again.lo, ci.lo);
  EXPECT_EQ(again.hi, ci.hi);
}

TEST(Stats, BootstrapKnownBounds) {
  // Constant differences: every resample has the same mean, the interval is a point.
  const Interval c = paired_bootstrap_drop_ci({1, 1, 1}, {0.5, 0.5, 0.5}, {});
  EXPECT_DOUBLE_EQ(c.lo, 50.0);
  EXPECT_DOUBLE_EQ(c.hi, 50.0);
  EXPECT_TRUE(c.excludes_zero());
  // d = {1, 0, 0}: S ~ Binomial(3, 1/3): P(S=0) = 8/27 > 0.025 -> lo = 0;
  // P(S<=2) = 26/27 = 0.963 < 0.975 -> hi = 100 * 3/3 = 100.
  const Interval b = paired_bootstrap_drop_ci({1, 1, 0}, {0, 1, 0}, {});
  EXPECT_EQ(b.lo, 0.0);
  EXPECT_EQ(b.hi, 100.0);
  EXPECT_FALSE(b.excludes_zero());  // lo == 0 is not "excluding" zero
  // Any interval lies within [min d, max d] * 100.
  const Interval m = paired_bootstrap_drop_ci({1, 0, 1, 1, 0, 1, 0, 1}, {0, 0, 1, 0, 1, 0, 0, 1}, {});
  EXPECT_GE(m.lo, -100.0);
  EXPECT_LE(m.hi, 100.0);
  EXPECT_LE(m.lo, mean_drop_pp({1, 0, 1, 1, 0, 1, 0, 1}, {0, 0, 1, 0, 1, 0, 0, 1}));
  EXPECT_GE(m.hi, 25.0);
  BootstrapOptions bad;
  bad.level = 1.0;
  EXPECT_THROW(paired_bootstrap_drop_ci({1}, {0}, bad), Error);
  EXPECT_THROW(paired_bootstrap_drop_ci({}, {}, {}), Error);
}

// ---- study statistics on a hand-made grid ---------------------------------

VariantDef vdef(const std::string& name, const std::string& method) {
  return {name, json{{"method", method}}, ""};
}

void add(std::vector<ResultRow>& rows, const std::string& v, const std::string& suite, const std::string& task,
         int64_t len, const std::string& lang, std::vector<double> scores) {
  for (size_t i = 0; i < scores.size(); ++i) {
    ResultRow r;
    r.key = {v, suite, task, len, lang, int64_t(i), 1};
    r.score = scores[i];
    rows.push_back(r);
  }
}

// Cell drops of q4 (pp), two examples per cell:
//   ruler/niah_single_1   1K en: base {1,1} q4 {1,0} -> 50     2K en: base {1,1} q4 {1,1} -> 0
//   oneruler/niah_single  1K en: base {1,0} q4 {1,0} -> 0      1K pl: base {1,1} q4 {0,0} -> 100
//                         2K en: base {1,1} q4 {0,1} -> 50     2K pl: base {1,0} q4 {0,0} -> 50
// q8 equals bf16 everywhere (drop 0).
// Hand-computed averages for q4:
//   T(ruler) = (50 + 0)/2 = 25; T(oneruler) = (0 + 100 + 50 + 50)/4 = 50; per method = 37.5
//   per length: 1K = mean(ruler 50, oneruler mean(0, 100) = 50) = 50; 2K = mean(0, mean(50, 50)) = 25
//   English vs other over the multilingual task (oneruler) only: en = (0 + 50)/2 = 25, other = (100 + 50)/2 = 75
//   per task across methods (q4, q8): ruler (25 + 0)/2 = 12.5, oneruler (50 + 0)/2 = 25
//   scores: bf16 T(ruler) = 1, T(oneruler) = (0.5 + 1 + 1 + 0.5)/4 = 0.75 -> 0.875;
//           q4 T(ruler) = (0.5 + 1)/2 = 0.75, T(oneruler) = (0.5 + 0 + 0.5 + 0)/4 = 0.25 -> 0.5; 0.875 - 0.5 = 0.375.
std::vector<ResultRow> grid_rows() {
  std::vector<ResultRow> rows;
  for (const std::string v : {"bf16", "q8"}) {
    add(rows, v, "ruler", "niah_single_1", 1024, "en", {1, 1});
    add(rows, v, "ruler", "niah_single_1", 2048, "en", {1, 1});
    add(rows, v, "oneruler", "niah_single", 1024, "en", {1, 0});
    add(rows, v, "oneruler", "niah_single", 1024, "pl", {1, 1});
    add(rows, v, "oneruler", "niah_single", 2048, "en", {1, 1});
    add(rows, v, "oneruler", "niah_single", 2048, "pl", {1, 0});
  }
  add(rows, "q4", "ruler", "niah_single_1", 1024, "en", {1, 0, 1});  // index 2 has no baseline pair
  add(rows, "q4", "ruler", "niah_single_1", 2048, "en", {1, 1});
  add(rows, "q4", "oneruler", "niah_single", 1024, "en", {1, 0});
  add(rows, "q4", "oneruler", "niah_single", 1024, "pl", {0, 0});
  add(rows, "q4", "oneruler", "niah_single", 2048, "en", {0, 1});
  add(rows, "q4", "oneruler", "niah_single", 2048, "pl", {0, 0});
  ResultRow failed;
  failed.key = {"q4", "oneruler", "niah_single", 2048, "pl", 2, 1};
  failed.error = "timeout";
  rows.push_back(failed);
  return rows;
}

const Average* avg(const std::vector<Average>& v, const std::string& variant, const std::string& task, int64_t len,
                   const std::string& group) {
  for (const auto& a : v)
    if (a.variant == variant && a.task_id == task && a.length == len && a.lang_group == group) return &a;
  return nullptr;
}

TEST(Stats, StudyCellsAndAverages) {
  const std::vector<VariantDef> vs = {vdef("bf16", "bf16"), vdef("q4", "gptq-int4"), vdef("q8", "gptq-int8")};
  const StudyStats st = compute_study_stats(vs, grid_rows(), "bf16");
  EXPECT_EQ(st.tasks, (std::vector<std::string>{"oneruler/niah_single", "ruler/niah_single_1"}));
  EXPECT_EQ(st.lengths, (std::vector<int64_t>{1024, 2048}));
  EXPECT_EQ(st.langs, (std::vector<std::string>{"en", "pl"}));
  EXPECT_EQ(st.multilingual_tasks, (std::vector<std::string>{"oneruler/niah_single"}));

  // Cell with an unpaired example: n = 3, score 2/3, but the drop uses the 2 pairs.
  const CellStats* c = st.cell("q4", "ruler/niah_single_1", 1024, "en");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->n, 3);
  EXPECT_DOUBLE_EQ(c->score, 2.0 / 3.0);
  EXPECT_EQ(c->n_paired, 2);
  EXPECT_DOUBLE_EQ(*c->base_score, 1.0);
  EXPECT_DOUBLE_EQ(*c->drop_pp, 50.0);
  EXPECT_TRUE(c->binary);
  EXPECT_EQ(c->mcnemar_b, 1);
  EXPECT_EQ(c->mcnemar_c, 0);
  EXPECT_DOUBLE_EQ(*c->p_value, 1.0);  // 2 * P(X <= 0 | n = 1) = 1
  // Failed example counted, not scored.
  const CellStats* f = st.cell("q4", "oneruler/niah_single", 2048, "pl");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->failed, 1);
  EXPECT_EQ(f->n, 2);
  EXPECT_DOUBLE_EQ(*f->drop_pp, 50.0);
  // Baseline cells have no drop.
  EXPECT_FALSE(st.cell("bf16", "oneruler/niah_single", 2048, "pl")->drop_pp.has_value());
  // 1K pl: d = {1, 1} constant -> CI [100, 100], significant; McNemar b=2, c=0 -> p = 2 * 1/4 = 0.5.
  const CellStats* s = st.cell("q4", "oneruler/niah_single", 1024, "pl");
  EXPECT_DOUBLE_EQ(s->ci->lo, 100.0);
  EXPECT_DOUBLE_EQ(s->ci->hi, 100.0);
  EXPECT_TRUE(s->significant);
  EXPECT_DOUBLE_EQ(*s->p_value, 0.5);

  // Averages (hand values in the comment above grid_rows). Sums of a few
  // multiples of 0.5: exact in binary, so EXPECT_DOUBLE_EQ (4 ulp) holds.
  EXPECT_DOUBLE_EQ(avg(st.per_variant_task, "q4", "ruler/niah_single_1", 0, "")->drop_pp, 25.0);
  EXPECT_DOUBLE_EQ(avg(st.per_variant_task, "q4", "oneruler/niah_single", 0, "")->drop_pp, 50.0);
  const Average* m = avg(st.per_method, "q4", "", 0, "");
  EXPECT_DOUBLE_EQ(m->drop_pp, 37.5);
  EXPECT_DOUBLE_EQ(m->score, 0.5);
  EXPECT_DOUBLE_EQ(m->base_score, 0.875);
  EXPECT_DOUBLE_EQ(avg(st.per_method, "bf16", "", 0, "")->score, 0.875);
  EXPECT_DOUBLE_EQ(avg(st.per_method, "bf16", "", 0, "")->drop_pp, 0.0);
  EXPECT_DOUBLE_EQ(avg(st.per_method, "q8", "", 0, "")->drop_pp, 0.0);
  EXPECT_DOUBLE_EQ(avg(st.per_length, "q4", "", 1024, "")->drop_pp, 50.0);
  EXPECT_DOUBLE_EQ(avg(st.per_length, "q4", "", 2048, "")->drop_pp, 25.0);
  EXPECT_DOUBLE_EQ(avg(st.language, "q4", "", 0, "en")->drop_pp, 25.0);
  EXPECT_DOUBLE_EQ(avg(st.language, "q4", "", 0, "other")->drop_pp, 75.0);
  EXPECT_DOUBLE_EQ(avg(st.per_task, "", "ruler/niah_single_1", 0, "")->drop_pp, 12.5);
  EXPECT_DOUBLE_EQ(avg(st.per_task, "", "oneruler/niah_single", 0, "")->drop_pp, 25.0);

  // JSON carries the same numbers.
  const json j = st.to_json();
  EXPECT_EQ(j["baseline"], "bf16");
  EXPECT_EQ(j["bootstrap"]["resamples"], 10000);
  bool found = false;
  for (const auto& jc : j["cells"]) {
    if (jc["variant"] == "q4" && jc["task_id"] == "oneruler/niah_single" && jc["length"] == 1024 &&
        jc["lang"] == "pl") {
      EXPECT_EQ(jc["drop_pp"], 100.0);
      EXPECT_EQ(jc["p_value"], 0.5);
      EXPECT_EQ(jc["significant"], true);
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(Stats, NonBinaryCellsHaveNoMcNemar) {
  std::vector<ResultRow> rows;
  add(rows, "bf16", "ruler", "niah_multivalue", 1024, "en", {1, 0.5, 1});
  add(rows, "q4", "ruler", "niah_multivalue", 1024, "en", {0.75, 0.5, 1});
  const StudyStats st = compute_study_stats({vdef("bf16", "bf16"), vdef("q4", "x")}, rows, "bf16");
  const CellStats* c = st.cell("q4", "ruler/niah_multivalue", 1024, "en");
  EXPECT_FALSE(c->binary);
  EXPECT_FALSE(c->p_value.has_value());
  ASSERT_TRUE(c->ci.has_value());
  // drop = 100 * (2.5 - 2.25) / 3 = 8.33 pp
  EXPECT_NEAR(*c->drop_pp, 25.0 / 3.0, 1e-12);  // one rounding of a 3-term sum and a division
  EXPECT_TRUE(st.language.empty());            // no multilingual task
}

TEST(Stats, ChooseBaseline) {
  const std::vector<VariantDef> a = {vdef("q4", "x"), vdef("bf16", "bf16")};
  EXPECT_EQ(choose_baseline(a, ""), "bf16");
  EXPECT_EQ(choose_baseline(a, "q4"), "q4");
  EXPECT_EQ(choose_baseline({vdef("fp16", "x"), vdef("q4", "y")}, ""), "fp16");
  try {
    choose_baseline(a, "nope");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4, bf16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(choose_baseline({}, ""), Error);
}

TEST(Stats, CellIntervalsDoNotDependOnOtherCells) {
  std::vector<ResultRow> rows = grid_rows();
  const std::vector<VariantDef> vs = {vdef("bf16", "bf16"), vdef("q4", "gptq-int4"), vdef("q8", "gptq-int8")};
  const StudyStats full = compute_study_stats(vs, rows, "bf16");
  std::vector<ResultRow> some;
  for (const auto& r : rows)
    if (r.key.task == "niah_single" && r.key.variant != "q8") some.push_back(r);
  const StudyStats part = compute_study_stats(vs, some, "bf16");
  const CellStats* a = full.cell("q4", "oneruler/niah_single", 2048, "en");
  const CellStats* b = part.cell("q4", "oneruler/niah_single", 2048, "en");
  EXPECT_EQ(a->ci->lo, b->ci->lo);
  EXPECT_EQ(a->ci->hi, b->ci->hi);
}

}  // namespace
}  // namespace lq
