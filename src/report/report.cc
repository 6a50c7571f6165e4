// report/report.cc: report.md, results.csv, summary.json and report.html from a
// results database (see report.h for the contents and the averaging rules).
#include "core/version.h"
#include "report/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "report/svg.h"

namespace lq::report {

using json = nlohmann::json;

namespace {

std::string pct(double x) { return fmt::format("{:.1f}", 100.0 * x); }
std::string pp(double x) { return fmt::format("{:.1f}", x); }
std::string pval(double p) { return p < 0.001 ? fmt::format("{:.1e}", p) : fmt::format("{:.3f}", p); }

// A table rendered both as Markdown and as HTML. A cell ending in '*' is a
// significant drop (bold in HTML).
struct Table {
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
  size_t text_cols = 1;  // leading columns left-aligned; the rest are numbers (right-aligned)
};

std::string md_cell(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|') o += "\\|";
    else if (c == '\n') o += ' ';
    else o += c;
  }
  return o.empty() ? " " : o;
}

std::string to_md(const Table& t) {
  std::string o = "|";
  for (const auto& h : t.head) o += " " + md_cell(h) + " |";
  o += "\n|";
  for (size_t i = 0; i < t.head.size(); ++i) o += i < t.text_cols ? " --- |" : " ---: |";
  o += "\n";
  for (const auto& r : t.rows) {
    o += "|";
    for (const auto& c : r) o += " " + md_cell(c) + " |";
    o += "\n";
  }
  return o;
}

std::string to_html(const Table& t, const std::string& cls = "") {
  std::string o = cls.empty() ? "<table>\n<thead><tr>" : "<table class=\"" + cls + "\">\n<thead><tr>";
  for (const auto& h : t.head) o += "<th>" + xml_escape(h) + "</th>";
  o += "</tr></thead>\n<tbody>\n";
  for (const auto& r : t.rows) {
    o += "<tr>";
    for (size_t i = 0; i < r.size(); ++i) {
      const bool num = i >= t.text_cols;
      const bool sig = !r[i].empty() && r[i].back() == '*';
      o += num ? "<td class=\"num\">" : "<td>";
      o += sig ? "<strong class=\"sig\">" + xml_escape(r[i]) + "</strong>" : xml_escape(r[i]);
      o += "</td>";
    }
    o += "</tr>\n";
  }
  o += "</tbody></table>\n";
  return o;
}

const Average* find_avg(const std::vector<Average>& v, const std::string& variant, const std::string& task,
                        int64_t length, const std::string& group) {
  for (const auto& a : v)
    if (a.variant == variant && a.task_id == task && a.length == length && a.lang_group == group) return &a;
  return nullptr;
}

std::string source_of(const VariantDef& v) {
  if (v.definition.contains("source") && v.definition["source"].is_string())
    return v.definition["source"].get<std::string>();
  return "";
}

bool is_niah(const std::string& task) { return task.find("niah") != std::string::npos; }

// ---- tables ---------------------------------------------------------------

Table variants_table(const ReportData& d) {
  Table t{{"variant", "method", "source", "scored", "failed"}, {}, 3};
  std::map<std::string, std::pair<int64_t, int64_t>> counts;
  for (const auto& c : d.stats.cells) {
    counts[c.variant].first += c.n;
    counts[c.variant].second += c.failed;
  }
  for (const auto& v : d.variants) {
    std::string name = v.name + (v.name == d.stats.baseline ? " (baseline)" : "");
    t.rows.push_back({name, v.method(), source_of(v), std::to_string(counts[v.name].first),
                      std::to_string(counts[v.name].second)});
  }
  return t;
}

Table per_method_table(const StudyStats& st) {
  Table t{{"variant", "method", "score %", "baseline %", "drop pp", "cells"}, {}, 2};
  for (const auto& a : st.per_method) {
    std::string m;
    for (size_t i = 0; i < st.variants.size(); ++i)
      if (st.variants[i] == a.variant) m = st.methods[i];
    t.rows.push_back({a.variant, m, pct(a.score), pct(a.base_score), a.variant == st.baseline ? "-" : pp(a.drop_pp),
                      std::to_string(a.cells)});
  }
  return t;
}

Table per_task_table(const StudyStats& st) {
  Table t{{"task"}, {}, 1};
  std::vector<std::string> vs;
  for (const auto& v : st.variants)
    if (v != st.baseline) vs.push_back(v);
  t.head.push_back(st.baseline + " %");
  for (const auto& v : vs) t.head.push_back(v + " drop");
  t.head.push_back("mean drop (all methods)");
  for (const auto& task : st.tasks) {
    std::vector<std::string> row = {task};
    const Average* b = find_avg(st.per_variant_task, st.baseline, task, 0, "");
    row.push_back(b ? pct(b->score) : "");
    for (const auto& v : vs) {
      const Average* a = find_avg(st.per_variant_task, v, task, 0, "");
      row.push_back(a ? pp(a->drop_pp) : "");
    }
    const Average* all = find_avg(st.per_task, "", task, 0, "");
    row.push_back(all ? pp(all->drop_pp) : "");
    t.rows.push_back(row);
  }
  return t;
}

Table per_length_table(const StudyStats& st) {
  Table t{{"variant"}, {}, 1};
  for (int64_t len : st.lengths) t.head.push_back(format_length(len) + " score %");
  for (int64_t len : st.lengths) t.head.push_back(format_length(len) + " drop");
  for (const auto& v : st.variants) {
    std::vector<std::string> row = {v};
    for (int64_t len : st.lengths) {
      const Average* a = find_avg(st.per_length, v, "", len, "");
      row.push_back(a ? pct(a->score) : "");
    }
    for (int64_t len : st.lengths) {
      const Average* a = find_avg(st.per_length, v, "", len, "");
      row.push_back(a && v != st.baseline ? pp(a->drop_pp) : "-");
    }
    t.rows.push_back(row);
  }
  return t;
}

Table language_table(const StudyStats& st) {
  Table t{{"variant", "en score %", "other score %", "en drop", "other drop"}, {}, 1};
  for (const auto& v : st.variants) {
    const Average* e = find_avg(st.language, v, "", 0, "en");
    const Average* o = find_avg(st.language, v, "", 0, "other");
    if (!e && !o) continue;
    const bool base = v == st.baseline;
    t.rows.push_back({v, e ? pct(e->score) : "", o ? pct(o->score) : "", e && !base ? pp(e->drop_pp) : "-",
                      o && !base ? pp(o->drop_pp) : "-"});
  }
  return t;
}

Table language_scores_table(const ReportData& d) {
  std::vector<std::string> langs;
  for (const auto& l : d.stats.langs)
    for (const auto& s : d.language_scores)
      if (s.lang == l) {
        langs.push_back(l);
        break;
      }
  Table t{{"variant"}, {}, 1};
  for (const auto& l : langs) t.head.push_back(l + " %");
  for (const auto& v : d.stats.variants) {
    std::vector<std::string> row = {v};
    for (const auto& l : langs) {
      std::string cell;
      for (const auto& s : d.language_scores)
        if (s.variant == v && s.lang == l) cell = pct(s.score);
      row.push_back(cell);
    }
    t.rows.push_back(row);
  }
  return t;
}

Table cells_table(const StudyStats& st) {
  Table t{{"variant", "task", "length", "lang", "n", "baseline %", "score %", "drop pp", "95% CI", "McNemar p"},
          {},
          4};
  for (const auto& c : st.cells) {
    const bool base = c.variant == st.baseline;
    std::string drop = c.drop_pp ? pp(*c.drop_pp) + (c.significant ? "*" : "") : "-";
    std::string ci = c.ci ? "[" + pp(c.ci->lo) + ", " + pp(c.ci->hi) + "]" : "-";
    std::string p = c.p_value ? pval(*c.p_value) : "-";
    std::string n = std::to_string(c.n) + (c.failed ? fmt::format(" (+{} failed)", c.failed) : "");
    t.rows.push_back({c.variant, c.task_id(), format_length(c.length), c.lang, n,
                      base ? "-" : (c.base_score ? pct(*c.base_score) : "-"), c.n ? pct(c.score) : "-",
                      base ? "-" : drop, base ? "-" : ci, base ? "-" : p});
  }
  return t;
}

Table intrinsic_table(const ReportData& d) {
  Table t{{"variant", "label", "baseline", "tokens", "KLD mean", "top-1 %", "ppl baseline", "ppl variant"}, {}, 3};
  for (const auto& i : d.intrinsic) {
    t.rows.push_back({i.variant, i.label, i.baseline, std::to_string(i.tokens), fmt::format("{:.4f}", i.kld_mean),
                      pct(i.top1_agreement), fmt::format("{:.3f}", i.ppl_base), fmt::format("{:.3f}", i.ppl_model)});
  }
  return t;
}

std::string definitions_text(const StudyStats& st) {
  return fmt::format(
      "Drop = 100 x (baseline score - variant score) in percentage points over the examples both have (matched by "
      "example index and seed); positive means the variant is worse. Baseline: {}. 95% CI: paired percentile "
      "bootstrap of the drop, {} resamples, seed {:#x} mixed with each cell's identity. McNemar: exact two-sided "
      "binomial test on the discordant pairs, for cells whose scores are all 0 or 1. * marks a drop whose CI "
      "excludes 0. Averages are macro averages of cell values: per method = mean over tasks of the task's mean over "
      "its (length, language) cells; per task = mean of that over the non-baseline variants; per length = mean over "
      "tasks of the mean over languages; English vs other = over the multilingual tasks only ({}). Failed examples "
      "are excluded and counted.",
      st.baseline, st.bootstrap.resamples, st.bootstrap.seed,
      st.multilingual_tasks.empty() ? std::string("none in this study") : fmt::format("{}", fmt::join(st.multilingual_tasks, ", ")));
}

// ---- plots ----------------------------------------------------------------

std::string safe_id(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
  return o;
}

std::vector<std::string> length_ticks(const StudyStats& st) {
  std::vector<std::string> x;
  for (int64_t l : st.lengths) x.push_back(format_length(l));
  return x;
}

std::string plot_accuracy(const StudyStats& st) {
  LineChartSpec s;
  s.id = "plot-accuracy-vs-length";
  s.title = "Accuracy vs context length (mean over tasks)";
  s.x_label = "context length (tokens)";
  s.y_label = "score (%)";
  s.x_ticks = length_ticks(st);
  for (const auto& v : st.variants) {
    Series se{v, {}};
    for (int64_t len : st.lengths) {
      const Average* a = find_avg(st.per_length, v, "", len, "");
      se.y.push_back(a ? std::optional<double>(100.0 * a->score) : std::nullopt);
    }
    s.series.push_back(se);
  }
  return line_chart(s);
}

std::string plot_task_accuracy(const StudyStats& st, const std::string& task) {
  LineChartSpec s;
  s.id = "plot-accuracy-" + safe_id(task);
  s.title = "Accuracy vs context length: " + task + " (mean over languages)";
  s.x_label = "context length (tokens)";
  s.y_label = "score (%)";
  s.x_ticks = length_ticks(st);
  for (const auto& v : st.variants) {
    Series se{v, {}};
    for (int64_t len : st.lengths) {
      double sum = 0;
      int k = 0;
      for (const auto& c : st.cells)
        if (c.variant == v && c.task_id() == task && c.length == len && c.n > 0) {
          sum += c.score;
          ++k;
        }
      se.y.push_back(k ? std::optional<double>(100.0 * sum / k) : std::nullopt);
    }
    s.series.push_back(se);
  }
  return line_chart(s);
}

double nice_ceil(double v) {
  const std::array<double, 12> steps = {1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100};
  for (double s : steps)
    if (v <= s) return s;
  return 100;
}

std::string plot_drop_heatmap(const StudyStats& st) {
  HeatmapSpec h;
  h.id = "plot-drop-heatmap";
  h.title = "Drop vs " + st.baseline + " (pp) by method and context length";
  h.x_label = "context length (tokens); 'all' = average over tasks and lengths";
  h.y_label = "variant";
  h.diverging = true;
  h.legend_label = "drop pp";
  h.x_ticks = length_ticks(st);
  h.x_ticks.push_back("all");
  double vmax = 0;
  for (const auto& v : st.variants) {
    if (v == st.baseline) continue;
    h.y_ticks.push_back(v);
    std::vector<std::optional<double>> row;
    for (int64_t len : st.lengths) {
      const Average* a = find_avg(st.per_length, v, "", len, "");
      row.push_back(a ? std::optional<double>(a->drop_pp) : std::nullopt);
    }
    const Average* m = find_avg(st.per_method, v, "", 0, "");
    row.push_back(m ? std::optional<double>(m->drop_pp) : std::nullopt);
    for (const auto& x : row)
      if (x) vmax = std::max(vmax, std::fabs(*x));
    h.values.push_back(row);
  }
  h.v_max = nice_ceil(vmax);
  return heatmap(h);
}

std::string plot_language_bars(const ReportData& d) {
  BarChartSpec b;
  b.id = "plot-language-bars";
  b.title = "Score per language (" + d.language_basis + ")";
  b.x_label = "language";
  b.y_label = "score (%)";
  for (const auto& l : d.stats.langs)
    for (const auto& s : d.language_scores)
      if (s.lang == l) {
        b.groups.push_back(l);
        break;
      }
  for (const auto& v : d.stats.variants) {
    Series se{v, {}};
    for (const auto& l : b.groups) {
      std::optional<double> y;
      for (const auto& s : d.language_scores)
        if (s.variant == v && s.lang == l) y = 100.0 * s.score;
      se.y.push_back(y);
    }
    b.series.push_back(se);
  }
  return grouped_bars(b);
}

std::string plot_depth(const DepthGrid& g) {
  HeatmapSpec h;
  h.id = "plot-niah-" + safe_id(g.task_id) + "-" + safe_id(g.variant);
  h.title = g.task_id + ", " + g.variant + ": score by needle depth";
  h.x_label = "context length (tokens)";
  h.y_label = "needle depth (%)";
  h.legend_label = "score %";
  for (int64_t l : g.lengths) h.x_ticks.push_back(format_length(l));
  h.y_ticks = g.bins;
  h.values = g.score_pct;
  h.v_min = 0;
  h.v_max = 100;
  h.decimals = 0;
  h.cell_w = 64;
  h.cell_h = 24;
  return heatmap(h);
}

// KLD (or top-1) by position, one series per intrinsic result, if present.
std::string plot_intrinsic(const ReportData& d, const std::string& field, const std::string& id,
                           const std::string& title, const std::string& ylabel, double scale) {
  std::set<double> pos;
  for (const auto& r : d.intrinsic) {
    const auto& b = r.by_position;
    if (!b.is_object() || !b.contains("positions") || !b.contains(field)) continue;
    if (!b["positions"].is_array() || !b[field].is_array() || b["positions"].size() != b[field].size()) continue;
    for (const auto& p : b["positions"])
      if (p.is_number()) pos.insert(p.get<double>());
  }
  if (pos.empty()) return "";
  LineChartSpec s;
  s.id = id;
  s.title = title;
  s.x_label = "token position";
  s.y_label = ylabel;
  std::vector<double> xs(pos.begin(), pos.end());
  for (double x : xs) s.x_ticks.push_back(format_length(int64_t(x)));
  double ymax = 0;
  for (const auto& r : d.intrinsic) {
    const auto& b = r.by_position;
    if (!b.is_object() || !b.contains("positions") || !b.contains(field)) continue;
    if (!b["positions"].is_array() || !b[field].is_array() || b["positions"].size() != b[field].size()) continue;
    Series se{r.variant + " / " + r.label, std::vector<std::optional<double>>(xs.size())};
    for (size_t i = 0; i < b["positions"].size(); ++i) {
      if (!b["positions"][i].is_number() || !b[field][i].is_number()) continue;
      const double v = b[field][i].get<double>() * scale;
      if (!std::isfinite(v)) continue;
      const size_t k = size_t(std::lower_bound(xs.begin(), xs.end(), b["positions"][i].get<double>()) - xs.begin());
      se.y[k] = v;
      ymax = std::max(ymax, v);
    }
    s.series.push_back(se);
  }
  s.y_min = 0;
  s.y_max = scale == 100.0 ? 100.0 : (ymax > 0 ? ymax * 1.1 : 1.0);
  return line_chart(s);
}

}  // namespace

