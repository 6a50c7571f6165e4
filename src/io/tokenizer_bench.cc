// io/tokenizer_bench.cc: encode/decode throughput of the real tokenizers.
//
// Text: the English OneRuler book (../shared/data/oneruler/books/en) when present,
// else generated pseudo-English. Reports bytes/s (Google Benchmark's MB/s) and the
// number of tokens per call. Tokenizers come from ../shared/tokenizers; without
// them the tiny committed tokenizer is used (its numbers are not meaningful).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/testing.h"
#include "io/tokenizer.h"

namespace {

namespace fs = std::filesystem;

const std::string& text() {
  static const std::string t = [] {
    const std::string shared = lq::testing::shared_dir();
    if (!shared.empty()) {
      const fs::path dir = fs::path(shared) / "data/oneruler/books/en";
      std::error_code ec;
      if (fs::is_directory(dir, ec))
        for (const auto& e : fs::directory_iterator(dir)) {
          if (e.path().extension() != ".txt") continue;
          std::ifstream f(e.path(), std::ios::binary);
          return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        }
    }
    // Fallback: ~600 KB of random words with punctuation and numbers.
    static const char* words[] = {"the", "of", "and", "little", "women", "said", "Jo", "Meg", "house", "Christmas",
                                  "won't", "be", "without", "any", "presents", "grumbled", "lying", "on", "rug"};
    std::mt19937 rng(7);
    std::string s;
    while (s.size() < 600000) {
      s += words[rng() % (sizeof(words) / sizeof(words[0]))];
      const unsigned r = rng() % 20;
      s += r == 0 ? ".\n\n" : r == 1 ? ", " : r == 2 ? " 1868 " : " ";
    }
    return s;
  }();
  return t;
}

const lq::Tokenizer& tok(const std::string& name) {
  static std::map<std::string, lq::Tokenizer> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  const std::string shared = lq::testing::shared_dir();
  const std::string dir = shared.empty() ? lq::testing::source_dir() + "/tests/data/tokenizer/tiny"
                                         : shared + "/tokenizers/" + name;
  return cache.emplace(name, lq::Tokenizer::load(dir)).first->second;
}

void BM_Encode(benchmark::State& st, const std::string& name) {
  const lq::Tokenizer& t = tok(name);
  const std::string& s = text();
  size_t n = 0;
  for (auto _ : st) {
    auto ids = t.encode(s);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * s.size()));
  st.counters["tokens"] = static_cast<double>(n);
  st.counters["tokens/s"] = benchmark::Counter(static_cast<double>(n) * st.iterations(), benchmark::Counter::kIsRate);
}

void BM_Decode(benchmark::State& st, const std::string& name) {
  const lq::Tokenizer& t = tok(name);
  const auto ids = t.encode(text());
  for (auto _ : st) {
    auto s = t.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * text().size()));
}

void BM_Load(benchmark::State& st, const std::string& name) {
  const std::string shared = lq::testing::shared_dir();
  const std::string dir = shared.empty() ? lq::testing::source_dir() + "/tests/data/tokenizer/tiny"
                                         : shared + "/tokenizers/" + name;
  for (auto _ : st) benchmark::DoNotOptimize(lq::Tokenizer::load(dir).vocab_size());
}

BENCHMARK_CAPTURE(BM_Encode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen2_5, std::string("qwen2_5"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK_CAPTURE(BM_Load, qwen2_5, std::string("qwen2_5"))->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace
