// End-to-end tests of the longquant CLI: the exact commands and --json outputs
// the issues name, run as a user runs them.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/mapped_file.h"
#include "core/testing.h"
#include "io/safetensors.h"

namespace lq {
namespace {

using json = nlohmann::json;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string temp_dir() {
  return lq::testing::temp_dir("lq_cli_");
}

Result run(const std::string& args) {
  static const std::string dir = temp_dir();
  const std::string err_path = dir + "/stderr.txt";
  const std::string cmd = std::string(LQ_CLI_PATH) + " " + args + " 2>" + err_path;
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = read_file(err_path);
  return r;
}

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

template <typename T>
std::vector<T> tensor(const SafeTensors& st, const std::string& name) {
  const auto& t = st.get(name);
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ofstream(to, std::ios::binary) << read_file(from);
}

// A copy of a fixture that a test may damage.
std::string fixture_copy(const std::string& name) {
  const std::string src = testing::fixture_dir(name), dst = temp_dir();
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
    copy_file(src + "/" + f, dst + "/" + f);
  return dst;
}

TEST(Cli, LogitsJsonMatchesGoldenFp32) {
  // Tolerance 1e-3: see src/model/model_test.cc (float64 reference vs fp32 engine).
  for (const std::string name : {"tiny-llama31", "tiny-qwen25"}) {
    const std::string dir = testing::fixture_dir(name);
    SafeTensors g = SafeTensors::open(dir + "/golden.safetensors");
    auto ids = tensor<int32_t>(g, "ids_7");
    auto want = tensor<float>(g, "logits_7");
    Result r = run("logits --model " + dir + " --ids " + join(ids) + " --last 7 --precision fp32 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    json j = json::parse(r.out);
    ASSERT_EQ(j["logits"].size(), 7u);
    double d = 0;
    for (size_t row = 0; row < 7; ++row) {
      ASSERT_EQ(j["logits"][row].size(), 512u);
      for (size_t c = 0; c < 512; ++c) d = std::max(d, std::fabs(j["logits"][row][c].get<double>() - want[row * 512 + c]));
    }
    EXPECT_LE(d, 1e-3) << name;
  }
}

TEST(Cli, GenerateJsonGreedyMatchesGolden) {
  for (const std::string name : {"tiny-llama31", "tiny-qwen25"}) {
    const std::string dir = testing::fixture_dir(name);
    SafeTensors g = SafeTensors::open(dir + "/golden.safetensors");
    auto ids = tensor<int32_t>(g, "ids_300");
    auto want = tensor<int32_t>(g, "greedy_300");
    for (const std::string prec : {"fp32", "bf16"}) {
      Result r = run("generate --model " + dir + " --ids " + join(ids) + " --max-tokens 16 --greedy --precision " +
                     prec + " --json -t 2");
      ASSERT_EQ(r.code, 0) << r.err;
      json j = json::parse(r.out);
      EXPECT_EQ(j["ids"].get<std::vector<int32_t>>(), want) << name << " " << prec;
      EXPECT_EQ(j["text"], "");  // fixtures have no tokenizer
    }
  }
}

TEST(Cli, InfoJson) {
  Result r = run("info --model " + testing::fixture_dir("tiny-qwen25") + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["architecture"], "Qwen2ForCausalLM");
  EXPECT_EQ(j["num_kv_heads"], 2);
  EXPECT_EQ(j["context"], 131072);
  EXPECT_EQ(j["rope"]["type"], "yarn");
  EXPECT_NEAR(j["rope"]["attention_factor"].get<double>(), 1.138629436111989, 1e-12);
  EXPECT_EQ(j["kv_bytes_per_token"]["bf16"], 2 * 2 * 32 * 2);  // K+V x layers x kv_dim x 2 bytes
  EXPECT_GT(j["parameters"].get<int64_t>(), 0);
}

TEST(Cli, TokenizeJsonMatchesGolden) {
  LQ_REQUIRE_SHARED(shared);
  std::ifstream f(shared + "/tokenizers/golden.jsonl");
  std::string line;
  const std::string dir = temp_dir();
  int checked = 0;
  while (std::getline(f, line) && checked < 6) {
    json g = json::parse(line);
    std::ofstream(dir + "/t.txt", std::ios::binary) << g["text"].get<std::string>();
    for (const std::string tok : {"llama3", "qwen2_5"}) {
      Result r = run("tokenize --model " + shared + "/tokenizers/" + tok + " --text-file " + dir + "/t.txt --json");
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(json::parse(r.out), g[tok]) << tok << ": " << g["text"];
    }
    ++checked;
  }
  // --add-special puts Llama-3's <|begin_of_text|> first.
  std::ofstream(dir + "/t.txt") << "Hello world";
  Result r = run("tokenize --model " + shared + "/tokenizers/llama3 --text-file " + dir + "/t.txt --add-special --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json({128000, 9906, 1917}));
}

TEST(Cli, SynthGenerateAndBench) {
  const std::string dir = temp_dir() + "/m";
  Result s = run("synth --like tiny-llama --layers 2 --out " + dir + " --seed 3");
  ASSERT_EQ(s.code, 0) << s.err;
  Result g = run("generate --model " + dir + " --chat --prompt 'Hi there' --max-tokens 5 --json");
  ASSERT_EQ(g.code, 0) << g.err;
  json j = json::parse(g.out);
  EXPECT_LE(j["ids"].size(), 5u);
  EXPECT_TRUE(j["text"].is_string());
  // Sampling is reproducible from a seed.
  const std::string samp = "generate --model " + dir + " --prompt 'Hi' --max-tokens 6 --temperature 0.8 --top-p 0.9 --seed 5 --json";
  Result a = run(samp), b = run(samp);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["ids"], json::parse(b.out)["ids"]);
  Result bench = run("bench --model " + dir + " --prompt-tokens 32 --gen-tokens 4 --no-bandwidth-probe --json");
  ASSERT_EQ(bench.code, 0) << bench.err;
  json bj = json::parse(bench.out);
  for (const char* k : {"prefill_tok_s", "decode_tok_s", "peak_rss_bytes", "kv_bytes", "mem_bandwidth_bytes_s",
                        "decode_fraction_of_bound"})
    EXPECT_TRUE(bj.contains(k)) << k;
  EXPECT_GT(bj["prefill_tok_s"].get<double>(), 0);
  EXPECT_GT(bj["kv_bytes"].get<int64_t>(), 0);
}

TEST(Cli, ClearErrors) {
  // Missing model directory.
  Result r = run("info --model /nonexistent/model");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos) << r.err;

  // Truncated safetensors: the message names the file.
  std::string d = fixture_copy("tiny-llama31");
  {
    std::string data = read_file(d + "/model.safetensors");
    std::ofstream(d + "/model.safetensors", std::ios::binary) << data.substr(0, data.size() / 2);
  }
  r = run("logits --model " + d + " --ids 5,6,7 --json");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;

  // Bad config: unknown architecture named.
  d = fixture_copy("tiny-llama31");
  {
    std::string cfg = read_file(d + "/config.json");
    cfg.replace(cfg.find("LlamaForCausalLM"), 16, "MambaForCausalLM");
    std::ofstream(d + "/config.json") << cfg;
  }
  r = run("info --model " + d);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("MambaForCausalLM"), std::string::npos) << r.err;

  // A prompt longer than the context is an error, not a crash.
  d = fixture_copy("tiny-llama31");
  {
    std::string cfg = read_file(d + "/config.json");
    cfg.replace(cfg.find("131072"), 6, "16");
    std::ofstream(d + "/config.json") << cfg;
  }
  std::vector<int32_t> ids(20, 7);
  r = run("generate --model " + d + " --ids " + join(ids) + " --max-tokens 2 --json");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("context"), std::string::npos) << r.err;

  // Bad flags.
  r = run("logits --model " + testing::fixture_dir("tiny-llama31") + " --ids 5,x,7 --json");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--ids"), std::string::npos) << r.err;
  r = run("logits --model " + testing::fixture_dir("tiny-llama31") + " --ids 5,6 --precision fp16");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("fp16"), std::string::npos) << r.err;
  // A text prompt for a model without a tokenizer.
  r = run("generate --model " + testing::fixture_dir("tiny-llama31") + " --prompt hello");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("tokenizer"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lq