std::string format_length(int64_t t) {
  if (t > 0 && t % 1024 == 0) return fmt::format("{}K", t / 1024);
  return std::to_string(t);
}

// ---- data -----------------------------------------------------------------

ReportData collect_report_data(const ResultsDb& db, const ReportOptions& opt) {
  ReportData d;
  d.db_path = db.path();
  d.title = opt.title;
  d.variants = db.variants();
  d.runs = db.runs();
  d.intrinsic = db.intrinsic();
  const std::string baseline = choose_baseline(d.variants, opt.baseline);
  const std::vector<ResultRow> rows = db.query();
  d.stats = compute_study_stats(d.variants, rows, baseline, opt.bootstrap);
  const StudyStats& st = d.stats;

  // Per-language scores.
  std::vector<std::string> basis = st.multilingual_tasks;
  d.language_basis = basis.empty() ? "all tasks" : "multilingual tasks";
  if (basis.empty()) basis = st.tasks;
  for (const auto& v : st.variants) {
    for (const auto& l : st.langs) {
      double ssum = 0, dsum = 0;
      int ns = 0, nd = 0;
      int64_t cells = 0;
      for (const auto& t : basis) {
        double cs = 0, cd = 0;
        int kc = 0, kd = 0;
        for (const auto& c : st.cells) {
          if (c.variant != v || c.task_id() != t || c.lang != l || c.n == 0) continue;
          cs += c.score;
          ++kc;
          if (v == st.baseline) {
            ++kd;
          } else if (c.drop_pp) {
            cd += *c.drop_pp;
            ++kd;
          }
        }
        if (kc) {
          ssum += cs / kc;
          ++ns;
          cells += kc;
        }
        if (kd) {
          dsum += cd / kd;
          ++nd;
        }
      }
      if (!ns) continue;
      LanguageScore s;
      s.variant = v;
      s.lang = l;
      s.score = ssum / ns;
      if (nd) s.drop_pp = dsum / nd;
      s.cells = cells;
      d.language_scores.push_back(s);
    }
  }

  // NIAH depth grids.
  for (const auto& t : st.tasks) {
    if (!is_niah(t)) continue;
    for (const auto& v : st.variants) {
      DepthGrid g;
      g.task_id = t;
      g.variant = v;
      for (int b = 0; b < 10; ++b) g.bins.push_back(fmt::format("{}-{}", b * 10, b * 10 + 10));
      g.lengths = st.lengths;
      std::vector<std::vector<double>> sum(10, std::vector<double>(g.lengths.size(), 0.0));
      g.n.assign(10, std::vector<int64_t>(g.lengths.size(), 0));
      bool any = false;
      for (const auto& r : rows) {
        if (!r.ok() || r.key.variant != v || r.key.task_id() != t || r.depths.empty()) continue;
        const size_t li = size_t(std::lower_bound(g.lengths.begin(), g.lengths.end(), r.key.length) - g.lengths.begin());
        std::set<int> bins;
        for (double dep : r.depths) bins.insert(std::clamp(int(std::floor(dep / 10.0)), 0, 9));
        for (int b : bins) {
          sum[size_t(b)][li] += *r.score;
          ++g.n[size_t(b)][li];
          any = true;
        }
      }
      if (!any) continue;
      g.score_pct.assign(10, std::vector<std::optional<double>>(g.lengths.size()));
      for (size_t b = 0; b < 10; ++b)
        for (size_t li = 0; li < g.lengths.size(); ++li)
          if (g.n[b][li]) g.score_pct[b][li] = 100.0 * sum[b][li] / double(g.n[b][li]);
      d.niah.push_back(std::move(g));
    }
  }
  return d;
}

