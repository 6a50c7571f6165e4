// cli/cmd_results.cc: `longquant results` (what a results database holds),
// `longquant results export` (one record per example, JSONL or CSV) and
// `longquant report` (tables, CSV, JSON and a self-contained HTML report with
// plots; see report/report.h). All three only read the database.
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "eval/results_db.h"
#include "eval/stats.h"
#include "report/report.h"

namespace lq::cli {

using json = nlohmann::json;

namespace {

// Human-readable `results` (without --json).
void print_summary(const json& s) {
  std::printf("%s: schema %d, %lld results (%lld failed), %zu variants, %zu runs\n",
              s["path"].get<std::string>().c_str(), s["schema_version"].get<int>(),
              static_cast<long long>(s["totals"]["results"].get<int64_t>()),
              static_cast<long long>(s["totals"]["failed"].get<int64_t>()), s["variants"].size(), s["runs"].size());
  std::printf("\nvariants:\n");
  for (const auto& v : s["variants"]) {
    std::printf("  %-16s %-12s %6lld scored %4lld failed  %s\n", v["name"].get<std::string>().c_str(),
                v["method"].get<std::string>().c_str(), static_cast<long long>(v["results"].get<int64_t>()),
                static_cast<long long>(v["failed"].get<int64_t>()), v["definition"].dump().c_str());
  }
  std::printf("\nruns:\n");
  for (const auto& r : s["runs"]) {
    const std::string ended = r["ended"].get<std::string>();
    std::printf("  #%lld %s .. %s  %s (%s), %lld threads, %s\n    %s\n", static_cast<long long>(r["id"].get<int64_t>()),
                r["started"].get<std::string>().c_str(), ended.empty() ? "(not finished)" : ended.c_str(),
                r["version"].get<std::string>().c_str(), r["git_hash"].get<std::string>().c_str(),
                static_cast<long long>(r["threads"].get<int64_t>()), r["cpu"].get<std::string>().c_str(),
                r["command_line"].get<std::string>().c_str());
  }
  std::printf("\ncells (variant task length lang: n scored, failed, mean score):\n");
  for (const auto& c : s["cells"]) {
    std::printf("  %-16s %-28s %8lld %-6s %5lld %4lld  %s\n", c["variant"].get<std::string>().c_str(),
                c["task_id"].get<std::string>().c_str(), static_cast<long long>(c["length"].get<int64_t>()),
                c["lang"].get<std::string>().c_str(), static_cast<long long>(c["n"].get<int64_t>()),
                static_cast<long long>(c["failed"].get<int64_t>()),
                c["mean_score"].is_null() ? "-" : fmt::format("{:.3f}", c["mean_score"].get<double>()).c_str());
  }
  if (!s["intrinsic"].empty()) std::printf("\nintrinsic results: %zu\n", s["intrinsic"].size());
}

void cmd_results(CLI::App& app) {
  auto* cmd = app.add_subcommand("results", "Show what a results database holds (variants, runs, counts per cell)");
  static std::string db_path;
  static bool as_json = false;
  cmd->add_option("--db", db_path, "results database (SQLite)");
  cmd->add_flag("--json", as_json, "print JSON: {path, schema_version, variants, runs, cells, intrinsic, totals}");
  cmd->require_subcommand(0, 1);

  auto* ex = cmd->add_subcommand(
      "export", "Export one record per example (variant, method, suite, task, length, lang, index, seed, score, "
                "prediction, outputs, depths, prompt_tokens, generated_tokens, seconds, prompt_hash, error, ...)");
  static std::string ex_db, ex_format, ex_out;
  ex->add_option("--db", ex_db, "results database (SQLite)")->required();
  ex->add_option("--format", ex_format, "jsonl or csv")->required()->check(CLI::IsMember({"jsonl", "csv"}));
  ex->add_option("--out", ex_out, "output file (default: standard output)");
  ex->callback([] {
    auto db = ResultsDb::open(ex_db, ResultsDb::Mode::ReadOnly);
    auto write = [&](std::ostream& os) {
      if (ex_format == "jsonl") db->export_jsonl(os);
      else db->export_csv(os);
    };
    if (ex_out.empty() || ex_out == "-") {
      write(std::cout);
      std::cout.flush();
      LQ_CHECK(std::cout.good(), "writing the export to standard output failed");
      return;
    }
    // Write next to the target and rename, so an interrupted export never leaves a partial file.
    const std::string tmp = ex_out + ".partial";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      LQ_CHECK(f.is_open(), "cannot write {}: {}", tmp, std::strerror(errno));
      write(f);
      f.close();
      LQ_CHECK(!f.fail(), "writing {} failed", tmp);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, ex_out, ec);
    LQ_CHECK(!ec, "cannot rename {} to {}: {}", tmp, ex_out, ec.message());
    std::fprintf(stderr, "wrote %lld records to %s\n", static_cast<long long>(db->count_results()), ex_out.c_str());
  });

  cmd->callback([ex] {
    if (ex->parsed()) return;  // `results export` did the work
    LQ_CHECK(!db_path.empty(), "results: --db FILE is required");
    auto db = ResultsDb::open(db_path, ResultsDb::Mode::ReadOnly);
    const json s = db->summary_json();
    if (as_json) print_json(s, true);
    else print_summary(s);
  });
}

void cmd_report(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report", "Write report.md, results.csv, summary.json and a self-contained report.html (plots) from a results "
                "database: drops versus the baseline with paired bootstrap CIs and McNemar tests");
  static std::string db_path, out_dir, baseline;
  static int64_t resamples = 10000;
  static uint64_t seed = BootstrapOptions{}.seed;
  static bool quiet = false;
  cmd->add_option("--db", db_path, "results database (SQLite)")->required();
  cmd->add_option("--out", out_dir, "output directory (created if absent)")->required();
  cmd->add_option("--baseline", baseline, "baseline variant (default: 'bf16' if present, else the first variant)");
  cmd->add_option("--resamples", resamples, "bootstrap resamples per cell")->capture_default_str();
  cmd->add_option("--seed", seed, "bootstrap seed")->capture_default_str();
  cmd->add_flag("-q,--quiet", quiet, "do not print the headline table");
  cmd->callback([] {
    LQ_CHECK(resamples >= 100 && resamples <= 10000000, "--resamples must be in [100, 10000000], got {}", resamples);
    auto db = ResultsDb::open(db_path, ResultsDb::Mode::ReadOnly);
    report::ReportOptions opt;
    opt.baseline = baseline;
    opt.bootstrap.resamples = resamples;
    opt.bootstrap.seed = seed;
    const report::ReportData data = report::collect_report_data(*db, opt);
    const report::ReportFiles f = report::write_report(data, out_dir);
    if (!quiet) std::fputs(report::headline_table(data.stats).c_str(), stdout);
    std::fprintf(stderr, "wrote %s, %s, %s, %s\n", f.markdown.c_str(), f.csv.c_str(), f.json.c_str(), f.html.c_str());
  });
}

}  // namespace

void register_results_commands(CLI::App& app) {
  cmd_results(app);
  cmd_report(app);
}

}  // namespace lq::cli
