// report/report_test.cc: builds a results database with a synthetic study,
// writes the report and checks its tables, CSV, JSON and HTML plots against
// values the test computes itself from the rows it inserted.
//
// LQ_REPORT_OUT=DIR keeps the generated report in DIR (tests/render_report.sh
// renders it in headless Chromium).
#include "report/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "report/svg.h"

namespace lq::report {
namespace {

using json = nlohmann::json;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/lq_report_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::vector<std::string>> parse_csv(const std::string& s) {
  std::vector<std::vector<std::string>> out(1);
  std::string cell;
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '"' && i + 1 < s.size() && s[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cell += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.back().push_back(cell);
      cell.clear();
    } else if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      out.back().push_back(cell);
      cell.clear();
      out.emplace_back();
      ++i;
    } else {
      cell += c;
    }
  }
  if (out.back().empty()) out.pop_back();
  return out;
}

std::vector<std::string> expected_plots() {
  std::ifstream f(std::string(LQ_SOURCE_DIR) + "/tests/data/report/expected_plots.txt");
  std::vector<std::string> ids;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty() && line[0] != '#') ids.push_back(line);
  return ids;
}

const std::vector<std::string> kVariants = {"bf16", "q8", "q4"};
const std::vector<std::string> kTasks = {"niah_single", "cwe_easy"};
const std::vector<int64_t> kLengths = {8192, 16384};
const std::vector<std::string> kLangs = {"en", "pl"};
constexpr int kN = 16;

using CellKey = std::tuple<std::string, std::string, int64_t, std::string>;  // variant, task, length, lang

// Synthetic study: bf16 right with probability 0.9 (8K) / 0.75 (16K); q8 keeps
// bf16's answer except 1 in 16; q4 loses a right answer with probability 0.2
// (en) / 0.5 (pl). cwe_easy scores are quarters (non-binary). Inserts the rows
// and returns every cell's scores in index order.
std::map<CellKey, std::vector<double>> build_study(ResultsDb& db) {
  db.register_run(make_run_info("longquant eval (synthetic test study)", 2, "test cpu"));
  db.register_variant({"bf16", json{{"source", "/m/bf16"}, {"method", "bf16"}}, ""});
  db.register_variant({"q8", json{{"source", "/m/bf16"}, {"method", "gptq-int8"}, {"settings", {{"bits", 8}}}}, ""});
  db.register_variant({"q4", json{{"source", "/m/bf16"}, {"method", "gptq-int4"}, {"settings", {{"bits", 4}}}}, ""});
  std::map<CellKey, std::vector<double>> cells;
  Rng rng(1234);
  std::vector<ResultRow> batch;
  for (const auto& task : kTasks)
    for (int64_t len : kLengths)
      for (const auto& lang : kLangs)
        for (int i = 0; i < kN; ++i) {
          const double p = len == 8192 ? 0.9 : 0.75;
          double base;
          if (task == "cwe_easy") base = double(rng.below(5)) / 4.0;
          else base = rng.uniform() < p ? 1.0 : 0.0;
          const double q8 = rng.below(16) == 0 ? 1.0 - std::round(base) : base;
          const double q4 = base > 0 && rng.uniform() < (lang == "en" ? 0.2 : 0.5) ? 0.0 : base;
          const std::map<std::string, double> s = {{"bf16", base}, {"q8", q8}, {"q4", q4}};
          for (const auto& v : kVariants) {
            ResultRow r;
            r.key = {v, "oneruler", task, len, lang, i, 42};
            r.prompt_hash = prompt_hash(task + lang + std::to_string(len) + std::to_string(i));
            r.prediction = "pred " + std::to_string(i);
            r.score = s.at(v);
            r.outputs = {"123"};
            if (task == "niah_single") r.depths = {100.0 * i / (kN - 1)};
            r.prompt_tokens = len - 64;
            r.generated_tokens = 10;
            r.seconds = 0.5;
            r.run_id = 1;
            batch.push_back(r);
            cells[{v, task, len, lang}].push_back(s.at(v));
          }
        }
  db.insert_results(batch);
  for (const std::string v : {"q8", "q4"}) {
    IntrinsicResult ir;
    ir.variant = v;
    ir.label = "pg19@16k";
    ir.baseline = "bf16";
    ir.tokens = 16384;
    ir.kld_mean = v == "q8" ? 0.002 : 0.04;
    ir.top1_agreement = v == "q8" ? 0.99 : 0.93;
    ir.ppl_base = 8.0;
    ir.ppl_model = v == "q8" ? 8.01 : 8.4;
    ir.by_position = {{"positions", {4096, 8192, 16384}},
                      {"kld", {ir.kld_mean * 0.8, ir.kld_mean, ir.kld_mean * 1.2}},
                      {"top1", {ir.top1_agreement, ir.top1_agreement - 0.01, ir.top1_agreement - 0.02}}};
    db.put_intrinsic(ir);
  }
  return cells;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

std::string fmt1(double x) { return fmt::format("{:.1f}", x); }

TEST(Report, EndToEndFromDatabase) {
  TempDir t;
  const char* keep = std::getenv("LQ_REPORT_OUT");
  const std::string out = keep && *keep ? std::string(keep) : t.path + "/report";
  std::map<CellKey, std::vector<double>> cells;
  {
    auto db = ResultsDb::open(t.path + "/study.db");
    cells = build_study(*db);
  }
  auto db = ResultsDb::open(t.path + "/study.db", ResultsDb::Mode::ReadOnly);
  const ReportFiles files = write_report(*db, out);
  if (keep && *keep) {  // the writer closed cleanly: the main file holds every commit
    std::filesystem::copy_file(t.path + "/study.db", out + "/study.db",
                               std::filesystem::copy_options::overwrite_existing);
  }
  for (const auto& f : {files.markdown, files.csv, files.json, files.html})
    EXPECT_TRUE(std::filesystem::file_size(f) > 100) << f;

  // Independent cell values. n = 16 and scores are quarters: every mean and
  // difference is exact in binary; only the final *100 may round, hence 1e-9.
  auto drop_of = [&](const std::string& v, const std::string& task, int64_t len, const std::string& lang) {
    return 100.0 * (mean(cells[{"bf16", task, len, lang}]) - mean(cells[{v, task, len, lang}]));
  };

  // ---- summary.json ----
  const json j = json::parse(read_all(files.json));
  EXPECT_EQ(j["baseline"], "bf16");
  EXPECT_EQ(j["cells"].size(), kVariants.size() * kTasks.size() * kLengths.size() * kLangs.size());
  int checked = 0;
  for (const auto& c : j["cells"]) {
    const std::string cv = c["variant"].get<std::string>(), ct = c["task"].get<std::string>(),
                      cl = c["lang"].get<std::string>();
    const int64_t clen = c["length"].get<int64_t>();
    const CellKey k{cv, ct, clen, cl};
    const auto& sc = cells.at(k);
    EXPECT_EQ(c["n"], kN);
    EXPECT_NEAR(c["score"].get<double>(), mean(sc), 1e-12);
    if (cv == "bf16") {
      EXPECT_TRUE(c["drop_pp"].is_null());
      continue;
    }
    const auto& base = cells.at({"bf16", ct, clen, cl});
    EXPECT_NEAR(c["drop_pp"].get<double>(), drop_of(cv, ct, clen, cl), 1e-9);
    EXPECT_LE(c["ci_lo"].get<double>(), c["drop_pp"].get<double>() + 1e-9);
    EXPECT_GE(c["ci_hi"].get<double>(), c["drop_pp"].get<double>() - 1e-9);
    EXPECT_EQ(c["significant"].get<bool>(), c["ci_lo"].get<double>() > 0 || c["ci_hi"].get<double>() < 0);
    if (ct == "niah_single") {
      int b = 0, cc = 0;
      for (size_t i = 0; i < sc.size(); ++i) {
        b += base[i] == 1 && sc[i] == 0;
        cc += base[i] == 0 && sc[i] == 1;
      }
      EXPECT_EQ(c["mcnemar_b"], b);
      EXPECT_EQ(c["mcnemar_c"], cc);
      EXPECT_EQ(c["p_value"].get<double>(), mcnemar_exact_p(b, cc));
    } else {
      EXPECT_TRUE(c["p_value"].is_null()) << "cwe_easy has partial scores";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 16);
  // Macro averages, recomputed: T(v,t) = mean of its 4 cells, per method = mean over the 2 tasks.
  std::map<std::string, double> method_drop;
  for (const std::string v : {"q8", "q4"}) {
    double s = 0;
    for (const auto& task : kTasks) {
      double tsum = 0;
      for (int64_t len : kLengths)
        for (const auto& lang : kLangs) tsum += drop_of(v, task, len, lang);
      s += tsum / 4;
    }
    method_drop[v] = s / 2;
    bool found = false;
    for (const auto& a : j["averages"]["per_method"])
      if (a["variant"] == v) {
        EXPECT_NEAR(a["drop_pp"].get<double>(), method_drop[v], 1e-9);
        found = true;
      }
    EXPECT_TRUE(found);
    // English vs other: both tasks are multilingual; en = mean over tasks of mean over lengths.
    double en = 0, other = 0;
    for (const auto& task : kTasks) {
      en += (drop_of(v, task, 8192, "en") + drop_of(v, task, 16384, "en")) / 2;
      other += (drop_of(v, task, 8192, "pl") + drop_of(v, task, 16384, "pl")) / 2;
    }
    for (const auto& a : j["averages"]["language"]) {
      if (a["variant"] != v) continue;
      EXPECT_NEAR(a["drop_pp"].get<double>(), (a["lang_group"] == "en" ? en : other) / 2, 1e-9);
    }
  }
  EXPECT_GT(method_drop["q4"], method_drop["q8"]);  // the synthetic degradation shows
  EXPECT_EQ(j["intrinsic"].size(), 2u);
  EXPECT_EQ(j["niah_depth"].size(), 3u);  // niah_single x 3 variants; cwe_easy has no depths
  // Depth grid: index i has depth 100 i / 15; bin of i=0 is 0-10, holds i = 0, 1 (depth 6.67).
  for (const auto& g : j["niah_depth"]) {
    const std::string v = g["variant"].get<std::string>();
    const auto& sc = cells.at({v, "niah_single", 8192, "en"});
    const auto& scp = cells.at({v, "niah_single", 8192, "pl"});
    const double expect = 100.0 * (sc[0] + sc[1] + scp[0] + scp[1]) / 4.0;
    EXPECT_NEAR(g["score_pct"][0][0].get<double>(), expect, 1e-9) << v;
    EXPECT_EQ(g["n"][0][0], 4);
  }

  // ---- results.csv ----
  const auto csv = parse_csv(read_all(files.csv));
  ASSERT_EQ(csv.size(), 1 + j["cells"].size());
  const auto& h = csv[0];
  auto col = [&](const std::string& name) {
    const size_t i = size_t(std::find(h.begin(), h.end(), name) - h.begin());
    EXPECT_LT(i, h.size()) << name;
    return i;
  };
  for (size_t r = 1; r < csv.size(); ++r) {
    const auto& row = csv[r];
    ASSERT_EQ(row.size(), h.size());
    const std::string v = row[col("variant")], task = row[col("task")], lang = row[col("lang")];
    const int64_t len = std::stoll(row[col("length")]);
    EXPECT_NEAR(std::stod(row[col("score")]), mean(cells.at({v, task, len, lang})), 1e-12);
    if (v == "bf16") {
      EXPECT_EQ(row[col("drop_pp")], "");
    } else {
      EXPECT_NEAR(std::stod(row[col("drop_pp")]), drop_of(v, task, len, lang), 1e-9);
      EXPECT_EQ(row[col("p_value")].empty(), task == "cwe_easy");
    }
  }

  // ---- report.md ----
  const std::string md = read_all(files.markdown);
  for (const std::string s : {"## Variants", "## Headline", "## Average per method", "## Per task",
                              "## Per context length", "## English vs other languages", "## All cells",
                              "## Intrinsic divergence", "## Definitions", "10000 resamples"})
    EXPECT_NE(md.find(s), std::string::npos) << s;
  EXPECT_NE(md.find("| q4 | gptq-int4 | "), std::string::npos);
  // The per-method row of q4 carries the recomputed average drop.
  const size_t q4row = md.find("| q4 | gptq-int4 | ", md.find("## Average per method"));
  const std::string q4line = md.substr(q4row, md.find('\n', q4row) - q4row);
  EXPECT_NE(q4line.find("| " + fmt1(method_drop["q4"]) + " |"), std::string::npos) << q4line;
  // A cell row of the long table.
  const double d = drop_of("q4", "niah_single", 16384, "pl");
  const std::string cell_row = "| q4 | oneruler/niah_single | 16K | pl | 16 | ";
  const size_t cr = md.find(cell_row);
  ASSERT_NE(cr, std::string::npos);
  EXPECT_NE(md.substr(cr, 200).find("| " + fmt1(d)), std::string::npos) << md.substr(cr, 200);

  // ---- report.html ----
  const std::string html = read_all(files.html);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  for (const std::string bad : {"<script", "href=", "src=", "@import", "url(", "=\"nan", "=\"-nan", "=\"inf"})
    EXPECT_EQ(html.find(bad), std::string::npos) << "report.html contains " << bad;
  size_t opens = 0, closes = 0;
  for (size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++opens;
  for (size_t p = html.find("</svg>"); p != std::string::npos; p = html.find("</svg>", p + 1)) ++closes;
  EXPECT_EQ(opens, closes);
  const auto ids = expected_plots();
  ASSERT_EQ(ids.size(), 10u);
  EXPECT_EQ(opens, ids.size());
  for (const auto& id : ids) {
    const size_t p = html.find("id=\"" + id + "\"");
    ASSERT_NE(p, std::string::npos) << "missing plot " << id;
    const size_t e = html.find("</svg>", p);
    const std::string svg = html.substr(p, e - p);
    EXPECT_NE(svg.find("<title>"), std::string::npos) << id;
    const bool data = svg.find("<path d=\"M") != std::string::npos ||
                      svg.find("<rect class=\"cell\"") != std::string::npos ||
                      svg.find("<rect class=\"bar\"") != std::string::npos;
    EXPECT_TRUE(data) << "plot " << id << " has no data marks";
  }
  // Heatmap of drops: one row per non-baseline variant, values as labels.
  EXPECT_EQ(html.find("plot-niah-oneruler-cwe-easy"), std::string::npos);
  // Line chart legends name every variant.
  const size_t acc = html.find("id=\"plot-accuracy-vs-length\"");
  const std::string acc_svg = html.substr(acc, html.find("</svg>", acc) - acc);
  for (const auto& v : kVariants) EXPECT_NE(acc_svg.find(">" + v + "</text>"), std::string::npos) << v;

  // ---- headline (terminal) ----
  const ReportData rd = collect_report_data(*db);
  const std::string head = headline_table(rd.stats);
  for (const std::string s : {"bf16 score %", "q8", "q4", "8K", "16K", "en", "other", "avg"})
    EXPECT_NE(head.find(s), std::string::npos) << s << "\n" << head;
  EXPECT_NE(head.find(fmt1(method_drop["q4"])), std::string::npos) << head;
}

TEST(Report, BaselineOptionAndErrors) {
  TempDir t;
  auto db = ResultsDb::open(t.path + "/s.db");
  build_study(*db);
  ReportOptions o;
  o.baseline = "q8";
  const ReportData d = collect_report_data(*db, o);
  EXPECT_EQ(d.stats.baseline, "q8");
  EXPECT_FALSE(d.stats.cell("q8", "oneruler/niah_single", 8192, "en")->drop_pp.has_value());
  EXPECT_TRUE(d.stats.cell("bf16", "oneruler/niah_single", 8192, "en")->drop_pp.has_value());
  o.baseline = "nope";
  EXPECT_THROW(collect_report_data(*db, o), Error);
  // --out is a file.
  const std::string f = t.path + "/file";
  std::ofstream(f) << "x";
  EXPECT_THROW(write_report(d, f), Error);
}

TEST(Report, EmptyDatabaseIsAClearError) {
  TempDir t;
  auto db = ResultsDb::open(t.path + "/e.db");
  try {
    collect_report_data(*db);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no variants"), std::string::npos) << e.what();
  }
}

TEST(Svg, EscapingMissingValuesAndColours) {
  EXPECT_EQ(xml_escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
  LineChartSpec s;
  s.id = "x";
  s.title = "T <1>";
  s.x_ticks = {"1K", "2K", "4K"};
  s.series = {{"a&b", {1.0, std::nullopt, std::numeric_limits<double>::quiet_NaN()}}};
  const std::string svg = line_chart(s);
  EXPECT_NE(svg.find("T &lt;1&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a&amp;b"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  HeatmapSpec h;
  h.id = "h";
  h.x_ticks = {"a", "b"};
  h.y_ticks = {"r"};
  h.values = {{50.0, std::nullopt}};
  const std::string hm = heatmap(h);
  EXPECT_NE(hm.find("n/a"), std::string::npos);
  EXPECT_NE(hm.find(">50.0<"), std::string::npos);
  // Colour scales: end points and the diverging midpoint.
  EXPECT_EQ(viridis(0.0), "#440154");
  EXPECT_EQ(viridis(1.0), "#fde725");
  EXPECT_EQ(diverging(0.0), "#f7f7f7");
  EXPECT_EQ(diverging(1.0), "#7f3b08");
  EXPECT_EQ(diverging(-1.0), "#2d004b");
  EXPECT_EQ(text_colour_on("#440154"), "#ffffff");
  EXPECT_EQ(text_colour_on("#fde725"), "#000000");
  EXPECT_EQ(format_length(8192), "8K");
  EXPECT_EQ(format_length(131072), "128K");
  EXPECT_EQ(format_length(5000), "5000");
}

}  // namespace
}  // namespace lq::report