// ---- renderers ------------------------------------------------------------

std::string headline_table(const StudyStats& st) {
  std::vector<std::string> head = {"variant", "avg"};
  for (int64_t len : st.lengths) head.push_back(format_length(len));
  const bool lang = !st.language.empty();
  if (lang) {
    head.push_back("en");
    head.push_back("other");
  }
  std::vector<std::vector<std::string>> rows;
  auto cell = [](const Average* a, bool score) {
    if (!a) return std::string("-");
    return score ? pct(a->score) : pp(a->drop_pp);
  };
  // First row: the baseline's scores, so the drops have a scale.
  for (const auto& v : st.variants) {
    const bool base = v == st.baseline;
    std::vector<std::string> r = {base ? v + " score %" : v};
    r.push_back(cell(find_avg(st.per_method, v, "", 0, ""), base));
    for (int64_t len : st.lengths) r.push_back(cell(find_avg(st.per_length, v, "", len, ""), base));
    if (lang) {
      r.push_back(cell(find_avg(st.language, v, "", 0, "en"), base));
      r.push_back(cell(find_avg(st.language, v, "", 0, "other"), base));
    }
    if (base) rows.insert(rows.begin(), r);
    else rows.push_back(r);
  }
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); ++i) {
    w[i] = head[i].size();
    for (const auto& r : rows) w[i] = std::max(w[i], r[i].size());
  }
  std::string o = fmt::format("Drop vs {} in percentage points (positive = worse)\n", st.baseline);
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (i == 0) o += fmt::format("{:<{}}", r[i], w[i]);
      else o += fmt::format("  {:>{}}", r[i], w[i]);
    }
    o += "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
  return o;
}

