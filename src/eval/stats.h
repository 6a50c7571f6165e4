// eval/stats.h: what quantization cost, with enough statistics to tell real
// drops from noise.
//
// Definitions (all drops in percentage points, positive = the variant is worse):
//  * Cell: (variant, suite, task, length, lang). Its score is the mean of the
//    scores (each in [0,1]) of its scored examples; failed examples (error
//    text, no score) are left out and counted separately.
//  * Pairs: an example of the variant and one of the baseline with the same
//    (example index, seed) in the same (suite, task, length, lang). Drops and
//    their statistics use the pairs only, so a cell that is still running is
//    compared on the examples both sides have; for a complete study the
//    pairs are all examples and the drop is exactly the study's definition
//        drop = 100 * (baseline score - variant score).
//  * Paired bootstrap CI: d_i = base_i - variant_i over the n pairs; each of R
//    resamples (default R = 10000) draws n indices uniformly with replacement
//    (lq::Rng: xoshiro256** seeded by SplitMix64, unbiased rejection for the
//    index; no std:: distributions, so the interval is identical on every
//    platform) and computes 100 * mean(d). The interval is the percentile
//    interval: quantiles (1-level)/2 and (1+level)/2 of the R sorted values,
//    each by linear interpolation between order statistics (h = (R-1) q, the
//    "type 7" rule of R and numpy's default). The seed of a cell is
//    SplitMix64-mixed from the options' seed and the cell's identity, so a
//    cell's interval does not depend on which other cells are in the study.
//    A drop is "significant" when its interval excludes 0 (lo > 0 or hi < 0).
//  * Exact McNemar test (binary-scored cells: every paired score is 0 or 1):
//    b = #(baseline right, variant wrong), c = #(baseline wrong, variant right);
//    under H0 the b + c discordant pairs split Binomial(b + c, 1/2); the
//    two-sided p-value is min(1, 2 * P(X <= min(b, c))), and 1 when b + c = 0.
//    Cells with partial scores (e.g. RULER string_match_all fractions) get no
//    McNemar p-value; the bootstrap still applies.
//  * Averages (macro averages of cell values; every cell weighs the same
//    within its group, every task the same across tasks):
//      task value   T(v, t)   = mean over the (length, lang) cells of task t
//      per method   M(v)      = mean over tasks t of T(v, t)
//      per task     A(t)      = mean over the non-baseline variants v of T(v, t)
//      per length   L(v, len) = mean over tasks t of [mean over langs of the cells (v, t, len, lang)]
//      English vs other languages, over the multilingual tasks only (tasks
//      with cells in "en" and in at least one other language, so English-only
//      suites such as RULER do not bias the comparison):
//        E(v)  = mean over those tasks of [mean over lengths of the "en" cells]
//        O(v)  = mean over those tasks of [mean over the non-"en" (length, lang) cells]
//    "Value" is the drop (pp) or the score; drops only use cells where the
//    baseline has pairs, and the score averages use those same cells, so
//    baseline score average - variant score average = average drop (exactly,
//    up to rounding). The baseline itself appears with drop 0 in the per
//    method / per length / language averages (for the plots).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/results_db.h"

namespace lq {

// ---- primitive statistics -------------------------------------------------

// Exact two-sided McNemar p-value (see above). b, c >= 0.
double mcnemar_exact_p(int64_t b, int64_t c);

// Quantile of ascending `sorted` values by linear interpolation (type 7); q in [0,1].
double quantile_sorted(const std::vector<double>& sorted, double q);

struct BootstrapOptions {
  int64_t resamples = 10000;
  uint64_t seed = 0x4C51'5354'4154'5331ull;  // "LQSTATS1"
  double level = 0.95;
};
struct Interval {
  double lo = 0.0, hi = 0.0;
  bool excludes_zero() const { return lo > 0.0 || hi < 0.0; }
};
// 100 * mean(base - variant) and its percentile bootstrap interval over paired
// resamples, with exactly options.seed (no per-cell mixing). Sizes must match and be > 0.
Interval paired_bootstrap_drop_ci(const std::vector<double>& base, const std::vector<double>& variant,
                                  const BootstrapOptions& opt);
// 100 * mean(base - variant).
double mean_drop_pp(const std::vector<double>& base, const std::vector<double>& variant);

// ---- study statistics -----------------------------------------------------

struct CellStats {
  std::string variant, method, suite, task, lang;
  int64_t length = 0;
  int64_t n = 0;          // scored examples of the variant
  int64_t failed = 0;     // failed examples of the variant
  double score = 0.0;     // mean score of the variant over its n examples, [0,1]
  // Versus the baseline (absent for the baseline itself or without pairs):
  int64_t n_paired = 0;
  std::optional<double> base_score;   // baseline mean over the pairs
  std::optional<double> drop_pp;      // 100 * mean(base - variant) over the pairs
  std::optional<Interval> ci;         // bootstrap interval of drop_pp
  bool binary = false;                // all paired scores are 0 or 1
  int64_t mcnemar_b = 0, mcnemar_c = 0;
  std::optional<double> p_value;      // exact McNemar (binary cells only)
  bool significant = false;           // ci excludes 0
  std::string task_id() const { return suite + "/" + task; }
};

// An average (see the header comment); empty fields mean "all".
struct Average {
  std::string variant;    // "" for the per-task average across methods
  std::string task_id;    // "" unless per task
  int64_t length = 0;     // 0 unless per length
  std::string lang_group; // "", "en" or "other"
  double score = 0.0;     // average score in [0,1] over the same cells
  double base_score = 0.0;
  double drop_pp = 0.0;
  int64_t cells = 0;      // cells averaged
};

struct StudyStats {
  std::string baseline;
  BootstrapOptions bootstrap;
  std::vector<std::string> variants;   // registration order; baseline included
  std::vector<std::string> methods;    // method of each variant (same order)
  std::vector<std::string> tasks;      // task ids, sorted
  std::vector<int64_t> lengths;        // sorted
  std::vector<std::string> langs;      // "en" first, then sorted
  std::vector<CellStats> cells;        // variant order, then task, length, lang
  std::vector<Average> per_method;     // one per variant (baseline included)
  std::vector<Average> per_task;       // one per task, across non-baseline variants
  std::vector<Average> per_variant_task;  // T(v, t) for every variant and task
  std::vector<Average> per_length;     // variant x length
  std::vector<Average> language;       // variant x {"en", "other"} (only if a multilingual task exists)
  std::vector<std::string> multilingual_tasks;

  const CellStats* cell(const std::string& variant, const std::string& task_id, int64_t length,
                        const std::string& lang) const;
  nlohmann::json to_json() const;
};

// The baseline: `requested` if non-empty (must be a variant of the study),
// else the variant named "bf16", else the first registered variant.
std::string choose_baseline(const std::vector<VariantDef>& variants, const std::string& requested);

// Computes every cell's statistics and the averages from the scored rows.
// Rows of variants not in `variants` are an error.
StudyStats compute_study_stats(const std::vector<VariantDef>& variants, const std::vector<ResultRow>& rows,
                               const std::string& baseline, const BootstrapOptions& opt = {});
// Convenience: everything in a database.
StudyStats compute_study_stats(const ResultsDb& db, const std::string& baseline_request = "",
                               const BootstrapOptions& opt = {});

}  // namespace lq
