// report/report.h: `longquant report`: what quantization cost, from a results
// database (eval/results_db.h) and its statistics (eval/stats.h).
//
// Outputs in the report directory:
//   report.md     tables: variants, headline, averages (per method, per task,
//                 per length, English vs other languages), every cell with its
//                 drop, 95% paired bootstrap CI, McNemar p and a significance
//                 mark, intrinsic divergence results, and the definitions.
//   results.csv   one row per cell (variant x task x length x lang): n, failed,
//                 score, baseline score, drop, CI, McNemar counts and p, flag.
//                 (Per-example records: `longquant results export`.)
//   summary.json  everything machine-readable: StudyStats::to_json() plus the
//                 variant definitions, per-language scores, NIAH depth grids,
//                 intrinsic results.
//   report.html   one self-contained file (inline CSS and SVG, no scripts, no
//                 network): the tables and the plots -- accuracy vs context
//                 length per variant, drop heatmap (variant x length), per-
//                 language bars, needle-depth x length heatmaps per NIAH task
//                 and variant, and KLD / top-1 by position when present.
//
// Per-language scores (bars): for each variant and language, the mean over
// tasks that have the language of [mean over lengths of the cell scores],
// computed over the multilingual tasks (stats.h) when there are any, else
// over all tasks. NIAH depth grids: for tasks whose name contains "niah" and
// whose examples store needle depths, depth is binned in 10 bins of 10 points
// ([0,10), ..., [90,100]); an example counts once in every bin that holds one
// of its needles, and a grid cell is the mean score (percent) of those examples.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/results_db.h"
#include "eval/stats.h"

namespace lq::report {

struct ReportOptions {
  std::string baseline;  // "" -> "bf16" if present, else the first variant
  BootstrapOptions bootstrap;
  std::string title = "longquant report: what quantization costs at long context";
};

struct LanguageScore {
  std::string variant, lang;
  double score = 0.0;                 // [0,1]
  std::optional<double> drop_pp;      // same averaging over the cells with pairs
  int64_t cells = 0;
};

struct DepthGrid {
  std::string task_id, variant;
  std::vector<std::string> bins;       // row labels, "0-10" ... "90-100"
  std::vector<int64_t> lengths;        // columns
  std::vector<std::vector<std::optional<double>>> score_pct;  // [bin][length]
  std::vector<std::vector<int64_t>> n;                        // examples per grid cell
};

struct ReportData {
  std::string db_path;
  std::string title;
  std::vector<VariantDef> variants;
  std::vector<RunInfo> runs;
  StudyStats stats;
  std::vector<LanguageScore> language_scores;
  std::string language_basis;          // "multilingual tasks" or "all tasks"
  std::vector<DepthGrid> niah;
  std::vector<IntrinsicResult> intrinsic;
};

ReportData collect_report_data(const ResultsDb& db, const ReportOptions& opt = {});

// "8K" for multiples of 1024, else the number.
std::string format_length(int64_t tokens);

std::string render_markdown(const ReportData& d);
std::string render_cells_csv(const ReportData& d);
nlohmann::json render_summary_json(const ReportData& d);
std::string render_html(const ReportData& d);
// Compact terminal table: one row per non-baseline variant with its average
// drop, the drop per length, and English vs other languages (pp).
std::string headline_table(const StudyStats& st);

struct ReportFiles {
  std::string markdown, csv, json, html;
};
// Writes the four files into out_dir (created if absent; an existing
// non-directory or an unwritable directory is an lq::Error naming it).
ReportFiles write_report(const ReportData& d, const std::string& out_dir);
ReportFiles write_report(const ResultsDb& db, const std::string& out_dir, const ReportOptions& opt = {});

}  // namespace lq::report