std::string render_markdown(const ReportData& d) {
  const StudyStats& st = d.stats;
  std::string o = "# " + d.title + "\n\n";
  o += fmt::format("Database: `{}` · baseline: **{}** · {} variants · {} runs · {} tasks · lengths: {}\n\n", d.db_path,
                   st.baseline, st.variants.size(), d.runs.size(), st.tasks.size(),
                   fmt::join(length_ticks(st), ", "));
  o += "## Variants\n\n" + to_md(variants_table(d)) + "\n";
  o += "## Headline\n\n```\n" + headline_table(st) + "```\n\n";
  o += "## Average per method\n\n" + to_md(per_method_table(st)) + "\n";
  o += "## Per task (drop in pp per variant; mean over methods)\n\n" + to_md(per_task_table(st)) + "\n";
  o += "## Per context length\n\n" + to_md(per_length_table(st)) + "\n";
  if (!st.language.empty()) o += "## English vs other languages\n\n" + to_md(language_table(st)) + "\n";
  if (!d.language_scores.empty())
    o += "## Score per language (" + d.language_basis + ")\n\n" + to_md(language_scores_table(d)) + "\n";
  o += "## All cells\n\n" + to_md(cells_table(st)) + "\n";
  if (!d.intrinsic.empty()) o += "## Intrinsic divergence\n\n" + to_md(intrinsic_table(d)) + "\n";
  o += "## Definitions\n\n" + definitions_text(st) + "\n";
  return o;
}

std::string render_cells_csv(const ReportData& d) {
  const StudyStats& st = d.stats;
  std::string o =
      "variant,method,suite,task,length,lang,n,failed,score,n_paired,base_score,drop_pp,ci_lo,ci_hi,binary,"
      "mcnemar_b,mcnemar_c,p_value,significant\r\n";
  auto opt = [](const std::optional<double>& v) { return v ? fmt::format("{}", *v) : std::string(); };
  for (const auto& c : st.cells) {
    const std::vector<std::string> f = {c.variant,
                                        c.method,
                                        c.suite,
                                        c.task,
                                        std::to_string(c.length),
                                        c.lang,
                                        std::to_string(c.n),
                                        std::to_string(c.failed),
                                        c.n ? fmt::format("{}", c.score) : std::string(),
                                        std::to_string(c.n_paired),
                                        opt(c.base_score),
                                        opt(c.drop_pp),
                                        c.ci ? fmt::format("{}", c.ci->lo) : std::string(),
                                        c.ci ? fmt::format("{}", c.ci->hi) : std::string(),
                                        c.binary ? "1" : "0",
                                        std::to_string(c.mcnemar_b),
                                        std::to_string(c.mcnemar_c),
                                        opt(c.p_value),
                                        c.significant ? "1" : "0"};
    for (size_t i = 0; i < f.size(); ++i) o += (i ? "," : "") + csv_escape(f[i]);
    o += "\r\n";
  }
  return o;
}

