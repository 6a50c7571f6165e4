// eval/tasks_bench.cc: time to generate 50 examples at 128K tokens with the
// real Llama-3 tokenizer and chat template, on one core (issue target < 60 s).
// Needs ../shared (skips with a message otherwise).
#include <benchmark/benchmark.h>

#include "core/testing.h"
#include "eval/tasks.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"

namespace {

void generate_128k(benchmark::State& state, const char* suite, const char* task) {
  const std::string shared = lq::testing::shared_dir();
  if (shared.empty()) {
    state.SkipWithError("../shared is absent (set LQ_SHARED_DIR)");
    return;
  }
  lq::Tokenizer tok = lq::Tokenizer::load(shared + "/tokenizers/llama3");
  lq::PromptCounter c = lq::chat_prompt_counter(tok, lq::ChatFormat::Llama3);
  auto langs = lq::LanguageSet::builtin();
  langs.load_oneruler_dir(shared + "/data/oneruler");
  lq::TaskOptions o;
  o.suite = suite;
  o.task = task;
  o.lang = "en";
  o.length = 131072;
  o.n = state.range(0);
  for (auto _ : state) benchmark::DoNotOptimize(lq::generate_examples(o, langs, c));
  state.counters["examples"] = static_cast<double>(o.n);
}

BENCHMARK_CAPTURE(generate_128k, oneruler_niah_single_en, "oneruler", "niah_single")
    ->Arg(50)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(generate_128k, ruler_niah_multikey_2, "ruler", "niah_multikey_2")
    ->Arg(50)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(generate_128k, ruler_vt, "ruler", "vt")->Arg(50)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(generate_128k, ruler_cwe, "ruler", "cwe")->Arg(50)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(generate_128k, ruler_fwe, "ruler", "fwe")->Arg(50)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(generate_128k, oneruler_cwe_easy_en, "oneruler", "cwe_easy")
    ->Arg(50)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace
