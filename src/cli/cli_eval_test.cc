// End-to-end tests of `longquant eval` -> `results` -> `report`, including a
// SIGKILL in the middle of a run (resume must give the uninterrupted result).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/testing.h"
#include "core/mapped_file.h"
#include "eval/results_db.h"

namespace lq {
namespace {

using json = nlohmann::json;

std::string tmpdir() {
  return lq::testing::temp_dir("lq_eval_");
}

int sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const std::string kCli = LQ_CLI_PATH;

// A 1-layer random model with a byte-level tokenizer (synth), shared by the tests.
const std::string& model_dir() {
  static std::string dir;
  if (dir.empty()) {
    dir = tmpdir() + "/m";
    EXPECT_EQ(sh(kCli + " synth --like tiny-llama --layers 1 --seed 11 --out " + dir + " 2>/dev/null"), 0);
  }
  return dir;
}

std::string eval_cmd(const std::string& db, const std::string& cache) {
  const std::string& m = model_dir();
  return kCli + " eval --variant bf16=" + m + " --variant q8=" + m + ",method=rtn-int8 --variant nf4=" + m +
         ",method=nf4 --tasks ruler/niah_single_1,oneruler/niah_none --lengths 1000,1200 --langs en,de --n 2 --seed 3" +
         " --db " + db + " --cache " + cache + " -t 1";
}

// (key, prediction, score) of every row, in the database's order.
std::vector<std::string> rows_of(const std::string& db) {
  auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
  std::vector<std::string> out;
  for (auto& r : d->query()) {
    out.push_back(r.key.to_string() + " | " + r.prediction + " | " +
                  (r.score ? std::to_string(*r.score) : std::string("failed:") + r.error));
  }
  return out;
}

TEST(CliEval, GridToReportAndResumeAfterKill) {
  const std::string dir = tmpdir();
  const std::string cache = dir + "/cache";
  // Uninterrupted run.
  ASSERT_EQ(sh(eval_cmd(dir + "/a.db", cache) + " 2>" + dir + "/a.log"), 0) << read_file(dir + "/a.log");
  auto want = rows_of(dir + "/a.db");
  // 3 variants x (ruler: 2 lengths x en + oneruler: 2 lengths x 2 langs) x n=2
  EXPECT_EQ(want.size(), 3u * 6u * 2u);

  // Killed run: SIGKILL once a few results are stored, then resume.
  const std::string db = dir + "/b.db";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + eval_cmd(db, cache) + " 2>/dev/null").c_str(), (char*)nullptr);
    _exit(127);
  }
  bool killed = false;
  for (int i = 0; i < 600 && !killed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (file_exists(db)) {
      try {
        auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
        if (d->count_results() >= 5) {
          ::kill(pid, SIGKILL);
          killed = true;
        }
      } catch (const std::exception&) {
        // not created yet
      }
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(killed) << "the run finished before it could be killed";
  EXPECT_TRUE(WIFSIGNALED(st));
  {
    auto d = ResultsDb::open(db, ResultsDb::Mode::ReadOnly);
    EXPECT_EQ(d->integrity_check(), "ok");
    EXPECT_LT(d->count_results(), int64_t(want.size()));
  }
  ASSERT_EQ(sh(eval_cmd(db, cache) + " 2>" + dir + "/b.log"), 0) << read_file(dir + "/b.log");
  EXPECT_EQ(rows_of(db), want);
  // A third run changes nothing.
  ASSERT_EQ(sh(eval_cmd(db, cache) + " --json >" + dir + "/c.json 2>/dev/null"), 0);
  json c = json::parse(read_file(dir + "/c.json"));
  EXPECT_EQ(c["evaluated"], 0);
  EXPECT_EQ(rows_of(db), want);

  // Redefining a variant under the same name is an error, not a silent mix.
  const std::string& m = model_dir();
  EXPECT_EQ(sh(kCli + " eval --variant bf16=" + m + ",method=nf4 --tasks ruler/niah_single_1 --lengths 1000 --n 1 --db " +
               db + " --cache " + cache + " 2>" + dir + "/d.log"), 1);
  EXPECT_NE(read_file(dir + "/d.log").find("bf16"), std::string::npos) << read_file(dir + "/d.log");

  // results --json, export, report.
  ASSERT_EQ(sh(kCli + " results --db " + db + " --json >" + dir + "/r.json"), 0);
  json r = json::parse(read_file(dir + "/r.json"));
  EXPECT_EQ(r["variants"].size(), 3u);
  ASSERT_EQ(sh(kCli + " results export --db " + db + " --format jsonl --out " + dir + "/x.jsonl"), 0);
  std::ifstream xf(dir + "/x.jsonl");
  std::string line;
  size_t lines = 0;
  while (std::getline(xf, line)) {
    json e = json::parse(line);
    for (const char* k : {"variant", "suite", "task", "length", "lang", "index", "seed", "score", "prediction",
                          "outputs", "prompt_tokens", "generated_tokens"})
      EXPECT_TRUE(e.contains(k)) << k;
    EXPECT_TRUE(e["length"].is_number_integer());
    ++lines;
  }
  EXPECT_EQ(lines, want.size());
  // Intrinsic results: divergence of a cached quantized variant stored in the same database.
  std::string ids;
  for (int i = 0; i < 300; ++i) ids += (i ? "," : "") + std::to_string((i * 7919) % 3000 + 10);
  ASSERT_EQ(sh(kCli + " divergence --base " + m + " --model " + m + " --ids " + ids +
               " --bucket 100 --db " + db + " --name self --base-name bf16 --json >" + dir + "/dv.json 2>/dev/null"), 0);
  json dv = json::parse(read_file(dir + "/dv.json"));
  EXPECT_NEAR(dv["kld_mean"].get<double>(), 0.0, 1e-9);  // a model against itself
  EXPECT_DOUBLE_EQ(dv["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(dv["by_position"].size(), 3u);
  ASSERT_EQ(sh(kCli + " report --db " + db + " --out " + dir + "/report >/dev/null 2>&1"), 0);
  EXPECT_NE(read_file(dir + "/report/report.html").find("plot-intrinsic-kld"), std::string::npos);
  for (const char* f : {"report.md", "results.csv", "summary.json", "report.html"})
    EXPECT_TRUE(file_exists(dir + "/report/" + f)) << f;
  json s = json::parse(read_file(dir + "/report/summary.json"));
  EXPECT_EQ(s["baseline"], "bf16");
}

TEST(CliEval, BadInputIsAClearError) {
  const std::string dir = tmpdir();
  const std::string& m = model_dir();
  auto err = [&](const std::string& args) {
    EXPECT_EQ(sh(kCli + " eval " + args + " 2>" + dir + "/e.log"), 1) << args;
    return read_file(dir + "/e.log");
  };
  EXPECT_NE(err("--variant x=/no/such/model --tasks ruler/niah_single_1 --lengths 1k --db " + dir + "/a.db")
                .find("/no/such/model"), std::string::npos);
  EXPECT_NE(err("--variant x=" + m + " --tasks ruler/no_such_task --lengths 1k --db " + dir + "/a.db")
                .find("no_such_task"), std::string::npos);
  EXPECT_NE(err("--variant x=" + m + " --tasks ruler/niah_single_1 --lengths 1k --db /no/such/dir/a.db")
                .find("/no/such/dir"), std::string::npos);
}

}  // namespace
}  // namespace lq