json render_summary_json(const ReportData& d) {
  json j = d.stats.to_json();
  j["database"] = d.db_path;
  j["longquant_version"] = std::string(LQ_VERSION) + " (" + lq::git_hash() + ")";
  json vars = json::array();
  for (const auto& v : d.variants)
    vars.push_back({{"name", v.name}, {"method", v.method()}, {"definition", v.definition}});
  j["variants"] = vars;
  json runs = json::array();
  for (const auto& r : d.runs) runs.push_back(r.to_json());
  j["runs"] = runs;
  json ls = json::array();
  for (const auto& s : d.language_scores) {
    ls.push_back({{"variant", s.variant},
                  {"lang", s.lang},
                  {"score", s.score},
                  {"drop_pp", s.drop_pp ? json(*s.drop_pp) : json(nullptr)},
                  {"cells", s.cells}});
  }
  j["language_scores"] = {{"basis", d.language_basis}, {"scores", ls}};
  json niah = json::array();
  for (const auto& g : d.niah) {
    json grid = json::array();
    for (size_t b = 0; b < g.bins.size(); ++b) {
      json row = json::array();
      for (size_t l = 0; l < g.lengths.size(); ++l)
        row.push_back(g.score_pct[b][l] ? json(*g.score_pct[b][l]) : json(nullptr));
      grid.push_back(row);
    }
    niah.push_back({{"task_id", g.task_id},
                    {"variant", g.variant},
                    {"depth_bins", g.bins},
                    {"lengths", g.lengths},
                    {"score_pct", grid},
                    {"n", g.n}});
  }
  j["niah_depth"] = niah;
  json intr = json::array();
  for (const auto& i : d.intrinsic) {
    intr.push_back({{"variant", i.variant},
                    {"label", i.label},
                    {"baseline", i.baseline},
                    {"tokens", i.tokens},
                    {"kld_mean", i.kld_mean},
                    {"top1_agreement", i.top1_agreement},
                    {"ppl_base", i.ppl_base},
                    {"ppl_model", i.ppl_model},
                    {"by_position", i.by_position}});
  }
  j["intrinsic"] = intr;
  return j;
}

