// kernels/cpu/elementwise_bench.cc: rmsnorm and silu_mul throughput (GB/s of
// fp32 data read + written). Arguments: rows (rmsnorm, dim 4096) or n (silu_mul).

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/elementwise.h"

namespace {

std::vector<float> randn(size_t n) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void BM_Rmsnorm(benchmark::State& state) {
  const int64_t rows = state.range(0), dim = 4096;
  const auto x = randn(size_t(rows * dim));
  std::vector<uint16_t> w(size_t(dim), lq::f32_to_bf16(1.0f));
  std::vector<float> out(x.size());
  for (auto _ : state) {
    lq::cpu::rmsnorm(x.data(), w.data(), 1e-5f, rows, dim, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(8e-9 * double(rows * dim) * double(state.iterations()),
                                              benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Rmsnorm)->ArgName("rows")->Arg(1)->Arg(512)->UseRealTime();

void BM_SiluMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto g = randn(size_t(n)), u = randn(size_t(n));
  std::vector<float> out(static_cast<size_t>(n));
  for (auto _ : state) {
    lq::cpu::silu_mul(g.data(), u.data(), n, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(12e-9 * double(n) * double(state.iterations()),
                                              benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SiluMul)->ArgName("n")->Arg(14336)->Arg(64 * 14336)->UseRealTime();

}  // namespace
