// eval/stats.cc: drops, paired bootstrap intervals, exact McNemar tests and the
// study's averages (definitions in stats.h).
#include "eval/stats.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"

namespace lq {

using json = nlohmann::json;

// ---- primitives -----------------------------------------------------------

double mcnemar_exact_p(int64_t b, int64_t c) {
  LQ_CHECK(b >= 0 && c >= 0, "McNemar test: counts must be >= 0, got b={} c={}", b, c);
  const int64_t n = b + c;
  if (n == 0) return 1.0;
  const int64_t k = std::min(b, c);
  double p;
  if (n <= 62) {
    // Exact: sum_{i<=k} C(n,i) fits in 64 bits (< 2^61); p = 2 * sum / 2^n.
    unsigned __int128 term = 1;  // C(n, 0)
    unsigned __int128 sum = 0;
    for (int64_t i = 0; i <= k; ++i) {
      sum += term;
      term = term * unsigned(n - i) / unsigned(i + 1);  // C(n, i+1), exact division
    }
    p = std::ldexp(double(uint64_t(sum)), int(1 - n));
  } else {
    // Log space: terms of the lower tail increase up to i = k <= n/2, so factor out the largest.
    const double ln2 = std::log(2.0);
    auto lpmf = [&](int64_t i) {
      return std::lgamma(double(n) + 1) - std::lgamma(double(i) + 1) - std::lgamma(double(n - i) + 1) -
             double(n) * ln2;
    };
    const double lk = lpmf(k);
    double s = 0.0;
    for (int64_t i = k; i >= 0; --i) {
      const double t = std::exp(lpmf(i) - lk);
      s += t;
      if (t < 1e-18 * s) break;  // remaining terms are smaller still (geometric decay)
    }
    p = 2.0 * std::exp(lk) * s;
  }
  return std::min(1.0, p);
}

double quantile_sorted(const std::vector<double>& sorted, double q) {
  LQ_CHECK(!sorted.empty(), "quantile of an empty sample");
  LQ_CHECK(q >= 0.0 && q <= 1.0, "quantile level {} outside [0, 1]", q);
  const double h = double(sorted.size() - 1) * q;
  const size_t i = size_t(std::floor(h));
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (h - double(i)) * (sorted[i + 1] - sorted[i]);
}

double mean_drop_pp(const std::vector<double>& base, const std::vector<double>& variant) {
  LQ_CHECK(base.size() == variant.size() && !base.empty(), "paired drop: {} baseline and {} variant scores",
           base.size(), variant.size());
  double s = 0.0;
  for (size_t i = 0; i < base.size(); ++i) s += base[i] - variant[i];
  return 100.0 * s / double(base.size());
}

Interval paired_bootstrap_drop_ci(const std::vector<double>& base, const std::vector<double>& variant,
                                  const BootstrapOptions& opt) {
  LQ_CHECK(base.size() == variant.size() && !base.empty(), "paired bootstrap: {} baseline and {} variant scores",
           base.size(), variant.size());
  LQ_CHECK(opt.resamples >= 1, "bootstrap resamples must be >= 1, got {}", opt.resamples);
  LQ_CHECK(opt.level > 0.0 && opt.level < 1.0, "bootstrap level must be in (0, 1), got {}", opt.level);
  const size_t n = base.size();
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = base[i] - variant[i];
  Rng rng(opt.seed);
  std::vector<double> stat(size_t(opt.resamples));
  for (auto& s : stat) {
    double sum = 0.0;
    for (size_t j = 0; j < n; ++j) sum += d[rng.below(n)];
    s = 100.0 * sum / double(n);
  }
  std::sort(stat.begin(), stat.end());
  const double a = (1.0 - opt.level) / 2.0;
  return {quantile_sorted(stat, a), quantile_sorted(stat, 1.0 - a)};
}

// ---- study ----------------------------------------------------------------

namespace {

// Cell identity within a variant.
struct CellId {
  std::string task_id, suite, task;
  int64_t length;
  std::string lang;
};
// "en" sorts first, then alphabetical.
bool lang_less(const std::string& a, const std::string& b) {
  if (a == b) return false;
  if (a == "en") return true;
  if (b == "en") return false;
  return a < b;
}
struct CellLess {
  bool operator()(const CellId& x, const CellId& y) const {
    if (x.task_id != y.task_id) return x.task_id < y.task_id;
    if (x.length != y.length) return x.length < y.length;
    return lang_less(x.lang, y.lang);
  }
};
using PairKey = std::pair<uint64_t, int64_t>;  // (seed, index)
struct CellData {
  CellId id;
  std::map<PairKey, double> scores;
  int64_t failed = 0;
};

uint64_t cell_seed(uint64_t seed, const std::string& variant, const std::string& task_id, int64_t length,
                   const std::string& lang) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;
    h *= 0x100000001b3ull;
  };
  mix(variant);
  mix(task_id);
  mix(std::to_string(length));
  mix(lang);
  uint64_t s = seed ^ h;
  return splitmix64(s);
}

// Score, baseline score and drop of one cell for the averages.
struct Val {
  double score = 0, base = 0, drop = 0;
  int64_t cells = 0;
};
struct Acc {
  double score = 0, base = 0, drop = 0;
  int64_t count = 0, cells = 0;
  void add(const Val& v) {
    score += v.score;
    base += v.base;
    drop += v.drop;
    cells += v.cells;
    ++count;
  }
  bool empty() const { return count == 0; }
  Val mean() const { return {score / double(count), base / double(count), drop / double(count), cells}; }
};

json opt_num(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

json average_json(const Average& a) {
  json j = {{"score", a.score}, {"base_score", a.base_score}, {"drop_pp", a.drop_pp}, {"cells", a.cells}};
  if (!a.variant.empty()) j["variant"] = a.variant;
  if (!a.task_id.empty()) j["task_id"] = a.task_id;
  if (a.length) j["length"] = a.length;
  if (!a.lang_group.empty()) j["lang_group"] = a.lang_group;
  return j;
}

}  // namespace

std::string choose_baseline(const std::vector<VariantDef>& variants, const std::string& requested) {
  LQ_CHECK(!variants.empty(), "the results database holds no variants");
  if (!requested.empty()) {
    for (const auto& v : variants)
      if (v.name == requested) return requested;
    std::string names;
    for (const auto& v : variants) names += (names.empty() ? "" : ", ") + v.name;
    fail("baseline '{}' is not a variant of the study (variants: {})", requested, names);
  }
  for (const auto& v : variants)
    if (v.name == "bf16") return v.name;
  return variants.front().name;
}

const CellStats* StudyStats::cell(const std::string& variant, const std::string& task_id, int64_t length,
                                  const std::string& lang) const {
  for (const auto& c : cells)
    if (c.variant == variant && c.task_id() == task_id && c.length == length && c.lang == lang) return &c;
  return nullptr;
}

StudyStats compute_study_stats(const std::vector<VariantDef>& variants, const std::vector<ResultRow>& rows,
                               const std::string& baseline, const BootstrapOptions& opt) {
  StudyStats st;
  st.baseline = baseline;
  st.bootstrap = opt;
  std::map<std::string, size_t> vindex;
  for (const auto& v : variants) {
    vindex[v.name] = st.variants.size();
    st.variants.push_back(v.name);
    st.methods.push_back(v.method());
  }
  LQ_CHECK(vindex.count(baseline), "baseline '{}' is not a variant of the study", baseline);

  std::vector<std::map<CellId, CellData, CellLess>> data(variants.size());
  std::set<std::string> tasks;
  std::set<int64_t> lengths;
  std::set<std::string, decltype(&lang_less)> langs(&lang_less);
  for (const auto& r : rows) {
    auto it = vindex.find(r.key.variant);
    LQ_CHECK(it != vindex.end(), "result {} belongs to an unregistered variant", r.key.to_string());
    const CellId id{r.key.task_id(), r.key.suite, r.key.task, r.key.length, r.key.lang};
    auto& cd = data[it->second][id];
    cd.id = id;
    tasks.insert(id.task_id);
    lengths.insert(id.length);
    langs.insert(id.lang);
    if (!r.ok()) {
      ++cd.failed;
      continue;
    }
    const PairKey pk{r.key.seed, r.key.index};
    LQ_CHECK(!cd.scores.count(pk), "duplicate result {}", r.key.to_string());
    cd.scores[pk] = *r.score;
  }
  st.tasks.assign(tasks.begin(), tasks.end());
  st.lengths.assign(lengths.begin(), lengths.end());
  st.langs.assign(langs.begin(), langs.end());

  const size_t bi = vindex[baseline];
  // Paired variant means, for the averages: (variant index, cell) -> variant mean over the pairs.
  std::map<std::pair<size_t, size_t>, double> paired_variant_score;
  // Cells whose bootstrap runs after the serial pass (in parallel; each cell
  // has its own seed, so the intervals do not depend on the thread count).
  struct BootJob {
    size_t cell;
    std::vector<double> base, var;
  };
  std::vector<BootJob> boot;
  LQ_CHECK(opt.resamples >= 1, "bootstrap resamples must be >= 1, got {}", opt.resamples);
  LQ_CHECK(opt.level > 0.0 && opt.level < 1.0, "bootstrap level must be in (0, 1), got {}", opt.level);
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    for (const auto& [id, cd] : data[vi]) {
      CellStats c;
      c.variant = st.variants[vi];
      c.method = st.methods[vi];
      c.suite = id.suite;
      c.task = id.task;
      c.length = id.length;
      c.lang = id.lang;
      c.n = int64_t(cd.scores.size());
      c.failed = cd.failed;
      double s = 0.0;
      for (const auto& kv : cd.scores) s += kv.second;
      c.score = c.n ? s / double(c.n) : 0.0;
      if (vi != bi) {
        auto bit = data[bi].find(id);
        if (bit != data[bi].end()) {
          std::vector<double> base, var;
          for (const auto& [pk, score] : cd.scores) {
            auto b = bit->second.scores.find(pk);
            if (b == bit->second.scores.end()) continue;
            base.push_back(b->second);
            var.push_back(score);
          }
          c.n_paired = int64_t(base.size());
          if (!base.empty()) {
            double bs = 0.0, vs = 0.0;
            c.binary = true;
            for (size_t i = 0; i < base.size(); ++i) {
              bs += base[i];
              vs += var[i];
              const bool bb = base[i] == 0.0 || base[i] == 1.0, vb = var[i] == 0.0 || var[i] == 1.0;
              if (!bb || !vb) c.binary = false;
            }
            c.base_score = bs / double(base.size());
            c.drop_pp = mean_drop_pp(base, var);
            if (c.binary) {
              for (size_t i = 0; i < base.size(); ++i) {
                if (base[i] == 1.0 && var[i] == 0.0) ++c.mcnemar_b;
                if (base[i] == 0.0 && var[i] == 1.0) ++c.mcnemar_c;
              }
              c.p_value = mcnemar_exact_p(c.mcnemar_b, c.mcnemar_c);
            }
            paired_variant_score[{vi, st.cells.size()}] = vs / double(var.size());
            boot.push_back({st.cells.size(), std::move(base), std::move(var)});
          }
        }
      }
      st.cells.push_back(std::move(c));
    }
  }

  // Inputs were validated above, so nothing throws inside the parallel region.
  parallel_for(int64_t(boot.size()), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      CellStats& c = st.cells[boot[size_t(b)].cell];
      BootstrapOptions o = opt;
      o.seed = cell_seed(opt.seed, c.variant, c.task_id(), c.length, c.lang);
      c.ci = paired_bootstrap_drop_ci(boot[size_t(b)].base, boot[size_t(b)].var, o);
      c.significant = c.ci->excludes_zero();
    }
  });

  // ---- averages ----
  // Value of cell ci of variant vi for the averages, if it takes part.
  auto cell_val = [&](size_t vi, size_t ci) -> std::optional<Val> {
    const CellStats& c = st.cells[ci];
    if (vi == bi) {
      if (c.n == 0) return std::nullopt;
      return Val{c.score, c.score, 0.0, 1};
    }
    if (!c.drop_pp) return std::nullopt;
    return Val{paired_variant_score.at({vi, ci}), *c.base_score, *c.drop_pp, 1};
  };
  // Mean over the cells of variant vi that pass `pred`.
  auto mean_cells = [&](size_t vi, auto pred) -> std::optional<Val> {
    Acc a;
    for (size_t ci = 0; ci < st.cells.size(); ++ci) {
      const CellStats& c = st.cells[ci];
      if (c.variant != st.variants[vi] || !pred(c)) continue;
      if (auto v = cell_val(vi, ci)) a.add(*v);
    }
    if (a.empty()) return std::nullopt;
    return a.mean();
  };
  auto to_avg = [](const Val& v, const std::string& variant, const std::string& task, int64_t len,
                   const std::string& group) {
    Average a;
    a.variant = variant;
    a.task_id = task;
    a.length = len;
    a.lang_group = group;
    a.score = v.score;
    a.base_score = v.base;
    a.drop_pp = v.drop;
    a.cells = v.cells;
    return a;
  };
  // Multilingual tasks: cells in "en" and another language.
  for (const auto& t : st.tasks) {
    bool en = false, other = false;
    for (const auto& c : st.cells) {
      if (c.task_id() != t) continue;
      (c.lang == "en" ? en : other) = true;
    }
    if (en && other) st.multilingual_tasks.push_back(t);
  }
  std::map<std::string, Acc> task_across;  // per task, across non-baseline variants
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    const std::string& v = st.variants[vi];
    Acc method;
    for (const auto& t : st.tasks) {
      auto tv = mean_cells(vi, [&](const CellStats& c) { return c.task_id() == t; });
      if (!tv) continue;
      st.per_variant_task.push_back(to_avg(*tv, v, t, 0, ""));
      method.add(*tv);
      if (vi != bi) task_across[t].add(*tv);
    }
    if (!method.empty()) st.per_method.push_back(to_avg(method.mean(), v, "", 0, ""));
    for (int64_t len : st.lengths) {
      Acc over_tasks;
      for (const auto& t : st.tasks) {
        Acc over_langs;
        for (const auto& l : st.langs) {
          auto lv = mean_cells(vi, [&](const CellStats& c) {
            return c.task_id() == t && c.length == len && c.lang == l;
          });
          if (lv) over_langs.add(*lv);
        }
        if (!over_langs.empty()) over_tasks.add(over_langs.mean());
      }
      if (!over_tasks.empty()) st.per_length.push_back(to_avg(over_tasks.mean(), v, "", len, ""));
    }
    if (!st.multilingual_tasks.empty()) {
      Acc en, other;
      for (const auto& t : st.multilingual_tasks) {
        if (auto e = mean_cells(vi, [&](const CellStats& c) { return c.task_id() == t && c.lang == "en"; }))
          en.add(*e);
        if (auto o = mean_cells(vi, [&](const CellStats& c) { return c.task_id() == t && c.lang != "en"; }))
          other.add(*o);
      }
      if (!en.empty()) st.language.push_back(to_avg(en.mean(), v, "", 0, "en"));
      if (!other.empty()) st.language.push_back(to_avg(other.mean(), v, "", 0, "other"));
    }
  }
  for (const auto& t : st.tasks) {
    auto it = task_across.find(t);
    if (it != task_across.end()) st.per_task.push_back(to_avg(it->second.mean(), "", t, 0, ""));
  }
  return st;
}