std::string render_html(const ReportData& d) {
  const StudyStats& st = d.stats;
  std::string o =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
      "content=\"width=device-width, initial-scale=1\">\n<title>" +
      xml_escape(d.title) +
      "</title>\n<style>\n"
      "body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;color:#222;line-height:1.4}\n"
      "h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}\n"
      "table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}\n"
      "th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f0f0f0}td.num{text-align:right;"
      "font-variant-numeric:tabular-nums}\n"
      "strong.sig{color:#7f3b08}pre{background:#f7f7f7;padding:8px;font-size:13px}\n"
      ".plots{display:flex;flex-wrap:wrap;gap:16px}.plots svg{border:1px solid #e4e4e4}\n"
      "p.meta,p.note{color:#555;font-size:13px}\n"
      "</style>\n</head>\n<body>\n";
  o += "<h1>" + xml_escape(d.title) + "</h1>\n";
  o += "<p class=\"meta\">" +
       xml_escape(fmt::format("Database: {} · baseline: {} · {} variants · {} runs · {} tasks · lengths: {}",
                              d.db_path, st.baseline, st.variants.size(), d.runs.size(), st.tasks.size(),
                              fmt::join(length_ticks(st), ", "))) +
       "</p>\n";
  o += "<h2>Headline</h2>\n<pre>" + xml_escape(headline_table(st)) + "</pre>\n";
  o += "<h2>Accuracy vs context length</h2>\n<div class=\"plots\">\n" + plot_accuracy(st);
  for (const auto& t : st.tasks) o += plot_task_accuracy(st, t);
  o += "</div>\n";
  if (st.variants.size() > 1) o += "<h2>Drop by method and length</h2>\n<div class=\"plots\">\n" + plot_drop_heatmap(st) + "</div>\n";
  if (!d.language_scores.empty())
    o += "<h2>Per language</h2>\n<div class=\"plots\">\n" + plot_language_bars(d) + "</div>\n";
  if (!d.niah.empty()) {
    o += "<h2>Needle depth x context length (NIAH tasks)</h2>\n<p class=\"note\">Mean score (%) of the examples with "
         "a needle in each depth bin; an example with several needles counts in each of their bins.</p>\n"
         "<div class=\"plots\">\n";
    for (const auto& g : d.niah) o += plot_depth(g);
    o += "</div>\n";
  }
  o += "<h2>Variants</h2>\n" + to_html(variants_table(d));
  o += "<h2>Average per method</h2>\n" + to_html(per_method_table(st));
  o += "<h2>Per task</h2>\n" + to_html(per_task_table(st));
  o += "<h2>Per context length</h2>\n" + to_html(per_length_table(st));
  if (!st.language.empty()) o += "<h2>English vs other languages</h2>\n" + to_html(language_table(st));
  if (!d.language_scores.empty()) o += "<h2>Score per language</h2>\n" + to_html(language_scores_table(d));
  o += "<h2>All cells</h2>\n" + to_html(cells_table(st), "cells");
  if (!d.intrinsic.empty()) {
    o += "<h2>Intrinsic divergence</h2>\n" + to_html(intrinsic_table(d));
    const std::string k = plot_intrinsic(d, "kld", "plot-intrinsic-kld", "KL divergence by position", "KLD (nats)", 1.0);
    const std::string t1 =
        plot_intrinsic(d, "top1", "plot-intrinsic-top1", "Top-1 agreement by position", "top-1 agreement (%)", 100.0);
    if (!k.empty() || !t1.empty()) o += "<div class=\"plots\">\n" + k + t1 + "</div>\n";
  }
  o += "<h2>Definitions</h2>\n<p class=\"note\">" + xml_escape(definitions_text(st)) + "</p>\n";
  o += "</body>\n</html>\n";
  return o;
}

// ---- files ----------------------------------------------------------------

namespace {
void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  LQ_CHECK(f.is_open(), "cannot write {}: {}", path, std::strerror(errno));
  f << text;
  f.close();
  LQ_CHECK(!f.fail(), "writing {} failed", path);
}
}  // namespace

ReportFiles write_report(const ReportData& d, const std::string& out_dir) {
  LQ_CHECK(!out_dir.empty(), "report: empty output directory (--out)");
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(out_dir, ec)) {
    LQ_CHECK(fs::is_directory(out_dir, ec), "report output {} exists and is not a directory", out_dir);
  } else {
    fs::create_directories(out_dir, ec);
    LQ_CHECK(!ec, "cannot create report directory {}: {}", out_dir, ec.message());
  }
  ReportFiles f{out_dir + "/report.md", out_dir + "/results.csv", out_dir + "/summary.json", out_dir + "/report.html"};
  write_file(f.markdown, render_markdown(d));
  write_file(f.csv, render_cells_csv(d));
  write_file(f.json, render_summary_json(d).dump(2) + "\n");
  write_file(f.html, render_html(d));
  return f;
}

ReportFiles write_report(const ResultsDb& db, const std::string& out_dir, const ReportOptions& opt) {
  return write_report(collect_report_data(db, opt), out_dir);
}

}  // namespace lq::report