StudyStats compute_study_stats(const ResultsDb& db, const std::string& baseline_request, const BootstrapOptions& opt) {
  const auto vs = db.variants();
  const std::string baseline = choose_baseline(vs, baseline_request);
  return compute_study_stats(vs, db.query(), baseline, opt);
}

json StudyStats::to_json() const {
  json vars = json::array();
  for (size_t i = 0; i < variants.size(); ++i) vars.push_back({{"name", variants[i]}, {"method", methods[i]}});
  json cs = json::array();
  for (const auto& c : cells) {
    cs.push_back({{"variant", c.variant},
                  {"method", c.method},
                  {"suite", c.suite},
                  {"task", c.task},
                  {"task_id", c.task_id()},
                  {"length", c.length},
                  {"lang", c.lang},
                  {"n", c.n},
                  {"failed", c.failed},
                  {"score", c.n ? json(c.score) : json(nullptr)},
                  {"n_paired", c.n_paired},
                  {"base_score", opt_num(c.base_score)},
                  {"drop_pp", opt_num(c.drop_pp)},
                  {"ci_lo", c.ci ? json(c.ci->lo) : json(nullptr)},
                  {"ci_hi", c.ci ? json(c.ci->hi) : json(nullptr)},
                  {"binary", c.binary},
                  {"mcnemar_b", c.mcnemar_b},
                  {"mcnemar_c", c.mcnemar_c},
                  {"p_value", opt_num(c.p_value)},
                  {"significant", c.significant}});
  }
  auto arr = [](const std::vector<Average>& v) {
    json a = json::array();
    for (const auto& x : v) a.push_back(average_json(x));
    return a;
  };
  return {{"baseline", baseline},
          {"bootstrap",
           {{"resamples", bootstrap.resamples},
            {"seed", bootstrap.seed},
            {"level", bootstrap.level},
            {"method", "paired percentile bootstrap of 100*mean(base-variant); type-7 quantiles; per-cell seed "
                       "mixed from seed and cell identity"}}},
          {"variants", vars},
          {"tasks", tasks},
          {"lengths", lengths},
          {"langs", langs},
          {"multilingual_tasks", multilingual_tasks},
          {"cells", cs},
          {"averages",
           {{"per_method", arr(per_method)},
            {"per_task", arr(per_task)},
            {"per_variant_task", arr(per_variant_task)},
            {"per_length", arr(per_length)},
            {"language", arr(language)}}}};
}

}  // namespace lq
